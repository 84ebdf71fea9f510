//! A second, real OS user for the trust-boundary tests, and a real WebSocket client
//! (`tests/data/ws_probe.py`, Python standard library only) run as any user through
//! `setpriv`. The suite runs as root, so it can create the user when it is missing.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Mutex;

use super::require_tool;

/// Serialises `useradd` between the tests of one binary.
static CREATING: Mutex<()> = Mutex::new(());

/// An OS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsUser {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The user `name`, created (system account, no home, no login shell) if absent.
pub fn ensure(name: &str) -> OsUser {
    let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if id_of("-u", name).is_none() {
        let useradd = require_tool("useradd", "passwd");
        let status = Command::new(useradd)
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", name])
            .status()
            .expect("run useradd");
        assert!(
            status.success(),
            "useradd {name} failed (the trust-boundary tests run as root: use scripts/test)"
        );
    }
    OsUser {
        uid: id_of("-u", name).expect("uid of the created user"),
        gid: id_of("-g", name).expect("gid of the created user"),
    }
}

/// Adds `user` to group `group`, creating the group if absent.
pub fn add_to_group(user: &str, group: &str) {
    let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    let exists = Command::new("getent")
        .args(["group", group])
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let groupadd = require_tool("groupadd", "passwd");
        assert!(
            Command::new(groupadd)
                .args(["--system", group])
                .status()
                .expect("groupadd")
                .success()
        );
    }
    let usermod = require_tool("usermod", "passwd");
    assert!(
        Command::new(usermod)
            .args(["-a", "-G", group, user])
            .status()
            .expect("usermod")
            .success()
    );
}

/// What `ws_probe.py` reported.
#[derive(Debug)]
pub struct Probe {
    /// The HTTP status of the handshake (`101`, `403`…).
    pub status: String,
    /// Every text frame the server sent.
    pub messages: Vec<String>,
    /// Why it stopped (`got TYPE`, `refused`, `closed`, `timeout`).
    pub done: String,
    /// Its whole output, for failure messages and leak checks.
    pub raw: String,
}

/// Runs the probe as `user` (real and effective ids, no supplementary groups)
/// against `port`, with `origin` if given, waiting for an event of type `wanted`.
pub fn probe_as(user: OsUser, port: u16, origin: Option<&str>, wanted: &str) -> Probe {
    let setpriv = require_tool("setpriv", "util-linux");
    let python = require_tool("python3", "python3");
    // A directory the other user can read whatever the checkout's permissions.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = dir.path().join("ws_probe.py");
    std::fs::write(&script, include_str!("../data/ws_probe.py")).expect("write probe");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(setpriv)
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg(python)
        .arg(&script)
        .arg(port.to_string())
        .arg(origin.unwrap_or(""))
        .arg(wanted)
        .output()
        .expect("run ws_probe.py");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ws_probe.py failed: {}\nstdout:\n{raw}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    Probe {
        status: field("STATUS "),
        messages: raw
            .lines()
            .filter_map(|l| l.strip_prefix("MSG "))
            .map(str::to_string)
            .collect(),
        done: field("DONE "),
        raw,
    }
}

/// Runs `program args` as `user` (as [`probe_as`] does) and returns its stdout.
pub fn run_as(user: OsUser, program: &std::path::Path, args: &[&str]) -> String {
    let setpriv = require_tool("setpriv", "util-linux");
    let out = Command::new(setpriv)
        .arg(format!("--reuid={}", user.uid))
        .arg(format!("--regid={}", user.gid))
        .arg("--clear-groups")
        .arg(program)
        .args(args)
        .output()
        .expect("run as another user");
    assert!(
        out.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// This process's user.
pub fn me() -> OsUser {
    OsUser {
        uid: nix_like_id("-u"),
        gid: nix_like_id("-g"),
    }
}

fn nix_like_id(flag: &str) -> u32 {
    let out = Command::new("id").arg(flag).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}
