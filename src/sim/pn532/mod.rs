//! `vitale-bridge sim pn532`: a PN532 on a pseudo-terminal, with a virtual phone.
//!
//! libnfc opens the pty's slave through the symlink given as `--link`
//! (`pn532_uart:LINK`), exactly as it opens a real PN532 on a USB-serial adapter. The
//! emulator keeps the slave open itself so the master side never sees a hang-up between
//! libnfc sessions.
//!
//! The phone is driven from outside, so tests and integrators can script taps:
//! - a control socket (unix stream, default `LINK.ctl`), one command per line, one
//!   answer line (`ok …` / `error …`): `tap`, `remove`, `consent accept|refuse`,
//!   `lock on|off`, `pull-after N|off` (the phone leaves the field after N APDUs of
//!   each following tap), `status`; every answer reads `ok in_field=BOOL apdus=N
//!   waiting=BOOL aborts=N` (`waiting`: a command is held until a tap; `aborts`: held
//!   commands the host cancelled with an ACK);
//! - signals: `SIGUSR1` taps, `SIGUSR2` removes; `SIGINT`/`SIGTERM` remove the link and
//!   the socket and exit 0.
//!
//! Once listening, one line goes to stdout: `pn532 ready link=LINK control=SOCKET`.
//!
//! Like the chip, an endless wait for a target (InAutoPoll with PollNr FF, or
//! InListPassiveTarget after MaxRetries FF) gets no answer until a tap; the host's ACK
//! frame cancels it (PN532 UM §6.2.1.3). The link thread sleeps in `poll(2)` on the pty
//! and on a wake-up socket the control and signal threads write to after a command, so
//! an idle emulator uses no CPU.

pub mod chip;
pub mod control;
pub mod frame;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};

use self::chip::{Chip, Reply};
use self::frame::{Decoded, Frame, TFI_CHIP, TFI_HOST};
use crate::sim::phone::{Consent, PhoneDescription, VirtualPhone};

/// Options of `vitale-bridge sim pn532`.
#[derive(Debug, Clone, clap::Args)]
pub struct Pn532Args {
    /// Where to symlink the pseudo-terminal (libnfc: `pn532_uart:PATH`).
    #[arg(long)]
    pub link: PathBuf,
    /// Phone description file (TOML).
    #[arg(long)]
    pub phone: PathBuf,
    /// Control socket path (default: the link path with `.ctl` appended).
    #[arg(long)]
    pub control: Option<PathBuf>,
    /// Start with the phone already in the field.
    #[arg(long)]
    pub tapped: bool,
    /// The phone leaves the field after this many APDUs of each tap.
    #[arg(long, value_name = "N")]
    pub pull_after: Option<usize>,
    /// Override the description's answer to signature requests.
    #[arg(long, value_parser = ["accept", "refuse"])]
    pub consent: Option<String>,
    /// Largest InDataExchange answer (status byte included) before MI chaining; a real
    /// PN532 sends up to 262.
    #[arg(long, default_value_t = 262, value_parser = clap::value_parser!(u16).range(2..=262))]
    pub max_frame: u16,
}

/// Runs the emulator until interrupted.
pub fn run(args: Pn532Args) -> ExitCode {
    match start(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim pn532: {e}");
            ExitCode::from(1)
        }
    }
}

/// The chip, and the link thread's wake-up socket (a held command may now be answered).
pub struct Sim {
    chip: Mutex<Chip>,
    wake: UnixStream,
}

type Shared = Arc<Sim>;

fn lock(sim: &Shared) -> MutexGuard<'_, Chip> {
    // The chip holds no invariant a panicking control thread could break halfway.
    sim.chip.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the link thread the phone may have moved. A full socket already holds a
/// wake-up, so a failed write loses nothing.
fn wake(sim: &Shared) {
    let _ = (&sim.wake).write(&[1]);
}

