//! BER-TLV: the tree decoder, the flat object iterator and the primitives must return
//! `Ok`/`Err` on any bytes, never panic, and never claim more bytes than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitale_bridge::codec::tlv;

fuzz_target!(|data: &[u8]| {
    if let Ok(nodes) = tlv::decode(data) {
        for node in &nodes {
            let _ = node.find_path(&[tlv::Tag(0x65), tlv::Tag(0x5F20)]);
        }
    }
    let _ = tlv::decode_with_max_depth(data, 3);
    for obj in tlv::objects(data).take(1024) {
        let _ = obj;
    }
    if let Ok((_, used)) = tlv::read_tag(data) {
        assert!(used <= data.len());
    }
    if let Ok((_, used)) = tlv::read_len(data) {
        assert!(used <= data.len());
    }
    if let Ok((_, rest)) = tlv::read_tlv(data) {
        assert!(rest.len() < data.len());
    }
});
