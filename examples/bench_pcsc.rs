//! PC/SC benchmark on the vpcd rig (run by `scripts/bench-pcsc`, which provides a
//! private mount namespace with a tmpfs on /run/pcscd and the binary path).
//!
//! Prints: latency from the virtual card connecting to vpcd to `card.inserted` and to
//! `identity.read` at a WebSocket client (median of N insertions), next to the time
//! `pcsc_scan` printed the same insertion; APDUs per family-card read; idle CPU of
//! the daemon (and of pcscd) with two readers attached.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vitale_bridge::card::{self, CardType, ReadContext};
use vitale_bridge::sim::SimChannel;
use vitale_bridge::sim::card_model::VirtualVitale;

const PORT: u16 = 0x8CA0;
const READER: &str = "pcsc:Virtual PCD 00 00";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.get(1).is_some_and(|a| a.ends_with(&want)) && c.get(3) == Some(&"0A")
        })
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime is 14th, stime 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
        }
        let _ = self.0.wait();
    }
}

fn spawn_lines(mut cmd: Command) -> (Kill, mpsc::Receiver<(f64, String)>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((now(), line));
        }
    });
    (Kill(child), rx)
}

async fn next_event(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> (f64, Value) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("event timeout")
            .expect("ws open")
            .expect("ws ok");
        if let Message::Text(t) = msg {
            let at = now();
            let v: Value = serde_json::from_str(&t).expect("json");
            if v["method"] == "event" {
                return (at, v["params"].clone());
            }
        }
    }
}

