//! Card-type detection: ATR patterns of cards.md §1 as hints, confirmed by SELECT.
//!
//! Order, from cheapest and safest to most intrusive:
//!
//! 1. CPS ATRs (IAS-ECC, masked, and CPS v4): recognised and left alone, no APDU at
//!    all: a professional card may be in use by other middleware.
//! 2. Vitale 2 ATRs: confirmed by `SELECT VITALE` answering `90 00`/`61 XX`.
//! 3. Vitale 1 ATRs (`3F 65 25 00 …`, inverse convention): the ATR is only a hint,
//!    Bull CP8 bank cards share the `3F 65 25` prefix. No public document describes a
//!    Vitale 1 command that is safe to send, so the confirmation is the best public
//!    one available: the card must *refuse* the ISO `SELECT VITALE` (a Vitale 1 has no
//!    ISO 7816-4 file system; its commands use the proprietary class `BC`). A card
//!    that accepts it is in fact a Vitale 2 with an odd ATR; a card that answers
//!    nothing sensible is `Unknown`.
//! 4. Contactless targets, the phone ATR `3B 80 80 01 01` and unknown ATRs: the phone
//!    profile probe first ([`crate::card::phone::probe`]), then `SELECT VITALE` for a
//!    Vitale 2 whose ATR is not listed, else `Unknown`.
//!
//! A foreign card that answers oddly is `Unknown` and left alone. A card whose ATR
//! says Carte Vitale but which does not confirm it is an error saying what the card
//! did (`CARD_MUTE` when it gave no usable answer, else `CARD_UNSUPPORTED`), so
//! practice software waiting on that reader always gets an outcome. Transport
//! failures are errors too.

use super::apdu::transceive;
use super::{CardChannel, CardError, CardType, ReadContext};
use crate::codec::apdu::{self, StatusWord};

/// The VITALE application (cards.md §1).
pub const VITALE_AID: [u8; 11] = [
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];

/// The MF_VITALE application (cards.md §1).
pub const MF_VITALE_AID: [u8; 14] = [
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x4D, 0x46, 0x5F, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];

/// The ATR a PC/SC contactless reader synthesises for an ISO 14443-4 phone.
pub const PHONE_ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// An ATR pattern: `atr & mask == value & mask`, same length.
struct AtrPattern {
    value: &'static [u8],
    mask: &'static [u8],
}

impl AtrPattern {
    /// Whether `atr` matches.
    fn matches(&self, atr: &[u8]) -> bool {
        atr.len() == self.value.len()
            && self.mask.len() == self.value.len()
            && atr
                .iter()
                .zip(self.value)
                .zip(self.mask)
                .all(|((a, v), m)| a & m == v & m)
    }
}

/// All-ones masks for exact patterns, by length.
const EXACT_9: [u8; 9] = [0xFF; 9];
const EXACT_17: [u8; 17] = [0xFF; 17];

/// Vitale 2: `3B 75 13 00 00 xx 09 EA 90 00` with xx in the listed set, and
/// `3B 75 13 00 00 45 09 FA 90 00`.
fn is_vitale2_atr(atr: &[u8]) -> bool {
    const LISTED: [u8; 9] = [0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4B, 0x4C];
    match atr {
        [0x3B, 0x75, 0x13, 0x00, 0x00, xx, 0x09, 0xEA, 0x90, 0x00] => LISTED.contains(xx),
        [0x3B, 0x75, 0x13, 0x00, 0x00, 0x45, 0x09, 0xFA, 0x90, 0x00] => true,
        _ => false,
    }
}

/// Vitale 1 (inverse convention, `?` = any nibble).
const VITALE1: [AtrPattern; 3] = [
    // 3F 65 25 00 2? 09 ?9 90 00
    AtrPattern {
        value: &[0x3F, 0x65, 0x25, 0x00, 0x20, 0x09, 0x09, 0x90, 0x00],
        mask: &[0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0x0F, 0xFF, 0xFF],
    },
    // 3F 65 25 00 52 09 6A 90 00
    AtrPattern {
        value: &[0x3F, 0x65, 0x25, 0x00, 0x52, 0x09, 0x6A, 0x90, 0x00],
        mask: &EXACT_9,
    },
    // 3F 65 25 00 A? 09 6A 90 00
    AtrPattern {
        value: &[0x3F, 0x65, 0x25, 0x00, 0xA0, 0x09, 0x6A, 0x90, 0x00],
        mask: &[0xFF, 0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0xFF, 0xFF],
    },
];

