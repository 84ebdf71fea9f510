//! The daemon serves the JavaScript client at `/client.js`, byte for byte the module
//! in `clients/js/`, importable cross-origin, and only to loopback Host names.

mod support;

use support::{Daemon, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(port: u16, host: &str, path: &str) -> (String, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answered")
        .expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    (head, out[split + 4..].to_vec())
}

#[tokio::test]
async fn client_js_is_the_published_module() {
    let daemon = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let (head, body) = get(
        daemon.port,
        &format!("127.0.0.1:{}", daemon.port),
        "/client.js",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/javascript"), "{head}");
    assert!(lower.contains("access-control-allow-origin: *"), "{head}");
    let module = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/vitale-bridge.js"),
    )
    .expect("module");
    assert_eq!(
        body, module,
        "served module differs from clients/js/vitale-bridge.js"
    );
    // DNS rebinding: a foreign Host gets nothing.
    let (head, _) = get(daemon.port, "evil.example", "/client.js").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}
