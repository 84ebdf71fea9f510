//! The virtual phone: an app speaking phone profile reference-v1 (cards.md §4) with its
//! own P-256 key, described by a TOML file. The same model answers in demo mode (through
//! [`crate::sim::SimChannel`]) and behind the PN532 emulator.
//!
//! ```toml
//! consent = "accept"            # or "refuse": the holder's answer to a signature request
//! locked = false                # true: the app answers 69 82 (CARD_LOCKED)
//! seed = "demo"                 # P-256 key derived from this seed, or:
//! # private_key = "<64 hex digits>"
//! context = "opaque ApCV context"
//! expires = "20301231235959"    # AAAAMMJJhhmmss UTC
//!
//! [[beneficiary]]
//! surname = "DUPONT"
//! given_name = "Zoé"
//! birth_date = "19800203"
//! nir = "295109912611193"
//! ins = "295109912611193"
//! ins_oid = "1.2.250.1.213.1.4.11"
//! ```

use std::path::Path;

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::VirtualCard;
use crate::card::phone::{
    DEFAULT_AID, GET_IDENTITY, GET_PUBLIC_KEY, SELECT_ANSWER, SIGN_HEADER, SW_LOCKED, SW_REFUSED,
};
use crate::codec::{latin1, tlv};

/// What an ISO 14443-4 phone looks like to a PC/SC contactless reader.
pub const PHONE_ATR: [u8; 5] = [0x3B, 0x80, 0x80, 0x01, 0x01];

/// The holder's answer to signature requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    /// Signs.
    #[default]
    Accept,
    /// Answers `69 85`.
    Refuse,
}

/// A phone description (TOML), see the module docs.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneDescription {
    /// Answer to signature requests.
    #[serde(default)]
    pub consent: Consent,
    /// App locked: every command after SELECT answers `69 82`.
    #[serde(default)]
    pub locked: bool,
    /// P-256 private scalar, 32 bytes hex.
    #[serde(default)]
    pub private_key: Option<String>,
    /// Seed the private key is derived from when `private_key` is absent.
    #[serde(default)]
    pub seed: Option<String>,
    /// ApCV context (opaque UTF-8, ≤ 512 bytes).
    pub context: String,
    /// Context expiry, `AAAAMMJJhhmmss` UTC.
    pub expires: String,
    /// AID the app registers (hex); reference-v1's by default.
    #[serde(default)]
    pub aid: Option<String>,
    /// Beneficiaries in order.
    #[serde(rename = "beneficiary")]
    pub beneficiaries: Vec<PhoneBeneficiary>,
}

/// One beneficiary of a phone description. Text is written ISO-8859-1 on the wire.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneBeneficiary {
    /// Family name.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// `AAAAMMJJ` (day or month `00` for lunar dates).
    pub birth_date: String,
    /// NIR, 15 characters, if any.
    #[serde(default)]
    pub nir: Option<String>,
    /// INS matricule, 15 characters.
    pub ins: String,
    /// INS OID (`1.2.250.1.213.1.4.8` … `.11`).
    pub ins_oid: String,
}

impl std::fmt::Debug for PhoneDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Descriptions hold (fake but realistic) identities and keys: never print them.
        f.debug_struct("PhoneDescription")
            .field("beneficiaries", &self.beneficiaries.len())
            .field("consent", &self.consent)
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

