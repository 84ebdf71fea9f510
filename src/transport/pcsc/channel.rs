//! [`CardChannel`] over a connected `pcsc::Card` (SCardTransmit), with PC/SC errors
//! mapped to transport-independent [`ChannelError`]s.

use std::ffi::CStr;
use std::time::Duration;

use crate::card::{CardChannel, Cause, ChannelError};

/// How long a failed transmit waits for the reader to report a removal before the
/// failure counts as the card's own (pcscd learns of some removals only at its next
/// presence poll; vpcd's is ~400 ms). Only failures pay it.
const REMOVAL_GRACE: Duration = Duration::from_secs(1);

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
    /// The reader's context and name, to ask whether a failed card has left.
    presence: Option<(&'a pcsc::Context, &'a CStr)>,
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
            presence: None,
        }
    }

    /// Lets a failed transmit wait (at most `REMOVAL_GRACE`, 1 s) for `reader` on
    /// `context` to report a removal, so a card pulled mid-exchange is reported as
    /// removed rather than as a card that answered badly.
    pub fn watching(mut self, context: &'a pcsc::Context, reader: &'a CStr) -> Self {
        self.presence = Some((context, reader));
        self
    }
}

impl PcscChannel<'_> {
    /// Whether the card has left: SCardStatus at once, then the reader's state
    /// changes for up to [`REMOVAL_GRACE`].
    fn gone(&self) -> bool {
        let present = match self.card.status2_owned() {
            Ok(s) => s.status().contains(pcsc::Status::PRESENT),
            Err(e) => return map_error(e) == ChannelError::Removed,
        };
        if !present {
            return true;
        }
        let Some((context, reader)) = self.presence else {
            return false;
        };
        let mut states = [pcsc::ReaderState::new(reader, pcsc::State::UNAWARE)];
        if context
            .get_status_change(Duration::ZERO, &mut states)
            .is_err()
        {
            return false;
        }
        let deadline = std::time::Instant::now() + REMOVAL_GRACE;
        loop {
            let [state] = &mut states;
            if state.event_state().contains(pcsc::State::EMPTY) {
                return true;
            }
            state.sync_current_state();
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || context.get_status_change(left, &mut states).is_err() {
                return false;
            }
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
            ChannelError::ServiceDown(Cause::new(e))
        }
        other => ChannelError::Transport(Cause::new(other)),
    }
}

impl CardChannel for PcscChannel<'_> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.sent += 1;
        let answer = self.card.transmit(capdu, &mut self.buf).map(|r| r.len());
        match answer {
            // Less than a status word: vpcd answers a pulled card's last APDU with
            // nothing at all.
            Ok(len) if len < 2 && self.gone() => {
                tracing::debug!(bytes = len, "short answer from a card that left");
                self.failure.get_or_insert(ChannelError::Removed);
                Err(ChannelError::Removed)
            }
            Ok(len) => {
                let r = self.buf.get(..len).unwrap_or_default();
                tracing::trace!(
                    ">>> {} <<< SW {}",
                    hex::encode_upper(capdu.get(..4).unwrap_or(capdu)),
                    hex::encode_upper(r.get(r.len().saturating_sub(2)..).unwrap_or(&[]))
                );
                Ok(r.to_vec())
            }
            Err(e) => {
                let mut err = map_error(e);
                // A card pulled mid-exchange often fails the transmit with a generic
                // error (vpcd and some readers give SCARD_E_NOT_TRANSACTED); the
                // card's status tells a removal from a card that did not answer.
                if matches!(err, ChannelError::Transport(_) | ChannelError::Mute) && self.gone() {
                    err = ChannelError::Removed;
                }
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
