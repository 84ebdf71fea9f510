//! Data minimisation per origin: which parts of an identity a connection receives
//! (docs/security.md, "Scopes").
//!
//! | scope | what it grants |
//! |---|---|
//! | `identity` | `surname`, `givenName`, `birthDate`, `birthDateRaw`, `birthDateLunar` |
//! | `nir` | `nir`, `nirKeyValid` |
//! | `ins` | `ins` and the phone's `apcv` context |
//! | `sign` | `card.sign` and the content of its `signature.completed` |
//!
//! A withheld field keeps its place in the object as `null` (`apcv` is left out), so
//! every view has the shape of the full object and a client cannot mistake a
//! withheld field for a card that has none. Source, profile, reader, card type,
//! environment and beneficiary indexes are not personal data and always pass.
//!
//! The views serialize straight from the shared [`Identity`]: no second copy of a
//! name or NIR is made to withhold another field.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::card::{Beneficiary, Identity};
use crate::protocol::event::{Card, Reader};

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes(u8);

impl Scopes {
    /// Names, birth date.
    pub const IDENTITY: Scopes = Scopes(1);
    /// NIR and its key check.
    pub const NIR: Scopes = Scopes(2);
    /// INS and ApCV context.
    pub const INS: Scopes = Scopes(4);
    /// `card.sign` and `signature.completed`.
    pub const SIGN: Scopes = Scopes(8);
    /// Everything (a plain `allowed_origins` entry, a native client of an allowed user).
    pub const ALL: Scopes = Scopes(15);
    /// Nothing.
    pub const NONE: Scopes = Scopes(0);

    const NAMES: [(&'static str, Scopes); 4] = [
        ("identity", Scopes::IDENTITY),
        ("nir", Scopes::NIR),
        ("ins", Scopes::INS),
        ("sign", Scopes::SIGN),
    ];

    /// Parses one scope name.
    pub fn parse(name: &str) -> Option<Scopes> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    /// Parses a list of scope names; `Err` names the first unknown one.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Scopes, String> {
        names.iter().try_fold(Scopes::NONE, |acc, n| {
            Scopes::parse(n.as_ref()).map(|s| acc | s).ok_or_else(|| {
                format!(
                    "unknown scope {:?} (known: identity, nir, ins, sign)",
                    n.as_ref()
                )
            })
        })
    }

    /// Whether every scope of `other` is in `self`.
    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// The scope names, in a fixed order (for `hello` and logs).
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(_, s)| self.contains(*s))
            .map(|(n, _)| *n)
            .collect()
    }

    /// A small dense index (0..16), for caching one encoding per distinct view.
    pub fn index(self) -> usize {
        usize::from(self.0 & 15)
    }
}

impl std::ops::BitOr for Scopes {
    type Output = Scopes;
    fn bitor(self, rhs: Scopes) -> Scopes {
        Scopes(self.0 | rhs.0)
    }
}

/// Which view of the event stream a subscriber gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// In-process consumers (the `read` command, tests): everything, every signature.
    Full,
    /// The status page: event types and readers, never identity or signature data.
    Redacted,
    /// A WebSocket client: its origin's scopes, and signatures of its own binding.
    Client {
        /// What its origin may receive.
        scopes: Scopes,
        /// Its `card.sign` binding (`native:` or the origin).
        binding: String,
    },
}

impl View {
    /// The scopes this view receives (none for the status page).
    pub fn scopes(&self) -> Scopes {
        match self {
            View::Full => Scopes::ALL,
            View::Redacted => Scopes::NONE,
            View::Client { scopes, .. } => *scopes,
        }
    }
}

/// An identity as an origin with `scopes` may see it.
#[derive(Debug, Clone, Copy)]
pub struct ScopedIdentity<'a>(pub &'a Identity, pub Scopes);

struct ScopedBeneficiary<'a>(&'a Beneficiary, Scopes);

/// A reader (and its card's identity) as an origin with these scopes may see it.
#[derive(Debug, Clone, Copy)]
pub struct ScopedReader<'a>(pub &'a Reader, pub Scopes);

