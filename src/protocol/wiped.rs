//! Serialized JSON that the daemon owns and wipes.
//!
//! An `identity.read` event, a `card.read` result or a `subscribe` snapshot is the
//! identity again, as text. [`WipedJson`] holds such text in one buffer that is
//! shared by reference count (every subscriber of a view sends the same bytes, no
//! copy per client) and overwritten with zeros when the last reference goes.
//!
//! The buffer is sized exactly before it is written (a first, counting pass), so
//! serialization never reallocates and leaves no unwiped partial copies behind in
//! freed memory. [`WipedFrame`] is the same for an event: the WebSocket frame header
//! and the JSON in one such buffer, written to every socket as it is, so no copy
//! goes through the WebSocket library's write buffer. What the kernel holds in
//! socket buffers is outside our reach (docs/security.md).

use std::io::Write;

use bytes::Bytes;
use serde::Serialize;
use zeroize::Zeroize;

/// UTF-8 JSON text, shared, wiped when the last clone drops.
#[derive(Clone, PartialEq, Eq)]
pub struct WipedJson(Bytes);

/// The owner of the bytes: zeroes them on drop.
struct Wiping(Vec<u8>);

impl AsRef<[u8]> for Wiping {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiping {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Counts what a serializer writes.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl WipedJson {
    /// Serializes `value` into a buffer of exactly the right size.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<WipedJson> {
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, value)?;
        let mut buf = Wiping(Vec::with_capacity(counter.0));
        serde_json::to_writer(&mut buf.0, value)?;
        // Serialization is deterministic, so the second pass fits; should a value
        // ever serialize longer, the Vec grew and its old buffer went unwiped —
        // still correct output, and the case is logged.
        if buf.0.len() != counter.0 {
            tracing::warn!(
                counted = counter.0,
                written = buf.0.len(),
                "serialized length changed between passes"
            );
        }
        Ok(WipedJson(Bytes::from_owner(buf)))
    }

    /// Fixed text (placeholders); nothing to wipe.
    pub fn from_static(text: &'static str) -> WipedJson {
        WipedJson(Bytes::from_static(text.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Always valid: built from serde_json output or a `&'static str`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The shared bytes (a reference-count clone, no copy).
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Whether both are the same buffer (not merely equal text).
    pub fn same_buffer(a: &WipedJson, b: &WipedJson) -> bool {
        a.0.as_ptr() == b.0.as_ptr() && a.0.len() == b.0.len()
    }
}

/// Appends the header of one unmasked, final text frame carrying `len` payload bytes
/// (RFC 6455 §5.2; a server never masks, §5.1), formatted by tungstenite.
pub fn text_frame_header(len: usize, out: &mut Vec<u8>) {
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(len as u64, out);
}

/// Bytes of the header [`text_frame_header`] writes for `len` payload bytes.
fn text_frame_header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65_535 => 4,
        _ => 10,
    }
}

/// One complete, unmasked WebSocket text frame whose payload is serialized JSON, in
/// one buffer: what the fan-out hands every subscriber of a view, header included,
/// so a session writes it as it is. Wiped when the last reference goes, like
/// [`WipedJson`] (whose [`WipedFrame::json`] view shares the same buffer).
#[derive(Clone)]
pub struct WipedFrame {
    frame: Bytes,
    header: usize,
}

impl WipedFrame {
    /// Serializes `value` as a frame's payload, header first, into a buffer of exactly
    /// the right size.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<WipedFrame> {
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, value)?;
        let len = counter.0;
        let header = text_frame_header_len(len);
        let mut buf = Wiping(Vec::with_capacity(header + len));
        text_frame_header(len, &mut buf.0);
        serde_json::to_writer(&mut buf.0, value)?;
        if buf.0.len() != header + len {
            // Serialization is deterministic, so this is not expected; the header
            // must match the payload whatever happens, so frame it again.
            tracing::warn!(
                counted = len,
                written = buf.0.len() - header,
                "serialized length changed between passes"
            );
            let payload = Wiping(buf.0.split_off(header));
            return Ok(WipedFrame::framing(&payload.0));
        }
        Ok(WipedFrame {
            frame: Bytes::from_owner(buf),
            header,
        })
    }

    /// A frame of fixed text (placeholders).
    pub fn from_static(text: &'static str) -> WipedFrame {
        WipedFrame::framing(text.as_bytes())
    }

    fn framing(payload: &[u8]) -> WipedFrame {
        let header = text_frame_header_len(payload.len());
        let mut buf = Wiping(Vec::with_capacity(header + payload.len()));
        text_frame_header(payload.len(), &mut buf.0);
        buf.0.extend_from_slice(payload);
        WipedFrame {
            frame: Bytes::from_owner(buf),
            header,
        }
    }

    /// The whole frame (a reference-count clone, no copy).
    pub fn bytes(&self) -> Bytes {
        self.frame.clone()
    }

    /// The payload, as JSON text sharing the frame's buffer.
    pub fn json(&self) -> WipedJson {
        WipedJson(self.frame.slice(self.header..))
    }
}

