//! Headless Firefox ESR (Debian's `firefox-esr`) driven over Marionette, the protocol
//! geckodriver itself speaks to Firefox: length-prefixed JSON (`LEN:[0, id, name,
//! params]`) on a local TCP port the browser writes into its profile
//! (`MarionetteActivePort`, with `marionette.port` 0). Used by
//! `tests/browser_lna_firefox.rs`; a missing browser fails with an install hint.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{WAIT, require_tool};

/// How to start Firefox.
#[derive(Default)]
pub struct FirefoxLaunch {
    /// Program and arguments put in front of `firefox-esr` (namespaces).
    pub wrapper: Vec<String>,
    /// Extra preferences for the fresh profile's `user.js`.
    pub prefs: Vec<(String, Value)>,
    /// Opens a TCP connection where the browser runs (another network namespace).
    pub connect: Option<Box<dyn Fn(SocketAddr) -> TcpStream>>,
}

/// A headless Firefox with one Marionette session; killed on drop.
pub struct Firefox {
    child: Child,
    stream: TcpStream,
    next_id: u64,
    /// `browserVersion` from the session.
    pub version: String,
    _profile: tempfile::TempDir,
}

/// Quiet, offline-friendly defaults: nothing here should reach outside the test.
const BASE_PREFS: &[(&str, &str)] = &[
    ("marionette.port", "0"),
    ("browser.shell.checkDefaultBrowser", "false"),
    ("browser.startup.homepage_override.mstone", "\"ignore\""),
    ("datareporting.policy.dataSubmissionEnabled", "false"),
    ("toolkit.telemetry.reportingpolicy.firstRun", "false"),
    ("app.update.disabledForTesting", "true"),
    ("network.captive-portal-service.enabled", "false"),
    ("network.connectivity-service.enabled", "false"),
    ("browser.safebrowsing.update.enabled", "false"),
    ("extensions.update.enabled", "false"),
];

impl Firefox {
    /// Starts Firefox with a fresh profile and opens a Marionette session that
    /// accepts the test's throwaway certificates.
    pub async fn launch(launch: FirefoxLaunch) -> Firefox {
        let exe = require_tool("firefox-esr", "firefox-esr");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut user_js = String::new();
        for (k, v) in BASE_PREFS {
            user_js.push_str(&format!("user_pref(\"{k}\", {v});\n"));
        }
        for (k, v) in &launch.prefs {
            user_js.push_str(&format!("user_pref(\"{k}\", {v});\n"));
        }
        std::fs::write(profile.path().join("user.js"), user_js).expect("user.js");
        let mut cmd = match launch.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let log = profile.path().join("firefox.log");
        let mut child = cmd
            .args(["--headless", "--marionette", "--no-remote", "--profile"])
            .arg(profile.path())
            .arg("about:blank")
            .env("HOME", profile.path())
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn firefox-esr");
        let port_file = profile.path().join("MarionetteActivePort");
        let deadline = Instant::now() + WAIT;
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                panic!(
                    "firefox-esr opened no Marionette port; output:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = match &launch.connect {
            Some(connect) => connect(addr),
            None => TcpStream::connect(addr).await.expect("connect Marionette"),
        };
        let mut ff = Firefox {
            child,
            stream,
            next_id: 1,
            version: String::new(),
            _profile: profile,
        };
        let hello = ff.read_packet().await;
        assert_eq!(hello["marionetteProtocol"], 3, "Marionette hello {hello}");
        let session = ff
            .command("WebDriver:NewSession", json!({"acceptInsecureCerts": true}))
            .await
            .expect("new session");
        ff.version = session["capabilities"]["browserVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        ff
    }

    async fn read_packet(&mut self) -> Value {
        tokio::time::timeout(WAIT, async {
            let mut len = Vec::new();
            loop {
                let b = self.stream.read_u8().await.expect("Marionette read");
                if b == b':' {
                    break;
                }
                len.push(b);
            }
            let n: usize = std::str::from_utf8(&len)
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("Marionette length");
            let mut body = vec![0u8; n];
            self.stream
                .read_exact(&mut body)
                .await
                .expect("Marionette body");
            serde_json::from_slice(&body).expect("Marionette JSON")
        })
        .await
        .expect("Marionette silent")
    }

    /// Sends a WebDriver command; its `value`/result, or the error object.
    pub async fn command(&mut self, name: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!([0, id, name, params]).to_string();
        let packet = format!("{}:{body}", body.len());
        self.stream
            .write_all(packet.as_bytes())
            .await
            .expect("Marionette write");
        loop {
            let reply = self.read_packet().await;
            if reply[0] == 1 && reply[1] == id {
                if !reply[2].is_null() {
                    return Err(reply[2].clone());
                }
                return Ok(reply[3].clone());
            }
        }
    }

    /// Navigates and waits for the load (WebDriver's page-load strategy "normal").
    pub async fn navigate(&mut self, url: &str) {
        if let Err(e) = self
            .command("WebDriver:Navigate", json!({"url": url}))
            .await
        {
            panic!("navigation to {url} failed: {e}");
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let script = format!("return ({expression});");
        match self
            .command(
                "WebDriver:ExecuteScript",
                json!({"script": script, "args": []}),
            )
            .await
        {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("page threw evaluating {expression}: {e}"),
        }
    }

    /// Polls `expression` until it is neither null nor false, and returns it.
    pub async fn wait_for(&mut self, expression: &str, what: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expression}) in Firefox"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
