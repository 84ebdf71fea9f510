//! `AAAAMMJJ` dates as cards store them, including "lunar" dates (day or month `00`:
//! partially unknown birth dates, cards.md §1).

/// A card date: the raw text, its ISO form when it is a real calendar date, and
/// whether it is lunar.
#[derive(Clone, PartialEq, Eq)]
pub struct CardDate {
    /// The date as stored (`AAAAMMJJ`), trimmed of padding.
    pub raw: String,
    /// `YYYY-MM-DD`, or `None` for a lunar or invalid date.
    pub iso: Option<String>,
    /// Day or month is `00`.
    pub lunar: bool,
}

impl std::fmt::Debug for CardDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Birth dates are health data.
        f.debug_struct("CardDate")
            .field("lunar", &self.lunar)
            .field("valid", &self.iso.is_some())
            .finish_non_exhaustive()
    }
}

/// Decodes an `AAAAMMJJ` value (ISO-8859-1 bytes, space or `00` padded).
///
/// Anything that is not eight digits keeps its raw text with `iso: None`, `lunar:
/// false`. Eight digits with month or day `00` are lunar. Otherwise the date must
/// exist in the proleptic Gregorian calendar to get an ISO form.
pub fn parse(bytes: &[u8]) -> CardDate {
    let raw = crate::codec::latin1::decode_trimmed(bytes);
    let digits: Option<[u8; 8]> = raw
        .as_bytes()
        .try_into()
        .ok()
        .filter(|d: &[u8; 8]| d.iter().all(u8::is_ascii_digit));
    let Some(d) = digits else {
        return CardDate {
            raw,
            iso: None,
            lunar: false,
        };
    };
    let num = |s: &[u8]| s.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    let (year, month, day) = (num(&d[0..4]), num(&d[4..6]), num(&d[6..8]));
    let lunar = month == 0 || day == 0;
    let iso = (!lunar && year > 0 && month <= 12 && day <= days_in_month(year, month))
        .then(|| format!("{year:04}-{month:02}-{day:02}"));
    CardDate { raw, iso, lunar }
}

/// Days in `month` (1..=12) of `year`; 0 for other months.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Gregorian leap year.
fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_dates_become_iso() {
        let d = parse(b"19800203");
        assert_eq!(d.iso.as_deref(), Some("1980-02-03"));
        assert_eq!(d.raw, "19800203");
        assert!(!d.lunar);
        assert_eq!(parse(b"20000229").iso.as_deref(), Some("2000-02-29"));
        assert_eq!(parse(b"20241231  \0\0").iso.as_deref(), Some("2024-12-31"));
    }

    #[test]
    fn lunar_dates_keep_raw_and_have_no_iso() {
        for raw in ["19800003", "19800200", "19800000"] {
            let d = parse(raw.as_bytes());
            assert!(d.lunar, "{raw}");
            assert_eq!(d.iso, None);
            assert_eq!(d.raw, raw);
        }
    }

    #[test]
    fn impossible_dates_are_not_lunar_and_have_no_iso() {
        for raw in [
            "19800230", "19001329", "19000229", "20230229", "00000101", "19800431",
        ] {
            let d = parse(raw.as_bytes());
            assert_eq!(d.iso, None, "{raw}");
            assert!(!d.lunar, "{raw}");
            assert_eq!(d.raw, raw);
        }
    }

    #[test]
    fn non_dates_keep_their_text() {
        for raw in [&b""[..], b"1980", b"1980-02-03", b"ABCDEFGH", b"198002031"] {
            let d = parse(raw);
            assert_eq!(d.iso, None);
            assert!(!d.lunar);
        }
        assert_eq!(parse(b"19\xE902").raw, "19é02");
    }

    #[test]
    fn debug_hides_the_date() {
        assert!(!format!("{:?}", parse(b"19800203")).contains("1980"));
    }
}
