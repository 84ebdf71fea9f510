//! product.md §4.1 over real loopback sockets: Host and Origin rules (403 before any
//! 101), the client limit (503), the handshake deadline, and the plain-HTTP routes.
mod support;
mod ws_harness;

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vitale_bridge::server::ServerConfig;
use ws_harness::{Server, WAIT, cfg, raw_http, status_of, upgrade_request};

async fn assert_refused(port: u16, host: &str, origin: Option<&str>, status: u16) {
    let response = raw_http(port, &upgrade_request(host, origin)).await;
    assert_eq!(
        status_of(&response),
        status,
        "host {host:?} origin {origin:?}: {response}"
    );
    assert!(
        !response.contains("101") && !response.contains("Sec-WebSocket-Accept"),
        "upgrade leaked for {origin:?}: {response}"
    );
}

async fn assert_upgraded(port: u16, host: &str, origin: Option<&str>) {
    let response = raw_http(port, &upgrade_request(host, origin)).await;
    assert!(
        response.starts_with("HTTP/1.1 101 "),
        "host {host:?} origin {origin:?}: {response}"
    );
    assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_be_loopback_with_our_port() {
    let server = Server::start(cfg()).await;
    let p = server.port;
    for ok in [
        format!("127.0.0.1:{p}"),
        format!("localhost:{p}"),
        format!("[::1]:{p}"),
    ] {
        assert_upgraded(p, &ok, None).await;
    }
    for bad in [
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        format!("127.0.0.1:{}", p.wrapping_add(1)),
        format!("evil.example:{p}"),
        format!("localhost.evil.example:{p}"),
        format!("127.0.0.1.nip.io:{p}"),
        format!("localhost.:{p}"),
        format!("0.0.0.0:{p}"),
        format!("192.168.1.10:{p}"),
    ] {
        assert_refused(p, &bad, None, 403).await;
    }
    // No Host at all, and two Host headers.
    let no_host = "GET /v1 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    assert_eq!(status_of(&raw_http(p, no_host).await), 403);
    let two = format!(
        "GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    assert_eq!(status_of(&raw_http(p, &two).await), 403);
    // The plain routes are behind the Host rule too (DNS rebinding).
    let health = format!("GET /health HTTP/1.1\r\nHost: evil.example:{p}\r\n\r\n");
    assert_eq!(status_of(&raw_http(p, &health).await), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_rules_and_tricks() {
    let server = Server::start(cfg()).await;
    let p = server.port;
    let host = format!("127.0.0.1:{p}");
    for ok in [
        "https://app.example",
        "https://APP.Example",
        "https://app.example:443",
        "http://clinic.local:8080",
    ] {
        assert_upgraded(p, &host, Some(ok)).await;
    }
    for bad in [
        "null",
        "NULL",
        "https://app.example.evil.example",
        "https://evilapp.example",
        "https://sub.app.example",
        "https://app.exampl",
        "https://app.example.",
        "https://app.example:8443",
        "http://app.example",
        "wss://app.example",
        "https://app.example:80",
        "https://app.example/",
        "https://app.example@evil.example",
        "https://evil.example/https://app.example",
        "http://clinic.local",
        "http://clinic.local:80",
        "http://clinic.local:8081",
        "https://clinic.local:8080",
        "*",
        "",
        "file://",
        "chrome-extension://abcdefghijklmnop",
        // The daemon's own origin on another port or scheme is a different origin.
        &format!("http://127.0.0.1:{}", p.wrapping_add(1)),
        &format!("https://127.0.0.1:{p}"),
        "http://127.0.0.1",
    ] {
        assert_refused(p, &host, Some(bad), 403).await;
    }
    // Two Origin headers.
    let two = format!(
        "GET /v1 HTTP/1.1\r\nHost: {host}\r\nOrigin: https://app.example\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    assert_eq!(status_of(&raw_http(p, &two).await), 403);
    // The daemon's own origin (its status page) is allowed, on every loopback name.
    assert_upgraded(p, &host, Some(&format!("http://127.0.0.1:{p}"))).await;
    assert_upgraded(p, &host, Some(&format!("http://localhost:{p}"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_origins_fail_for_a_real_websocket_client() {
    let server = Server::start(cfg()).await;
    let err = support::Client::connect_with(&server.url(), &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 403),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    let mut ok = support::Client::connect_with(&server.url(), &[("Origin", "https://app.example")])
        .await
        .expect("allowed origin");
    let hello = ok.call("hello", json!({})).await;
    assert_eq!(hello["result"]["server"], "vitale-bridge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_clients_depend_on_config() {
    let allowed = Server::start(cfg()).await;
    assert_upgraded(allowed.port, &format!("127.0.0.1:{}", allowed.port), None).await;
    let denied = Server::start(ServerConfig {
        allow_native_clients: false,
        ..cfg()
    })
    .await;
    let host = format!("127.0.0.1:{}", denied.port);
    assert_refused(denied.port, &host, None, 403).await;
    assert_upgraded(denied.port, &host, Some("https://app.example")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limit_gives_503_and_frees_on_close() {
    let server = Server::start(ServerConfig {
        max_clients: 2,
        ..cfg()
    })
    .await;
    let host = format!("127.0.0.1:{}", server.port);
    let a = support::Client::connect(&server.url()).await;
    let mut b = support::Client::connect(&server.url()).await;
    assert_eq!(b.call("status", json!({})).await["result"]["clients"], 2);
    assert_refused(server.port, &host, None, 503).await;
    assert_refused(server.port, &host, Some("https://app.example"), 503).await;
    drop(a);
    // The slot comes back once the server sees the connection end.
    ws_harness::until("slot released", || server.hub.status().clients == 1).await;
    let mut c = support::Client::connect(&server.url()).await;
    assert_eq!(c.call("status", json!({})).await["result"]["clients"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshake_is_closed_and_holds_no_slot() {
    let server = Server::start(ServerConfig {
        max_clients: 1,
        handshake_timeout: Duration::from_millis(300),
        ..cfg()
    })
    .await;
    let mut slow = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    slow.write_all(format!("GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", server.port).as_bytes())
        .await
        .expect("partial head");
    let mut silent = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    // With max_clients = 1, a real client still gets in while both dawdle.
    let mut client = support::Client::connect(&server.url()).await;
    assert_eq!(
        client.call("hello", json!({})).await["result"]["protocol"],
        1
    );
    for s in [&mut slow, &mut silent] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("server closes a handshake that never completes")
            .unwrap_or(0);
        assert_eq!(n, 0, "no response expected, got {:?}", &buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_page_and_unknown_paths() {
    let server = Server::start(cfg()).await;
    let p = server.port;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n");
    let health = raw_http(p, &get("/health")).await;
    assert_eq!(status_of(&health), 200);
    let body = health.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        v,
        json!({"status":"ok","version": env!("CARGO_PKG_VERSION")})
    );

    let page = raw_http(p, &get("/")).await;
    assert_eq!(status_of(&page), 200);
    assert!(page.contains("text/html"));
    assert!(page.contains("Content-Security-Policy"));
    assert!(page.contains("/status.js"));
    let js = raw_http(p, &get("/status.js")).await;
    assert_eq!(status_of(&js), 200);
    assert!(js.contains("location.host + \"/v1\""));
    assert!(!js.contains("innerHTML"));

    assert_eq!(status_of(&raw_http(p, &get("/nope")).await), 404);
    assert_eq!(status_of(&raw_http(p, &get("/v1/x")).await), 404);
    let post = format!("POST /health HTTP/1.1\r\nHost: localhost:{p}\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status_of(&raw_http(p, &post).await), 405);
    // /v1 without an upgrade.
    assert_eq!(status_of(&raw_http(p, &get("/v1")).await), 426);
    // Garbage and oversized heads.
    assert_eq!(
        status_of(&raw_http(p, "\x16\x03\x01garbage\r\n\r\n").await),
        400
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: localhost:{p}\r\nX: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(status_of(&raw_http(p, &big).await), 431);
}
