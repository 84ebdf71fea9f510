//! The PC/SC backend in-process against a real pcscd + vpcd and the real
//! `sim vpcd` binary: reader and card events on the hub, pcscd lost and restarted,
//! shutdown, and no thread or fd leak over 20 pcscd restarts.

mod pcsc_rig;
mod support;

use std::sync::Arc;

use pcsc_rig::{PcscRig, SLOT0, SLOT1, Sim, assert_identity_matches, card};
use serde_json::Value;
use support::WAIT;
use vitale_bridge::bus::{Hub, PcscStatus, Subscription};
use vitale_bridge::transport::pcsc::{self, PcscOptions};

struct Events {
    sub: Subscription,
}

impl Events {
    fn new(hub: &Hub) -> Events {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("VB_TEST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        Events {
            sub: hub.subscribe(4096, false),
        }
    }

    async fn next(&mut self) -> Value {
        let n = tokio::time::timeout(WAIT, self.sub.rx.recv())
            .await
            .expect("timed out waiting for an event")
            .expect("hub closed");
        let v: Value = serde_json::from_str(&n.json).expect("json");
        v["params"].clone()
    }

    async fn until(&mut self, ty: &str, reader: Option<&str>) -> Value {
        loop {
            let ev = self.next().await;
            if ev["type"] == ty && reader.is_none_or(|r| ev["reader"] == format!("pcsc:{r}")) {
                return ev;
            }
        }
    }
}

