//! The local trust boundary (issue 11), against the real binary with real clients:
//! another OS user is refused whatever it claims to be, listed users and group
//! members are served, idle sockets cannot keep a client out, and nobody else can
//! hold `[::1]` on the daemon's port.
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::os_user::{self, Probe};
use support::{Client, Daemon, WAIT, require_tool};

const ORIGIN: &str = "https://app.example";

fn demo(extra: &[&str]) -> Daemon {
    let mut args = vec![
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--allow-origin",
        ORIGIN,
        "--demo-interval-ms",
        "100",
    ];
    args.extend_from_slice(extra);
    Daemon::spawn(&args)
}

/// The daemon with a config file holding `toml`.
fn demo_with_config(toml: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).expect("write config");
    let path = path.to_str().expect("utf-8 path").to_string();
    (demo(&["--config", &path]), dir)
}

/// The identity strings an identity.read event carried (names, dates, NIRs).
fn identity_strings(probe: &Probe) -> Vec<String> {
    let mut out = Vec::new();
    for m in &probe.messages {
        let v: Value = serde_json::from_str(m).expect("json");
        if v["params"]["type"] != "identity.read" {
            continue;
        }
        for b in v["params"]["data"]["beneficiaries"]
            .as_array()
            .expect("beneficiaries")
        {
            for key in ["surname", "givenName", "birthDateRaw", "nir"] {
                if let Some(s) = b[key].as_str() {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}

fn assert_served(probe: &Probe, who: &str) {
    assert_eq!(probe.status, "101", "{who} is served:\n{}", probe.raw);
    assert_eq!(probe.done, "got identity.read", "{who}:\n{}", probe.raw);
}

fn assert_refused(probe: &Probe, who: &str, secrets: &[String]) {
    assert_eq!(probe.status, "403", "{who} is refused:\n{}", probe.raw);
    assert_eq!(probe.done, "refused", "{who}");
    assert!(
        probe.messages.is_empty(),
        "{who} got frames: {:?}",
        probe.messages
    );
    for s in secrets {
        assert!(
            !probe.raw.contains(s.as_str()),
            "{who} received identity data"
        );
    }
}

#[test]
fn another_os_user_is_refused_natively_and_with_a_forged_origin() {
    let other = os_user::ensure("vb-trust-other");
    let d = demo(&[]);
    // The daemon's own user: served, and it shows what a leak would look like.
    let mine = os_user::probe_as(os_user::me(), d.port, None, "identity.read");
    assert_served(&mine, "the daemon's own user");
    let secrets = identity_strings(&mine);
    assert!(!secrets.is_empty(), "the served client saw an identity");
    let mine_web = os_user::probe_as(os_user::me(), d.port, Some(ORIGIN), "identity.read");
    assert_served(&mine_web, "the daemon's own user's browser");

    let native = os_user::probe_as(other, d.port, None, "identity.read");
    assert_refused(&native, "another user's native client", &secrets);
    let forged = os_user::probe_as(other, d.port, Some(ORIGIN), "identity.read");
    assert_refused(&forged, "another user sending an allowed Origin", &secrets);

    // The status page's own origin is no way in either.
    let own = format!("http://127.0.0.1:{}", d.port);
    let page = os_user::probe_as(other, d.port, Some(&own), "identity.read");
    assert_refused(&page, "another user posing as the status page", &secrets);

    let log = d.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("belongs to another OS user"))
        .collect();
    assert_eq!(refusals.len(), 3, "one line per refusal:\n{log}");
    for line in refusals {
        assert!(line.contains(&format!("uid={}", other.uid)), "{line}");
        assert!(line.contains("peer_port="), "{line}");
    }
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "identity in the log");
    }
}

/// `GET /metrics` as `user`: the status code.
fn metrics_status_as(user: os_user::OsUser, port: u16) -> String {
    let python = require_tool("python3", "python3");
    let get = format!(
        "import socket; s = socket.create_connection(('127.0.0.1', {port})); \
         s.sendall(b'GET /metrics HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\nConnection: close\\r\\n\\r\\n'); \
         print(s.recv(4096).decode().split(' ')[1])"
    );
    os_user::run_as(user, &python, &["-c", &get])
        .trim()
        .to_string()
}

#[test]
fn metrics_are_only_for_allowed_users() {
    let other = os_user::ensure("vb-trust-other");
    let (d, _dir) = demo_with_config("[metrics]\nenabled = true\n");
    assert_eq!(metrics_status_as(os_user::me(), d.port), "200");
    assert_eq!(metrics_status_as(other, d.port), "403");
    assert!(
        d.log().contains(&format!("uid={}", other.uid)),
        "{}",
        d.log()
    );
}

#[test]
fn listed_users_and_members_of_listed_groups_are_served() {
    let listed = os_user::ensure("vb-trust-listed");
    let member = os_user::ensure("vb-trust-member");
    let other = os_user::ensure("vb-trust-other");
    os_user::add_to_group("vb-trust-member", "vb-trust-desk");

    let (d, _dir) = demo_with_config("allowed_users = [\"vb-trust-listed\"]\n");
    assert_served(
        &os_user::probe_as(listed, d.port, None, "identity.read"),
        "a user in allowed_users",
    );
    assert_served(
        &os_user::probe_as(listed, d.port, Some(ORIGIN), "identity.read"),
        "a browser page of a user in allowed_users",
    );
    assert_refused(
        &os_user::probe_as(member, d.port, None, "identity.read"),
        "a user not listed",
        &[],
    );

    let (d, _dir) = demo_with_config(&format!(
        "allowed_groups = [\"vb-trust-desk\"]\nallowed_users = [\"{}\"]\n",
        listed.uid
    ));
    // `--clear-groups` leaves the client no supplementary groups: membership is the
    // account's, as the system's group database says.
    assert_served(
        &os_user::probe_as(member, d.port, None, "identity.read"),
        "a member of allowed_groups",
    );
    assert_served(
        &os_user::probe_as(listed, d.port, None, "identity.read"),
        "a uid given as a number",
    );
    assert_refused(
        &os_user::probe_as(other, d.port, None, "identity.read"),
        "a user in no allowed group",
        &[],
    );
}

#[test]
fn unknown_allowed_users_are_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "allowed_users = [\"vb-no-such-user\"]\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["demo", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("allowed_users") && err.contains("vb-no-such-user"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_do_not_keep_a_client_out() {
    let d = demo(&[]);
    let addr = ("127.0.0.1", d.port);
    // 1,000 that never send a byte and 200 that stop half-way through their request
    // head: far more than the 128 handshake slots.
    let mut held = Vec::new();
    for _ in 0..1000 {
        held.push(std::net::TcpStream::connect(addr).expect("idle connect"));
    }
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        std::io::Write::write_all(
            &mut s,
            format!("GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", d.port).as_bytes(),
        )
        .expect("partial head");
        held.push(s);
    }
    let started = Instant::now();
    let mut c = Client::connect(&d.url()).await;
    let sub = c.call("subscribe", json!({})).await;
    assert!(sub["result"]["seq"].is_u64(), "{sub}");
    let ev = c.next_event().await;
    assert!(ev["seq"].as_u64() > sub["result"]["seq"].as_u64(), "{ev}");
    eprintln!(
        "subscribe result and first event {:?} after connecting with {} sockets held",
        started.elapsed(),
        held.len()
    );
    // The daemon closed the idle ones rather than keeping them: every held socket
    // reads end-of-stream (the daemon sent nothing to any of them).
    for s in held.iter_mut().take(50) {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).expect("closed by the daemon"), 0);
    }
    assert!(!d.log().contains("accept failed"), "{}", d.log());
}

