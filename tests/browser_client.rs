//! Headless Chromium end to end: a page on an allowed origin connects to the demo
//! daemon through the JavaScript client (imported from the daemon's `/client.js`) and
//! follows the readers; a page on any other origin cannot even open the WebSocket.
//! Identities and signatures in the browser: `browser_identity.rs`.

mod support;

use std::time::Instant;

use serde_json::json;
use support::browser::{Browser, practice_site};
use support::{Daemon, WAIT};

#[tokio::test]
async fn a_page_on_an_allowed_origin_connects_and_follows_readers_through_the_js_client() {
    let site = practice_site();
    let origin = site.origin();
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "300",
        "--allow-origin",
        &origin,
    ]);
    let mut browser = Browser::launch().await;
    browser
        .navigate(&format!("{origin}/?port={}", daemon.port))
        .await;
    browser
        .wait_for(
            "window.t && window.t.loaded",
            "the client module from /client.js",
        )
        .await;
    browser
        .wait_for(
            "window.t.connected || window.t.error",
            "the client to connect",
        )
        .await;
    assert_eq!(browser.eval("window.t.connected").await, true);
    assert_eq!(
        browser.eval("window.t.readers").await,
        json!(["sim:0", "sim:1"]),
        "reader map from the subscribe snapshot"
    );
    let inserted = browser
        .wait_for(
            "window.t.inserted.length >= 2 && window.t.inserted",
            "live card.inserted events",
        )
        .await;
    let seqs: Vec<u64> = inserted
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(browser.eval("window.t.rawOpened").await, true);
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_connect() {
    let allowed = practice_site();
    let hostile = practice_site();
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "400",
        "--allow-origin",
        &allowed.origin(),
    ]);
    let mut browser = Browser::launch().await;
    browser
        .navigate(&format!("{}/?port={}", hostile.origin(), daemon.port))
        .await;
    let err = browser
        .wait_for("window.t && window.t.error", "connect() to fail")
        .await;
    assert_eq!(
        err,
        json!({"code":"DISCONNECTED","reason":"SERVICE_UNAVAILABLE","retriable":true})
    );
    let close = browser
        .wait_for("window.t.rawClose", "the raw socket to close")
        .await;
    assert_eq!(close, 1006, "a refused handshake is all the page can see");
    assert_eq!(browser.eval("window.t.rawOpened").await, false);
    assert_eq!(browser.eval("window.t.connected").await, false);
    assert_eq!(browser.eval("window.t.identities.length").await, 0);
    assert!(
        browser.ws_frames_received().is_empty(),
        "no frame reached the hostile page"
    );
    // The daemon refused both attempts at the handshake, naming the origin.
    let deadline = Instant::now() + WAIT;
    while daemon.log().matches(&hostile.origin()).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "daemon did not log the refused origin; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