impl PhoneDescription {
    /// Parses and checks a description.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let desc: PhoneDescription = toml::from_str(text).map_err(|e| e.to_string())?;
        desc.validate()?;
        Ok(desc)
    }

    /// Reads a description file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The phone tapped in demo mode: demo INS OID, a key derived from a fixed seed,
    /// and a context long enough that the identity needs GET RESPONSE chaining.
    pub fn demo() -> Self {
        let context = format!("demo-apcv-context;{}", "0123456789abcdef".repeat(16));
        PhoneDescription {
            consent: Consent::Accept,
            locked: false,
            private_key: None,
            seed: Some("vitale-bridge demo phone".into()),
            context,
            expires: "20351231235959".into(),
            aid: None,
            beneficiaries: vec![
                PhoneBeneficiary {
                    surname: "DÉMO".into(),
                    given_name: "Zoé".into(),
                    birth_date: "19800203".into(),
                    nir: Some("295109912611193".into()),
                    ins: "295109912611193".into(),
                    ins_oid: "1.2.250.1.213.1.4.11".into(),
                },
                PhoneBeneficiary {
                    surname: "DÉMO".into(),
                    given_name: "Léo".into(),
                    birth_date: "20150000".into(),
                    nir: None,
                    ins: "253072A07300443".into(),
                    ins_oid: "1.2.250.1.213.1.4.11".into(),
                },
            ],
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.beneficiaries.is_empty() {
            return Err("at least one [[beneficiary]] is needed".into());
        }
        if self.context.len() > crate::card::phone::MAX_CONTEXT {
            return Err("context is longer than 512 bytes".into());
        }
        if self.expires.len() != 14 || !self.expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err("expires must be AAAAMMJJhhmmss".into());
        }
        for (i, b) in self.beneficiaries.iter().enumerate() {
            for (what, text) in [("surname", &b.surname), ("given_name", &b.given_name)] {
                if text.chars().any(|c| u32::from(c) > 0xFF) {
                    return Err(format!("beneficiary {i}: {what} is not ISO-8859-1"));
                }
            }
            if b.ins.len() != 15 || !b.ins.is_ascii() {
                return Err(format!(
                    "beneficiary {i}: ins must have 15 ASCII characters"
                ));
            }
        }
        self.aid()?;
        self.signing_key()?;
        Ok(())
    }

    fn aid(&self) -> Result<Vec<u8>, String> {
        match &self.aid {
            None => Ok(DEFAULT_AID.to_vec()),
            Some(hex_aid) => hex::decode(hex_aid.replace(' ', ""))
                .map_err(|e| format!("aid: {e}"))
                .and_then(|aid| {
                    if (5..=16).contains(&aid.len()) {
                        Ok(aid)
                    } else {
                        Err("aid must have 5 to 16 bytes".into())
                    }
                }),
        }
    }

    /// The phone's key: `private_key`, or derived from `seed` (SHA-256 of the seed,
    /// re-hashed in the negligible case it is not a valid scalar).
    pub fn signing_key(&self) -> Result<SigningKey, String> {
        if let Some(hex_key) = &self.private_key {
            let bytes = hex::decode(hex_key).map_err(|e| format!("private_key: {e}"))?;
            return SigningKey::from_slice(&bytes)
                .map_err(|_| "private_key is not a valid P-256 scalar".into());
        }
        let seed = self
            .seed
            .as_deref()
            .unwrap_or("vitale-bridge virtual phone");
        let mut material: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
        for _ in 0..8 {
            if let Ok(key) = SigningKey::from_slice(&material) {
                return Ok(key);
            }
            material = Sha256::digest(material).into();
        }
        Err("seed does not give a valid P-256 key".into())
    }

    /// SEC1 uncompressed public key of the phone.
    pub fn public_key(&self) -> Result<Vec<u8>, String> {
        Ok(self.signing_key()?.verifying_key().to_sec1_bytes().to_vec())
    }

    /// The identity answer: `65` templates, then `DF21` and `DF22`.
    pub fn identity_tlv(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.beneficiaries {
            let mut template = Vec::new();
            template.extend(tlv::encode(0x80, &latin1::encode(&b.surname)));
            template.extend(tlv::encode(0x81, &latin1::encode(&b.given_name)));
            template.extend(tlv::encode(0x82, b.birth_date.as_bytes()));
            if let Some(nir) = &b.nir {
                template.extend(tlv::encode(0x93, nir.as_bytes()));
            }
            template.extend(tlv::encode(0xDF23, b.ins.as_bytes()));
            template.extend(tlv::encode(0xDF24, b.ins_oid.as_bytes()));
            out.extend(tlv::encode(0x65, &template));
        }
        out.extend(tlv::encode(0xDF21, self.context.as_bytes()));
        out.extend(tlv::encode(0xDF22, self.expires.as_bytes()));
        out
    }
}

/// A phone app speaking reference-v1, answering 61XX for answers over 256 bytes.
pub struct VirtualPhone {
    aid: Vec<u8>,
    identity: Vec<u8>,
    key: SigningKey,
    public_key: Vec<u8>,
    /// Answer to signature requests (can change while the phone is in the field).
    pub consent: Consent,
    /// App locked.
    pub locked: bool,
    selected: bool,
    pending: Vec<u8>,
}

impl std::fmt::Debug for VirtualPhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualPhone")
            .field("consent", &self.consent)
            .field("locked", &self.locked)
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl VirtualPhone {
    /// A phone from a checked description.
    pub fn new(desc: &PhoneDescription) -> Result<Self, String> {
        desc.validate()?;
        let key = desc.signing_key()?;
        let public_key = key.verifying_key().to_sec1_bytes().to_vec();
        Ok(VirtualPhone {
            aid: desc.aid()?,
            identity: desc.identity_tlv(),
            key,
            public_key,
            consent: desc.consent,
            locked: desc.locked,
            selected: false,
            pending: Vec::new(),
        })
    }

    /// The demo phone.
    pub fn demo() -> Self {
        match Self::new(&PhoneDescription::demo()) {
            Ok(phone) => phone,
            // The demo description is a constant checked by the tests below.
            Err(e) => unreachable!("demo phone description is invalid: {e}"),
        }
    }

    /// The phone's SEC1 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// Sends `data` and `90 00`, or its first 256 bytes and `61 XX`.
    fn answer_long(&mut self, mut data: Vec<u8>, le: usize) -> Vec<u8> {
        let first = data.len().min(le);
        self.pending = data.split_off(first);
        match self.pending.len() {
            0 => with_sw(data, 0x9000),
            // `61 00`: 256 or more bytes wait (ISO 7816-4).
            n => with_sw(data, 0x6100 | (n.min(256) & 0xFF) as u16),
        }
    }

    fn sign(&self, capdu: &[u8]) -> Vec<u8> {
        // 80 2A 9E 9A 20 <32 bytes> [00]
        let digest = match capdu.get(5..37) {
            Some(d) if capdu.len() == 37 || capdu.len() == 38 => d,
            _ => return sw(0x6700),
        };
        if self.consent == Consent::Refuse {
            return sw(SW_REFUSED);
        }
        let signature: Result<Signature, _> = self.key.sign_prehash(digest);
        match signature {
            Ok(sig) => with_sw(sig.to_bytes().to_vec(), 0x9000),
            Err(_) => sw(0x6F00),
        }
    }
}

