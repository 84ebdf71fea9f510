//! `GET /metrics` end to end: the real demo daemon with `[metrics] enabled = true`, a
//! real WebSocket client, real demo reads — then the exposition is parsed strictly,
//! its numbers checked against what the client saw, and searched for every identity
//! string the demo card and phone hold. Off by default (404), and behind the same
//! Host and Origin rules as the rest of the server.
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde_json::{Value, json};
use support::{Client, Daemon, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vitale_bridge::sim::card_model::CardDescription;
use vitale_bridge::sim::phone::PhoneDescription;

/// One HTTP exchange: status, lower-cased headers, body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` (without the final blank line) and reads the whole answer.
async fn exchange(port: u16, request: &str) -> Response {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("{request}Connection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    let text = String::from_utf8(out).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("http head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(port: u16, path: &str, extra: &[(&str, &str)]) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    exchange(port, &req).await
}

fn demo_with_config(dir: &Path, toml: &str) -> Daemon {
    let file = dir.join("metrics.toml");
    std::fs::write(&file, toml).expect("write config");
    Daemon::spawn(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--demo-interval-ms",
        "100",
        "--config",
        file.to_str().expect("utf8 path"),
    ])
}

/// One sample line.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text format 0.0.4 as this daemon must write it:
/// every line is `# HELP`, `# TYPE` or `name{labels} value`; every sample's family
/// has both a HELP and a TYPE before it; names and label names are valid; label
/// values use only the three escapes; no series appears twice.
fn parse_exposition(text: &str) -> (Vec<Series>, HashMap<String, String>) {
    fn valid_name(n: &str, colon: bool) -> bool {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    fn value(v: &str) -> Option<f64> {
        match v {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            v => v.parse().ok(),
        }
    }
    assert!(text.ends_with('\n'), "exposition ends with a line feed");
    let mut help = HashSet::new();
    let mut types = HashMap::new();
    let mut series = Vec::new();
    let mut seen = HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, doc) = rest.split_once(' ').expect("HELP has text");
            assert!(valid_name(name, true) && !doc.is_empty(), "{line}");
            assert!(help.insert(name.to_string()), "HELP twice: {line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(help.contains(name), "HELP before TYPE: {line}");
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let name_end = line.find(['{', ' ']).expect("name then value");
        let name = &line[..name_end];
        assert!(valid_name(name, true), "metric name in {line}");
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (lname, after) = body.split_once("=\"").expect("label=\"value\"");
                assert!(valid_name(lname, false), "label name in {line}");
                let mut v = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    let (i, c) = chars.next().expect("closing quote");
                    match c {
                        '"' => break i + 1,
                        '\\' => match chars.next().expect("escape").1 {
                            '\\' => v.push('\\'),
                            '"' => v.push('"'),
                            'n' => v.push('\n'),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        c => v.push(c),
                    }
                };
                assert!(labels.insert(lname.to_string(), v).is_none(), "{line}");
                body = &after[end..];
                match body.strip_prefix(',') {
                    Some(next) => body = next,
                    None => assert!(body.starts_with('}'), "`,` or `}}` after a label: {line}"),
                }
            }
        }
        let v = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("one space before the value: {line}"));
        let value = value(v).unwrap_or_else(|| panic!("value in {line}"));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            help.contains(family) && types.contains_key(family),
            "no HELP/TYPE before {line}"
        );
        assert!(seen.insert(format!("{name}{labels:?}")), "duplicate {line}");
        series.push(Series {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (series, types)
}

/// The one series named `name` whose labels include `want`.
fn value(series: &[Series], name: &str, want: &[(&str, &str)]) -> f64 {
    let found: Vec<&Series> = series
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "{name}{want:?}: {found:?}");
    found[0].value
}

