//! Privacy (product.md §5): with logs at trace level, no NIR, INS, name or birth date
//! of the demo identities reaches the daemon's logs, the status page or the status
//! page's own (redacted) WebSocket view — while the protocol does carry them to an
//! allowed client, so this test can tell a leak from an empty run.
mod support;

use std::io::{Read, Write};

use serde_json::{Value, json};
use support::{Client, Daemon};

/// Every sensitive string of an Identity object, in the forms a leak could take:
/// as text, and as the hex of the card's ASCII / ISO-8859-1 bytes (APDU traces).
fn secrets(identity: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        if s.len() < 3 {
            return;
        }
        out.push(s.to_string());
        let latin1: Vec<u8> = s.chars().map(|c| u32::from(c).min(0xFF) as u8).collect();
        out.push(hex::encode_upper(&latin1));
        out.push(hex::encode(&latin1));
    };
    for b in identity["beneficiaries"].as_array().expect("beneficiaries") {
        for key in ["surname", "givenName", "birthDate", "birthDateRaw", "nir"] {
            if let Some(s) = b[key].as_str() {
                add(s);
            }
        }
        if let Some(m) = b["ins"]["matricule"].as_str() {
            add(m);
        }
        if let Some(nir) = b["nir"].as_str() {
            add(&nir[..13]);
        }
    }
    if let Some(c) = identity["apcv"]["context"].as_str() {
        add(c);
    }
    out
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(support::WAIT)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("response");
    body
}

#[tokio::test]
async fn identities_never_reach_logs_or_the_status_page() {
    let mut d = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "50",
        "--log-level",
        "trace",
    ]);
    let own_origin = format!("http://127.0.0.1:{}", d.port);
    let mut native = Client::connect(&d.url()).await;
    let mut page = Client::connect_with(&d.url(), &[("Origin", &own_origin)])
        .await
        .expect("the status page's own origin connects");
    native.call("subscribe", json!({})).await;
    page.call("subscribe", json!({})).await;

    // Full demo traffic: the card and the phone read, with an explicit card.read too.
    let mut identities = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let ev = native.wait_event("identity.read").await;
        let reader = ev["reader"].as_str().expect("reader").to_string();
        if seen.insert(reader.clone()) {
            let again = native.call("card.read", json!({"reader": reader})).await;
            if let Some(r) = again.get("result") {
                identities.push(r.clone());
            }
        }
        identities.push(ev["data"].clone());
    }
    // Let the status page's view see a whole cycle (through to the phone's removal).
    let mut page_messages = Vec::new();
    let mut page_reads = 0;
    while page_reads < 2 {
        let msg = page.recv().await;
        if msg["params"]["type"] == "identity.read" {
            page_reads += 1;
        }
        page_messages.push(msg.to_string());
    }
    let readers = page.call("readers.list", json!({})).await;
    page_messages.push(readers.to_string());

    let status_page = http_get(d.port, "/");
    assert!(
        status_page.contains("200"),
        "status page served: {status_page}"
    );
    d.terminate();
    let log = d.log();
    assert!(log.contains("DEBUG"), "verbose logging was on");
    assert!(
        log.contains("identity read"),
        "reads were logged (without identities)"
    );

    let secrets: Vec<String> = identities.iter().flat_map(secrets).collect();
    assert!(
        secrets.len() > 20,
        "the protocol carried identities: {secrets:?}"
    );
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "{s:?} leaked into the log");
        assert!(!status_page.contains(s.as_str()), "{s:?} leaked into GET /");
        for m in &page_messages {
            assert!(
                !m.contains(s.as_str()),
                "{s:?} leaked to the status page view: {m}"
            );
        }
    }
}
