//! The docs that clients program against stay in step with the code: every error
//! reason is in the catalogue with its retriability, every event type and method is
//! in the protocol reference, every metric is in the metrics reference.

use vitale_bridge::protocol::Reason;

fn doc(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn error_catalogue_lists_every_reason_with_its_retriability_and_a_remedy() {
    let text = doc("errors.md");
    for r in Reason::ALL {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", r.as_str())))
            .unwrap_or_else(|| panic!("docs/errors.md has no row for {r}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | reason | retriable | meaning | remedy |
        assert_eq!(cells.len(), 6, "row for {r} has 4 columns: {row}");
        let want = if r.retriable() { "yes" } else { "no" };
        assert_eq!(cells[2], want, "retriable column for {r}");
        assert!(cells[3].len() > 10, "meaning for {r}");
        assert!(cells[4].len() > 10, "remedy for {r}");
    }
}

#[test]
fn metrics_reference_lists_every_exposed_metric_with_its_type() {
    let text = doc("metrics.md");
    let exposition = vitale_bridge::server::metrics::render(&Default::default());
    let families: Vec<(&str, &str)> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(families.len() >= 8, "{exposition}");
    for (name, kind) in families {
        assert!(
            text.contains(&format!("| `{name}` | {kind} |")),
            "docs/metrics.md has no row for {name} ({kind})"
        );
    }
    let config = doc("configuration.md");
    assert!(config.contains("| `metrics.enabled` | bool | `false` |"));
}

#[test]
fn protocol_reference_covers_every_event_type_and_method() {
    let text = doc("protocol.md");
    for ty in [
        "reader.added",
        "reader.removed",
        "card.inserted",
        "card.reading",
        "identity.read",
        "identity.error",
        "card.removed",
        "signature.completed",
        "service.changed",
    ] {
        assert!(text.contains(&format!("| `{ty}` |")), "event {ty} missing");
    }
    for m in [
        "hello",
        "status",
        "readers.list",
        "subscribe",
        "card.read",
        "card.sign",
    ] {
        assert!(text.contains(&format!("### `{m}`")), "method {m} missing");
    }
}