fn start_pcscd(conf: &Path) -> Kill {
    let pcscd = Kill(
        Command::new("pcscd")
            .args(["--foreground", "-c"])
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pcscd (apt-get install pcscd vsmartcard-vpcd)"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(Path::new("/run/pcscd/pcscd.comm").exists() && listening(PORT)) {
        assert!(Instant::now() < deadline, "pcscd did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    pcscd
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bin = PathBuf::from(std::env::var("VB_BIN").expect("VB_BIN: path of vitale-bridge"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let runs: usize = std::env::var("VB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");

    // APDUs per family-card read (detection + read), in-process and deterministic.
    let mut ch = SimChannel::new(VirtualVitale::demo_family(), false);
    let ctx = ReadContext {
        reader: "bench".into(),
        apcv_aid: vec![0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01],
        environment: None,
    };
    let t = card::detect(&mut ch, &ctx).expect("detect");
    let detect_apdus = ch.apdu_count();
    card::read_identity(&mut ch, CardType::Vitale2, &ctx, &mut |_, _| {}).expect("read");
    let total_apdus = ch.apdu_count();
    assert_eq!(t, CardType::Vitale2);

    // Private pcscd with the vpcd reader.
    let conf = dir.path().join("reader.conf");
    std::fs::write(&conf, format!("FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{PORT:04X}\nLIBPATH /usr/lib/pcsc/drivers/serial/libifdvpcd.so\nCHANNELID 0x{PORT:04X}\n")).expect("conf");
    let mut pcscd = start_pcscd(&conf);

    // The daemon, and pcsc_scan watching the same pcscd.
    let mut daemon_cmd = Command::new(&bin);
    daemon_cmd
        .args([
            "run",
            "--no-nfc",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .stderr(Stdio::null());
    let (daemon, daemon_lines) = spawn_lines(daemon_cmd);
    let (_, ready) = daemon_lines
        .recv_timeout(Duration::from_secs(20))
        .expect("ready line");
    let url = ready
        .strip_prefix("listening on ")
        .expect("ready line")
        .to_string();
    let mut scan_cmd = Command::new("stdbuf");
    scan_cmd
        .args(["-oL", "pcsc_scan", "-n"])
        .stderr(Stdio::null());
    let (_scan, scan_lines) = spawn_lines(scan_cmd);

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("ws");
    ws.send(Message::text(
        json!({"jsonrpc":"2.0","id":1,"method":"subscribe","params":{}}).to_string(),
    ))
    .await
    .expect("subscribe");
    // Wait until the reader is known (snapshot or reader.added).
    loop {
        let msg = ws.next().await.expect("open").expect("ok");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("json");
            let in_snapshot = v["result"]["snapshot"]["readers"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["id"] == READER));
            if in_snapshot
                || (v["params"]["type"] == "reader.added" && v["params"]["reader"] == READER)
            {
                break;
            }
        }
    }

    let card_file = root.join("tests/data/family.toml");
    let (mut to_inserted, mut to_identity, mut to_scan, mut overhead) =
        (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        while scan_lines.try_recv().is_ok() {}
        let mut sim_cmd = Command::new(&bin);
        sim_cmd
            .args(["sim", "vpcd", "--card"])
            .arg(&card_file)
            .args(["--port", &PORT.to_string()])
            .stderr(Stdio::null());
        let (sim, sim_lines) = spawn_lines(sim_cmd);
        let (_, line) = sim_lines
            .recv_timeout(Duration::from_secs(20))
            .expect("sim connected");
        let t0: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("timestamp");
        let (mut t_ins, mut t_id) = (None, None);
        while t_id.is_none() {
            let (at, ev) = next_event(&mut ws).await;
            if ev["reader"] != READER {
                continue;
            }
            match ev["type"].as_str() {
                Some("card.inserted") => t_ins = Some(at),
                Some("identity.read") => t_id = Some(at),
                Some("identity.error") => panic!("read failed: {ev}"),
                _ => {}
            }
        }
        // pcsc_scan's report of the same insertion: the first "Card inserted" for reader 0.
        let mut reader0 = false;
        let mut t_scan = None;
        while t_scan.is_none() {
            let (at, l) = scan_lines
                .recv_timeout(Duration::from_secs(20))
                .expect("pcsc_scan line");
            if l.contains("Reader 0:") {
                reader0 = true;
            } else if l.contains("Reader 1:") {
                reader0 = false;
            } else if reader0 && l.contains("Card inserted") && at >= t0 {
                t_scan = Some(at);
            }
        }
        let (ti, tid, ts) = (
            t_ins.expect("inserted"),
            t_id.expect("identity"),
            t_scan.expect("scan"),
        );
        to_inserted.push((ti - t0) * 1e3);
        to_identity.push((tid - t0) * 1e3);
        to_scan.push((ts - t0) * 1e3);
        overhead.push((ti - ts) * 1e3);
        drop(sim);
        loop {
            let (_, ev) = next_event(&mut ws).await;
            if ev["reader"] == READER && ev["type"] == "card.removed" {
                break;
            }
        }
    }

    // Idle CPU with both readers attached and no card.
    let hz = 100.0;
    let window = Duration::from_secs(10);
    let (d0, p0) = (cpu_ticks(daemon.0.id()), cpu_ticks(pcscd.0.id()));
    std::thread::sleep(window);
    let (d1, p1) = (cpu_ticks(daemon.0.id()), cpu_ticks(pcscd.0.id()));
    let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / hz / window.as_secs_f64() * 100.0;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        .unwrap_or_default();

    // pcscd killed with a card in the reader, then restarted.
    let mut sim_cmd = Command::new(&bin);
    sim_cmd
        .args(["sim", "vpcd", "--card"])
        .arg(&card_file)
        .args([
            "--port",
            &PORT.to_string(),
            "--reconnect",
            "--reconnect-delay-ms",
            "50",
            "--connect-timeout-ms",
            "20000",
        ])
        .stderr(Stdio::null());
    let (_sim, _sim_lines) = spawn_lines(sim_cmd);
    loop {
        let (_, ev) = next_event(&mut ws).await;
        if ev["reader"] == READER && ev["type"] == "identity.read" {
            break;
        }
    }
    let killed = now();
    let _ = pcscd.0.kill();
    let _ = pcscd.0.wait();
    let down = loop {
        let (at, ev) = next_event(&mut ws).await;
        if ev["type"] == "service.changed" && ev["data"]["state"] == "down" {
            break at;
        }
    };
    let restarted = now();
    pcscd = start_pcscd(&conf);
    let (mut up, mut reread) = (None, None);
    while reread.is_none() {
        let (at, ev) = next_event(&mut ws).await;
        if ev["type"] == "service.changed" && ev["data"]["state"] == "up" {
            up = Some(at);
        }
        if ev["reader"] == READER && ev["type"] == "identity.read" {
            reread = Some(at);
        }
    }

    println!("PC/SC benchmark (vpcd rig, {runs} insertions of tests/data/family.toml)");
    println!(
        "  card connects -> pcsc_scan prints it      median {:7.1} ms",
        median(&mut to_scan)
    );
    println!(
        "  card connects -> card.inserted at client  median {:7.1} ms",
        median(&mut to_inserted)
    );
    println!(
        "  card connects -> identity.read at client  median {:7.1} ms",
        median(&mut to_identity)
    );
    println!(
        "  card.inserted - pcsc_scan (our overhead)  median {:7.1} ms",
        median(&mut overhead)
    );
    println!(
        "  APDUs per family-card read: {total_apdus} ({detect_apdus} detection + {} read)",
        total_apdus - detect_apdus
    );
    println!(
        "  idle CPU over {}s, 2 readers, no card: daemon {:.2} %, pcscd {:.2} %; daemon RSS {rss} kB",
        window.as_secs(),
        pct(d0, d1),
        pct(p0, p1)
    );
    println!(
        "  pcscd killed -> service.changed down: {:.1} ms",
        (down - killed) * 1e3
    );
    println!(
        "  pcscd spawned again -> service.changed up: {:.1} ms; -> card re-read (identity.read): {:.1} ms",
        (up.unwrap_or(f64::NAN) - restarted) * 1e3,
        (reread.unwrap_or(f64::NAN) - restarted) * 1e3
    );
    drop(daemon);
    drop(pcscd);
}
