//! Fan-out latency: one event published on the hub → the last of N WebSocket
//! subscribers has received it, over loopback, for N = 1, 100 and 1,000.
//!
//! Runs the real `serve` in-process (2 worker threads, like the target machine) and
//! real tokio-tungstenite clients. Prints p50/p99/max per N. Target: p99 < 50 ms at
//! 1,000 subscribers. `max_clients` is raised for the run (its default is 32).
//!
//! `cargo bench --bench fanout` (optionally `-- 1 100 1000` and `ROUNDS=…`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use vitale_bridge::bus::{Hub, PcscStatus};
use vitale_bridge::card::CardType;
use vitale_bridge::protocol::ReaderKind;
use vitale_bridge::server::{ServerConfig, serve};
use vitale_bridge::transport::Update;

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1, 100, 1000]
    } else {
        sizes
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        println!(
            "fan-out over loopback, {rounds} events per size (publish -> last subscriber received)"
        );
        for n in sizes {
            let lat = run(n, rounds).await;
            println!(
                "subscribers {n:>5}: p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
                ms(percentile(&lat, 0.50)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&Duration::ZERO)),
            );
        }
    });
}

async fn run(n: usize, rounds: usize) -> Vec<Duration> {
    let hub = Hub::new(PcscStatus::Disabled);
    hub.publish(Update::ReaderAdded {
        id: "sim:0".into(),
        name: "Bench reader".into(),
        kind: ReaderKind::Simulated,
        contactless: false,
        handle: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let cfg = ServerConfig {
        max_clients: n + 16,
        max_pending_handshakes: n + 16,
        ..ServerConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(vec![listener], hub.clone(), cfg, async move {
        let _ = stop_rx.await;
    }));

    // Each client reports (seq, arrival time) for every event it receives.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let url = format!("ws://127.0.0.1:{port}/v1");
    let mut clients = Vec::new();
    for _ in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connect");
        ws.send(Message::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#,
        ))
        .await
        .expect("subscribe");
        // The subscribe response.
        ws.next().await.expect("open").expect("response");
        let seen = seen_tx.clone();
        clients.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let at = Instant::now();
                    if let Some(seq) = seq_of(t.as_str()) {
                        let _ = seen.send((seq, at));
                    }
                }
            }
        }));
    }

    let hub = Arc::clone(&hub);
    let mut lat = Vec::with_capacity(rounds);
    for round in 0..rounds + 5 {
        let t0 = Instant::now();
        let update = if round % 2 == 0 {
            Update::CardInserted {
                reader: "sim:0".into(),
                atr: vec![0x3B, 0x8F, 0x80, 0x01],
                card_type: CardType::Vitale2,
            }
        } else {
            Update::CardRemoved {
                reader: "sim:0".into(),
            }
        };
        hub.publish(update);
        let seq = hub.seq();
        let mut got = 0;
        let mut last = t0;
        while got < n {
            let (s, at) = seen_rx.recv().await.expect("clients alive");
            if s == seq {
                got += 1;
                last = last.max(at);
            }
        }
        // The first rounds warm caches and the allocator.
        if round >= 5 {
            lat.push(last - t0);
        }
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    for c in clients {
        c.abort();
    }
    lat.sort();
    lat
}

fn seq_of(text: &str) -> Option<u64> {
    let rest = &text[text.find("\"seq\":")? + 6..];
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
