//! `vitale-bridge read` and `readers` with the real binary (demo readers: no hardware).
mod support;

use std::process::{Command, Stdio};

fn run(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(args)
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("run vitale-bridge")
}

#[test]
fn read_json_prints_the_identity_and_plain_progress() {
    let out = run(&[
        "read",
        "--demo",
        "--json",
        "--reader",
        "sim:0",
        "--demo-interval-ms",
        "50",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let identity: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON identity");
    let want = vitale_bridge::sim::card_model::CardDescription::demo_family();
    assert_eq!(identity["reader"], "sim:0");
    assert_eq!(
        identity["environment"], "demo",
        "simulated readers say demo"
    );
    assert_eq!(
        identity["beneficiaries"][0]["surname"],
        want.beneficiaries[0].surname.as_str()
    );
    // Not a TTY: one plain line per step, no escape codes.
    assert!(stderr.contains("reading sim:0: step 1/"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[test]
fn read_summary_names_each_beneficiary() {
    let out = run(&[
        "read",
        "--demo",
        "--reader",
        "sim:1",
        "--demo-interval-ms",
        "50",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("apcv via sim:1"), "{text}");
    assert!(text.contains("#0 ") && text.contains("#1 "), "{text}");
}

#[test]
fn read_times_out_with_exit_1() {
    let out = run(&["read", "--no-pcsc", "--no-nfc", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no card or phone read within 1 s"));
}

#[test]
fn readers_with_everything_off_exits_0() {
    let out = run(&["readers", "--no-pcsc", "--no-nfc"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
