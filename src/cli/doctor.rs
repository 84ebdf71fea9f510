//! `vitale-bridge doctor`: one OK/WARN/FAIL line per check, with the fix, then the
//! effective configuration. Exit 1 when anything FAILs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use super::term::{Colour, paint, stdout_colour};
use super::{CommonArgs, EXIT_FAILURE};
use crate::config::{Config, ConfigError, Sources};
use crate::transport::{self, Check, CheckStatus};

/// Runs every check and prints the report.
pub fn run(common: &CommonArgs, loaded: Result<Config, ConfigError>) -> ExitCode {
    let mut checks = Vec::new();
    let sources = Sources::standard(common.config.clone());
    let cfg = match loaded {
        Ok(cfg) => {
            checks.push(ok(format!("configuration valid ({})", files(&sources))));
            cfg
        }
        Err(e) => {
            checks.push(fail(
                format!("configuration invalid: {e}"),
                "fix or remove that key (see docs/configuration.md); continuing with defaults",
            ));
            Config::default()
        }
    };
    checks.extend(config_checks(&cfg));
    checks.push(port_check(&cfg));
    checks.extend(silent_check(&cfg));
    if cfg.pcsc.enabled {
        checks.extend(transport::pcsc::diagnose());
    } else {
        checks.push(ok("PC/SC disabled by configuration".into()));
    }
    if cfg.nfc.enabled {
        checks.extend(transport::nfc::diagnose(&cfg.nfc_options()));
    } else {
        checks.push(ok("NFC disabled by configuration".into()));
    }

    let colour = stdout_colour();
    let mut out = std::io::stdout().lock();
    for c in &checks {
        let _ = writeln!(out, "{}", line(c, colour));
    }
    let _ = writeln!(out, "\n# effective configuration\n{}", cfg.to_toml());
    if checks.iter().any(|c| c.status == CheckStatus::Fail) {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn ok(what: String) -> Check {
    Check {
        status: CheckStatus::Ok,
        what,
        fix: None,
    }
}

fn warn(what: String, fix: &str) -> Check {
    Check {
        status: CheckStatus::Warn,
        what,
        fix: Some(fix.into()),
    }
}

fn fail(what: String, fix: &str) -> Check {
    Check {
        status: CheckStatus::Fail,
        what,
        fix: Some(fix.into()),
    }
}

/// `OK   what` / `WARN what\n     fix: …`.
fn line(c: &Check, colour: bool) -> String {
    let (tag, col) = match c.status {
        CheckStatus::Ok => ("OK  ", Colour::Green),
        CheckStatus::Warn => ("WARN", Colour::Yellow),
        CheckStatus::Fail => ("FAIL", Colour::Red),
    };
    let mut s = format!("{} {}", paint(tag, col, colour), c.what);
    if let Some(fix) = &c.fix {
        s.push_str(&format!("\n     fix: {fix}"));
    }
    s
}

fn files(sources: &Sources) -> String {
    let mut read = Vec::new();
    for p in [Some(&sources.system), sources.user.as_ref()]
        .into_iter()
        .flatten()
        .chain(sources.explicit.as_ref())
    {
        if p.exists() {
            read.push(p.display().to_string());
        }
    }
    if read.is_empty() {
        "built-in defaults, no config file".into()
    } else {
        format!("files: {}", read.join(", "))
    }
}

/// Checks on the configuration's content.
fn config_checks(cfg: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    if cfg.allowed_origins.is_empty() {
        checks.push(warn(
            "no allowed_origins: web pages cannot connect (only native clients and the status page)".into(),
            &format!(
                "add allowed_origins = [\"https://your-practice-software.example\"] to {}, or pass --allow-origin",
                crate::config::system_config().display()
            ),
        ));
    } else {
        checks.push(ok(format!(
            "allowed origins: {}",
            cfg.allowed_origins.join(", ")
        )));
    }
    if !cfg.pcsc.enabled && !cfg.nfc.enabled {
        checks.push(warn(
            "both PC/SC and NFC are disabled: `run` will serve no reader".into(),
            "set pcsc.enabled = true or nfc.enabled = true (or try `vitale-bridge demo`)",
        ));
    }
    checks
}

/// Is the configured port free, or already held by a vitale-bridge?
fn port_check(cfg: &Config) -> Check {
    let port = cfg.listen.port();
    if port == 0 {
        return ok("port 0: a free port is picked at start".into());
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(addr) {
        Ok(_) => ok(format!("port {port} is free on 127.0.0.1")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if get(addr, "/health").is_some_and(|h| h.contains("\"status\"")) {
                ok(format!(
                    "a vitale-bridge daemon is already serving on 127.0.0.1:{port}"
                ))
            } else {
                fail(
                    format!("port {port} on 127.0.0.1 is used by another program"),
                    "stop that program, or choose another port: listen = \"127.0.0.1:PORT\" or --listen",
                )
            }
        }
        Err(e) => fail(
            format!("cannot bind 127.0.0.1:{port}: {e}"),
            "choose another port: listen = \"127.0.0.1:PORT\" or --listen",
        ),
    }
}

/// When a daemon is serving on the configured port: did it see connections closed
/// before a byte lately (its `/diagnostics`)? That is what a browser's Local Network
/// Access block looks like from the daemon's side; the page itself only sees 1006.
fn silent_check(cfg: &Config) -> Option<Check> {
    let port = cfg.listen.port();
    if port == 0 {
        return None;
    }
    let raw = get(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "/diagnostics",
    )?;
    let body = raw.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let s = v.get("silentConnections")?;
    let total = s.get("total")?.as_u64()?;
    if s.get("recent")?.as_bool()? {
        let ago = s
            .get("lastSecondsAgo")
            .and_then(|a| a.as_u64())
            .unwrap_or(0);
        Some(warn(
            format!(
                "{total} connection(s) closed before sending anything, the last {ago} s ago: a browser's Local Network Access check blocking a web page, or a port scan"
            ),
            "if the practice software cannot connect, pre-approve its origin in the browser: policy LocalNetworkAccessAllowedForUrls (Chrome, Edge, Chromium; docs/integration.md)",
        ))
    } else {
        Some(ok(format!(
            "no connection closed before sending anything lately ({total} since start): no sign of a browser blocking pages"
        )))
    }
}

/// `GET path` with short timeouts; the raw response when something answers.
fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    let port = addr.port();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut body);
    Some(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_status_and_fix() {
        let c = warn("no origins".into(), "add one");
        assert_eq!(line(&c, false), "WARN no origins\n     fix: add one");
        assert_eq!(line(&ok("fine".into()), false), "OK   fine");
    }

    #[test]
    fn missing_origins_warn() {
        let checks = config_checks(&Config::default());
        assert!(
            checks
                .iter()
                .any(|c| c.status == CheckStatus::Warn && c.what.contains("allowed_origins"))
        );
    }

    #[test]
    fn busy_port_is_reported() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let cfg = Config {
            listen: crate::config::Listen(l.local_addr().expect("addr")),
            ..Config::default()
        };
        // Nothing answers HTTP on it: another program.
        let c = port_check(&cfg);
        assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
        drop(l);
        assert_eq!(port_check(&cfg).status, CheckStatus::Ok);
    }
}
