//! Load and soak tool: N WebSocket clients against `vitale-bridge demo` (spawned with a
//! temporary config) or any server at `--url`; reports per-event delivery latency,
//! seq gaps, slow-client drops and the server's CPU, RSS, fds and threads.
//!
//! `scripts/load [--clients 1000] [--duration 60s] [--slow 10] [--soak 30m] …`
//! (builds the release daemon and this example, then runs it). An example rather than
//! a `[[bin]]` so the product binary and package stay as they are; the engine is
//! `core.rs`, which `tests/load_tool.rs` includes so the test runs the same code.

mod core;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::core::{
    DemoDaemon, DemoSpec, LoadError, Options, Report, SlowOutcome, parse_duration, soak_verdict,
    write_templates,
};

/// Load and soak tool for vitale-bridge's WebSocket fan-out.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Clients that read every event.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Extra clients that subscribe and then stop reading (slow-client policy).
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Measurement window once every client has subscribed (500ms, 60s, 30m).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: std::time::Duration,
    /// Soak mode: run this long, print one line per `--sample`, judge RSS and fds.
    #[arg(long, value_parser = parse_duration)]
    soak: Option<std::time::Duration>,
    /// Soak sample interval.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    sample: std::time::Duration,
    /// Soak: allowed RSS growth from the first sample to the last (fraction; at least 1 MiB).
    #[arg(long, default_value_t = 0.05)]
    rss_tolerance: f64,
    /// Demo step interval in milliseconds for the spawned daemon (`demo.interval_ms`).
    #[arg(long, default_value_t = 50)]
    interval_ms: u64,
    /// `limits.queue_len` for the spawned daemon (default: the daemon's, 1024).
    #[arg(long)]
    queue_len: Option<usize>,
    /// `limits.ping_interval_ms` for the spawned daemon (default: the daemon's, 30000);
    /// a client that misses two pongs is closed with 1008 at the third ping.
    #[arg(long)]
    ping_interval_ms: Option<u64>,
    /// The vitale-bridge binary to spawn.
    #[arg(long, default_value = "target/release/vitale-bridge")]
    bin: PathBuf,
    /// Connect to this server instead of spawning the daemon (e.g. the Node.js peer).
    #[arg(long)]
    url: Option<String>,
    /// Process id of the server at `--url`, for CPU/RSS.
    #[arg(long)]
    pid: Option<u32>,
    /// `Origin` header sent by every client (`none` for native clients).
    #[arg(long, default_value = "https://practice.example")]
    origin: String,
    /// Label printed with the report.
    #[arg(long)]
    label: Option<String>,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write up to 2,000 events seen by the first client as templates for a peer server.
    #[arg(long)]
    record: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, LoadError> {
    let origin = (args.origin != "none").then(|| args.origin.clone());
    let soak = args.soak.is_some();
    let (daemon, url, pid) = match &args.url {
        Some(url) => (None, url.clone(), args.pid),
        None => {
            let d = DemoDaemon::spawn(&DemoSpec {
                bin: args.bin.clone(),
                interval_ms: args.interval_ms,
                // Room for the clients, the status monitor and a few humans.
                max_clients: args.clients + args.slow + 16,
                queue_len: args.queue_len,
                ping_interval_ms: args.ping_interval_ms,
                origin: origin
                    .clone()
                    .unwrap_or_else(|| "https://practice.example".into()),
            })?;
            let url = d.url.clone();
            let pid = d.pid();
            (Some(d), url, Some(pid))
        }
    };
    let label = args.label.clone().unwrap_or_else(|| match &args.url {
        Some(u) => format!("server at {u}"),
        None => format!("vitale-bridge demo (step {} ms)", args.interval_ms),
    });
    println!(
        "load: {label}: {} reading + {} slow clients, {} {:.0} s",
        args.clients,
        args.slow,
        if soak { "soak" } else { "window" },
        args.soak.unwrap_or(args.duration).as_secs_f64()
    );
    let report = core::run(Options {
        url,
        origin,
        clients: args.clients,
        slow: args.slow,
        duration: args.soak.unwrap_or(args.duration),
        pid,
        sample_every: soak.then_some(args.sample),
        keep_receipts: !soak,
        monitor: daemon.is_some(),
        record: if args.record.is_some() { 2000 } else { 0 },
    })
    .await?;
    let mut report = report;
    if let Some(d) = &daemon {
        report.attach_daemon_log(&d.log());
    }
    print_report(&report);
    if let Some(path) = &args.record {
        write_templates(path, &report.templates)?;
    }
    let mut code = ExitCode::SUCCESS;
    let mut json = serde_json::to_value(&report)
        .map_err(|e| LoadError::Server(format!("encode report: {e}")))?;
    json["label"] = label.into();
    if soak {
        match soak_verdict(&report.samples, args.rss_tolerance) {
            Some(v) => {
                println!(
                    "soak verdict: RSS {} ({} → {} kB, slack {} kB), fds {} ({} → {})",
                    if v.rss_flat { "flat" } else { "GREW" },
                    v.rss_kb.0,
                    v.rss_kb.1,
                    v.rss_slack_kb,
                    if v.fds_flat { "flat" } else { "GREW" },
                    v.fds.0,
                    v.fds.1
                );
                if !(v.rss_flat && v.fds_flat) {
                    code = ExitCode::from(3);
                }
                json["verdict"] = serde_json::to_value(&v).unwrap_or_default();
            }
            None => {
                println!("soak verdict: no samples (the run is shorter than --sample)");
                code = ExitCode::from(3);
            }
        }
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| LoadError::Server(format!("encode report: {e}")))?;
        std::fs::write(path, text).map_err(|source| LoadError::Io {
            what: format!("write {}", path.display()),
            source,
        })?;
    }
    if let Some(d) = &daemon
        && !report.consistent
    {
        // The daemon's own account of why clients ended helps read the figures.
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        for line in tail.into_iter().rev() {
            println!("    daemon log: {line}");
        }
    }
    drop(daemon);
    Ok(code)
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

