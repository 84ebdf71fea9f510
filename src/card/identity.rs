//! The `Identity` object of product.md §4.3, identical whatever its source.
//!
//! Every field that is health data is wrapped in [`Sensitive`], whose `Debug` and
//! `Display` print a placeholder and whose memory is zeroed on drop: an identity
//! cannot reach a log line by accident, only the protocol serializer sees it.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::CardType;

/// A value that is health data: serialized as itself, printed as `<redacted>`, zeroed
/// on drop.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T: Zeroize>(T);

impl<T: Zeroize> Sensitive<T> {
    /// Wraps a sensitive value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the protocol serializer and for tests.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T: Zeroize> Drop for Sensitive<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> std::fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Zeroize> std::fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    /// A Carte Vitale in a contact reader.
    #[serde(rename = "vitale-card")]
    VitaleCard,
    /// A phone running the appli carte Vitale (or any app speaking a phone profile).
    #[serde(rename = "apcv")]
    Apcv,
}

/// Which environment the identity belongs to (production, test, demo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Real patients.
    Production,
    /// Test identities.
    Test,
    /// Demo identities.
    Demo,
    /// The source does not say (always the case for a Carte Vitale read publicly).
    Unknown,
}

/// One patient read from a card or phone. Serialized field names are the protocol's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `vitale-card` or `apcv`.
    pub source: Source,
    /// `vitale2-public` or a phone profile name such as `reference-v1`.
    pub profile: String,
    /// The reader id the identity was read in.
    pub reader: String,
    /// The card type that produced it.
    pub card_type: CardType,
    /// Environment stated by the source.
    pub environment: Environment,
    /// Beneficiaries in card order.
    pub beneficiaries: Vec<Beneficiary>,
    /// Phone-only context.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub apcv: Option<ApcvInfo>,
}

/// One beneficiary (the insured person or a dependant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Beneficiary {
    /// Position in card order, from 0.
    pub index: u32,
    /// Family name, UTF-8, trimmed.
    pub surname: Sensitive<String>,
    /// Given name, UTF-8, trimmed.
    pub given_name: Sensitive<String>,
    /// `YYYY-MM-DD`, or `None` for a lunar (partially unknown) or unparsable date.
    pub birth_date: Sensitive<Option<String>>,
    /// The date as stored on the card (`AAAAMMJJ`).
    pub birth_date_raw: Sensitive<String>,
    /// Day or month is `00` on the card.
    pub birth_date_lunar: bool,
    /// 15-character NIR (13 + key), or `None` when the card has none for this person.
    pub nir: Sensitive<Option<String>>,
    /// Whether the NIR key checks; `None` without a NIR.
    pub nir_key_valid: Option<bool>,
    /// INS, only when the source itself carries one (never derived from a card NIR).
    pub ins: Option<Ins>,
}

/// An INS (identifiant national de santé) as carried by the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ins {
    /// The 15-character matricule.
    pub matricule: Sensitive<String>,
    /// The OID naming its kind (NIR, NIA, test, demo).
    pub oid: String,
}

/// Phone-only data: the opaque ApCV context and its expiry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApcvInfo {
    /// Opaque context string from the phone.
    pub context: Sensitive<String>,
    /// RFC 3339 UTC expiry.
    pub expires: String,
}

impl Environment {
    /// The environment an INS OID announces (cards.md §2).
    pub fn from_ins_oid(oid: &str) -> Self {
        match oid {
            "1.2.250.1.213.1.4.8" | "1.2.250.1.213.1.4.9" => Environment::Production,
            "1.2.250.1.213.1.4.10" => Environment::Test,
            "1.2.250.1.213.1.4.11" => Environment::Demo,
            _ => Environment::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_sensitive_values() {
        let b = Beneficiary {
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
                oid: "1.2.250.1.213.1.4.8".into(),
            }),
        };
        let shown = format!("{b:?} {b:#?}");
        for secret in ["DUPONT", "Zoé", "1980", "19800203", "2951099"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
        let json = serde_json::to_string(&b).expect("serializes");
        assert!(json.contains("\"surname\":\"DUPONT\""), "{json}");
        assert!(json.contains("\"givenName\":\"Zoé\""), "{json}");
        assert!(json.contains("\"nirKeyValid\":true"), "{json}");
    }

    #[test]
    fn environment_from_oid() {
        assert_eq!(
            Environment::from_ins_oid("1.2.250.1.213.1.4.8"),
            Environment::Production
        );
        assert_eq!(
            Environment::from_ins_oid("1.2.250.1.213.1.4.9"),
            Environment::Production
        );
        assert_eq!(
            Environment::from_ins_oid("1.2.250.1.213.1.4.10"),
            Environment::Test
        );
        assert_eq!(
            Environment::from_ins_oid("1.2.250.1.213.1.4.11"),
            Environment::Demo
        );
        assert_eq!(Environment::from_ins_oid("1.2.3"), Environment::Unknown);
    }
}
