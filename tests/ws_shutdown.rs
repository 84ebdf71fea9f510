//! Shutdown while everything is busy (issue 12, bad input): a card thread publishing
//! a stream of events, subscribers reading, subscribers that stopped reading, and
//! connections that never sent a byte. Every reading client gets 1001, the card
//! thread is never held up, and no socket is left open afterwards.
//!
//! Alone in its own test binary: it counts this process's open sockets, which a test
//! running beside it would change.
mod support;
mod ws_harness;

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vitale_bridge::protocol::ReaderKind;
use vitale_bridge::transport::Update;
use ws_harness::{Server, WAIT, cfg};

/// Open sockets of this process (`/proc/self/fd` entries that link to `socket:[…]`).
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_busy_closes_every_client_and_leaves_no_socket_behind() {
    let before = open_sockets();
    let mut server = Server::start(cfg()).await;

    let mut readers = Vec::new();
    for _ in 0..20 {
        let mut c = support::Client::connect(&server.url()).await;
        c.call("subscribe", json!({})).await;
        readers.push(c);
    }
    let mut stuck = Vec::new();
    for _ in 0..5 {
        // Subscribes, then never reads again.
        stuck.push(ws_harness::raw_subscriber(server.port).await);
    }
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(
            tokio::net::TcpStream::connect(("127.0.0.1", server.port))
                .await
                .expect("connect"),
        );
    }
    ws_harness::until("every subscriber registered", || {
        server.hub.subscriber_count() == 25
    })
    .await;

    // The card thread: publishes as fast as it can until told to stop, and reports
    // how many it got out. It must never be held up by a client or by the shutdown.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let card = {
        let hub = server.hub.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                hub.publish(Update::ReaderAdded {
                    id: format!("sim:{n}"),
                    name: "reader".repeat(100),
                    kind: ReaderKind::Simulated,
                    contactless: false,
                    handle: None,
                });
                hub.publish(Update::ReaderRemoved {
                    reader: format!("sim:{n}"),
                });
                n += 1;
            }
            n
        })
    };
    // Shut down mid-stream: at least one event has reached a reader.
    let first = readers[0].next_event().await;
    assert!(first["seq"].as_u64().is_some(), "{first}");

    let closes = async {
        let mut codes = Vec::new();
        for c in readers.iter_mut() {
            codes.push(ws_harness::close_code(&mut c.ws).await);
        }
        codes
    };
    let (codes, done) = tokio::join!(closes, server.shutdown());
    done.expect("serve returns");
    for (i, code) in codes.iter().enumerate() {
        // A reader that kept up gets 1001; one the stream overran first gets 1008.
        // Either way a clean close, never a dropped socket.
        assert!(
            matches!(code, CloseCode::Away | CloseCode::Policy),
            "reader {i} closed with {code:?}"
        );
    }
    assert!(
        codes.contains(&CloseCode::Away),
        "no reader got the shutdown's 1001: {codes:?}"
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = tokio::time::timeout(WAIT, tokio::task::spawn_blocking(move || card.join()))
        .await
        .expect("the card thread is never held up")
        .expect("join task")
        .expect("card thread");
    assert!(published > 0);

    drop(readers);
    drop(stuck);
    drop(silent);
    ws_harness::until("every subscription released", || {
        server.hub.subscriber_count() == 0
    })
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = open_sockets();
        if now <= before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} sockets open after shutdown, {before} before the server started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
