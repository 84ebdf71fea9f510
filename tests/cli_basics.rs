//! The real binary's command line: ready line, configuration errors and exit codes,
//! loopback-only listening, signals.
mod support;

use std::process::{Command, Output, Stdio};

use support::Daemon;

/// The binary with the machine's and the user's config files kept out.
fn vitale_bridge(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(args)
        .env("XDG_CONFIG_HOME", dir)
        .env("HOME", dir)
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.join("none.toml"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run vitale-bridge")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ready_line_on_a_free_port() {
    let d = Daemon::spawn(&["run", "--no-pcsc", "--no-nfc", "--listen", "127.0.0.1:0"]);
    assert_ne!(d.port, 0);
    // The port is really served on 127.0.0.1.
    std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("port is listening");
    // Where IPv6 loopback works on this machine, [::1] serves the same port.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        std::net::TcpStream::connect(("::1", d.port)).expect("[::1] on the same port");
    }
}

#[test]
fn unknown_config_key_exits_2_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\n[nfc]\npoll_interval = 5\n",
    )
    .expect("write");
    let out = vitale_bridge(
        dir.path(),
        &["run", "--config", file.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("poll_interval"), "names the key: {err}");
    assert!(err.contains("bad.toml"), "names the file: {err}");
    assert!(out.stdout.is_empty(), "no ready line: {out:?}");
}

#[test]
fn bad_value_in_user_config_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = dir.path().join("vitale-bridge");
    std::fs::create_dir_all(&user).expect("mkdir");
    std::fs::write(user.join("config.toml"), "max_clients = -3\n").expect("write");
    let out = vitale_bridge(dir.path(), &["demo", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("max_clients"), "{err}");
    assert!(err.contains("config.toml"), "{err}");
}

#[test]
fn system_config_is_read_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let system = dir.path().join("system.toml");
    std::fs::write(
        &system,
        "allowed_origins = [\"https://from-system.example\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["doctor", "--no-pcsc", "--no-nfc", "--listen", "127.0.0.1:0"])
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", &system)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("https://from-system.example"), "{stdout}");
    assert!(stdout.contains("listen = \"127.0.0.1:0\""), "{stdout}");
}

#[test]
fn non_loopback_listen_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:24880"] {
        let out = vitale_bridge(dir.path(), &["demo", "--listen", addr]);
        assert_eq!(out.status.code(), Some(2), "{addr}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("listen") && err.contains("loopback"), "{err}");
    }
    let file = dir.path().join("wide.toml");
    std::fs::write(&file, "listen = \"0.0.0.0:24880\"\n").expect("write");
    let out = vitale_bridge(
        dir.path(),
        &["demo", "--config", file.to_str().expect("utf8")],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn bad_origin_flag_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vitale_bridge(
        dir.path(),
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            "https://*.example",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("allowed_origins"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vitale_bridge(dir.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = vitale_bridge(dir.path(), &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let help = text(&out.stdout);
    for cmd in ["run", "demo", "readers", "read", "doctor", "sim"] {
        assert!(help.contains(cmd), "{cmd} in help: {help}");
    }
}

#[test]
fn port_in_use_exits_1() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{port}");
    let out = vitale_bridge(dir.path(), &["demo", "--listen", &listen]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("cannot listen"), "{out:?}");
    assert!(out.stdout.is_empty(), "no ready line");
}

#[test]
fn sigterm_stops_with_exit_0() {
    let mut d = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "50",
    ]);
    let status = d.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}

#[test]
fn sigint_stops_with_exit_0() {
    let mut d = Daemon::spawn(&["run", "--no-pcsc", "--no-nfc", "--listen", "127.0.0.1:0"]);
    Command::new("kill")
        .args(["-INT", &d.child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = std::time::Instant::now() + support::WAIT;
    let status = loop {
        if let Some(s) = d.child.try_wait().expect("wait") {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no exit after SIGINT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "log:\n{}", d.log());
}

#[test]
fn doctor_reports_plainly_in_a_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = vitale_bridge(
        dir.path(),
        &["doctor", "--no-pcsc", "--no-nfc", "--listen", "127.0.0.1:0"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("OK   configuration valid"), "{stdout}");
    assert!(stdout.contains("WARN no allowed_origins"), "{stdout}");
    assert!(stdout.contains("fix: "), "{stdout}");
    assert!(stdout.contains("# effective configuration"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "no colour codes in a pipe");
}

#[test]
fn doctor_reports_a_bad_config_as_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "nope = 1\n").expect("write");
    let out = vitale_bridge(
        dir.path(),
        &[
            "doctor",
            "--no-pcsc",
            "--no-nfc",
            "--config",
            file.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL configuration invalid") && stdout.contains("nope"),
        "{stdout}"
    );
}

#[test]
fn ready_line_is_the_only_stdout() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--demo-interval-ms",
            "20",
            "--log-level",
            "debug",
        ])
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut s).expect("read");
        s
    });
    // Wait until the demo has run a full card cycle (its debug log says so), so
    // that everything that could print has had its chance.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in stderr.by_ref().map_while(Result::ok) {
            if !sent && line.contains("card.removed") {
                let _ = tx.send(());
                sent = true;
            }
        }
    });
    rx.recv_timeout(support::WAIT)
        .expect("a demo cycle in the log");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    let stdout = reader.join().expect("reader");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout:?}");
    assert!(lines[0].starts_with("listening on ws://127.0.0.1:") && lines[0].ends_with("/v1"));
}
