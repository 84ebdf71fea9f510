//! Shared harness for integration tests: the real daemon binary as a child process,
//! and WebSocket clients over loopback. Waits on conditions (the ready line, a
//! matching message), never on fixed sleeps.
#![allow(dead_code)]

pub mod browser;
pub mod firefox;
pub mod lna;
pub mod os_user;
pub mod schema;
pub mod screen;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait may take before the test fails loudly.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `vitale-bridge` process; killed on drop.
pub struct Daemon {
    /// The child process.
    pub child: Child,
    /// The port from the ready line.
    pub port: u16,
    /// File receiving the daemon's stderr (its logs).
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts the binary with `args` (e.g. `["demo", "--listen", "127.0.0.1:0"]`) and
    /// waits for its ready line `listening on ws://127.0.0.1:PORT/v1`.
    pub fn spawn(args: &[&str]) -> Daemon {
        Self::spawn_env(args, &[])
    }

    /// Like [`Daemon::spawn`] with extra environment variables.
    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::spawn_wrapped::<&str>(&[], args, env)
    }

    /// Like [`Daemon::spawn_env`], the binary run through `wrapper` (e.g. `ip netns
    /// exec NAME`, or `["unshare", "-n", "sh", "-c", "…; exec \"$0\" \"$@\""]`): the
    /// wrapper's arguments come first, then the binary's path, then `args`. The
    /// wrapper must exec the daemon, so the child is the daemon itself.
    pub fn spawn_wrapped<S: AsRef<std::ffi::OsStr>>(
        wrapper: &[S],
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let bin = env!("CARGO_BIN_EXE_vitale-bridge");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
        };
        cmd.args(args)
            // Keep the user's and the machine's config files out of tests.
            .env("XDG_CONFIG_HOME", dir.path())
            .env("HOME", dir.path())
            .env("VITALE_BRIDGE_SYSTEM_CONFIG", dir.path().join("none.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn vitale-bridge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Drain so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("no ready line from vitale-bridge {args:?}; log:\n{log}");
            }
        };
        let port = line
            .strip_prefix("listening on ws://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/v1"))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        Daemon {
            child,
            port,
            log_path,
            _dir: dir,
        }
    }

    /// The WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1", self.port)
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC client over a real WebSocket.
pub struct Client {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Notifications received while waiting for responses, in order.
    pub pending: std::collections::VecDeque<Value>,
}

impl Client {
    /// Connects as a native client (no Origin header).
    pub async fn connect(url: &str) -> Client {
        Self::connect_with(url, &[])
            .await
            .expect("websocket connect")
    }

    /// Connects with extra handshake headers, e.g. `[("Origin", "https://a.example")]`.
    pub async fn connect_with(
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut req = url.into_client_request()?;
        for (k, v) in headers {
            req.headers_mut()
                .insert(http_name(k), v.parse().expect("header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Client {
            ws,
            next_id: 1,
            pending: Default::default(),
        })
    }

    /// Sends a request and returns the whole response object (`result` or `error`).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc":"2.0","id":id,"method":method,"params":params});
        self.send_text(&req.to_string()).await;
        loop {
            let msg = self.recv().await;
            if msg.get("id") == Some(&json!(id)) {
                // Every response any integration test gets is checked against the
                // published protocol (schema/protocol.schema.json).
                schema::assert_response(method, &msg);
                return msg;
            }
            self.pending.push_back(msg);
        }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_string()))
            .await
            .expect("send");
    }

    /// The next JSON message from the server (fails the test after [`WAIT`]).
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection ended")
                .expect("websocket error");
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("server sent JSON");
                    schema::assert_server_message(&v);
                    return v;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next `event` notification's params, queued ones first.
    pub async fn next_event(&mut self) -> Value {
        loop {
            let msg = match self.pending.pop_front() {
                Some(m) => m,
                None => self.recv().await,
            };
            if msg.get("method") == Some(&json!("event")) {
                return msg["params"].clone();
            }
        }
    }

    /// Skips events until one of type `ty` arrives and returns it.
    pub async fn wait_event(&mut self, ty: &str) -> Value {
        loop {
            let ev = self.next_event().await;
            if ev["type"] == ty {
                return ev;
            }
        }
    }
}

fn http_name(k: &str) -> tokio_tungstenite::tungstenite::http::HeaderName {
    tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name")
}

/// Fails loudly with an install hint when a system tool a test needs is missing.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{tool}` is required for this test: apt-get install -y {package} (or run scripts/test, which installs it)"
    );
}

/// `GET path` on the daemon at `127.0.0.1:port` with a valid Host header: the status
/// code and the body.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    http_get_on(s, port, path).await
}

/// [`http_get`] over an already connected stream (e.g. one opened inside a network
/// namespace).
pub async fn http_get_on(mut s: TcpStream, port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, body.to_string())
}

/// The value of an unlabelled series in a Prometheus exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
