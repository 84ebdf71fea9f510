//! The transport-independent card channel: every piece of card logic talks to cards
//! and phones through [`CardChannel`], whatever carries the bytes (PC/SC, libnfc, a
//! simulator).

/// A connected card or phone that exchanges ISO 7816-4 APDUs.
///
/// Implementations are synchronous and blocking; they run on the backend's own thread.
/// `transmit` moves raw bytes only: T=0 `61XX`/`6CXX` handling lives above it, in
/// [`crate::card::apdu::transceive`], written once for every transport.
pub trait CardChannel: Send {
    /// Sends one C-APDU and returns the raw R-APDU (response data followed by SW1 SW2).
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError>;

    /// The card's ATR (or, for ISO 14443-4 targets, the ATR a PC/SC reader would
    /// synthesise, e.g. `3B 80 80 01 01`).
    fn atr(&self) -> &[u8];

    /// Whether the channel reaches a contactless target (a phone or a contactless card).
    fn is_contactless(&self) -> bool {
        false
    }
}

impl<C: CardChannel + ?Sized> CardChannel for &mut C {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(capdu)
    }
    fn atr(&self) -> &[u8] {
        (**self).atr()
    }
    fn is_contactless(&self) -> bool {
        (**self).is_contactless()
    }
}

impl<C: CardChannel + ?Sized> CardChannel for Box<C> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        (**self).transmit(capdu)
    }
    fn atr(&self) -> &[u8] {
        (**self).atr()
    }
    fn is_contactless(&self) -> bool {
        (**self).is_contactless()
    }
}

/// Why a transmit failed, as far as the transport can tell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The card or phone left the field or slot.
    #[error("card removed")]
    Removed,
    /// Another application reset the card; reconnect and reselect before going on.
    #[error("card was reset by another application")]
    Reset,
    /// The card does not answer (no response, timeout at the transport).
    #[error("card does not answer")]
    Mute,
    /// Another application holds the reader exclusively.
    #[error("reader is held exclusively by another application")]
    Busy,
    /// The service behind the transport (pcscd, the NFC device) went away.
    #[error("service unavailable: {0}")]
    ServiceDown(String),
    /// Any other transport failure; the text names the transport's own error.
    #[error("transport error: {0}")]
    Transport(String),
}
