//! The Prometheus text exposition (format 0.0.4) of the hub's counters, for the
//! opt-in `/metrics`. Written by hand: the format is a few lines of text, and the
//! client crates would bring a registry the hub's fixed counters do not need.
//!
//! Every label value comes from a closed enum (see [`crate::bus::metrics`]), so a
//! scrape cannot carry identity data.

use std::fmt::Write as _;

use crate::bus::metrics::{
    CARD_TYPES, READ_BUCKETS, READABLE, SIGNATURE_RESULTS, Sample, TRANSPORTS,
};
use crate::protocol::Reason;

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
    use std::time::Duration;

    use super::*;
    use crate::bus::Metrics;
    use crate::card::CardType;
    use crate::protocol::ReaderKind;
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
