//! The hub: assigns `seq`, keeps the registry, fans events out.
//!
//! Backends on blocking threads call [`Hub::publish`] (synchronous, never blocks on a
//! client). Each subscriber has a bounded queue; one that lets it fill is marked
//! lagged and dropped from the fan-out, and its session closes it with 1008 while
//! everyone else keeps receiving. Each event is serialized once per distinct view
//! (full, redacted, one per scope set in use) whatever the number of subscribers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{self, Metrics};
use super::scope::{ScopedIdentity, Scopes, View};
use crate::protocol::WipedJson;
use crate::protocol::event::REDACTED;
use crate::protocol::event::{
    Card, Empty, Event, EventKind, IdentityFailure, Inserted, Progress, Reader, ReaderState,
    Service, ServiceChange, ServiceState, now_rfc3339,
};
use crate::protocol::rpc::EventNotification;
use crate::transport::{EventSink, ReaderHandle, Update};

/// One serialized `event` notification, shared by every subscriber of a view.
#[derive(Debug, Clone)]
pub struct Notification {
    /// The event's `seq`.
    pub seq: u64,
    /// The complete JSON-RPC notification text, shared by every subscriber of a
    /// view and wiped when the last one is done with it.
    pub json: WipedJson,
}

/// A live subscription: the snapshot and the ordered notifications after it.
#[derive(Debug)]
pub struct Subscription {
    /// Id for [`Hub::unsubscribe`].
    pub id: u64,
    /// The last `seq` the snapshot includes.
    pub seq: u64,
    /// Readers at `seq`.
    pub snapshot: Vec<Reader>,
    /// Notifications with `seq` greater than [`Subscription::seq`], in order.
    pub rx: mpsc::Receiver<Notification>,
    /// Resolves when the hub dropped this subscriber because its queue was full
    /// (closed without a value when the subscription simply ends).
    pub lagged: oneshot::Receiver<()>,
}

/// PC/SC service state for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PcscStatus {
    /// Connected to pcscd.
    Up,
    /// Not reachable; retrying.
    Down,
    /// Turned off by config or demo mode.
    Disabled,
}

/// The `status` method's result, minus what the server adds.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    /// PC/SC state.
    pub pcsc: PcscStatus,
    /// One entry per NFC device.
    pub nfc: Vec<NfcStatus>,
    /// Open client connections.
    pub clients: usize,
    /// Milliseconds since the hub started.
    #[serde(rename = "uptimeMs")]
    pub uptime_ms: u64,
}

/// One NFC device's state.
#[derive(Debug, Clone, Serialize)]
pub struct NfcStatus {
    /// libnfc connstring.
    pub connstring: String,
    /// Opening, up or down.
    pub state: NfcState,
}

/// An NFC device's state for `status`: a configured device is listed from start-up
/// on, `opening` until its thread first reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NfcState {
    /// Configured; the first open attempt has not finished.
    Opening,
    /// Open.
    Up,
    /// Not reachable; retrying with backoff.
    Down,
}

impl From<ServiceState> for NfcState {
    fn from(s: ServiceState) -> Self {
        match s {
            ServiceState::Up => NfcState::Up,
            ServiceState::Down => NfcState::Down,
        }
    }
}

struct Entry {
    reader: Reader,
    handle: Option<ReaderHandle>,
}

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Notification>,
    view: View,
    lagged: Option<oneshot::Sender<()>>,
}

struct State {
    seq: u64,
    readers: BTreeMap<String, Entry>,
    subscribers: Vec<Subscriber>,
    next_subscriber: u64,
    pcsc: PcscStatus,
    nfc: BTreeMap<String, NfcState>,
}

