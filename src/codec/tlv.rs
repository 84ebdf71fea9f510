//! BER-TLV (ISO 7816-4 §5.2 / X.690 subset): 1- and 2-byte tags, short and long
//! lengths, bounds-checked, nesting depth limited.
//!
//! Decoding never trusts a length: every value is a sub-slice of the input, checked
//! against what is left, so a hostile `82 FF FF` fails as [`TlvError::Truncated`]
//! without allocating. Nesting is decoded by recursion bounded by [`MAX_DEPTH`], so a
//! thousand nested templates fail as [`TlvError::TooDeep`] instead of exhausting the
//! stack. `00` and `FF` bytes between objects are padding (ISO 7816-4 §5.2) and are
//! skipped: card files end with `00` filler.
//!
//! `encode` is used by the simulators.

/// Deepest nesting [`decode`] accepts (the Vitale layout needs 3: `E0 / A0 / 82`).
pub const MAX_DEPTH: usize = 8;

/// Hard ceiling on any requested depth, so recursion stays bounded whatever a
/// caller asks for.
const DEPTH_CEILING: usize = 64;

/// A BER tag as written: one byte (`0x65`) or two (`0x5F37`, `0x7F21`, `0xDF23`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(pub u16);

impl Tag {
    /// The first (or only) tag byte, which carries class and constructed bits.
    pub fn first_byte(self) -> u8 {
        let [hi, lo] = self.0.to_be_bytes();
        if hi != 0 { hi } else { lo }
    }

    /// Whether the value is itself a sequence of TLVs (bit 6 of the first byte).
    pub fn is_constructed(self) -> bool {
        self.first_byte() & 0x20 != 0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 0xFF {
            write!(f, "{:04X}", self.0)
        } else {
            write!(f, "{:02X}", self.0)
        }
    }
}

/// Why a buffer is not valid BER-TLV for this decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlvError {
    /// The tag, the length or the value runs past the end of the buffer.
    #[error("TLV runs past the end of its buffer")]
    Truncated,
    /// A tag of three bytes or more (not used by any card this daemon reads).
    #[error("tag longer than two bytes")]
    TagTooLong,
    /// The indefinite length form `80`, which ISO 7816 BER-TLV does not allow.
    #[error("indefinite length")]
    IndefiniteLength,
    /// A length field of four bytes or more (`84 …`): far beyond any card file.
    #[error("length field too long")]
    LengthTooLong,
    /// Constructed objects nested deeper than allowed.
    #[error("TLV nesting deeper than {0}")]
    TooDeep(usize),
}

/// Reads one tag at the start of `buf`: returns it and the bytes it took.
///
/// Low five bits all set (`xF`/`x1F`) announce a second tag byte; a second byte with
/// bit 8 set would announce a third, which is refused.
pub fn read_tag(buf: &[u8]) -> Result<(Tag, usize), TlvError> {
    let first = *buf.first().ok_or(TlvError::Truncated)?;
    if first & 0x1F != 0x1F {
        return Ok((Tag(u16::from(first)), 1));
    }
    let second = *buf.get(1).ok_or(TlvError::Truncated)?;
    if second & 0x80 != 0 {
        return Err(TlvError::TagTooLong);
    }
    Ok((Tag(u16::from_be_bytes([first, second])), 2))
}

/// Reads one BER length at the start of `buf`: short form, or `81`/`82`/`83` long
/// form. Returns the length and the bytes it took; the length is not yet checked
/// against anything.
pub fn read_len(buf: &[u8]) -> Result<(usize, usize), TlvError> {
    let first = *buf.first().ok_or(TlvError::Truncated)?;
    if first < 0x80 {
        return Ok((usize::from(first), 1));
    }
    let n = usize::from(first & 0x7F);
    match n {
        0 => Err(TlvError::IndefiniteLength),
        1..=3 => {
            let bytes = buf.get(1..=n).ok_or(TlvError::Truncated)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            Ok((len, 1 + n))
        }
        _ => Err(TlvError::LengthTooLong),
    }
}

