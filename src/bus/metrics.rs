//! Operational metrics: counters the hub keeps as backends report reads, and their
//! Prometheus text exposition (format 0.0.4), written by hand.
//!
//! Every label value comes from a closed enum — the reader's transport, the card
//! type, the protocol's stable reason — never from card, phone or reader data, so a
//! scrape cannot carry a NIR, a name or a birth date (product.md §5). Reader names
//! are left out on purpose: they are free text chosen by drivers.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::card::CardType;
use crate::protocol::Reason;
use crate::protocol::event::ReaderKind;

/// Upper bounds (seconds) of the read-duration histogram buckets; `+Inf` is implied.
/// A Carte Vitale read takes tens to hundreds of milliseconds, a slow phone seconds.
pub const READ_BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Transports in label order, with their `transport` label value (the protocol's
/// `Reader.kind`).
const TRANSPORTS: [(ReaderKind, &str); 3] = [
    (ReaderKind::Pcsc, "pcsc"),
    (ReaderKind::Nfc, "nfc"),
    (ReaderKind::Simulated, "simulated"),
];

/// Card types in label order, with their `card_type` label value (the protocol's
/// `cardType`).
const CARD_TYPES: [(CardType, &str); 5] = [
    (CardType::Vitale2, "vitale2"),
    (CardType::Apcv, "apcv"),
    (CardType::Vitale1, "vitale1"),
    (CardType::Cps, "cps"),
    (CardType::Unknown, "unknown"),
];

/// Card types that can be read successfully; their series are always exposed, the
/// others only once non-zero.
const READABLE: usize = 2;

/// Signature outcomes in label order.
const SIGNATURE_RESULTS: [&str; 2] = ["verified", "failed"];

fn transport_index(kind: ReaderKind) -> usize {
    match kind {
        ReaderKind::Pcsc => 0,
        ReaderKind::Nfc => 1,
        ReaderKind::Simulated => 2,
    }
}

fn card_type_index(card_type: CardType) -> usize {
    match card_type {
        CardType::Vitale2 => 0,
        CardType::Apcv => 1,
        CardType::Vitale1 => 2,
        CardType::Cps => 3,
        CardType::Unknown => 4,
    }
}

fn reason_index(reason: Reason) -> usize {
    // `Reason::ALL` lists every variant, so the fallback is never taken.
    Reason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(Reason::ALL.len() - 1)
}

/// The counters, updated with relaxed atomics: each is independent, and the hub
/// records reads while holding its registry lock, so a scrape taken under that lock
/// sees reads and their durations together.
#[derive(Debug, Default)]
pub struct Metrics {
    cards_read: [[AtomicU64; CARD_TYPES.len()]; TRANSPORTS.len()],
    read_errors: [AtomicU64; Reason::ALL.len()],
    /// Per bucket, not cumulative; the last slot counts reads above every bound.
    read_buckets: [AtomicU64; READ_BUCKETS.len() + 1],
    read_micros: AtomicU64,
    signatures: [AtomicU64; SIGNATURE_RESULTS.len()],
    silent_connections: AtomicU64,
}

impl Metrics {
    /// Counts one successful identity read and its duration.
    pub fn read_succeeded(&self, transport: ReaderKind, card_type: CardType, elapsed: Duration) {
        self.cards_read[transport_index(transport)][card_type_index(card_type)]
            .fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = READ_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(READ_BUCKETS.len());
        self.read_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.read_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one failed identity read.
    pub fn read_failed(&self, reason: Reason) {
        self.read_errors[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one signature request answered by a phone, verified or not.
    pub fn signature(&self, verified: bool) {
        self.signatures[usize::from(!verified)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection closed before it sent a byte (a browser's Local Network
    /// Access check, or a port scan).
    pub fn silent_connection(&self) {
        self.silent_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now, for [`render`].
    pub fn counters(&self) -> Counters {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            cards_read: self
                .cards_read
                .each_ref()
                .map(|row| row.each_ref().map(load)),
            read_errors: self.read_errors.each_ref().map(load),
            read_buckets: self.read_buckets.each_ref().map(load),
            read_seconds: load(&self.read_micros) as f64 / 1e6,
            signatures: self.signatures.each_ref().map(load),
            silent_connections: load(&self.silent_connections),
        }
    }
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Successful reads per transport and card type (indexes as in the label tables).
    pub cards_read: [[u64; CARD_TYPES.len()]; TRANSPORTS.len()],
    /// Failed reads per reason, in [`Reason::ALL`] order.
    pub read_errors: [u64; Reason::ALL.len()],
    /// Reads per duration bucket (not cumulative); the last is above every bound.
    pub read_buckets: [u64; READ_BUCKETS.len() + 1],
    /// Total duration of successful reads, in seconds.
    pub read_seconds: f64,
    /// Signatures verified, then failed.
    pub signatures: [u64; SIGNATURE_RESULTS.len()],
    /// Connections closed before sending a byte.
    pub silent_connections: u64,
}

/// Everything one scrape exposes: the counters plus the gauges read from the hub.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Readers present per transport (label-table order).
    pub readers: [u64; TRANSPORTS.len()],
    /// Open WebSocket connections.
    pub clients: u64,
    /// Time since the hub started.
    pub uptime: Duration,
    /// The counters.
    pub counters: Counters,
}

impl Sample {
    /// Counts a reader of `kind` as present.
    pub fn add_reader(&mut self, kind: ReaderKind) {
        self.readers[transport_index(kind)] += 1;
    }
}

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `sample` in the Prometheus text exposition format 0.0.4.
pub fn render(sample: &Sample) -> String {
    let mut out = Exposition::default();
    let c = &sample.counters;

    out.family(
        "vitale_bridge_build_info",
        "gauge",
        "Always 1; the version label names the running build.",
    );
    out.sample(
        "vitale_bridge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        "1",
    );

    out.family(
        "vitale_bridge_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    out.sample(
        "vitale_bridge_uptime_seconds",
        &[],
        &float(sample.uptime.as_secs_f64()),
    );

    out.family(
        "vitale_bridge_readers",
        "gauge",
        "Readers present, per transport.",
    );
    for ((_, transport), n) in TRANSPORTS.iter().zip(sample.readers) {
        out.sample(
            "vitale_bridge_readers",
            &[("transport", transport)],
            &n.to_string(),
        );
    }

    out.family(
        "vitale_bridge_clients",
        "gauge",
        "Open WebSocket connections (status pages included).",
    );
    out.sample("vitale_bridge_clients", &[], &sample.clients.to_string());

    out.family(
        "vitale_bridge_cards_read_total",
        "counter",
        "Identities read successfully (identity.read events), per transport and card type.",
    );
    for ((_, transport), row) in TRANSPORTS.iter().zip(&c.cards_read) {
        for (i, ((_, card_type), n)) in CARD_TYPES.iter().zip(row).enumerate() {
            if i < READABLE || *n > 0 {
                out.sample(
                    "vitale_bridge_cards_read_total",
                    &[("transport", transport), ("card_type", card_type)],
                    &n.to_string(),
                );
            }
        }
    }

    out.family(
        "vitale_bridge_read_errors_total",
        "counter",
        "Identity reads that failed (identity.error events), per protocol reason.",
    );
    for (reason, n) in Reason::ALL.iter().zip(c.read_errors) {
        out.sample(
            "vitale_bridge_read_errors_total",
            &[("reason", reason.as_str())],
            &n.to_string(),
        );
    }

    out.family(
        "vitale_bridge_read_duration_seconds",
        "histogram",
        "Duration of successful identity reads on the card or phone.",
    );
    // Exposed buckets are cumulative; `_count` is the `+Inf` bucket by definition, so
    // both come from the same numbers and always agree.
    let mut cumulative = 0u64;
    for (i, n) in c.read_buckets.iter().enumerate() {
        cumulative += n;
        let le = READ_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_string(), |b| float(*b));
        out.sample(
            "vitale_bridge_read_duration_seconds_bucket",
            &[("le", &le)],
            &cumulative.to_string(),
        );
    }
    out.sample(
        "vitale_bridge_read_duration_seconds_sum",
        &[],
        &float(c.read_seconds),
    );
    out.sample(
        "vitale_bridge_read_duration_seconds_count",
        &[],
        &cumulative.to_string(),
    );

    out.family(
        "vitale_bridge_signatures_total",
        "counter",
        "Phone signatures (card.sign) answered by the phone, by outcome.",
    );
    for (result, n) in SIGNATURE_RESULTS.iter().zip(c.signatures) {
        out.sample(
            "vitale_bridge_signatures_total",
            &[("result", result)],
            &n.to_string(),
        );
    }

    out.family(
        "vitale_bridge_silent_connections_total",
        "counter",
        "Connections closed before sending a byte: a browser's Local Network Access check, or a port scan.",
    );
    out.sample(
        "vitale_bridge_silent_connections_total",
        &[],
        &c.silent_connections.to_string(),
    );

    out.text
}

/// A float as the exposition format spells it (Go's `strconv` style for specials).
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        v.to_string()
    }
}

/// Escapes a label value: backslash, double quote and line feed (format 0.0.4).
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes `# HELP` text: backslash and line feed (format 0.0.4).
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The text being built.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label_value(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain-1.0"), "plain-1.0");
        let mut out = Exposition::default();
        out.sample("m", &[("a", "x\"y"), ("b", "\\\n")], "1");
        assert_eq!(out.text, "m{a=\"x\\\"y\",b=\"\\\\\\n\"} 1\n");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn label_tables_use_the_protocol_spellings() {
        for (kind, label) in TRANSPORTS {
            assert_eq!(serde_json::to_value(kind).expect("json"), *label);
            assert_eq!(TRANSPORTS[transport_index(kind)].1, label);
        }
        for (card_type, label) in CARD_TYPES {
            assert_eq!(serde_json::to_value(card_type).expect("json"), *label);
            assert_eq!(CARD_TYPES[card_type_index(card_type)].1, label);
        }
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason_index(*r), i);
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let m = Metrics::default();
        let ms = Duration::from_millis;
        for d in [ms(5), ms(10), ms(11), ms(300), ms(300), ms(7000)] {
            m.read_succeeded(ReaderKind::Simulated, CardType::Vitale2, d);
        }
        let text = render(&Sample {
            counters: m.counters(),
            ..Sample::default()
        });
        let buckets: Vec<(String, u64)> =
            lines_of(&text, "vitale_bridge_read_duration_seconds_bucket{")
                .iter()
                .map(|l| {
                    let le = l.split('"').nth(1).expect("le").to_string();
                    let n = l.rsplit(' ').next().expect("value").parse().expect("int");
                    (le, n)
                })
                .collect();
        let want: Vec<(String, u64)> = [
            ("0.01", 2),
            ("0.025", 3),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 3),
            ("0.5", 5),
            ("1", 5),
            ("2.5", 5),
            ("5", 5),
            ("+Inf", 6),
        ]
        .iter()
        .map(|(le, n)| (le.to_string(), *n))
        .collect();
        assert_eq!(buckets, want);
        assert!(text.contains("\nvitale_bridge_read_duration_seconds_count 6\n"));
        let sum: f64 = lines_of(&text, "vitale_bridge_read_duration_seconds_sum ")[0]
            .rsplit(' ')
            .next()
            .expect("value")
            .parse()
            .expect("float");
        assert!((sum - 7.626).abs() < 1e-9, "{sum}");
        assert!(
            text.contains(
                "vitale_bridge_cards_read_total{transport=\"simulated\",card_type=\"vitale2\"} 6\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_every_series_is_well_formed() {
        let m = Metrics::default();
        m.read_failed(Reason::CardRemoved);
        m.read_failed(Reason::CardRemoved);
        m.signature(true);
        m.silent_connection();
        m.read_succeeded(ReaderKind::Pcsc, CardType::Unknown, Duration::ZERO);
        let mut sample = Sample {
            clients: 3,
            uptime: Duration::from_millis(1500),
            counters: m.counters(),
            ..Sample::default()
        };
        sample.add_reader(ReaderKind::Nfc);
        sample.add_reader(ReaderKind::Nfc);
        let text = render(&sample);
        assert!(text.ends_with('\n'));
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().expect("name").to_string());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().expect("name");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| f.ends_with("_seconds")))
                .unwrap_or(name);
            assert!(typed.contains(family), "no # TYPE before {line}");
            let value = line.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains("vitale_bridge_readers{transport=\"nfc\"} 2\n"));
        assert!(text.contains("vitale_bridge_readers{transport=\"pcsc\"} 0\n"));
        assert!(text.contains("vitale_bridge_clients 3\n"));
        assert!(text.contains("vitale_bridge_uptime_seconds 1.5\n"));
        assert!(text.contains("vitale_bridge_read_errors_total{reason=\"CARD_REMOVED\"} 2\n"));
        assert!(text.contains("vitale_bridge_read_errors_total{reason=\"INTERNAL\"} 0\n"));
        assert!(text.contains("vitale_bridge_signatures_total{result=\"verified\"} 1\n"));
        assert!(text.contains("\nvitale_bridge_silent_connections_total 1\n"));
        // A non-readable type appears only once counted.
        assert!(text.contains("card_type=\"unknown\"} 1\n"));
        assert!(!text.contains("card_type=\"cps\""));
        assert!(text.contains(&format!(
            "vitale_bridge_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn floats_use_the_exposition_spelling() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.025), "0.025");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
    }
}
