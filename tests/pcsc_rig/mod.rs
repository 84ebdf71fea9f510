//! A private PC/SC rig for integration tests: a real pcscd with vsmartcard's vpcd
//! driver (two slots on TCP 36000/36001, away from the machine's 35963), and virtual
//! cards inserted by running the real `vitale-bridge sim vpcd` binary (or vsmartcard's
//! `vicc` as a foreign card).
//!
//! pcscd's socket lives in /run/pcscd, so tests must run in a private mount namespace
//! with a tmpfs there (`scripts/test` does it):
//! `unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run/pcscd && cargo test --test pcsc_…'`.
//! Tests in one binary share the port: take [`PcscRig::lock`] first.
//! The vpcd port is never probed by connecting (that would insert a card): readiness
//! is read from /proc/net/tcp.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use vitale_bridge::sim::card_model::CardDescription;

use crate::support::{WAIT, require_tool};

/// vpcd's first slot in the private rig (CHANNELID 0x8CA0).
pub const PORT: u16 = 0x8CA0;
/// Reader names pcscd gives the two slots.
pub const SLOT0: &str = "Virtual PCD 00 00";
/// Second slot.
pub const SLOT1: &str = "Virtual PCD 00 01";
/// vpcd driver path on Debian.
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

static RIG: Mutex<()> = Mutex::new(());

/// A private pcscd; stopped on drop.
pub struct PcscRig {
    pcscd: Option<Child>,
    dir: tempfile::TempDir,
    _guard: MutexGuard<'static, ()>,
}

/// Path of an example card file.
pub fn card(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.toml"))
}

fn in_private_namespace() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/run/pcscd") && l.contains(" - tmpfs "))
}

fn listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(1)
                    .is_some_and(|a| format!("{a} ").ends_with(&want))
                    && cols.get(3) == Some(&"0A")
            })
    })
}

