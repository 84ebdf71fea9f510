//! A virtual Carte Vitale as written in a card file (TOML). The format is documented
//! for integrators in `docs/card-format.md`.

use serde::{Deserialize, Serialize};

/// Vitale 2 ATR used when a card file says `atr = "vitale2"` (cards.md §1, T=0 only).
pub const VITALE2_ATR: [u8; 10] = [0x3B, 0x75, 0x13, 0x00, 0x00, 0x44, 0x09, 0xEA, 0x90, 0x00];

/// A whole card: what it holds and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardDescription {
    /// `"vitale2"` (the default) or the ATR in hex, bytes optionally space-separated.
    #[serde(default = "default_atr")]
    pub atr: String,
    /// Which public read paths the card answers.
    #[serde(default)]
    pub paths: ReadPaths,
    /// How the card answers an Le that does not match what it has (T=0 behaviour).
    #[serde(default)]
    pub t0: T0Mode,
    /// Card validity start `AAAAMMJJ` (`66/80`), on the pointer-map path.
    #[serde(default)]
    pub validity_start: Option<String>,
    /// Extra files listed in the pointer map that answer `69 82` (protected data).
    #[serde(default)]
    pub protected_efs: Vec<ProtectedEf>,
    /// A misbehaviour for robustness tests; `none` for a well-behaved card.
    #[serde(default)]
    pub hostile: Hostile,
    /// The insured person and dependants, in card order.
    #[serde(default, rename = "beneficiary")]
    pub beneficiaries: Vec<BeneficiaryDescription>,
}

/// One person on the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryDescription {
    /// Family name (stored ISO-8859-1 on the card).
    pub surname: String,
    /// Given name (stored ISO-8859-1 on the card).
    pub given_name: String,
    /// Birth date as stored, `AAAAMMJJ`; day or month `00` for a lunar date.
    pub birth_date: String,
    /// 15-character NIR (13 + key; `2A`/`2B` allowed); absent for a child without one.
    /// The key is not checked, so a card with a wrong key can be described.
    #[serde(default)]
    pub nir: Option<String>,
    /// Nationality code (`90`), optional.
    #[serde(default)]
    pub nationality: Option<String>,
}

/// A file of the pointer map that refuses to be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedEf {
    /// 8-character ASCII name in the map (shorter names are space padded).
    pub name: String,
    /// EF id, 4 hex digits (e.g. `"2010"`).
    pub ef: String,
}

/// Which of cards.md §1's read paths the card supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadPaths {
    /// Direct SFI reads only (no EF `2001`).
    Direct,
    /// Pointer map only (READ BINARY by SFI is refused).
    PointerMap,
    /// Both, giving the same identity.
    #[default]
    Both,
}

/// How a card answers READ BINARY when Le does not match the data it has, and
/// whether data comes directly or through GET RESPONSE (ISO 7816-3 T=0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum T0Mode {
    /// Returns what it has with `90 00` (as if the reader fixed Le up).
    Plain,
    /// Answers `6C XX` when Le asks for more than remains; the host resends with Le = XX.
    #[default]
    WrongLength,
    /// Answers `61 XX` to every command with data (FCI on SELECT too); the host
    /// fetches it with GET RESPONSE `00 C0 00 00 XX`.
    GetResponse,
}

/// Misbehaviours for robustness tests (every one must end in a clean error).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hostile {
    /// A well-behaved card.
    #[default]
    None,
    #[serde(rename = "endless-61")]
    /// Every answer is `61 10`, and so is every GET RESPONSE, forever.
    Endless61,
    /// The identity files start with a template whose length is `82 FF FF`.
    BadLength,
    /// The identity files hold 1,000 nested constructed templates.
    DeepNesting,
    /// Answers nothing usable: an empty response (no status word) to every APDU.
    Mute,
    /// Every identity file answers `69 82` (security status not satisfied).
    Protected,
}

impl Hostile {
    /// Every mode, with its card-file / command-line spelling.
    pub const ALL: [(Hostile, &'static str); 6] = [
        (Hostile::None, "none"),
        (Hostile::Endless61, "endless-61"),
        (Hostile::BadLength, "bad-length"),
        (Hostile::DeepNesting, "deep-nesting"),
        (Hostile::Mute, "mute"),
        (Hostile::Protected, "protected"),
    ];
}

impl std::str::FromStr for Hostile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Hostile::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(h, _)| *h)
            .ok_or_else(|| {
                let names: Vec<&str> = Hostile::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown hostile mode {s:?}; one of {}", names.join(", "))
            })
    }
}

