//! Shared by the NFC integration tests: the real `vitale-bridge sim pn532` emulator as a
//! child process (libnfc talks to it through its pty), its control socket, and an
//! independent ES256 check of origin-bound signatures.
#![allow(dead_code)]

pub mod backend;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

/// How long any single wait may take before the test fails loudly.
pub const WAIT: Duration = Duration::from_secs(20);

/// The test phone description (relative to the crate root).
pub fn phone_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/phone.toml")
}

/// A running PN532 emulator; killed on drop.
pub struct Emulator {
    child: Child,
    /// The pty symlink libnfc opens.
    pub link: PathBuf,
    /// The control socket.
    pub control: PathBuf,
}

impl Emulator {
    /// Starts `vitale-bridge sim pn532 --link DIR/pn532 --phone FILE EXTRA…` and waits for
    /// its ready line.
    pub fn start(dir: &Path, extra: &[&str]) -> Emulator {
        let link = dir.join("pn532");
        let phone = phone_file();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
            .args(["sim", "pn532", "--link"])
            .arg(&link)
            .arg("--phone")
            .arg(&phone)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vitale-bridge sim pn532");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no ready line from sim pn532");
        });
        let control = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("control="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        Emulator {
            child,
            link,
            control,
        }
    }

    /// `pn532_uart:LINK`.
    pub fn connstring(&self) -> String {
        format!("pn532_uart:{}", self.link.display())
    }

    /// Sends one control command and returns the answer line (fails on `error …`).
    pub fn control(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(&self.control).expect("control socket");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        writeln!(stream, "{command}").expect("send control command");
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("control answer");
        assert!(line.starts_with("ok"), "{command:?} → {line:?}");
        line.trim().to_string()
    }

    /// APDUs the phone answered since its last tap (from `status`).
    pub fn apdus(&self) -> usize {
        let status = self.control("status");
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix("apdus="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad status {status:?}"))
    }

    /// Whether the emulator holds a command until a tap (the chip is waiting).
    pub fn waiting(&self) -> bool {
        let status = self.control("status");
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix("waiting="))
            .and_then(|b| b.parse().ok())
            .unwrap_or_else(|| panic!("bad status {status:?}"))
    }

    /// Held commands the host cancelled with an ACK frame (from `status`).
    pub fn aborts(&self) -> usize {
        let status = self.control("status");
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix("aborts="))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad status {status:?}"))
    }

    /// Returns once the host has cancelled at least `n` held commands (fails after
    /// [`WAIT`]); the ACK may reach the emulator after the host has moved on.
    pub fn until_aborts(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.aborts() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "emulator saw fewer than {n} aborts"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Returns once `waiting()` is `want` (fails after [`WAIT`]).
    pub fn until_waiting(&self, want: bool) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.waiting() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "emulator never reached waiting={want}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process (SIGKILL: no cleanup, like a crash or an unplugged board).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The test phone's public key, derived here from the description's seed exactly as the
/// file documents it (SHA-256 of the seed), not through the daemon's code.
pub fn expected_public_key() -> Vec<u8> {
    let seed = "tests/data/phone.toml";
    let scalar = Sha256::digest(seed.as_bytes());
    let key = p256::ecdsa::SigningKey::from_slice(&scalar).expect("valid scalar");
    key.verifying_key().to_sec1_bytes().to_vec()
}

/// Checks a `card.sign` result: bound to `origin`, verified by the daemon, from the
/// test phone's key, and — recomputed here from product.md §4.3, not through the
/// daemon's code — valid for `origin` and for no other.
pub fn assert_signed_for(res: &serde_json::Value, origin: &str, challenge: &[u8]) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let sig = &res["result"];
    assert_eq!(sig["alg"], "ES256", "{res}");
    assert_eq!(sig["origin"], origin, "{res}");
    assert_eq!(sig["verified"], true, "{res}");
    let decode = |field: &str| {
        URL_SAFE_NO_PAD
            .decode(
                sig[field]
                    .as_str()
                    .unwrap_or_else(|| panic!("{field} in {res}")),
            )
            .unwrap_or_else(|e| panic!("{field} is not base64url: {e}"))
    };
    let (public_key, signature) = (decode("publicKey"), decode("signature"));
    assert_eq!(public_key, expected_public_key());
    assert!(es256_verifies(&public_key, origin, challenge, &signature));
    for other in ["https://other.example", "native:"] {
        if other != origin {
            assert!(
                !es256_verifies(&public_key, other, challenge, &signature),
                "{other}"
            );
        }
    }
}

/// Independent check of product.md §4.3: ES256 over `SHA-256(origin) ‖ SHA-256(challenge)`.
pub fn es256_verifies(public_key: &[u8], origin: &str, challenge: &[u8], signature: &[u8]) -> bool {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&Sha256::digest(origin.as_bytes()));
    message.extend_from_slice(&Sha256::digest(challenge));
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else {
        return false;
    };
    key.verify(&message, &sig).is_ok()
}
