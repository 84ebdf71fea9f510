//! Property tests for the pure codecs: arbitrary bytes never panic, every decoded
//! value stays inside its input, and encode/decode round-trip.

use proptest::prelude::*;
use vitale_bridge::codec::{apdu, date, latin1, nir, tlv};

/// Depth of a decoded tree (1 for a flat list).
fn depth(nodes: &[tlv::Node<'_>]) -> usize {
    nodes
        .iter()
        .map(|n| 1 + depth(&n.children))
        .max()
        .unwrap_or(0)
}

/// Checks every value is a sub-slice of `buf`.
fn within(buf: &[u8], nodes: &[tlv::Node<'_>]) -> bool {
    let range = buf.as_ptr_range();
    nodes.iter().all(|n| {
        let v = n.value.as_ptr_range();
        range.start <= v.start && v.end <= range.end && within(buf, &n.children)
    })
}

/// Arbitrary TLV-ish bytes: random data biased towards tags and length bytes that
/// exercise the long forms and constructed templates.
fn tlvish() -> impl Strategy<Value = Vec<u8>> {
    const SPECIAL: [u8; 9] = [0x65, 0x81, 0x82, 0x83, 0x80, 0x5F, 0x7F, 0x00, 0xFF];
    // One cheap byte strategy remapped, rather than a union per byte: the union
    // makes debug-build generation dominate the test's run time.
    prop::collection::vec(
        any::<u16>().prop_map(|x| {
            let [sel, b] = x.to_be_bytes();
            if sel < 96 {
                SPECIAL[usize::from(sel) % SPECIAL.len()]
            } else {
                b
            }
        }),
        0..600,
    )
}

/// A well-formed tree of templates and primitives, as bytes.
fn tree(depth: u32) -> impl Strategy<Value = Vec<u8>> {
    let leaf = (
        prop::sample::select(vec![0x80u16, 0x81, 0x82, 0x93, 0x5F37, 0xDF23]),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(tag, value)| tlv::encode(tag, &value));
    leaf.prop_recursive(depth, 64, 6, |inner| {
        (
            prop::sample::select(vec![0x65u16, 0x66, 0xE0, 0xA0, 0x7F21]),
            prop::collection::vec(inner, 0..6),
        )
            .prop_map(|(tag, kids)| tlv::encode(tag, &kids.concat()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn tlv_decode_never_panics_and_stays_in_bounds(buf in tlvish()) {
        if let Ok(nodes) = tlv::decode(&buf) {
            prop_assert!(depth(&nodes) <= tlv::MAX_DEPTH);
            prop_assert!(within(&buf, &nodes));
        }
        for t in tlv::objects(&buf).map_while(Result::ok) {
            prop_assert!(t.value.len() <= buf.len());
        }
    }

    #[test]
    fn tlv_trees_round_trip(trees in prop::collection::vec(tree(6), 1..4), pad in 0usize..40) {
        let mut buf = trees.concat();
        buf.extend(std::iter::repeat_n(0u8, pad));
        let nodes = tlv::decode(&buf).expect("well-formed trees decode");
        prop_assert_eq!(nodes.len(), trees.len());
        for (node, bytes) in nodes.iter().zip(&trees) {
            let (one, rest) = tlv::read_tlv(bytes).expect("decodes");
            prop_assert!(rest.is_empty());
            prop_assert_eq!(node.tag, one.tag);
            prop_assert_eq!(node.value, one.value);
        }
    }

    #[test]
    fn command_parse_never_panics_and_round_trips(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(cmd) = apdu::Command::parse(&raw) {
            prop_assert_eq!(cmd.to_bytes().expect("a parsed command rebuilds"), raw);
        }
    }

    #[test]
    fn response_parse_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        match apdu::Response::parse(&raw) {
            Some(r) => {
                prop_assert_eq!(r.data.len() + 2, raw.len());
                prop_assert_eq!(apdu::StatusWord::from(r.sw).to_u16(), r.sw);
            }
            None => prop_assert!(raw.len() < 2),
        }
    }

    #[test]
    fn nir_and_date_never_panic(raw in prop::collection::vec(any::<u8>(), 0..20), s in "[0-9AB ]{0,16}") {
        let text = latin1::decode(&raw);
        let _ = nir::is_valid(&text);
        let _ = nir::is_valid(&s);
        let d = date::parse(&raw);
        prop_assert!(!(d.lunar && d.iso.is_some()));
        if let Some(iso) = &d.iso {
            prop_assert_eq!(iso.len(), 10);
        }
    }

    #[test]
    fn valid_nirs_are_found_valid(
        sex in prop::sample::select(vec![1u64, 2]),
        yy in 0u64..100,
        mm in prop::sample::select(vec![1u64, 6, 12, 20, 42, 50, 99]),
        rest in 0u64..100_000_000,
    ) {
        let head = format!("{sex}{yy:02}{mm:02}{rest:08}");
        let n: u64 = head.parse().expect("digits");
        let key = 97 - n % 97;
        let good = format!("{head}{key:02}");
        prop_assert!(nir::is_valid(&good), "{}", good);
        let bad_key = if key == 97 { 1 } else { key + 1 };
        let bad = format!("{head}{bad_key:02}");
        prop_assert!(!nir::is_valid(&bad));
    }

    #[test]
    fn latin1_trim_never_keeps_padding(raw in prop::collection::vec(prop_oneof![any::<u8>(), Just(b' '), Just(0u8)], 0..64)) {
        let s = latin1::decode_trimmed(&raw);
        prop_assert!(!s.starts_with([' ', '\0']));
        prop_assert!(!s.ends_with([' ', '\0']));
    }
}
