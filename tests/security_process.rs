//! Security pass on the real daemon process: it listens on loopback only and it is
//! non-dumpable, so a crash never writes health data to a core file.
//!
//! The slowloris handshake check lives in tests/ws_handshake.rs.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Daemon, WAIT, require_tool};

/// Socket inodes the process holds, from the `socket:[N]` links in /proc/PID/fd.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let s = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?;
            s.parse().ok()
        })
        .collect()
}

/// Decodes the kernel's hex address from /proc/net/tcp{,6} (words in host order).
fn decode_addr(hex_addr: &str) -> String {
    let (ip, port) = hex_addr.split_once(':').expect("addr:port");
    let port = u16::from_str_radix(port, 16).expect("port");
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).expect("hex word"))
        .collect();
    if words.len() == 1 {
        format!("{}:{port}", Ipv4Addr::from(u32::from_be(words[0])))
    } else {
        let mut bytes = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        format!("[{}]:{port}", Ipv6Addr::from(bytes))
    }
}

/// Every TCP socket in LISTEN state (`0A`) that `pid` owns, as `ip:port`.
fn listening_addrs(pid: u32) -> Vec<String> {
    let mine = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state == "0A" && inode.parse().is_ok_and(|i: u64| mine.contains(&i)) {
                out.push(decode_addr(local));
            }
        }
    }
    out
}

fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:")
}

#[test]
fn daemon_listens_on_loopback_only() {
    let daemon = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let addrs = listening_addrs(daemon.child.id());
    assert!(
        !addrs.is_empty(),
        "no listening socket found for the daemon"
    );
    assert!(
        addrs.iter().all(|a| is_loopback(a)),
        "daemon listens on {addrs:?}"
    );
}

#[test]
fn ss_agrees_that_only_loopback_is_served() {
    require_tool("ss", "iproute2");
    let daemon = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let out = Command::new("ss")
        .args(["-Hltnp"])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let needle = format!("pid={},", daemon.child.id());
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&needle)).collect();
    assert!(
        !lines.is_empty(),
        "ss shows no socket for the daemon:\n{text}"
    );
    for line in lines {
        let local = line
            .split_whitespace()
            .nth(3)
            .expect("local address column");
        assert!(is_loopback(local), "ss: daemon listens on {local}");
    }
}

#[test]
fn non_loopback_listen_is_refused() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vitale-bridge"))
            .args(["demo", "--listen", listen])
            .env("VITALE_BRIDGE_SYSTEM_CONFIG", "/nonexistent")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .env("HOME", "/nonexistent")
            .stdin(Stdio::null())
            .output()
            .expect("run vitale-bridge");
        assert_eq!(out.status.code(), Some(2), "--listen {listen} was accepted");
    }
}

/// Kills `child` with SIGABRT (a core-dumping signal; SIGSEGV from `kill` is swallowed
/// by std's stack-overflow handler) after lifting its core limit, and reports whether
/// the kernel wrote a core.
fn abort_dumps_core(pid: u32, child: &mut std::process::Child) -> bool {
    let st = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--core=unlimited"])
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed");
    let st = Command::new("kill")
        .args(["-ABRT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
            return status.core_dumped();
        }
        assert!(Instant::now() < deadline, "process survived SIGABRT");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_is_non_dumpable() {
    require_tool("prlimit", "util-linux");
    let dir = tempfile::tempdir().expect("tempdir");
    // Control: an ordinary process in the same conditions does dump core, so a
    // missing core below is the daemon's doing, not the machine's.
    let mut control = Command::new("sleep")
        .arg("60")
        .current_dir(dir.path())
        .spawn()
        .expect("spawn sleep");
    let pid = control.id();
    assert!(
        abort_dumps_core(pid, &mut control),
        "control process wrote no core: check /proc/sys/kernel/core_pattern"
    );

    let mut daemon = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let pid = daemon.child.id();
    assert!(
        !abort_dumps_core(pid, &mut daemon.child),
        "daemon dumped core: it must call prctl(PR_SET_DUMPABLE, 0)"
    );
}
