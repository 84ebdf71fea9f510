//! Chromium (Debian's `chromium`) under Local Network Access, the way clinics run it:
//! the practice software on a public `https://` site (203.0.113.10 in a network
//! namespace of the test's own), the real demo daemon on that namespace's 127.0.0.1,
//! and the browser's permission, admin policies, iframes and plain http. The rig:
//! `tests/support/lna.rs`. What these tests showed is written up per browser in
//! docs/integration.md.

mod support;

use serde_json::json;
use support::lna::{APP_HOST, PORTAL_HOST, PublicRig, allow_policies, grant, settled};
use support::screen::{Xvfb, screenshot_path};

const HINT: &str = "a browser's Local Network Access check, or a port scan";

fn origin() -> String {
    format!("https://{APP_HOST}")
}

#[tokio::test]
async fn a_public_https_page_with_nothing_configured_is_blocked_and_the_daemon_notices() {
    let rig = PublicRig::start(300);
    let mut browser = rig.chromium(None, None).await;
    browser.navigate(&rig.app_url("https")).await;
    let t = settled(&mut browser).await;
    assert_eq!(
        t["secure"], true,
        "https with the test CA is a secure context"
    );
    assert_eq!(
        t["query"]["loopback-network"], "prompt",
        "before the attempt"
    );
    assert_eq!(t["connected"], false);
    // Headless Chromium has no prompt UI: it answers the permission request with a
    // denial, and the state stays denied for the session. The client reports the
    // prompt it found before connecting, then the denial the attempt ran into.
    assert_eq!(
        t["states"],
        json!(["needs-permission", "blocked-by-browser"])
    );
    assert_eq!(t["queryAfter"], "denied");
    assert_eq!(
        t["error"],
        json!({"code": "DISCONNECTED", "permission": "blocked-by-browser", "retriable": false}),
        "the client says the browser blocked it"
    );
    let raw = browser
        .wait_for("window.t.raw.close", "the bare WebSocket to close")
        .await;
    assert_eq!(raw, 1006, "the page itself only sees 1006");
    assert_eq!(browser.eval("window.t.raw.opened === true").await, false);
    assert!(
        browser
            .events_text()
            .contains("ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS"),
        "the console names the LNA check; events:\n{}",
        browser.events_text()
    );
    // The daemon saw the client's and the bare socket's connections close without a
    // byte, logged the hint once, and says so on /diagnostics.
    let d = rig.wait_silent(2).await;
    assert_eq!(d["silentConnections"]["recent"], true);
    let log = rig.daemon.log();
    assert_eq!(log.matches(HINT).count(), 1, "{log}");
    assert!(!log.contains("client connected"), "{log}");
}

#[tokio::test]
async fn granting_loopback_network_lets_the_page_subscribe_and_receive_identities() {
    let rig = PublicRig::start(300);
    let mut browser = rig.chromium(None, None).await;
    grant(&mut browser, "loopback-network", &origin())
        .await
        .expect("Browser.setPermission loopback-network");
    browser.navigate(&rig.app_url("https")).await;
    let t = settled(&mut browser).await;
    assert_eq!(t["query"]["loopback-network"], "granted");
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["permission"], "allowed");
    browser
        .wait_for("window.t.identities > 0", "identity.read")
        .await;
    assert_eq!(browser.eval("window.t.raw.opened").await, true);
    assert!(rig.daemon.log().contains("client connected"));
    assert_eq!(rig.diagnostics().await["silentConnections"]["total"], 0);
}

#[tokio::test]
async fn granting_only_local_network_does_not_unblock_a_loopback_connection() {
    let rig = PublicRig::start(300);
    let mut browser = rig.chromium(None, None).await;
    grant(&mut browser, "local-network", &origin())
        .await
        .expect("Browser.setPermission local-network");
    browser.navigate(&rig.app_url("https")).await;
    let t = settled(&mut browser).await;
    assert_eq!(t["query"]["local-network"], "granted");
    assert_eq!(t["query"]["loopback-network"], "prompt");
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(
        t["states"],
        json!(["needs-permission", "blocked-by-browser"])
    );
}