/// Waits for `child` to exit within [`WAIT`]; kills it and fails otherwise.
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_squatter_on_ipv6_loopback_is_fatal() {
    let squatter = std::net::TcpListener::bind("[::1]:0")
        .expect("this test needs IPv6 loopback on the host (net.ipv6.conf.lo.disable_ipv6=0)");
    let port = squatter.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
        .env("XDG_CONFIG_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child);
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "no ready line: {stdout}");
    assert!(stderr.contains(&format!("[::1]:{port}")), "{stderr}");
    assert!(
        stderr.contains("--listen") && stderr.contains("Stop the other process"),
        "{stderr}"
    );
    drop(squatter);
}

#[test]
fn without_ipv6_the_daemon_serves_ipv4_loopback() {
    require_tool("unshare", "util-linux");
    require_tool("nsenter", "util-linux");
    require_tool("ip", "iproute2");
    // A fresh network namespace with IPv6 turned off on its loopback.
    let setup = "ip link set lo up && echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6 && exec \"$0\" \"$@\"";
    let d = Daemon::spawn_wrapped(
        &["unshare", "-n", "sh", "-c", setup],
        &["demo", "--listen", "127.0.0.1:0"],
        &[],
    );
    assert!(d.log().contains("no IPv6 loopback"), "{}", d.log());
    // Inside that namespace, IPv4 loopback answers.
    let get = format!(
        "import socket; s = socket.create_connection(('127.0.0.1', {p})); \
         s.sendall(b'GET /health HTTP/1.1\\r\\nHost: 127.0.0.1:{p}\\r\\nConnection: close\\r\\n\\r\\n'); \
         print(s.recv(4096).decode().split(' ')[1])",
        p = d.port
    );
    let out = Command::new("nsenter")
        .args(["-t", &d.child.id().to_string(), "-n"])
        .arg(require_tool("python3", "python3"))
        .args(["-c", &get])
        .output()
        .expect("nsenter");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
