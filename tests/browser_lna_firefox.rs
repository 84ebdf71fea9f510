//! Firefox ESR (Debian's `firefox-esr`, headless, driven over Marionette): the JS
//! client's browser test from a loopback origin, and the public-origin cases of
//! `browser_lna_chromium.rs` that apply, on the same rig (tests/support/lna.rs) with
//! Firefox's `LocalNetworkAccess` policy in `policies.json`. These tests record what
//! Firefox 153 does (docs/integration.md): today it does not gate WebSockets to
//! 127.0.0.1 at all, even from plain http; with its WebSocket checks switched on
//! (`network.lna.websocket.enabled`, the rollout's next step) the connection waits
//! for a prompt, and the policy's `SkipDomains` lets it through.

mod support;

use serde_json::json;
use support::Daemon;
use support::browser::practice_site;
use support::firefox::{Firefox, FirefoxLaunch};
use support::lna::{APP_HOST, PublicRig};

const SETTLED: &str =
    "window.t && window.t.loaded && (window.t.connected || window.t.queryAfter) && window.t";

#[tokio::test]
async fn a_loopback_page_receives_identities_and_a_bound_signature_through_the_js_client() {
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
    let mut ff = Firefox::launch(FirefoxLaunch::default()).await;
    assert!(
        ff.version.starts_with("153."),
        "tested with Firefox ESR 153, got {}",
        ff.version
    );
    ff.navigate(&format!("{origin}/?port={}", daemon.port))
        .await;
    ff.wait_for("window.t && window.t.connected", "the client to connect")
        .await;
    assert_eq!(ff.eval("window.t.readers").await, json!(["sim:0", "sim:1"]));
    let card = ff
        .wait_for(
            "window.t.identities.find(i => i.reader === 'sim:0')",
            "identity.read from the virtual Carte Vitale",
        )
        .await;
    assert_eq!(card["source"], "vitale-card");
    assert_eq!(card["nirType"], "string");
    let read = ff
        .wait_for("window.t.read || window.t.opError", "card.read")
        .await;
    assert_eq!(read, json!({"source": "vitale-card", "same": true}));
    let sig = ff
        .wait_for("window.t.sig || window.t.opError", "card.sign")
        .await;
    assert_eq!(
        sig,
        json!({"origin": origin, "verified": true, "alg": "ES256"}),
        "bound to the page's own origin"
    );
    assert_eq!(ff.eval("window.t.rawOpened").await, true);
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_connect_from_firefox_either() {
    let allowed = practice_site();
    let hostile = practice_site();
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        &allowed.origin(),
    ]);
    let mut ff = Firefox::launch(FirefoxLaunch::default()).await;
    ff.navigate(&format!("{}/?port={}", hostile.origin(), daemon.port))
        .await;
    let err = ff
        .wait_for("window.t && window.t.error", "connect() to fail")
        .await;
    assert_eq!(
        err,
        json!({"code": "DISCONNECTED", "reason": "SERVICE_UNAVAILABLE", "retriable": true})
    );
    assert_eq!(ff.wait_for("window.t.rawClose", "raw close").await, 1006);
    assert!(daemon.log().contains("origin not in allowed_origins"));
}

#[tokio::test]
async fn firefox_153_lets_a_public_https_page_connect_without_any_prompt_or_policy() {
    let rig = PublicRig::start(300);
    let mut ff = rig.firefox(None, &[]).await;
    ff.navigate(&rig.app_url("https")).await;
    let t = ff.wait_for(SETTLED, "the client to settle").await;
    assert_eq!(t["secure"], true);
    assert_eq!(t["connected"], true, "{t}");
    // Firefox knows the permission names and says "prompt", but does not gate the
    // WebSocket: the client reports what the open socket proved.
    assert_eq!(t["query"]["loopback-network"], "prompt");
    assert_eq!(t["query"]["local-network-access"], "unknown-name");
    assert_eq!(t["states"], json!(["needs-permission", "allowed"]));
    ff.wait_for("window.t.identities > 0", "identity.read")
        .await;
    assert_eq!(rig.diagnostics().await["silentConnections"]["total"], 0);
}

#[tokio::test]
async fn firefox_153_lets_even_a_plain_http_public_page_connect() {
    let rig = PublicRig::start(300);
    let mut ff = rig.firefox(None, &[]).await;
    ff.navigate(&rig.app_url("http")).await;
    let t = ff.wait_for(SETTLED, "the client to settle").await;
    assert_eq!(t["secure"], false);
    assert_eq!(t["connected"], true, "{t}");
    assert!(
        rig.daemon
            .log()
            .contains("origin=[\"http://app.example.test\"]")
    );
}

#[tokio::test]
async fn firefox_reads_its_local_network_access_policy_from_policies_json() {
    let rig = PublicRig::start(300);
    // Disabled by policy, Firefox no longer knows the permission names at all: the
    // policy file was read. The page connects, and the client says unknown, then allowed.
    let policy = json!({"LocalNetworkAccess": {"Enabled": false}});
    let mut ff = rig.firefox(Some(policy), &[]).await;
    ff.navigate(&rig.app_url("https")).await;
    let t = ff.wait_for(SETTLED, "the client to settle").await;
    assert_eq!(t["query"]["loopback-network"], "unknown-name", "{t}");
    assert_eq!(t["connected"], true);
    assert_eq!(t["states"], json!(["allowed"]));
}

#[tokio::test]
async fn with_its_websocket_checks_on_firefox_holds_the_connection_for_a_prompt_and_the_daemon_notices()
 {
    let rig = PublicRig::start(300);
    let policy = json!({"LocalNetworkAccess": {"Enabled": true}});
    let mut ff = rig
        .firefox(
            Some(policy),
            &[("network.lna.websocket.enabled", json!(true))],
        )
        .await;
    ff.navigate(&rig.app_url("https")).await;
    ff.wait_for("window.t && window.t.loaded", "the client module")
        .await;
    // Firefox touched the daemon's port and let go without a byte...
    rig.wait_silent(1).await;
    // ...and the page is still waiting (headless Firefox has no prompt to answer).
    let t = ff.eval("window.t").await;
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(t["error"], json!(null), "{t}");
    assert_eq!(t["states"], json!(["needs-permission"]));
    assert!(!rig.daemon.log().contains("client connected"));
}

#[tokio::test]
async fn with_its_websocket_checks_on_the_policys_skip_domains_lets_the_page_through() {
    let rig = PublicRig::start(300);
    let policy = json!({"LocalNetworkAccess": {"Enabled": true, "SkipDomains": [APP_HOST]}});
    let mut ff = rig
        .firefox(
            Some(policy),
            &[("network.lna.websocket.enabled", json!(true))],
        )
        .await;
    ff.navigate(&rig.app_url("https")).await;
    let t = ff.wait_for(SETTLED, "the client to settle").await;
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["states"], json!(["needs-permission", "allowed"]));
}
