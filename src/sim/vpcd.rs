//! `sim vpcd`: the virtual Carte Vitale, or with `--phone` the virtual phone,
//! speaking vsmartcard's vpcd wire protocol.
//!
//! A phone presents the ATR a PC/SC contactless reader synthesises for an ISO
//! 14443-4 target (`3B 80 80 01 01`, cards.md §3), whatever the vpcd reader's name
//! says: that ATR is what the daemon recognises phones in PC/SC readers by.
//!
//! The card side connects to vpcd (which listens; one TCP port per slot), and the
//! connection *is* the card's presence: connecting inserts the card, closing the
//! socket removes it. Frames are a 2-byte big-endian length and a payload; 1-byte
//! payloads are control (`00` power off, `01` power on, `02` reset, `04` get ATR, the
//! last one answered with the ATR); longer ones are C-APDUs answered with R-APDUs.
//!
//! vpcd writes the length and the payload in two writes with Nagle on, so the card
//! sets `TCP_NODELAY` and re-arms `TCP_QUICKACK` before every read; without it each
//! APDU costs ~40 ms of delayed-ACK instead of well under a millisecond.
//!
//! Each time the card connects, one line goes to stdout (flushed):
//! `card connected to HOST:PORT at UNIX_SECONDS.MICROS` — tests and the benchmark use
//! it; other diagnostics go to stderr.
//!
//! Reconnect behaviour: without `--reconnect`, the simulator exits (status 0) once its
//! card is gone (pulled with `--pull-after`, or vpcd closed the connection). With
//! `--reconnect`, it inserts a fresh card (selections forgotten) after
//! `--reconnect-delay-ms`. SIGINT/SIGTERM close the socket (the card is removed) and
//! exit 0. At start, vpcd may not listen yet: connecting is retried every 100 ms for
//! `--connect-timeout-ms`, then the simulator exits 1.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::sim::VirtualCard;
use crate::sim::card_model::{CardDescription, Hostile, VirtualVitale};
use crate::sim::phone::{PhoneDescription, VirtualPhone};

/// Options of `vitale-bridge sim vpcd`.
#[derive(Debug, Clone, clap::Args)]
pub struct VpcdArgs {
    /// Card description file (TOML, see docs/card-format.md).
    #[arg(long, required_unless_present = "phone", conflicts_with = "phone")]
    pub card: Option<PathBuf>,
    /// Be the virtual phone of this description file instead (TOML, as for `sim
    /// pn532`; see docs/hardware-nfc.md), presented as a phone in a contactless reader.
    #[arg(long, value_name = "FILE", conflicts_with = "hostile")]
    pub phone: Option<PathBuf>,
    /// vpcd host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// vpcd port (35963 is the first slot, 35964 the second).
    #[arg(long, default_value_t = 35963)]
    pub port: u16,
    /// Pull the card (close the connection) instead of answering APDU number N+1.
    #[arg(long, value_name = "N")]
    pub pull_after: Option<usize>,
    /// Misbehave: endless-61, bad-length, deep-nesting, mute, protected (overrides
    /// the card file's `hostile`).
    #[arg(long, value_name = "MODE")]
    pub hostile: Option<Hostile>,
    /// After the card is pulled or vpcd drops it, insert it again.
    #[arg(long)]
    pub reconnect: bool,
    /// Delay before reinserting with --reconnect.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub reconnect_delay_ms: u64,
    /// How long to keep trying to reach vpcd.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub connect_timeout_ms: u64,
}

/// Why a card session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// SIGINT/SIGTERM.
    Stopped,
    /// `--pull-after` reached.
    Pulled,
    /// vpcd closed the connection.
    PeerClosed,
}

/// Runs the virtual card until `stop` is stopped.
pub fn run(args: VpcdArgs, stop: Stop) -> ExitCode {
    let card = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sim vpcd: {e}");
            return ExitCode::from(2);
        }
    };
    match serve(&args, card, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim vpcd: {e}");
            ExitCode::from(1)
        }
    }
}

/// The virtual card or phone the options describe.
fn load(args: &VpcdArgs) -> Result<Box<dyn VirtualCard>, String> {
    match (&args.card, &args.phone) {
        (_, Some(path)) => {
            let desc = PhoneDescription::load(path)?;
            let phone = VirtualPhone::new(&desc).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Box::new(phone))
        }
        (Some(path), None) => {
            let mut desc = CardDescription::from_file(path).map_err(|e| e.to_string())?;
            if let Some(h) = args.hostile {
                desc.hostile = h;
            }
            let card = VirtualVitale::new(&desc).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(Box::new(card))
        }
        (None, None) => Err("--card FILE or --phone FILE is required".into()),
    }
}

/// Connects, serves, and reconnects as the options say.
fn serve(args: &VpcdArgs, mut card: Box<dyn VirtualCard>, stop: &Stop) -> io::Result<()> {
    let addr = format!("{}:{}", args.host, args.port);
    loop {
        let Some(stream) = connect(&addr, Duration::from_millis(args.connect_timeout_ms), stop)?
        else {
            return Ok(());
        };
        card.reset();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Nobody reading stdout is not a reason to stop being a card.
        let mut out = io::stdout().lock();
        let _ = writeln!(
            out,
            "card connected to {addr} at {}.{:06}",
            now.as_secs(),
            now.subsec_micros()
        );
        let _ = out.flush();
        drop(out);
        let end = stop.guard(&stream, || session(&stream, card.as_mut(), args.pull_after));
        let _ = stream.shutdown(Shutdown::Both);
        match end {
            Ok(End::Stopped) => return Ok(()),
            Ok(end) => tracing::info!(?end, "card session ended"),
            Err(e) if stop.is_set() => {
                tracing::debug!(error = %e, "session ended by stop");
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %e, "card session failed"),
        }
        if !args.reconnect || stop.sleep(Duration::from_millis(args.reconnect_delay_ms)) {
            return Ok(());
        }
    }
}