fn opts() -> PcscOptions {
    PcscOptions {
        apcv_aid: vec![0xF0, 0x76, 0x62, 0x72, 0x69, 0x64, 0x67, 0x65, 0x01],
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_cards_become_events() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let mut ev = Events::new(&hub);
    let backend = pcsc::spawn(hub.clone(), opts());
    let up = ev.until("service.changed", None).await;
    assert_eq!(up["data"]["state"], "up");
    let added = ev.until("reader.added", Some(SLOT0)).await;
    assert_eq!(added["data"]["kind"], "pcsc");
    assert_eq!(added["data"]["name"], SLOT0);
    assert_eq!(added["data"]["contactless"], false);
    ev.until("reader.added", Some(SLOT1)).await;
    assert_eq!(
        pcsc::list_readers().expect("readers"),
        vec![SLOT0.to_string(), SLOT1.to_string()]
    );

    let sim = Sim::insert(&card("family"), 1, &[]);
    let ins = ev.until("card.inserted", Some(SLOT1)).await;
    assert_eq!(ins["data"]["atr"], "3B751300004409EA9000");
    sim.remove();
    ev.until("card.removed", Some(SLOT1)).await;
    let (reader, handle) = hub.reader(&format!("pcsc:{SLOT1}")).expect("registered");
    assert!(handle.is_some());
    assert!(reader.card.is_none());
    let started = std::time::Instant::now();
    backend.shutdown();
    assert!(started.elapsed() < WAIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcscd_lost_is_reported_and_recovered_without_leaks() {
    let mut rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let mut ev = Events::new(&hub);
    let backend = pcsc::spawn(hub.clone(), opts());
    ev.until("service.changed", None).await;
    ev.until("reader.added", Some(SLOT1)).await;
    let _sim = Sim::insert(
        &card("family"),
        0,
        &[
            "--reconnect",
            "--reconnect-delay-ms",
            "50",
            "--connect-timeout-ms",
            "20000",
        ],
    );
    ev.until("card.inserted", Some(SLOT0)).await;
    let mut baseline = None;
    for round in 0..20 {
        if round % 2 == 0 {
            rig.kill_pcscd();
        } else {
            rig.stop_pcscd();
        }
        let down = ev.until("service.changed", None).await;
        assert_eq!(down["data"]["state"], "down", "round {round}");
        ev.until("reader.removed", Some(SLOT0)).await;
        ev.until("reader.removed", Some(SLOT1)).await;
        assert_eq!(hub.status().pcsc, PcscStatus::Down);
        assert!(hub.readers(false).is_empty());
        rig.start_pcscd();
        let up = ev.until("service.changed", None).await;
        assert_eq!(up["data"]["state"], "up", "round {round}");
        ev.until("reader.added", Some(SLOT0)).await;
        let ins = ev.until("card.inserted", Some(SLOT0)).await;
        if ins["data"]["cardType"] == "vitale2" {
            // Let the read that follows the insertion finish before counting.
            loop {
                let e = ev.next().await;
                if e["reader"] == format!("pcsc:{SLOT0}")
                    && (e["type"] == "identity.read" || e["type"] == "identity.error")
                {
                    assert_eq!(e["type"], "identity.read", "round {round}: {e}");
                    break;
                }
            }
        }
        let now = (threads(), fds());
        match baseline {
            None if round >= 1 => baseline = Some(now),
            Some((t, f)) => {
                assert!(
                    now.0 <= t + 1,
                    "round {round}: threads {} then {}",
                    t,
                    now.0
                );
                assert!(now.1 <= f + 2, "round {round}: fds {} then {}", f, now.1);
            }
            None => {}
        }
    }
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_without_pcscd_reports_down_then_up() {
    let mut rig = PcscRig::start();
    rig.stop_pcscd();
    let hub = Hub::new(PcscStatus::Up);
    let mut ev = Events::new(&hub);
    let backend = pcsc::spawn(hub.clone(), opts());
    let down = ev.until("service.changed", None).await;
    assert_eq!(down["data"]["state"], "down");
    assert!(pcsc::list_readers().is_err());
    rig.start_pcscd();
    let up = ev.until("service.changed", None).await;
    assert_eq!(up["data"]["state"], "up");
    ev.until("reader.added", Some(SLOT0)).await;
    backend.shutdown();
}

/// The outcome of the read that follows an insertion in `slot`.
async fn outcome(ev: &mut Events, slot: &str, seen: &mut Vec<Value>) -> Value {
    loop {
        let e = ev.next().await;
        seen.push(e.clone());
        if e["reader"] == format!("pcsc:{slot}")
            && (e["type"] == "identity.read" || e["type"] == "identity.error")
        {
            return e;
        }
    }
}

async fn started(hub: &Arc<Hub>) -> (Events, Box<dyn vitale_bridge::transport::Backend>) {
    let mut ev = Events::new(hub);
    let backend = pcsc::spawn(hub.clone(), opts());
    ev.until("reader.added", Some(SLOT0)).await;
    ev.until("reader.added", Some(SLOT1)).await;
    (ev, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_card_file_reads_exactly_through_pcscd() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    for name in ["family", "single", "pointer-map", "large"] {
        let file = card(name);
        let sim = Sim::insert(&file, 0, &[]);
        let ins = ev.until("card.inserted", Some(SLOT0)).await;
        assert_eq!(ins["data"]["cardType"], "vitale2", "{name}");
        let mut seen = Vec::new();
        let e = outcome(&mut ev, SLOT0, &mut seen).await;
        assert_eq!(e["type"], "identity.read", "{name}: {e}");
        assert_identity_matches(&e["data"], &file);
        assert!(
            seen.iter().any(|e| e["type"] == "card.reading"),
            "{name}: progress"
        );
        sim.remove();
        ev.until("card.removed", Some(SLOT0)).await;
        let (reader, _) = hub.reader(&format!("pcsc:{SLOT0}")).expect("reader");
        assert!(reader.card.is_none(), "identity dropped with the card");
    }
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_pulled_at_every_apdu_index_never_gives_an_identity() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    let file = card("family");
    let mut index = 0usize;
    loop {
        assert!(index < 200, "the read never completed");
        let mut sim = Sim::insert(&file, 0, &["--pull-after", &index.to_string()]);
        let mut seen = Vec::new();
        loop {
            let e = ev.next().await;
            seen.push(e.clone());
            if e["type"] == "card.removed" && e["reader"] == format!("pcsc:{SLOT0}") {
                break;
            }
            if e["type"] == "identity.read" {
                break;
            }
        }
        let read = seen.iter().any(|e| e["type"] == "identity.read");
        if read {
            // The whole read took `index` APDUs or fewer; the card was pulled after it.
            assert!(index > 3, "a read takes more than {index} APDUs");
            assert_identity_matches(&seen.last().expect("event")["data"], &file);
            sim.remove();
            ev.until("card.removed", Some(SLOT0)).await;
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
    let mut seen = Vec::new();
    let e = outcome(&mut ev, SLOT0, &mut seen).await;
    assert_eq!(e["type"], "identity.read");
    sim.remove();
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cards_end_in_identity_error_and_the_backend_goes_on() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    for mode in [
        "endless-61",
        "bad-length",
        "deep-nesting",
        "mute",
        "protected",
    ] {
        let sim = Sim::insert(&card(&format!("hostile-{mode}")), 0, &[]);
        let ins = ev.until("card.inserted", Some(SLOT0)).await;
        // Its ATR says Carte Vitale: confirmed or not, it ends in an error.
        let mut seen = Vec::new();
        let e = outcome(&mut ev, SLOT0, &mut seen).await;
        assert_eq!(e["type"], "identity.error", "{mode}: {e}");
        eprintln!("hostile {mode}: cardType {}", ins["data"]["cardType"]);
        sim.remove();
        loop {
            let e = ev.next().await;
            assert_ne!(e["type"], "identity.read", "{mode}");
            if e["type"] == "card.removed" {
                break;
            }
        }
    }
    let file = card("family");
    let sim = Sim::insert(&file, 0, &["--hostile", "deep-nesting"]);
    let mut seen = Vec::new();
    let e = outcome(&mut ev, SLOT0, &mut seen).await;
    assert_eq!(e["type"], "identity.error", "{e}");
    assert_eq!(e["data"]["reason"], "CARD_UNSUPPORTED", "{e}");
    sim.remove();
    ev.until("card.removed", Some(SLOT0)).await;
    let sim = Sim::insert(&file, 0, &[]);
    let e = outcome(&mut ev, SLOT0, &mut seen).await;
    assert_eq!(e["type"], "identity.read");
    assert_identity_matches(&e["data"], &file);
    sim.remove();
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slots_vitale_and_vicc_foreign_card() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    let foreign = Sim::vicc(1);
    let ins = ev.until("card.inserted", Some(SLOT1)).await;
    assert_eq!(ins["data"]["cardType"], "unknown", "{ins}");
    let file = card("family");
    let sim = Sim::insert(&file, 0, &[]);
    let mut seen = Vec::new();
    let e = outcome(&mut ev, SLOT0, &mut seen).await;
    assert_eq!(e["type"], "identity.read");
    assert_identity_matches(&e["data"], &file);
    assert!(
        !seen
            .iter()
            .any(|e| e["reader"] == format!("pcsc:{SLOT1}") && e["type"] == "identity.error"),
        "the foreign card is left alone"
    );
    foreign.remove();
    ev.until("card.removed", Some(SLOT1)).await;
    sim.remove();
    ev.until("card.removed", Some(SLOT0)).await;
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_held_exclusively_gives_reader_busy_then_reads_once_free() {
    let _rig = PcscRig::start();
    let file = card("family");
    let _sim = Sim::insert(&file, 0, &[]);
    // Another application takes the reader exclusively before the daemon starts.
    let other = ::pcsc::Context::establish(::pcsc::Scope::User).expect("context");
    let name = std::ffi::CString::new(SLOT0).expect("name");
    let deadline = std::time::Instant::now() + WAIT;
    let held = loop {
        match other.connect(&name, ::pcsc::ShareMode::Exclusive, ::pcsc::Protocols::ANY) {
            Ok(c) => break c,
            Err(::pcsc::Error::NoSmartcard) if std::time::Instant::now() < deadline => {
                // pcscd has not noticed the card yet: wait for its state change.
                let mut rs = [::pcsc::ReaderState::new(
                    name.clone(),
                    ::pcsc::State::UNAWARE,
                )];
                let _ = other.get_status_change(WAIT, &mut rs);
                if !rs[0].event_state().contains(::pcsc::State::PRESENT) {
                    rs[0].sync_current_state();
                    let _ = other.get_status_change(WAIT, &mut rs);
                }
            }
            Err(e) => panic!("exclusive connect: {e}"),
        }
    };
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    let ins = ev.until("card.inserted", Some(SLOT0)).await;
    assert_eq!(ins["data"]["cardType"], "vitale2", "ATR hint while busy");
    let err = ev.until("identity.error", Some(SLOT0)).await;
    assert_eq!(err["data"]["reason"], "READER_BUSY", "{err}");
    let id = format!("pcsc:{SLOT0}");
    let r = hub.read_card(&id, true).await;
    assert_eq!(r.expect_err("still held").reason.as_str(), "READER_BUSY");
    drop(held);
    let identity = hub.read_card(&id, true).await.expect("read once free");
    assert_identity_matches(&serde_json::to_value(&*identity).expect("json"), &file);
    backend.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_reset_by_another_application_is_reconnected_and_read_afresh() {
    let _rig = PcscRig::start();
    let hub = Hub::new(PcscStatus::Down);
    let (mut ev, backend) = started(&hub).await;
    let file = card("family");
    let _sim = Sim::insert(&file, 0, &[]);
    let mut seen = Vec::new();
    assert_eq!(
        outcome(&mut ev, SLOT0, &mut seen).await["type"],
        "identity.read"
    );
    // Another application resets the card under us.
    let other = ::pcsc::Context::establish(::pcsc::Scope::User).expect("context");
    let name = std::ffi::CString::new(SLOT0).expect("name");
    let mut card = other
        .connect(&name, ::pcsc::ShareMode::Shared, ::pcsc::Protocols::ANY)
        .expect("shared connect alongside the daemon");
    card.reconnect(
        ::pcsc::ShareMode::Shared,
        ::pcsc::Protocols::ANY,
        ::pcsc::Disposition::ResetCard,
    )
    .expect("reset");
    let id = format!("pcsc:{SLOT0}");
    let identity = hub.read_card(&id, true).await.expect("read after reset");
    assert_identity_matches(&serde_json::to_value(&*identity).expect("json"), &file);
    backend.shutdown();
}
