//! BER-TLV (ISO 7816-4 / X.690 subset): 1- and 2-byte tags, short and long lengths,
//! bounds-checked, nesting depth limited.
//!
//! OWNER: codec/Vitale helper (decode side). `encode` is used by the simulators.

/// Encodes one TLV: `tag` is 1 or 2 bytes as written (e.g. `0x65`, `0x5F37`, `0xDF23`),
/// length in the shortest BER form.
pub fn encode(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    if tag > 0xFF {
        out.extend_from_slice(&tag.to_be_bytes());
    } else {
        out.push(tag as u8);
    }
    encode_len(value.len(), &mut out);
    out.extend_from_slice(value);
    out
}

/// Appends a BER length (short form below 128, else `81 xx` / `82 xx xx` / `83 …`).
pub fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else if len <= 0xFFFF {
        out.push(0x82);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x83);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_short_long_and_two_byte_tags() {
        assert_eq!(encode(0x80, b"AB"), vec![0x80, 0x02, b'A', b'B']);
        assert_eq!(encode(0xDF23, &[1]), vec![0xDF, 0x23, 0x01, 0x01]);
        let long = encode(0x65, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x65, 0x81, 200]);
        let longer = encode(0x65, &[0u8; 300]);
        assert_eq!(&longer[..4], &[0x65, 0x82, 0x01, 0x2C]);
    }
}
