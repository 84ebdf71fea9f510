//! Runs the JavaScript client's own test suite (`node --test clients/js/test/*.test.js`)
//! against this build's daemon binary, so `cargo test` covers the client too.

mod support;

use std::process::Command;

fn test_files(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.join("test"))
        .expect("clients/js/test")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.js"))
        .map(|n| format!("test/{n}"))
        .collect();
    files.sort();
    files
}

#[test]
fn javascript_client_tests_pass_against_the_daemon() {
    let node = support::require_tool("node", "nodejs (Node.js >= 18)");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    assert!(
        dir.join("node_modules/ws/package.json").exists(),
        "the JS client's tests need their ws devDependency: run scripts/setup (or `npm ci --prefix clients/js`)"
    );
    let out = Command::new(node)
        .current_dir(&dir)
        // TAP: the closing counts below are read from it, and Node 18 and 20 print
        // another format on a terminal.
        .args(["--test", "--test-reporter=tap"])
        .args(test_files(&dir))
        .env("VITALE_BRIDGE_BIN", env!("CARGO_BIN_EXE_vitale-bridge"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node --test failed:\n{stdout}\n{stderr}"
    );
    // Honest count: the suite ran tests and none was skipped.
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(stdout.contains("# skipped 0"), "{stdout}");
    let passed: u32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(passed >= 10, "only {passed} JS tests passed:\n{stdout}");
}