fn total(series: &[Series], name: &str) -> f64 {
    series
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// Scrapes until `done` holds for the parsed series, failing after [`WAIT`].
async fn scrape_until(port: u16, what: &str, done: impl Fn(&[Series]) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = get(port, "/metrics", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let (series, _) = parse_exposition(&r.body);
        if done(&series) {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed {what}:\n{}",
            r.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Every identity string the demo card and phone hold, as text, plus what the
/// protocol delivered (formatted birth dates, NIRs).
fn secrets(identities: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for b in CardDescription::demo_family().beneficiaries {
        out.extend([b.surname, b.given_name, b.birth_date]);
        out.extend(b.nir);
    }
    let phone = PhoneDescription::demo();
    for b in phone.beneficiaries {
        out.extend([b.surname, b.given_name, b.birth_date, b.ins]);
        out.extend(b.nir);
    }
    out.push(phone.context);
    for identity in identities {
        for b in identity["beneficiaries"].as_array().expect("beneficiaries") {
            for key in ["surname", "givenName", "birthDate", "birthDateRaw", "nir"] {
                if let Some(s) = b[key].as_str() {
                    out.push(s.to_string());
                }
            }
            if let Some(m) = b["ins"]["matricule"].as_str() {
                out.push(m.to_string());
            }
        }
    }
    out.retain(|s| s.len() >= 3);
    out
}

#[tokio::test]
async fn metrics_count_demo_reads_and_never_carry_an_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = demo_with_config(dir.path(), "[metrics]\nenabled = true\n");
    let mut client = Client::connect(&d.url()).await;
    client.call("subscribe", json!({})).await;

    // One read of the card (sim:0) and one of the phone (sim:1).
    let mut identities = Vec::new();
    let mut seen = HashSet::new();
    while seen.len() < 2 {
        let ev = client.wait_event("identity.read").await;
        seen.insert(ev["reader"].as_str().expect("reader").to_string());
        identities.push(ev["data"].clone());
    }

    // The hub counts a read before it publishes the event, so both are counted now;
    // the demo keeps cycling, so later reads may be counted too.
    let r = get(d.port, "/metrics", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (series, types) = parse_exposition(&r.body);
    for (family, kind) in [
        ("vitale_bridge_build_info", "gauge"),
        ("vitale_bridge_uptime_seconds", "gauge"),
        ("vitale_bridge_readers", "gauge"),
        ("vitale_bridge_clients", "gauge"),
        ("vitale_bridge_cards_read_total", "counter"),
        ("vitale_bridge_read_errors_total", "counter"),
        ("vitale_bridge_read_duration_seconds", "histogram"),
        ("vitale_bridge_signatures_total", "counter"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(value(&series, "vitale_bridge_clients", &[]), 1.0);
    assert_eq!(
        value(
            &series,
            "vitale_bridge_readers",
            &[("transport", "simulated")]
        ),
        2.0
    );
    assert_eq!(
        value(&series, "vitale_bridge_readers", &[("transport", "pcsc")]),
        0.0
    );
    let card_reads = value(
        &series,
        "vitale_bridge_cards_read_total",
        &[("transport", "simulated"), ("card_type", "vitale2")],
    );
    let phone_reads = value(
        &series,
        "vitale_bridge_cards_read_total",
        &[("transport", "simulated"), ("card_type", "apcv")],
    );
    assert!(card_reads >= 1.0 && phone_reads >= 1.0, "{}", r.body);
    let reads = total(&series, "vitale_bridge_cards_read_total");
    assert_eq!(total(&series, "vitale_bridge_read_errors_total"), 0.0);
    assert_eq!(
        series
            .iter()
            .filter(|s| s.name == "vitale_bridge_read_errors_total")
            .count(),
        15,
        "one series per protocol reason"
    );
    assert!(value(&series, "vitale_bridge_uptime_seconds", &[]) > 0.0);
    assert_eq!(
        value(
            &series,
            "vitale_bridge_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // The histogram: cumulative buckets in ascending `le`, `+Inf` = `_count` = reads.
    let mut buckets: Vec<(f64, f64)> = series
        .iter()
        .filter(|s| s.name == "vitale_bridge_read_duration_seconds_bucket")
        .map(|s| {
            let le = &s.labels["le"];
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le")
            };
            (le, s.value)
        })
        .collect();
    assert_eq!(buckets.len(), 10, "{}", r.body);
    let written: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        written,
        buckets.iter().map(|b| b.0).collect::<Vec<_>>(),
        "buckets written in ascending le"
    );
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
    let count = value(&series, "vitale_bridge_read_duration_seconds_count", &[]);
    assert_eq!(
        buckets.last().map(|b| (b.0, b.1)),
        Some((f64::INFINITY, count))
    );
    assert_eq!(count, reads, "one duration per counted read");
    let sum = value(&series, "vitale_bridge_read_duration_seconds_sum", &[]);
    assert!(sum > 0.0 && sum.is_finite(), "{sum}");

    // No identity, in any form the demo holds or the protocol delivered.
    let secrets = secrets(&identities);
    assert!(secrets.len() > 15, "{}", secrets.len());
    for s in &secrets {
        assert!(!r.body.contains(s.as_str()), "{s:?} in /metrics");
    }
    // Nor reader ids or names: counts per transport only.
    assert!(!r.body.contains("sim:"), "{}", r.body);

    // The gauge follows the connection.
    client.ws.close(None).await.expect("close");
    drop(client);
    scrape_until(d.port, "no client", |s| {
        value(s, "vitale_bridge_clients", &[]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let d = Daemon::spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let metrics = get(d.port, "/metrics", &[]).await;
    assert_eq!(metrics.status, 404, "{}", metrics.body);
    assert_eq!(get(d.port, "/nope", &[]).await.body, metrics.body);
    assert_eq!(get(d.port, "/health", &[]).await.status, 200);
    let post = exchange(
        d.port,
        &format!(
            "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n",
            d.port
        ),
    )
    .await;
    assert_eq!(post.status, 404);
}

#[tokio::test]
async fn metrics_keep_the_host_and_origin_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Native clients off: that switch guards identities; a scraper still gets metrics.
    let d = demo_with_config(
        dir.path(),
        "allowed_origins = [\"https://app.example\"]\nallow_native_clients = false\n\
         [metrics]\nenabled = true\n",
    );
    let p = d.port;
    let with_host = |host: String| async move {
        exchange(p, &format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n")).await
    };
    for host in [
        format!("evil.example:{p}"),
        format!("127.0.0.1.evil.example:{p}"),
        format!("127.0.0.1:{}", p.wrapping_add(1)),
        "127.0.0.1".to_string(),
    ] {
        let r = with_host(host.clone()).await;
        assert_eq!(r.status, 403, "Host {host}: {}", r.body);
        assert!(!r.body.contains("vitale_bridge_"), "{}", r.body);
    }
    for host in [format!("localhost:{p}"), format!("[::1]:{p}")] {
        assert_eq!(with_host(host.clone()).await.status, 200, "Host {host}");
    }

    assert_eq!(get(p, "/metrics", &[]).await.status, 200, "scraper");
    for origin in ["https://evil.example", "null", "https://app.example.evil"] {
        let r = get(p, "/metrics", &[("Origin", origin)]).await;
        assert_eq!(r.status, 403, "Origin {origin}: {}", r.body);
        assert!(!r.body.contains("vitale_bridge_"), "{}", r.body);
    }
    let own = format!("http://127.0.0.1:{p}");
    for origin in ["https://app.example", own.as_str()] {
        let r = get(p, "/metrics", &[("Origin", origin)]).await;
        assert_eq!(r.status, 200, "Origin {origin}");
        assert_eq!(r.header("access-control-allow-origin"), None);
    }
    let two = get(
        p,
        "/metrics",
        &[
            ("Origin", "https://app.example"),
            ("Origin", "https://app.example"),
        ],
    )
    .await;
    assert_eq!(two.status, 403);

    let post = exchange(
        p,
        &format!("POST /metrics HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Length: 0\r\n"),
    )
    .await;
    assert_eq!(post.status, 405);
}
