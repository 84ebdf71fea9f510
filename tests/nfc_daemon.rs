//! The real daemon binary with `--nfc pn532_uart:<link>` against the real PN532
//! emulator, over a real WebSocket: what an integrator's page sees.

mod nfc_support;
mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use nfc_support::{Emulator, assert_signed_for};
use support::{Client, Daemon};

const ORIGIN: &str = "https://app.example";

fn daemon(emu: &Emulator) -> Daemon {
    daemon_on(&emu.connstring())
}

fn daemon_on(connstring: &str) -> Daemon {
    Daemon::spawn(&[
        "run",
        "--no-pcsc",
        "--nfc",
        connstring,
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        ORIGIN,
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn tapped_phone_is_read_and_signs_for_the_page_origin_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let d = daemon(&emu);
    let reader = format!("nfc:{}", emu.connstring());
    let mut page = Client::connect_with(&d.url(), &[("Origin", ORIGIN)])
        .await
        .expect("page connects");
    let sub = page.call("subscribe", json!({})).await;
    let readers = sub["result"]["snapshot"]["readers"]
        .as_array()
        .expect("snapshot readers");
    assert!(
        readers
            .iter()
            .any(|r| r["id"] == reader.as_str() && r["kind"] == "nfc" && r["contactless"] == true),
        "{sub}"
    );

    emu.control("tap");
    let inserted = page.wait_event("card.inserted").await;
    assert_eq!(inserted["reader"], reader.as_str());
    assert_eq!(inserted["data"]["cardType"], "apcv");
    let read = page.wait_event("identity.read").await;
    assert_eq!(read["data"]["source"], "apcv");
    assert_eq!(read["data"]["profile"], "reference-v1");
    assert_eq!(read["data"]["environment"], "test");
    assert_eq!(
        read["data"]["beneficiaries"][0]["ins"]["oid"],
        "1.2.250.1.213.1.4.10"
    );

    let challenge = b"page challenge of at least 32 b!";
    let res = page
        .call(
            "card.sign",
            json!({"reader": reader, "challenge": URL_SAFE_NO_PAD.encode(challenge)}),
        )
        .await;
    assert_signed_for(&res, ORIGIN, challenge);

    emu.control("consent refuse");
    let res = page
        .call(
            "card.sign",
            json!({"reader": reader, "challenge": URL_SAFE_NO_PAD.encode(challenge)}),
        )
        .await;
    assert_eq!(res["error"]["data"]["reason"], "USER_REFUSED", "{res}");

    emu.control("remove");
    let removed = page.wait_event("card.removed").await;
    assert_eq!(removed["reader"], reader.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_device_is_listed_from_the_first_connection_on() {
    // A device node that never answers: libnfc's open waits on it, then gives up.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let tty = nix::unistd::ttyname(&pty.slave).expect("ttyname");
    let connstring = format!("pn532_uart:{}", tty.display());
    let d = daemon_on(&connstring);
    let mut client = Client::connect(&d.url()).await;
    let status = client.call("status", json!({})).await;
    let nfc = status["result"]["nfc"].as_array().expect("nfc list");
    assert_eq!(nfc.len(), 1, "{status}");
    assert_eq!(nfc[0]["connstring"], connstring.as_str(), "{status}");
    // Still opening, unless libnfc already gave up on the silent device.
    assert!(
        nfc[0]["state"] == "opening" || nfc[0]["state"] == "down",
        "{status}"
    );
    client.call("subscribe", json!({})).await;
    let status = loop {
        let status = client.call("status", json!({})).await;
        if status["result"]["nfc"][0]["state"] == "down" {
            break status;
        }
        let down = client.wait_event("service.changed").await;
        assert_eq!(down["data"]["state"], "down", "{down}");
    };
    assert_eq!(
        status["result"]["nfc"][0]["connstring"],
        connstring.as_str()
    );
    drop(pty);
}

#[tokio::test(flavor = "multi_thread")]
async fn unplugged_device_goes_down_and_comes_back_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emu = Emulator::start(dir.path(), &["--tapped"]);
    let d = daemon(&emu);
    let mut client = Client::connect(&d.url()).await;
    client.call("subscribe", json!({})).await;
    client.wait_event("identity.read").await;

    // Like a USB-serial adapter pulled out: the process dies and its device node goes.
    emu.kill();
    std::fs::remove_file(&emu.link).expect("remove link");
    let down = client.wait_event("service.changed").await;
    assert_eq!(
        down["data"],
        json!({"service":"nfc","state":"down","detail": emu.connstring()})
    );
    let status = client.call("status", json!({})).await;
    assert_eq!(status["result"]["nfc"][0]["state"], "down", "{status}");

    let emu = Emulator::start(dir.path(), &["--tapped"]);
    let up = client.wait_event("service.changed").await;
    assert_eq!(
        up["data"],
        json!({"service":"nfc","state":"up","detail": emu.connstring()})
    );
    let read = client.wait_event("identity.read").await;
    assert_eq!(read["data"]["source"], "apcv");
}