/// The event bus and reader registry. Cheap to share as `Arc<Hub>`.
pub struct Hub {
    state: Mutex<State>,
    started: Instant,
    clients: AtomicUsize,
    metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with PC/SC reported as `pcsc` until a backend says otherwise.
    pub fn new(pcsc: PcscStatus) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State {
                seq: 0,
                readers: BTreeMap::new(),
                subscribers: Vec::new(),
                next_subscriber: 1,
                pcsc,
                nfc: BTreeMap::new(),
            }),
            started: Instant::now(),
            clients: AtomicUsize::new(0),
            metrics: Metrics::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the registry half-updated in a
        // way that matters more than stopping the whole daemon would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a backend update and publishes the resulting events, in order.
    pub fn publish(&self, update: Update) {
        let mut st = self.lock();
        match update {
            Update::ReaderAdded {
                id,
                name,
                kind,
                contactless,
                handle,
            } => {
                if st.readers.contains_key(&id) {
                    tracing::debug!(reader = %id, "reader already registered");
                    return;
                }
                let reader = Reader {
                    id: id.clone(),
                    name,
                    kind,
                    contactless,
                    state: ReaderState::Empty,
                    card: None,
                };
                st.readers.insert(
                    id.clone(),
                    Entry {
                        reader: reader.clone(),
                        handle,
                    },
                );
                emit(&mut st, Some(id), EventKind::ReaderAdded(reader));
            }
            Update::ReaderRemoved { reader } => {
                let has_card = match st.readers.get(&reader) {
                    None => return,
                    Some(e) => e.reader.card.is_some(),
                };
                if has_card {
                    remove_card(&mut st, &reader);
                }
                if let Some(entry) = st.readers.remove(&reader) {
                    emit(
                        &mut st,
                        Some(reader),
                        EventKind::ReaderRemoved(entry.reader),
                    );
                }
            }
            Update::CardInserted {
                reader,
                atr,
                card_type,
            } => {
                let had_card = match st.readers.get(&reader) {
                    None => return,
                    Some(e) => e.reader.card.is_some(),
                };
                if had_card {
                    remove_card(&mut st, &reader);
                }
                let atr = hex::encode_upper(atr);
                if let Some(e) = st.readers.get_mut(&reader) {
                    e.reader.card = Some(Card {
                        atr: atr.clone(),
                        card_type,
                        identity: None,
                    });
                    e.reader.state = ReaderState::Present;
                }
                emit(
                    &mut st,
                    Some(reader),
                    EventKind::CardInserted(Inserted { atr, card_type }),
                );
            }
            Update::CardReading {
                reader,
                step,
                total,
            } => {
                if !set_state(&mut st, &reader, ReaderState::Reading) {
                    return;
                }
                emit(
                    &mut st,
                    Some(reader),
                    EventKind::CardReading(Progress { step, total }),
                );
            }
            Update::IdentityRead {
                reader,
                identity,
                elapsed,
            } => {
                match st.readers.get_mut(&reader) {
                    Some(Entry {
                        reader:
                            Reader {
                                card: Some(card),
                                state,
                                kind,
                                ..
                            },
                        ..
                    }) => {
                        card.identity = Some(identity.clone());
                        *state = ReaderState::Ready;
                        // Counted here, with the event, so the metric is exactly the
                        // identity.read events and is updated under the lock a
                        // scrape takes.
                        self.metrics.read_succeeded(*kind, card.card_type, elapsed);
                    }
                    _ => return,
                }
                emit(&mut st, Some(reader), EventKind::IdentityRead(identity));
            }
            Update::IdentityError { reader, error } => {
                if !set_state(&mut st, &reader, ReaderState::Error) {
                    return;
                }
                self.metrics.read_failed(error.reason);
                emit(
                    &mut st,
                    Some(reader),
                    EventKind::IdentityError(IdentityFailure {
                        reason: error.reason,
                        message: error.message,
                    }),
                );
            }
            Update::CardRemoved { reader } => {
                let has_card = st
                    .readers
                    .get(&reader)
                    .is_some_and(|e| e.reader.card.is_some());
                if has_card {
                    remove_card(&mut st, &reader);
                }
            }
            Update::SignatureCompleted { signature } => {
                let reader = signature.reader.clone();
                emit(
                    &mut st,
                    Some(reader),
                    EventKind::SignatureCompleted(signature),
                );
            }
            Update::NfcOpening { connstring } => {
                st.nfc.entry(connstring).or_insert(NfcState::Opening);
            }
            Update::ServiceChanged {
                service,
                state,
                detail,
            } => {
                let changed = match service {
                    Service::Pcsc => {
                        let new = match state {
                            ServiceState::Up => PcscStatus::Up,
                            ServiceState::Down => PcscStatus::Down,
                        };
                        std::mem::replace(&mut st.pcsc, new) != new
                    }
                    Service::Nfc => {
                        let new = NfcState::from(state);
                        st.nfc.insert(detail.clone(), new) != Some(new)
                    }
                };
                if changed {
                    emit(
                        &mut st,
                        None,
                        EventKind::ServiceChanged(ServiceChange {
                            service,
                            state,
                            detail,
                        }),
                    );
                }
            }
        }
    }

    /// Subscribes atomically: the snapshot reflects exactly the events up to the
    /// returned `seq`, and the receiver gets every later one. `redacted` subscribers
    /// (the status page) never receive identity or signature data; others get
    /// everything ([`View::Full`], for in-process consumers).
    pub fn subscribe(&self, queue: usize, redacted: bool) -> Subscription {
        let view = if redacted { View::Redacted } else { View::Full };
        self.subscribe_as(queue, view)
    }

    /// Like [`Hub::subscribe`] with the given view. The snapshot is redacted for
    /// [`View::Redacted`] and otherwise complete: the caller serializes it through
    /// [`super::ScopedReader`] with the view's scopes.
    pub fn subscribe_as(&self, queue: usize, view: View) -> Subscription {
        let redacted = view == View::Redacted;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let (lag_tx, lagged) = oneshot::channel();
        let mut st = self.lock();
        let id = st.next_subscriber;
        st.next_subscriber += 1;
        st.subscribers.push(Subscriber {
            id,
            tx,
            view,
            lagged: Some(lag_tx),
        });
        let snapshot = snapshot(&st, redacted);
        Subscription {
            id,
            seq: st.seq,
            snapshot,
            rx,
            lagged,
        }
    }

    /// Stops delivering to a subscription.
    pub fn unsubscribe(&self, id: u64) {
        self.lock().subscribers.retain(|s| s.id != id);
    }

    /// Number of live subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// The readers now (identities included unless `redacted`).
    pub fn readers(&self, redacted: bool) -> Vec<Reader> {
        snapshot(&self.lock(), redacted)
    }

    /// One reader's current state and command handle.
    pub fn reader(&self, id: &str) -> Option<(Reader, Option<ReaderHandle>)> {
        self.lock()
            .readers
            .get(id)
            .map(|e| (e.reader.clone(), e.handle.clone()))
    }

    /// The last `seq` published.
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Service states and counters for `status`.
    pub fn status(&self) -> StatusSnapshot {
        let st = self.lock();
        StatusSnapshot {
            pcsc: st.pcsc,
            nfc: st
                .nfc
                .iter()
                .map(|(c, s)| NfcStatus {
                    connstring: c.clone(),
                    state: *s,
                })
                .collect(),
            clients: self.clients.load(Ordering::Relaxed),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Sets the PC/SC status without an event (start-up configuration).
    pub fn set_pcsc_status(&self, status: PcscStatus) {
        self.lock().pcsc = status;
    }

    /// The open-connection counter the server maintains.
    pub fn clients(&self) -> &AtomicUsize {
        &self.clients
    }

    /// The counters behind `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Everything `GET /metrics` exposes, taken under the registry lock so reads
    /// and their durations are seen together.
    pub fn metrics_sample(&self) -> metrics::Sample {
        let st = self.lock();
        let mut sample = metrics::Sample {
            clients: self.clients.load(Ordering::Relaxed) as u64,
            uptime: self.started.elapsed(),
            counters: self.metrics.counters(),
            ..metrics::Sample::default()
        };
        for e in st.readers.values() {
            sample.add_reader(e.reader.kind);
        }
        sample
    }
}

fn snapshot(st: &State, redacted: bool) -> Vec<Reader> {
    st.readers
        .values()
        .map(|e| {
            if redacted {
                e.reader.redacted()
            } else {
                e.reader.clone()
            }
        })
        .collect()
}

fn set_state(st: &mut State, reader: &str, state: ReaderState) -> bool {
    match st.readers.get_mut(reader) {
        Some(e) if e.reader.card.is_some() => {
            e.reader.state = state;
            true
        }
        _ => false,
    }
}

fn remove_card(st: &mut State, reader: &str) {
    if let Some(e) = st.readers.get_mut(reader) {
        // Dropping the card drops the registry's reference to its identity; the
        // Sensitive fields zero themselves once the last reference goes.
        e.reader.card = None;
        e.reader.state = ReaderState::Empty;
    }
    emit(
        st,
        Some(reader.to_string()),
        EventKind::CardRemoved(Empty {}),
    );
}

impl EventSink for Hub {
    fn publish(&self, update: Update) {
        Hub::publish(self, update);
    }
}

fn emit(st: &mut State, reader: Option<String>, kind: EventKind) {
    st.seq += 1;
    let event = Event {
        seq: st.seq,
        time: now_rfc3339(),
        kind,
        reader,
    };
    tracing::debug!(seq = event.seq, kind = event.kind.type_name(), reader = ?event.reader, "event");
    let mut views = Views::new(&event);
    let seq = event.seq;
    st.subscribers.retain_mut(|s| {
        let json = views.get(&s.view);
        match s.tx.try_send(Notification { seq, json }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if let Some(l) = s.lagged.take() {
                    let _ = l.send(());
                }
                tracing::warn!(subscriber = s.id, "subscriber queue full; dropping it");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

/// Which encoding of an event a view gets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encoding {
    Full,
    /// Type, seq, time and reader only.
    Redacted,
    /// An identity under these scopes (never `ALL`, which is `Full`).
    Scoped(Scopes),
}

/// Picks the encoding of `kind` for `view`. Pure.
fn encoding(kind: &EventKind, view: &View) -> Encoding {
    match (kind, view) {
        (_, View::Full) => Encoding::Full,
        (k, View::Redacted) if k.is_sensitive() => Encoding::Redacted,
        (EventKind::IdentityRead(_), View::Client { scopes, .. }) if *scopes != Scopes::ALL => {
            Encoding::Scoped(*scopes)
        }
        // A signature (its challenge, and the phone's public key: a stable pseudonym
        // of the patient's phone) goes only to connections bound like the request.
        // The others still get the event, without its data, so their `seq` stays
        // gapless.
        (EventKind::SignatureCompleted(sig), View::Client { scopes, binding }) => {
            if scopes.contains(Scopes::SIGN) && *binding == sig.origin {
                Encoding::Full
            } else {
                Encoding::Redacted
            }
        }
        _ => Encoding::Full,
    }
}

/// The encodings of one event, each made at most once, when a subscriber first
/// needs it.
struct Views<'a> {
    event: &'a Event,
    full: Option<WipedJson>,
    redacted: Option<WipedJson>,
    scoped: [Option<WipedJson>; 16],
}

impl<'a> Views<'a> {
    fn new(event: &'a Event) -> Self {
        Views {
            event,
            full: None,
            redacted: None,
            scoped: Default::default(),
        }
    }

    fn get(&mut self, view: &View) -> WipedJson {
        match encoding(&self.event.kind, view) {
            Encoding::Full => {
                if self.full.is_none() {
                    self.full = Some(self.encode_full());
                }
                self.full.clone()
            }
            Encoding::Redacted => Some(self.redacted()),
            Encoding::Scoped(scopes) => {
                let slot = scopes.index();
                if self.scoped[slot].is_none() {
                    self.scoped[slot] = Some(self.encode_scoped(scopes));
                }
                self.scoped[slot].clone()
            }
        }
        .unwrap_or_else(|| self.redacted())
    }

    fn redacted(&mut self) -> WipedJson {
        let event = self.event;
        self.redacted
            .get_or_insert_with(|| {
                encode_or_placeholder(&EventNotification::new(&event.with_data(REDACTED)))
            })
            .clone()
    }

    fn encode_full(&mut self) -> WipedJson {
        match WipedJson::encode(&EventNotification::new(self.event)) {
            Ok(s) => s,
            // Never expected; the event still goes out, without its data, so no
            // subscriber sees a gap in `seq`.
            Err(e) => {
                tracing::error!(error = %e, "event serialization failed; sending it redacted");
                self.redacted()
            }
        }
    }

    fn encode_scoped(&mut self, scopes: Scopes) -> WipedJson {
        let EventKind::IdentityRead(identity) = &self.event.kind else {
            return self.encode_full();
        };
        let scoped = self.event.with_data(ScopedIdentity(identity, scopes));
        match WipedJson::encode(&EventNotification::new(&scoped)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "event serialization failed; sending it redacted");
                self.redacted()
            }
        }
    }
}

/// The redacted form is numbers and fixed strings; it cannot fail, but a fixed text
/// stands in rather than a panic.
fn encode_or_placeholder<T: Serialize>(v: &T) -> WipedJson {
    WipedJson::encode(v).unwrap_or_else(|_| {
        WipedJson::from_static(r#"{"jsonrpc":"2.0","method":"event","params":{"redacted":true}}"#)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::card::{CardType, Identity};
    use crate::protocol::{ProtocolError, ReaderKind, Signature};

    fn add(hub: &Hub, id: &str) {
        hub.publish(Update::ReaderAdded {
            id: id.into(),
            name: id.into(),
            kind: ReaderKind::Simulated,
            contactless: false,
            handle: None,
        });
    }

    fn seqs(rx: &mut mpsc::Receiver<Notification>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n.seq);
        }
        out
    }

    #[test]
    fn snapshot_then_gapless_sequence() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        let mut sub = hub.subscribe(16, false);
        assert_eq!(sub.seq, 1);
        assert_eq!(sub.snapshot.len(), 1);
        hub.publish(Update::CardInserted {
            reader: "sim:0".into(),
            atr: vec![0x3B],
            card_type: CardType::Vitale2,
        });
        hub.publish(Update::CardRemoved {
            reader: "sim:0".into(),
        });
        assert_eq!(seqs(&mut sub.rx), vec![2, 3]);
    }

    #[test]
    fn configured_nfc_devices_are_listed_opening_until_their_thread_reports() {
        let hub = Hub::new(PcscStatus::Disabled);
        let mut sub = hub.subscribe(16, false);
        hub.publish(Update::NfcOpening {
            connstring: "pn532_uart:/dev/ttyUSB0".into(),
        });
        let state = |hub: &Hub| {
            let st = hub.status();
            assert_eq!(st.nfc.len(), 1);
            assert_eq!(st.nfc[0].connstring, "pn532_uart:/dev/ttyUSB0");
            st.nfc[0].state
        };
        assert_eq!(state(&hub), NfcState::Opening);
        assert!(seqs(&mut sub.rx).is_empty(), "listing is not an event");
        for (s, want) in [
            (ServiceState::Down, NfcState::Down),
            (ServiceState::Up, NfcState::Up),
        ] {
            hub.publish(Update::ServiceChanged {
                service: Service::Nfc,
                state: s,
                detail: "pn532_uart:/dev/ttyUSB0".into(),
            });
            assert_eq!(state(&hub), want);
        }
        assert_eq!(seqs(&mut sub.rx), vec![1, 2], "down, then up");
        // A device that already reported is not set back to opening.
        hub.publish(Update::NfcOpening {
            connstring: "pn532_uart:/dev/ttyUSB0".into(),
        });
        assert_eq!(state(&hub), NfcState::Up);
    }

    #[test]
    fn stale_identity_after_removal_is_dropped() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        let mut sub = hub.subscribe(16, false);
        hub.publish(Update::IdentityError {
            reader: "sim:0".into(),
            error: ProtocolError::new(crate::protocol::Reason::CardMute, "x"),
        });
        hub.publish(Update::CardRemoved {
            reader: "sim:0".into(),
        });
        assert!(seqs(&mut sub.rx).is_empty());
    }

    #[test]
    fn full_queue_drops_only_that_subscriber() {
        let hub = Hub::new(PcscStatus::Disabled);
        let mut slow = hub.subscribe(2, false);
        let mut fast = hub.subscribe(64, false);
        for i in 0..5 {
            add(&hub, &format!("sim:{i}"));
        }
        assert!(slow.lagged.try_recv().is_ok(), "told it lagged");
        assert_eq!(seqs(&mut fast.rx), vec![1, 2, 3, 4, 5]);
        assert_eq!(hub.subscriber_count(), 1);
    }

    #[test]
    fn reader_removal_removes_card_first() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        hub.publish(Update::CardInserted {
            reader: "sim:0".into(),
            atr: vec![0x3B],
            card_type: CardType::Unknown,
        });
        let mut sub = hub.subscribe(16, false);
        hub.publish(Update::ReaderRemoved {
            reader: "sim:0".into(),
        });
        let got: Vec<String> = std::iter::from_fn(|| sub.rx.try_recv().ok())
            .map(|n| n.json.to_string())
            .collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("card.removed"));
        assert!(got[1].contains("reader.removed"));
        assert!(hub.readers(false).is_empty());
    }

    #[test]
    fn metrics_follow_identity_events_and_the_registry() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        add(&hub, "sim:1");
        let identity = || {
            Arc::new(Identity {
                source: crate::card::Source::VitaleCard,
                profile: "vitale2-public".into(),
                reader: "sim:0".into(),
                card_type: CardType::Vitale2,
                environment: crate::card::Environment::Unknown,
                beneficiaries: Vec::new(),
                apcv: None,
            })
        };
        hub.publish(Update::CardInserted {
            reader: "sim:0".into(),
            atr: vec![0x3B],
            card_type: CardType::Vitale2,
        });
        hub.publish(Update::IdentityRead {
            reader: "sim:0".into(),
            identity: identity(),
            elapsed: Duration::from_millis(30),
        });
        hub.publish(Update::IdentityError {
            reader: "sim:0".into(),
            error: ProtocolError::new(crate::protocol::Reason::CardMute, "x"),
        });
        // Outcomes for a card that has gone are not events, so not counted either.
        hub.publish(Update::IdentityRead {
            reader: "sim:1".into(),
            identity: identity(),
            elapsed: Duration::from_millis(30),
        });
        hub.publish(Update::IdentityError {
            reader: "sim:1".into(),
            error: ProtocolError::new(crate::protocol::Reason::CardRemoved, "x"),
        });
        hub.publish(Update::ReaderRemoved {
            reader: "sim:1".into(),
        });
        let s = hub.metrics_sample();
        assert_eq!(s.readers, [0, 0, 1]);
        assert_eq!(s.counters.cards_read[2][0], 1);
        assert_eq!(s.counters.cards_read.iter().flatten().sum::<u64>(), 1);
        assert_eq!(s.counters.read_buckets.iter().sum::<u64>(), 1);
        assert_eq!(s.counters.read_errors.iter().sum::<u64>(), 1);
        assert_eq!(s.counters.read_errors[4], 1, "CARD_MUTE");
    }

    fn client(scopes: Scopes, binding: &str) -> View {
        View::Client {
            scopes,
            binding: binding.into(),
        }
    }

    fn one_beneficiary() -> Arc<Identity> {
        Arc::new(Identity {
            source: crate::card::Source::VitaleCard,
            profile: "vitale2-public".into(),
            reader: "sim:0".into(),
            card_type: CardType::Vitale2,
            environment: crate::card::Environment::Unknown,
            beneficiaries: vec![crate::card::Beneficiary {
                index: 0,
                surname: crate::card::Sensitive::new("DUPONT".into()),
                given_name: crate::card::Sensitive::new("ZOE".into()),
                birth_date: crate::card::Sensitive::new(Some("1980-02-03".into())),
                birth_date_raw: crate::card::Sensitive::new("19800203".into()),
                birth_date_lunar: false,
                nir: crate::card::Sensitive::new(Some("295109912611193".into())),
                nir_key_valid: Some(true),
                ins: None,
            }],
            apcv: None,
        })
    }

    #[test]
    fn each_view_is_encoded_once_and_signatures_reach_only_their_binding() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        hub.publish(Update::CardInserted {
            reader: "sim:0".into(),
            atr: vec![0x3B],
            card_type: CardType::Vitale2,
        });
        let mut all = hub.subscribe_as(16, client(Scopes::ALL, "https://a.example"));
        let mut names1 = hub.subscribe_as(16, client(Scopes::IDENTITY, "https://b.example"));
        let mut names2 = hub.subscribe_as(16, client(Scopes::IDENTITY, "https://c.example"));
        let mut nir = hub.subscribe_as(16, client(Scopes::NIR | Scopes::SIGN, "https://d.example"));
        let mut page = hub.subscribe(16, true);
        let mut inproc = hub.subscribe(16, false);
        hub.publish(Update::IdentityRead {
            reader: "sim:0".into(),
            identity: one_beneficiary(),
            elapsed: Duration::from_millis(1),
        });
        let next = |s: &mut Subscription| s.rx.try_recv().expect("an event");
        let (a, n1, n2, d, p, f) = (
            next(&mut all),
            next(&mut names1),
            next(&mut names2),
            next(&mut nir),
            next(&mut page),
            next(&mut inproc),
        );
        assert!(
            WipedJson::same_buffer(&n1.json, &n2.json),
            "one encoding per distinct view"
        );
        assert!(
            WipedJson::same_buffer(&a.json, &f.json),
            "all scopes is the full encoding"
        );
        let v =
            |n: &Notification| serde_json::from_str::<serde_json::Value>(&n.json).expect("json");
        let b = |n: &Notification| v(n)["params"]["data"]["beneficiaries"][0].clone();
        assert_eq!(b(&a)["nir"], "295109912611193");
        assert_eq!(b(&n1)["surname"], "DUPONT");
        assert_eq!(b(&n1)["nir"], serde_json::Value::Null);
        assert_eq!(b(&n1)["nirKeyValid"], serde_json::Value::Null);
        assert_eq!(b(&d)["nir"], "295109912611193");
        assert_eq!(b(&d)["surname"], serde_json::Value::Null);
        assert_eq!(
            v(&p)["params"]["data"],
            serde_json::json!({"redacted": true})
        );

        let signature = Arc::new(Signature {
            reader: "sim:0".into(),
            alg: "ES256",
            origin: "https://d.example".into(),
            challenge: "CHALLENGE".into(),
            public_key: "PUBKEY".into(),
            signature: "SIG".into(),
            verified: true,
        });
        hub.publish(Update::SignatureCompleted { signature });
        let (a, n1, d, p, f) = (
            next(&mut all),
            next(&mut names1),
            next(&mut nir),
            next(&mut page),
            next(&mut inproc),
        );
        assert_eq!(
            v(&d)["params"]["data"]["publicKey"],
            "PUBKEY",
            "same binding"
        );
        assert_eq!(v(&f)["params"]["data"]["publicKey"], "PUBKEY", "in-process");
        for other in [&a, &n1, &p] {
            assert_eq!(
                v(other)["params"]["data"],
                serde_json::json!({"redacted": true})
            );
            assert!(!other.json.contains("PUBKEY") && !other.json.contains("CHALLENGE"));
            assert_eq!(other.seq, d.seq, "others keep a gapless seq");
        }
        assert!(
            WipedJson::same_buffer(&a.json, &p.json),
            "one redacted encoding"
        );
        // Same binding without the sign scope: withheld too.
        let mut unsigned = hub.subscribe_as(16, client(Scopes::IDENTITY, "https://d.example"));
        hub.publish(Update::SignatureCompleted {
            signature: Arc::new(Signature {
                reader: "sim:0".into(),
                alg: "ES256",
                origin: "https://d.example".into(),
                challenge: "C2".into(),
                public_key: "PUBKEY".into(),
                signature: "SIG".into(),
                verified: true,
            }),
        });
        assert!(!next(&mut unsigned).json.contains("PUBKEY"));
    }

    #[test]
    fn service_changes_are_deduplicated() {
        let hub = Hub::new(PcscStatus::Up);
        let mut sub = hub.subscribe(16, false);
        for state in [ServiceState::Up, ServiceState::Down, ServiceState::Down] {
            hub.publish(Update::ServiceChanged {
                service: Service::Pcsc,
                state,
                detail: String::new(),
            });
        }
        assert_eq!(seqs(&mut sub.rx), vec![1]);
        assert_eq!(hub.status().pcsc, PcscStatus::Down);
    }
}