/// Connects to vpcd, retrying while it is not listening yet. `None` when stopped.
fn connect(addr: &str, timeout: Duration, stop: &Stop) -> io::Result<Option<TcpStream>> {
    let deadline = Instant::now() + timeout;
    loop {
        if stop.is_set() {
            return Ok(None);
        }
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(Some(s));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot reach vpcd at {addr}: {e} (is pcscd running with the vpcd reader?)"
                    ),
                ));
            }
            Err(_) => {
                if stop.sleep(Duration::from_millis(100)) {
                    return Ok(None);
                }
            }
        }
    }
}

/// One card presence: answers vpcd until it closes, the card is pulled, or stop.
fn session(
    stream: &TcpStream,
    card: &mut dyn VirtualCard,
    pull_after: Option<usize>,
) -> io::Result<End> {
    let sock = socket2::SockRef::from(stream);
    let mut reader = stream;
    let mut writer = stream;
    let mut answered = 0usize;
    loop {
        let Some(frame) = read_frame(&sock, &mut reader)? else {
            tracing::info!(apdus = answered, "vpcd closed the connection");
            return Ok(End::PeerClosed);
        };
        match frame.as_slice() {
            [0x00] => {
                tracing::debug!("vpcd: power off");
                card.reset();
            }
            [0x01] => tracing::debug!("vpcd: power on"),
            [0x02] => {
                tracing::debug!("vpcd: reset");
                card.reset();
            }
            [0x04] => write_frame(&mut writer, &card.atr())?,
            [other] => tracing::debug!(control = other, "vpcd: unknown control byte"),
            capdu => {
                if pull_after.is_some_and(|n| answered >= n) {
                    tracing::info!(answered, "pulling the card");
                    return Ok(End::Pulled);
                }
                answered += 1;
                let mut rapdu = card.process(capdu);
                if rapdu.is_empty() {
                    // vpcd waits forever on an empty answer (it has no timeout, unlike a
                    // real reader): a mute card answers one garbage byte instead.
                    rapdu = vec![0x6F];
                }
                tracing::trace!(
                    ">>> {} <<< {}",
                    hex::encode_upper(capdu.get(..4).unwrap_or(capdu)),
                    hex::encode_upper(rapdu.get(rapdu.len().saturating_sub(2)..).unwrap_or(&[]))
                );
                write_frame(&mut writer, &rapdu)?;
            }
        }
    }
}

/// Asks for an immediate ACK of the next segment (Linux's TCP_QUICKACK); elsewhere
/// delayed ACKs only cost latency.
fn quickack(sock: &socket2::SockRef<'_>) {
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_quickack(true);
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
}

/// Reads one frame; `None` on a clean end of stream before a frame starts.
fn read_frame(sock: &socket2::SockRef<'_>, r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    // Quick-ACK is not sticky: re-arm it before each read (see the module docs).
    quickack(sock);
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    quickack(sock);
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "R-APDU too long"))?;
    // One write, so vpcd gets length and payload in the same segment.
    let mut frame = Vec::with_capacity(payload.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// How a blocking program is stopped from outside: [`Stopper::stop`] sets a flag,
/// shuts the live socket down (unblocking its read) and wakes any sleep. The
/// command line wires it to the OS's stop requests (`daemon::shutdown`, the one place
/// for that concern), so the simulator has no signal code of its own.
pub struct Stop {
    flag: Arc<AtomicBool>,
    live: Arc<Mutex<Option<TcpStream>>>,
    wake: Mutex<mpsc::Receiver<()>>,
}

/// The other end of a [`Stop`]; sendable to whatever thread sees the request.
pub struct Stopper {
    flag: Arc<AtomicBool>,
    live: Arc<Mutex<Option<TcpStream>>>,
    wake: mpsc::Sender<()>,
}

impl Stopper {
    /// Stops the program: its current connection is shut down and its sleeps end.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(s) = self.live.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = self.wake.send(());
    }
}

impl Stop {
    /// A stop and its stopper. Dropping the stopper unstopped leaves sleeps plain.
    pub fn new() -> (Stop, Stopper) {
        let flag = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
        let (tx, rx) = mpsc::channel();
        let stopper = Stopper {
            flag: flag.clone(),
            live: live.clone(),
            wake: tx,
        };
        let stop = Stop {
            flag,
            live,
            wake: Mutex::new(rx),
        };
        (stop, stopper)
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps, returning early with `true` when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let rx = self.wake.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(mpsc::RecvTimeoutError::Disconnected) = rx.recv_timeout(d) {
            // No signal watcher (or it already fired): plain sleep, never a busy loop.
            if !self.is_set() {
                std::thread::sleep(d);
            }
        }
        self.is_set()
    }

    /// Runs `f` with `stream` registered for shutdown on a signal.
    fn guard(&self, stream: &TcpStream, f: impl FnOnce() -> io::Result<End>) -> io::Result<End> {
        if let Ok(clone) = stream.try_clone() {
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
        }
        if self.is_set() {
            return Ok(End::Stopped);
        }
        let end = f();
        self.live.lock().unwrap_or_else(|p| p.into_inner()).take();
        if self.is_set() { Ok(End::Stopped) } else { end }
    }
}
