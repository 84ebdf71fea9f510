//! Browser figures under Local Network Access, on the public-origin rig of the
//! browser tests (tests/support/lna.rs): with the admin policy, navigation start →
//! client connected (hello + subscribe) and → first `identity.read`; with nothing
//! configured, navigation start → the client's connect() rejected, and the bare
//! WebSocket's constructor → close. Medians of 10 fresh browsers each. Run with
//! `scripts/bench-browsers` (`cargo bench --bench browsers`, as root); under
//! `cargo test` (no `--bench` argument) one run of each as a smoke test. Chromium
//! and Firefox ESR.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use serde_json::{Value, json};
use support::lna::{APP_HOST, PublicRig, settled};

/// The demo inserts a card this often; the first identity waits for its cycle.
const DEMO_INTERVAL_MS: u32 = 200;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(t: &Value, key: &str) -> f64 {
    t[key].as_f64().unwrap_or_else(|| panic!("no {key} in {t}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let runs = if bench { 10 } else { 1 };
    let rig = PublicRig::start(DEMO_INTERVAL_MS);
    let policy = json!({"LocalNetworkAccessAllowedForUrls": [format!("https://{APP_HOST}")]});
    let version = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();

    let (mut connected, mut identity, mut failed, mut raw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let mut b = rig.chromium(Some(policy.clone()), None).await;
        b.navigate(&rig.app_url("https")).await;
        let t = b
            .wait_for(
                "window.t && window.t.firstIdentityMs !== null && window.t",
                "identity.read",
            )
            .await;
        connected.push(ms(&t, "connectedMs"));
        identity.push(ms(&t, "firstIdentityMs"));

        let mut b = rig.chromium(None, None).await;
        b.navigate(&rig.app_url("https")).await;
        let t = settled(&mut b).await;
        assert_eq!(t["connected"], false, "{t}");
        failed.push(ms(&t, "failedMs"));
        let r = b
            .wait_for("window.t.raw.close && window.t.raw", "raw close")
            .await;
        raw.push(ms(&r, "ms"));
    }
    println!("browser: {version}");
    println!("runs: {runs} fresh browsers per figure, demo interval {DEMO_INTERVAL_MS} ms");
    println!(
        "policy, navigation start -> connected (hello + subscribe): median {:.0} ms",
        median(connected)
    );
    println!(
        "policy, navigation start -> first identity.read: median {:.0} ms",
        median(identity)
    );
    println!(
        "nothing configured, navigation start -> connect() rejected: median {:.0} ms",
        median(failed)
    );
    println!(
        "nothing configured, new WebSocket -> close 1006: median {:.1} ms",
        median(raw)
    );

    // Firefox 153 does not gate WebSockets to 127.0.0.1: nothing to configure, and
    // nothing blocks (with its WebSocket checks switched on it waits for a prompt).
    let (mut connected, mut identity) = (vec![], vec![]);
    let mut version = String::new();
    for _ in 0..runs {
        let mut ff = rig.firefox(None, &[]).await;
        version = ff.version.clone();
        ff.navigate(&rig.app_url("https")).await;
        let t = ff
            .wait_for(
                "window.t && window.t.firstIdentityMs !== null && window.t",
                "identity.read",
            )
            .await;
        connected.push(ms(&t, "connectedMs"));
        identity.push(ms(&t, "firstIdentityMs"));
    }
    println!("browser: Firefox ESR {version}");
    println!(
        "no policy needed, navigation start -> connected (hello + subscribe): median {:.0} ms",
        median(connected)
    );
    println!(
        "no policy needed, navigation start -> first identity.read: median {:.0} ms",
        median(identity)
    );
}
