//! Headless Chromium on the daemon's own status page `/` while the demo's virtual
//! card and phone are read: the page never receives nor shows an identity.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{Value, json};
use support::browser::open_status_page;
use support::{Client, Daemon, WAIT};

/// Every string value of an identity (names, dates, NIR, INS, context).
fn identity_strings(identity: &Value, out: &mut Vec<String>) {
    match identity {
        Value::String(s) if s.len() >= 4 => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| identity_strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| identity_strings(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn status_page_never_receives_nor_shows_an_identity() {
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "300",
    ]);
    // What the demo card and phone carry, as a native client sees it.
    let mut native = Client::connect(&daemon.url()).await;
    native.call("subscribe", json!({})).await;
    let mut secrets = Vec::new();
    let mut readers_read = BTreeSet::new();
    while readers_read.len() < 2 {
        let ev = native.wait_event("identity.read").await;
        identity_strings(&ev["data"]["beneficiaries"], &mut secrets);
        identity_strings(&ev["data"]["apcv"], &mut secrets);
        readers_read.insert(ev["reader"].as_str().expect("reader").to_string());
    }
    secrets.retain(|s| !s.starts_with("1.2.250"));
    assert!(secrets.len() >= 4, "demo identities have names and NIRs");

    let mut browser = open_status_page(daemon.port).await;

    // It keeps updating: the event table gains identity.read and card.removed rows
    // and the card reader's state changes over time.
    let mut states = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = browser
            .eval(
                "({events: [...document.querySelectorAll('#events tr')].map(r => r.children[2].textContent), \
                  state: [...document.querySelectorAll('#readers tr')] \
                     .filter(r => r.textContent.includes('sim:0')).map(r => r.children[2].textContent)[0]})",
            )
            .await;
        if let Some(s) = snapshot["state"].as_str() {
            states.insert(s.to_string());
        }
        let events: Vec<&str> = snapshot["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if events.contains(&"identity.read")
            && events.contains(&"card.removed")
            && events.contains(&"card.inserted")
            && states.len() >= 2
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status page did not update: events {events:?}, states {states:?}; console:\n{}",
            browser.console().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Never an identity: not in the DOM, not in any frame the page received.
    let html = browser
        .eval("document.documentElement.outerHTML")
        .await
        .as_str()
        .expect("html")
        .to_string();
    let frames = browser.ws_frames_received();
    assert!(
        frames.iter().any(|f| f.contains("\"identity.read\"")),
        "the page received identity.read events"
    );
    for f in frames.iter().filter(|f| f.contains("\"identity.read\"")) {
        assert!(f.contains(r#""data":{"redacted":true}"#), "redacted: {f}");
    }
    for s in &secrets {
        assert!(
            !html.contains(s.as_str()),
            "status page shows identity data"
        );
        assert!(
            !frames.iter().any(|f| f.contains(s.as_str())),
            "identity data reached the status page"
        );
    }
}
