//! Phone profile `reference-v1` (cards.md §4): the open profile of this project.
//!
//! | step       | C-APDU                          | R-APDU                             |
//! |------------|---------------------------------|------------------------------------|
//! | select     | `00 A4 04 00 09 <AID> 00`       | `80 01 01` `90 00`                 |
//! | identity   | `80 CA 00 65 00`                | BER-TLV (61XX chaining)            |
//! | public key | `80 CA 00 86 00`                | `86 41 04 X Y`                     |
//! | sign       | `80 2A 9E 9A 20 <digest> 00`    | `r ‖ s`; `69 85` refused; `69 82` locked |

use super::PhoneProfile;
use crate::card::apdu::transceive;
use crate::card::{
    ApcvInfo, Beneficiary, CardChannel, CardError, CardType, Environment, Identity, Ins,
    ReadContext, Sensitive, SignOutcome, Source,
};
use crate::codec::{date, latin1, nir, tlv};

/// The reference-v1 AID: proprietary range, ASCII "vbridge" + profile 01.
pub const DEFAULT_AID: [u8; 9] = [0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01];

/// What the phone answers to SELECT: tag `80`, length 1, profile version 1.
pub const SELECT_ANSWER: [u8; 3] = [0x80, 0x01, 0x01];
/// GET DATA identity.
pub const GET_IDENTITY: [u8; 5] = [0x80, 0xCA, 0x00, 0x65, 0x00];
/// GET DATA public key.
pub const GET_PUBLIC_KEY: [u8; 5] = [0x80, 0xCA, 0x00, 0x86, 0x00];
/// Header of PERFORM SECURITY OPERATION: compute digital signature, digest follows.
pub const SIGN_HEADER: [u8; 5] = [0x80, 0x2A, 0x9E, 0x9A, 0x20];

/// The holder refused on the phone.
pub const SW_REFUSED: u16 = 0x6985;
/// The phone app is locked.
pub const SW_LOCKED: u16 = 0x6982;

/// Largest ApCV context accepted (cards.md §4).
pub const MAX_CONTEXT: usize = 512;

const PROFILE: &str = "reference-v1";

/// The open profile of cards.md §4.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceV1;

impl PhoneProfile for ReferenceV1 {
    fn name(&self) -> &'static str {
        PROFILE
    }

    fn recognises(&self, select_data: &[u8]) -> bool {
        select_data == SELECT_ANSWER
    }

    fn read(
        &self,
        channel: &mut dyn CardChannel,
        ctx: &ReadContext,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<Identity, CardError> {
        progress(1, 2);
        let response = transceive(channel, &GET_IDENTITY)?;
        check(response.sw, "GET DATA identity")?;
        progress(2, 2);
        parse_identity(&response.data, &ctx.reader)
    }

    fn sign(
        &self,
        channel: &mut dyn CardChannel,
        digest: &[u8; 32],
    ) -> Result<SignOutcome, CardError> {
        let response = transceive(channel, &GET_PUBLIC_KEY)?;
        check(response.sw, "GET DATA public key")?;
        let public_key = parse_public_key(&response.data)?;
        let mut command = SIGN_HEADER.to_vec();
        command.extend_from_slice(digest);
        command.push(0x00);
        let mut response = transceive(channel, &command)?;
        check(response.sw, "PSO compute digital signature")?;
        if response.data.len() != 64 {
            return Err(CardError::Malformed(format!(
                "signature of {} bytes, expected r ‖ s (64)",
                response.data.len()
            )));
        }
        Ok(SignOutcome {
            public_key,
            signature: response.take_data(),
        })
    }
}

/// One level of BER-TLV as `(tag, value)` pairs (padding skipped by the codec).
fn tlv_items(data: &[u8]) -> Result<Vec<(u16, &[u8])>, CardError> {
    tlv::objects(data)
        .map(|o| {
            o.map(|t| (t.tag.0, t.value))
                .map_err(|e| CardError::Malformed(format!("identity TLV: {e}")))
        })
        .collect()
}

fn check(sw: u16, command: &'static str) -> Result<(), CardError> {
    match sw {
        0x9000 => Ok(()),
        SW_REFUSED => Err(CardError::UserRefused),
        SW_LOCKED => Err(CardError::Locked),
        sw => Err(CardError::Status { command, sw }),
    }
}

/// `86 41 04 X Y` → the 65-byte SEC1 uncompressed point.
fn parse_public_key(data: &[u8]) -> Result<Vec<u8>, CardError> {
    let items = tlv_items(data)?;
    match items.as_slice() {
        [(0x86, key)] if key.len() == 65 && key.first() == Some(&0x04) => Ok(key.to_vec()),
        _ => Err(CardError::Malformed(
            "public key is not `86 41 04 X Y`".into(),
        )),
    }
}

