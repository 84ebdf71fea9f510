//! The load tool's engine (`examples/load/core.rs`, included here as a module so the
//! test runs the tool's own code) against the debug demo daemon: every reading client
//! sees the same event seqs with none missing, and a client that stops reading is
//! closed by the daemon. Asserts counts and consistency, never latency figures, so
//! it does not depend on the machine's speed.

#[allow(dead_code)] // the tool's command line uses parts this test does not
#[path = "../examples/load/core.rs"]
mod load_core;

use std::time::Duration;

use load_core::{
    DemoDaemon, DemoSpec, Options, ProcSample, SlowOutcome, SoakSample, parse_duration, run,
    soak_verdict,
};

const ORIGIN: &str = "https://practice.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_see_the_same_seqs_and_a_stalled_client_is_closed() {
    let daemon = DemoDaemon::spawn(&DemoSpec {
        bin: env!("CARGO_BIN_EXE_vitale-bridge").into(),
        interval_ms: 20,
        max_clients: 40,
        queue_len: Some(64),
        // Pings every second: a client that does not read misses two pongs and is
        // closed at the third ping, within the run (loopback's multi-megabyte socket
        // buffers would take minutes to fill the queue at demo rates).
        ping_interval_ms: Some(1000),
        origin: ORIGIN.into(),
    })
    .expect("start the demo daemon");
    let mut report = run(Options {
        url: daemon.url.clone(),
        origin: Some(ORIGIN.into()),
        clients: 20,
        slow: 1,
        // Three pings (the close) plus slack for a loaded machine.
        duration: Duration::from_secs(6),
        pid: Some(daemon.pid()),
        sample_every: None,
        keep_receipts: true,
        monitor: true,
        record: 0,
    })
    .await
    .expect("load run");
    let log = daemon.log();

    assert_eq!(report.connected, 20, "{report:#?}");
    assert!(
        report.events >= 10,
        "the demo should emit events every 20 ms: {report:#?}"
    );
    assert!(
        report.fast_ended.is_empty(),
        "reading clients ended: {:?}\n{log}",
        report.fast_ended
    );
    assert_eq!(report.clients_bad_start, 0, "{report:#?}");
    assert_eq!(report.missing, 0, "{report:#?}");
    assert_eq!(report.out_of_order, 0, "{report:#?}");
    assert_eq!(report.clients_behind, 0, "{report:#?}");
    assert!(report.consistent, "{report:#?}");
    // Every receipt got both latency figures; none parsed as garbage.
    assert_eq!(report.absolute.n, report.delivered, "{report:#?}");
    assert_eq!(report.spread.n, report.delivered, "{report:#?}");

    // The daemon logged closing the stalled client with 1008, and the client, reading
    // again, found its connection over (Close frame or reset, depending on whether
    // the daemon's close handshake had timed out by then).
    report.attach_daemon_log(&log);
    assert_eq!(report.slow_outcomes.len(), 1);
    let slow = &report.slow_outcomes[0];
    assert!(
        matches!(&slow.daemon_close, Some((1008, _))),
        "the stalled client should be closed with 1008: {slow:?}\n{log}"
    );
    assert_ne!(slow.seen, SlowOutcome::Open, "{slow:?}");
    assert!(report.server_cpu_pct.is_some() && report.server_end.is_some());
    // The monitor saw every client through the daemon's `status` (the stalled one is
    // only released after the close handshake's own timeout, so no count is asserted).
    assert!(
        report.status_clients.iter().all(|c| c.1 >= 21),
        "{:?}",
        report.status_clients
    );
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(
        parse_duration("500ms").ok(),
        Some(Duration::from_millis(500))
    );
    assert_eq!(parse_duration("60s").ok(), Some(Duration::from_secs(60)));
    assert_eq!(parse_duration("30m").ok(), Some(Duration::from_secs(1800)));
    assert_eq!(parse_duration("2").ok(), Some(Duration::from_secs(2)));
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("m").is_err());
}

#[test]
fn soak_verdict_flags_growth() {
    let at = |rss_kb, fds| SoakSample {
        elapsed_s: 60.0,
        proc: ProcSample {
            rss_kb,
            fds,
            ..ProcSample::default()
        },
        delivered: 0,
    };
    let flat = soak_verdict(&[at(8000, 120), at(8500, 120)], 0.05).expect("samples");
    assert!(flat.rss_flat && flat.fds_flat, "{flat:?}");
    let leak = soak_verdict(&[at(8000, 120), at(20000, 121)], 0.05).expect("samples");
    assert!(!leak.rss_flat && !leak.fds_flat, "{leak:?}");
    assert!(soak_verdict(&[], 0.05).is_none());
}