impl PcscRig {
    /// Starts pcscd with the vpcd reader and waits until it serves and vpcd listens.
    pub fn start() -> PcscRig {
        let guard = RIG.lock().unwrap_or_else(|p| p.into_inner());
        require_tool("pcscd", "pcscd");
        assert!(
            Path::new(VPCD_DRIVER).exists(),
            "vsmartcard's vpcd driver is required: apt-get install -y vsmartcard-vpcd (or run scripts/test)"
        );
        assert!(
            in_private_namespace(),
            "PC/SC tests start their own pcscd and need a private /run/pcscd: run scripts/test, or \
             unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /run/pcscd && cargo test --test <name>'"
        );
        // Mount namespaces are private, the network is not: two rigs cannot share the port.
        assert!(
            !listening(PORT) && !listening(PORT + 1),
            "TCP {PORT}/{} is already taken: another PC/SC test rig or benchmark runs on this machine",
            PORT + 1
        );
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("reader.conf"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{PORT:04X}\n"
            ),
        )
        .expect("reader.conf");
        let mut rig = PcscRig {
            pcscd: None,
            dir,
            _guard: guard,
        };
        rig.start_pcscd();
        rig
    }

    /// (Re)starts pcscd and waits for its socket and vpcd's listening port.
    pub fn start_pcscd(&mut self) {
        assert!(self.pcscd.is_none(), "pcscd already running");
        let _ = std::fs::remove_file("/run/pcscd/pcscd.comm");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pcscd.log"))
            .expect("pcscd log");
        let child = Command::new(require_tool("pcscd", "pcscd"))
            .args(["--foreground", "--debug", "-c"])
            .arg(self.dir.path().join("reader.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn pcscd");
        self.pcscd = Some(child);
        let deadline = Instant::now() + WAIT;
        while !(Path::new("/run/pcscd/pcscd.comm").exists()
            && listening(PORT)
            && listening(PORT + 1))
        {
            assert!(
                Instant::now() < deadline,
                "pcscd did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills pcscd (SIGKILL, as a crash) and waits for it to be gone.
    pub fn kill_pcscd(&mut self) {
        if let Some(mut c) = self.pcscd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops pcscd with SIGTERM.
    pub fn stop_pcscd(&mut self) {
        if let Some(mut c) = self.pcscd.take() {
            signal(c.id(), "TERM");
            let _ = c.wait();
        }
    }

    /// pcscd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }
}

impl Drop for PcscRig {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- pcscd log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.stop_pcscd();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// A virtual card in a vpcd slot: the real `vitale-bridge sim vpcd`, or `vicc`.
pub struct Sim {
    child: Child,
    /// When the card connected to vpcd (from the sim's stdout line).
    pub connected_at: Option<f64>,
    lines: Option<std::sync::mpsc::Receiver<String>>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sim {
    /// Inserts `card` into `slot` (0 or 1) and waits until it connected to vpcd.
    pub fn insert(card: &Path, slot: u16, extra: &[&str]) -> Sim {
        Sim::start("--card", card, slot, extra)
    }

    /// Presents the virtual `phone` in `slot` (0 or 1), as a PC/SC contactless reader
    /// presents a phone, and waits until it connected to vpcd.
    pub fn insert_phone(phone: &Path, slot: u16, extra: &[&str]) -> Sim {
        Sim::start("--phone", phone, slot, extra)
    }

    fn start(what: &str, file: &Path, slot: u16, extra: &[&str]) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr_path = dir.path().join("sim.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
            .args(["sim", "vpcd", what])
            .arg(file)
            .args(["--port", &(PORT + slot).to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&stderr_path).expect("log"),
            ))
            .spawn()
            .expect("spawn sim vpcd");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the receiver is gone, so the sim never sees EPIPE.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "sim vpcd did not connect; log:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            )
        });
        let connected_at = line.rsplit(' ').next().and_then(|t| t.parse::<f64>().ok());
        assert!(
            line.starts_with("card connected"),
            "unexpected sim line {line:?}"
        );
        Sim {
            child,
            connected_at,
            lines: Some(rx),
            stderr_path,
            _dir: dir,
        }
    }

    /// Waits for the next `card connected` line (after a `--reconnect`) and returns
    /// its timestamp.
    pub fn next_connect(&mut self) -> f64 {
        let rx = self.lines.as_ref().expect("a vitale-bridge sim");
        let line = rx.recv_timeout(WAIT).expect("sim did not reconnect");
        line.rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("timestamp")
    }

    /// Inserts vsmartcard's own ISO 7816 card (`vicc`) into `slot`. There is no
    /// connect line to wait for: the caller waits for `card.inserted`.
    pub fn vicc(slot: u16) -> Sim {
        let vicc = require_tool("vicc", "vsmartcard-vpicc");
        let dir = tempfile::tempdir().expect("tempdir");
        let stderr_path = dir.path().join("vicc.log");
        // Debian 12's python3-virtualsmartcard installs into site-packages/virtualsmartcard
        // (not on sys.path) and imports PyCrypto's `Crypto`, which Debian ships as
        // pycryptodome's `Cryptodome`: point Python at both.
        let cryptodome = Path::new("/usr/lib/python3/dist-packages/Cryptodome");
        assert!(
            cryptodome.exists(),
            "vicc needs pycryptodome: apt-get install -y python3-pycryptodome (or run scripts/test)"
        );
        std::os::unix::fs::symlink(cryptodome, dir.path().join("Crypto")).expect("Crypto shim");
        let pythonpath = format!(
            "/usr/lib/python3/site-packages/virtualsmartcard:{}",
            dir.path().display()
        );
        let check = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "from virtualsmartcard.VirtualSmartcard import VirtualICC",
            ])
            .env("PYTHONPATH", &pythonpath)
            .output()
            .expect("python3");
        assert!(
            check.status.success(),
            "vicc cannot start: apt-get install -y vsmartcard-vpicc python3-pycryptodome\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(vicc)
            .env("PYTHONPATH", &pythonpath)
            .args([
                "--type",
                "iso7816",
                "--hostname",
                "127.0.0.1",
                "--port",
                &(PORT + slot).to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&stderr_path).expect("log"),
            ))
            .spawn()
            .expect("spawn vicc");
        Sim {
            child,
            connected_at: None,
            lines: None,
            stderr_path,
            _dir: dir,
        }
    }

    /// Removes the card (SIGTERM; the sim closes its connection) and waits for exit.
    /// Ours must exit cleanly on the stop request, not die of the signal (vicc, a
    /// Python script, just dies).
    pub fn remove(mut self) {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().expect("wait for the virtual card");
        let ours = self.lines.is_some();
        assert!(!ours || status.success(), "sim vpcd on SIGTERM: {status}");
    }

    /// Waits for the simulator to end by itself (after `--pull-after`).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            assert!(Instant::now() < deadline, "sim did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The simulator's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- simulator log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that an `identity.read` payload is exactly what the card file describes.
pub fn assert_identity_matches(identity: &Value, file: &Path) {
    let desc = CardDescription::from_file(file).expect("card file");
    let got = identity["beneficiaries"].as_array().expect("beneficiaries");
    assert_eq!(got.len(), desc.beneficiaries.len(), "{}", file.display());
    for (i, (g, want)) in got.iter().zip(&desc.beneficiaries).enumerate() {
        assert_eq!(g["index"], i, "{}", file.display());
        assert_eq!(g["surname"], want.surname.trim(), "{} #{i}", file.display());
        assert_eq!(
            g["givenName"],
            want.given_name.trim(),
            "{} #{i}",
            file.display()
        );
        assert_eq!(
            g["birthDateRaw"],
            want.birth_date,
            "{} #{i}",
            file.display()
        );
        assert_eq!(
            g["birthDateLunar"],
            want.birth_date.ends_with("00") || &want.birth_date[4..6] == "00",
            "{} #{i}",
            file.display()
        );
        match &want.nir {
            Some(nir) => assert_eq!(g["nir"], nir.as_str(), "{} #{i}", file.display()),
            None => assert_eq!(g["nir"], Value::Null, "{} #{i}", file.display()),
        }
    }
    assert_eq!(identity["source"], "vitale-card");
    assert_eq!(identity["profile"], "vitale2-public");
    assert_eq!(identity["cardType"], "vitale2");
}
