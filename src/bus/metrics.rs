//! Operational metrics: counters the hub keeps as backends report reads. The server
//! renders them for `/metrics` (`crate::server::metrics`).
//!
//! Every label value comes from a closed enum — the reader's transport, the card
//! type, the protocol's stable reason — never from card, phone or reader data, so a
//! scrape cannot carry a NIR, a name or a birth date (product.md §5). Reader names
//! are left out on purpose: they are free text chosen by drivers.

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
pub const TRANSPORTS: [(ReaderKind, &str); 3] = [
    (ReaderKind::Pcsc, "pcsc"),
    (ReaderKind::Nfc, "nfc"),
    (ReaderKind::Simulated, "simulated"),
];

/// Card types in label order, with their `card_type` label value (the protocol's
/// `cardType`).
pub const CARD_TYPES: [(CardType, &str); 5] = [
    (CardType::Vitale2, "vitale2"),
    (CardType::Apcv, "apcv"),
    (CardType::Vitale1, "vitale1"),
    (CardType::Cps, "cps"),
    (CardType::Unknown, "unknown"),
];

/// Card types that can be read successfully; their series are always exposed, the
/// others only once non-zero.
pub const READABLE: usize = 2;

/// Signature outcomes in label order.
pub const SIGNATURE_RESULTS: [&str; 2] = ["verified", "failed"];

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

    /// The counters now, for [`crate::server::metrics::render`].
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