fn sw(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

fn with_sw(mut data: Vec<u8>, sw: u16) -> Vec<u8> {
    data.extend_from_slice(&sw.to_be_bytes());
    data
}

/// Le of a case-2 short APDU: `00` means 256.
fn short_le(capdu: &[u8]) -> usize {
    match capdu {
        [_, _, _, _, 0] => 256,
        [_, _, _, _, le] => usize::from(*le),
        _ => 256,
    }
}

impl VirtualCard for VirtualPhone {
    fn atr(&self) -> Vec<u8> {
        PHONE_ATR.to_vec()
    }

    fn process(&mut self, capdu: &[u8]) -> Vec<u8> {
        let header = capdu.get(..4).unwrap_or(capdu);
        // GET RESPONSE continues a pending answer whatever else is selected.
        if header == [0x00, 0xC0, 0x00, 0x00] {
            if self.pending.is_empty() {
                return sw(0x6985);
            }
            let rest = std::mem::take(&mut self.pending);
            return self.answer_long(rest, short_le(capdu));
        }
        self.pending.clear();
        if header == [0x00, 0xA4, 0x04, 0x00] {
            let aid = capdu
                .get(4)
                .and_then(|&lc| capdu.get(5..5 + usize::from(lc)));
            self.selected = aid == Some(self.aid.as_slice());
            return if self.selected {
                with_sw(SELECT_ANSWER.to_vec(), 0x9000)
            } else {
                sw(0x6A82)
            };
        }
        if !self.selected {
            return sw(0x6D00);
        }
        if capdu.len() >= 2 && capdu.first() == Some(&0x80) && self.locked {
            return sw(SW_LOCKED);
        }
        if capdu == GET_IDENTITY {
            let identity = self.identity.clone();
            return self.answer_long(identity, 256);
        }
        if capdu == GET_PUBLIC_KEY {
            return with_sw(tlv::encode(0x86, &self.public_key), 0x9000);
        }
        if capdu.starts_with(&SIGN_HEADER) {
            return self.sign(capdu);
        }
        if capdu.first() == Some(&0x80) {
            sw(0x6D00)
        } else {
            sw(0x6E00)
        }
    }

    fn reset(&mut self) {
        self.selected = false;
        self.pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read_to_string(path).expect("test data")
    }

    #[test]
    fn example_descriptions_load() {
        let phone = PhoneDescription::from_toml(&data("phone.toml")).expect("phone.toml");
        assert_eq!(phone.consent, Consent::Accept);
        assert!(
            phone.identity_tlv().len() > 256,
            "phone.toml must need GET RESPONSE"
        );
        let refusing =
            PhoneDescription::from_toml(&data("phone-refuse.toml")).expect("phone-refuse.toml");
        assert_eq!(refusing.consent, Consent::Refuse);
        let key = refusing.signing_key().expect("pinned key");
        assert_eq!(
            hex::encode(key.to_bytes()),
            "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
        );
        assert!(VirtualPhone::new(&PhoneDescription::demo()).is_ok());
    }

    #[test]
    fn invalid_descriptions_are_rejected() {
        let base = data("phone-refuse.toml");
        for (from, to) in [
            ("Anaïs", "Anaïs 🙂"),
            ("ins = \"253072A07300443\"", "ins = \"2530\""),
            ("expires = \"20291130120000\"", "expires = \"2029-11-30\""),
            ("consent = \"refuse\"", "consent = \"maybe\""),
            ("consent = \"refuse\"", "colour = \"blue\""),
        ] {
            let text = base.replace(from, to);
            assert_ne!(text, base, "{from}");
            assert!(PhoneDescription::from_toml(&text).is_err(), "{to}");
        }
        let long = base.replace(
            "demo-context-refusing-phone",
            &"x".repeat(crate::card::phone::MAX_CONTEXT + 1),
        );
        assert!(PhoneDescription::from_toml(&long).is_err());
    }

    #[test]
    fn debug_output_holds_no_identity_or_key() {
        let desc = PhoneDescription::from_toml(&data("phone-refuse.toml")).expect("loads");
        let shown = format!("{desc:?} {:?}", VirtualPhone::new(&desc).expect("phone"));
        for secret in ["DÉMO", "Anaïs", "253072A07300443", "c9afa9d8"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
