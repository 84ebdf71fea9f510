//! Event delivery over a real WebSocket: `subscribe` snapshot then a gapless, ordered
//! `seq` while events are published concurrently, and the status page's redacted view
//! (product.md §5).
mod support;
mod ws_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use vitale_bridge::card::CardType;
use vitale_bridge::protocol::ReaderKind;
use vitale_bridge::server::ServerConfig;
use vitale_bridge::transport::Update;
use ws_harness::{Server, TestBackend, assert_no_secrets, cfg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_gapless_ordered_seq_under_concurrent_publishing() {
    const EVENTS: u64 = 3000;
    let server = Server::start(ServerConfig {
        // This test is about ordering, not lag: give the client room.
        queue_len: 100_000,
        ..cfg()
    })
    .await;
    server.hub.publish(Update::ReaderAdded {
        id: "sim:0".into(),
        name: "r".into(),
        kind: ReaderKind::Simulated,
        contactless: false,
        handle: None,
    });
    let mut c = support::Client::connect(&server.url()).await;
    let hub = server.hub.clone();
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    // Inserting then removing a card: exactly one event per publish.
    let publisher = std::thread::spawn(move || {
        for i in 0..EVENTS {
            if i == 10 {
                flag.store(true, Ordering::Release);
            }
            if i % 2 == 0 {
                hub.publish(Update::CardInserted {
                    reader: "sim:0".into(),
                    atr: vec![0x3B],
                    card_type: CardType::Unknown,
                });
            } else {
                hub.publish(Update::CardRemoved {
                    reader: "sim:0".into(),
                });
            }
            std::thread::yield_now();
        }
    });
    ws_harness::until("publisher running", || started.load(Ordering::Acquire)).await;
    let sub = c.call("subscribe", json!({})).await;
    let seq = sub["result"]["seq"].as_u64().expect("seq");
    let last = 1 + EVENTS;
    assert!(seq >= 11, "subscribed at {seq}");
    let reader = &sub["result"]["snapshot"]["readers"][0];
    let had_card = !reader["card"].is_null();
    let mut expected = seq + 1;
    let mut first = true;
    while expected <= last {
        let ev = c.next_event().await;
        assert_eq!(
            ev["seq"],
            expected,
            "gap or duplicate after {}",
            expected - 1
        );
        if first {
            // The first event continues from the snapshot's state.
            let want = if had_card {
                "card.removed"
            } else {
                "card.inserted"
            };
            assert_eq!(ev["type"], want, "snapshot had card: {had_card}");
            first = false;
        }
        expected += 1;
    }
    publisher.join().expect("publisher");
    assert_eq!(server.hub.seq(), last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_all_see_the_same_sequence() {
    let server = Server::start(cfg()).await;
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut c = support::Client::connect(&server.url()).await;
        assert_eq!(c.call("subscribe", json!({})).await["result"]["seq"], 0);
        clients.push(c);
    }
    for i in 0..50 {
        server.hub.publish(Update::ReaderAdded {
            id: format!("sim:{i}"),
            name: "r".into(),
            kind: ReaderKind::Simulated,
            contactless: false,
            handle: None,
        });
    }
    for c in &mut clients {
        for seq in 1..=50u64 {
            let ev = c.next_event().await;
            assert_eq!(ev["seq"], seq);
            assert_eq!(ev["reader"], format!("sim:{}", seq - 1));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_origin_is_redacted_and_cannot_touch_cards() {
    let server = Server::start(cfg()).await;
    let backend = TestBackend::spawn(&server.hub, "sim:0", CardType::Vitale2);
    let origin = server.own_origin();
    let mut page = support::Client::connect_with(&server.url(), &[("Origin", origin.as_str())])
        .await
        .expect("own origin allowed");
    let mut native = support::Client::connect(&server.url()).await;
    let mut seen = Vec::<Value>::new();

    let hello = page.call("hello", json!({})).await;
    assert!(
        !hello["result"]["capabilities"]
            .to_string()
            .contains("card.")
    );
    seen.push(hello);
    let sub = page.call("subscribe", json!({})).await;
    seen.push(sub.clone());
    assert_eq!(
        native.call("subscribe", json!({})).await["result"]["seq"],
        sub["result"]["seq"]
    );

    // A read publishes identity.read; the native client gets it in full.
    let read = native.call("card.read", json!({"reader":"sim:0"})).await;
    assert_eq!(
        read["result"]["beneficiaries"][0]["nir"],
        ws_harness::SECRETS[4],
        "the test data must really carry identities"
    );
    let full = native.wait_event("identity.read").await;
    assert_eq!(
        full["data"]["beneficiaries"][0]["surname"],
        ws_harness::SECRETS[0]
    );
    let redacted = page.wait_event("identity.read").await;
    assert_eq!(redacted["data"], json!({"redacted": true}));
    assert_eq!(redacted["seq"], full["seq"]);
    seen.push(redacted);

    // Snapshots and reader lists carry state, never the identity.
    let again = page.call("subscribe", json!({})).await;
    let reader = &again["result"]["snapshot"]["readers"][0];
    assert_eq!(reader["state"], "ready");
    assert_eq!(reader["card"]["cardType"], "vitale2");
    assert!(reader["card"].get("identity").is_none());
    seen.push(again);
    let list = page.call("readers.list", json!({})).await;
    assert!(
        list["result"]["readers"][0]["card"]
            .get("identity")
            .is_none()
    );
    seen.push(list);
    let native_list = native.call("readers.list", json!({})).await;
    assert!(native_list["result"]["readers"][0]["card"]["identity"].is_object());

    // Card operations are refused outright, before reaching the card.
    let reads_before = backend.reads.load(Ordering::SeqCst);
    for (method, params) in [
        ("card.read", json!({"reader":"sim:0"})),
        ("card.read", json!({"reader":"sim:0","fresh":true})),
        (
            "card.sign",
            json!({"reader":"sim:0","challenge":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        ),
    ] {
        let r = page.call(method, params).await;
        assert_eq!(r["error"]["code"], -32000, "{r}");
        assert_eq!(r["error"]["data"]["reason"], "NOT_PERMITTED");
        seen.push(r);
    }
    assert_eq!(backend.reads.load(Ordering::SeqCst), reads_before);
    seen.extend(page.pending.drain(..));
    assert_no_secrets(&serde_json::to_string(&seen).expect("json"));
}