async fn with_policy(policy: serde_json::Value) -> (PublicRig, serde_json::Value) {
    let rig = PublicRig::start(300);
    let mut browser = rig.chromium(Some(policy), None).await;
    browser.navigate(&rig.app_url("https")).await;
    let t = settled(&mut browser).await;
    if t["connected"] == true {
        browser
            .wait_for("window.t.identities > 0", "identity.read")
            .await;
    }
    drop(browser);
    (rig, t)
}

#[tokio::test]
async fn policy_local_network_access_allowed_for_urls_works_without_a_prompt() {
    let (rig, t) = with_policy(json!({"LocalNetworkAccessAllowedForUrls": [origin()]})).await;
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["permission"], "allowed");
    assert_eq!(t["query"]["loopback-network"], "granted");
    assert!(rig.daemon.log().contains("client connected"));
}

#[tokio::test]
async fn policy_loopback_network_allowed_for_urls_works_without_a_prompt() {
    let (rig, t) = with_policy(json!({"LoopbackNetworkAllowedForUrls": [origin()]})).await;
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["permission"], "allowed");
    assert_eq!(t["query"]["loopback-network"], "granted");
    assert!(rig.daemon.log().contains("client connected"));
}

#[tokio::test]
async fn policy_local_network_allowed_for_urls_does_not_cover_loopback() {
    let (rig, t) = with_policy(json!({"LocalNetworkAllowedForUrls": [origin()]})).await;
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(t["query"]["loopback-network"], "prompt");
    assert_eq!(
        t["states"],
        json!(["needs-permission", "blocked-by-browser"])
    );
    rig.wait_silent(1).await;
    assert!(!rig.daemon.log().contains("client connected"));
}

#[tokio::test]
async fn plain_http_is_blocked_whatever_the_allow_lists_say() {
    let http = format!("http://{APP_HOST}");
    let mut policy = allow_policies(&http);
    // The https origin too, so nothing but the scheme differs.
    for key in [
        "LocalNetworkAccessAllowedForUrls",
        "LoopbackNetworkAllowedForUrls",
    ] {
        policy[key]
            .as_array_mut()
            .expect("list")
            .push(json!(origin()));
    }
    let rig = PublicRig::start(300);
    let mut browser = rig.chromium(Some(policy), None).await;
    let refused = grant(&mut browser, "loopback-network", &http).await;
    assert!(
        refused.is_err(),
        "Chromium grants no LNA permission to an insecure origin: {refused:?}"
    );
    browser.navigate(&rig.app_url("http")).await;
    let t = settled(&mut browser).await;
    assert_eq!(t["secure"], false);
    assert_eq!(t["query"]["loopback-network"], "denied");
    assert_eq!(t["states"], json!(["blocked-by-browser"]));
    assert_eq!(
        t["error"],
        json!({"code": "DISCONNECTED", "permission": "blocked-by-browser", "retriable": false}),
        "{t}"
    );
    rig.wait_silent(1).await;
    assert!(!rig.daemon.log().contains("client connected"));
}

/// The portal frames the practice software. Chromium asks about the top-level site:
/// the admin policy must name the portal's origin, and the frame gets the permission
/// only when the iframe delegates it. (A DevTools grant is not used here: it bypasses
/// the iframe's permissions policy, which no user's "Allow" does.)
async fn framed(policy_for: &str, allow: Option<&str>) -> serde_json::Value {
    let rig = PublicRig::start(300);
    let policy = json!({"LocalNetworkAccessAllowedForUrls": [policy_for]});
    let mut browser = rig.chromium(Some(policy), None).await;
    browser.navigate(&rig.portal_url(allow)).await;
    browser
        .wait_for(
            "window.frameT && (window.frameT.connected || window.frameT.queryAfter) && window.frameT",
            "the framed client to connect or fail",
        )
        .await
}

fn portal() -> String {
    format!("https://{PORTAL_HOST}")
}

