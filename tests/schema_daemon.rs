//! Everything a real demo daemon says matches `schema/protocol.schema.json`: every
//! method's result, the protocol and application errors, and the events it emits
//! while its virtual cards come and go. (`support::Client` checks each message
//! it receives; this test makes sure every kind of message is actually exercised.)

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use serde_json::{Value, json};
use support::schema::{assert_request, assert_response, assert_valid};
use support::{Client, Daemon, WAIT};

const CHALLENGE: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80";

#[tokio::test]
async fn messages_exchanged_with_a_demo_daemon_match_the_schema() {
    let daemon = Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "200",
    ]);
    let mut c = Client::connect(&daemon.url()).await;

    let hello = call(
        &mut c,
        "hello",
        json!({"client":"schema-test","protocol":1}),
    )
    .await;
    assert_eq!(hello["result"]["protocol"], 1);
    let status = call(&mut c, "status", json!({})).await;
    assert_eq!(
        status["result"]["pcsc"], "disabled",
        "demo mode has no PC/SC"
    );
    call(&mut c, "readers.list", json!({})).await;
    let sub = call(&mut c, "subscribe", json!({})).await;
    assert_valid("SubscribeResult", &sub["result"]);

    // Application and protocol errors.
    let missing = call(&mut c, "card.read", json!({"reader":"pcsc:no such reader"})).await;
    assert_eq!(missing["error"]["data"]["reason"], "READER_NOT_FOUND");
    let unknown = c.call("no.such.method", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    let bad = c
        .call("card.sign", json!({"reader":"sim:1","challenge":"c2hvcnQ"}))
        .await;
    assert_eq!(bad["error"]["code"], -32602);
    c.send_text("{not json").await;
    let parse = next_error(&mut c).await;
    assert_valid("ErrorResponse", &parse);
    assert_eq!(parse["error"]["code"], -32700);
    c.send_text(r#"[{"jsonrpc":"2.0","id":9,"method":"status"}]"#)
        .await;
    let batch = next_error(&mut c).await;
    assert_eq!(batch["error"]["code"], -32600);

    // Events as the virtual cards come and go, in order, none lost. (Identity and
    // signature events are checked with the crate's real serializer in
    // schema_protocol.rs.)
    let want: BTreeSet<&str> = ["card.inserted", "card.removed"].into();
    let mut seen = BTreeSet::new();
    let mut last_seq = sub["result"]["seq"].as_u64().expect("seq");
    let deadline = Instant::now() + WAIT;
    while !want.iter().all(|t| seen.contains(*t)) || seen.len() < 2 {
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        let ev = c.next_event().await;
        assert_valid("Event", &ev);
        let ty = ev["type"].as_str().expect("type").to_string();
        assert_valid(&format!("Event.{ty}"), &ev);
        let seq = ev["seq"].as_u64().expect("seq");
        assert_eq!(seq, last_seq + 1, "events in order, none lost");
        last_seq = seq;
        seen.insert(ty);
    }
    // A card operation on a present card: its result or its error matches the schema.
    call(&mut c, "card.read", json!({"reader":"sim:0"})).await;
    call(
        &mut c,
        "card.sign",
        json!({"reader":"sim:1","challenge":CHALLENGE}),
    )
    .await;
    call(&mut c, "unsubscribe", json!({})).await;
}

#[tokio::test]
async fn http_health_matches_the_schema() {
    let daemon = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let body = http_get(daemon.port, "/health").await;
    let health: Value = serde_json::from_str(&body).expect("health is JSON");
    assert_valid("Health", &health);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
}

/// The next error response; events that arrive first stay queued for `next_event`.
async fn next_error(c: &mut Client) -> Value {
    loop {
        let m = c.recv().await;
        if m.get("error").is_some() {
            return m;
        }
        c.pending.push_back(m);
    }
}

/// A well-formed request (checked against the schema) and its checked response.
async fn call(c: &mut Client, method: &str, params: Value) -> Value {
    let request = json!({"jsonrpc":"2.0","id":1,"method":method,"params":params});
    assert_request(&request);
    let response = c.call(method, params).await;
    assert_response(method, &response);
    response
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .expect("health answered")
        .expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
