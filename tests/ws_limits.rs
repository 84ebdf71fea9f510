//! product.md §4.5 over real sockets: message size (1009), a client that never reads
//! (1008 at its queue limit), the request rate, missed pongs, and shutdown (1001) —
//! each while other clients keep being served.
mod support;
mod ws_harness;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vitale_bridge::server::ServerConfig;
use ws_harness::{Server, WAIT, add_reader, cfg, close_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_closes_1009_others_unaffected() {
    let server = Server::start(cfg()).await;
    let mut other = support::Client::connect(&server.url()).await;
    other.call("subscribe", json!({})).await;
    let mut big = support::Client::connect(&server.url()).await;
    // Exactly the limit is fine (a parse error, but the connection stays).
    big.send_text(&"x".repeat(64 * 1024)).await;
    assert_eq!(big.recv().await["error"]["code"], -32700);
    // One byte more closes with 1009.
    big.send_text(&"x".repeat(64 * 1024 + 1)).await;
    assert_eq!(close_code(&mut big.ws).await, CloseCode::Size);
    add_reader(&server, 0, 4);
    assert_eq!(other.wait_event("reader.added").await["seq"], 1);
    assert_eq!(
        other.call("hello", json!({})).await["result"]["protocol"],
        1
    );
    ws_harness::until("big client released", || server.hub.status().clients == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_frame_header_is_refused_without_reading_the_payload() {
    let server = Server::start(cfg()).await;
    let mut s = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    ws_harness::raw_upgrade(&mut s, server.port).await;
    // A masked text frame announcing 2^62 bytes, with none of them sent.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 62).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&frame).await.expect("frame");
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.len() >= 4 {
                break;
            }
        }
    })
    .await
    .expect("server answers");
    // Close frame (0x88) with code 1009 (0x03F1).
    assert_eq!(got.first(), Some(&0x88), "{got:?}");
    assert_eq!(&got[2..4], &[0x03, 0xF1], "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_closed_1008_others_keep_receiving() {
    let server = Server::start(ServerConfig {
        queue_len: 16,
        ..cfg()
    })
    .await;
    let mut fast = support::Client::connect(&server.url()).await;
    fast.call("subscribe", json!({})).await;

    // The slow client: a tiny receive buffer, subscribes, then stops reading.
    let tcp = ws_harness::small_window_tcp(server.port).await;
    let (mut slow, _) = tokio_tungstenite::client_async(server.url(), tcp)
        .await
        .expect("slow client");
    slow.send(Message::text(
        r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#,
    ))
    .await
    .expect("subscribe");
    let first = slow.next().await.expect("open").expect("ok");
    let sub: Value = serde_json::from_str(first.to_text().expect("text")).expect("json");
    let start_seq = sub["result"]["seq"].as_u64().expect("seq");
    assert_eq!(server.hub.subscriber_count(), 2);

    // Publish at the fast client's pace until the hub drops the slow one.
    let published = ws_harness::publish_until_a_subscriber_drops(&server, &mut fast).await;
    // The slow client now reads: a gapless prefix of the events, then 1008.
    let mut expected = start_seq + 1;
    let code = loop {
        let msg = tokio::time::timeout(WAIT, slow.next())
            .await
            .expect("slow client gets its close")
            .expect("stream ended without Close")
            .expect("websocket error");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                assert_eq!(v["params"]["seq"], expected);
                expected += 1;
            }
            Message::Close(f) => break f.expect("code").code,
            _ => {}
        }
    };
    assert_eq!(code, CloseCode::Policy);
    assert!(
        expected - 1 < published as u64,
        "slow client got everything?"
    );
    // Everyone else is unaffected.
    add_reader(&server, published, 4);
    assert_eq!(fast.next_event().await["seq"], published as u64 + 1);
    ws_harness::until("slow client released", || server.hub.status().clients == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_per_connection() {
    let server = Server::start(ServerConfig {
        rate_per_sec: 5,
        ..cfg()
    })
    .await;
    let mut c = support::Client::connect(&server.url()).await;
    let mut other = support::Client::connect(&server.url()).await;
    for id in 0..30 {
        c.send_text(&json!({"jsonrpc":"2.0","id":id,"method":"hello"}).to_string())
            .await;
    }
    let mut ok = 0;
    let mut limited = 0;
    for id in 0..30 {
        let r = c.recv().await;
        assert_eq!(r["id"], id);
        if r["result"].is_object() {
            ok += 1;
        } else {
            assert_eq!(r["error"]["code"], -32000);
            assert_eq!(r["error"]["data"]["reason"], "RATE_LIMITED");
            assert_eq!(r["error"]["data"]["retriable"], true);
            limited += 1;
        }
    }
    assert!((5..=8).contains(&ok), "{ok} allowed at 5/s");
    assert!(limited >= 22, "{limited} limited");
    // Another connection has its own budget.
    assert!(other.call("hello", json!({})).await["result"].is_object());
    // The bucket refills.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = c.call("hello", json!({})).await;
        if r["result"].is_object() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refilled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_missed_pongs_close_the_connection() {
    let server = Server::start(ServerConfig {
        ping_interval: Duration::from_millis(200),
        close_timeout: Duration::from_millis(500),
        ..cfg()
    })
    .await;
    // A raw client that completes the handshake and then never answers anything.
    let mut s = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    s.write_all(
        ws_harness::upgrade_request(&format!("127.0.0.1:{}", server.port), None).as_bytes(),
    )
    .await
    .expect("upgrade");
    // A well-behaved client, reading (so tungstenite answers pings), stays.
    let good = support::Client::connect(&server.url()).await;
    let (done, finish) = tokio::sync::oneshot::channel::<()>();
    let keeper = tokio::spawn(async move {
        let mut good = good;
        tokio::pin!(finish);
        loop {
            tokio::select! {
                _ = &mut finish => return good,
                m = good.ws.next() => match m {
                    Some(Ok(Message::Ping(_))) => continue,
                    other => panic!("good client got {other:?}"),
                },
            }
        }
    });
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("silent client is dropped")
        .expect("read");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "));
    let frames = &got[text.find("\r\n\r\n").expect("head") + 4..];
    // Two pings (0x89 0x00), then a Close (0x88) with 1008 (0x03F0).
    assert_eq!(&frames[..4], &[0x89, 0x00, 0x89, 0x00], "{frames:?}");
    assert_eq!(frames[4], 0x88, "{frames:?}");
    assert_eq!(&frames[6..8], &[0x03, 0xF0], "{frames:?}");
    // Meanwhile the good client, answering pings while it waits, is still served.
    let _ = done.send(());
    let mut good = keeper.await.expect("keeper");
    let r = good.call("hello", json!({})).await;
    assert!(r["result"].is_object());
}

/// The close code, then the rest of the closing handshake: the client's reply goes
/// out on the next read, and the stream ends without an error.
async fn close_then_end<S>(ws: &mut S) -> CloseCode
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let code = close_code(ws).await;
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("stream ends after the close handshake");
    assert!(end.is_none(), "unclean end: {end:?}");
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_client_with_1001() {
    let mut server = Server::start(cfg()).await;
    let mut a = support::Client::connect(&server.url()).await;
    a.call("subscribe", json!({})).await;
    let mut b = support::Client::connect_with(&server.url(), &[("Origin", "https://app.example")])
        .await
        .expect("web client");
    b.call("hello", json!({})).await;
    let (ra, rb, done) = tokio::join!(
        close_then_end(&mut a.ws),
        close_then_end(&mut b.ws),
        server.shutdown()
    );
    assert_eq!(ra, CloseCode::Away);
    assert_eq!(rb, CloseCode::Away);
    done.expect("serve returns Ok");
    // Nothing listens any more.
    assert!(
        TcpStream::connect(("127.0.0.1", server.port))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_limit_not_the_kernel_bounds_what_a_stuck_client_holds() {
    // Default queue (1024) and a client with the OS's default receive buffer that
    // subscribes and never reads. The daemon's fixed send buffer means the client is
    // closed once roughly queue_len events are waiting, not after the megabytes an
    // autotuned loopback buffer would swallow first.
    let server = Server::start(cfg()).await;
    let mut fast = support::Client::connect(&server.url()).await;
    fast.call("subscribe", json!({})).await;
    let (mut stuck, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .expect("stuck client");
    stuck
        .send(Message::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#,
        ))
        .await
        .expect("subscribe");
    ws_harness::until("stuck client subscribed", || {
        server.hub.subscriber_count() == 2
    })
    .await;
    let published = ws_harness::publish_until_a_subscriber_drops(&server, &mut fast).await;
    // What may sit outside the queue: our send buffer (64 KiB, doubled by Linux) and
    // the client's receive buffer at its default size (tcp_rmem's middle value,
    // doubled), in ~4.2 KiB events, plus slack.
    let rmem_default: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_rmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(131_072);
    let in_flight = (2 * 64 * 1024 + 2 * rmem_default) / 4096;
    let bound = ServerConfig::default().queue_len + in_flight + 64;
    assert!(
        published <= bound,
        "{published} events published before the stuck client was dropped (bound {bound})"
    );
}
