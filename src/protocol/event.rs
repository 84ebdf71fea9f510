//! Wire shapes of events and the objects they carry (product.md §4.2–4.3).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::card::{CardType, Identity};
use crate::protocol::Reason;

/// How a reader is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderKind {
    /// A PC/SC reader (contact or contactless).
    Pcsc,
    /// A libnfc device.
    Nfc,
    /// An in-process simulated reader (demo mode).
    Simulated,
}

/// A reader's state as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReaderState {
    /// No card.
    Empty,
    /// A card is present, not (yet) read.
    Present,
    /// A read is in progress.
    Reading,
    /// The identity has been read and is cached.
    Ready,
    /// The last read failed.
    Error,
}

/// A card in a reader; `identity` once read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Card {
    /// ATR, uppercase hex.
    pub atr: String,
    /// Detected type.
    pub card_type: CardType,
    /// Cached identity of this card, dropped with the card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Arc<Identity>>,
}

/// A reader as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct Reader {
    /// Stable id for the reader's life (`pcsc:<name>`, `nfc:<connstring>`, `sim:<n>`).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Attachment.
    pub kind: ReaderKind,
    /// Contactless (phones, NFC).
    pub contactless: bool,
    /// Current state.
    pub state: ReaderState,
    /// Present card, if any.
    pub card: Option<Card>,
}

impl Reader {
    /// The same reader with any identity removed (for redacted views).
    pub fn redacted(&self) -> Reader {
        let mut r = self.clone();
        if let Some(card) = r.card.as_mut() {
            card.identity = None;
        }
        r
    }
}

/// A service the daemon depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// pcscd (or WinSCard / PCSC.framework).
    Pcsc,
    /// A libnfc device.
    Nfc,
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Reachable.
    Up,
    /// Not reachable; the daemon retries with backoff.
    Down,
}

/// A verified, origin-bound signature (product.md §4.3).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// Reader id.
    pub reader: String,
    /// Always `ES256`.
    pub alg: &'static str,
    /// The origin the digest was bound to (`native:` for native clients).
    pub origin: String,
    /// The client's challenge, base64url without padding.
    pub challenge: String,
    /// SEC1 uncompressed public key, base64url.
    pub public_key: String,
    /// `r ‖ s`, base64url.
    pub signature: String,
    /// Always true: unverified signatures are errors, never results.
    pub verified: bool,
}

/// Progress of a read.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// Current step, from 1.
    pub step: u32,
    /// Total steps (an estimate that may grow).
    pub total: u32,
}

/// What `card.inserted` carries.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inserted {
    /// ATR, uppercase hex.
    pub atr: String,
    /// Detected type.
    pub card_type: CardType,
}

/// What `identity.error` carries.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityFailure {
    /// Stable reason.
    pub reason: Reason,
    /// Human explanation (no identity data).
    pub message: String,
}

/// What `service.changed` carries.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceChange {
    /// Which service.
    pub service: Service,
    /// New state.
    pub state: ServiceState,
    /// Human detail (connstring, error text).
    pub detail: String,
}

/// An empty JSON object (`card.removed` data).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Empty {}

/// The `type` and `data` of an event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum EventKind {
    /// A reader appeared.
    #[serde(rename = "reader.added")]
    ReaderAdded(Reader),
    /// A reader went away.
    #[serde(rename = "reader.removed")]
    ReaderRemoved(Reader),
    /// A card was inserted or a phone tapped.
    #[serde(rename = "card.inserted")]
    CardInserted(Inserted),
    /// A read is progressing.
    #[serde(rename = "card.reading")]
    CardReading(Progress),
    /// An identity was read.
    #[serde(rename = "identity.read")]
    IdentityRead(Arc<Identity>),
    /// A read failed.
    #[serde(rename = "identity.error")]
    IdentityError(IdentityFailure),
    /// The card or phone went away.
    #[serde(rename = "card.removed")]
    CardRemoved(Empty),
    /// A phone signed a challenge.
    #[serde(rename = "signature.completed")]
    SignatureCompleted(Arc<Signature>),
    /// A service went up or down.
    #[serde(rename = "service.changed")]
    ServiceChanged(ServiceChange),
}

impl EventKind {
    /// The wire `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ReaderAdded(_) => "reader.added",
            EventKind::ReaderRemoved(_) => "reader.removed",
            EventKind::CardInserted(_) => "card.inserted",
            EventKind::CardReading(_) => "card.reading",
            EventKind::IdentityRead(_) => "identity.read",
            EventKind::IdentityError(_) => "identity.error",
            EventKind::CardRemoved(_) => "card.removed",
            EventKind::SignatureCompleted(_) => "signature.completed",
            EventKind::ServiceChanged(_) => "service.changed",
        }
    }

    /// Whether the data carries identity or signature material that redacted views
    /// (the status page) must not receive.
    pub fn is_sensitive(&self) -> bool {
        matches!(
            self,
            EventKind::IdentityRead(_) | EventKind::SignatureCompleted(_)
        )
    }
}

/// One event of the daemon's single ordered sequence.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event across the daemon's life.
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `type` and `data`.
    #[serde(flatten)]
    pub kind: EventKind,
    /// Reader id, or null.
    pub reader: Option<String>,
}

impl Event {
    /// This event with its `data` replaced (a redaction or a scoped identity), for the
    /// views that must not see all of it. Same `seq`, so every stream stays gapless.
    pub fn with_data<D: Serialize>(&self, data: D) -> EventWithData<'_, D> {
        EventWithData {
            seq: self.seq,
            time: &self.time,
            kind: self.kind.type_name(),
            data,
            reader: &self.reader,
        }
    }
}

/// An [`Event`] whose `data` is something other than the event's own.
#[derive(Debug, Serialize)]
pub struct EventWithData<'a, D: Serialize> {
    seq: u64,
    time: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    data: D,
    reader: &'a Option<String>,
}

/// The `data` of an event a connection may not see: `{"redacted":true}`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Redacted {
    redacted: bool,
}

/// The one value of [`Redacted`].
pub const REDACTED: Redacted = Redacted { redacted: true };

/// Current UTC time as RFC 3339 with milliseconds, e.g. `2026-11-30T14:38:49.123Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_serializes_to_the_protocol_shape() {
        let ev = Event {
            seq: 7,
            time: "2026-01-01T00:00:00.000Z".into(),
            kind: EventKind::CardRemoved(Empty {}),
            reader: Some("sim:0".into()),
        };
        let v = serde_json::to_value(&ev).expect("serializes");
        assert_eq!(
            v,
            serde_json::json!({"seq":7,"time":"2026-01-01T00:00:00.000Z","type":"card.removed","data":{},"reader":"sim:0"})
        );
        let ev = Event {
            seq: 8,
            time: "t".into(),
            kind: EventKind::CardInserted(Inserted {
                atr: "3B".into(),
                card_type: CardType::Vitale2,
            }),
            reader: None,
        };
        let v = serde_json::to_value(&ev).expect("serializes");
        assert_eq!(
            v["data"],
            serde_json::json!({"atr":"3B","cardType":"vitale2"})
        );
        assert_eq!(v["reader"], serde_json::Value::Null);
    }

    #[test]
    fn time_has_milliseconds_and_z() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z'));
        assert_eq!(&t[19..20], ".");
    }
}
