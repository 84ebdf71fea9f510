//! Connections closed before sending a byte (what a browser's Local Network Access
//! block looks like from the daemon's side, and what a port scan looks like): the
//! real demo daemon counts them in `/metrics`, logs one line with the hint however
//! many come in a burst, and `/diagnostics` and `doctor` say it happened recently.
//! The same with a real Chromium blocking a public page: `browser_lna_chromium.rs`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Daemon, WAIT, http_get, metric};

const HINT: &str = "a browser's Local Network Access check, or a port scan";

fn demo_with_metrics() -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("metrics.toml");
    std::fs::write(&file, "[metrics]\nenabled = true\n").expect("write config");
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--config",
        file.to_str().expect("utf-8 path"),
    ]);
    (daemon, dir)
}

async fn silent_count(port: u16) -> f64 {
    let (status, body) = http_get(port, "/metrics").await;
    assert_eq!(status, 200);
    metric(&body, "vitale_bridge_silent_connections_total")
        .unwrap_or_else(|| panic!("no silent-connection counter in:\n{body}"))
}

#[tokio::test]
async fn a_burst_of_silent_connections_is_counted_and_logged_once_with_the_hint() {
    let (daemon, _dir) = demo_with_metrics();
    assert_eq!(silent_count(daemon.port).await, 0.0);
    let (_, before) = http_get(daemon.port, "/diagnostics").await;
    let before: serde_json::Value = serde_json::from_str(&before).expect("json");
    assert_eq!(
        before,
        serde_json::json!({"silentConnections": {"total": 0, "lastSecondsAgo": null, "recent": false}})
    );
    for _ in 0..40 {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .expect("connect");
        drop(s);
    }
    let deadline = Instant::now() + WAIT;
    while silent_count(daemon.port).await < 40.0 {
        assert!(Instant::now() < deadline, "log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(silent_count(daemon.port).await, 40.0, "each counted once");
    // Requests that did send bytes (the scrapes above) are not counted.
    let log = daemon.log();
    assert_eq!(
        log.matches(HINT).count(),
        1,
        "one line for the burst, not one per connection:\n{log}"
    );
    assert!(log.contains("count=1"), "{log}");
    let (status, body) = http_get(daemon.port, "/diagnostics").await;
    assert_eq!(status, 200);
    let d: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(d["silentConnections"]["total"], 40);
    assert_eq!(d["silentConnections"]["recent"], true);
    assert!(
        d["silentConnections"]["lastSecondsAgo"]
            .as_u64()
            .expect("secs")
            < 20
    );

    // doctor, pointed at the same port, finds the running daemon and says so.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["doctor", "--no-pcsc", "--no-nfc", "--listen"])
        .arg(format!("127.0.0.1:{}", daemon.port))
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("closed before sending anything"))
        .unwrap_or_else(|| panic!("doctor did not mention it:\n{text}"));
    assert!(line.starts_with("WARN 40 connection(s)"), "{line}");
    assert!(line.contains("Local Network Access"), "{line}");
    assert!(text.contains("LocalNetworkAccessAllowedForUrls"), "{text}");
}

#[tokio::test]
async fn doctor_says_all_clear_when_nothing_was_blocked() {
    let (daemon, _dir) = demo_with_metrics();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["doctor", "--no-pcsc", "--no-nfc", "--listen"])
        .arg(format!("127.0.0.1:{}", daemon.port))
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with(
            "OK   no connection closed before sending anything lately (0 since start)"
        )),
        "{text}"
    );
    assert!(!daemon.log().contains(HINT));
}

#[tokio::test]
async fn the_status_page_says_when_connections_closed_without_a_byte() {
    let (daemon, _dir) = demo_with_metrics();
    for _ in 0..3 {
        drop(
            tokio::net::TcpStream::connect(("127.0.0.1", daemon.port))
                .await
                .expect("connect"),
        );
    }
    let deadline = Instant::now() + WAIT;
    while silent_count(daemon.port).await < 3.0 {
        assert!(Instant::now() < deadline, "log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut page = support::browser::open_status_page(daemon.port).await;
    let text = page
        .wait_for(
            "(() => { const p = document.getElementById('silent'); return !p.hidden && p.textContent })()",
            "the silent-connection notice",
        )
        .await;
    let text = text.as_str().expect("text");
    // The page shows the daemon's count: our 3, plus any socket the browser itself
    // opened speculatively and closed unused (Chromium's preconnect does, sometimes).
    let shown: f64 = text
        .split_once(" connection(s) closed before sending anything")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no count at the start of {text:?}"));
    let counted = silent_count(daemon.port).await;
    assert!(
        (3.0..=counted).contains(&shown),
        "page says {shown}, daemon counts {counted}: {text}"
    );
    assert!(text.contains("Local Network Access"), "{text}");
}