fn default_atr() -> String {
    "vitale2".into()
}

impl CardDescription {
    /// Parses and validates a card file. Errors name the offending key
    /// (e.g. `beneficiary[1].birth_date: …`).
    pub fn from_toml(text: &str) -> Result<CardDescription, String> {
        let desc: CardDescription = toml::from_str(text).map_err(|e| {
            // toml's message already names unknown keys and bad types; keep its text
            // but drop the source excerpt, which could echo identity data.
            e.message().trim().to_string()
        })?;
        desc.validate()?;
        Ok(desc)
    }

    /// Reads and parses a card file.
    pub fn from_file(path: &std::path::Path) -> Result<CardDescription, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read card file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks what serde cannot: formats, lengths, ISO-8859-1.
    pub fn validate(&self) -> Result<(), String> {
        self.atr_bytes().map_err(|e| format!("atr: {e}"))?;
        if let Some(v) = &self.validity_start {
            check_date(v).map_err(|e| format!("validity_start: {e}"))?;
        }
        for (i, p) in self.protected_efs.iter().enumerate() {
            let key = |k: &str| format!("protected_efs[{i}].{k}");
            if p.name.is_empty() || p.name.len() > 8 || !p.name.is_ascii() {
                return Err(format!("{}: 1 to 8 ASCII characters", key("name")));
            }
            let ef = parse_ef(&p.ef).map_err(|e| format!("{}: {e}", key("ef")))?;
            if super::layout::RESERVED_EFS.contains(&ef) {
                return Err(format!(
                    "{}: {:04X} is used by the card itself",
                    key("ef"),
                    ef
                ));
            }
        }
        for (i, b) in self.beneficiaries.iter().enumerate() {
            let key = |k: &str| format!("beneficiary[{i}].{k}");
            for (k, v, max) in [
                ("surname", &b.surname, 40),
                ("given_name", &b.given_name, 40),
            ] {
                if v.trim().is_empty() {
                    return Err(format!("{}: must not be empty", key(k)));
                }
                if v.chars().count() > max {
                    return Err(format!("{}: at most {max} characters", key(k)));
                }
                if let Some(c) = v.chars().find(|c| u32::from(*c) > 0xFF || c.is_control()) {
                    return Err(format!(
                        "{}: {c:?} cannot be stored in ISO-8859-1 on the card",
                        key(k)
                    ));
                }
            }
            check_date(&b.birth_date).map_err(|e| format!("{}: {e}", key("birth_date")))?;
            if let Some(nir) = &b.nir {
                check_nir(nir).map_err(|e| format!("{}: {e}", key("nir")))?;
            }
            if let Some(n) = &b.nationality
                && (n.is_empty() || n.len() > 3 || !n.is_ascii())
            {
                return Err(format!("{}: 1 to 3 ASCII characters", key("nationality")));
            }
        }
        if self.beneficiaries.len() > 16 {
            return Err("beneficiary: at most 16 beneficiaries".into());
        }
        Ok(())
    }

    /// The ATR bytes.
    pub fn atr_bytes(&self) -> Result<Vec<u8>, String> {
        if self.atr == "vitale2" {
            return Ok(VITALE2_ATR.to_vec());
        }
        let compact: String = self.atr.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = hex::decode(&compact).map_err(|e| format!("not hex: {e}"))?;
        if !(2..=33).contains(&bytes.len()) {
            return Err("an ATR has 2 to 33 bytes".into());
        }
        Ok(bytes)
    }

    /// The demo family: three beneficiaries with accented names (ISO-8859-1 on the
    /// card), a lunar birth date, a Corsica NIR with a valid key and a child without
    /// NIR, a validity date and one protected EF. Fictitious people.
    pub fn demo_family() -> CardDescription {
        CardDescription {
            atr: default_atr(),
            paths: ReadPaths::Both,
            t0: T0Mode::WrongLength,
            validity_start: Some("20240115".into()),
            protected_efs: vec![ProtectedEf {
                name: "DROITS".into(),
                ef: "2010".into(),
            }],
            hostile: Hostile::None,
            beneficiaries: vec![
                BeneficiaryDescription {
                    surname: "LEFÈVRE".into(),
                    given_name: "Gaël".into(),
                    birth_date: "19850300".into(),
                    nir: Some("185032A00401238".into()),
                    nationality: Some("FRA".into()),
                },
                BeneficiaryDescription {
                    surname: "LEFÈVRE-NOËL".into(),
                    given_name: "Éloïse".into(),
                    birth_date: "19870412".into(),
                    nir: Some("287047505612321".into()),
                    nationality: Some("FRA".into()),
                },
                BeneficiaryDescription {
                    surname: "LEFÈVRE".into(),
                    given_name: "Zoé".into(),
                    birth_date: "20150926".into(),
                    nir: None,
                    nationality: None,
                },
            ],
        }
    }
}

