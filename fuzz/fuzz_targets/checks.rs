//! The property each fuzz target checks, shared by the cargo-fuzz targets and by
//! `tests/fuzz_regressions.rs`, which replays every kept input in the normal suite.
#![allow(dead_code)]

use vitale_bridge::card::{self, CardType, ReadContext};
use vitale_bridge::codec::tlv;
use vitale_bridge::protocol::rpc::{self, Incoming};
use vitale_bridge::sim::pn532::frame::{self, Decoded, Frame};
use vitale_bridge::sim::{SimChannel, VirtualCard};

/// A card whose every answer comes from the fuzzer: each R-APDU (data ‖ SW1 SW2) is a
/// length byte followed by that many bytes; a length byte of `FF` is followed by a
/// big-endian u16 length, for the 256-byte reads. When the input runs out the card
/// answers `6F 00`, so every read terminates.
pub struct Scripted {
    data: Vec<u8>,
    pos: usize,
}

impl Scripted {
    /// A card answering from `data`.
    pub fn new(data: &[u8]) -> Self {
        Self {
            data: data.to_vec(),
            pos: 0,
        }
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
}

/// Encodes one R-APDU in [`Scripted`]'s format.
pub fn script_response(out: &mut Vec<u8>, rapdu: &[u8]) {
    match u8::try_from(rapdu.len()) {
        Ok(n) if n < 0xFF => out.push(n),
        _ => {
            out.push(0xFF);
            out.extend_from_slice(&(rapdu.len().min(0xFFFF) as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&rapdu[..rapdu.len().min(0xFFFF)]);
}

impl VirtualCard for Scripted {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x00]
    }

    fn process(&mut self, _capdu: &[u8]) -> Vec<u8> {
        let len = match self.byte() {
            None => return vec![0x6F, 0x00],
            Some(0xFF) => match (self.byte(), self.byte()) {
                (Some(hi), Some(lo)) => usize::from(u16::from_be_bytes([hi, lo])),
                _ => return vec![0x6F, 0x00],
            },
            Some(n) => usize::from(n),
        };
        let start = self.pos;
        let end = (start + len).min(self.data.len());
        self.pos = end;
        self.data
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }
}

fn read_context() -> ReadContext {
    ReadContext {
        reader: "fuzz:0".into(),
        apcv_aid: hex::decode(vitale_bridge::config::DEFAULT_APCV_AID).unwrap_or_default(),
        environment: None,
    }
}

/// A read against a scripted card must end in `Ok` or a `CardError`: never panic,
/// never loop. Every APDU consumes input or ends in `6F 00`, so the APDU count is
/// bounded by the input length (plus the reader's own retry and round limits).
fn scripted_read(data: &[u8], card_type: CardType, contactless: bool) {
    let mut channel = SimChannel::new(Scripted::new(data), contactless);
    let _ = card::read_identity(&mut channel, card_type, &read_context(), &mut |_, _| {});
    assert!(channel.apdu_count() <= data.len() + 512, "runaway read");
}

/// BER-TLV: the tree decoder, the flat object iterator and the primitives return
/// `Ok`/`Err` on any bytes, never panic, and never claim more bytes than given.
pub fn tlv(data: &[u8]) {
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
}

/// The Carte Vitale 2 read (`CardType::Vitale2`) against arbitrary R-APDUs.
pub fn vitale_read(data: &[u8]) {
    scripted_read(data, CardType::Vitale2, false);
}

/// The phone read (`CardType::Apcv`) against arbitrary R-APDUs.
pub fn phone_read(data: &[u8]) {
    scripted_read(data, CardType::Apcv, true);
}

/// JSON-RPC request parsing on arbitrary text, and answering whatever id it read.
pub fn rpc_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match rpc::parse(text) {
        Incoming::Request(req) => {
            if let Some(id) = &req.id {
                let _ = rpc::success(id, &req.params);
            }
        }
        Incoming::Invalid { id, error, .. } => {
            let _ = rpc::failure(&id, &error);
        }
    }
}

/// PN532 frame decoder: never panics, never consumes more than the buffer, always
/// makes progress on a non-empty verdict, and re-decodes what `encode` produces.
pub fn pn532_frame(data: &[u8]) {
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
    // Round trip: whatever `encode` accepts decodes back to the same frame, after the
    // preamble byte (`00`) the decoder drops as noise, and uses up every byte.
    if let Some((&tfi, rest)) = data.split_first()
        && let Some(bytes) = frame::encode(tfi, rest)
    {
        let mut at = 0;
        let decoded = loop {
            match frame::decode(&bytes[at..]) {
                Decoded::Skip {
                    len,
                    corrupt: false,
                } if at == 0 && len == 1 => at += len,
                other => break other,
            }
        };
        let expected = if tfi == 0x7F && rest.is_empty() {
            Frame::Error
        } else {
            Frame::Info {
                tfi,
                data: rest.to_vec(),
            }
        };
        match decoded {
            Decoded::Frame { frame, len } => {
                assert_eq!(frame, expected);
                assert_eq!(at + len, bytes.len(), "frame not wholly consumed");
            }
            other => panic!("encoded frame decodes as {other:?}"),
        }
    }
}

/// A target's check: panics when the property breaks.
pub type Check = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` and `tests/data/fuzz/<name>/` call them.
pub const TARGETS: [(&str, Check); 5] = [
    ("tlv", tlv),
    ("vitale_read", vitale_read),
    ("phone_read", phone_read),
    ("rpc_parse", rpc_parse),
    ("pn532_frame", pn532_frame),
];
