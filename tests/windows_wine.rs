//! The Windows build (`vitale-bridge.exe`, x86_64-pc-windows-gnu) end to end under
//! Wine, against real parts: a real pcscd with vsmartcard's vpcd, the project's
//! virtual card (`sim vpcd`), and Windows WebSocket clients (`vitale-bridge.exe
//! client`) in the same Wine session, which the daemon's OS-user check
//! (`GetExtendedTcpTable` → the client process's token) must resolve.
//!
//! Everything runs in a private network and mount namespace held by one `unshare`
//! process; every command enters it with `nsenter`. Inside it only: a tmpfs on
//! /run/pcscd, pcscd's vpcd on its own port, and the test-only winscard bridge
//! (packaging/windows/wine/winscard/) bind-mounted over Wine 8.0's stub winscard, so
//! neither the machine's Wine nor its network is touched.
//!
//! Graceful stop: SIGINT to the Wine process, which Wine delivers to the Windows
//! program as a console CTRL_C_EVENT (its SetConsoleCtrlHandler path, the same as
//! Ctrl-C in a console window); a SIGTERM would end it at once.
//!
//! These are `#[ignore]`d in a plain `cargo test`: they need the Windows build.
//! `scripts/test` builds it (`scripts/build-windows e2e`) and runs them with
//! `--include-ignored`, where any missing part fails with its install hint.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::require_tool;

/// Waits on Wine: starting a Windows process on a loaded 2-core machine takes seconds.
const WAIT: Duration = Duration::from_secs(90);
/// vpcd's first slot inside the namespace (the second is the next port).
const VPCD_PORT: u16 = 0x8D00;
const SLOT0: &str = "pcsc:Virtual PCD 00 00";
const SLOT1: &str = "pcsc:Virtual PCD 00 01";
const WINE: &str = "/usr/lib/wine/wine64";
const WINE_LIB: &str = "/usr/lib/x86_64-linux-gnu/wine";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
const HINT: &str = "build the Windows parts with `scripts/build-windows e2e` (scripts/test does)";

/// One Wine prefix serves every test here: one at a time.
static WINE_SESSION: Mutex<()> = Mutex::new(());

struct Parts {
    exe: PathBuf,
    prefix: PathBuf,
    winscard: PathBuf,
    linux: PathBuf,
}

