//! The public-origin rig of the Local Network Access tests: practice software served
//! the way clinics meet it, from a public `https://` site, and the daemon on the
//! reception PC's loopback.
//!
//! - A network namespace the test creates (`ip netns add`), with `lo` up and
//!   [`PUBLIC_IP`] (documentation range, which Chromium classes `Public`) on it. All
//!   traffic stays inside it; it is deleted on drop.
//! - A throwaway CA and a site certificate made with `openssl` in a temp dir; the
//!   browser trusts them through its own flags or profile, never the machine's store.
//! - The site (`page_server.py`: https on 443, plain http on 80) and the real demo
//!   daemon on the namespace's `127.0.0.1`, both inside the namespace.
//! - Chromium inside the namespace, its host resolver mapping [`APP_HOST`] and
//!   [`PORTAL_HOST`] to [`PUBLIC_IP`], driven over DevTools in real time; managed
//!   policies written only into a private copy of `/etc/chromium` bind-mounted in a
//!   private mount namespace around the browser alone.
//!
//! Needs root (network and mount namespaces); `scripts/test` runs the suite as root.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use tokio::net::TcpStream;

use super::browser::{Browser, Launch};
use super::firefox::{Firefox, FirefoxLaunch};
use super::{Daemon, WAIT, require_tool};

/// The practice software's public name.
pub const APP_HOST: &str = "app.example.test";
/// A second public site that embeds the practice software in an iframe.
pub const PORTAL_HOST: &str = "portal.example.test";
/// Where both names resolve, inside the namespace (RFC 5737 TEST-NET-3).
pub const PUBLIC_IP: &str = "203.0.113.10";

/// Fails loudly unless running as root (network and mount namespaces need it).
pub fn require_root() {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    assert_eq!(
        uid, 0,
        "the Local Network Access tests create network and mount namespaces: run them as root (scripts/test does)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace of the test's own; deleted on drop.
pub struct Netns {
    /// Its name under `/run/netns`.
    pub name: String,
    ip: PathBuf,
}

impl Netns {
    /// Creates the namespace with `lo` up and [`PUBLIC_IP`] on it.
    pub fn create() -> Netns {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ip = require_tool("ip", "iproute2");
        let name = format!(
            "vb-lna-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new(&ip).args(["netns", "add", &name]));
        let ns = Netns { name, ip };
        run(Command::new(&ns.ip).args(["-n", &ns.name, "link", "set", "lo", "up"]));
        run(Command::new(&ns.ip).args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{PUBLIC_IP}/32"),
            "dev",
            "lo",
        ]));
        ns
    }

    /// `ip netns exec NAME`, to put in front of a command.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            self.ip.display().to_string(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// A connector usable from any thread (for [`Launch::connect`]).
    pub fn connector(&self) -> impl Fn(SocketAddr) -> TcpStream + 'static {
        let path = self.path();
        move |addr| connect_in(&path, addr)
    }

    /// Opens a TCP connection to `addr` inside the namespace.
    pub fn connect(&self, addr: SocketAddr) -> TcpStream {
        connect_in(&self.path(), addr)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }
}

/// A socket belongs to the namespace of the thread that created it, so a short-lived
/// thread joins the namespace, connects, and hands the socket back.
fn connect_in(ns: &Path, addr: SocketAddr) -> TcpStream {
    let ns = ns.to_path_buf();
    let std_stream = std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).expect("open netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpStream::connect_timeout(&addr, WAIT)
    })
    .join()
    .expect("connect thread")
    .unwrap_or_else(|e| panic!("connect to {addr} in the test namespace: {e}"));
    std_stream.set_nonblocking(true).expect("nonblocking");
    TcpStream::from_std(std_stream).expect("tokio stream")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A throwaway CA and a certificate for [`APP_HOST`] and [`PORTAL_HOST`] it signed.
pub struct Certs {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The site's certificate followed by the CA's (PEM chain).
    pub chain: PathBuf,
    /// The site's private key.
    pub key: PathBuf,
    /// Base64 SHA-256 of the site key's SubjectPublicKeyInfo, for Chromium's
    /// `--ignore-certificate-errors-spki-list` (trusts this key only).
    pub spki: String,
}

