//! `vitale-bridge doctor` checks for PC/SC: the service installed (Linux) and
//! running, readers present, access allowed (polkit), no reader held exclusively —
//! each with its fix in the OS's own terms ([`super::platform`]).

use std::path::Path;
use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};

use super::platform::WORDING;
use crate::transport::{Check, CheckStatus};

/// Where pcsc-lite's daemon listens on Linux.
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";

fn check(status: CheckStatus, what: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        status,
        what: what.into(),
        fix: fix.map(str::to_string),
    }
}

/// Runs every check, stopping at the first one the rest depend on.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    if cfg!(target_os = "linux") {
        let installed = ["/usr/sbin/pcscd", "/usr/bin/pcscd", "/usr/local/sbin/pcscd"]
            .iter()
            .any(|p| Path::new(p).exists());
        if installed {
            out.push(check(CheckStatus::Ok, "pcscd is installed", None));
        } else {
            out.push(check(
                CheckStatus::Fail,
                "pcscd is not installed",
                Some("apt-get install pcscd (Fedora: dnf install pcsc-lite; Arch: pacman -S pcsclite)"),
            ));
        }
        if !Path::new(PCSCD_SOCKET).exists() {
            out.push(check(
                CheckStatus::Fail,
                format!("pcscd is not running (no {PCSCD_SOCKET})"),
                Some("start it: systemctl enable --now pcscd.socket (without systemd: pcscd)"),
            ));
            return out;
        }
    }
    let ctx = match Context::establish(Scope::User) {
        Ok(c) => c,
        Err(e) => {
            let polkit = cfg!(target_os = "linux") && Path::new(PCSCD_SOCKET).exists();
            out.push(if polkit {
                check(
                    CheckStatus::Fail,
                    format!("pcscd runs but refused this user ({e}): probably a polkit denial"),
                    Some("allow org.debian.pcsc-lite.access_pcsc and access_card for this user (a polkit rule in /etc/polkit-1/rules.d/), or run the daemon in the user's graphical session"),
                )
            } else if matches!(e, pcsc::Error::NoService | pcsc::Error::ServiceStopped) {
                // Windows stops SCardSvr while no reader is attached: `run` waits for it.
                check(
                    CheckStatus::Fail,
                    format!("{} is not running ({e})", WORDING.service),
                    Some(WORDING.start_fix),
                )
            } else {
                check(
                    CheckStatus::Fail,
                    format!("PC/SC service unavailable: {e}"),
                    Some(WORDING.start_fix),
                )
            });
            return out;
        }
    };
    out.push(check(
        CheckStatus::Ok,
        format!("{} is reachable", WORDING.service),
        None,
    ));
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => {
            out.push(check(
                CheckStatus::Fail,
                format!("listing readers failed: {e}"),
                Some(WORDING.list_failed_fix),
            ));
            return out;
        }
    };
    if names.is_empty() {
        out.push(check(
            CheckStatus::Warn,
            "no PC/SC reader found",
            Some(WORDING.no_reader_fix),
        ));
        return out;
    }
    out.push(check(
        CheckStatus::Ok,
        format!(
            "{} PC/SC reader(s): {}",
            names.len(),
            names
                .iter()
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None,
    ));
    let mut states: Vec<ReaderState> = names
        .iter()
        .map(|n| ReaderState::new(n.clone(), State::UNAWARE))
        .collect();
    if ctx.get_status_change(Duration::ZERO, &mut states).is_ok() {
        for s in &states {
            if s.event_state().contains(State::EXCLUSIVE) {
                out.push(check(
                    CheckStatus::Warn,
                    format!("reader {} is held exclusively by another application", s.name().to_string_lossy()),
                    Some("close the application holding it (another card middleware, a browser smart-card extension); vitale-bridge answers READER_BUSY meanwhile"),
                ));
            }
        }
    }
    out
}