/// Parses the identity answer: `65` templates, then `DF21` context and `DF22` expiry.
pub(crate) fn parse_identity(data: &[u8], reader: &str) -> Result<Identity, CardError> {
    let malformed = |why: String| CardError::Malformed(why);
    let mut beneficiaries = Vec::new();
    let mut context = None;
    let mut expires = None;
    for (tag, value) in tlv_items(data)? {
        match tag {
            0x65 => {
                let index = beneficiaries.len() as u32;
                beneficiaries.push(parse_beneficiary(index, value)?);
            }
            0xDF21 => {
                if value.len() > MAX_CONTEXT {
                    return Err(malformed(format!(
                        "ApCV context of {} bytes (at most {MAX_CONTEXT})",
                        value.len()
                    )));
                }
                let text = std::str::from_utf8(value)
                    .map_err(|_| malformed("ApCV context is not UTF-8".into()))?;
                context = Some(text.to_string());
            }
            0xDF22 => expires = Some(parse_expiry(value)?),
            // Unknown objects are skipped: later profile minor versions may add some.
            _ => {}
        }
    }
    if beneficiaries.is_empty() {
        return Err(malformed("identity without a beneficiary template".into()));
    }
    let environment = beneficiaries
        .iter()
        .find_map(|b| b.ins.as_ref())
        .map_or(Environment::Unknown, |ins| {
            Environment::from_ins_oid(&ins.oid)
        });
    let apcv = match (context, expires) {
        (Some(context), Some(expires)) => Some(ApcvInfo {
            context: Sensitive::new(context),
            expires,
        }),
        _ => {
            return Err(malformed(
                "identity without DF21 context and DF22 expiry".into(),
            ));
        }
    };
    Ok(Identity {
        source: Source::Apcv,
        profile: PROFILE.to_string(),
        reader: reader.to_string(),
        card_type: CardType::Apcv,
        environment,
        beneficiaries,
        apcv,
    })
}

fn parse_beneficiary(index: u32, template: &[u8]) -> Result<Beneficiary, CardError> {
    let mut surname = None;
    let mut given_name = None;
    let mut birth = None;
    let mut nir = None;
    let mut matricule = None;
    let mut oid = None;
    for (tag, value) in tlv_items(template)? {
        match tag {
            0x80 => surname = Some(latin1::decode_trimmed(value)),
            0x81 => given_name = Some(latin1::decode_trimmed(value)),
            0x82 => birth = Some(date::parse(value)),
            0x93 => nir = Some(latin1::decode_trimmed(value)).filter(|n| !n.is_empty()),
            0xDF23 => matricule = Some(ascii(value, "INS matricule")?),
            0xDF24 => oid = Some(ascii(value, "INS OID")?),
            _ => {}
        }
    }
    let ins = match (matricule, oid) {
        (Some(matricule), Some(oid)) if matricule.len() == 15 => Some(Ins {
            matricule: Sensitive::new(matricule),
            oid,
        }),
        (None, None) => None,
        _ => {
            return Err(CardError::Malformed(format!(
                "beneficiary {index}: INS needs a 15-character DF23 and a DF24 OID"
            )));
        }
    };
    let birth = birth.unwrap_or_else(|| date::parse(&[]));
    let nir_key_valid = nir.as_deref().map(nir::is_valid);
    Ok(Beneficiary {
        index,
        surname: Sensitive::new(surname.unwrap_or_default()),
        given_name: Sensitive::new(given_name.unwrap_or_default()),
        birth_date: Sensitive::new(birth.iso.clone()),
        birth_date_raw: Sensitive::new(birth.raw.clone()),
        birth_date_lunar: birth.lunar,
        nir: Sensitive::new(nir),
        nir_key_valid,
        ins,
    })
}

fn ascii(value: &[u8], what: &str) -> Result<String, CardError> {
    if value.is_ascii() {
        Ok(String::from_utf8_lossy(value).trim().to_string())
    } else {
        Err(CardError::Malformed(format!("{what} is not ASCII")))
    }
}

/// `AAAAMMJJhhmmss` (UTC) → RFC 3339 `YYYY-MM-DDThh:mm:ssZ`.
fn parse_expiry(value: &[u8]) -> Result<String, CardError> {
    let bad = || CardError::Malformed("DF22 expiry is not AAAAMMJJhhmmss".into());
    if value.len() != 14 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let fmt = time::macros::format_description!("[year][month][day][hour][minute][second]");
    let at = time::PrimitiveDateTime::parse(text, &fmt).map_err(|_| bad())?;
    let out = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.format(&out).map_err(|_| bad())
}