#[tokio::test]
async fn a_cross_origin_iframe_without_allow_is_blocked_even_with_the_portal_allowed() {
    let t = framed(&portal(), None).await;
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(t["query"]["loopback-network"], "denied", "{t}");
    assert_eq!(t["error"]["permission"], "blocked-by-browser");
}

#[tokio::test]
async fn a_cross_origin_iframe_with_allow_loopback_network_connects_when_the_portal_is_allowed() {
    let t = framed(&portal(), Some("loopback-network")).await;
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["permission"], "allowed");
    assert_eq!(t["query"]["loopback-network"], "granted");
}

#[tokio::test]
async fn allowing_only_the_framed_sites_origin_does_not_help_inside_the_portal() {
    let t = framed(&origin(), Some("loopback-network")).await;
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(
        t["query"]["loopback-network"], "prompt",
        "the portal was not allowed"
    );
}

/// Opens the page in headed Chromium and waits for the permission bubble: the page
/// draws nothing, so ink below the toolbar is the bubble. Saves a screenshot of it.
async fn headed_prompt(rig: &PublicRig, x: &Xvfb, shot_name: &str) -> support::browser::Browser {
    let mut browser = rig.chromium(None, Some(&x.display)).await;
    browser.navigate(&rig.app_url("https")).await;
    browser
        .wait_for(
            "window.t && window.t.loaded && window.t.states[0] === 'needs-permission'",
            "the client to ask and connect",
        )
        .await;
    let deadline = std::time::Instant::now() + support::WAIT;
    let shot = loop {
        let shot = x.grab();
        if shot.has_ink(20, 100, 1040, 880) {
            break shot;
        }
        assert!(std::time::Instant::now() < deadline, "no prompt appeared");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    shot.save(&screenshot_path(shot_name));
    let t = browser.eval("window.t").await;
    assert_eq!(t["connected"], false, "waiting for the answer: {t}");
    assert_eq!(
        t["error"],
        json!(null),
        "a headed browser holds the connection: {t}"
    );
    browser
}

/// The receptionist's view: headed Chromium under Xvfb shows the prompt ("… wants
/// to / Access other apps and services on this device / Block / Allow"); the test
/// takes a screenshot of it (`target/lna-screenshots/`), accepts it from the keyboard
/// (Alt+Shift+A focuses the bubble on "Block", Tab moves to "Allow", Return), and the
/// pending connection then opens.
#[tokio::test]
async fn headed_chromium_shows_the_prompt_and_allowing_it_connects_the_waiting_page() {
    let rig = PublicRig::start(300);
    let x = Xvfb::start(&rig.netns.exec_prefix());
    let mut browser = headed_prompt(&rig, &x, "chromium-lna-prompt.png").await;
    x.keys(&["alt+shift+a"]);
    x.keys(&["Tab"]);
    x.keys(&["Return"]);
    let t = settled(&mut browser).await;
    assert_eq!(t["connected"], true, "{t}");
    assert_eq!(t["states"], json!(["needs-permission", "allowed"]));
    browser
        .wait_for("window.t.identities > 0", "identity.read")
        .await;
    assert_eq!(
        browser
            .eval("navigator.permissions.query({name: 'loopback-network'}).then(s => s.state)")
            .await,
        "granted",
        "the choice is remembered for the site"
    );
    x.screenshot(&screenshot_path("chromium-lna-after-allow.png"));
}

/// The same prompt answered "Block": the waiting connection fails and the client says
/// the browser blocks it.
#[tokio::test]
async fn headed_chromium_prompt_answered_block_is_blocked_by_browser() {
    let rig = PublicRig::start(300);
    let x = Xvfb::start(&rig.netns.exec_prefix());
    let mut browser = headed_prompt(&rig, &x, "chromium-lna-prompt-block.png").await;
    x.keys(&["alt+shift+a"]);
    x.keys(&["Return"]);
    let t = settled(&mut browser).await;
    assert_eq!(t["connected"], false, "{t}");
    assert_eq!(
        t["states"],
        json!(["needs-permission", "blocked-by-browser"])
    );
    assert_eq!(t["queryAfter"], "denied");
    assert_eq!(t["error"]["permission"], "blocked-by-browser");
}
