//! The PC/SC backend in-process against a real pcscd + vpcd and the real
//! `sim vpcd` binary: reader and card events on the hub, pcscd lost and restarted,
//! shutdown, and no thread or fd leak over 20 pcscd restarts.

mod pcsc_rig;
mod support;

use pcsc_rig::{PcscRig, SLOT0, SLOT1, Sim, card};
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
