//! Validates protocol messages against `schema/protocol.schema.json` (JSON Schema
//! 2020-12), so every test can check that what it sends and receives is the
//! documented protocol, not just what the other side happens to accept.
//!
//! Use from any integration test that has `mod support;`:
//!
//! ```ignore
//! support::schema::assert_valid("Event", &event_params);
//! support::schema::assert_valid("Request.card.read", &request);
//! support::schema::assert_response("card.read", &response); // result or error
//! support::schema::assert_server_message(&any_message_from_the_daemon);
//! ```
//!
//! Definition names are the keys of the schema's `$defs` (`Reader`, `Identity`,
//! `Signature`, `Event`, `Event.identity.read`, `Request.hello`, `Result.status`,
//! `Response.subscribe`, `Error`, `ServerMessage`, …), matched case-insensitively;
//! `""` is the whole schema (any message of either side).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// Where the schema lives in the source tree.
pub fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/protocol.schema.json")
}

/// The parsed schema document.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = schema_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    })
}

/// The exact `$defs` key for `name` (case-insensitive), or `None` when the schema has
/// no such definition.
pub fn definition(name: &str) -> Option<String> {
    let defs = schema()["$defs"].as_object()?;
    if defs.contains_key(name) {
        return Some(name.to_string());
    }
    defs.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// A compiled validator for one definition (`""` for the whole schema), cached.
pub fn validator(name: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<jsonschema::Validator>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = if name.is_empty() {
        String::new()
    } else {
        definition(name).unwrap_or_else(|| {
            let known: Vec<&String> = schema()["$defs"]
                .as_object()
                .map(|d| d.keys().collect())
                .unwrap_or_default();
            panic!("schema has no definition {name:?}; known: {known:?}")
        })
    };
    if let Some(v) = cache.lock().expect("cache").get(&key) {
        return v.clone();
    }
    let doc = if key.is_empty() {
        schema().clone()
    } else {
        // Same document, rooted at one definition, so internal `#/$defs/...`
        // references keep resolving.
        json!({
            "$schema": schema()["$schema"],
            "$id": schema()["$id"],
            "$defs": schema()["$defs"],
            "$ref": format!("#/$defs/{}", key.replace('~', "~0").replace('/', "~1")),
        })
    };
    let compiled = Arc::new(
        jsonschema::draft202012::new(&doc)
            .unwrap_or_else(|e| panic!("schema definition {key:?} does not compile: {e}")),
    );
    cache.lock().expect("cache").insert(key, compiled.clone());
    compiled
}

/// Every violation of definition `name` by `value`, as `path: message` lines.
pub fn errors(name: &str, value: &Value) -> Vec<String> {
    validator(name)
        .iter_errors(value)
        .map(|e| {
            let path = e.instance_path().as_str().to_string();
            // Keep identity values (synthetic in tests, but still) out of CI logs.
            if ["/beneficiaries", "/apcv", "/identity"]
                .iter()
                .any(|s| path.contains(s))
            {
                format!("at {path:?}: {}", e.masked())
            } else {
                format!("at {path:?}: {e}")
            }
        })
        .collect()
}

/// Fails the test unless `value` is valid against definition `name`.
#[track_caller]
pub fn assert_valid(name: &str, value: &Value) {
    let errs = errors(name, value);
    assert!(
        errs.is_empty(),
        "message does not match schema definition {name:?}:\n  {}\nmessage: {}",
        errs.join("\n  "),
        redact_for_report(value)
    );
}

/// Fails the test if `value` is valid against definition `name` (for counter-examples).
#[track_caller]
pub fn assert_invalid(name: &str, value: &Value) {
    assert!(
        !errors(name, value).is_empty(),
        "schema definition {name:?} wrongly accepts {value}"
    );
}

/// Checks a response to `method`: its `result` against `Result.<method>` or its
/// `error` against the error object. Unknown methods must get an error response.
#[track_caller]
pub fn assert_response(method: &str, response: &Value) {
    let def = format!("Response.{method}");
    if definition(&def).is_some() {
        assert_valid(&def, response);
    } else {
        assert_valid("ErrorResponse", response);
    }
}

/// Checks anything the daemon sends on `/v1` (response or event notification).
#[track_caller]
pub fn assert_server_message(message: &Value) {
    assert_valid("ServerMessage", message);
}

/// Checks a request envelope (`jsonrpc`, `id`, `method`, `params` shape for known
/// methods). Tests that deliberately send bad requests should not call this.
#[track_caller]
pub fn assert_request(request: &Value) {
    assert_valid("Request", request);
}

/// Failure messages must not spread identity data into CI logs: show the shape with
/// string values of identity and signature objects blanked.
fn redact_for_report(value: &Value) -> String {
    fn walk(v: &Value, hide: bool) -> Value {
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let hide =
                            hide || matches!(k.as_str(), "beneficiaries" | "identity" | "apcv");
                        (k.clone(), walk(v, hide))
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|i| walk(i, hide)).collect()),
            Value::String(_) if hide => Value::String("<redacted>".into()),
            other => other.clone(),
        }
    }
    walk(value, false).to_string()
}
