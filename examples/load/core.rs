//! The load tool's engine: N WebSocket clients against a vitale-bridge daemon (or any
//! server speaking the same event notifications), per-event delivery latency, seq
//! consistency, slow-client drops and the server's CPU, RSS, fds and threads.
//!
//! `examples/load/main.rs` is the command line around it; `tests/load_tool.rs`
//! includes this very file, so the test exercises the code the tool runs.
//!
//! # How latency is measured
//!
//! The protocol's only emission marker is the event's `time` (RFC 3339, millisecond
//! resolution, truncated). Tool and server run on the same machine, so two figures
//! are honest:
//!
//! - **absolute**: receipt wall clock − `time`. `time` is the emission instant
//!   truncated to the millisecond, so this over-states the true latency by 0–1 ms
//!   (0.5 ms on average): an upper bound.
//! - **spread**: receipt − the first receipt of the same seq by any client (monotonic
//!   clock). It excludes the path to the fastest client: a lower bound, and the
//!   figure that grows with the number of clients.
//!
//! - **kernel spread**: the same, with each receipt stamped by the kernel when the
//!   segment that completed the frame reached the client socket (`SO_TIMESTAMPNS`,
//!   read with `recvmsg`): the server's fan-out without the client tasks' own
//!   scheduling, which all clients share in this process.
//!
//! The other receipts are stamped when the client task gets the frame, so client-side
//! scheduling is included for every server alike.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Errors of the load tool.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A WebSocket operation failed.
    #[error("{what}: {source}")]
    Ws {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// The server did something the protocol does not allow, or did not start.
    #[error("{0}")]
    Server(String),
    /// Bad options.
    #[error("{0}")]
    Usage(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Io { what, source }
}

fn ws(what: impl Into<String>) -> impl FnOnce(tokio_tungstenite::tungstenite::Error) -> LoadError {
    let what = what.into();
    move |source| LoadError::Ws {
        what,
        source: Box::new(source),
    }
}

/// Parses `500ms`, `60s`, `30m`, `2h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, LoadError> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| LoadError::Usage(format!("bad duration {s:?} (e.g. 500ms, 60s, 30m)")))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(LoadError::Usage(format!(
                "bad duration unit in {s:?} (ms, s, m, h)"
            )));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| LoadError::Usage(format!("bad duration {s:?}")))
}

// ---------------------------------------------------------------------------
// The daemon under test.

/// How to start `vitale-bridge demo` for a run.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// The `vitale-bridge` binary.
    pub bin: PathBuf,
    /// `demo.interval_ms`: time between demo steps (insert, remove, tap…).
    pub interval_ms: u64,
    /// `max_clients` (only settable in the config file).
    pub max_clients: usize,
    /// `limits.queue_len`, when not the daemon's default.
    pub queue_len: Option<usize>,
    /// `limits.ping_interval_ms`, when not the daemon's default.
    pub ping_interval_ms: Option<u64>,
    /// The origin written to `allowed_origins`.
    pub origin: String,
}

/// A `vitale-bridge demo` child with its own temporary config; stopped on drop.
pub struct DemoDaemon {
    child: Child,
    /// The WebSocket URL from the ready line.
    pub url: String,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl DemoDaemon {
    /// Writes the temporary config, starts the daemon and waits for its ready line.
    pub fn spawn(spec: &DemoSpec) -> Result<DemoDaemon, LoadError> {
        let dir = tempfile::tempdir().map_err(io("temporary directory"))?;
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\nmax_clients = {}\nallowed_origins = [{:?}]\n\n[demo]\ninterval_ms = {}\n",
            spec.max_clients, spec.origin, spec.interval_ms
        );
        if spec.queue_len.is_some() || spec.ping_interval_ms.is_some() {
            config.push_str("\n[limits]\n");
            if let Some(q) = spec.queue_len {
                config.push_str(&format!("queue_len = {q}\n"));
            }
            if let Some(p) = spec.ping_interval_ms {
                config.push_str(&format!("ping_interval_ms = {p}\n"));
            }
        }
        let config_path = dir.path().join("load.toml");
        std::fs::write(&config_path, config).map_err(io("write the temporary config"))?;
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).map_err(io("create the daemon log"))?;
        let mut child = Command::new(&spec.bin)
            .arg("demo")
            .arg("--config")
            .arg(&config_path)
            // Keep the machine's and the user's config files out of the run.
            .env("XDG_CONFIG_HOME", dir.path())
            .env("HOME", dir.path())
            .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io(format!("start {}", spec.bin.display())))?;
        let url = match child.stdout.take().map(wait_ready_line) {
            Some(Ok(url)) => url,
            Some(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(LoadError::Server(format!("{e}; daemon log:\n{log}")));
            }
            None => return Err(LoadError::Server("daemon stdout not captured".into())),
        };
        Ok(DemoDaemon {
            child,
            url,
            log_path,
            _dir: dir,
        })
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for DemoDaemon {
    fn drop(&mut self) {
        // SIGTERM for a graceful stop; kill if it lingers.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (≤ 20 s) for `listening on ws://…/v1` on a child's stdout and returns the
/// URL; keeps draining the pipe afterwards so the child never blocks on it.
pub fn wait_ready_line(stdout: std::process::ChildStdout) -> Result<String, LoadError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| LoadError::Server("no ready line within 20 s".into()))?;
    line.strip_prefix("listening on ")
        .filter(|u| u.starts_with("ws://"))
        .map(str::to_string)
        .ok_or_else(|| LoadError::Server(format!("unexpected ready line {line:?}")))
}

