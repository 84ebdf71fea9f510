//! `vitale-bridge demo` end to end: the real binary, a real WebSocket client, the
//! virtual family Carte Vitale read by the real decoder, the virtual phone, and a
//! graceful stop.
mod support;

use serde_json::{Value, json};
use support::{Client, Daemon};
use vitale_bridge::sim::card_model::CardDescription;

fn demo() -> Daemon {
    Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "100",
    ])
}

/// The next `identity.read` on `reader`, checking the events that lead to it.
async fn read_on(client: &mut Client, reader: &str) -> Value {
    let mut inserted = false;
    let mut progress = 0;
    loop {
        let ev = client.next_event().await;
        if ev["reader"] != reader {
            continue;
        }
        match ev["type"].as_str() {
            Some("card.inserted") => {
                inserted = true;
                progress = 0;
            }
            Some("card.reading") if inserted => {
                let (step, total) = (&ev["data"]["step"], &ev["data"]["total"]);
                assert!(step.as_u64() <= total.as_u64(), "{ev}");
                progress += 1;
            }
            Some("identity.read") if inserted => {
                assert!(progress > 0, "card.reading before identity.read");
                return ev["data"].clone();
            }
            Some("identity.error") if inserted => panic!("demo read failed: {ev}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn demo_reads_the_family_card_and_the_phone() {
    let d = demo();
    let mut client = Client::connect(&d.url()).await;
    let hello = client
        .call("hello", json!({"client": "demo-test", "protocol": 1}))
        .await;
    assert_eq!(hello["result"]["server"], "vitale-bridge", "{hello}");
    let sub = client.call("subscribe", json!({})).await;
    let readers: Vec<&str> = sub["result"]["snapshot"]["readers"]
        .as_array()
        .expect("snapshot readers")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(readers, ["sim:0", "sim:1"], "{sub}");

    let card = read_on(&mut client, "sim:0").await;
    assert_eq!(card["source"], "vitale-card");
    assert_eq!(card["profile"], "vitale2-public");
    assert_eq!(card["cardType"], "vitale2");
    // A simulated reader says so, whatever its card holds: a demo patient can never
    // be stored as a real one (the same card over real PC/SC says `unknown`).
    assert_eq!(card["environment"], "demo");
    let want = CardDescription::demo_family();
    let got = card["beneficiaries"].as_array().expect("beneficiaries");
    assert_eq!(got.len(), want.beneficiaries.len(), "{card}");
    for (i, (b, w)) in got.iter().zip(&want.beneficiaries).enumerate() {
        assert_eq!(b["index"], i, "{b}");
        assert_eq!(b["surname"], w.surname.as_str(), "{b}");
        assert_eq!(b["givenName"], w.given_name.as_str(), "{b}");
        assert_eq!(b["birthDateRaw"], w.birth_date.as_str(), "{b}");
        assert_eq!(b["nir"].as_str(), w.nir.as_deref(), "{b}");
        assert!(
            b["ins"].is_null(),
            "never an INS derived from a card NIR: {b}"
        );
    }
    // What the demo promises: accents, a lunar date, a Corsica NIR with a valid key.
    assert!(
        got.iter()
            .any(|b| !b["surname"].as_str().unwrap_or("").is_ascii())
    );
    assert!(
        got.iter()
            .any(|b| b["birthDateLunar"] == true && b["birthDate"].is_null())
    );
    assert!(got.iter().any(|b| {
        let nir = b["nir"].as_str().unwrap_or("");
        matches!(nir.get(5..7), Some("2A" | "2B")) && b["nirKeyValid"] == true
    }));

    let phone = read_on(&mut client, "sim:1").await;
    assert_eq!(phone["source"], "apcv", "{phone}");
    assert_eq!(phone["profile"], "reference-v1");
    assert_eq!(phone["environment"], "demo");
    let first = &phone["beneficiaries"][0];
    assert_eq!(first["ins"]["oid"], "1.2.250.1.213.1.4.11", "{phone}");
    assert!(
        phone["apcv"]["expires"]
            .as_str()
            .is_some_and(|e| e.ends_with('Z'))
    );
}

#[tokio::test]
async fn card_read_on_a_present_demo_card_returns_the_identity() {
    let d = demo();
    let mut client = Client::connect(&d.url()).await;
    client.call("subscribe", json!({})).await;
    let event = read_on(&mut client, "sim:0").await;
    // The card stays 200 ms; a cached read answers at once.
    let res = client.call("card.read", json!({"reader": "sim:0"})).await;
    if let Some(identity) = res.get("result") {
        assert_eq!(identity["beneficiaries"], event["beneficiaries"], "{res}");
    } else {
        // The card left in between: the error says so, nothing else.
        assert_eq!(res["error"]["data"]["reason"], "CARD_REMOVED", "{res}");
    }
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut d = demo();
    let mut client = Client::connect(&d.url()).await;
    client.call("subscribe", json!({})).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = d.terminate();
        (s, d)
    });
    let close = loop {
        let msg = tokio::time::timeout(support::WAIT, client.ws.next())
            .await
            .expect("close frame in time");
        match msg {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("connection ended without a close frame: {other:?}"),
        }
    };
    let code: u16 = close.expect("close frame has a code").code.into();
    assert_eq!(code, 1001);
    let (status, d) = status.await.expect("join");
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}