fn start(args: &Pn532Args) -> Result<(), String> {
    let desc = PhoneDescription::load(&args.phone)?;
    let mut phone = VirtualPhone::new(&desc)?;
    if let Some(consent) = &args.consent {
        phone.consent = if consent == "refuse" {
            Consent::Refuse
        } else {
            Consent::Accept
        };
    }
    let mut chip = Chip::new(phone, usize::from(args.max_frame));
    chip.set_pull_after(args.pull_after);
    if args.tapped {
        chip.tap();
    }
    let (wake_tx, wake_rx) = UnixStream::pair().map_err(|e| format!("wake-up socket: {e}"))?;
    for s in [&wake_tx, &wake_rx] {
        s.set_nonblocking(true)
            .map_err(|e| format!("wake-up socket: {e}"))?;
    }
    let chip: Shared = Arc::new(Sim {
        chip: Mutex::new(chip),
        wake: wake_tx,
    });

    // Signals are taken synchronously by one thread; block them before any other
    // thread exists so every thread inherits the mask.
    let mut signals = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;

    let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
    let mut raw =
        nix::sys::termios::tcgetattr(&pty.slave).map_err(|e| format!("tcgetattr: {e}"))?;
    nix::sys::termios::cfmakeraw(&mut raw);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &raw)
        .map_err(|e| format!("tcsetattr: {e}"))?;
    let slave_path = nix::unistd::ttyname(&pty.slave).map_err(|e| format!("ttyname: {e}"))?;
    replace_symlink(&slave_path, &args.link)?;

    let control_path = args.control.clone().unwrap_or_else(|| {
        let mut p = args.link.clone().into_os_string();
        p.push(".ctl");
        PathBuf::from(p)
    });
    let listener = control::bind(&control_path)?;
    {
        let chip = chip.clone();
        std::thread::Builder::new()
            .name("pn532-control".into())
            .spawn(move || control::serve(listener, chip))
            .map_err(|e| format!("control thread: {e}"))?;
    }
    {
        let chip = chip.clone();
        let cleanup = [args.link.clone(), control_path.clone()];
        std::thread::Builder::new()
            .name("pn532-signals".into())
            .spawn(move || on_signals(signals, chip, cleanup))
            .map_err(|e| format!("signal thread: {e}"))?;
    }

    println!(
        "pn532 ready link={} control={}",
        args.link.display(),
        control_path.display()
    );
    let _ = std::io::stdout().flush();
    tracing::info!(pty = %slave_path.display(), link = %args.link.display(), "PN532 emulator listening");

    // `pty.slave` stays open for the life of the process (see module docs).
    let _slave = pty.slave;
    let mut master = std::fs::File::from(pty.master);
    serve_link(&mut master, &wake_rx, &chip)
}

fn replace_symlink(target: &Path, link: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(link)
            .map_err(|e| format!("removing old {}: {e}", link.display()))?,
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a symlink; refusing to replace it",
                link.display()
            ));
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
        .map_err(|e| format!("symlinking {} → {}: {e}", link.display(), target.display()))
}

fn on_signals(signals: SigSet, chip: Shared, cleanup: [PathBuf; 2]) {
    loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                lock(&chip).tap();
                wake(&chip);
            }
            Ok(Signal::SIGUSR2) => lock(&chip).remove(),
            Ok(_) => {
                for path in &cleanup {
                    let _ = std::fs::remove_file(path);
                }
                std::process::exit(0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "sigwait failed");
                return;
            }
        }
    }
}

/// Reads host frames from the pty master and answers them, forever; answers a held
/// command when a wake-up shows its target arrived.
fn serve_link(
    master: &mut std::fs::File,
    mut wake_rx: &UnixStream,
    chip: &Shared,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 512];
    let mut last_reply: Vec<u8> = Vec::new();
    loop {
        let (link_ready, woken) = {
            let mut fds = [
                PollFd::new(master.as_fd(), PollFlags::POLLIN),
                PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if woken {
            let mut drain = [0u8; 64];
            while matches!(wake_rx.read(&mut drain), Ok(n) if n > 0) {}
            let ready = lock(chip).take_ready();
            if let Some(reply) = ready {
                let out = encode_reply(reply);
                write_all(master, &out)?;
                last_reply = out;
            }
        }
        if !link_ready {
            continue;
        }
        let n = master
            .read(&mut chunk)
            .map_err(|e| format!("reading the pty: {e}"))?;
        if n == 0 {
            return Err("the pty closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame::decode(&buf) {
                Decoded::Incomplete => break,
                Decoded::Skip { len, corrupt } => {
                    if corrupt {
                        tracing::debug!("corrupt frame from host, sending NACK");
                        write_all(master, &frame::NACK)?;
                    }
                    buf.drain(..len);
                }
                Decoded::Frame { frame, len } => {
                    buf.drain(..len);
                    match frame {
                        Frame::Info {
                            tfi: TFI_HOST,
                            data,
                        } => {
                            // The ACK goes at once; a held command's answer follows
                            // when its target arrives.
                            let reply = answer(chip, &data);
                            let mut out = frame::ACK.to_vec();
                            out.extend_from_slice(&reply);
                            write_all(master, &out)?;
                            if !reply.is_empty() {
                                last_reply = reply;
                            }
                        }
                        // The host aborts the running command with an ACK.
                        Frame::Ack => lock(chip).abort(),
                        Frame::Nack => write_all(master, &last_reply)?,
                        Frame::Info { .. } | Frame::Error => {}
                    }
                }
            }
        }
    }
}

fn answer(chip: &Shared, data: &[u8]) -> Vec<u8> {
    let reply = lock(chip).handle(data);
    tracing::trace!(
        command = format_args!("{:02X}", data.first().copied().unwrap_or(0)),
        "PN532 command"
    );
    encode_reply(reply)
}

/// The frame for `reply` (nothing yet for a held command).
fn encode_reply(reply: Reply) -> Vec<u8> {
    match reply {
        Reply::Data(out) => frame::encode(TFI_CHIP, &out).unwrap_or_else(|| frame::ERROR.to_vec()),
        Reply::Error => frame::ERROR.to_vec(),
        Reply::Hold => Vec::new(),
    }
}

fn write_all(master: &mut std::fs::File, bytes: &[u8]) -> Result<(), String> {
    master
        .write_all(bytes)
        .and_then(|()| master.flush())
        .map_err(|e| format!("writing the pty: {e}"))
}
