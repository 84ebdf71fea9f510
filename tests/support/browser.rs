//! Headless Chromium driven over the DevTools protocol, and a tiny static HTTP server
//! to serve test pages from an origin of the test's choosing. Used by
//! `tests/browser_*.rs`.
//!
//! Chromium is Debian's `/usr/bin/chromium` with the flags of /work/shared/rig.md;
//! a missing browser fails the test with an install hint.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

/// How to start Chromium: [`Launch::default`] is the plain headless browser of the
/// loopback tests.
#[derive(Default)]
pub struct Launch {
    /// Program and arguments put in front of `chromium` (e.g. `ip netns exec NAME`).
    pub wrapper: Vec<String>,
    /// Extra Chromium flags.
    pub args: Vec<String>,
    /// Headed, on this X display, instead of `--headless`.
    pub display: Option<String>,
    /// Opens a TCP connection where the browser runs (another network namespace).
    pub connect: Option<Box<dyn Fn(std::net::SocketAddr) -> TcpStream>>,
}

/// A headless Chromium with one page attached; killed on drop.
pub struct Browser {
    child: Child,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: String,
    events: Vec<Value>,
    stderr: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a fresh profile and opens one blank page.
    pub async fn launch() -> Browser {
        Self::launch_with(Launch::default()).await
    }

    /// Starts Chromium as `launch` says (a wrapper such as `ip netns exec`, extra
    /// flags, headed on an X display) and opens one blank page.
    pub async fn launch_with(launch: Launch) -> Browser {
        let exe = super::require_tool("chromium", "chromium");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = match launch.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        if launch.display.is_none() {
            cmd.arg("--headless");
        }
        cmd.args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",
        ])
        .args(&launch.args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(display) = &launch.display {
            cmd.env("DISPLAY", display);
        }
        let mut child = cmd.spawn().expect("spawn chromium");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line
                        .split_once("DevTools listening on ")
                        .map(|(_, u)| u.trim().to_string())
                    {
                        let _ = tx.send(url);
                    }
                    lines.lock().expect("lines").push(line);
                }
            });
        }
        let url = match rx.recv_timeout(WAIT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "chromium printed no DevTools URL; stderr:\n{}",
                    lines.lock().expect("lines").join("\n")
                );
            }
        };
        let ws = match &launch.connect {
            None => {
                tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .expect("connect to DevTools")
                    .0
            }
            Some(connect) => {
                // The browser listens inside another network namespace: open the
                // socket there, then speak WebSocket over it.
                let authority = url
                    .strip_prefix("ws://")
                    .and_then(|r| r.split('/').next())
                    .expect("DevTools URL");
                let addr = authority.parse().expect("DevTools address");
                let tcp = connect(addr);
                tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(tcp))
                    .await
                    .expect("connect to DevTools")
                    .0
            }
        };
        let mut browser = Browser {
            child,
            ws,
            next_id: 1,
            session: String::new(),
            events: Vec::new(),
            stderr: lines,
            _profile: profile,
        };
        let target = browser
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        browser.page("Page.enable", json!({})).await;
        browser.page("Runtime.enable", json!({})).await;
        // WebSocket frames the page receives, to check what reached it.
        browser.page("Network.enable", json!({})).await;
        // Network errors (ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS) reach the
        // console as log entries, not console API calls.
        browser.page("Log.enable", json!({})).await;
        browser
    }

    /// Sends a DevTools command (to the page session when `session` is set) and
    /// returns its result; events that arrive meanwhile are kept.
    pub async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        match self.try_send(session, method, params).await {
            Ok(v) => v,
            Err(err) => panic!("DevTools {method} failed: {err}"),
        }
    }

    /// Like [`send`](Self::send), returning DevTools' error object instead of failing.
    pub async fn try_send(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let reply = self.recv().await;
            if reply.get("id") == Some(&json!(id)) {
                if let Some(err) = reply.get("error") {
                    return Err(err.clone());
                }
                return Ok(reply["result"].clone());
            }
            self.events.push(reply);
        }
    }

    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("DevTools silent")
                .expect("DevTools connection ended")
                .expect("DevTools socket error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(&t).expect("DevTools sent JSON");
            }
        }
    }

    /// A command on the page.
    pub async fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// Navigates and waits for the page's load event.
    pub async fn navigate(&mut self, url: &str) {
        self.events.clear();
        let nav = self.page("Page.navigate", json!({"url": url})).await;
        if let Some(err) = nav.get("errorText") {
            panic!("navigation to {url} failed: {err}");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if self
                .events
                .iter()
                .any(|e| e["method"] == "Page.loadEventFired")
            {
                return;
            }
            assert!(Instant::now() < deadline, "{url} did not load");
            let ev = self.recv().await;
            self.events.push(ev);
        }
    }

    /// Evaluates a JavaScript expression in the page (awaiting promises) and returns
    /// its value as JSON.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .page(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(ex) = r.get("exceptionDetails") {
            panic!("page threw evaluating {expression}: {ex}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expression` until it yields something other than null/false/undefined,
    /// and returns it; fails after [`WAIT`] with the page's console output.
    pub async fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({expression}); console:\n{}",
                    self.console().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Console messages and uncaught exceptions seen so far.
    pub fn console(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => Some(format!(
                    "console.{}: {}",
                    e["params"]["type"].as_str().unwrap_or("?"),
                    e["params"]["args"]
                )),
                Some("Runtime.exceptionThrown") => {
                    Some(format!("exception: {}", e["params"]["exceptionDetails"]))
                }
                _ => None,
            })
            .collect()
    }

    /// Payloads of the WebSocket text frames the page received since the last
    /// navigation (as far as events have been read: call after a `wait_for`).
    pub fn ws_frames_received(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.webSocketFrameReceived")
            .filter_map(|e| e["params"]["response"]["payloadData"].as_str())
            .map(str::to_string)
            .collect()
    }

    /// Every DevTools event seen since the last navigation, as JSON text (to look
    /// for a network error code the page itself cannot see).
    pub fn events_text(&self) -> String {
        self.events
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Chromium's own stderr, for failure reports.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One file the static server serves.
#[derive(Clone)]
pub struct Route {
    /// Request path, e.g. `/index.html`.
    pub path: String,
    /// `Content-Type` header.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Route {
    /// A route serving `body` as `content_type`.
    pub fn new(path: &str, content_type: &'static str, body: impl Into<Vec<u8>>) -> Route {
        Route {
            path: path.to_string(),
            content_type,
            body: body.into(),
        }
    }
}

/// A static HTTP/1.1 server on `127.0.0.1:<port>` (its own origin), serving fixed
/// routes from a background thread for the rest of the test process.
pub struct StaticServer {
    /// The listening port.
    pub port: u16,
}

impl StaticServer {
    /// Binds a free loopback port and serves `routes`.
    pub fn start(routes: Vec<Route>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind static server");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let routes = routes.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_string();
                    let response = match routes.iter().find(|r| r.path == path) {
                        Some(r) => {
                            let mut out = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                                r.content_type,
                                r.body.len()
                            )
                            .into_bytes();
                            out.extend_from_slice(&r.body);
                            out
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = stream.write_all(&response);
                });
            }
        });
        StaticServer { port }
    }

    /// This server's origin, e.g. `http://127.0.0.1:41234`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// The test page: imports the client module from the daemon (`/client.js`, a
