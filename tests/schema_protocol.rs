//! The machine-readable protocol (`schema/protocol.schema.json`) against the spec's
//! examples and against what the crate's own serializers produce: the hub's event
//! notifications (full and redacted views), readers, identities and signatures.

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::schema::{assert_invalid, assert_response, assert_valid, schema};
use vitale_bridge::bus::{Hub, PcscStatus};
use vitale_bridge::card::{
    ApcvInfo, Beneficiary, CardType, Environment, Identity, Ins, Sensitive, Source,
};
use vitale_bridge::protocol::event::{Inserted, Progress};
use vitale_bridge::protocol::{ProtocolError, Reason};
use vitale_bridge::protocol::{ReaderKind, Service, ServiceState, Signature};
use vitale_bridge::transport::Update;

fn phone_identity(reader: &str) -> Identity {
    Identity {
        source: Source::Apcv,
        profile: "reference-v1".into(),
        reader: reader.into(),
        card_type: CardType::Apcv,
        environment: Environment::Demo,
        beneficiaries: vec![Beneficiary {
            index: 0,
            surname: Sensitive::new("DÉMO".into()),
            given_name: Sensitive::new("Zoé".into()),
            birth_date: Sensitive::new(Some("1995-10-01".into())),
            birth_date_raw: Sensitive::new("19951001".into()),
            birth_date_lunar: false,
            nir: Sensitive::new(Some("295109912611193".into())),
            nir_key_valid: Some(true),
            ins: Some(Ins {
                matricule: Sensitive::new("295109912611193".into()),
                oid: "1.2.250.1.213.1.4.11".into(),
            }),
        }],
        apcv: Some(ApcvInfo {
            context: Sensitive::new("opaque-context".into()),
            expires: "2026-12-01T10:00:00Z".into(),
        }),
    }
}

fn card_identity(reader: &str) -> Identity {
    Identity {
        source: Source::VitaleCard,
        profile: "vitale2-public".into(),
        reader: reader.into(),
        card_type: CardType::Vitale2,
        environment: Environment::Unknown,
        beneficiaries: vec![
            Beneficiary {
                index: 0,
                surname: Sensitive::new("MARTIN".into()),
                given_name: Sensitive::new("Paul".into()),
                birth_date: Sensitive::new(Some("1953-07-12".into())),
                birth_date_raw: Sensitive::new("19530712".into()),
                birth_date_lunar: false,
                nir: Sensitive::new(Some("253072A07300443".into())),
                nir_key_valid: Some(true),
                ins: None,
            },
            Beneficiary {
                index: 1,
                surname: Sensitive::new("MARTIN".into()),
                given_name: Sensitive::new("Léa".into()),
                birth_date: Sensitive::new(None),
                birth_date_raw: Sensitive::new("20100000".into()),
                birth_date_lunar: true,
                nir: Sensitive::new(None),
                nir_key_valid: None,
                ins: None,
            },
        ],
        apcv: None,
    }
}

fn signature(reader: &str) -> Signature {
    Signature {
        reader: reader.into(),
        alg: "ES256",
        origin: "https://app.example".into(),
        challenge: "A".repeat(43),
        public_key: "B".repeat(87),
        signature: "C".repeat(86),
        verified: true,
    }
}

/// Drives a hub through every event type and returns the notifications a full and a
/// redacted subscriber received, parsed.
fn hub_traffic() -> (Vec<Value>, Vec<Value>, Value) {
    let hub = Hub::new(PcscStatus::Up);
    let mut full = hub.subscribe(256, false);
    let mut redacted = hub.subscribe(256, true);
    for (id, contactless) in [("sim:0", false), ("sim:1", true)] {
        hub.publish(Update::ReaderAdded {
            id: id.into(),
            name: format!("Simulated reader {id}"),
            kind: ReaderKind::Simulated,
            contactless,
            handle: None,
        });
    }
    hub.publish(Update::CardInserted {
        reader: "sim:0".into(),
        atr: hex::decode("3B751300004509EA9000").expect("hex"),
        card_type: CardType::Vitale2,
    });
    hub.publish(Update::CardReading {
        reader: "sim:0".into(),
        step: 1,
        total: 4,
    });
    hub.publish(Update::IdentityRead {
        reader: "sim:0".into(),
        identity: Arc::new(card_identity("sim:0")),
        elapsed: std::time::Duration::ZERO,
    });
    hub.publish(Update::CardInserted {
        reader: "sim:1".into(),
        atr: hex::decode("3B8080010101").expect("hex"),
        card_type: CardType::Apcv,
    });
    hub.publish(Update::IdentityRead {
        reader: "sim:1".into(),
        identity: Arc::new(phone_identity("sim:1")),
        elapsed: std::time::Duration::ZERO,
    });
    hub.publish(Update::SignatureCompleted {
        signature: Arc::new(signature("sim:1")),
    });
    // Readers while cards with identities are present, for readers.list/subscribe.
    let snapshot = json!({
        "seq": hub.seq(),
        "snapshot": {"readers": serde_json::to_value(hub.readers(false)).expect("json")},
    });
    hub.publish(Update::IdentityError {
        reader: "sim:0".into(),
        error: ProtocolError::new(Reason::CardMute, "no answer to SELECT"),
    });
    hub.publish(Update::CardRemoved {
        reader: "sim:0".into(),
    });
    hub.publish(Update::ServiceChanged {
        service: Service::Nfc,
        state: ServiceState::Down,
        detail: "pn532_uart:/dev/ttyUSB0".into(),
    });
    hub.publish(Update::ReaderRemoved {
        reader: "sim:1".into(),
    });
    // The fan-out thread queues them; read only once it has.
    hub.wait_delivered();
    let drain = |rx: &mut tokio::sync::mpsc::Receiver<vitale_bridge::bus::Notification>| {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|n| serde_json::from_str::<Value>(&n.json).expect("notification is JSON"))
            .collect::<Vec<_>>()
    };
    (drain(&mut full.rx), drain(&mut redacted.rx), snapshot)
}

