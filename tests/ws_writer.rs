//! The one-task session and its batching writer over real sockets (issue 12 item 3):
//! requests that arrive with the upgrade, a burst queued behind a blocked write goes
//! out complete and in order, a client that closes mid-frame, and shutdown while a
//! write is blocked mid-frame.
mod support;
mod ws_harness;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use ws_harness::{Server, WAIT, add_reader, cfg, masked_text};

/// Reads one server frame: (opcode byte, payload). Server frames are never masked.
async fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = Vec::new();
    loop {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .expect("a frame in time")
            .expect("read");
        head.push(b[0]);
        let mut cur = std::io::Cursor::new(&head[..]);
        if let Some((h, len)) = FrameHeader::parse(&mut cur).expect("valid header") {
            assert_eq!(h.mask, None, "the server never masks");
            let mut payload = vec![0u8; len as usize];
            tokio::time::timeout(WAIT, s.read_exact(&mut payload))
                .await
                .expect("payload in time")
                .expect("read");
            return (head[0], payload);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_with_the_upgrade_is_answered() {
    let server = Server::start(cfg()).await;
    let mut s = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    // The request head and the first frame in one write: the frame reaches the
    // session inside the bytes read with the head, never signalled by the socket.
    let mut bytes =
        ws_harness::upgrade_request(&format!("127.0.0.1:{}", server.port), None).into_bytes();
    bytes.extend(masked_text(br#"{"jsonrpc":"2.0","id":7,"method":"hello"}"#));
    s.write_all(&bytes).await.expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.expect("head");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    let (op, payload) = read_frame(&mut s).await;
    assert_eq!(op, 0x81, "final text frame");
    let v: Value = serde_json::from_slice(&payload).expect("json");
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"]["protocol"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_behind_a_blocked_write_arrives_whole_gapless_and_in_order() {
    let server = Server::start(cfg()).await;
    let mut s = ws_harness::raw_subscriber(server.port).await;
    let (_, payload) = read_frame(&mut s).await;
    let sub: Value = serde_json::from_slice(&payload).expect("json");
    let start = sub["result"]["seq"].as_u64().expect("seq");
    // More than the socket buffers take (the client does not read meanwhile), so
    // the writer blocks mid-frame and the rest waits in the hub's queue.
    let n = 200;
    for i in 0..n {
        add_reader(&server, i, 2000);
    }
    for want in start + 1..=start + n as u64 {
        let (op, payload) = read_frame(&mut s).await;
        assert_eq!(op, 0x81);
        let v: Value = serde_json::from_slice(&payload).expect("each frame is whole JSON");
        assert_eq!(v["params"]["seq"], want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_mid_frame_is_released_and_nobody_else_notices() {
    let server = Server::start(cfg()).await;
    let mut other = support::Client::connect(&server.url()).await;
    other.call("subscribe", json!({})).await;
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port))
            .await
            .expect("connect");
        ws_harness::raw_upgrade(&mut s, server.port).await;
        let frame = masked_text(br#"{"jsonrpc":"2.0","id":1,"method":"hello"}"#);
        s.write_all(&frame[..frame.len() / 2])
            .await
            .expect("half a frame");
        drop(s);
    }
    ws_harness::until("half-frame clients released", || {
        server.hub.status().clients == 1
    })
    .await;
    add_reader(&server, 0, 4);
    assert_eq!(other.next_event().await["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_write_is_blocked_mid_frame_ends_within_the_close_timeout() {
    let mut server = Server::start(cfg()).await;
    let mut stuck = ws_harness::raw_subscriber(server.port).await;
    let _ = read_frame(&mut stuck).await;
    let mut fine = support::Client::connect(&server.url()).await;
    fine.call("subscribe", json!({})).await;
    for i in 0..100 {
        add_reader(&server, i, 4000);
    }
    for want in 1..=100u64 {
        assert_eq!(fine.next_event().await["seq"], want);
    }
    // The stuck client never reads again; shutdown must not wait on it longer than
    // the close timeout (2 s in `cfg`), and the good client gets its 1001.
    let started = std::time::Instant::now();
    let (code, done) = tokio::join!(ws_harness::close_code(&mut fine.ws), server.shutdown());
    done.expect("serve returns");
    assert_eq!(
        code,
        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away
    );
    assert!(
        started.elapsed() < Duration::from_secs(2 + 3),
        "shutdown took {:?}",
        started.elapsed()
    );
    drop(stuck);
}