/// Parses a 4-hex-digit EF id.
pub(crate) fn parse_ef(s: &str) -> Result<u16, String> {
    if s.len() != 4 {
        return Err("4 hex digits".into());
    }
    u16::from_str_radix(s, 16).map_err(|_| "4 hex digits".to_string())
}

fn check_date(s: &str) -> Result<(), String> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected 8 digits AAAAMMJJ (00 for an unknown month or day)".into());
    }
    let month: u32 = s[4..6].parse().map_err(|_| "bad month".to_string())?;
    let day: u32 = s[6..8].parse().map_err(|_| "bad day".to_string())?;
    if month > 12 || day > 31 {
        return Err("month 00-12, day 00-31".into());
    }
    Ok(())
}

fn check_nir(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    // Département (positions 5-6) may be Corsica's 2A or 2B.
    let dept = digits(5..7) || matches!(b.get(5..7), Some(b"2A") | Some(b"2B"));
    if b.len() == 15 && digits(0..5) && dept && digits(7..15) {
        Ok(())
    } else {
        Err("expected 15 characters: 13 digits (département 2A/2B allowed) + 2-digit key".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_family_is_valid_and_round_trips_through_toml() {
        let family = CardDescription::demo_family();
        family.validate().expect("valid");
        let text = toml::to_string(&family).expect("serializes");
        assert_eq!(CardDescription::from_toml(&text).expect("parses"), family);
    }

    #[test]
    fn minimal_file_uses_defaults() {
        let d = CardDescription::from_toml(
            "[[beneficiary]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"20000101\"\n",
        )
        .expect("parses");
        assert_eq!(d.atr_bytes().expect("atr"), VITALE2_ATR.to_vec());
        assert_eq!(d.paths, ReadPaths::Both);
        assert_eq!(d.t0, T0Mode::WrongLength);
        assert_eq!(d.hostile, Hostile::None);
    }

    #[test]
    fn errors_name_the_bad_key() {
        let cases = [
            ("colour = 1\n", "colour"),
            ("paths = \"sideways\"\n", "sideways"),
            ("atr = \"3B ZZ\"\n", "atr"),
            (
                "[[beneficiary]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"2000011\"\n",
                "beneficiary[0].birth_date",
            ),
            (
                "[[beneficiary]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"20000101\"\n[[beneficiary]]\nsurname = \"Ő\"\ngiven_name = \"B\"\nbirth_date = \"20000101\"\n",
                "beneficiary[1].surname",
            ),
            (
                "[[beneficiary]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"20000101\"\nnir = \"12345\"\n",
                "beneficiary[0].nir",
            ),
            (
                "[[beneficiary]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"20000101\"\nshoe = 4\n",
                "shoe",
            ),
            (
                "[[protected_efs]]\nname = \"X\"\nef = \"2001\"\n",
                "protected_efs[0].ef",
            ),
        ];
        for (text, key) in cases {
            let err = CardDescription::from_toml(text).expect_err(text);
            assert!(err.contains(key), "{err:?} should name {key:?}");
        }
    }

    #[test]
    fn corsica_and_plain_nirs_are_accepted() {
        for nir in ["185032A00401238", "253072B07300470", "295109912611193"] {
            check_nir(nir).expect(nir);
        }
        for nir in ["2951099126111A3", "29510991261119", "1850A2A00401238"] {
            assert!(check_nir(nir).is_err(), "{nir}");
        }
    }

    #[test]
    fn hostile_modes_parse_by_name() {
        for (mode, name) in Hostile::ALL {
            assert_eq!(name.parse::<Hostile>().expect(name), mode);
        }
        assert!("loud".parse::<Hostile>().is_err());
    }

    #[test]
    fn every_example_card_file_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut seen = 0;
        let names = ["family", "single", "pointer-map", "large"]
            .into_iter()
            .map(String::from)
            .chain(
                Hostile::ALL[1..]
                    .iter()
                    .map(|(_, n)| format!("hostile-{n}")),
            );
        for name in names {
            let path = dir.join(format!("{name}.toml"));
            CardDescription::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
        assert!(seen >= 9, "{seen} card files");
        let family = CardDescription::from_file(&dir.join("family.toml")).expect("family");
        assert_eq!(family, CardDescription::demo_family());
    }
}