/// cross-origin module import) or, with `?local`, from its own origin, and records
/// what it sees in `window.t` for the test to poll.
pub const PRACTICE_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>practice software</title>
<script type="module">
const q = new URLSearchParams(location.search);
const port = q.get("port");
const url = `ws://127.0.0.1:${port}/v1`;
const t = (window.t = { connected: false, error: null, identities: [], inserted: [], readers: [], read: null, sig: null, rawOpened: false, rawClose: null });
const { VitaleBridge, randomChallenge } = await import(q.has("local") ? "/vitale-bridge.js" : `http://127.0.0.1:${port}/client.js`);
t.loaded = true;
const bridge = new VitaleBridge({ url, reconnect: false, client: "browser-test" });
bridge.on("identity.read", async (ev) => {
  t.identities.push({ reader: ev.reader, source: ev.data.source, n: ev.data.beneficiaries.length,
                      nirType: typeof ev.data.beneficiaries[0].nir });
  try {
    if (ev.reader === "sim:0" && !t.read) {
      const id = await bridge.read("sim:0");
      t.read = { source: id.source, same: JSON.stringify(id) === JSON.stringify(ev.data) };
    }
    if (ev.reader === "sim:1" && !t.sig) {
      const s = await bridge.sign("sim:1", randomChallenge());
      t.sig = { origin: s.origin, verified: s.verified, alg: s.alg };
    }
  } catch (e) {
    t.opError = { code: e.code, reason: e.reason };
  }
});
bridge.on("card.inserted", (ev) => t.inserted.push({ reader: ev.reader, seq: ev.seq }));
bridge.on("readers", (m) => { t.readers = [...m.keys()].sort(); });
bridge.connect().then(() => { t.connected = true; }, (e) => { t.error = { code: e.code, reason: e.reason, retriable: e.retriable }; });
// The same attempt with the bare browser API: the page only ever sees a failed socket.
const raw = new WebSocket(url);
raw.onopen = () => { t.rawOpened = true; };
raw.onclose = (e) => { t.rawClose = e.code; };
</script>"#;

/// A static site on its own origin serving [`PRACTICE_PAGE`] at `/` and the client
/// module at `/vitale-bridge.js`.
pub fn practice_site() -> StaticServer {
    let js = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/vitale-bridge.js"),
    )
    .expect("clients/js/vitale-bridge.js");
    StaticServer::start(vec![
        Route::new("/", "text/html; charset=utf-8", PRACTICE_PAGE),
        Route::new("/vitale-bridge.js", "text/javascript; charset=utf-8", js),
    ])
}

/// Opens the daemon's status page on `port` and waits until it is connected, shows
/// this build's version and lists both demo readers (`sim:0`, `sim:1`).
pub async fn open_status_page(port: u16) -> Browser {
    let mut browser = Browser::launch().await;
    browser.navigate(&format!("http://127.0.0.1:{port}/")).await;
    browser
        .wait_for(
            "document.getElementById('conn').textContent === 'connected'",
            "the page to connect",
        )
        .await;
    let version = browser
        .wait_for(
            "document.getElementById('version').textContent || null",
            "the version",
        )
        .await;
    assert_eq!(version, format!("v{}", env!("CARGO_PKG_VERSION")));
    let rows = browser
        .wait_for(
            "(() => { const t = document.getElementById('readers').innerText; \
               return t.includes('sim:0') && t.includes('sim:1') ? t : null })()",
            "both simulated readers",
        )
        .await;
    assert!(rows.as_str().expect("text").contains("simulated"));
    browser
}