/// One object, not decoded further: its tag and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Reads one object at the start of `buf` (no padding skipped): the object and what
/// follows it.
pub fn read_tlv(buf: &[u8]) -> Result<(Tlv<'_>, &[u8]), TlvError> {
    let (tag, tag_len) = read_tag(buf)?;
    let after_tag = buf.get(tag_len..).ok_or(TlvError::Truncated)?;
    let (len, len_len) = read_len(after_tag)?;
    let after_len = after_tag.get(len_len..).ok_or(TlvError::Truncated)?;
    if len > after_len.len() {
        return Err(TlvError::Truncated);
    }
    let (value, rest) = after_len.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Whether `b` is inter-object padding.
fn is_padding(b: u8) -> bool {
    b == 0x00 || b == 0xFF
}

/// The sibling objects of a buffer, in order, padding skipped. Ends after the first
/// error it yields.
#[derive(Debug, Clone)]
pub struct Objects<'a> {
    rest: &'a [u8],
}

/// Iterates over the sibling objects of `buf` (one level, values not decoded).
pub fn objects(buf: &[u8]) -> Objects<'_> {
    Objects { rest: buf }
}

impl<'a> Iterator for Objects<'a> {
    type Item = Result<Tlv<'a>, TlvError>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.rest.iter().position(|b| !is_padding(*b))?;
        let from = self.rest.get(start..)?;
        match read_tlv(from) {
            Ok((tlv, rest)) => {
                self.rest = rest;
                Some(Ok(tlv))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// A decoded object: constructed objects carry their children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    /// The tag.
    pub tag: Tag,
    /// The raw value (for a constructed object, the encoded children).
    pub value: &'a [u8],
    /// Decoded children; empty for primitive objects.
    pub children: Vec<Node<'a>>,
}

impl<'a> Node<'a> {
    /// The first direct child with `tag`.
    pub fn child(&self, tag: Tag) -> Option<&Node<'a>> {
        self.children.iter().find(|c| c.tag == tag)
    }

    /// Every direct child with `tag`, in order.
    pub fn children_with(&self, tag: Tag) -> impl Iterator<Item = &Node<'a>> {
        self.children.iter().filter(move |c| c.tag == tag)
    }

    /// The first descendant reached by following `path` from this node's children.
    pub fn find_path(&self, path: &[Tag]) -> Option<&Node<'a>> {
        find_path(&self.children, path)
    }
}

/// Decodes every object of `buf` into a tree, nesting limited to [`MAX_DEPTH`].
pub fn decode(buf: &[u8]) -> Result<Vec<Node<'_>>, TlvError> {
    decode_with_max_depth(buf, MAX_DEPTH)
}

/// Decodes every object of `buf` into a tree; more than `max_depth` levels (clamped
/// to 64) is [`TlvError::TooDeep`].
pub fn decode_with_max_depth(buf: &[u8], max_depth: usize) -> Result<Vec<Node<'_>>, TlvError> {
    decode_level(buf, 1, max_depth.min(DEPTH_CEILING))
}

/// One level of [`decode`]; recursion is bounded by `max_depth` (≤ 64).
fn decode_level(buf: &[u8], depth: usize, max_depth: usize) -> Result<Vec<Node<'_>>, TlvError> {
    if depth > max_depth {
        return Err(TlvError::TooDeep(max_depth));
    }
    let mut nodes = Vec::new();
    for tlv in objects(buf) {
        let Tlv { tag, value } = tlv?;
        let children = if tag.is_constructed() {
            decode_level(value, depth + 1, max_depth)?
        } else {
            Vec::new()
        };
        nodes.push(Node {
            tag,
            value,
            children,
        });
    }
    Ok(nodes)
}