impl Certs {
    /// Makes them in `dir` with `openssl`.
    pub fn make(dir: &Path) -> Certs {
        let openssl = require_tool("openssl", "openssl");
        let p = |n: &str| dir.join(n);
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new(&openssl)
            .args(["req", "-x509"])
            .args(ec)
            .args([
                "-days",
                "2",
                "-subj",
                "/CN=vitale-bridge test CA (throwaway)",
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")));
        run(Command::new(&openssl)
            .arg("req")
            .args(ec)
            .args(["-subj", &format!("/CN={APP_HOST}")])
            .arg("-keyout")
            .arg(p("site.key"))
            .arg("-out")
            .arg(p("site.csr")));
        std::fs::write(
            p("ext.cnf"),
            format!(
                "subjectAltName=DNS:{APP_HOST},DNS:{PORTAL_HOST}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
            ),
        )
        .expect("write ext");
        run(Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("site.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(p("site.pem")));
        let mut chain = std::fs::read(p("site.pem")).expect("site.pem");
        chain.extend(std::fs::read(p("ca.pem")).expect("ca.pem"));
        std::fs::write(p("chain.pem"), chain).expect("chain");
        let spki = run(Command::new("sh").arg("-c").arg(format!(
            "'{o}' x509 -in '{c}' -pubkey -noout | '{o}' pkey -pubin -outform der | '{o}' dgst -sha256 -binary | base64",
            o = openssl.display(),
            c = p("site.pem").display()
        )))
        .trim()
        .to_string();
        Certs {
            ca: p("ca.pem"),
            chain: p("chain.pem"),
            key: p("site.key"),
            spki,
        }
    }
}

/// The public site's page: connects to the daemon through the JS client (served by
/// the site itself: a public page cannot even load a script from 127.0.0.1 under
/// LNA) and, unless `?noraw`, with a bare WebSocket. Records everything in
/// `window.t`, with times in ms since navigation start, and posts it to the parent
/// when framed.
pub const PUBLIC_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>practice software (public origin)</title>
<script type="module">
const q = new URLSearchParams(location.search);
const url = `ws://127.0.0.1:${q.get("port")}/v1`;
const t = (window.t = { loaded: false, secure: isSecureContext, query: {}, permission: null, connected: false,
  error: null, states: [], identities: 0, source: null, connectedMs: null, firstIdentityMs: null, failedMs: null, raw: {} });
const report = () => { if (parent !== window) parent.postMessage({ vbTest: JSON.parse(JSON.stringify(t)) }, "*"); };
for (const name of ["loopback-network", "local-network", "local-network-access"]) {
  try { t.query[name] = (await navigator.permissions.query({ name })).state; } catch { t.query[name] = "unknown-name"; }
}
const { VitaleBridge } = await import("/vitale-bridge.js");
t.loaded = true;
const bridge = new VitaleBridge({ url, reconnect: false, client: "lna-test" });
bridge.on("permission", ({ state }) => t.states.push(state));
bridge.on("identity.read", (ev) => {
  t.identities++;
  t.source = ev.data.source;
  if (t.firstIdentityMs === null) t.firstIdentityMs = performance.now();
  report();
});
bridge.connect().then(
  () => { t.connected = true; t.connectedMs = performance.now(); t.permission = bridge.permission; report(); },
  async (e) => {
    t.error = { code: e.code, permission: e.permission, retriable: e.retriable };
    t.failedMs = performance.now();
    t.permission = bridge.permission;
    t.queryAfter = (await navigator.permissions.query({ name: "loopback-network" })).state;
    report();
  },
);
if (!q.has("noraw")) {
  const raw = new WebSocket(url);
  const start = performance.now();
  raw.onopen = () => { t.raw.opened = true; raw.close(); report(); };
  raw.onclose = (e) => { t.raw.close = e.code; t.raw.ms = performance.now() - start; report(); };
}
report();
</script>"#;

/// A page of [`PORTAL_HOST`] that frames the practice software (`?allow=` sets the
/// iframe's `allow` attribute) and keeps the frame's reports in `window.frameT`.
pub const PORTAL_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>portal embedding the practice software</title>
<body>
<script>
window.frameT = null;
addEventListener("message", (e) => {
  if (e.origin === "https://app.example.test" && e.data && e.data.vbTest) window.frameT = e.data.vbTest;
});
const q = new URLSearchParams(location.search);
const f = document.createElement("iframe");
if (q.has("allow")) f.allow = q.get("allow");
f.src = `https://app.example.test/?noraw&port=${q.get("port")}`;
document.body.appendChild(f);
</script>"#;

/// The page server process inside the namespace; killed on drop.
pub struct PageServer {
    child: Child,
}

impl PageServer {
    fn start(ns: &Netns, root: &Path, certs: &Certs, script: &Path) -> PageServer {
        let python = require_tool("python3", "python3");
        let prefix = ns.exec_prefix();
        let mut child = Command::new(&prefix[0])
            .args(&prefix[1..])
            .arg(python)
            .arg(script)
            .arg(root)
            .arg(&certs.chain)
            .arg(&certs.key)
            .arg(PUBLIC_IP)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn page server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        match rx.recv_timeout(WAIT) {
            Ok(Some(Ok(line))) if line == "ready" => PageServer { child },
            other => {
                let _ = child.kill();
                panic!("page server did not start: {other:?}");
            }
        }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything of one public-origin test; torn down in reverse on drop.
pub struct PublicRig {
    /// The demo daemon on the namespace's 127.0.0.1.
    pub daemon: Daemon,
    pages: PageServer,
    /// The namespace (dropped after the processes in it).
    pub netns: Netns,
    /// The certificates.
    pub certs: Certs,
    dir: tempfile::TempDir,
}

/// Origins the rig's daemon allows: the practice software over https and over http.
pub fn allowed_origins() -> [String; 2] {
    [format!("https://{APP_HOST}"), format!("http://{APP_HOST}")]
}

impl PublicRig {
    /// Namespace, certificates, site and daemon (`--demo-interval-ms` as given).
    pub fn start(demo_interval_ms: u32) -> PublicRig {
        let netns = Netns::create();
        let dir = tempfile::tempdir().expect("rig dir");
        let certs = Certs::make(dir.path());
        let root = dir.path().join("site");
        std::fs::create_dir(&root).expect("site dir");
        std::fs::write(root.join("index.html"), PUBLIC_PAGE).expect("page");
        std::fs::write(root.join("portal.html"), PORTAL_PAGE).expect("portal");
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/vitale-bridge.js"),
            root.join("vitale-bridge.js"),
        )
        .expect("client");
        let script = dir.path().join("page_server.py");
        std::fs::write(&script, include_str!("page_server.py")).expect("script");
        let pages = PageServer::start(&netns, &root, &certs, &script);
        let [https, http] = allowed_origins();
        let interval = demo_interval_ms.to_string();
        let daemon = Daemon::spawn_wrapped(
            &netns.exec_prefix(),
            &[
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--demo-interval-ms",
                &interval,
                "--allow-origin",
                &https,
                "--allow-origin",
                &http,
            ],
            &[],
        );
        PublicRig {
            daemon,
            pages,
            netns,
            certs,
            dir,
        }
    }

    /// The practice software's page over `scheme` (`https` or `http`).
    pub fn app_url(&self, scheme: &str) -> String {
        format!("{scheme}://{APP_HOST}/?port={}", self.daemon.port)
    }

    /// The portal page framing it, with `allow` on the iframe if given.
    pub fn portal_url(&self, allow: Option<&str>) -> String {
        let mut u = format!(
            "https://{PORTAL_HOST}/portal.html?port={}",
            self.daemon.port
        );
        if let Some(a) = allow {
            u.push_str("&allow=");
            u.push_str(a);
        }
        u
    }

    /// A private `/etc/chromium` holding `policy` (if any) as a managed policy file.
    fn chromium_etc(&self, policy: Option<&Value>) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let etc = self.dir.path().join(format!(
            "etc-chromium-{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let managed = etc.join("policies/managed");
        std::fs::create_dir_all(&managed).expect("policy dir");
        if let Ok(entries) = std::fs::read_dir("/etc/chromium") {
            for e in entries.flatten() {
                if e.path().is_file() {
                    let _ = std::fs::copy(e.path(), etc.join(e.file_name()));
                }
            }
        }
        if let Some(p) = policy {
            std::fs::write(managed.join("vitale-bridge-test.json"), p.to_string())
                .expect("policy file");
        }
        etc
    }

    /// Chromium inside the namespace, with `policy` as its only managed policy (the
    /// machine's own policy directory is hidden), headed on `display` if given.
    pub async fn chromium(&self, policy: Option<Value>, display: Option<&str>) -> Browser {
        require_tool("unshare", "util-linux");
        let etc = self.chromium_etc(policy.as_ref());
        // The private mount namespace lives as long as the browser: the bind mount
        // is never visible to the rest of the machine.
        let mut wrapper: Vec<String> = vec![
            "unshare".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            r#"mount --bind "$1" /etc/chromium && shift && exec "$@""#.into(),
            "sh".into(),
            etc.display().to_string(),
        ];
        wrapper.extend(self.netns.exec_prefix());
        Browser::launch_with(Launch {
            wrapper,
            args: vec![
                format!("--host-resolver-rules=MAP {APP_HOST} {PUBLIC_IP}, MAP {PORTAL_HOST} {PUBLIC_IP}"),
                format!("--ignore-certificate-errors-spki-list={}", self.certs.spki),
            ],
            display: display.map(str::to_string),
            connect: Some(Box::new(self.netns.connector())),
        })
        .await
    }

    /// Firefox ESR inside the namespace, `policies` (if any) as its `policies.json` in
    /// a private copy of its distribution directory, bind-mounted in a private mount
    /// namespace; both test names resolve to [`PUBLIC_IP`] (`network.dns.forceResolve`;
    /// IP literals such as 127.0.0.1 are not resolved).
    pub async fn firefox(&self, policies: Option<Value>, prefs: &[(&str, Value)]) -> Firefox {
        require_tool("unshare", "util-linux");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dist = self
            .dir
            .path()
            .join(format!("ff-dist-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dist).expect("dist dir");
        if let Some(p) = &policies {
            std::fs::write(
                dist.join("policies.json"),
                json!({"policies": p}).to_string(),
            )
            .expect("policies.json");
        }
        let mut wrapper: Vec<String> = vec![
            "unshare".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            r#"mount --bind "$1" /usr/lib/firefox-esr/distribution && shift && exec "$@""#.into(),
            "sh".into(),
            dist.display().to_string(),
        ];
        wrapper.extend(self.netns.exec_prefix());
        Firefox::launch(FirefoxLaunch {
            wrapper,
            prefs: std::iter::once(("network.dns.forceResolve".to_string(), json!(PUBLIC_IP)))
                .chain(prefs.iter().map(|(k, v)| (k.to_string(), v.clone())))
                .collect(),
            connect: Some(Box::new(self.netns.connector())),
        })
        .await
    }

    /// The daemon's `/diagnostics`, fetched inside the namespace.
    pub async fn diagnostics(&self) -> Value {
        let port = self.daemon.port;
        let s = self.netns.connect(SocketAddr::from(([127, 0, 0, 1], port)));
        let (status, body) = super::http_get_on(s, port, "/diagnostics").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("diagnostics JSON")
    }

    /// Waits until the daemon has counted at least `n` silent connections.
    pub async fn wait_silent(&self, n: u64) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let d = self.diagnostics().await;
            if d["silentConnections"]["total"].as_u64().unwrap_or(0) >= n {
                return d;
            }
            assert!(
                Instant::now() < deadline,
                "daemon counted {d} silent connections, wanted {n}; log:\n{}",
                self.daemon.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Waits for the page's client to settle and returns `window.t`.
pub async fn settled(browser: &mut Browser) -> Value {
    browser
        .wait_for(
            "window.t && window.t.loaded && (window.t.connected || window.t.queryAfter) && window.t",
            "the client to connect or fail",
        )
        .await
}

/// Grants `permission` to `origin` through DevTools (what a user's "Allow" does).
pub async fn grant(browser: &mut Browser, permission: &str, origin: &str) -> Result<Value, Value> {
    browser
        .try_send(
            None,
            "Browser.setPermission",
            json!({"permission": {"name": permission}, "setting": "granted", "origin": origin}),
        )
        .await
}

/// The two allow-list policies that unblock a public origin, for `origin`.
pub fn allow_policies(origin: &str) -> Value {
    json!({
        "LocalNetworkAccessAllowedForUrls": [origin],
        "LoopbackNetworkAllowedForUrls": [origin],
    })
}
