//! NFC path figures: tap → `identity.read` (median, p95) through real libnfc and the
//! PN532 emulator, the signature round trip, and idle CPU of the backend process and of
//! the emulator, for the default mode (the chip waits for a tap: InAutoPoll, no host
//! poll) and, in the same run, the legacy host poll every 200 ms. Run with
//! `scripts/bench-nfc` (`cargo bench --bench nfc`: 20 taps and 60 s idle per mode);
//! under `cargo test` (no `--bench` argument) it only runs two iterations as a smoke
//! test.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vitale_bridge::bus::{Hub, PcscStatus, Subscription};
use vitale_bridge::card::phone::DEFAULT_AID;
use vitale_bridge::transport::nfc::{self, NfcOptions};

const WAIT: Duration = Duration::from_secs(20);

struct Emulator {
    child: Child,
    link: PathBuf,
    control: PathBuf,
}

impl Emulator {
    fn start(dir: &Path) -> Emulator {
        let link = dir.join("pn532");
        let phone = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/phone.toml");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
            .args(["sim", "pn532", "--link"])
            .arg(&link)
            .arg("--phone")
            .arg(&phone)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sim pn532");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let control = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("control="))
            .map(PathBuf::from)
            .expect("control path");
        Emulator {
            child,
            link,
            control,
        }
    }

    fn connstring(&self) -> String {
        format!("pn532_uart:{}", self.link.display())
    }

    fn control(&self, command: &str) -> String {
        let mut s = UnixStream::connect(&self.control).expect("control");
        writeln!(s, "{command}").expect("send");
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("answer");
        assert!(line.starts_with("ok"), "{line}");
        line
    }

    /// Returns once the emulator holds a command until a tap (the host waits on it).
    async fn until_waiting(&self) {
        let started = Instant::now();
        while !self.control("status").contains("waiting=true") {
            assert!(started.elapsed() < WAIT, "the emulator never waited");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn ticks_per_second() -> f64 {
    // getconf CLK_TCK is 100 on Linux/x86_64 in practice.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

async fn until(sub: &mut Subscription, ty: &str) {
    loop {
        let n = tokio::time::timeout(WAIT, sub.rx.recv())
            .await
            .expect("event in time")
            .expect("hub alive");
        if n.json.contains(&format!("\"type\":\"{ty}\"")) {
            return;
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Nearest-rank 95th percentile.
fn p95(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let rank = (v.len() * 95).div_ceil(100).max(1);
    v[rank - 1]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 20 } else { 2 };
    let idle_secs = if full { 60 } else { 1 };
    println!("load average at start: {}", load_average());
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path());

    // libnfc's open: includes its fixed 50 ms input flush (uart_flush_input(wait)).
    let mut opens = Vec::new();
    for _ in 0..rounds.min(5) {
        let started = Instant::now();
        let mut ctx = nfc1::Context::new().expect("libnfc");
        let mut dev = ctx.open_with_connstring(&emu.connstring()).expect("open");
        dev.initiator_init().expect("init");
        opens.push(started.elapsed());
        drop(dev);
    }

    // (label, host poll interval): the default, then the legacy 200 ms poll.
    for (mode, host_poll) in [
        ("chip waits (default)", None),
        ("legacy host poll 200 ms", Some(200u64)),
    ] {
        let poll_ms = host_poll.unwrap_or(200);
        let hub: Arc<Hub> = Hub::new(PcscStatus::Disabled);
        let mut sub = hub.subscribe(4096, false);
        let reader = format!("nfc:{}", emu.connstring());
        let backend = nfc::spawn(
            hub.clone(),
            NfcOptions {
                devices: vec![emu.connstring()],
                poll_interval: Duration::from_millis(poll_ms),
                host_poll: host_poll.is_some(),
                apcv_aid: DEFAULT_AID.to_vec(),
            },
        );
        until(&mut sub, "service.changed").await;

        let mut taps = Vec::new();
        for i in 0..rounds {
            // Spread the taps over the poll period: a tap right after a removal would
            // always wait one whole period (the same spread for both modes).
            let phase = poll_ms * ((i as u64 * 7) % rounds as u64) / rounds as u64;
            tokio::time::sleep(Duration::from_millis(phase)).await;
            let started = Instant::now();
            emu.control("tap");
            until(&mut sub, "identity.read").await;
            taps.push(started.elapsed());
            emu.control("remove");
            until(&mut sub, "card.removed").await;
        }

        emu.control("tap");
        until(&mut sub, "identity.read").await;
        let mut reads = Vec::new();
        let mut signs = Vec::new();
        for i in 0..rounds {
            let started = Instant::now();
            hub.read_card(&reader, true).await.expect("read");
            reads.push(started.elapsed());
            let challenge = [i as u8; 32];
            let started = Instant::now();
            hub.sign(&reader, "https://app.example", &challenge)
                .await
                .expect("sign");
            signs.push(started.elapsed());
        }
        emu.control("remove");
        until(&mut sub, "card.removed").await;

        // Idle: no phone; the device thread sleeps in the chip's wait, or polls.
        let tick = ticks_per_second();
        let self_before = cpu_ticks("/proc/self/stat");
        let emu_before = emu.cpu_ticks();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let wall = started.elapsed().as_secs_f64();
        let daemon_cpu = (cpu_ticks("/proc/self/stat") - self_before) as f64 / tick / wall * 100.0;
        let emu_cpu = (emu.cpu_ticks() - emu_before) as f64 / tick / wall * 100.0;

        tokio::task::spawn_blocking(move || backend.shutdown())
            .await
            .expect("shutdown");

        let (tap, tap95, read) = (median(taps.clone()), p95(taps), median(reads));
        println!("{mode} ({rounds} taps):");
        println!(
            "  tap -> identity.read          median {}, p95 {}",
            ms(tap),
            ms(tap95)
        );
        println!("  read alone (card.read fresh)  {}", ms(read));
        println!(
            "  wait + detection              {}",
            ms(tap.saturating_sub(read))
        );
        println!("  card.sign round trip          {}", ms(median(signs)));
        println!(
            "  idle CPU over {idle_secs} s: backend {daemon_cpu:.3} % of one core, emulator {emu_cpu:.3} %"
        );
    }
    println!(
        "libnfc open (includes its fixed 50 ms flush): {}",
        ms(median(opens))
    );

    // The daemon binary itself at its default configuration (no config file), idle.
    let home = tempfile::tempdir().expect("tempdir");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["run", "--no-pcsc", "--nfc", &emu.connstring()])
        .args(["--listen", "127.0.0.1:0"])
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", home.path().join("none.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the daemon");
    emu.until_waiting().await;
    let tick = ticks_per_second();
    let stat = format!("/proc/{}/stat", daemon.id());
    let (daemon_before, emu_before) = (cpu_ticks(&stat), emu.cpu_ticks());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let wall = started.elapsed().as_secs_f64();
    let daemon_cpu = (cpu_ticks(&stat) - daemon_before) as f64 / tick / wall * 100.0;
    let emu_cpu = (emu.cpu_ticks() - emu_before) as f64 / tick / wall * 100.0;
    let _ = daemon.kill();
    let _ = daemon.wait();
    println!(
        "daemon binary, default configuration, idle {idle_secs} s: daemon {daemon_cpu:.3} % of one core, emulator {emu_cpu:.3} %"
    );
    println!("load average at end: {}", load_average());
}