/// The first node reached by following `path` (one tag per level) from `nodes`;
/// `None` for an empty path or when a step is missing.
pub fn find_path<'n, 'a>(nodes: &'n [Node<'a>], path: &[Tag]) -> Option<&'n Node<'a>> {
    let (first, rest) = path.split_first()?;
    nodes.iter().filter(|n| n.tag == *first).find_map(|n| {
        if rest.is_empty() {
            Some(n)
        } else {
            find_path(&n.children, rest)
        }
    })
}

/// Every node reached by following `path` from `nodes`, in document order.
pub fn find_all_path<'n, 'a>(nodes: &'n [Node<'a>], path: &[Tag]) -> Vec<&'n Node<'a>> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    let mut level: Vec<&Node<'a>> = nodes.iter().filter(|n| n.tag == *first).collect();
    for tag in rest {
        level = level
            .into_iter()
            .flat_map(|n| n.children.iter().filter(move |c| c.tag == *tag))
            .collect();
    }
    level
}

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

    #[test]
    fn reads_one_and_two_byte_tags() {
        assert_eq!(read_tag(&[0x65]), Ok((Tag(0x65), 1)));
        assert_eq!(read_tag(&[0x5F, 0x37]), Ok((Tag(0x5F37), 2)));
        assert_eq!(read_tag(&[0x7F, 0x21]), Ok((Tag(0x7F21), 2)));
        assert_eq!(read_tag(&[0xDF, 0x23]), Ok((Tag(0xDF23), 2)));
        assert_eq!(read_tag(&[0x9F]), Err(TlvError::Truncated));
        assert_eq!(read_tag(&[0x9F, 0x81, 0x01]), Err(TlvError::TagTooLong));
        assert_eq!(read_tag(&[]), Err(TlvError::Truncated));
    }

    #[test]
    fn constructed_bit_follows_the_first_byte() {
        for (tag, constructed) in [
            (0x65, true),
            (0x66, true),
            (0xE0, true),
            (0xA0, true),
            (0x7F21, true),
            (0x80, false),
            (0x93, false),
            (0x5F37, false),
            (0xDF23, false),
        ] {
            assert_eq!(Tag(tag).is_constructed(), constructed, "{tag:X}");
        }
        assert_eq!(Tag(0x5F37).to_string(), "5F37");
        assert_eq!(Tag(0x65).to_string(), "65");
    }

    #[test]
    fn reads_short_and_long_lengths() {
        assert_eq!(read_len(&[0x05]), Ok((5, 1)));
        assert_eq!(read_len(&[0x7F]), Ok((127, 1)));
        assert_eq!(read_len(&[0x81, 0xC8]), Ok((200, 2)));
        assert_eq!(read_len(&[0x82, 0x01, 0x2C]), Ok((300, 3)));
        assert_eq!(read_len(&[0x83, 0x01, 0x00, 0x00]), Ok((65536, 4)));
        assert_eq!(read_len(&[0x80]), Err(TlvError::IndefiniteLength));
        assert_eq!(read_len(&[0x84, 1, 2, 3, 4]), Err(TlvError::LengthTooLong));
        assert_eq!(read_len(&[0xFF]), Err(TlvError::LengthTooLong));
        assert_eq!(read_len(&[0x82, 0x01]), Err(TlvError::Truncated));
        assert_eq!(read_len(&[]), Err(TlvError::Truncated));
    }

    #[test]
    fn lengths_are_checked_against_the_buffer() {
        assert_eq!(
            read_tlv(&[0x80, 0x82, 0xFF, 0xFF, 1, 2]),
            Err(TlvError::Truncated)
        );
        assert_eq!(read_tlv(&[0x80, 0x03, 1, 2]), Err(TlvError::Truncated));
        let (tlv, rest) = read_tlv(&[0x80, 0x02, 1, 2, 9]).expect("decodes");
        assert_eq!(
            tlv,
            Tlv {
                tag: Tag(0x80),
                value: &[1, 2]
            }
        );
        assert_eq!(rest, [9]);
    }

    #[test]
    fn round_trips_encode() {
        for len in [0usize, 1, 127, 128, 255, 256, 300, 65535, 65536] {
            let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for tag in [0x80u16, 0x5F37, 0xDF23] {
                let bytes = encode(tag, &value);
                let (tlv, rest) = read_tlv(&bytes).expect("decodes");
                assert_eq!(tlv.tag, Tag(tag));
                assert_eq!(tlv.value, &value[..]);
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn decodes_nested_templates_and_skips_padding() {
        let inner = [encode(0x80, b"DUPONT"), encode(0x81, b"JEAN")].concat();
        let mut file = vec![0x00, 0xFF];
        file.extend(encode(0x65, &inner));
        file.extend([0x00, 0x00]);
        file.extend(encode(0x65, &encode(0x93, b"295109912611193")));
        file.extend(encode(0x7F21, &encode(0x5F37, &[1, 2, 3])));
        file.extend([0u8; 40]);
        let nodes = decode(&file).expect("decodes");
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].tag, Tag(0x65));
        assert_eq!(
            nodes[0].child(Tag(0x80)).map(|n| n.value),
            Some(&b"DUPONT"[..])
        );
        assert_eq!(
            nodes[0].child(Tag(0x81)).map(|n| n.value),
            Some(&b"JEAN"[..])
        );
        assert_eq!(
            find_path(&nodes, &[Tag(0x65), Tag(0x93)]).map(|n| n.value),
            Some(&b"295109912611193"[..])
        );
        assert_eq!(
            nodes[2].find_path(&[Tag(0x5F37)]).map(|n| n.value),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(find_all_path(&nodes, &[Tag(0x65)]).len(), 2);
        assert_eq!(find_all_path(&nodes, &[Tag(0x65), Tag(0x81)]).len(), 1);
        assert!(find_path(&nodes, &[]).is_none());
        assert!(find_all_path(&nodes, &[]).is_empty());
        assert!(find_path(&nodes, &[Tag(0x66)]).is_none());
        assert_eq!(nodes[0].children_with(Tag(0x80)).count(), 1);
        assert_eq!(objects(&file).count(), 3);
    }

    #[test]
    fn empty_and_all_padding_buffers_hold_nothing() {
        assert_eq!(decode(&[]), Ok(vec![]));
        assert_eq!(decode(&[0u8; 300]), Ok(vec![]));
        assert_eq!(decode(&[0xFF; 3]), Ok(vec![]));
    }

    #[test]
    fn nesting_is_limited() {
        let mut deep = encode(0x80, b"x");
        for _ in 0..MAX_DEPTH - 1 {
            deep = encode(0x65, &deep);
        }
        assert!(decode(&deep).is_ok());
        let too_deep = encode(0x65, &deep);
        assert_eq!(decode(&too_deep), Err(TlvError::TooDeep(MAX_DEPTH)));
        // A thousand levels: a clean error, no stack exhaustion.
        let mut hostile = Vec::new();
        for _ in 0..1000 {
            hostile = encode(0x65, &hostile);
        }
        assert_eq!(decode(&hostile), Err(TlvError::TooDeep(MAX_DEPTH)));
        assert_eq!(
            decode_with_max_depth(&hostile, usize::MAX),
            Err(TlvError::TooDeep(DEPTH_CEILING))
        );
    }

    #[test]
    fn errors_inside_constructed_values_surface() {
        let bad = encode(0x65, &[0x80, 0x82, 0xFF, 0xFF]);
        assert_eq!(decode(&bad), Err(TlvError::Truncated));
        let indefinite = [0x65, 0x80, 0x80, 0x01, 0x41, 0x00, 0x00];
        assert_eq!(decode(&indefinite), Err(TlvError::IndefiniteLength));
        let mut it = objects(&[0x80, 0x05, 1]);
        assert_eq!(it.next(), Some(Err(TlvError::Truncated)));
        assert_eq!(it.next(), None);
    }
}
