//! [`CardChannel`] over a connected `pcsc::Card` (SCardTransmit), with PC/SC errors
//! mapped to transport-independent [`ChannelError`]s.

use crate::card::{CardChannel, ChannelError};

/// A card connected through PC/SC, borrowed for one transaction.
pub struct PcscChannel<'a> {
    card: &'a pcsc::Card,
    atr: Vec<u8>,
    contactless: bool,
    buf: Vec<u8>,
    /// The first transport failure seen, so the worker can tell a reset or a removal
    /// from a card that answered badly.
    pub failure: Option<ChannelError>,
    /// APDUs sent.
    pub sent: usize,
}

impl<'a> PcscChannel<'a> {
    /// A channel onto `card` (inside a transaction).
    pub fn new(card: &'a pcsc::Card, atr: Vec<u8>, contactless: bool) -> Self {
        Self {
            card,
            atr,
            contactless,
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
            failure: None,
            sent: 0,
        }
    }
}

impl Drop for PcscChannel<'_> {
    fn drop(&mut self) {
        // The receive buffer still holds the last response, identity bytes included.
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

/// Maps a PC/SC error met while talking to a card.
pub fn map_error(e: pcsc::Error) -> ChannelError {
    use pcsc::Error as E;
    match e {
        E::RemovedCard | E::NoSmartcard | E::ReaderUnavailable | E::UnknownReader => {
            ChannelError::Removed
        }
        E::ResetCard => ChannelError::Reset,
        E::UnresponsiveCard | E::UnpoweredCard | E::Timeout => ChannelError::Mute,
        E::SharingViolation => ChannelError::Busy,
        E::NoService | E::ServiceStopped | E::InvalidHandle | E::CommError => {
            ChannelError::ServiceDown(e.to_string())
        }
        other => ChannelError::Transport(other.to_string()),
    }
}

impl CardChannel for PcscChannel<'_> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.sent += 1;
        match self.card.transmit(capdu, &mut self.buf) {
            Ok(r) => {
                tracing::trace!(
                    ">>> {} <<< SW {}",
                    hex::encode_upper(capdu.get(..4).unwrap_or(capdu)),
                    hex::encode_upper(r.get(r.len().saturating_sub(2)..).unwrap_or(&[]))
                );
                Ok(r.to_vec())
            }
            Err(e) => {
                let err = map_error(e);
                tracing::debug!(error = %e, "transmit failed");
                self.failure.get_or_insert(err.clone());
                Err(err)
            }
        }
    }

    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn is_contactless(&self) -> bool {
        self.contactless
    }
}

/// Whether a reader looks contactless from its name (PC/SC has no portable flag).
pub fn is_contactless_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["picc", "contactless", "acr122", " cl ", "nfc"]
        .iter()
        .any(|k| n.contains(k))
}

/// Whether an ATR is one a PC/SC reader synthesises for an ISO 14443-4 target
/// (PC/SC part 3: `3B 8n 80 01 …`).
pub fn is_contactless_atr(atr: &[u8]) -> bool {
    matches!(atr, [0x3B, t0, 0x80, 0x01, ..] if t0 & 0xF0 == 0x80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contactless_heuristics() {
        assert!(is_contactless_name("ACS ACR122U PICC Interface 00 00"));
        assert!(is_contactless_name(
            "Identiv uTrust 3700 F Contactless Reader"
        ));
        assert!(!is_contactless_name("Virtual PCD 00 00"));
        assert!(is_contactless_atr(&[0x3B, 0x80, 0x80, 0x01, 0x01]));
        assert!(!is_contactless_atr(&[0x3B, 0x75, 0x13, 0x00]));
    }

    #[test]
    fn errors_map_to_channel_errors() {
        assert_eq!(map_error(pcsc::Error::RemovedCard), ChannelError::Removed);
        assert_eq!(map_error(pcsc::Error::ResetCard), ChannelError::Reset);
        assert_eq!(map_error(pcsc::Error::SharingViolation), ChannelError::Busy);
        assert!(matches!(
            map_error(pcsc::Error::NoService),
            ChannelError::ServiceDown(_)
        ));
    }
}
