//! NIR (numéro d'inscription au répertoire) format and key checks, Corsica 2A/2B
//! included (cards.md §2).
//!
//! Layout, 15 characters: sex (1), year (2), month (2), département (2, `2A`/`2B` for
//! Corsica), commune (3), order (3), key (2). The key is `97 − (N mod 97)` where `N`
//! is the 13 first characters read as a number, `2A` → `19` and `2B` → `18`.

/// Why a string is not a well-formed NIR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NirError {
    /// Not exactly 15 characters.
    #[error("a NIR has 15 characters")]
    Length,
    /// A character that cannot stand at its position.
    #[error("unexpected character at position {0}")]
    Character(usize),
    /// A month no civil-status rule produces (00, 13–19, 43–49).
    #[error("month out of range")]
    Month,
}

/// A syntactically valid NIR; whether its key checks is [`Nir::key_valid`].
#[derive(Clone, PartialEq, Eq)]
pub struct Nir {
    /// The 13 characters with Corsica substituted, as a number.
    number: u64,
    /// The two-digit key as written.
    key: u8,
}

impl std::fmt::Debug for Nir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A NIR is health data: never printable, even in a debug dump.
        f.write_str("Nir(<redacted>)")
    }
}

impl Nir {
    /// Parses the 15-character form, checking every position but not the key.
    ///
    /// Sex digits 1–4 and 7–8 (provisional and NIA-style numbers included); months
    /// 01–12, 20–42 and 50–99 (incomplete civil-status records, cards.md §2).
    pub fn parse(s: &str) -> Result<Self, NirError> {
        let b = s.as_bytes();
        if b.len() != 15 {
            return Err(NirError::Length);
        }
        let mut digits = [0u8; 15];
        for (i, c) in b.iter().enumerate() {
            let corsica_letter = (i == 6) && (*c == b'A' || *c == b'B') && b.get(5) == Some(&b'2');
            match (c, corsica_letter) {
                (b'0'..=b'9', _) => digits[i] = c - b'0',
                (_, true) => {}
                _ => return Err(NirError::Character(i)),
            }
        }
        if !matches!(digits[0], 1..=4 | 7 | 8) {
            return Err(NirError::Character(0));
        }
        let month = digits[3] * 10 + digits[4];
        if !matches!(month, 1..=12 | 20..=42 | 50..=99) {
            return Err(NirError::Month);
        }
        // Corsica: 2A → 19, 2B → 18 before computing the key.
        match b.get(6) {
            Some(b'A') => {
                digits[5] = 1;
                digits[6] = 9;
            }
            Some(b'B') => {
                digits[5] = 1;
                digits[6] = 8;
            }
            _ => {}
        }
        let number = digits[..13]
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(*d));
        let key = digits[13] * 10 + digits[14];
        Ok(Self { number, key })
    }

    /// The key the first 13 characters call for.
    pub fn expected_key(&self) -> u8 {
        // number < 10^13, so the remainder fits and 97 - r is in 1..=97.
        (97 - self.number % 97) as u8
    }

    /// Whether the written key matches.
    pub fn key_valid(&self) -> bool {
        self.key == self.expected_key()
    }
}

/// Whether `s` is a well-formed NIR with a correct key.
pub fn is_valid(s: &str) -> bool {
    Nir::parse(s).is_ok_and(|n| n.key_valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_vectors_are_valid() {
        for nir in ["295109912611193", "253072A07300443", "253072B07300470"] {
            assert!(is_valid(nir), "{nir}");
        }
    }

    #[test]
    fn corsica_substitutes_before_the_key() {
        let a = Nir::parse("253072A07300443").expect("parses");
        assert_eq!(a.expected_key(), 43);
        let b = Nir::parse("253072B07300470").expect("parses");
        assert_eq!(b.expected_key(), 70);
        // The same digits with 2A read as 20 would give another key.
        assert!(!is_valid("253072A07300470"));
        assert!(!is_valid("253072B07300443"));
    }

    #[test]
    fn wrong_keys_are_invalid() {
        for nir in [
            "295109912611194",
            "295109912611100",
            "253072A07300444",
            "295109912611197",
        ] {
            let parsed = Nir::parse(nir).expect("well formed");
            assert!(!parsed.key_valid(), "{nir}");
            assert!(!is_valid(nir));
        }
    }

    #[test]
    fn keys_follow_the_formula() {
        // 1 80 01 75 123 456 → N = 1800175123456, key = 97 − N mod 97.
        let n: u64 = 1_800_175_123_456;
        let key = 97 - n % 97;
        let nir = format!("1800175123456{key:02}");
        assert!(is_valid(&nir), "{nir}");
    }

    #[test]
    fn incomplete_civil_status_months_are_accepted() {
        for month in ["20", "33", "42", "50", "99"] {
            let head = format!("1{}{}75123456", "80", month);
            let n: u64 = head.parse().expect("digits");
            let nir = format!("{head}{:02}", 97 - n % 97);
            assert!(is_valid(&nir), "{nir}");
        }
        for month in ["00", "13", "19", "43", "49"] {
            let nir = format!("180{month}75123456");
            assert_eq!(Nir::parse(&format!("{nir}01")), Err(NirError::Month));
        }
    }

    #[test]
    fn malformed_strings_are_refused() {
        assert_eq!(Nir::parse(""), Err(NirError::Length));
        assert_eq!(Nir::parse("29510991261119"), Err(NirError::Length));
        assert_eq!(Nir::parse("2951099126111930"), Err(NirError::Length));
        assert_eq!(Nir::parse("295109912611 93"), Err(NirError::Character(12)));
        assert_eq!(Nir::parse("095109912611193"), Err(NirError::Character(0)));
        assert_eq!(Nir::parse("595109912611193"), Err(NirError::Character(0)));
        // Letters only in position 6 and only after a 2.
        assert_eq!(Nir::parse("253073A07300443"), Err(NirError::Character(6)));
        assert_eq!(Nir::parse("25307AA07300443"), Err(NirError::Character(5)));
        assert_eq!(Nir::parse("253072C07300443"), Err(NirError::Character(6)));
        assert_eq!(Nir::parse("253072a07300443"), Err(NirError::Character(6)));
        // 14 characters but 15 bytes: the é is refused where it stands.
        assert_eq!(Nir::parse("2951099126111é"), Err(NirError::Character(13)));
        assert!(!is_valid("not a nir at all"));
    }

    #[test]
    fn debug_does_not_show_the_number() {
        let nir = Nir::parse("295109912611193").expect("parses");
        assert!(!format!("{nir:?}").contains("2951"));
    }
}