struct ScopedCard<'a>(&'a Card, Scopes);

fn when<T: Serialize>(allowed: bool, value: &T) -> Option<&T> {
    allowed.then_some(value)
}

impl Serialize for ScopedIdentity<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let ScopedIdentity(id, scopes) = *self;
        let apcv = id.apcv.as_ref().filter(|_| scopes.contains(Scopes::INS));
        let mut s = ser.serialize_struct("Identity", 7)?;
        s.serialize_field("source", &id.source)?;
        s.serialize_field("profile", &id.profile)?;
        s.serialize_field("reader", &id.reader)?;
        s.serialize_field("cardType", &id.card_type)?;
        s.serialize_field("environment", &id.environment)?;
        let beneficiaries: Vec<ScopedBeneficiary<'_>> = id
            .beneficiaries
            .iter()
            .map(|b| ScopedBeneficiary(b, scopes))
            .collect();
        s.serialize_field("beneficiaries", &beneficiaries)?;
        match apcv {
            Some(a) => s.serialize_field("apcv", a)?,
            None => s.skip_field("apcv")?,
        }
        s.end()
    }
}

impl Serialize for ScopedBeneficiary<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let ScopedBeneficiary(b, scopes) = *self;
        let person = scopes.contains(Scopes::IDENTITY);
        let nir = scopes.contains(Scopes::NIR);
        let mut s = ser.serialize_struct("Beneficiary", 9)?;
        s.serialize_field("index", &b.index)?;
        s.serialize_field("surname", &when(person, &b.surname))?;
        s.serialize_field("givenName", &when(person, &b.given_name))?;
        s.serialize_field("birthDate", &when(person, &b.birth_date))?;
        s.serialize_field("birthDateRaw", &when(person, &b.birth_date_raw))?;
        s.serialize_field("birthDateLunar", &when(person, &b.birth_date_lunar))?;
        s.serialize_field("nir", &when(nir, &b.nir))?;
        s.serialize_field("nirKeyValid", &when(nir, &b.nir_key_valid))?;
        let ins = b.ins.as_ref().filter(|_| scopes.contains(Scopes::INS));
        s.serialize_field("ins", &ins)?;
        s.end()
    }
}

impl Serialize for ScopedReader<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let ScopedReader(r, scopes) = *self;
        let mut s = ser.serialize_struct("Reader", 6)?;
        s.serialize_field("id", &r.id)?;
        s.serialize_field("name", &r.name)?;
        s.serialize_field("kind", &r.kind)?;
        s.serialize_field("contactless", &r.contactless)?;
        s.serialize_field("state", &r.state)?;
        s.serialize_field("card", &r.card.as_ref().map(|c| ScopedCard(c, scopes)))?;
        s.end()
    }
}

