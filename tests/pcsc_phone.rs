//! A phone in a PC/SC contactless reader (cards.md §3: "both must work"): the real
//! daemon binary against a real pcscd + vpcd, the phone played by the real
//! `vitale-bridge sim vpcd --phone` (the reference-v1 phone with the contactless ATR
//! `3B 80 80 01 01`, in a reader whose name says nothing of contactless), observed
//! over a real WebSocket.

mod nfc_support;
mod pcsc_rig;
mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use nfc_support::{assert_signed_for, phone_file};
use pcsc_rig::{PcscRig, SLOT0, Sim};
use support::{Client, Daemon};

const ORIGIN: &str = "https://app.example";

fn reader() -> String {
    format!("pcsc:{SLOT0}")
}

fn daemon() -> Daemon {
    Daemon::spawn(&[
        "run",
        "--no-nfc",
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        ORIGIN,
    ])
}

/// A page on ORIGIN, subscribed, once the vpcd slot is listed.
async fn page(d: &Daemon) -> Client {
    let mut c = Client::connect_with(&d.url(), &[("Origin", ORIGIN)])
        .await
        .expect("page connects");
    let sub = c.call("subscribe", json!({})).await;
    let listed = sub["result"]["snapshot"]["readers"]
        .as_array()
        .is_some_and(|rs| rs.iter().any(|r| r["id"] == reader().as_str()));
    if !listed {
        loop {
            let ev = c.wait_event("reader.added").await;
            if ev["reader"] == reader().as_str() {
                break;
            }
        }
    }
    c
}

/// The next event in the slot whose type is one of `types`; every event on the way is
/// kept in `seen`.
async fn next_of(c: &mut Client, types: &[&str], seen: &mut Vec<Value>) -> Value {
    loop {
        let ev = c.next_event().await;
        seen.push(ev.clone());
        if ev["reader"] == reader().as_str() && types.iter().any(|t| ev["type"] == *t) {
            return ev;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_in_a_pcsc_reader_is_read_and_signs_for_the_page_origin() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = page(&d).await;
    let sim = Sim::insert_phone(&phone_file(), 0, &[]);
    let mut seen = Vec::new();

    let inserted = next_of(&mut c, &["card.inserted"], &mut seen).await;
    assert_eq!(inserted["data"]["atr"], "3B80800101", "{inserted}");
    assert_eq!(inserted["data"]["cardType"], "apcv", "{inserted}");
    let read = next_of(&mut c, &["identity.read", "identity.error"], &mut seen).await;
    assert_eq!(read["type"], "identity.read", "{read}");
    let id = &read["data"];
    assert_eq!(id["source"], "apcv");
    assert_eq!(id["profile"], "reference-v1");
    // Read over real PC/SC: the environment comes from the phone's INS OID.
    assert_eq!(id["environment"], "test");
    let first = &id["beneficiaries"][0];
    assert_eq!(first["surname"], "TESTNOM");
    assert_eq!(first["givenName"], "Élodie");
    assert_eq!(first["nir"], "295109912611193");
    assert_eq!(first["ins"]["matricule"], "295109912611193", "{first}");
    assert_eq!(first["ins"]["oid"], "1.2.250.1.213.1.4.10");
    assert_eq!(
        id["beneficiaries"][1]["ins"]["matricule"],
        "253072B07300470"
    );
    assert!(id["apcv"]["expires"].is_string(), "{id}");

    let challenge = b"a challenge through a pcsc reader";
    let res = c
        .call(
            "card.sign",
            json!({"reader": reader(), "challenge": URL_SAFE_NO_PAD.encode(challenge)}),
        )
        .await;
    assert_signed_for(&res, ORIGIN, challenge);

    sim.remove();
    next_of(&mut c, &["card.removed"], &mut seen).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_pulled_mid_exchange_says_card_removed() {
    let _rig = PcscRig::start();
    let d = daemon();
    let mut c = page(&d).await;
    // Pulled at every APDU of detection and reading: never a partial identity, and
    // a read cut short reports the removal, not "malformed card data".
    let mut index = 0usize;
    loop {
        assert!(index < 50, "the read never completed");
        let mut sim = Sim::insert_phone(&phone_file(), 0, &["--pull-after", &index.to_string()]);
        let mut seen = Vec::new();
        let end = next_of(&mut c, &["identity.read", "card.removed"], &mut seen).await;
        if end["type"] == "identity.read" {
            assert!(index > 1, "a phone read takes more than {index} APDUs");
            sim.remove();
            next_of(&mut c, &["card.removed"], &mut seen).await;
            break;
        }
        sim.wait_exit();
        for e in seen.iter().filter(|e| e["type"] == "identity.error") {
            assert_eq!(
                e["data"]["reason"], "CARD_REMOVED",
                "pulled after {index}: {e}"
            );
        }
        index += 1;
    }
    assert!(index > 1, "the phone was never pulled mid-exchange");
}
