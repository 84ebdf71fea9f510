//! The emulator's control socket: one text command per line, one answer line each.
//! See the parent module for the command list.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use super::{Shared, lock, wake};
use crate::sim::phone::Consent;

/// Binds the control socket, replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(path);
    }
    UnixListener::bind(path).map_err(|e| format!("control socket {}: {e}", path.display()))
}

/// Accepts control connections forever, one thread each.
pub fn serve(listener: UnixListener, chip: Shared) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let chip = chip.clone();
                let _ = std::thread::Builder::new()
                    .name("pn532-control-conn".into())
                    .spawn(move || serve_conn(stream, chip));
            }
            Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
        }
    }
}

fn serve_conn(stream: UnixStream, chip: Shared) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let reply = execute(&chip, line.trim());
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}

/// Runs one control command and returns the answer line.
pub fn execute(sim: &Shared, command: &str) -> String {
    let reply = run(sim, command);
    // A tap (or anything else) may let a held InAutoPoll answer.
    wake(sim);
    reply
}

fn run(sim: &Shared, command: &str) -> String {
    let mut words = command.split_whitespace();
    let mut chip = lock(sim);
    match (words.next(), words.next(), words.next()) {
        (Some("tap"), None, None) => chip.tap(),
        (Some("remove"), None, None) => chip.remove(),
        (Some("consent"), Some("accept"), None) => chip.phone_mut().consent = Consent::Accept,
        (Some("consent"), Some("refuse"), None) => chip.phone_mut().consent = Consent::Refuse,
        (Some("lock"), Some("on"), None) => chip.phone_mut().locked = true,
        (Some("lock"), Some("off"), None) => chip.phone_mut().locked = false,
        (Some("pull-after"), Some("off"), None) => chip.set_pull_after(None),
        (Some("pull-after"), Some(n), None) => match n.parse() {
            Ok(n) => chip.set_pull_after(Some(n)),
            Err(_) => return format!("error pull-after wants a number or off, not {n:?}"),
        },
        (Some("status"), None, None) => {}
        _ => {
            return format!(
                "error unknown command {command:?} (tap, remove, consent accept|refuse, lock on|off, pull-after N|off, status)"
            );
        }
    }
    format!(
        "ok in_field={} apdus={} waiting={} aborts={}",
        chip.in_field(),
        chip.apdus(),
        chip.holding(),
        chip.aborts()
    )
}
