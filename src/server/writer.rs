//! The outgoing side of one WebSocket connection: an ordered queue of complete frames
//! (responses, events, pings, pongs, the closing frame), written with one vectored
//! write per wake of the session.
//!
//! Frames are `Bytes`: an event's frame is the hub's one encoding for its view,
//! shared by reference count with every other subscriber of that view, so queueing
//! it costs a reference count, never a copy. A burst of events that is queued by the
//! time the session runs goes out in one `writev(2)`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;
use tokio::net::TcpStream;

/// A close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// RFC 6455 close code.
    pub code: u16,
    /// Short reason (sent in the frame and logged).
    pub reason: &'static str,
}

impl Closing {
    /// Server shutdown (1001).
    pub const GOING_AWAY: Closing = Closing {
        code: 1001,
        reason: "server shutting down",
    };
    /// The outgoing queue filled (1008).
    pub const QUEUE_FULL: Closing = Closing {
        code: 1008,
        reason: "outgoing queue full",
    };
    /// The client stopped reading.
    pub const WRITE_STALLED: Closing = Closing {
        code: 1008,
        reason: "client stopped reading",
    };
    /// Two pings went unanswered.
    pub const NO_PONG: Closing = Closing {
        code: 1008,
        reason: "no pong",
    };
    /// A message over the size limit (1009).
    pub const TOO_BIG: Closing = Closing {
        code: 1009,
        reason: "message too big",
    };
    /// A text frame that is not UTF-8 (1007).
    pub const BAD_UTF8: Closing = Closing {
        code: 1007,
        reason: "invalid UTF-8",
    };
    /// A WebSocket protocol violation (1002).
    pub const PROTOCOL: Closing = Closing {
        code: 1002,
        reason: "protocol error",
    };
}

/// The header of one unmasked, final text frame carrying `len` payload bytes, for a
/// response (events come from the hub as complete frames).
pub fn text_header(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(10);
    crate::protocol::wiped::text_frame_header(len, &mut out);
    Bytes::from(out)
}

/// Most buffers handed to one `writev(2)`; far below `IOV_MAX` (1024), and a batch of
/// events is at most this many frames anyway.
const MAX_SLICES: usize = 64;

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything queued is in the kernel.
    Done,
    /// The socket's send buffer is full; `progressed` if some bytes went out first.
    Blocked {
        /// Whether this flush wrote anything before blocking.
        progressed: bool,
    },
}

/// Complete frames waiting for the socket, in the order they must go out.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Bytes>,
    /// Bytes of the front buffer already written (a write may stop mid-frame).
    offset: usize,
    /// Unwritten bytes in total.
    bytes: usize,
}

impl Outbox {
    /// Queues one buffer (a complete frame, or a part of one queued in order).
    pub fn push(&mut self, buf: Bytes) {
        if buf.is_empty() {
            return;
        }
        self.bytes += buf.len();
        self.frames.push_back(buf);
    }

    /// Queues a text frame of `payload` (a header, then the payload itself: no copy).
    pub fn push_text(&mut self, payload: Bytes) {
        self.push(text_header(payload.len()));
        self.push(payload);
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Buffers waiting (a text response counts two: header and payload).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Unwritten bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether a frame is partly written: nothing else may be interleaved now.
    pub fn mid_frame(&self) -> bool {
        self.offset > 0
    }

    /// Writes as much as the socket takes without waiting, `MAX_SLICES` buffers per
    /// system call.
    pub fn flush(&mut self, tcp: &TcpStream) -> io::Result<Flushed> {
        let mut progressed = false;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut n = 0;
            for (i, b) in self.frames.iter().take(MAX_SLICES).enumerate() {
                let b = if i == 0 { &b[self.offset..] } else { &b[..] };
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            match tcp.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.advance(written);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed::Blocked { progressed });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Flushed::Done)
    }

    fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.frames.front() else {
                return;
            };
            let left = front.len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.offset = 0;
            self.frames.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    /// tungstenite parses back exactly what we format, for each length format's
    /// edges (7-bit, 16-bit and 64-bit lengths, RFC 6455 §5.2).
    #[test]
    fn text_headers_parse_back_for_every_length_format() {
        for len in [
            0usize,
            1,
            125,
            126,
            127,
            1000,
            65_535,
            65_536,
            70_000,
            1 << 20,
        ] {
            let h = text_header(len);
            let want = match len {
                0..=125 => 2,
                126..=65_535 => 4,
                _ => 10,
            };
            assert_eq!(h.len(), want, "header size for {len}");
            let mut cur = std::io::Cursor::new(&h[..]);
            let (parsed, plen) = FrameHeader::parse(&mut cur)
                .expect("valid")
                .expect("complete");
            assert_eq!(plen, len as u64);
            assert!(parsed.is_final);
            assert_eq!(parsed.mask, None, "a server never masks");
            assert!(!parsed.rsv1 && !parsed.rsv2 && !parsed.rsv3);
            assert_eq!(parsed.opcode, OpCode::Data(Data::Text));
        }
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        (s.expect("accept").0, c.expect("connect"))
    }

    #[tokio::test]
    async fn a_queued_burst_goes_out_in_order_and_the_outbox_empties() {
        let (server, mut client) = pair().await;
        let mut out = Outbox::default();
        let shared = Bytes::from_static(b"{\"seq\":1}");
        for _ in 0..3 {
            out.push_text(shared.clone());
        }
        assert_eq!(out.len(), 6);
        assert_eq!(out.flush(&server).expect("flush"), Flushed::Done);
        assert!(out.is_empty() && out.bytes() == 0);
        let mut got = vec![0u8; 3 * 11];
        client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got[..11], b"\x81\x09{\"seq\":1}");
        assert_eq!(got[..11], got[11..22]);
        assert_eq!(got[..11], got[22..]);
    }

    #[tokio::test]
    async fn a_full_socket_blocks_mid_frame_and_resumes_where_it_stopped() {
        let (server, mut client) = pair().await;
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .expect("sndbuf");
        let mut out = Outbox::default();
        let big = Bytes::from(vec![b'x'; 1 << 20]);
        out.push_text(big.clone());
        let first = out.flush(&server).expect("flush");
        assert!(
            matches!(first, Flushed::Blocked { progressed: true }),
            "{first:?}"
        );
        assert!(out.mid_frame());
        let left = out.bytes();
        assert!(left > 0 && left < (1 << 20) + 10);
        // Read everything while the outbox drains.
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut buf = vec![0u8; 65536];
            while all.len() < (1 << 20) + 10 {
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed early");
                all.extend_from_slice(&buf[..n]);
            }
            all
        });
        loop {
            server.writable().await.expect("writable");
            if out.flush(&server).expect("flush") == Flushed::Done {
                break;
            }
        }
        let all = reader.await.expect("reader");
        assert_eq!(&all[..10], &text_header(1 << 20)[..]);
        assert!(all[10..].iter().all(|b| *b == b'x'));
        assert_eq!(all.len(), (1 << 20) + 10);
    }
}
