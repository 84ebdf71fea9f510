//! The PC/SC backend against a real pcscd + vpcd, with the real daemon binary and
//! virtual cards from the real `vitale-bridge sim vpcd` binary, observed over a real
//! WebSocket. See `tests/pcsc_rig` for the rig and how to run these tests.

mod pcsc_rig;
mod support;

use pcsc_rig::{PcscRig, SLOT0, SLOT1, Sim, assert_identity_matches, card};
use serde_json::{Value, json};
use support::{Client, Daemon};

fn reader_id(slot: &str) -> String {
    format!("pcsc:{slot}")
}

fn daemon() -> Daemon {
    Daemon::spawn(&["run", "--no-nfc", "--listen", "127.0.0.1:0"])
}

/// Subscribes and waits until `readers` are all known.
async fn subscribed(d: &Daemon, readers: &[&str]) -> Client {
    let mut c = Client::connect(&d.url()).await;
    let r = c.call("subscribe", json!({})).await;
    let mut known: Vec<String> = r["result"]["snapshot"]["readers"]
        .as_array()
        .expect("snapshot readers")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_string())
        .collect();
    while !readers.iter().all(|r| known.contains(&reader_id(r))) {
        let ev = c.wait_event("reader.added").await;
        known.push(ev["reader"].as_str().unwrap_or_default().to_string());
    }
    c
}

/// The next event of type `ty` for `reader`, failing on any identity read on the way
/// when `no_identity` is set.
async fn wait_for(c: &mut Client, ty: &str, reader: &str, seen: &mut Vec<Value>) -> Value {
    loop {
        let ev = c.next_event().await;
        seen.push(ev.clone());
        if ev["type"] == ty && ev["reader"] == reader_id(reader) {
            return ev;
        }
    }
}

/// Waits for the read's outcome (`identity.read` or `identity.error`) in `reader`.
async fn outcome(c: &mut Client, reader: &str) -> Value {
    loop {
        let ev = c.next_event().await;
        if ev["reader"] == reader_id(reader)
            && (ev["type"] == "identity.read" || ev["type"] == "identity.error")
        {
            return ev;
        }
    }
}

#[tokio::test]
async fn inserted_cards_are_read_exactly_and_removal_is_reported() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = subscribed(&d, &[SLOT0, SLOT1]).await;
    for name in ["family", "single", "pointer-map", "large"] {
        let file = card(name);
        let sim = Sim::insert(&file, 0, &[]);
        let mut seen = Vec::new();
        let ins = wait_for(&mut c, "card.inserted", SLOT0, &mut seen).await;
        assert_eq!(ins["data"]["cardType"], "vitale2", "{name}");
        assert_eq!(
            ins["data"]["atr"]
                .as_str()
                .map(|s| s.starts_with("3B751300")),
            Some(true)
        );
        let ev = outcome(&mut c, SLOT0).await;
        assert_eq!(ev["type"], "identity.read", "{name}: {ev}");
        assert_identity_matches(&ev["data"], &file);
        // The reader now holds the identity; card.read serves it from the cache.
        let r = c
            .call("card.read", json!({"reader": reader_id(SLOT0)}))
            .await;
        assert_identity_matches(&r["result"], &file);
        sim.remove();
        wait_for(&mut c, "card.removed", SLOT0, &mut seen).await;
        let r = c.call("readers.list", json!({})).await;
        let slot = r["result"]["readers"]
            .as_array()
            .expect("readers")
            .iter()
            .find(|r| r["id"] == reader_id(SLOT0))
            .cloned()
            .expect("slot 0 listed");
        assert_eq!(slot["state"], "empty");
        assert_eq!(slot["card"], Value::Null);
    }
}

#[tokio::test]
async fn a_card_pulled_at_every_apdu_index_never_gives_a_partial_identity() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = subscribed(&d, &[SLOT0]).await;
    let file = card("family");
    let mut index = 0usize;
    loop {
        assert!(index < 200, "the read never completed");
        let mut sim = Sim::insert(&file, 0, &["--pull-after", &index.to_string()]);
        let mut seen = Vec::new();
        loop {
            let e = c.next_event().await;
            seen.push(e.clone());
            if e["reader"] == reader_id(SLOT0)
                && (e["type"] == "card.removed" || e["type"] == "identity.read")
            {
                break;
            }
        }
        if let Some(read) = seen.iter().find(|e| e["type"] == "identity.read") {
            // The whole read fit in `index` APDUs: the card was pulled after it.
            assert!(index > 3, "a read takes more than {index} APDUs");
            assert_identity_matches(&read["data"], &file);
            sim.remove();
            wait_for(&mut c, "card.removed", SLOT0, &mut seen).await;
            break;
        }
        sim.wait_exit();
        for e in &seen {
            if e["type"] == "identity.error" {
                let reason = e["data"]["reason"].as_str().unwrap_or_default();
                assert!(
                    ["CARD_REMOVED", "CARD_MUTE", "CARD_UNSUPPORTED"].contains(&reason),
                    "pulled after {index}: {e}"
                );
            }
        }
        index += 1;
    }
    // The next insertion is read normally.
    let sim = Sim::insert(&file, 0, &[]);
    let ev = outcome(&mut c, SLOT0).await;
    assert_eq!(ev["type"], "identity.read");
    assert_identity_matches(&ev["data"], &file);
    sim.remove();
}

