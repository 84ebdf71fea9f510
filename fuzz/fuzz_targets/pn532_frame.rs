//! PN532 frame decoder: never panics, never consumes more than the buffer, always
//! makes progress on a non-empty verdict, and re-decodes what `encode` produces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitale_bridge::sim::pn532::frame::{self, Decoded, Frame};

fuzz_target!(|data: &[u8]| {
    // Drain the buffer the way the emulator does, frame after frame.
    let mut buf = data;
    while !buf.is_empty() {
        let len = match frame::decode(buf) {
            Decoded::Incomplete => break,
            Decoded::Skip { len, .. } => len,
            Decoded::Frame { len, .. } => len,
        };
        assert!(len > 0 && len <= buf.len(), "bad consumed length {len}");
        buf = &buf[len..];
    }
    // Round trip: any data that encodes must decode to the same frame.
    if let Some((&tfi, rest)) = data.split_first() {
        if let Some(bytes) = frame::encode(tfi, rest) {
            match frame::decode(&bytes) {
                Decoded::Frame { frame: Frame::Info { tfi: t, data: d }, len } => {
                    assert_eq!((t, d.as_slice(), len), (tfi, rest, bytes.len()));
                }
                other => panic!("encoded frame decodes as {other:?}"),
            }
        }
    }
});