/// Never the content: it may be an identity.
impl std::fmt::Debug for WipedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WipedFrame({} bytes)", self.frame.len())
    }
}

/// Takes over a string's buffer without copying it; it is wiped from then on.
impl From<String> for WipedJson {
    fn from(text: String) -> WipedJson {
        WipedJson(Bytes::from_owner(Wiping(text.into_bytes())))
    }
}

impl std::ops::Deref for WipedJson {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// Never the content: it may be an identity.
impl std::fmt::Debug for WipedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WipedJson({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn encodes_exactly_like_serde_json_and_hides_itself_from_debug() {
        let v = serde_json::json!({"surname": "DUPONT", "n": [1, 2, 3], "é": "ü"});
        let w = WipedJson::encode(&v).expect("encodes");
        assert_eq!(w.as_str(), serde_json::to_string(&v).expect("json"));
        assert!(!format!("{w:?}").contains("DUPONT"));
        let c = w.clone();
        assert!(WipedJson::same_buffer(&w, &c), "clones share the buffer");
    }

    #[test]
    fn a_frame_is_its_header_then_exactly_the_json_and_tungstenite_reads_it_back() {
        use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
        for n in [0usize, 100, 130, 70_000] {
            let v = serde_json::json!({ "name": "x".repeat(n) });
            let f = WipedFrame::encode(&v).expect("encodes");
            let json = f.json();
            assert_eq!(json.as_str(), serde_json::to_string(&v).expect("json"));
            let bytes = f.bytes();
            let mut cur = std::io::Cursor::new(&bytes[..]);
            let (h, len) = FrameHeader::parse(&mut cur)
                .expect("valid")
                .expect("complete");
            assert_eq!(len as usize, json.len());
            assert_eq!(
                cur.position() as usize + json.len(),
                bytes.len(),
                "no slack"
            );
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(&bytes[cur.position() as usize..], json.as_bytes());
            // The JSON view is the frame's own buffer, not a copy.
            assert_eq!(
                json.bytes().as_ptr(),
                bytes[cur.position() as usize..].as_ptr()
            );
        }
        let s = WipedFrame::from_static("{}");
        assert_eq!(&s.bytes()[..], b"\x81\x02{}");
    }

    #[test]
    fn the_wiping_owner_is_dropped_with_the_last_reference() {
        // `Bytes::from_owner` keeps the owner alive while any clone lives; the owner
        // here records its drop, and wraps a `Wiping`, whose drop zeroes the bytes.
        struct Probe(Wiping, Arc<AtomicBool>);
        impl AsRef<[u8]> for Probe {
            fn as_ref(&self) -> &[u8] {
                self.0.as_ref()
            }
        }
        impl Drop for Probe {
            fn drop(&mut self) {
                self.1.store(true, Ordering::SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let bytes = Bytes::from_owner(Probe(Wiping(b"295109912611193".to_vec()), dropped.clone()));
        let clone = bytes.clone();
        drop(bytes);
        assert!(!dropped.load(Ordering::SeqCst), "still referenced");
        drop(clone);
        assert!(
            dropped.load(Ordering::SeqCst),
            "dropped with the last reference"
        );
    }
}
