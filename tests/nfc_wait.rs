//! The chip waits for the tap (issue 12 item 5): real libnfc against the real PN532
//! emulator, which holds the endless InAutoPoll until a tap and reports it as
//! `waiting=true`. The legacy poll interval is set to a minute, so nothing here can be
//! served by a host poll.

mod nfc_support;

use std::time::{Duration, Instant};

use vitale_bridge::protocol::Reason;
use vitale_bridge::transport::ReaderRequest;

use nfc_support::backend::Rig;
use nfc_support::{Emulator, WAIT};

/// The tests count threads of this process and share the pty namespace: one at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Far above any wait below: a host poll at this interval would fail every test.
const NO_POLL: Duration = Duration::from_secs(60);

/// Descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

/// Threads of this process whose name starts with `prefix` (names are cut at 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tap_is_read_while_the_chip_waits() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let mut rig = Rig::start(&emu, NO_POLL);
    rig.until("service.changed").await;
    emu.until_waiting(true);

    for _ in 0..3 {
        let started = Instant::now();
        emu.control("tap");
        let (read, _) = rig.until("identity.read").await;
        assert_eq!(read["data"]["source"], "apcv");
        assert!(
            started.elapsed() < NO_POLL / 4,
            "tap read in {:?}",
            started.elapsed()
        );
        emu.control("remove");
        rig.until("card.removed").await;
        // Back to the chip's wait, not to a poll.
        emu.until_waiting(true);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_while_waiting_is_prompt_and_joins_the_thread() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let fds_before = open_fds();
    let mut rig = Rig::start(&emu, NO_POLL);
    rig.until("service.changed").await;
    emu.until_waiting(true);
    assert_eq!(threads_named("nfc pn532"), 1);

    let took = rig.shutdown().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The device thread is joined by shutdown; the chip's wait was cancelled.
    assert_eq!(threads_named("nfc pn532"), 0);
    emu.until_aborts(1);
    assert!(!emu.waiting());
    // libnfc's tty and abort pipe are closed with the device. (At most: the stdout
    // reader of an earlier test's emulator may close its pipe meanwhile.)
    let fds_after = open_fds();
    assert!(
        fds_after <= fds_before,
        "{fds_before} fds before, {fds_after} after"
    );
    let (removed, _) = rig.until("reader.removed").await;
    assert_eq!(removed["reader"], rig.reader.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_while_the_chip_waits_is_answered_then_the_wait_resumes() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(dir.path(), &[]);
    let mut rig = Rig::start(&emu, NO_POLL);
    rig.until("service.changed").await;

    // Through the hub, a reader without a phone is refused before its thread.
    emu.until_waiting(true);
    let err = tokio::time::timeout(WAIT, rig.hub.read_card(&rig.reader, true))
        .await
        .expect("answered")
        .expect_err("no phone");
    assert_eq!(err.reason, Reason::NoCard);

    // Straight to the device thread, as when a phone leaves while a request is on
    // its way: the chip's wait is aborted (the emulator sees the ACK), the request
    // answered, and the wait resumes.
    let (_, handle) = rig.hub.reader(&rig.reader).expect("reader");
    let handle = handle.expect("card work handle");
    for round in 1..=3 {
        emu.until_waiting(true);
        let (reply, rx) = tokio::sync::oneshot::channel();
        handle
            .send(ReaderRequest::Read { reply })
            .await
            .expect("device thread alive");
        let answer = tokio::time::timeout(WAIT, rx)
            .await
            .expect("card.read answered while the chip waits")
            .expect("reply sent");
        // The backend's answer for a request that finds no phone (the race it covers).
        let err = answer.expect_err("no phone");
        assert_eq!(err.reason, Reason::CardRemoved);
        emu.until_aborts(round);
    }

    emu.until_waiting(true);
    emu.control("tap");
    rig.until("identity.read").await;
    let identity = tokio::time::timeout(WAIT, rig.hub.read_card(&rig.reader, true))
        .await
        .expect("answered")
        .expect("fresh read");
    assert_eq!(identity.beneficiaries.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_unplugged_while_waiting_goes_down_then_up() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emu = Emulator::start(dir.path(), &[]);
    let mut rig = Rig::start(&emu, NO_POLL);
    let (up, _) = rig.until("service.changed").await;
    assert_eq!(up["data"]["state"], "up");
    emu.until_waiting(true);

    // Like a USB-serial adapter pulled out while the chip waits.
    emu.kill();
    std::fs::remove_file(&emu.link).expect("remove link");
    let (down, before) = rig.until("service.changed").await;
    assert_eq!(down["data"]["state"], "down", "{down}");
    assert_eq!(down["data"]["detail"], emu.connstring().as_str());
    assert!(
        before.iter().all(|e| e["type"] != "card.removed"),
        "{before:#?}"
    );

    let emu = Emulator::start(dir.path(), &[]);
    let (up, _) = rig.until("service.changed").await;
    assert_eq!(up["data"]["state"], "up", "{up}");
    emu.until_waiting(true);
    emu.control("tap");
    let (read, _) = rig.until("identity.read").await;
    assert_eq!(read["data"]["source"], "apcv");
}
