//! Interim decoders used by the phone profile until the codec helper's BER-TLV, date,
//! ISO-8859-1 and NIR codecs land in [`crate::codec`]; then this module goes.

/// One level of BER-TLV: `(tag, value)` pairs, tags of 1–2 bytes as written
/// (`0x65`, `0xDF23`), `00`/`FF` padding between objects skipped.
pub(crate) fn tlv_items(mut input: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut items = Vec::new();
    while let Some((&first, rest)) = input.split_first() {
        if first == 0x00 || first == 0xFF {
            input = rest;
            continue;
        }
        let (tag, rest) = if first & 0x1F == 0x1F {
            let (&second, rest) = rest.split_first().ok_or("truncated tag")?;
            if second & 0x80 != 0 {
                return Err("tags longer than 2 bytes are not used here".into());
            }
            (u16::from_be_bytes([first, second]), rest)
        } else {
            (u16::from(first), rest)
        };
        let (&len0, rest) = rest.split_first().ok_or("truncated length")?;
        let (len, rest) = match len0 {
            0..=0x7F => (usize::from(len0), rest),
            0x81 => {
                let (&l, rest) = rest.split_first().ok_or("truncated length")?;
                (usize::from(l), rest)
            }
            0x82 => match rest {
                [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
                _ => return Err("truncated length".into()),
            },
            _ => return Err(format!("unsupported length form {len0:02X}")),
        };
        if len > rest.len() {
            return Err("value runs past the end".into());
        }
        let (value, rest) = rest.split_at(len);
        items.push((tag, value));
        input = rest;
    }
    Ok(items)
}

/// ISO-8859-1 to UTF-8, trimmed of the card's space and NUL padding.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    let s: String = bytes.iter().map(|&b| char::from(b)).collect();
    s.trim_matches(|c: char| c == ' ' || c == '\0').to_string()
}

/// `AAAAMMJJ` → (`YYYY-MM-DD` or `None` for lunar/invalid, lunar flag).
pub(crate) fn birth_date(raw: &str) -> (Option<String>, bool) {
    let digits = raw.len() == 8 && raw.bytes().all(|b| b.is_ascii_digit());
    if !digits {
        return (None, false);
    }
    let (y, m, d) = (&raw[0..4], &raw[4..6], &raw[6..8]);
    let lunar = m == "00" || d == "00";
    if lunar {
        return (None, true);
    }
    let valid = m
        .parse::<u8>()
        .ok()
        .and_then(|m| time::Month::try_from(m).ok());
    let date = valid.and_then(|month| {
        let year: i32 = y.parse().ok()?;
        let day: u8 = d.parse().ok()?;
        time::Date::from_calendar_date(year, month, day).ok()
    });
    (date.map(|_| format!("{y}-{m}-{d}")), false)
}

/// NIR key check (cards.md §2): 97 − (N mod 97), Corsica 2A→19, 2B→18.
pub(crate) fn nir_key_valid(nir: &str) -> bool {
    if nir.len() != 15 || !nir.is_ascii() {
        return false;
    }
    let (body, key) = nir.split_at(13);
    let body = body.replacen("2A", "19", 1).replacen("2B", "18", 1);
    let (Ok(n), Ok(key)) = (body.parse::<u64>(), key.parse::<u64>()) else {
        return false;
    };
    97 - (n % 97) == key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_tlv_with_padding_and_long_lengths() {
        let mut data = vec![0x80, 0x01, b'A', 0xDF, 0x23, 0x81, 0x02, 1, 2, 0x00, 0x00];
        data.extend_from_slice(&[0x65, 0x82, 0x00, 0x01, 9]);
        let items = tlv_items(&data).expect("parses");
        assert_eq!(
            items,
            vec![
                (0x80, &b"A"[..]),
                (0xDF23, &[1u8, 2][..]),
                (0x65, &[9u8][..])
            ]
        );
        assert!(tlv_items(&[0x80, 0x05, 1]).is_err());
        assert!(tlv_items(&[0xDF]).is_err());
    }

    #[test]
    fn nir_vectors() {
        for nir in ["295109912611193", "253072A07300443", "253072B07300470"] {
            assert!(nir_key_valid(nir), "{nir}");
        }
        assert!(!nir_key_valid("295109912611194"));
    }

    #[test]
    fn dates() {
        assert_eq!(birth_date("19800203"), (Some("1980-02-03".into()), false));
        assert_eq!(birth_date("19800000"), (None, true));
        assert_eq!(birth_date("19801345"), (None, false));
    }
}
