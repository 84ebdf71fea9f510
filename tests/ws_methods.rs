//! product.md §4.2 and §4.4 over a real WebSocket: every method, card operations
//! through a reader backend thread, and every JSON-RPC error kind.
mod support;
mod ws_harness;

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vitale_bridge::card::CardType;
use vitale_bridge::card::phone::origin_binding;
use vitale_bridge::protocol::{ReaderKind, Service, ServiceState};
use vitale_bridge::transport::Update;
use ws_harness::{Server, TestBackend, cfg};

fn error_of(resp: &Value) -> (i64, Option<String>) {
    let e = &resp["error"];
    assert!(e.is_object(), "expected an error, got {resp}");
    (
        e["code"].as_i64().expect("code"),
        e["data"]["reason"].as_str().map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_status_and_readers() {
    let server = Server::start(cfg()).await;
    server.hub.publish(Update::ServiceChanged {
        service: Service::Nfc,
        state: ServiceState::Up,
        detail: "pn532_uart:/dev/ttyUSB0".into(),
    });
    server.hub.publish(Update::ReaderAdded {
        id: "sim:0".into(),
        name: "Simulated reader".into(),
        kind: ReaderKind::Simulated,
        contactless: false,
        handle: None,
    });
    let mut c = support::Client::connect(&server.url()).await;
    let hello = c
        .call("hello", json!({"client": "test", "protocol": 1}))
        .await;
    assert_eq!(hello["result"]["server"], "vitale-bridge");
    assert_eq!(hello["result"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(hello["result"]["protocol"], 1);
    let caps = hello["result"]["capabilities"].as_array().expect("caps");
    assert!(caps.contains(&json!("card.read")));

    let status = c.call("status", Value::Null).await["result"].clone();
    assert_eq!(status["pcsc"], "disabled");
    assert_eq!(
        status["nfc"],
        json!([{"connstring":"pn532_uart:/dev/ttyUSB0","state":"up"}])
    );
    assert_eq!(status["clients"], 1);
    assert!(status["uptimeMs"].is_u64());

    let readers = c.call("readers.list", json!({})).await["result"].clone();
    assert_eq!(
        readers,
        json!({"readers":[{"id":"sim:0","name":"Simulated reader","kind":"simulated","contactless":false,"state":"empty","card":null}]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_unsubscribe() {
    let server = Server::start(cfg()).await;
    let mut c = support::Client::connect(&server.url()).await;
    let sub = c.call("subscribe", json!({})).await;
    assert_eq!(sub["result"]["seq"], 0);
    assert_eq!(sub["result"]["snapshot"], json!({"readers": []}));
    server.hub.publish(Update::ReaderAdded {
        id: "sim:1".into(),
        name: "r".into(),
        kind: ReaderKind::Simulated,
        contactless: true,
        handle: None,
    });
    let ev = c.wait_event("reader.added").await;
    assert_eq!(ev["seq"], 1);
    assert_eq!(ev["reader"], "sim:1");
    assert_eq!(ev["data"]["contactless"], true);
    assert!(ev["time"].as_str().expect("time").ends_with('Z'));
    assert_eq!(c.call("unsubscribe", json!({})).await["result"], json!({}));
    server.hub.publish(Update::ReaderRemoved {
        reader: "sim:1".into(),
    });
    // The next thing on the wire is the answer to this call, not an event.
    let status = c.call("status", json!({})).await;
    assert!(status["result"].is_object());
    assert!(
        c.pending.is_empty(),
        "event after unsubscribe: {:?}",
        c.pending
    );
    // Subscribing again starts from the current seq.
    let again = c.call("subscribe", json!({})).await;
    assert_eq!(again["result"]["seq"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_read_cached_fresh_and_errors() {
    let server = Server::start(cfg()).await;
    let backend = TestBackend::spawn(&server.hub, "sim:0", CardType::Vitale2);
    let mut c = support::Client::connect(&server.url()).await;

    let first = c.call("card.read", json!({"reader":"sim:0"})).await;
    let id = &first["result"];
    assert_eq!(id["source"], "vitale-card");
    assert_eq!(id["beneficiaries"][0]["surname"], ws_harness::SECRETS[0]);
    assert_eq!(backend.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Cached now: no second trip to the card.
    let cached = c.call("card.read", json!({"reader":"sim:0"})).await;
    assert_eq!(cached["result"], *id);
    assert_eq!(backend.reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    let fresh = c
        .call("card.read", json!({"reader":"sim:0","fresh":true}))
        .await;
    assert_eq!(fresh["result"], *id);
    assert_eq!(backend.reads.load(std::sync::atomic::Ordering::SeqCst), 2);

    let missing = c.call("card.read", json!({"reader":"sim:9"})).await;
    assert_eq!(
        error_of(&missing),
        (-32000, Some("READER_NOT_FOUND".into()))
    );
    assert_eq!(missing["error"]["data"]["retriable"], false);
    server.hub.publish(Update::CardRemoved {
        reader: "sim:0".into(),
    });
    let none = c.call("card.read", json!({"reader":"sim:0"})).await;
    assert_eq!(error_of(&none), (-32000, Some("NO_CARD".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_sign_binds_the_connection_origin() {
    let server = Server::start(cfg()).await;
    let backend = TestBackend::spawn(&server.hub, "nfc:phone", CardType::Apcv);
    let challenge = [9u8; 32];
    let b64 = URL_SAFE_NO_PAD.encode(challenge);

    let mut web =
        support::Client::connect_with(&server.url(), &[("Origin", "https://app.example")])
            .await
            .expect("web client");
    let r = web
        .call("card.sign", json!({"reader":"nfc:phone","challenge": b64}))
        .await;
    let mut native = support::Client::connect(&server.url()).await;
    // Padding is optional.
    let padded = URL_SAFE.encode(challenge);
    assert!(padded.ends_with('='));
    let n = native
        .call(
            "card.sign",
            json!({"reader":"nfc:phone","challenge": padded}),
        )
        .await;

    let digests = backend.digests.lock().expect("lock").clone();
    assert_eq!(
        digests,
        vec![
            origin_binding("https://app.example", &challenge).1,
            origin_binding("native:", &challenge).1
        ]
    );
    for (resp, origin) in [(r, "https://app.example"), (n, "native:")] {
        let sig = &resp["result"];
        assert_eq!(sig["origin"], origin, "{resp}");
        assert_eq!(sig["alg"], "ES256");
        assert_eq!(sig["verified"], true);
        assert_eq!(sig["challenge"], b64);
        assert_eq!(sig["reader"], "nfc:phone");
    }

    // A Carte Vitale cannot sign.
    let _vitale = TestBackend::spawn(&server.hub, "sim:0", CardType::Vitale2);
    let no = native
        .call("card.sign", json!({"reader":"sim:0","challenge": b64}))
        .await;
    assert_eq!(error_of(&no), (-32000, Some("SIGN_UNSUPPORTED".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_rpc_error_kind() {
    let server = Server::start(cfg()).await;
    let mut c = support::Client::connect(&server.url()).await;
    let cases: Vec<(String, i64, Value)> = vec![
        ("{".into(), -32700, Value::Null),
        ("not json".into(), -32700, Value::Null),
        ("[".repeat(5000), -32700, Value::Null),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"hello"}]"#.into(), -32600, Value::Null),
        ("[]".into(), -32600, Value::Null),
        ("42".into(), -32600, Value::Null),
        (r#"{"id":2,"method":"hello"}"#.into(), -32600, json!(2)),
        (r#"{"jsonrpc":"2.0","id":3,"method":7}"#.into(), -32600, json!(3)),
        (r#"{"jsonrpc":"2.0","id":[1],"method":"hello"}"#.into(), -32600, Value::Null),
        (r#"{"jsonrpc":"2.0","id":"m","method":"no.such"}"#.into(), -32601, json!("m")),
        (r#"{"jsonrpc":"2.0","id":4,"method":"hello","params":[1]}"#.into(), -32602, json!(4)),
        (r#"{"jsonrpc":"2.0","id":5,"method":"hello","params":{"protocol":2}}"#.into(), -32602, json!(5)),
        (r#"{"jsonrpc":"2.0","id":6,"method":"status","params":{"x":1}}"#.into(), -32602, json!(6)),
        (r#"{"jsonrpc":"2.0","id":7,"method":"card.read","params":{}}"#.into(), -32602, json!(7)),
        (r#"{"jsonrpc":"2.0","id":8,"method":"card.sign","params":{"reader":"a","challenge":"AAAA"}}"#.into(), -32602, json!(8)),
        (r#"{"jsonrpc":"2.0","id":9,"method":"card.sign","params":{"reader":"a","challenge":"!!not base64!!"}}"#.into(), -32602, json!(9)),
        (r#"{"jsonrpc":"2.0","id":10,"method":"card.read","params":{"reader":"none"}}"#.into(), -32000, json!(10)),
    ];
    for (text, code, id) in cases {
        c.send_text(&text).await;
        let resp = c.recv().await;
        assert_eq!(resp["jsonrpc"], "2.0");
        assert_eq!(resp["id"], id, "{text}: {resp}");
        assert_eq!(resp["error"]["code"], code, "{text}: {resp}");
        assert!(resp["error"]["message"].is_string());
        if code == -32000 {
            assert_eq!(resp["error"]["data"]["reason"], "READER_NOT_FOUND");
            assert_eq!(resp["error"]["data"]["retriable"], false);
        } else {
            assert!(resp["error"].get("data").is_none());
        }
    }
    // Notifications (no id) get no response, valid or not; the next response is
    // the one for the request that follows them.
    c.send_text(r#"{"jsonrpc":"2.0","method":"hello"}"#).await;
    c.send_text(r#"{"jsonrpc":"2.0","method":"no.such"}"#).await;
    c.send_text(r#"{"jsonrpc":"2.0","method":"card.read","params":{}}"#)
        .await;
    let next = c.call("status", json!({})).await;
    assert!(next["result"].is_object());
    assert!(c.pending.is_empty(), "{:?}", c.pending);
    // A binary frame is not a request.
    c.ws.send(Message::binary(b"{}".to_vec()))
        .await
        .expect("send");
    assert_eq!(c.recv().await["error"]["code"], -32600);
    // The connection still works.
    assert_eq!(c.call("hello", json!({})).await["result"]["protocol"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_parse_error_then_1007() {
    let server = Server::start(cfg()).await;
    let (mut other, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .expect("other");
    let mut c = support::Client::connect(&server.url()).await;
    // A text frame whose payload is not UTF-8, written by hand (masked, FIN, opcode 1).
    let stream = c.ws.get_mut();
    let tcp = match stream {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => panic!("plain"),
    };
    use tokio::io::AsyncWriteExt;
    let payload = [0xFFu8, 0xFE, 0x7B];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(&payload);
    tcp.write_all(&frame).await.expect("write");
    let resp = c.recv().await;
    assert_eq!(resp["error"]["code"], -32700, "{resp}");
    assert_eq!(resp["id"], Value::Null);
    assert_eq!(ws_harness::close_code(&mut c.ws).await, CloseCode::Invalid);
    // Others are unaffected.
    other
        .send(Message::text(
            r#"{"jsonrpc":"2.0","id":1,"method":"hello"}"#,
        ))
        .await
        .expect("send");
    let msg = other.next().await.expect("open").expect("ok");
    assert!(msg.to_text().expect("text").contains("vitale-bridge"));
}
