//! Headless Chromium on the daemon's own status page `/`: it renders the readers and
//! live event types (service states, version) and keeps updating. Identities:
//! `browser_status_identity.rs`.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use support::browser::open_status_page;
use support::{Daemon, WAIT};

#[tokio::test]
async fn status_page_renders_readers_and_updates_live() {
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "300",
    ]);
    let mut browser = open_status_page(daemon.port).await;
    let services = browser
        .wait_for(
            "document.getElementById('services').innerText.includes('PC/SC') && \
             document.getElementById('services').innerText",
            "the services table",
        )
        .await;
    assert!(
        services.as_str().expect("text").contains("disabled"),
        "{services}"
    );

    // It keeps updating: new event rows arrive and the readers' states change.
    let mut states = BTreeSet::new();
    let mut first_seq = None;
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = browser
            .eval(
                "({events: [...document.querySelectorAll('#events tr')].map(r => [r.children[0].textContent, r.children[2].textContent]), \
                  state: [...document.querySelectorAll('#readers tr')] \
                     .filter(r => r.textContent.includes('sim:0')).map(r => r.children[2].textContent)[0]})",
            )
            .await;
        if let Some(s) = snapshot["state"].as_str() {
            states.insert(s.to_string());
        }
        let events = snapshot["events"].as_array().expect("events").clone();
        let types: BTreeSet<&str> = events.iter().filter_map(|e| e[1].as_str()).collect();
        let top: Option<u64> = events
            .first()
            .and_then(|e| e[0].as_str())
            .and_then(|s| s.parse().ok());
        if first_seq.is_none() {
            first_seq = top;
        }
        let advanced = matches!((first_seq, top), (Some(a), Some(b)) if b >= a + 3);
        if types.contains("card.inserted")
            && types.contains("card.removed")
            && states.len() >= 2
            && advanced
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "status page did not update: events {types:?}, states {states:?}; console:\n{}",
            browser.console().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