/// CPS (IAS-ECC, masked) and CPS v4.
const CPS: [AtrPattern; 2] = [
    AtrPattern {
        value: &[
            0x3B, 0xAC, 0x00, 0x40, 0x2A, 0x00, 0x12, 0x25, 0x00, 0x64, 0x80, 0x00, 0x03, 0x10,
            0x00, 0x90, 0x00,
        ],
        mask: &[
            0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00,
            0xFF, 0xFF, 0xFF,
        ],
    },
    AtrPattern {
        value: &[
            0x3B, 0xDC, 0x18, 0xFF, 0x00, 0x00, 0x12, 0x25, 0x00, 0x64, 0x80, 0x00, 0x04, 0x01,
            0x00, 0x90, 0x00,
        ],
        mask: &EXACT_17,
    },
];

/// What the ATR alone suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtrHint {
    /// A listed Vitale 2 ATR.
    Vitale2,
    /// A Vitale 1 ATR pattern (shared with some bank cards).
    Vitale1,
    /// A CPS ATR.
    Cps,
    /// The ATR a PC/SC reader gives an ISO 14443-4 phone.
    Phone,
    /// Not listed.
    Unknown,
}

/// Classifies an ATR by the patterns of cards.md §1.
pub fn atr_hint(atr: &[u8]) -> AtrHint {
    if CPS.iter().any(|p| p.matches(atr)) {
        AtrHint::Cps
    } else if is_vitale2_atr(atr) {
        AtrHint::Vitale2
    } else if VITALE1.iter().any(|p| p.matches(atr)) {
        AtrHint::Vitale1
    } else if atr == PHONE_ATR {
        AtrHint::Phone
    } else {
        AtrHint::Unknown
    }
}