fn print_report(r: &Report) {
    println!(
        "clients: {}/{} subscribed in {:.1} s; window {:.1} s",
        r.connected, r.clients, r.connect_s, r.duration_s
    );
    println!(
        "events: {} distinct, {} notifications delivered ({:.0}/s), mean {:.0} bytes",
        r.events,
        r.delivered,
        r.delivered as f64 / r.duration_s.max(1e-9),
        r.mean_event_bytes
    );
    if r.absolute.n > 0 {
        println!("latency, receipt − event `time` (ms-truncated stamp: upper bound, ≤ +1 ms):");
        println!(
            "    p50 {}   p99 {}   max {}   ({} receipts)",
            ms(r.absolute.p50_us),
            ms(r.absolute.p99_us),
            ms(r.absolute.max_us),
            r.absolute.n
        );
        println!("latency, receipt − first receipt of the same seq (spread: lower bound):");
        println!(
            "    p50 {}   p99 {}   max {}",
            ms(r.spread.p50_us),
            ms(r.spread.p99_us),
            ms(r.spread.max_us)
        );
        println!("latency, kernel receive − first kernel receive of the same seq (kernel spread):");
        println!(
            "    p50 {}   p99 {}   max {}",
            ms(r.kernel_spread.p50_us),
            ms(r.kernel_spread.p99_us),
            ms(r.kernel_spread.max_us)
        );
    }
    println!(
        "seq: {} (bad start {}, clients with gaps {}, missing {}, out of order {}, behind {})",
        if r.consistent {
            "every reading client saw the same seqs, none missing"
        } else {
            "INCONSISTENT"
        },
        r.clients_bad_start,
        r.clients_with_gaps,
        r.missing,
        r.out_of_order,
        r.clients_behind
    );
    for e in r.fast_ended.iter().take(5) {
        println!("    reading client ended: {e}");
    }
    if r.slow > 0 {
        let mut groups: Vec<(String, usize)> = Vec::new();
        for c in &r.slow_outcomes {
            let seen = match &c.seen {
                SlowOutcome::Closed { code, reason } => format!("saw Close {code} ({reason})"),
                SlowOutcome::Dropped { detail } => format!("saw the connection end ({detail})"),
                SlowOutcome::Open => "still open".into(),
            };
            let key = match &c.daemon_close {
                Some((code, reason)) => {
                    format!("closed by the daemon with {code} ({reason}); {seen}")
                }
                None => seen,
            };
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(g) => g.1 += 1,
                None => groups.push((key, 1)),
            }
        }
        for (k, n) in groups {
            println!("slow clients: {n} {k}");
        }
    }
    if let (Some(cpu), Some(end)) = (r.server_cpu_pct, r.server_end) {
        println!(
            "server: CPU {:.1} % of one core, RSS {} kB (peak {} kB), {} threads, {} fds",
            cpu, end.rss_kb, end.hwm_kb, end.threads, end.fds
        );
    }
    if let Some(cpu) = r.tool_cpu_pct {
        println!("this tool: CPU {cpu:.1} % of one core (same machine)");
    }
    if let (Some(first), Some(last)) = (r.status_clients.first(), r.status_clients.last()) {
        println!(
            "daemon `status` clients: {} at {:.0} s → {} at {:.0} s",
            first.1, first.0, last.1, last.0
        );
    }
}
