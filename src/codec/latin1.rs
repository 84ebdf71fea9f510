//! ISO-8859-1 text from cards, to trimmed UTF-8.
//!
//! Every ISO-8859-1 byte is the Unicode code point of the same value, so decoding
//! cannot fail; card fields are space padded and files `00` padded, both trimmed.

/// Decodes ISO-8859-1 bytes to UTF-8, without trimming.
pub fn decode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

/// Decodes ISO-8859-1 bytes to UTF-8 and trims spaces and `00` at both ends.
pub fn decode_trimmed(bytes: &[u8]) -> String {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = bytes.iter().position(|b| !is_pad(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |i| i + 1);
    decode(bytes.get(start..end).unwrap_or_default())
}

/// Encodes text as ISO-8859-1; characters outside it become `?` (for simulators and
/// tests that build card images).
pub fn encode(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_become_utf8() {
        assert_eq!(decode(b"Zo\xE9"), "Zoé");
        assert_eq!(decode(b"H\xC9L\xC8NE"), "HÉLÈNE");
        assert_eq!(decode(b"\xC7\xE0\xFF"), "Çàÿ");
    }

    #[test]
    fn padding_is_trimmed_on_both_sides() {
        assert_eq!(decode_trimmed(b"  DUPONT   \0\0"), "DUPONT");
        assert_eq!(decode_trimmed(b"\0JEAN MARIE \0"), "JEAN MARIE");
        assert_eq!(decode_trimmed(b"   "), "");
        assert_eq!(decode_trimmed(b""), "");
        assert_eq!(decode_trimmed(b"\0\0\0"), "");
        assert_eq!(decode_trimmed(b"L\xC9A  "), "LÉA");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&decode(&all)), all);
        assert_eq!(encode("Zoé €"), b"Zo\xE9 ?");
    }
}