/// See [`crate::card::detect()`].
pub fn detect(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<CardType, CardError> {
    let hint = atr_hint(channel.atr());
    let contactless = channel.is_contactless();
    tracing::debug!(?hint, contactless, "detecting card type");
    match hint {
        AtrHint::Cps if !contactless => Ok(CardType::Cps),
        AtrHint::Vitale2 if !contactless => match select_vitale_status(channel)? {
            Ok(sw) if sw.is_success() => Ok(CardType::Vitale2),
            answer => Err(unconfirmed("Carte Vitale 2", answer)),
        },
        AtrHint::Vitale1 if !contactless => vitale1_confirm(channel),
        _ => {
            if phone_answers(channel, ctx)? {
                Ok(CardType::Apcv)
            } else if selects_vitale(channel)? {
                Ok(CardType::Vitale2)
            } else {
                Ok(CardType::Unknown)
            }
        }
    }
}

/// The Vitale 1 confirmation described in the module docs.
fn vitale1_confirm(channel: &mut dyn CardChannel) -> Result<CardType, CardError> {
    match select_vitale_status(channel)? {
        Ok(sw) if sw.is_success() => Ok(CardType::Vitale2),
        Ok(_) => Ok(CardType::Vitale1),
        Err(odd) => Err(unconfirmed("Carte Vitale 1", Err(odd))),
    }
}

/// The error for a card whose ATR announced `kind` but whose answer to
/// `SELECT VITALE` did not confirm it.
fn unconfirmed(kind: &str, answer: Result<StatusWord, CardError>) -> CardError {
    match answer {
        Ok(sw) => CardError::Unsupported(format!(
            "the ATR says {kind}, but the card refused SELECT VITALE with {:04X}",
            sw.to_u16()
        )),
        Err(CardError::Mute(what)) => CardError::Mute(format!(
            "the ATR says {kind}, but the card gave no usable answer to SELECT VITALE ({what})"
        )),
        Err(e) => CardError::Unsupported(format!(
            "the ATR says {kind}, but its answer to SELECT VITALE is unusable ({e})"
        )),
    }
}

/// Whether `SELECT VITALE` succeeds. Odd answers count as "no"; only transport
/// failures are errors.
pub fn selects_vitale(channel: &mut dyn CardChannel) -> Result<bool, CardError> {
    Ok(select_vitale_status(channel)?.is_ok_and(StatusWord::is_success))
}

/// What `SELECT VITALE` gets: the status word, or the card-side error when the answer
/// is not even well formed (an endless `61 XX` chain, less than a status word). The
/// outer error is the transport's.
fn select_vitale_status(
    channel: &mut dyn CardChannel,
) -> Result<Result<StatusWord, CardError>, CardError> {
    let capdu = apdu::select_aid(&VITALE_AID)
        .map_err(|e| CardError::Malformed(format!("cannot build SELECT: {e}")))?;
    match transceive(channel, &capdu) {
        Ok(r) => Ok(Ok(r.status())),
        Err(CardError::Channel(e)) => Err(CardError::Channel(e)),
        Err(odd) => Ok(Err(odd)),
    }
}

/// The phone probe, with anything but a transport failure read as "not a phone".
fn phone_answers(channel: &mut dyn CardChannel, ctx: &ReadContext) -> Result<bool, CardError> {
    match super::phone::probe(channel, ctx) {
        Ok(yes) => Ok(yes),
        Err(CardError::Channel(e)) => Err(CardError::Channel(e)),
        Err(e) => {
            tracing::debug!(error = %e, "phone probe answered oddly; not a phone");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).expect("hex")
    }

    #[test]
    fn vitale2_atrs() {
        for xx in ["43", "44", "45", "46", "47", "48", "49", "4B", "4C"] {
            let atr = hex(&format!("3B 75 13 00 00 {xx} 09 EA 90 00"));
            assert_eq!(atr_hint(&atr), AtrHint::Vitale2, "{xx}");
        }
        assert_eq!(
            atr_hint(&hex("3B 75 13 00 00 45 09 FA 90 00")),
            AtrHint::Vitale2
        );
        assert_eq!(
            atr_hint(&hex("3B 75 13 00 00 4A 09 EA 90 00")),
            AtrHint::Unknown
        );
        assert_eq!(
            atr_hint(&hex("3B 75 13 00 00 44 09 FA 90 00")),
            AtrHint::Unknown
        );
        assert_eq!(
            atr_hint(&hex("3B 75 13 00 00 44 09 EA 90")),
            AtrHint::Unknown
        );
    }

    #[test]
    fn vitale1_patterns_with_wildcard_nibbles() {
        for atr in [
            "3F 65 25 00 20 09 09 90 00",
            "3F 65 25 00 2B 09 F9 90 00",
            "3F 65 25 00 52 09 6A 90 00",
            "3F 65 25 00 A0 09 6A 90 00",
            "3F 65 25 00 AF 09 6A 90 00",
        ] {
            assert_eq!(atr_hint(&hex(atr)), AtrHint::Vitale1, "{atr}");
        }
        for atr in [
            "3F 65 25 00 30 09 09 90 00",
            "3F 65 25 00 2B 09 FA 90 00",
            "3F 65 25 00 53 09 6A 90 00",
            "3F 65 25 08 22 04 6C 90 00",
        ] {
            assert_eq!(atr_hint(&hex(atr)), AtrHint::Unknown, "{atr}");
        }
    }

    #[test]
    fn cps_atrs() {
        assert_eq!(
            atr_hint(&hex("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")),
            AtrHint::Cps
        );
        // Masked bytes may vary.
        assert_eq!(
            atr_hint(&hex("3B 11 22 33 44 00 12 25 00 64 80 55 66 77 00 90 00")),
            AtrHint::Cps
        );
        assert_eq!(
            atr_hint(&hex("3B AC 00 40 2A 01 12 25 00 64 80 00 03 10 00 90 00")),
            AtrHint::Unknown
        );
        assert_eq!(
            atr_hint(&hex("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00")),
            AtrHint::Cps
        );
    }

    #[test]
    fn phone_and_unknown() {
        assert_eq!(atr_hint(&PHONE_ATR), AtrHint::Phone);
        assert_eq!(atr_hint(&[]), AtrHint::Unknown);
        assert_eq!(
            atr_hint(&hex("3B 8F 80 01 80 4F 0C A0 00 00 03 06")),
            AtrHint::Unknown
        );
    }
}
