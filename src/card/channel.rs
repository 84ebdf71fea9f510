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
    ServiceDown(#[source] Cause),
    /// Any other transport failure.
    #[error("transport error: {0}")]
    Transport(#[source] Cause),
}

/// A transport's own error (pcsc's, libnfc's), kept whole as the source of a
/// [`ChannelError`]: the card layer cannot name those crates' types, and a cause
/// flattened into a string loses its chain.
///
/// Shared by reference count so `ChannelError` stays `Clone`. Two causes are equal when
/// their messages are: the C libraries' error codes have no other identity, and only
/// tests compare causes.
#[derive(Clone)]
pub struct Cause {
    /// Which library it came from, when its own message does not say.
    from: Option<&'static str>,
    error: std::sync::Arc<dyn std::error::Error + Send + Sync>,
}

impl Cause {
    /// Keeps `e` as the cause.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause {
            from: None,
            error: std::sync::Arc::new(e),
        }
    }

    /// Keeps `e`, shown as `from: e` (`libnfc: Input/output error`).
    pub fn from_library(
        from: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Cause {
        Cause {
            from: Some(from),
            ..Cause::new(e)
        }
    }
}

/// A cause the transport states itself (a malformed answer, say): no error below it.
impl From<String> for Cause {
    fn from(s: String) -> Cause {
        Cause {
            from: None,
            error: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(s)),
        }
    }
}

impl From<&str> for Cause {
    fn from(s: &str) -> Cause {
        Cause::from(s.to_owned())
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from {
            Some(from) => write!(f, "{from}: {}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.from {
            Some(from) => write!(f, "{from}: {:?}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    /// An error with a cause of its own, like a library error wrapping an OS one.
    #[derive(Debug, thiserror::Error)]
    #[error("device lost")]
    struct Lost(#[source] std::io::Error);

    #[test]
    fn a_cause_keeps_the_error_and_its_chain() {
        let e = ChannelError::ServiceDown(Cause::from_library(
            "libnfc",
            Lost(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        ));
        assert_eq!(e.to_string(), "service unavailable: libnfc: device lost");
        let cause = e.source().expect("the cause is the source");
        assert_eq!(cause.to_string(), "libnfc: device lost");
        let below = cause.source().expect("and its own source is kept");
        assert_eq!(
            below.to_string(),
            std::io::Error::from(std::io::ErrorKind::BrokenPipe).to_string()
        );
    }

    #[test]
    fn a_stated_cause_has_nothing_below_it_and_compares_by_message() {
        let a = ChannelError::Transport("R-APDU of 1 bytes from the phone".into());
        assert_eq!(
            a.to_string(),
            "transport error: R-APDU of 1 bytes from the phone"
        );
        assert!(a.source().and_then(Error::source).is_none());
        assert_eq!(
            a,
            ChannelError::Transport("R-APDU of 1 bytes from the phone".into())
        );
        assert_ne!(a, ChannelError::Transport("something else".into()));
        assert_ne!(
            a,
            ChannelError::ServiceDown("R-APDU of 1 bytes from the phone".into())
        );
    }
}