#[tokio::test]
async fn hostile_cards_end_in_a_clean_error_and_the_next_card_reads() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = subscribed(&d, &[SLOT0]).await;
    for mode in [
        "endless-61",
        "bad-length",
        "deep-nesting",
        "mute",
        "protected",
    ] {
        let sim = Sim::insert(&card(&format!("hostile-{mode}")), 0, &[]);
        let mut seen = Vec::new();
        wait_for(&mut c, "card.inserted", SLOT0, &mut seen).await;
        // Its ATR says Carte Vitale: whether detection confirms it or not, the card
        // ends in an error naming what it did, never in silence.
        let ev = outcome(&mut c, SLOT0).await;
        assert_eq!(ev["type"], "identity.error", "{mode}: {ev}");
        let reason = ev["data"]["reason"].as_str().unwrap_or_default();
        let want = if mode == "mute" {
            "CARD_MUTE"
        } else {
            "CARD_UNSUPPORTED"
        };
        assert_eq!(reason, want, "{mode}: {ev}");
        assert!(
            ev["data"]["message"].as_str().is_some_and(|m| m.len() > 10),
            "{mode}: {ev}"
        );
        // So does a read request on it.
        let res = c
            .call("card.read", json!({"reader": reader_id(SLOT0)}))
            .await;
        assert_eq!(res["error"]["data"]["reason"], want, "{mode}: {res}");
        sim.remove();
        wait_for(&mut c, "card.removed", SLOT0, &mut seen).await;
        assert!(!seen.iter().any(|e| e["type"] == "identity.read"), "{mode}");
    }
    // --hostile overrides a good card file too.
    let sim = Sim::insert(&card("family"), 0, &["--hostile", "bad-length"]);
    assert_eq!(outcome(&mut c, SLOT0).await["type"], "identity.error");
    sim.remove();
    let file = card("family");
    let sim = Sim::insert(&file, 0, &[]);
    let ev = outcome(&mut c, SLOT0).await;
    assert_eq!(ev["type"], "identity.read");
    assert_identity_matches(&ev["data"], &file);
    sim.remove();
    let status = c.call("status", json!({})).await;
    assert_eq!(status["result"]["pcsc"], "up");
}

#[tokio::test]
async fn two_slots_a_vitale_and_a_foreign_card_each_handled() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = subscribed(&d, &[SLOT0, SLOT1]).await;
    let foreign = Sim::vicc(1);
    let mut seen = Vec::new();
    let ins = wait_for(&mut c, "card.inserted", SLOT1, &mut seen).await;
    assert_eq!(ins["data"]["cardType"], "unknown", "{ins}");
    let file = card("family");
    let sim = Sim::insert(&file, 0, &[]);
    let ev = outcome(&mut c, SLOT0).await;
    assert_eq!(ev["type"], "identity.read");
    assert_identity_matches(&ev["data"], &file);
    // The foreign card is left alone: a read request says it is unsupported.
    let r = c
        .call("card.read", json!({"reader": reader_id(SLOT1)}))
        .await;
    assert_eq!(r["error"]["data"]["reason"], "CARD_UNSUPPORTED", "{r}");
    foreign.remove();
    wait_for(&mut c, "card.removed", SLOT1, &mut seen).await;
    sim.remove();
    wait_for(&mut c, "card.removed", SLOT0, &mut seen).await;
    // vicc in the slot the Vitale used: still unknown, and the Vitale reads after it.
    let foreign = Sim::vicc(0);
    let ins = wait_for(&mut c, "card.inserted", SLOT0, &mut seen).await;
    assert_eq!(ins["data"]["cardType"], "unknown");
    foreign.remove();
    wait_for(&mut c, "card.removed", SLOT0, &mut seen).await;
    let sim = Sim::insert(&file, 0, &[]);
    assert_eq!(outcome(&mut c, SLOT0).await["type"], "identity.read");
    sim.remove();
}

/// A card in slot 0 that goes back into vpcd whenever pcscd comes back.
fn reconnecting_sim(file: &std::path::Path) -> Sim {
    Sim::insert(
        file,
        0,
        &[
            "--reconnect",
            "--reconnect-delay-ms",
            "100",
            "--connect-timeout-ms",
            "20000",
        ],
    )
}

