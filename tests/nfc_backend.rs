//! The libnfc backend in-process with a real hub, against the real PN532 emulator
//! process through real libnfc (pn532_uart over a pty).

mod nfc_support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use vitale_bridge::protocol::Reason;

use nfc_support::backend::Rig;
use nfc_support::{Emulator, es256_verifies, expected_public_key};

#[tokio::test(flavor = "multi_thread")]
async fn tap_read_sign_refuse_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let mut rig = Rig::start(&emu, Duration::from_millis(50));
    let (added, _) = rig.until("reader.added").await;
    assert_eq!(added["reader"], rig.reader.as_str());
    assert_eq!(added["data"]["kind"], "nfc");
    assert_eq!(added["data"]["contactless"], true);
    let (up, _) = rig.until("service.changed").await;
    assert_eq!(up["data"]["state"], "up");
    assert_eq!(up["data"]["detail"], emu.connstring().as_str());

    emu.control("tap");
    let (inserted, _) = rig.until("card.inserted").await;
    assert_eq!(inserted["data"]["atr"], "3B80800101");
    assert_eq!(inserted["data"]["cardType"], "apcv");
    let (read, before) = rig.until("identity.read").await;
    assert!(
        before.iter().any(|e| e["type"] == "card.reading"),
        "{before:#?}"
    );
    let id = &read["data"];
    assert_eq!(id["source"], "apcv");
    assert_eq!(id["profile"], "reference-v1");
    assert_eq!(id["cardType"], "apcv");
    assert_eq!(id["environment"], "test");
    assert_eq!(id["beneficiaries"][0]["givenName"], "Élodie");
    assert_eq!(
        id["beneficiaries"][0]["ins"]["matricule"],
        "295109912611193"
    );
    assert_eq!(id["beneficiaries"][0]["ins"]["oid"], "1.2.250.1.213.1.4.10");
    assert_eq!(id["beneficiaries"][1]["birthDateLunar"], true);
    assert_eq!(id["apcv"]["expires"], "2030-12-31T23:59:59Z");
    assert!(id["apcv"]["context"].as_str().expect("context").len() > 200);

    // Signature, checked here independently of the daemon's own verification.
    let challenge = *b"an unpredictable 32-byte nonce!!";
    let origin = "https://app.example";
    let sig = rig
        .hub
        .sign(&rig.reader, origin, &challenge)
        .await
        .expect("signature");
    let public_key = URL_SAFE_NO_PAD.decode(&sig.public_key).expect("b64");
    let signature = URL_SAFE_NO_PAD.decode(&sig.signature).expect("b64");
    assert_eq!(public_key, expected_public_key());
    assert!(es256_verifies(&public_key, origin, &challenge, &signature));
    assert!(!es256_verifies(
        &public_key,
        "https://evil.example",
        &challenge,
        &signature
    ));
    assert!(!es256_verifies(
        &public_key,
        origin,
        b"another challenge, 32 bytes long",
        &signature
    ));
    let (completed, _) = rig.until("signature.completed").await;
    assert_eq!(completed["data"]["origin"], origin);
    assert_eq!(completed["data"]["verified"], true);

    emu.control("consent refuse");
    let err = rig
        .hub
        .sign(&rig.reader, origin, &challenge)
        .await
        .expect_err("refused");
    assert_eq!(err.reason, Reason::UserRefused);
    emu.control("consent accept");
    emu.control("lock on");
    let err = rig
        .hub
        .sign(&rig.reader, origin, &challenge)
        .await
        .expect_err("locked");
    assert_eq!(err.reason, Reason::CardLocked);
    emu.control("lock off");

    // A fresh read goes through the phone again.
    let identity = rig
        .hub
        .read_card(&rig.reader, true)
        .await
        .expect("fresh read");
    assert_eq!(identity.beneficiaries.len(), 2);

    emu.control("remove");
    rig.until("card.removed").await;
    let err = rig
        .hub
        .sign(&rig.reader, origin, &challenge)
        .await
        .expect_err("no phone");
    assert_eq!(err.reason, Reason::NoCard);
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_pulled_at_every_apdu_then_next_tap_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let mut rig = Rig::start(&emu, Duration::from_millis(50));
    rig.until("service.changed").await;

    emu.control("tap");
    rig.until("identity.read").await;
    let total = emu.apdus();
    assert!(total >= 4, "select, identity and GET RESPONSE: {total}");
    emu.control("remove");
    rig.until("card.removed").await;

    for n in 0..total {
        emu.control(&format!("pull-after {n}"));
        emu.control("tap");
        let (error, _) = rig.until("identity.error").await;
        assert_eq!(
            error["data"]["reason"], "CARD_REMOVED",
            "pulled after {n}: {error}"
        );
        let (_, between) = rig.until("card.removed").await;
        assert!(
            between.iter().all(|e| e["type"] != "identity.read"),
            "pulled after {n}: {between:#?}"
        );
    }
    emu.control("pull-after off");
    emu.control("tap");
    let (read, _) = rig.until("identity.read").await;
    assert_eq!(read["data"]["profile"], "reference-v1");
}

#[tokio::test(flavor = "multi_thread")]
async fn long_answers_chain_through_mi_frames() {
    // 64-byte PN532 frames: every R-APDU over 63 bytes comes back in MI-chained pieces
    // that libnfc reassembles.
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &["--max-frame", "64", "--tapped"]);
    let mut rig = Rig::start(&emu, Duration::from_millis(50));
    let (read, _) = rig.until("identity.read").await;
    assert_eq!(read["data"]["beneficiaries"][1]["givenName"], "Noé");
    let challenge = [9u8; 32];
    let sig = rig
        .hub
        .sign(&rig.reader, "native:", &challenge)
        .await
        .expect("signature");
    let public_key = URL_SAFE_NO_PAD.decode(&sig.public_key).expect("b64");
    let signature = URL_SAFE_NO_PAD.decode(&sig.signature).expect("b64");
    assert!(es256_verifies(
        &public_key,
        "native:",
        &challenge,
        &signature
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn emulator_killed_means_nfc_down_and_restart_means_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emu = Emulator::start(dir.path(), &["--tapped"]);
    let mut rig = Rig::start(&emu, Duration::from_millis(50));
    rig.until("identity.read").await;

    // Like a USB-serial adapter pulled out: the process dies and its device node goes
    // (a stale link could otherwise reach a pty another test reuses).
    emu.kill();
    std::fs::remove_file(&emu.link).expect("remove link");
    let (down, before) = rig.until("service.changed").await;
    assert_eq!(down["data"]["service"], "nfc");
    assert_eq!(down["data"]["state"], "down");
    assert_eq!(down["data"]["detail"], emu.connstring().as_str());
    assert!(
        before.iter().any(|e| e["type"] == "card.removed"),
        "{before:#?}"
    );
    let status = rig.hub.status();
    assert!(
        status
            .nfc
            .iter()
            .any(|d| d.connstring == emu.connstring() && format!("{:?}", d.state) == "Down")
    );

    let emu = Emulator::start(dir.path(), &["--tapped"]);
    let (up, _) = rig.until("service.changed").await;
    assert_eq!(up["data"]["state"], "up");
    let (read, _) = rig.until("identity.read").await;
    assert_eq!(read["data"]["source"], "apcv");
    drop(emu);
}
