//! Headless Chromium end to end with identities: a page on an allowed origin receives
//! `identity.read` from the demo daemon's virtual Carte Vitale and phone through the
//! JavaScript client, reads the cached identity, and gets a signature bound to its own
//! origin.

mod support;

use serde_json::json;
use support::Daemon;
use support::browser::{Browser, practice_site};

#[tokio::test]
async fn a_page_on_an_allowed_origin_receives_identities_through_the_js_client() {
    let site = practice_site();
    let origin = site.origin();
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "400",
        "--allow-origin",
        &origin,
    ]);
    let mut browser = Browser::launch().await;
    browser
        .navigate(&format!("{origin}/?port={}", daemon.port))
        .await;
    browser
        .wait_for("window.t && window.t.connected", "the client to connect")
        .await;
    let card = browser
        .wait_for(
            "window.t.identities.find(i => i.reader === 'sim:0')",
            "identity.read from the virtual Carte Vitale",
        )
        .await;
    assert_eq!(card["source"], "vitale-card");
    assert!(card["n"].as_u64().expect("n") >= 1);
    assert_eq!(card["nirType"], "string", "the page gets the full identity");
    let read = browser
        .wait_for("window.t.read || window.t.opError", "card.read")
        .await;
    assert_eq!(
        read,
        json!({"source":"vitale-card","same":true}),
        "cached identity"
    );
    let phone = browser
        .wait_for(
            "window.t.identities.find(i => i.reader === 'sim:1')",
            "identity.read from the virtual phone",
        )
        .await;
    assert_eq!(phone["source"], "apcv");
    let sig = browser
        .wait_for("window.t.sig || window.t.opError", "card.sign")
        .await;
    assert_eq!(
        sig,
        json!({"origin": origin, "verified": true, "alg": "ES256"}),
        "the signature is bound to the page's own origin"
    );
    assert_eq!(browser.eval("window.t.rawOpened").await, true);
}
