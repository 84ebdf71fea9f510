//! What the local trust boundary (issue 11) costs, and what it protects:
//!
//! 1. The OS-user lookup each `/v1` handshake now does (`server::owner::lookup`: a
//!    `NETLINK_SOCK_DIAG` query for the client's socket), with 1 and with 1,000
//!    other open connections; measured directly and through `spawn_blocking`,
//!    which is how the router runs it, and the procfs fallback for comparison.
//!    Median and p99 of `ROUNDS` fresh connections.
//! 2. A legitimate client's time from `connect` to the `subscribe` result while
//!    none, 1,000 and 5,000 idle sockets (connected, never a byte) are held against the
//!    real in-process `serve`. Median, p99 and max of `SAMPLES` runs, the idle
//!    sockets opened afresh before each.
//!
//! Timings are printed, never asserted. `cargo bench --bench trust`
//! (`ROUNDS=…`, `SAMPLES=…`; arguments override the idle counts, e.g. `-- 1000 5000`).
//! Under `cargo test` (no `--bench` argument) it runs a few rounds as a smoke test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use vitale_bridge::bus::{Hub, PcscStatus};
use vitale_bridge::server::{ServerConfig, owner, serve};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "median {:>9.1?}  p99 {:>9.1?}  max {:>9.1?}  (n = {})",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1],
        v.len()
    )
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() {
    raise_fd_limit();
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = env("ROUNDS", if full { 1000 } else { 20 });
    let samples = env("SAMPLES", if full { 20 } else { 2 });
    let idle: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let idle = match (idle.is_empty(), full) {
        (false, _) => idle,
        (true, true) => vec![0, 1000, 5000],
        (true, false) => vec![0, 200],
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    println!("## OS-user lookup per handshake ({rounds} fresh connections each)");
    println!();
    let backgrounds: &[usize] = if full { &[1, 1000] } else { &[1, 50] };
    for &background in backgrounds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // `background` other established connections (both ends are in the table).
        let mut held = Vec::new();
        for _ in 0..background {
            let c = TcpStream::connect(addr).expect("connect");
            let (s, _) = listener.accept().expect("accept");
            held.push((c, s));
        }
        let mut direct = Vec::with_capacity(rounds);
        let mut blocking = Vec::with_capacity(rounds);
        let mut procfs = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let client = TcpStream::connect(addr).expect("connect");
            let (accepted, peer) = listener.accept().expect("accept");
            let local: SocketAddr = accepted.local_addr().expect("local");
            let t = Instant::now();
            let uid = owner::lookup(peer, local).expect("owner found");
            direct.push(t.elapsed());
            std::hint::black_box(uid);
            let t = Instant::now();
            let uid = rt
                .block_on(async move {
                    tokio::task::spawn_blocking(move || owner::lookup(peer, local)).await
                })
                .expect("join")
                .expect("owner found");
            blocking.push(t.elapsed());
            std::hint::black_box(uid);
            let t = Instant::now();
            let uid = owner::lookup_proc(peer, local).expect("owner in procfs");
            procfs.push(t.elapsed());
            std::hint::black_box(uid);
            drop((client, accepted));
        }
        let lines = std::fs::read_to_string("/proc/net/tcp")
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0);
        println!(
            "- {background} other connections of this process ({lines} sockets on the machine):"
        );
        println!(
            "  - sock_diag (what the router uses)     {}",
            summary(direct)
        );
        println!(
            "  - the same through spawn_blocking      {}",
            summary(blocking)
        );
        println!(
            "  - /proc/net/tcp (fallback)             {}",
            summary(procfs)
        );
    }

    println!();
    println!("## connect → subscribe result while idle sockets are held ({samples} samples each)");
    println!();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let hub = Hub::new(PcscStatus::Disabled);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            vec![listener],
            hub,
            ServerConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        let url = format!("ws://127.0.0.1:{port}/v1");
        for n in idle {
            let mut times = Vec::with_capacity(samples);
            let mut opened = Duration::ZERO;
            for _ in 0..samples {
                let t = Instant::now();
                let mut held = Vec::with_capacity(n);
                for _ in 0..n {
                    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                        Ok(s) => held.push(s),
                        Err(e) => panic!("idle socket {}: {e}", held.len()),
                    }
                }
                opened += t.elapsed();
                let t = Instant::now();
                let (mut ws, _) = tokio_tungstenite::connect_async(&url)
                    .await
                    .expect("the legitimate client connects");
                ws.send(Message::text(
                    r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{}}"#,
                ))
                .await
                .expect("send");
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if t.contains("\"id\":1") => break,
                        Some(Ok(_)) => continue,
                        other => panic!("no subscribe result: {other:?}"),
                    }
                }
                times.push(t.elapsed());
                let _ = ws.close(None).await;
                drop(held);
            }
            println!(
                "- {n:>5} idle sockets held (opened in {:.1?} on average): {}",
                opened / samples as u32,
                summary(times)
            );
        }
        let _ = stop.send(());
        let _ = server.await;
    });
}