#[tokio::test]
async fn pcscd_killed_and_restarted_readers_and_card_come_back() {
    let mut rig = PcscRig::start();
    let d = daemon();
    let mut c = subscribed(&d, &[SLOT0, SLOT1]).await;
    let file = card("family");
    let _sim = reconnecting_sim(&file);
    assert_eq!(outcome(&mut c, SLOT0).await["type"], "identity.read");
    for round in 0..3 {
        rig.kill_pcscd();
        let mut seen = Vec::new();
        loop {
            let ev = c.next_event().await;
            seen.push(ev.clone());
            if ev["type"] == "service.changed" {
                assert_eq!(ev["data"]["service"], "pcsc");
                assert_eq!(ev["data"]["state"], "down", "round {round}");
                break;
            }
        }
        wait_for(&mut c, "reader.removed", SLOT0, &mut seen).await;
        assert_eq!(c.call("status", json!({})).await["result"]["pcsc"], "down");
        rig.start_pcscd();
        loop {
            let ev = c.next_event().await;
            if ev["type"] == "service.changed" {
                assert_eq!(ev["data"]["state"], "up", "round {round}");
                break;
            }
        }
        wait_for(&mut c, "reader.added", SLOT0, &mut seen).await;
        let ev = outcome(&mut c, SLOT0).await;
        assert_eq!(ev["type"], "identity.read", "round {round}: {ev}");
        assert_identity_matches(&ev["data"], &file);
    }
}

/// Collects one client's events until it has seen `reads` identity reads.
async fn record_until_reads(mut c: Client, reads: usize) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut got = 0;
    while got < reads {
        let ev = c.next_event().await;
        if ev["type"] == "identity.read" {
            got += 1;
        }
        seen.push(ev);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcscd_killed_under_client_load_every_client_gets_the_same_gapless_stream() {
    const CLIENTS: usize = 24;
    const ROUNDS: usize = 2;
    let mut rig = PcscRig::start();
    let d = daemon();
    let mut driver = subscribed(&d, &[SLOT0, SLOT1]).await;
    let mut watchers = Vec::new();
    for _ in 0..CLIENTS {
        let c = subscribed(&d, &[SLOT0, SLOT1]).await;
        watchers.push(tokio::spawn(record_until_reads(c, ROUNDS + 1)));
    }
    // A client that keeps asking for status the whole time: requests are served
    // while pcscd is gone, and none fails.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut asker = Client::connect(&d.url()).await;
    let asking = tokio::spawn(async move {
        let mut answers = 0usize;
        let mut states = std::collections::BTreeSet::new();
        // Under the per-connection rate limit (50/s), so every call gets a result.
        let mut pace = tokio::time::interval(std::time::Duration::from_millis(30));
        loop {
            pace.tick().await;
            let r = asker.call("status", json!({})).await;
            let pcsc = r["result"]["pcsc"]
                .as_str()
                .expect("status result")
                .to_string();
            states.insert(pcsc);
            answers += 1;
            if stop_rx.try_recv().is_ok() {
                return (answers, states);
            }
        }
    });
    let file = card("family");
    let _sim = reconnecting_sim(&file);
    assert_eq!(outcome(&mut driver, SLOT0).await["type"], "identity.read");
    for round in 0..ROUNDS {
        rig.kill_pcscd();
        loop {
            let ev = driver.next_event().await;
            if ev["type"] == "service.changed" && ev["data"]["state"] == "down" {
                break;
            }
        }
        rig.start_pcscd();
        let ev = outcome(&mut driver, SLOT0).await;
        assert_eq!(ev["type"], "identity.read", "round {round}: {ev}");
    }
    let _ = stop_tx.send(());
    let (answers, states) = asking.await.expect("status asker");
    assert!(answers > 0);
    assert!(
        states.contains("down"),
        "status never saw pcsc down: {states:?}"
    );

    let mut streams = Vec::new();
    for w in watchers {
        streams.push(w.await.expect("watcher"));
    }
    let first = &streams[0];
    // Gapless: seq numbers go up by one.
    for pair in first.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64(),
            pair[0]["seq"].as_u64().map(|s| s + 1),
            "gap between {} and {}",
            pair[0],
            pair[1]
        );
    }
    let downs = first
        .iter()
        .filter(|e| e["type"] == "service.changed" && e["data"]["state"] == "down")
        .count();
    assert_eq!(downs, ROUNDS);
    for ev in first.iter().filter(|e| e["type"] == "identity.read") {
        assert_identity_matches(&ev["data"], &file);
    }
    // Every client got exactly the same events.
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(s, first, "client {i} saw a different stream");
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::process::Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(args)
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .output()
        .expect("run vitale-bridge")
}

#[tokio::test]
async fn readers_read_and_doctor_work_on_pcsc() {
    let mut rig = PcscRig::start();
    let out = cli(&["readers", "--no-nfc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&reader_id(SLOT0)) && text.contains(&reader_id(SLOT1)),
        "{text}"
    );

    let file = card("family");
    let sim = Sim::insert(&file, 0, &[]);
    let out = cli(&["read", "--no-nfc", "--reader", &reader_id(SLOT0), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let identity: Value = serde_json::from_slice(&out.stdout).expect("identity JSON");
    assert_identity_matches(&identity, &file);
    sim.remove();

    let out = cli(&["doctor", "--no-nfc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pcscd is reachable"), "{text}");
    assert!(text.contains("2 PC/SC reader(s)"), "{text}");
    rig.stop_pcscd();
    let out = cli(&["doctor", "--no-nfc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pcscd is not running"), "{text}");
    assert!(
        text.contains("pcscd.socket") || text.contains("start it"),
        "{text}"
    );
}
