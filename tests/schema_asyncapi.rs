//! `schema/asyncapi.yaml` stays consistent with the JSON Schema: every payload
//! reference names an existing definition, every method has an operation, and every
//! example payload is a valid protocol message.

mod support;

use serde_json::Value;
use support::schema::{assert_valid, definition, schema};

fn asyncapi() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/asyncapi.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn payload_references_name_existing_definitions() {
    let doc = asyncapi();
    assert!(doc.contains("\nasyncapi: 3.0.0\n"), "AsyncAPI 3.0 document");
    let prefix = "$ref: './protocol.schema.json#/$defs/";
    let refs: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix))
        .map(|r| r.trim_end_matches('\''))
        .collect();
    assert!(refs.len() >= 16, "found only {} payload refs", refs.len());
    for r in refs {
        assert!(
            definition(r).as_deref() == Some(r),
            "asyncapi.yaml refers to missing definition {r}"
        );
    }
}

#[test]
fn every_method_has_an_operation_with_a_reply() {
    let doc = asyncapi();
    let methods = schema()["$defs"]["Request"]["properties"]["method"]["enum"]
        .as_array()
        .expect("method enum");
    for m in methods {
        let m = m.as_str().expect("string");
        let key = m.replace('.', "_");
        assert!(
            doc.contains(&format!(
                "\n  {key}:\n    action: receive\n    title: {m}\n"
            )),
            "no operation for {m}"
        );
        assert!(
            doc.contains(&format!("$ref: '#/channels/v1/messages/{key}_response'")),
            "no reply for {m}"
        );
    }
}

#[test]
fn examples_are_valid_messages() {
    let doc = asyncapi();
    let examples: Vec<Value> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- payload: "))
        .map(|p| serde_json::from_str(p).unwrap_or_else(|e| panic!("example {p}: {e}")))
        .collect();
    assert!(
        examples.len() >= 10,
        "found only {} examples",
        examples.len()
    );
    for ex in &examples {
        assert_valid("", ex);
    }
}
