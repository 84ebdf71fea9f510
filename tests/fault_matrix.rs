//! Fault matrix, WebSocket side (issue 6 §3): ten thousand malformed frames, frames
//! that break RFC 6455 itself, and a client that reads one byte a second — each while
//! a subscribed bystander keeps being served, and with every client slot given back.
//! The hardware side lives beside its rigs: pcscd killed under client load in
//! `pcsc_cards`, card and phone pulled at each APDU in `pcsc_cards`/`nfc_backend`,
//! the PN532 emulator killed in `nfc_backend`.
mod support;
mod ws_harness;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use vitale_bridge::protocol::ReaderKind;
use vitale_bridge::server::ServerConfig;
use vitale_bridge::transport::Update;
use ws_harness::{Server, WAIT, cfg};

const MALFORMED: usize = 10_000;
const CONNECTIONS: usize = 10;

/// A small deterministic generator: the same 10,000 frames on every run, so a
/// failure names a reproducible frame.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One malformed frame and the error the server must answer it with.
struct Case {
    msg: Message,
    code: i64,
    id: Value,
}

fn malformed(i: usize, rng: &mut XorShift) -> Case {
    let id = json!(i);
    let text = |s: String, code: i64, id: Value| Case {
        msg: Message::text(s),
        code,
        id,
    };
    match i % 8 {
        // Not JSON at all: garbage that cannot start a JSON value.
        0 => {
            let junk: String = (0..1 + rng.below(200))
                .map(|_| char::from(b' ' + (rng.next() % 95) as u8))
                .collect();
            text(format!("#{junk}"), -32700, Value::Null)
        }
        // A valid request cut short: no prefix of an object is JSON.
        1 => {
            let full = json!({"jsonrpc":"2.0","id":i,"method":"hello","params":{}}).to_string();
            let cut = 1 + rng.below(full.len() - 1);
            text(full[..cut].to_string(), -32700, Value::Null)
        }
        // JSON, but not a request object.
        2 => {
            let v = match rng.below(5) {
                0 => json!(rng.next()),
                1 => json!(format!("{:x}", rng.next())),
                2 => json!(null),
                3 => json!([]),
                _ => json!([{"jsonrpc":"2.0","id":i,"method":"hello"}]),
            };
            text(v.to_string(), -32600, Value::Null)
        }
        // A request object with a broken envelope.
        3 => {
            let v = if rng.below(2) == 0 {
                json!({"id":i,"method":"hello"})
            } else {
                json!({"jsonrpc":"2.0","id":i,"method":rng.next()})
            };
            text(v.to_string(), -32600, id)
        }
        // A method that does not exist.
        4 => text(
            json!({"jsonrpc":"2.0","id":i,"method":format!("m{:x}", rng.next())}).to_string(),
            -32601,
            id,
        ),
        // Wrong parameters.
        5 => {
            let v = match rng.below(3) {
                0 => json!({"jsonrpc":"2.0","id":i,"method":"hello","params":[rng.next()]}),
                1 => json!({"jsonrpc":"2.0","id":i,"method":"status","params":{"x":1}}),
                _ => json!({"jsonrpc":"2.0","id":i,"method":"card.read","params":{}}),
            };
            text(v.to_string(), -32602, id)
        }
        // Bytes in a binary frame.
        6 => Case {
            msg: {
                let n = 1 + rng.below(512);
                Message::binary(rng.bytes(n))
            },
            code: -32600,
            id: Value::Null,
        },
        // Nesting deep enough to hurt a recursive parser.
        _ => text("[".repeat(100 + rng.below(20_000)), -32700, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_frames_each_get_one_error_and_nobody_else_notices() {
    // The rate limit has its own test; here it would only turn errors into RATE_LIMITED.
    let server = Server::start(ServerConfig {
        rate_per_sec: 1_000_000,
        ..cfg()
    })
    .await;
    let mut bystander = support::Client::connect(&server.url()).await;
    bystander.call("subscribe", json!({})).await;

    let mut tasks = Vec::new();
    for conn in 0..CONNECTIONS {
        let url = server.url();
        tasks.push(tokio::spawn(async move {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ conn as u64);
            let mut c = support::Client::connect(&url).await;
            let per = MALFORMED / CONNECTIONS;
            // Pipelined in chunks: many frames in flight, never more than the
            // connection's queue could hold.
            for chunk in (0..per).collect::<Vec<_>>().chunks(100) {
                let mut expected = Vec::new();
                for &k in chunk {
                    let case = malformed(conn * per + k, &mut rng);
                    futures_util::SinkExt::send(&mut c.ws, case.msg)
                        .await
                        .expect("send");
                    expected.push((case.code, case.id));
                }
                for (code, id) in expected {
                    let r = c.recv().await;
                    assert_eq!(r["error"]["code"], code, "connection {conn}: {r}");
                    assert_eq!(r["id"], id, "connection {conn}: {r}");
                }
            }
            // Still a working connection after a thousand errors.
            assert_eq!(c.call("hello", json!({})).await["result"]["protocol"], 1);
            per
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.expect("malformed client task");
    }
    assert_eq!(answered, MALFORMED);

    // The bystander saw nothing but its own traffic and is served as before.
    server.hub.publish(Update::ReaderAdded {
        id: "sim:0".into(),
        name: "after the storm".into(),
        kind: ReaderKind::Simulated,
        contactless: false,
        handle: None,
    });
    let ev = bystander.wait_event("reader.added").await;
    assert_eq!(ev["seq"], 1, "{ev}");
    assert!(bystander.pending.is_empty(), "{:?}", bystander.pending);
    ws_harness::until("malformed clients released", || {
        server.hub.status().clients == 1
    })
    .await;
}

/// Writes `frame` after a completed upgrade and returns what the server sent back
/// until it closed the connection.
async fn raw_frame_exchange(port: u16, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    ws_harness::raw_upgrade(&mut s, port).await;
    s.write_all(frame).await.expect("frame");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("server closes a connection that broke the framing");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_break_rfc6455_close_with_1002_and_free_the_slot() {
    let server = Server::start(cfg()).await;
    let mut bystander = support::Client::connect(&server.url()).await;
    bystander.call("subscribe", json!({})).await;
    let masked = |head: &[u8], payload: &[u8]| {
        let mut f = head.to_vec();
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked client frame", vec![0x81, 0x02, b'{', b'}']),
        ("RSV1 without an extension", masked(&[0xC1, 0x82], b"{}")),
        ("reserved data opcode 3", masked(&[0x83, 0x82], b"{}")),
        ("reserved control opcode B", masked(&[0x8B, 0x80], b"")),
        ("fragmented ping", masked(&[0x09, 0x80], b"")),
        (
            "continuation with nothing to continue",
            masked(&[0x80, 0x82], b"{}"),
        ),
        ("control frame over 125 bytes", {
            let mut f = vec![0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0];
            f.extend_from_slice(&[0u8; 126]);
            f
        }),
        ("text frame inside a fragmented message", {
            let mut f = masked(&[0x01, 0x81], b"[");
            f.extend(masked(&[0x81, 0x81], b"]"));
            f
        }),
    ];
    for (what, frame) in &cases {
        let got = raw_frame_exchange(server.port, frame).await;
        // Either a Close frame carrying 1002 (0x03EA) or, at the least, the
        // connection dropped; never an answer as if the frame were fine.
        if !got.is_empty() {
            assert_eq!(got[0], 0x88, "{what}: {got:?}");
            assert_eq!(got.get(2..4), Some(&[0x03, 0xEA][..]), "{what}: {got:?}");
        }
    }
    ws_harness::until("broken-framing clients released", || {
        server.hub.status().clients == 1
    })
    .await;
    assert_eq!(
        bystander.call("hello", json!({})).await["result"]["protocol"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reading_one_byte_a_second_is_dropped_without_slowing_anyone() {
    let server = Server::start(ServerConfig {
        queue_len: 16,
        ..cfg()
    })
    .await;
    let mut fast = support::Client::connect(&server.url()).await;
    fast.call("subscribe", json!({})).await;

    // The trickle client: small socket buffer, subscribes, then takes one byte a
    // second for as long as the server keeps the connection.
    let mut s = ws_harness::raw_subscriber(server.port).await;
    ws_harness::until("trickle client subscribed", || {
        server.hub.subscriber_count() == 2
    })
    .await;
    tokio::spawn(async move {
        let mut b = [0u8; 1];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            // The one-byte-a-second pace is the fault under test, not a wait.
            tick.tick().await;
            match s.read(&mut b).await {
                Ok(1) => {}
                _ => break,
            }
        }
    });

    // Publish at the fast client's pace; each event is big enough that the trickle
    // client's socket and queue fill after a few dozen.
    let published = ws_harness::publish_until_a_subscriber_drops(&server, &mut fast).await;
    // Its slot is given back within the close timeout, even though it never drains
    // what is already in flight.
    ws_harness::until("trickle client's slot released", || {
        server.hub.status().clients == 1
    })
    .await;
    // Everyone else carries on.
    server.hub.publish(Update::ReaderRemoved {
        reader: "sim:0".into(),
    });
    assert_eq!(fast.next_event().await["seq"], published as u64 + 1);
}