// ---------------------------------------------------------------------------
// /proc sampling.

/// One look at a process in /proc.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, kB.
    pub rss_kb: u64,
    /// Peak resident set, kB.
    pub hwm_kb: u64,
    /// Threads.
    pub threads: u64,
    /// Open file descriptors.
    pub fds: u64,
}

/// Reads /proc/<pid>/{stat,status,fd}; `None` once the process is gone.
pub fn sample_proc(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some(ProcSample {
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        cpu_ticks: num(11) + num(12),
        rss_kb: field("VmRSS:"),
        hwm_kb: field("VmHWM:"),
        threads: field("Threads:"),
        fds,
    })
}

/// Clock ticks per second for /proc/<pid>/stat (USER_HZ, 100 on Linux unless
/// `getconf` says otherwise; reading it needs no unsafe sysconf call).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------
// The run.

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// WebSocket URL of the server.
    pub url: String,
    /// `Origin` header, or `None` for native clients.
    pub origin: Option<String>,
    /// Clients that read everything.
    pub clients: usize,
    /// Extra clients that subscribe and then stop reading.
    pub slow: usize,
    /// Measurement window, after every client has subscribed.
    pub duration: Duration,
    /// Server process to sample (CPU, RSS, fds, threads), if known.
    pub pid: Option<u32>,
    /// Print a sample line this often (soak mode).
    pub sample_every: Option<Duration>,
    /// Keep every receipt for latency percentiles (off for soak runs: memory).
    pub keep_receipts: bool,
    /// Poll the daemon's `status` method for its client count (vitale-bridge only).
    pub monitor: bool,
    /// Keep up to this many events (first client) as templates for a peer server.
    pub record: usize,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Receipts measured.
    pub n: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Percentiles {
    fn of(mut v: Vec<i64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at = |q: f64| {
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            v.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        Percentiles {
            n: v.len() as u64,
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

/// How a slow (non-reading) client's connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum SlowOutcome {
    /// The server sent a Close frame.
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The connection ended without a Close frame (what a browser reports as 1006).
    Dropped {
        /// What the socket said.
        detail: String,
    },
    /// Still receiving live events: not dropped.
    Open,
}

/// One slow client: what it saw, and what the daemon logged about it.
#[derive(Debug, Clone, Serialize)]
pub struct SlowClient {
    /// Its local address (the daemon logs it as `peer`).
    pub addr: String,
    /// How the connection looked from the client once it read again.
    pub seen: SlowOutcome,
    /// The daemon's `closing client` log line for it: (code, reason).
    pub daemon_close: Option<(u16, String)>,
}

/// The daemon's `closing client peer=… code=… reason="…"` log lines, by peer.
pub fn daemon_closes(log: &str) -> HashMap<String, (u16, String)> {
    let mut out = HashMap::new();
    for line in log.lines().filter(|l| l.contains("closing client")) {
        let field = |name: &str| {
            line.split_once(&format!(" {name}="))
                .map(|(_, rest)| match rest.strip_prefix('"') {
                    Some(quoted) => quoted.split('"').next().unwrap_or("").to_string(),
                    None => rest.split_whitespace().next().unwrap_or("").to_string(),
                })
        };
        if let (Some(peer), Some(code)) =
            (field("peer"), field("code").and_then(|c| c.parse().ok()))
        {
            out.insert(peer, (code, field("reason").unwrap_or_default()));
        }
    }
    out
}

impl Report {
    /// Fills each slow client's `daemon_close` from the daemon's log.
    pub fn attach_daemon_log(&mut self, log: &str) {
        let closes = daemon_closes(log);
        for c in &mut self.slow_outcomes {
            c.daemon_close = closes.get(&c.addr).cloned();
        }
    }
}

/// A soak-mode sample line.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SoakSample {
    /// Seconds since the measurement window opened.
    pub elapsed_s: f64,
    /// The server process.
    pub proc: ProcSample,
    /// Event notifications delivered to all clients so far.
    pub delivered: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Reading clients asked for.
    pub clients: usize,
    /// Reading clients that completed hello + subscribe.
    pub connected: usize,
    /// Slow clients asked for.
    pub slow: usize,
    /// Measurement window, seconds.
    pub duration_s: f64,
    /// Distinct event seqs received during the window.
    pub events: u64,
    /// Event notifications delivered to reading clients during the window.
    pub delivered: u64,
    /// Mean size of an event notification, bytes.
    pub mean_event_bytes: f64,
    /// receipt − event `time` (upper bound, `time` has ms resolution).
    pub absolute: Percentiles,
    /// receipt − first receipt of the same seq (lower bound).
    pub spread: Percentiles,
    /// The same with kernel receive times (`SO_TIMESTAMPNS`): no client scheduling.
    pub kernel_spread: Percentiles,
    /// Reading clients whose first event was not `subscribe.seq + 1`.
    pub clients_bad_start: usize,
    /// Reading clients with missing seqs.
    pub clients_with_gaps: usize,
    /// Missing seqs over all reading clients.
    pub missing: u64,
    /// Duplicated or out-of-order seqs over all reading clients.
    pub out_of_order: u64,
    /// Reading clients that did not reach the last seq before the end.
    pub clients_behind: usize,
    /// Reading clients whose connection ended early, with why.
    pub fast_ended: Vec<String>,
    /// Every reading client saw the same seqs (same first-after-window to last).
    pub consistent: bool,
    /// Slow clients.
    pub slow_outcomes: Vec<SlowClient>,
    /// Server CPU over the window, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// This tool's CPU over the window, % of one core (it shares the machine).
    pub tool_cpu_pct: Option<f64>,
    /// Server process at the start of the window.
    pub server_start: Option<ProcSample>,
    /// Server process at the end of the window.
    pub server_end: Option<ProcSample>,
    /// Client counts from `status`, (seconds into the window, clients).
    pub status_clients: Vec<(f64, u64)>,
    /// Soak samples.
    pub samples: Vec<SoakSample>,
    /// Time to connect and subscribe every client, seconds.
    pub connect_s: f64,
    /// Event templates recorded from the first client: (receipt, ms since start; JSON).
    #[serde(skip)]
    pub templates: Vec<(f64, String)>,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Connecting and measuring.
    Run,
    /// Window over: reading clients finish once they reach this seq; slow clients
    /// start reading to learn how they ended.
    Drain(u64),
    /// Everyone stops.
    Stop,
}

/// One receipt: seq, monotonic receipt (ns since the run started), absolute latency (ns).
#[derive(Debug, Clone, Copy)]
struct Receipt {
    seq: u64,
    at_ns: u64,
    abs_ns: i64,
    /// Kernel receive time, wall clock ns (0 if the kernel gave none).
    kernel_ns: i128,
}

/// What one reading client saw.
#[derive(Debug, Default)]
struct FastResult {
    connected: bool,
    subscribed_seq: u64,
    first: Option<u64>,
    last: u64,
    missing: u64,
    out_of_order: u64,
    ended: Option<String>,
    receipts: Vec<Receipt>,
    bytes: u64,
    count: u64,
    templates: Vec<(f64, String)>,
}

struct Shared {
    t0: Instant,
    /// Monotonic ns at which the window opened (u64::MAX before).
    window_ns: AtomicU64,
    /// Highest seq any reading client has seen.
    max_seq: AtomicU64,
    /// Event notifications delivered, all reading clients.
    delivered: AtomicU64,
    phase: watch::Receiver<Phase>,
    connect_gate: Semaphore,
}

type Ws = WebSocketStream<TsStream>;

/// A client socket that records when the kernel received what it last read
/// (`SO_TIMESTAMPNS`; wall clock ns since the Unix epoch, 0 before any).
pub struct TsStream {
    inner: TcpStream,
    last_rx_ns: i128,
}

impl TsStream {
    fn new(inner: TcpStream) -> std::io::Result<TsStream> {
        nix::sys::socket::setsockopt(&inner, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
            .map_err(std::io::Error::from)?;
        Ok(TsStream {
            inner,
            last_rx_ns: 0,
        })
    }

    /// Kernel receive time of the last segment read, wall clock ns.
    pub fn last_rx_ns(&self) -> i128 {
        self.last_rx_ns
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// One `recvmsg(2)`: the bytes read and the kernel's receive time, if it sent one.
fn recv_stamped(inner: &TcpStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<i128>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        inner.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let mut at = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmTimestampns(ts) = c {
                at = Some(ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128);
            }
        }
    }
    Ok((msg.bytes, at))
}

impl tokio::io::AsyncRead for TsStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            match this.inner.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let unfilled = buf.initialize_unfilled();
            let r = this.inner.try_io(tokio::io::Interest::READABLE, || {
                recv_stamped(&this.inner, unfilled)
            });
            match r {
                Ok((n, at)) => {
                    if let Some(at) = at {
                        this.last_rx_ns = at;
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl tokio::io::AsyncWrite for TsStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[derive(Deserialize)]
struct Incoming {
    id: Option<u64>,
    method: Option<String>,
    params: Option<EventHead>,
    result: Option<Value>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct EventHead {
    seq: u64,
    time: String,
}

/// `time` (RFC 3339) as ns since the Unix epoch.
fn parse_time_ns(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

async fn connect(opts: &Options, small_rcvbuf: bool) -> Result<Ws, LoadError> {
    let mut req = opts
        .url
        .as_str()
        .into_client_request()
        .map_err(ws("bad URL"))?;
    if let Some(origin) = &opts.origin {
        let v = HeaderValue::from_str(origin)
            .map_err(|_| LoadError::Usage(format!("bad origin {origin:?}")))?;
        req.headers_mut().insert("Origin", v);
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| LoadError::Usage(format!("no host in {}", opts.url)))?;
    let addr = tokio::net::lookup_host(&host)
        .await
        .map_err(io(format!("resolve {host}")))?
        .next()
        .ok_or_else(|| LoadError::Usage(format!("cannot resolve {host}")))?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io("socket"))?;
    if small_rcvbuf {
        // A stuck browser tab: a small receive window makes the server's side fill
        // (and its slow-client policy fire) within seconds instead of megabytes later.
        socket.set_recv_buffer_size(4096).map_err(io("SO_RCVBUF"))?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(io(format!("connect {addr}")))?;
    stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    let stream = TsStream::new(stream).map_err(io("SO_TIMESTAMPNS"))?;
    let (ws_stream, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(ws("WebSocket handshake"))?;
    Ok(ws_stream)
}

/// Sends one request and returns its result, skipping anything else.
async fn call(
    ws_stream: &mut Ws,
    id: u64,
    method: &str,
    params: Value,
) -> Result<Value, LoadError> {
    let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
    ws_stream
        .send(Message::text(req.to_string()))
        .await
        .map_err(ws(format!("send {method}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws_stream.next())
            .await
            .map_err(|_| LoadError::Server(format!("no answer to {method} within 30 s")))?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                return Err(LoadError::Server(format!("closed during {method}: {f:?}")));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws(format!("receive {method} answer"))(e)),
            None => {
                return Err(LoadError::Server(format!(
                    "connection ended during {method}"
                )));
            }
        };
        let Ok(inc) = serde_json::from_str::<Incoming>(&text) else {
            return Err(LoadError::Server(format!("non-JSON answer to {method}")));
        };
        if inc.id != Some(id) {
            continue;
        }
        if let Some(err) = inc.error {
            return Err(LoadError::Server(format!("{method} failed: {err}")));
        }
        return inc
            .result
            .ok_or_else(|| LoadError::Server(format!("{method}: response without result")));
    }
}

/// hello + subscribe; returns the socket and `subscribe.seq`.
async fn open_subscribed(
    shared: &Shared,
    opts: &Options,
    n: usize,
    slow: bool,
) -> Result<(Ws, u64), LoadError> {
    // Bounded concurrent handshakes: the daemon drops connections beyond its
    // pending-handshake limit (128) at accept.
    let _permit = shared
        .connect_gate
        .acquire()
        .await
        .map_err(|_| LoadError::Server("connect gate closed".into()))?;
    // Bounded: a handshake the server never answers must fail this client, not
    // hold the window open forever.
    let (s, sub) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut s = connect(opts, slow).await?;
        let hello = json!({"client": format!("load-{n}"), "protocol": 1});
        call(&mut s, 1, "hello", hello).await?;
        let sub = call(&mut s, 2, "subscribe", json!({})).await?;
        Ok::<_, LoadError>((s, sub))
    })
    .await
    .map_err(|_| LoadError::Server("connect + hello + subscribe took over 30 s".into()))??;
    let seq = sub
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| LoadError::Server("subscribe result without seq".into()))?;
    Ok((s, seq))
}

async fn fast_client(
    shared: Arc<Shared>,
    opts: Arc<Options>,
    n: usize,
    ready: tokio::sync::mpsc::Sender<bool>,
) -> FastResult {
    let mut r = FastResult::default();
    let (mut s, seq) = match open_subscribed(&shared, &opts, n, false).await {
        Ok(v) => v,
        Err(e) => {
            r.ended = Some(format!("client {n}: {e}"));
            let _ = ready.send(false).await;
            return r;
        }
    };
    r.connected = true;
    r.subscribed_seq = seq;
    r.last = seq;
    let _ = ready.send(true).await;
    drop(ready);
    let mut phase = shared.phase.clone();
    let mut target = None;
    loop {
        let msg = tokio::select! {
            m = s.next() => m,
            changed = phase.changed() => {
                let p = *phase.borrow_and_update();
                match (changed, p) {
                    (Ok(()), Phase::Drain(t)) => { target = Some(t); if r.last >= t { break } continue }
                    (Ok(()), Phase::Run) => continue,
                    _ => break,
                }
            }
        };
        let at = shared.t0.elapsed().as_nanos() as u64;
        let wall = wall_ns();
        let kernel_ns = s.get_ref().last_rx_ns();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => {
                r.ended = Some(match f {
                    Some(f) => format!("close {} {}", u16::from(f.code), f.reason),
                    None => "close without code".into(),
                });
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                r.ended = Some(format!("error: {e}"));
                break;
            }
            None => {
                r.ended = Some("connection ended without Close".into());
                break;
            }
        };
        let Ok(inc) = serde_json::from_str::<Incoming>(&text) else {
            r.ended = Some("server sent non-JSON".into());
            break;
        };
        let (Some("event"), Some(ev)) = (inc.method.as_deref(), inc.params) else {
            continue;
        };
        if r.first.is_none() {
            r.first = Some(ev.seq);
        }
        if ev.seq == r.last + 1 {
            r.last = ev.seq;
        } else if ev.seq > r.last {
            r.missing += ev.seq - r.last - 1;
            r.last = ev.seq;
        } else {
            r.out_of_order += 1;
        }
        shared.max_seq.fetch_max(ev.seq, Ordering::Relaxed);
        if at >= shared.window_ns.load(Ordering::Relaxed) {
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            r.count += 1;
            r.bytes += text.len() as u64;
            if opts.keep_receipts {
                let abs_ns = parse_time_ns(&ev.time)
                    .map(|t| (wall - t) as i64)
                    .unwrap_or(i64::MAX);
                r.receipts.push(Receipt {
                    seq: ev.seq,
                    at_ns: at,
                    abs_ns,
                    kernel_ns,
                });
            }
            if n == 0 && r.templates.len() < opts.record {
                r.templates.push((at as f64 / 1e6, text.to_string()));
            }
        }
        if target.is_some_and(|t| r.last >= t) {
            break;
        }
    }
    // Close politely; the server may already be gone.
    let _ = tokio::time::timeout(Duration::from_secs(1), s.close(None)).await;
    r
}

async fn slow_client(
    shared: Arc<Shared>,
    opts: Arc<Options>,
    n: usize,
    ready: tokio::sync::mpsc::Sender<bool>,
) -> Result<SlowClient, LoadError> {
    let opened = open_subscribed(&shared, &opts, n, true).await;
    let _ = ready.send(opened.is_ok()).await;
    drop(ready);
    let (mut s, _) = opened?;
    let addr = s
        .get_ref()
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let seen = slow_wait(&shared, &mut s).await;
    Ok(SlowClient {
        addr,
        seen,
        daemon_close: None,
    })
}

/// Holds a subscribed connection without reading until the window is over, then
/// reads what is buffered to learn how the server ended it.
async fn slow_wait(shared: &Shared, s: &mut Ws) -> SlowOutcome {
    // Stop reading until the window is over: the server's queue for us fills, and
    // its pings go unanswered.
    let mut phase = shared.phase.clone();
    let target = loop {
        match *phase.borrow_and_update() {
            Phase::Run => {}
            Phase::Drain(t) => break t,
            Phase::Stop => break u64::MAX,
        }
        if phase.changed().await.is_err() {
            break u64::MAX;
        }
    };
    // Now read what is buffered to learn how the server ended the connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(m) => m,
            Err(_) => return SlowOutcome::Open,
        };
        match msg {
            Some(Ok(Message::Close(f))) => {
                return match f {
                    Some(f) => SlowOutcome::Closed {
                        code: u16::from(f.code),
                        reason: f.reason.to_string(),
                    },
                    None => SlowOutcome::Dropped {
                        detail: "Close frame without code".into(),
                    },
                };
            }
            Some(Ok(Message::Text(t))) => {
                // Live events past the window's last seq: the server kept us.
                if let Ok(Incoming {
                    params: Some(ev), ..
                }) = serde_json::from_str::<Incoming>(&t)
                    && ev.seq >= target
                {
                    return SlowOutcome::Open;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return SlowOutcome::Dropped {
                    detail: e.to_string(),
                };
            }
            None => {
                return SlowOutcome::Dropped {
                    detail: "connection ended without Close".into(),
                };
            }
        }
    }
}

/// Polls `status` once a second for the daemon's client count.
async fn monitor(shared: Arc<Shared>, opts: Arc<Options>) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    let Ok(mut s) = connect(&opts, false).await else {
        return out;
    };
    let mut phase = shared.phase.clone();
    let mut id = 1;
    loop {
        let w = shared.window_ns.load(Ordering::Relaxed);
        // Only inside the window: before it clients are still connecting, after it
        // they are leaving.
        if w != u64::MAX
            && *phase.borrow() == Phase::Run
            && let Ok(v) = call(&mut s, id, "status", json!({})).await
            && let Some(c) = v.get("clients").and_then(Value::as_u64)
            && *phase.borrow() == Phase::Run
        {
            let t = (shared.t0.elapsed().as_nanos() as u64).saturating_sub(w) as f64 / 1e9;
            out.push((t, c));
        }
        id += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = phase.changed() => {
                if *phase.borrow() == Phase::Stop { break }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), s.close(None)).await;
    out
}

/// Runs clients against `opts.url` and measures.
pub async fn run(opts: Options) -> Result<Report, LoadError> {
    if opts.clients == 0 {
        return Err(LoadError::Usage("--clients must be at least 1".into()));
    }
    let opts = Arc::new(opts);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        window_ns: AtomicU64::new(u64::MAX),
        max_seq: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        phase: phase_rx,
        connect_gate: Semaphore::new(64),
    });
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(opts.clients + opts.slow + 1);
    let mut fast = Vec::with_capacity(opts.clients);
    let mut slow = Vec::with_capacity(opts.slow);
    for n in 0..opts.clients {
        fast.push(tokio::spawn(fast_client(
            shared.clone(),
            opts.clone(),
            n,
            ready_tx.clone(),
        )));
    }
    for n in 0..opts.slow {
        slow.push(tokio::spawn(slow_client(
            shared.clone(),
            opts.clone(),
            opts.clients + n,
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let monitor_task = opts
        .monitor
        .then(|| tokio::spawn(monitor(shared.clone(), opts.clone())));

    // Every client connected (or failed) before the window opens.
    let mut connected = 0;
    while let Some(ok) = ready_rx.recv().await {
        connected += usize::from(ok);
    }
    let connect_s = shared.t0.elapsed().as_secs_f64();
    if connected == 0 {
        let _ = phase_tx.send(Phase::Stop);
        let why = match fast.into_iter().next() {
            Some(t) => t.await.ok().and_then(|r| r.ended).unwrap_or_default(),
            None => String::new(),
        };
        return Err(LoadError::Server(format!(
            "no client could subscribe: {why}"
        )));
    }

    let ticks = clock_ticks();
    let self_pid = std::process::id();
    let server_start = opts.pid.and_then(sample_proc);
    let tool_start = sample_proc(self_pid);
    let window = Instant::now();
    shared
        .window_ns
        .store(shared.t0.elapsed().as_nanos() as u64, Ordering::Relaxed);

    let mut samples = Vec::new();
    let end = window + opts.duration;
    let mut next_sample = opts.sample_every.map(|d| window + d);
    loop {
        let wake = next_sample.map_or(end, |s| s.min(end));
        tokio::time::sleep_until(wake.into()).await;
        if let Some(s) = next_sample
            && Instant::now() >= s
        {
            let sample = SoakSample {
                elapsed_s: window.elapsed().as_secs_f64(),
                proc: opts.pid.and_then(sample_proc).unwrap_or_default(),
                delivered: shared.delivered.load(Ordering::Relaxed),
            };
            println!("{}", soak_line(&sample));
            samples.push(sample);
            next_sample = opts.sample_every.map(|d| s + d);
        }
        if Instant::now() >= end {
            break;
        }
    }
    let elapsed = window.elapsed().as_secs_f64();
    let server_end = opts.pid.and_then(sample_proc);
    let tool_end = sample_proc(self_pid);
    let cpu = |a: Option<ProcSample>, b: Option<ProcSample>| match (a, b) {
        (Some(a), Some(b)) => {
            Some((b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / ticks / elapsed * 100.0)
        }
        _ => None,
    };

    // Reading clients catch up to the last seq anyone saw; then everyone stops.
    let target = shared.max_seq.load(Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Drain(target));
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut results = Vec::with_capacity(fast.len());
    for t in fast {
        let mut t = t;
        let r = match tokio::time::timeout_at(drain_deadline, &mut t).await {
            Ok(r) => r,
            Err(_) => {
                let _ = phase_tx.send(Phase::Stop);
                t.await
            }
        };
        results.push(r.map_err(|e| LoadError::Server(format!("client task failed: {e}")))?);
    }
    let mut slow_outcomes = Vec::with_capacity(slow.len());
    for t in slow {
        match t.await {
            Ok(Ok(c)) => slow_outcomes.push(c),
            Ok(Err(e)) => slow_outcomes.push(SlowClient {
                addr: String::new(),
                seen: SlowOutcome::Dropped {
                    detail: format!("never subscribed: {e}"),
                },
                daemon_close: None,
            }),
            Err(e) => return Err(LoadError::Server(format!("client task failed: {e}"))),
        }
    }
    let _ = phase_tx.send(Phase::Stop);
    let status_clients = match monitor_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };

    Ok(summarise(
        &opts,
        results,
        slow_outcomes,
        Summary {
            target,
            elapsed,
            connect_s,
            server_cpu_pct: cpu(server_start, server_end),
            tool_cpu_pct: cpu(tool_start, tool_end),
            server_start,
            server_end,
            status_clients,
            samples,
        },
    ))
}

struct Summary {
    target: u64,
    elapsed: f64,
    connect_s: f64,
    server_cpu_pct: Option<f64>,
    tool_cpu_pct: Option<f64>,
    server_start: Option<ProcSample>,
    server_end: Option<ProcSample>,
    status_clients: Vec<(f64, u64)>,
    samples: Vec<SoakSample>,
}

fn summarise(
    opts: &Options,
    results: Vec<FastResult>,
    slow_outcomes: Vec<SlowClient>,
    s: Summary,
) -> Report {
    let live: Vec<&FastResult> = results.iter().filter(|r| r.connected).collect();
    // First receipt of each seq by any reading client.
    let mut first: HashMap<u64, u64> = HashMap::new();
    for r in &live {
        for x in &r.receipts {
            first
                .entry(x.seq)
                .and_modify(|t| *t = (*t).min(x.at_ns))
                .or_insert(x.at_ns);
        }
    }
    let mut first_kernel: HashMap<u64, i128> = HashMap::new();
    for r in &live {
        for x in r.receipts.iter().filter(|x| x.kernel_ns > 0) {
            first_kernel
                .entry(x.seq)
                .and_modify(|t| *t = (*t).min(x.kernel_ns))
                .or_insert(x.kernel_ns);
        }
    }
    let mut abs = Vec::new();
    let mut spread = Vec::new();
    let mut kernel_spread = Vec::new();
    for r in &live {
        for x in &r.receipts {
            if x.abs_ns != i64::MAX {
                abs.push(x.abs_ns);
            }
            if let Some(f) = first.get(&x.seq) {
                spread.push((x.at_ns - f) as i64);
            }
            if let Some(f) = first_kernel.get(&x.seq).filter(|_| x.kernel_ns > 0) {
                kernel_spread.push((x.kernel_ns - f) as i64);
            }
        }
    }
    // Consistency: each reading client got subscribe.seq + 1 first, then every seq
    // up to the end without a hole; so all saw the same seqs from the latest start.
    let bad_start = live
        .iter()
        .filter(|r| r.first.is_some_and(|f| f != r.subscribed_seq + 1))
        .count();
    let with_gaps = live.iter().filter(|r| r.missing > 0).count();
    let missing = live.iter().map(|r| r.missing).sum();
    let out_of_order = live.iter().map(|r| r.out_of_order).sum();
    let behind = live.iter().filter(|r| r.last < s.target).count();
    let fast_ended: Vec<String> = results.iter().filter_map(|r| r.ended.clone()).collect();
    let events = {
        let mut seqs: Vec<u64> = first.keys().copied().collect();
        if seqs.is_empty() {
            // Receipts off (soak): count from the first reading client instead.
            live.first().map_or(0, |r| r.count)
        } else {
            seqs.sort_unstable();
            seqs.len() as u64
        }
    };
    let delivered: u64 = live.iter().map(|r| r.count).sum();
    let bytes: u64 = live.iter().map(|r| r.bytes).sum();
    let consistent = live.len() == opts.clients
        && bad_start == 0
        && with_gaps == 0
        && out_of_order == 0
        && behind == 0
        && fast_ended.is_empty();
    Report {
        clients: opts.clients,
        connected: live.len(),
        slow: opts.slow,
        duration_s: s.elapsed,
        events,
        delivered,
        mean_event_bytes: if delivered > 0 {
            bytes as f64 / delivered as f64
        } else {
            0.0
        },
        absolute: Percentiles::of(abs),
        spread: Percentiles::of(spread),
        kernel_spread: Percentiles::of(kernel_spread),
        clients_bad_start: bad_start,
        clients_with_gaps: with_gaps,
        missing,
        out_of_order,
        clients_behind: behind,
        fast_ended,
        consistent,
        slow_outcomes,
        server_cpu_pct: s.server_cpu_pct,
        tool_cpu_pct: s.tool_cpu_pct,
        server_start: s.server_start,
        server_end: s.server_end,
        status_clients: s.status_clients,
        samples: s.samples,
        connect_s: s.connect_s,
        templates: results
            .into_iter()
            .next()
            .map(|r| r.templates)
            .unwrap_or_default(),
    }
}

/// One soak line.
pub fn soak_line(s: &SoakSample) -> String {
    let secs = s.elapsed_s.round() as u64;
    format!(
        "elapsed {:>3}m{:02}s  rss {:>7} kB  fds {:>5}  threads {:>3}  events delivered {:>10}",
        secs / 60,
        secs % 60,
        s.proc.rss_kb,
        s.proc.fds,
        s.proc.threads,
        s.delivered
    )
}

/// Soak verdict: RSS and fds of the last sample against the first (which is taken
/// one sample interval in, after warm-up).
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// RSS stayed within the tolerance.
    pub rss_flat: bool,
    /// fds did not grow.
    pub fds_flat: bool,
    /// First and last RSS, kB.
    pub rss_kb: (u64, u64),
    /// First and last fd count.
    pub fds: (u64, u64),
    /// Allowed RSS growth, kB.
    pub rss_slack_kb: u64,
}

/// Judges soak samples: RSS may grow by `max(1 MiB, tolerance × first)`, fds by none.
pub fn soak_verdict(samples: &[SoakSample], tolerance: f64) -> Option<Verdict> {
    let first = samples.first()?.proc;
    let last = samples.last()?.proc;
    let slack = ((first.rss_kb as f64 * tolerance) as u64).max(1024);
    Some(Verdict {
        rss_flat: last.rss_kb <= first.rss_kb + slack,
        fds_flat: last.fds <= first.fds,
        rss_kb: (first.rss_kb, last.rss_kb),
        fds: (first.fds, last.fds),
        rss_slack_kb: slack,
    })
}

/// Writes recorded events as a JSON array of `{atMs, message}` for a peer server.
pub fn write_templates(path: &Path, templates: &[(f64, String)]) -> Result<(), LoadError> {
    let first = templates.first().map_or(0.0, |t| t.0);
    let v: Vec<Value> = templates
        .iter()
        .map(|(at, m)| json!({"atMs": at - first, "message": m}))
        .collect();
    let text = serde_json::to_string(&v)
        .map_err(|e| LoadError::Server(format!("encode templates: {e}")))?;
    std::fs::write(path, text).map_err(io(format!("write {}", path.display())))
}
