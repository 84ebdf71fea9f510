//! [`CardChannel`] over a libnfc initiator: each APDU is one InDataExchange to the
//! selected ISO 14443-4 target (libnfc and the PN53x handle ISO-DEP framing, chaining
//! and waiting-time extensions).

use std::time::Duration;

use nfc1::{Device, Timeout};

use crate::card::{CardChannel, Cause, ChannelError};

/// What a PC/SC contactless reader would synthesise for an ISO 14443-4A target without
/// historical bytes (cards.md §3).
pub const ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// libnfc's receive buffer for one exchange (`PN53x_EXTENDED_FRAME__DATA_MAX_LEN`).
const MAX_RAPDU: usize = 264;
/// Ordinary commands: a phone answers in milliseconds; this only bounds a hung link.
const APDU_WAIT: Duration = Duration::from_secs(5);
/// A signature waits for the holder to confirm on the phone.
const SIGN_WAIT: Duration = Duration::from_secs(55);
/// INS of PERFORM SECURITY OPERATION (the phone profile's sign command).
const INS_PSO: u8 = 0x2A;

/// A phone on an open libnfc device, for the duration of one operation.
pub struct NfcChannel<'d> {
    device: &'d mut Device,
}

impl<'d> NfcChannel<'d> {
    /// A channel onto the target libnfc last selected on `device`.
    pub fn new(device: &'d mut Device) -> Self {
        NfcChannel { device }
    }
}

impl CardChannel for NfcChannel<'_> {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let wait = if capdu.get(1) == Some(&INS_PSO) {
            SIGN_WAIT
        } else {
            APDU_WAIT
        };
        let started = std::time::Instant::now();
        let result =
            self.device
                .initiator_transceive_bytes(capdu, MAX_RAPDU, Timeout::Duration(wait));
        match result {
            Ok(rapdu) if rapdu.len() >= 2 => {
                tracing::trace!(
                    header = %hex::encode_upper(capdu.get(..4).unwrap_or(capdu)),
                    sw = %hex::encode_upper(&rapdu[rapdu.len() - 2..]),
                    us = started.elapsed().as_micros() as u64,
                    "APDU"
                );
                Ok(rapdu)
            }
            Ok(rapdu) => Err(ChannelError::Transport(
                format!("R-APDU of {} bytes from the phone", rapdu.len()).into(),
            )),
            Err(e) => Err(map_error(e)),
        }
    }

    fn atr(&self) -> &[u8] {
        &ATR
    }

    fn is_contactless(&self) -> bool {
        true
    }
}

/// libnfc errors during an exchange, as the card layer understands them.
pub fn map_error(e: nfc1::Error) -> ChannelError {
    match e {
        // The PN53x reports "target timeout" (status 01) or a released target when
        // the phone left the field.
        nfc1::Error::RfTransmissionError | nfc1::Error::TargetReleased => ChannelError::Removed,
        nfc1::Error::Timeout => ChannelError::Mute,
        nfc1::Error::Io | nfc1::Error::NoSuchDeviceFound | nfc1::Error::NoDeviceFound => {
            ChannelError::ServiceDown(Cause::from_library("NFC device", e))
        }
        other => ChannelError::Transport(Cause::from_library("libnfc", other)),
    }
}