fn parts() -> Parts {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR_WINDOWS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/windows"));
    let target = root.join(target);
    let parts = Parts {
        exe: target.join("x86_64-pc-windows-gnu/release/vitale-bridge.exe"),
        prefix: target.join("wineprefix"),
        winscard: target.join("wine-winscard"),
        linux: PathBuf::from(env!("CARGO_BIN_EXE_vitale-bridge")),
    };
    for (what, path) in [
        ("the Windows build", parts.exe.clone()),
        (
            "the Wine prefix's bcryptprimitives.dll stand-in",
            parts
                .prefix
                .join("drive_c/windows/system32/bcryptprimitives.dll"),
        ),
        (
            "the winscard bridge (PE half)",
            parts.winscard.join("winscard.dll"),
        ),
        (
            "the winscard bridge (Unix half)",
            parts.winscard.join("winscard.so"),
        ),
    ] {
        assert!(
            path.exists(),
            "{what} is missing at {}: {HINT}",
            path.display()
        );
    }
    assert!(
        Path::new(WINE).exists(),
        "Wine is required: apt-get install -y wine64 (scripts/setup installs it)"
    );
    assert!(
        Path::new(VPCD_DRIVER).exists(),
        "vsmartcard's vpcd driver is required: apt-get install -y vsmartcard-vpcd"
    );
    for (tool, package) in [
        ("pcscd", "pcscd"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
        ("curl", "curl"),
    ] {
        require_tool(tool, package);
    }
    parts
}

/// A private network + mount namespace, kept alive by a holder process.
struct Namespace {
    holder: Child,
    dir: tempfile::TempDir,
    parts: Parts,
    pcscd: Option<Child>,
    _session: std::sync::MutexGuard<'static, ()>,
}

impl Namespace {
    fn start() -> Namespace {
        let session = WINE_SESSION.lock().unwrap_or_else(|p| p.into_inner());
        let parts = parts();
        let dir = tempfile::tempdir().expect("tempdir");
        // Wine finds a builtin's Unix half in the x86_64-unix folder: a copy of it
        // with the bridge's winscard.so, mounted over the original in here only.
        let unix = dir.path().join("x86_64-unix");
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{WINE_LIB}/x86_64-unix"))
            .arg(&unix)
            .status()
            .expect("cp");
        assert!(copied.success(), "copying Wine's x86_64-unix folder failed");
        std::fs::copy(parts.winscard.join("winscard.so"), unix.join("winscard.so"))
            .expect("copy winscard.so");
        let conf = dir.path().join("reader.conf.d");
        std::fs::create_dir(&conf).expect("conf dir");
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{VPCD_PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{VPCD_PORT:04X}\n"
            ),
        )
        .expect("reader.conf");
        let script = format!(
            "set -e
             ip link set lo up
             mount -t tmpfs -o mode=0755 tmpfs /run/pcscd
             mount --bind '{dll}' '{WINE_LIB}/x86_64-windows/winscard.dll'
             mount --bind '{unix}' '{WINE_LIB}/x86_64-unix'
             echo ready
             exec sleep 100000",
            dll = parts.winscard.join("winscard.dll").display(),
            unix = unix.display(),
        );
        std::fs::create_dir_all("/run/pcscd").expect("/run/pcscd");
        let mut holder = Command::new("unshare")
            .args(["-n", "-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("holder stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let _ = holder.wait();
            panic!("the private namespace could not be set up (needs root: unshare -n -m, mount)");
        }
        Namespace {
            holder,
            dir,
            parts,
            pcscd: None,
            _session: session,
        }
    }

    /// `program` run inside the namespace, with the Wine prefix.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            // -r -w: entering a mount namespace resets root and cwd to the
            // namespace's own; keep the holder's, or inside a chroot (the fresh-root
            // check) every path of the checkout vanishes.
            .args(["-n", "-m", "-r", "-w", "--"])
            .arg(program)
            .env("WINEPREFIX", &self.parts.prefix)
            .env("WINEDEBUG", "-all")
            .stdin(Stdio::null());
        c
    }

    /// The Windows build under Wine, called directly so that the child is the
    /// Windows process itself (its signals reach it).
    fn windows(&self) -> Command {
        let mut c = self.command(WINE);
        c.arg(&self.parts.exe);
        c
    }

    fn linux(&self) -> Command {
        self.command(&self.parts.linux)
    }

    /// A path as the namespace sees it.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.holder.id()))
    }

    /// Whether something listens on TCP `port` in the namespace (read from its
    /// /proc/net/tcp: connecting to vpcd's port would insert a card).
    fn listening(&self, port: u16) -> bool {
        let table = std::fs::read_to_string(format!("/proc/{}/net/tcp", self.holder.id()))
            .unwrap_or_default();
        let want = format!(":{port:04X}");
        table.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1).is_some_and(|a| a.ends_with(&want)) && cols.get(3) == Some(&"0A")
        })
    }

    fn spawn(&self, name: &str, mut cmd: Command) -> Proc {
        let out = self.dir.path().join(format!("{name}.out"));
        let err = self.dir.path().join(format!("{name}.err"));
        let child = cmd
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn");
        Proc {
            name: name.to_owned(),
            child: Some(child),
            out,
            err,
            cursor: 0,
        }
    }

    fn start_pcscd(&mut self) {
        assert!(self.pcscd.is_none(), "pcscd already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("pcscd.log"))
            .expect("pcscd log");
        let child = self
            .command("pcscd")
            .arg("--foreground")
            .arg("-c")
            .arg(self.dir.path().join("reader.conf.d"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn pcscd");
        self.pcscd = Some(child);
        let deadline = Instant::now() + WAIT;
        while !(self.inside("/run/pcscd/pcscd.comm").exists()
            && self.listening(VPCD_PORT)
            && self.listening(VPCD_PORT + 1))
        {
            assert!(
                Instant::now() < deadline,
                "pcscd did not come up: {}",
                self.pcscd_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills pcscd as a crash would (SIGKILL).
    fn kill_pcscd(&mut self) {
        if let Some(mut c) = self.pcscd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.inside("/run/pcscd/pcscd.comm"));
    }

    fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    /// Runs a command to its end (bounded by [`WAIT`]): its status and stdout.
    fn run(&self, cmd: Command) -> (ExitStatus, String) {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut p = self.spawn(&format!("run{n}"), cmd);
        let status = p.wait();
        let out = std::fs::read_to_string(&p.out).unwrap_or_default();
        (status, out)
    }

    /// Inserts the family card into slot 0 (the Linux `sim vpcd`), once it
    /// connected; with the time it did (Unix milliseconds, from the sim's line).
    fn insert_card(&self, name: &str) -> (Proc, i128) {
        let mut cmd = self.linux();
        cmd.args(["sim", "vpcd", "--card"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/family.toml"))
            .args(["--port", &VPCD_PORT.to_string()]);
        let mut sim = self.spawn(name, cmd);
        let line = sim.next_line(
            |l| l.starts_with("card connected"),
            "the card connecting to vpcd",
        );
        let at: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|t| t.parse().ok())
            .expect("the sim's connection time");
        (sim, (at * 1000.0) as i128)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.pcscd_log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!(
                "--- pcscd log (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        self.kill_pcscd();
        // The prefix's wineserver (started by the first Wine process in here) ends
        // with the session, so the next test starts from a clean one.
        let _ = self.command("/usr/lib/wine/wineserver").arg("-k").status();
        let _ = self.command("/usr/lib/wine/wineserver").arg("-w").status();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// A child process writing to files; killed on drop.
struct Proc {
    name: String,
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    cursor: usize,
}

impl Proc {
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// The next stdout line after the cursor matching `want`; fails after [`WAIT`].
    fn next_line(&mut self, want: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines();
            // Only complete lines: the last one may still be being written.
            let complete = std::fs::read_to_string(&self.out)
                .map(|s| s.ends_with('\n'))
                .unwrap_or(false);
            let usable = if complete {
                lines.len()
            } else {
                lines.len().saturating_sub(1)
            };
            if let Some(i) = (self.cursor..usable).find(|&i| want(&lines[i])) {
                self.cursor = i + 1;
                return lines[i].clone();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}: exited ({status}) before {what}; stdout:\n{}\nstderr:\n{}",
                    self.name,
                    lines.join("\n"),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {WAIT:?}; stdout:\n{}\nstderr:\n{}",
                self.name,
                lines.join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next event notification of `kind` (and on `reader`, if given).
    fn next_event(&mut self, kind: &str, reader: Option<&str>) -> Value {
        let what = format!(
            "{kind} event{}",
            reader.map(|r| format!(" on {r}")).unwrap_or_default()
        );
        let line = self.next_line(
            |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["method"] == "event"
                        && v["params"]["type"] == kind
                        && reader.is_none_or(|r| v["params"]["reader"] == r)
                })
            },
            &what,
        );
        let v: Value = serde_json::from_str(&line).expect("event JSON");
        v["params"].clone()
    }

    /// SIGINT (a console Ctrl-C for a Windows process), then its exit status.
    fn interrupt(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "{}: SIGINT not delivered", self.name);
        wait_exit(&mut child, &self.name)
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        wait_exit(&mut child, &self.name)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_exit(child: &mut Child, name: &str) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{name} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ready_port(daemon: &mut Proc) -> u16 {
    let line = daemon.next_line(|l| l.starts_with("listening on ws://"), "ready line");
    line.trim_start_matches("listening on ws://127.0.0.1:")
        .trim_end_matches("/v1")
        .parse()
        .expect("port in the ready line")
}

fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/v1")
}

fn timestamp_ms(event: &Value) -> i128 {
    let t = event["time"].as_str().expect("time");
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time");
    t.unix_timestamp_nanos() / 1_000_000
}

/// Every key of the Linux identity equals the Windows one, beneficiary by
/// beneficiary, and neither has a key the other lacks.
fn assert_same_identity(windows: &Value, linux: &Value) {
    let (w, l) = (
        windows.as_object().expect("an identity object"),
        linux.as_object().expect("an identity object"),
    );
    let mut keys: Vec<&String> = w.keys().chain(l.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if key == "beneficiaries" {
            let (wb, lb) = (
                w[key].as_array().expect("beneficiaries"),
                l[key].as_array().expect("beneficiaries"),
            );
            assert_eq!(wb.len(), lb.len(), "number of beneficiaries");
            for (i, (a, b)) in wb.iter().zip(lb).enumerate() {
                let fields = a.as_object().expect("beneficiary");
                for f in fields
                    .keys()
                    .chain(b.as_object().expect("beneficiary").keys())
                {
                    assert_eq!(a.get(f), b.get(f), "beneficiaries[{i}].{f}");
                }
            }
        } else {
            assert_eq!(w.get(key), l.get(key), "identity field {key}");
        }
    }
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/build-windows e2e, then --ignored (scripts/test does both)"]
fn windows_under_wine_pcsc_daemon_matches_linux_through_pcscd_loss() {
    let mut ns = Namespace::start();

    // The daemon first, pcscd still down: the service coming up and the readers
    // arriving are then events a subscriber sees.
    let started = Instant::now();
    let mut daemon = {
        let mut c = ns.windows();
        c.args(["run", "--no-nfc", "--listen", "127.0.0.1:0"]);
        ns.spawn("daemon", c)
    };
    let port = ready_port(&mut daemon);
    eprintln!(
        "figure: Windows daemon ready line after {:?} under Wine",
        started.elapsed()
    );
    let mut client = {
        let mut c = ns.windows();
        c.args(["client", "--url", &url(port), "--timeout", "600"])
            .args(["--send", &request(1, "subscribe", json!({}))]);
        ns.spawn("client", c)
    };
    let sub = client.next_line(|l| l.contains("\"id\":1"), "subscribe result");
    let sub: Value = serde_json::from_str(&sub).expect("subscribe JSON");
    assert_eq!(sub["result"]["snapshot"]["readers"], json!([]), "{sub}");

    // doctor, the service stopped (as SCardSvr is with no reader attached): a FAIL
    // in Windows terms, and the Windows configuration paths.
    let doctor = |ns: &Namespace| {
        let mut c = ns.windows();
        c.args(["doctor", "--no-nfc", "--listen", "127.0.0.1:0"]);
        c
    };
    let (status, report) = ns.run(doctor(&ns));
    assert!(
        !status.success(),
        "doctor with the service down must fail:\n{report}"
    );
    assert!(
        report.contains("FAIL the Smart Card service (SCardSvr) is not running"),
        "{report}"
    );
    assert!(report.contains("sc start SCardSvr"), "{report}");
    assert!(
        report.contains(r"C:\ProgramData\vitale-bridge\config.toml"),
        "doctor names the machine-wide file:\n{report}"
    );

    ns.start_pcscd();
    let up = client.next_event("service.changed", None);
    assert_eq!(
        (up["data"]["service"].as_str(), up["data"]["state"].as_str()),
        (Some("pcsc"), Some("up")),
        "{up}"
    );
    for slot in [SLOT0, SLOT1] {
        let added = client.next_event("reader.added", Some(slot));
        assert_eq!(added["data"]["kind"], "pcsc", "{added}");
    }

    // `readers`: the same listing from both builds.
    let mut win = ns.windows();
    win.args(["readers", "--no-nfc"]);
    let mut lin = ns.linux();
    lin.args(["readers", "--no-nfc"]);
    let (w, l) = (ns.run(win), ns.run(lin));
    assert!(w.0.success() && l.0.success(), "readers: {w:?} {l:?}");
    assert_eq!(w.1, l.1, "`readers` output, Windows vs Linux");
    assert!(l.1.contains(SLOT0), "{}", l.1);
    let (status, report) = ns.run(doctor(&ns));
    assert!(status.success(), "doctor with the service up:\n{report}");
    assert!(
        report.contains("OK   the Smart Card service (SCardSvr) is reachable"),
        "{report}"
    );
    assert!(report.contains("OK   2 PC/SC reader(s)"), "{report}");

    // A card: detected and read through WinSCard → the bridge → pcscd.
    let (mut card, connected_ms) = ns.insert_card("card");
    let inserted = client.next_event("card.inserted", Some(SLOT0));
    let identity = client.next_event("identity.read", Some(SLOT0));
    eprintln!(
        "figure: card in vpcd → card.inserted {} ms, → identity.read {} ms (Windows daemon under Wine, through the bridge)",
        timestamp_ms(&inserted) - connected_ms,
        timestamp_ms(&identity) - connected_ms
    );

    // `read --json`: byte for byte the Linux build's, and field by field the daemon's.
    let mut win = ns.windows();
    win.args(["read", "--json", "--no-nfc", "--reader", SLOT0]);
    let mut lin = ns.linux();
    lin.args(["read", "--json", "--no-nfc", "--reader", SLOT0]);
    let (w, l) = (ns.run(win), ns.run(lin));
    assert!(w.0.success(), "Windows read: {w:?}");
    assert!(l.0.success(), "Linux read: {l:?}");
    assert_eq!(w.1, l.1, "`read --json` output, Windows vs Linux");
    let linux_identity: Value = serde_json::from_str(&l.1).expect("read --json");
    assert_same_identity(&identity["data"], &linux_identity);

    // Removal.
    card.kill();
    client.next_event("card.removed", Some(SLOT0));

    // pcscd crashes and comes back: down, readers gone, up, readers back, read again.
    ns.kill_pcscd();
    let down = client.next_event("service.changed", None);
    assert_eq!(
        (
            down["data"]["service"].as_str(),
            down["data"]["state"].as_str()
        ),
        (Some("pcsc"), Some("down")),
        "{down}"
    );
    for slot in [SLOT0, SLOT1] {
        client.next_event("reader.removed", Some(slot));
    }
    ns.start_pcscd();
    let up = client.next_event("service.changed", None);
    assert_eq!(up["data"]["state"], "up", "{up}");
    client.next_event("reader.added", Some(SLOT0));
    let _card = ns.insert_card("card-again");
    client.next_event("card.inserted", Some(SLOT0));
    let again = client.next_event("identity.read", Some(SLOT0));
    assert_same_identity(&again["data"], &linux_identity);

    // Graceful stop: the subscriber is closed with 1001, the daemon exits 0.
    let status = daemon.interrupt();
    client.next_line(|l| l.starts_with("close "), "the close code");
    assert_eq!(
        client.lines().last().map(String::as_str),
        Some("close 1001")
    );
    assert!(
        status.success(),
        "daemon exit: {status}; stderr:\n{}",
        daemon.stderr()
    );
    assert!(client.wait().success(), "client: {}", client.stderr());
    assert!(
        daemon.stderr().contains("CTRL_C_EVENT"),
        "{}",
        daemon.stderr()
    );

    // Health data never reaches the Windows build's logs.
    let log = daemon.stderr();
    for b in linux_identity["beneficiaries"]
        .as_array()
        .expect("beneficiaries")
    {
        for field in ["surname", "givenName", "nir", "birthDate", "birthDateRaw"] {
            if let Some(v) = b[field].as_str() {
                assert!(!log.contains(v), "the daemon's log holds a {field}");
            }
        }
    }
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/build-windows e2e, then --ignored (scripts/test does both)"]
fn windows_under_wine_autostart_writes_and_removes_the_logon_entry() {
    let ns = Namespace::start();
    let query = |ns: &Namespace| {
        let mut c = ns.command(WINE);
        c.args([
            "reg",
            "query",
            r"HKCU\Software\Microsoft\Windows\CurrentVersion\Run",
            "/v",
            "vitale-bridge",
        ]);
        ns.run(c)
    };
    let autostart = |ns: &Namespace, what: &str| {
        let mut c = ns.windows();
        c.args(["autostart", what]);
        ns.run(c)
    };
    let (status, out) = autostart(&ns, "enable");
    assert!(status.success(), "autostart enable: {out}");
    let (status, value) = query(&ns);
    assert!(status.success(), "no Run value after enable: {value}");
    assert!(value.contains("REG_SZ"), "{value}");
    assert!(
        value.contains(r#"start "vitale-bridge" /min "Z:\"#)
            && value.contains(r#"vitale-bridge.exe" run"#),
        "the Run value starts this exe minimised: {value}"
    );
    let (status, out) = autostart(&ns, "status");
    assert!(
        status.success() && out.starts_with("enabled: cmd.exe"),
        "{out}"
    );
    let (status, out) = autostart(&ns, "disable");
    assert!(
        status.success() && out.contains("autostart disabled"),
        "{out}"
    );
    let (status, value) = query(&ns);
    assert!(!status.success(), "the Run value is still there: {value}");
    let (status, out) = autostart(&ns, "status");
    assert!(status.success() && out.trim() == "disabled", "{out}");
}

/// Removes the service again, whatever the test's outcome (the prefix is shared).
struct InstalledService<'a>(&'a Namespace);

impl Drop for InstalledService<'_> {
    fn drop(&mut self) {
        let mut c = self.0.windows();
        c.args(["service", "uninstall"]);
        let _ = self.0.run(c);
    }
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/build-windows e2e, then --ignored (scripts/test does both)"]
fn windows_under_wine_service_installs_serves_stops_and_logs_to_a_file() {
    let ns = Namespace::start();
    let wine = |args: &[&str]| {
        let mut c = ns.command(WINE);
        c.args(args);
        ns.run(c)
    };
    let mut install = ns.windows();
    install.args(["service", "install", "--account", r".\root"]);
    // The password, on stdin.
    install.stdin(std::fs::File::open("/dev/null").expect("/dev/null"));
    let (status, out) = ns.run(install);
    assert!(status.success(), "service install: {out}");
    let _installed = InstalledService(&ns);
    // What the service manager stored (Wine's sc has no `qc`: its registry).
    let (status, query) = wine(&[
        "reg",
        "query",
        r"HKLM\System\CurrentControlSet\Services\vitale-bridge",
    ]);
    assert!(status.success(), "{query}");
    // (windows-service quotes the path when it has spaces, as under Program Files.)
    assert!(
        query.contains(r"vitale-bridge.exe service run"),
        "ImagePath: {query}"
    );
    assert!(
        query.contains("Start    REG_DWORD    0x2"),
        "automatic start: {query}"
    );
    assert!(
        query.contains(r"ObjectName    REG_SZ    .\root"),
        "the account: {query}"
    );
    let (status, out) = wine(&["net", "start", "vitale-bridge"]);
    assert!(status.success(), "net start: {out}");
    // The service listens on the configured port (the default: this namespace's own).
    let deadline = Instant::now() + WAIT;
    let health = loop {
        let mut curl = ns.command("curl");
        curl.args(["-fsS", "http://127.0.0.1:24880/health"]);
        let (status, body) = ns.run(curl);
        if status.success() {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the service never answered /health"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["status"], "ok");

    let (status, out) = wine(&["net", "stop", "vitale-bridge"]);
    assert!(status.success(), "net stop: {out}");
    // The service's %ProgramData%: Wine 8.0 gives services C:\users\Public there.
    let log = ["ProgramData", "users/Public"]
        .iter()
        .map(|d| {
            ns.parts
                .prefix
                .join("drive_c")
                .join(d)
                .join("vitale-bridge/logs/vitale-bridge.log")
        })
        .find(|p| p.exists())
        .expect("the service's log file under %ProgramData%\\vitale-bridge\\logs");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("service starting"), "{text}");
    assert!(
        text.contains("SERVICE_CONTROL_STOP"),
        "a graceful stop: {text}"
    );
    assert!(text.contains("websocket server stopped"), "{text}");
    let _ = std::fs::remove_dir_all(log.parent().and_then(Path::parent).expect("dir"));
}

/// A Wine prefix of its own, for the installer; its wineserver and files go on drop.
struct ThrowawayPrefix {
    dir: tempfile::TempDir,
}

impl ThrowawayPrefix {
    fn new() -> ThrowawayPrefix {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine-prefix"))
            .arg(dir.path())
            .status()
            .expect("scripts/wine-prefix");
        assert!(
            made.success(),
            "scripts/wine-prefix {} failed",
            dir.path().display()
        );
        ThrowawayPrefix { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn c(&self, windows_path: &str) -> PathBuf {
        self.path().join("drive_c").join(windows_path)
    }
}

impl Drop for ThrowawayPrefix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/lib/wine/wineserver")
            .arg("-k")
            .env("WINEPREFIX", self.path())
            .status();
        let _ = Command::new("/usr/lib/wine/wineserver")
            .arg("-w")
            .env("WINEPREFIX", self.path())
            .status();
    }
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/build-windows e2e, then --ignored (scripts/test does both)"]
fn windows_under_wine_msi_installs_upgrades_and_uninstalls_keeping_the_config() {
    let ns = Namespace::start();
    let version = env!("CARGO_PKG_VERSION");
    let msi = ns
        .parts
        .exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target/windows")
        .join(format!("vitale-bridge-{version}-x86_64.msi"));
    assert!(
        msi.exists(),
        "the MSI is missing at {}: {HINT}",
        msi.display()
    );
    // The next patch version, from the same exe: an upgrade.
    let mut parts: Vec<u64> = version
        .split(['-', '+'])
        .next()
        .expect("version")
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    parts[2] += 1;
    let next = parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let upgrade = ns.dir.path().join("upgrade.msi");
    let built = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/windows-msi"))
        .arg(&ns.parts.exe)
        .arg(&next)
        .arg(&upgrade)
        .status()
        .expect("scripts/windows-msi");
    assert!(built.success(), "building the {next} MSI failed");

    let prefix = ThrowawayPrefix::new();
    let wine = |args: &[&std::ffi::OsStr]| {
        let mut c = ns.command(WINE);
        c.env("WINEPREFIX", prefix.path()).args(args);
        ns.run(c)
    };
    let msiexec = |what: &str, file: &Path| {
        let (status, out) = wine(&[
            "msiexec".as_ref(),
            what.as_ref(),
            file.as_os_str(),
            "/qn".as_ref(),
        ]);
        assert!(
            status.success(),
            "msiexec {what} {}: {status} {out}",
            file.display()
        );
    };
    let exe = prefix.c("Program Files/vitale-bridge/vitale-bridge.exe");
    let config = prefix.c("ProgramData/vitale-bridge/config.toml");
    let run_value = |wine: &dyn Fn(&[&std::ffi::OsStr]) -> (ExitStatus, String)| {
        wine(&[
            "reg".as_ref(),
            "query".as_ref(),
            r"HKLM\Software\Microsoft\Windows\CurrentVersion\Run".as_ref(),
            "/v".as_ref(),
            "vitale-bridge".as_ref(),
        ])
    };

    msiexec("/i", &msi);
    assert!(exe.exists(), "no {}", exe.display());
    let shipped = std::fs::read_to_string(&config).expect("the default config is installed");
    assert_eq!(
        shipped,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml")
        )
        .expect("packaging/config.toml")
    );
    let (status, value) = run_value(&wine);
    assert!(status.success(), "no logon entry: {value}");
    assert!(
        value.contains(r#"/min "C:\Program Files\vitale-bridge\vitale-bridge.exe" run"#),
        "{value}"
    );

    // The installed exe serves /health.
    let mut daemon = {
        let mut c = ns.command(WINE);
        c.env("WINEPREFIX", prefix.path())
            .arg(r"C:\Program Files\vitale-bridge\vitale-bridge.exe")
            .args(["demo", "--listen", "127.0.0.1:0"]);
        ns.spawn("installed", c)
    };
    let port = ready_port(&mut daemon);
    let mut curl = ns.command("curl");
    curl.args(["-fsS", &format!("http://127.0.0.1:{port}/health")]);
    let (status, health) = ns.run(curl);
    assert!(
        status.success(),
        "GET /health of the installed exe: {status}"
    );
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(
        (health["status"].as_str(), health["version"].as_str()),
        (Some("ok"), Some(version))
    );
    assert!(daemon.interrupt().success(), "{}", daemon.stderr());

    // The admin edits the config; an upgrade keeps the edit.
    let edited = format!("{shipped}\n# edited by the admin\n");
    std::fs::write(&config, &edited).expect("edit config");
    msiexec("/i", &upgrade);
    assert!(exe.exists(), "the upgrade removed the exe");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        edited,
        "the upgrade changed the config"
    );
    // One product left: the upgrade removed the old one, so uninstalling the old
    // MSI fails (1605, unknown product) and leaves the new one installed.
    let (status, out) = wine(&[
        "msiexec".as_ref(),
        "/x".as_ref(),
        msi.as_os_str(),
        "/qn".as_ref(),
    ]);
    assert!(
        !status.success(),
        "the {version} product is still installed beside {next}: {out}"
    );
    assert!(
        exe.exists(),
        "the old product's uninstall removed the upgraded exe"
    );

    // Uninstall: the program and its logon entry go, the configuration stays.
    msiexec("/x", &upgrade);
    assert!(!exe.exists(), "uninstall left {}", exe.display());
    let (status, value) = run_value(&wine);
    assert!(!status.success(), "uninstall left the logon entry: {value}");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config kept"),
        edited,
        "uninstall touched the config"
    );
}

/// One connection attempt with `args` (after `--url`), its output as lines.
fn attempt(ns: &Namespace, mut cmd: Command, port: u16, args: &[String]) -> Vec<String> {
    cmd.args(["client", "--url", &url(port), "--timeout", "60"])
        .args(args);
    let (status, out) = ns.run(cmd);
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    assert!(!lines.is_empty(), "no output from {args:?} ({status})");
    lines
}

#[test]
#[ignore = "needs the Windows build under Wine: scripts/build-windows e2e, then --ignored (scripts/test does both)"]
fn windows_under_wine_demo_refuses_bad_input_as_linux_does() {
    let ns = Namespace::start();
    const APP: &str = "https://app.example";
    let demo = |c: &mut Command| {
        c.args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--allow-origin",
            APP,
            "--demo-interval-ms",
            "300",
        ]);
    };
    let mut windows = {
        let mut c = ns.windows();
        demo(&mut c);
        ns.spawn("windows-demo", c)
    };
    let mut linux = {
        let mut c = ns.linux();
        demo(&mut c);
        ns.spawn("linux-demo", c)
    };
    let (wport, lport) = (ready_port(&mut windows), ready_port(&mut linux));

    // Plain HTTP from a Linux process: the health endpoint.
    let mut curl = ns.command("curl");
    curl.args(["-fsS", &format!("http://127.0.0.1:{wport}/health")]);
    let (status, health) = ns.run(curl);
    assert!(status.success(), "GET /health: {status}");
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));

    // A Linux process's socket has no owner Wine can name (GetExtendedTcpTable says
    // pid 0): the OS-user check fails closed.
    let refused = attempt(&ns, ns.linux(), wport, &["--count".into(), "1".into()]);
    assert_eq!(
        refused,
        ["refused 403"],
        "a client the daemon cannot attribute"
    );

    // The same inputs to both builds, each from a client of its own OS: the same
    // answers, byte for byte.
    let send = |text: String| {
        vec![
            "--send".to_owned(),
            text,
            "--count".to_owned(),
            "1".to_owned(),
        ]
    };
    let origin = |o: &str| vec!["--origin".to_owned(), o.to_owned()];
    let mut allowed = origin(APP);
    allowed.extend(send(request(1, "hello", json!({}))));
    // (what, client arguments, what the answer must contain)
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "rebinding Host",
            vec!["--host".into(), "evil.example:PORT".into()],
            "refused 403",
        ),
        (
            "Host with another port",
            vec!["--host".into(), "127.0.0.1:1".into()],
            "refused 403",
        ),
        (
            "foreign Origin",
            origin("https://evil.example"),
            "refused 403",
        ),
        (
            "suffix Origin",
            origin(&format!("{APP}.evil.example")),
            "refused 403",
        ),
        ("null Origin", origin("null"), "refused 403"),
        (
            "http instead of https",
            origin("http://app.example"),
            "refused 403",
        ),
        ("allowed Origin", allowed, "\"server\":\"vitale-bridge\""),
        (
            "native hello",
            send(request(1, "hello", json!({"protocol": 1}))),
            "\"protocol\":1",
        ),
        ("not JSON", send("{\"jsonrpc\":".into()), "-32700"),
        ("not an object", send("42".into()), "-32600"),
        ("a batch", send("[]".into()), "-32600"),
        (
            "no jsonrpc member",
            send("{\"id\":1,\"method\":\"hello\"}".into()),
            "-32600",
        ),
        (
            "unknown method",
            send(request(1, "card.erase", json!({}))),
            "-32601",
        ),
        (
            "bad params",
            send(request(1, "card.read", json!({"reader": 5}))),
            "-32602",
        ),
        (
            "unknown reader",
            send(request(1, "card.read", json!({"reader": "pcsc:nope"}))),
            "READER_NOT_FOUND",
        ),
        (
            "bad challenge",
            send(request(
                1,
                "card.sign",
                json!({"reader": "sim:1", "challenge": "!!"}),
            )),
            "-32602",
        ),
        (
            "short challenge",
            send(request(
                1,
                "card.sign",
                json!({"reader": "sim:1", "challenge": "AAAA"}),
            )),
            "-32602",
        ),
    ];
    for (name, args, answer) in &cases {
        let with_port = |port: u16| -> Vec<String> {
            args.iter()
                .map(|a| a.replace("PORT", &port.to_string()))
                .collect()
        };
        let w = attempt(&ns, ns.windows(), wport, &with_port(wport));
        let l = attempt(&ns, ns.linux(), lport, &with_port(lport));
        assert_eq!(w, l, "{name}: Windows vs Linux answers");
        assert!(w.concat().contains(answer), "{name}: {w:?} lacks {answer}");
    }

    // allowed_users on Windows: SID strings and account names resolve (to SIDs), an
    // unknown account is a configuration error naming the key (exit 2).
    let windows_path = |p: &Path| format!("Z:{}", p.display()).replace('/', "\\");
    let good = ns.dir.path().join("users-good.toml");
    std::fs::write(&good, "allowed_users = [\"S-1-5-32-544\", \"root\"]\n").expect("config");
    let bad = ns.dir.path().join("users-bad.toml");
    std::fs::write(&bad, "allowed_users = [\"no-such-account-vb\"]\n").expect("config");
    let mut c = ns.windows();
    c.args([
        "doctor",
        "--no-pcsc",
        "--no-nfc",
        "--listen",
        "127.0.0.1:0",
        "--config",
    ])
    .arg(windows_path(&good));
    let (_, report) = ns.run(c);
    assert!(report.contains("OK   configuration valid"), "{report}");
    let mut c = ns.windows();
    c.args(["demo", "--listen", "127.0.0.1:0", "--config"])
        .arg(windows_path(&bad));
    let mut refused = ns.spawn("bad-users", c);
    let status = refused.wait();
    assert_eq!(
        status.code(),
        Some(2),
        "an unknown account: {}",
        refused.stderr()
    );
    assert!(
        refused.stderr().contains("allowed_users"),
        "{}",
        refused.stderr()
    );

    // A Windows subscriber gets the demo's identities, then 1001 on a graceful stop.
    let mut client = {
        let mut c = ns.windows();
        c.args(["client", "--url", &url(wport), "--timeout", "300"])
            .args(["--send", &request(1, "subscribe", json!({}))]);
        ns.spawn("client", c)
    };
    client.next_event("identity.read", Some("sim:0"));
    let status = windows.interrupt();
    client.next_line(|l| l.starts_with("close "), "the close code");
    assert_eq!(
        client.lines().last().map(String::as_str),
        Some("close 1001")
    );
    assert!(
        status.success(),
        "daemon exit: {status}; stderr:\n{}",
        windows.stderr()
    );
    assert!(linux.interrupt().success(), "the Linux demo's exit");
}