impl Serialize for ScopedCard<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let ScopedCard(c, scopes) = *self;
        let mut s = ser.serialize_struct("Card", 3)?;
        s.serialize_field("atr", &c.atr)?;
        s.serialize_field("cardType", &c.card_type)?;
        match &c.identity {
            Some(id) => s.serialize_field("identity", &ScopedIdentity(id, scopes))?,
            None => s.skip_field("identity")?,
        }
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{ApcvInfo, CardType, Environment, Ins, Sensitive, Source};
    use crate::protocol::event::{ReaderKind, ReaderState};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn phone_identity() -> Identity {
        Identity {
            source: Source::Apcv,
            profile: "reference-v1".into(),
            reader: "nfc:x".into(),
            card_type: CardType::Apcv,
            environment: Environment::Demo,
            beneficiaries: vec![crate::card::Beneficiary {
                index: 0,
                surname: Sensitive::new("DUPONT".into()),
                given_name: Sensitive::new("Zoé".into()),
                birth_date: Sensitive::new(Some("1980-02-03".into())),
                birth_date_raw: Sensitive::new("19800203".into()),
                birth_date_lunar: false,
                nir: Sensitive::new(Some("295109912611193".into())),
                nir_key_valid: Some(true),
                ins: Some(Ins {
                    matricule: Sensitive::new("295109912611193".into()),
                    oid: "1.2.250.1.213.1.4.11".into(),
                }),
            }],
            apcv: Some(ApcvInfo {
                context: Sensitive::new("CTX".into()),
                expires: "2030-01-01T00:00:00Z".into(),
            }),
        }
    }

    fn view(scopes: Scopes) -> Value {
        serde_json::to_value(ScopedIdentity(&phone_identity(), scopes)).expect("json")
    }

    #[test]
    fn all_scopes_is_exactly_the_full_identity() {
        let full = serde_json::to_value(phone_identity()).expect("json");
        assert_eq!(view(Scopes::ALL), full);
    }

    #[test]
    fn each_scope_withholds_its_fields_as_null() {
        let v = view(Scopes::IDENTITY);
        let b = &v["beneficiaries"][0];
        assert_eq!(b["surname"], "DUPONT");
        assert_eq!(b["birthDate"], "1980-02-03");
        assert_eq!(
            (&b["nir"], &b["nirKeyValid"], &b["ins"]),
            (&Value::Null, &Value::Null, &Value::Null)
        );
        assert!(v.get("apcv").is_none());

        let v = view(Scopes::NIR);
        let b = &v["beneficiaries"][0];
        assert_eq!(b["nir"], "295109912611193");
        assert_eq!(b["nirKeyValid"], true);
        for k in [
            "surname",
            "givenName",
            "birthDate",
            "birthDateRaw",
            "birthDateLunar",
            "ins",
        ] {
            assert_eq!(b[k], Value::Null, "{k}");
        }

        let v = view(Scopes::INS);
        assert_eq!(v["beneficiaries"][0]["ins"]["matricule"], "295109912611193");
        assert_eq!(v["apcv"]["context"], "CTX");
        assert_eq!(v["beneficiaries"][0]["nir"], Value::Null);

        let v = view(Scopes::NONE);
        assert_eq!(v["beneficiaries"][0]["index"], 0);
        assert_eq!(v["environment"], "demo");
        let text = v.to_string();
        for secret in ["DUPONT", "Zoé", "1980", "2951099", "CTX"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn readers_carry_the_scoped_identity() {
        let reader = Reader {
            id: "sim:0".into(),
            name: "x".into(),
            kind: ReaderKind::Simulated,
            contactless: true,
            state: ReaderState::Ready,
            card: Some(Card {
                atr: "3B".into(),
                card_type: CardType::Apcv,
                identity: Some(Arc::new(phone_identity())),
            }),
        };
        let full = serde_json::to_value(&reader).expect("json");
        assert_eq!(
            serde_json::to_value(ScopedReader(&reader, Scopes::ALL)).expect("json"),
            full
        );
        let v = serde_json::to_value(ScopedReader(&reader, Scopes::IDENTITY)).expect("json");
        assert_eq!(
            v["card"]["identity"]["beneficiaries"][0]["nir"],
            Value::Null
        );
        let empty = Reader {
            card: None,
            ..reader
        };
        assert_eq!(
            serde_json::to_value(ScopedReader(&empty, Scopes::NONE)).expect("json"),
            serde_json::to_value(&empty).expect("json")
        );
    }

    #[test]
    fn scope_lists_parse_and_name_the_unknown() {
        assert_eq!(
            Scopes::parse_list(&["identity", "sign"]),
            Ok(Scopes::IDENTITY | Scopes::SIGN)
        );
        assert_eq!(Scopes::parse_list::<&str>(&[]), Ok(Scopes::NONE));
        let e = Scopes::parse_list(&["identity", "NIR"]).expect_err("case matters");
        assert!(e.contains("\"NIR\""), "{e}");
        assert_eq!(Scopes::ALL.names(), ["identity", "nir", "ins", "sign"]);
        assert_eq!(json!(Scopes::NIR.names()), json!(["nir"]));
    }
}