#[test]
fn schema_is_valid_json_schema_2020_12() {
    assert_eq!(
        schema()["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(schema()) {
        panic!("schema/protocol.schema.json is not a valid 2020-12 schema: {e}");
    }
    // Every definition compiles on its own.
    for name in schema()["$defs"].as_object().expect("$defs").keys() {
        support::schema::validator(name);
    }
}

#[test]
fn reasons_and_retriability_match_the_code() {
    let list = |def: &str| -> Vec<String> {
        schema()["$defs"][def]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{def} has an enum"))
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect()
    };
    let all: Vec<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(
        list("Reason"),
        all,
        "schema Reason enum != error::Reason::ALL"
    );
    for r in Reason::ALL {
        let in_retriable = list("RetriableReason").contains(&r.as_str().to_string());
        let in_final = list("FinalReason").contains(&r.as_str().to_string());
        assert_eq!(in_retriable, r.retriable(), "{r} retriable in schema");
        assert_eq!(in_final, !r.retriable(), "{r} final in schema");
        let err = json!({"jsonrpc":"2.0","id":1,"error":{
            "code":-32000,"message":"m","data":{"reason":r.as_str(),"retriable":r.retriable()}}});
        assert_valid("ErrorResponse", &err);
        let wrong = json!({"jsonrpc":"2.0","id":1,"error":{
            "code":-32000,"message":"m","data":{"reason":r.as_str(),"retriable":!r.retriable()}}});
        assert_invalid("ErrorResponse", &wrong);
    }
}

#[test]
fn every_event_the_hub_emits_matches_the_schema_in_both_views() {
    let (full, redacted, _) = hub_traffic();
    let types = |msgs: &[Value]| -> Vec<String> {
        msgs.iter()
            .map(|m| m["params"]["type"].as_str().expect("type").to_string())
            .collect()
    };
    let want = [
        "reader.added",
        "reader.added",
        "card.inserted",
        "card.reading",
        "identity.read",
        "card.inserted",
        "identity.read",
        "signature.completed",
        "identity.error",
        "card.removed",
        "service.changed",
        "card.removed",
        "reader.removed",
    ];
    assert_eq!(types(&full), want);
    assert_eq!(types(&redacted), want);
    for msg in full.iter().chain(&redacted) {
        assert_valid("EventNotification", msg);
        assert_valid("ServerMessage", msg);
        assert_valid("", msg);
        let ty = msg["params"]["type"].as_str().expect("type");
        assert_valid(&format!("Event.{ty}"), &msg["params"]);
    }
    // The full view carries real identities and signatures; the redacted one never does.
    let identity = &full[4]["params"]["data"];
    assert_valid("Identity", identity);
    assert_valid("Identity", &full[6]["params"]["data"]);
    assert_valid("Signature", &full[7]["params"]["data"]);
    for i in [4, 6, 7] {
        assert_eq!(redacted[i]["params"]["data"], json!({"redacted": true}));
        assert_invalid("Identity", &redacted[i]["params"]["data"]);
    }
}

#[test]
fn readers_with_and_without_identity_match() {
    let (_, _, subscribe_result) = hub_traffic();
    assert_valid("SubscribeResult", &subscribe_result);
    let readers = &subscribe_result["snapshot"]["readers"];
    assert_valid(
        "Response.readers.list",
        &json!({"jsonrpc":"2.0","id":"r1","result":{"readers":readers}}),
    );
    assert!(
        readers[0]["card"]["identity"].is_object(),
        "identity cached"
    );
    let mut redacted = readers[0].clone();
    redacted["card"]
        .as_object_mut()
        .expect("card")
        .remove("identity");
    assert_valid("Reader", &redacted);
}

#[test]
fn spec_examples_are_valid() {
    let ok = |method: &str, params: Option<Value>, result: Value| {
        let mut req = json!({"jsonrpc":"2.0","id":1,"method":method});
        if let Some(p) = params {
            req["params"] = p;
        }
        assert_valid("Request", &req);
        assert_valid(&format!("Request.{method}"), &req);
        assert_valid("", &req);
        let resp = json!({"jsonrpc":"2.0","id":1,"result":result});
        assert_response(method, &resp);
        assert_valid("", &resp);
    };
    ok(
        "hello",
        Some(json!({"client":"my-practice-app/3.2","protocol":1})),
        json!({"server":"vitale-bridge","version":"0.1.0","protocol":1,"capabilities":["read","sign","subscribe"]}),
    );
    ok(
        "hello",
        None,
        json!({"server":"vitale-bridge","version":"0.1.0","protocol":1,"capabilities":[]}),
    );
    ok(
        "status",
        None,
        json!({"pcsc":"up","nfc":[{"connstring":"pn532_uart:/dev/ttyUSB0","state":"up"}],"clients":2,"uptimeMs":12345}),
    );
    ok("readers.list", Some(json!({})), json!({"readers":[]}));
    ok(
        "subscribe",
        Some(json!({})),
        json!({"seq":0,"snapshot":{"readers":[]}}),
    );
    ok("unsubscribe", None, json!({}));
    ok(
        "card.read",
        Some(json!({"reader":"sim:0","fresh":true})),
        serde_json::to_value(card_identity("sim:0")).expect("json"),
    );
    ok(
        "card.sign",
        Some(json!({"reader":"sim:1","challenge":"A".repeat(43)})),
        serde_json::to_value(signature("sim:1")).expect("json"),
    );
    for (code, msg) in [
        (-32700, "parse error"),
        (-32600, "invalid request"),
        (-32601, "method not found"),
        (-32602, "invalid params"),
    ] {
        assert_valid(
            "ErrorResponse",
            &json!({"jsonrpc":"2.0","id":null,"error":{"code":code,"message":msg}}),
        );
    }
    assert_valid("Health", &json!({"status":"ok","version":"0.1.0"}));
}

#[test]
fn counter_examples_are_rejected() {
    let reader = json!({"id":"sim:0","name":"r","kind":"simulated","contactless":false,"state":"present",
        "card":{"atr":"3B751300004509EA9000","cardType":"vitale2"}});
    assert_valid("Reader", &reader);
    let mut lower_atr = reader.clone();
    lower_atr["card"]["atr"] = json!("3b75");
    assert_invalid("Reader", &lower_atr);
    let mut bad_state = reader.clone();
    bad_state["state"] = json!("busy");
    assert_invalid("Reader", &bad_state);
    let mut extra = reader.clone();
    extra["secret"] = json!(1);
    assert_invalid("Reader", &extra);

    let mut sig = serde_json::to_value(signature("sim:1")).expect("json");
    sig["verified"] = json!(false);
    assert_invalid("Signature", &sig);

    let mut id = serde_json::to_value(card_identity("sim:0")).expect("json");
    id["beneficiaries"][0]["nir"] = json!("2530");
    assert_invalid("Identity", &id);
    let mut id = serde_json::to_value(card_identity("sim:0")).expect("json");
    id["environment"] = json!("staging");
    assert_invalid("Identity", &id);

    // Application errors must carry their reason.
    assert_invalid(
        "ErrorResponse",
        &json!({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"m"}}),
    );
    assert_invalid(
        "ErrorResponse",
        &json!({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"m","data":{"reason":"NOPE","retriable":false}}}),
    );
    // Params of known methods are checked.
    assert_invalid(
        "Request",
        &json!({"jsonrpc":"2.0","id":1,"method":"card.sign","params":{"reader":"sim:1","challenge":"short"}}),
    );
    assert_invalid(
        "Request",
        &json!({"jsonrpc":"2.0","id":1,"method":"card.read","params":{}}),
    );
    assert_invalid("Request", &json!({"jsonrpc":"1.0","id":1,"method":"hello"}));
    // Events: data must fit the type; time needs milliseconds and Z.
    let ev = json!({"seq":3,"time":"2026-11-30T14:38:49.123Z","type":"card.inserted","reader":"sim:0",
        "data":{"atr":"3B8080010101","cardType":"apcv"}});
    assert_valid("Event", &ev);
    let mut wrong_data = ev.clone();
    wrong_data["type"] = json!("card.reading");
    assert_invalid("Event", &wrong_data);
    let mut no_ms = ev.clone();
    no_ms["time"] = json!("2026-11-30T14:38:49Z");
    assert_invalid("Event", &no_ms);
    let mut redacted_elsewhere = ev.clone();
    redacted_elsewhere["data"] = json!({"redacted": true});
    assert_invalid("Event", &redacted_elsewhere);
}

#[test]
fn progress_and_inserted_shapes_come_from_the_crate_types() {
    assert_valid(
        "CardReadingData",
        &serde_json::to_value(Progress { step: 2, total: 5 }).expect("json"),
    );
    assert_valid(
        "CardInsertedData",
        &serde_json::to_value(Inserted {
            atr: "3B8080010101".into(),
            card_type: CardType::Apcv,
        })
        .expect("json"),
    );
}
