//! The hub: assigns `seq`, keeps the registry, hands events to the fan-out.
//!
//! Backends on blocking threads call [`Hub::publish`] (synchronous, O(1) under the
//! lock): the update is applied to the [`Registry`] (a pure function of updates),
//! each resulting event takes the next `seq` and goes to the fan-out thread
//! ([`super::fanout`]), which encodes it once per distinct view and queues it for
//! every subscriber. A card thread never loops over subscribers and never waits for
//! a client, inside a PC/SC transaction or out of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::fanout::{Cmd, Sink, Subscriber};
use super::metrics::{self, Metrics};
use super::registry::{Counted, Registry};
use super::scope::View;
use crate::protocol::event::{Event, Reader, ServiceState, now_rfc3339};
use crate::transport::{EventSink, ReaderHandle, Update};

pub use super::fanout::{Encoded, Notification};

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

struct State {
    seq: u64,
    registry: Registry,
    fanout: Sink,
    next_subscriber: u64,
}

/// The event bus and reader registry. Cheap to share as `Arc<Hub>`.
pub struct Hub {
    state: Mutex<State>,
    started: Instant,
    clients: AtomicUsize,
    /// Live subscribers: counted here on subscribe, uncounted by the fan-out when it
    /// drops one.
    subscribers: Arc<AtomicUsize>,
    metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with PC/SC reported as `pcsc` until a backend says otherwise. Starts
    /// the fan-out thread, which ends when the hub is dropped.
    pub fn new(pcsc: PcscStatus) -> Arc<Hub> {
        let subscribers = Arc::new(AtomicUsize::new(0));
        Arc::new(Hub {
            state: Mutex::new(State {
                seq: 0,
                registry: Registry::new(pcsc),
                fanout: Sink::start(subscribers.clone()),
                next_subscriber: 1,
            }),
            started: Instant::now(),
            clients: AtomicUsize::new(0),
            subscribers,
            metrics: Metrics::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the registry half-updated in a
        // way that matters more than stopping the whole daemon would.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a backend update and publishes the resulting events, in order. Never
    /// waits for a subscriber: the events are handed to the fan-out thread.
    pub fn publish(&self, update: Update) {
        let mut st = self.lock();
        let applied = st.registry.apply(update);
        // Counted here, with the events, so the metrics are exactly the identity
        // events and are updated under the lock a scrape takes.
        match applied.counted {
            Some(Counted::ReadSucceeded {
                kind,
                card_type,
                elapsed,
            }) => self.metrics.read_succeeded(kind, card_type, elapsed),
            Some(Counted::ReadFailed(reason)) => self.metrics.read_failed(reason),
            None => {}
        }
        for (reader, kind) in applied.events {
            // A seq is taken only by an event that is delivered: the registry yields
            // no event for an update that changes nothing, and the fan-out delivers
            // every event it gets (redacted, should an encoding ever fail).
            st.seq += 1;
            let event = Event {
                seq: st.seq,
                time: now_rfc3339(),
                kind,
                reader,
            };
            st.fanout.send(Cmd::Event(event));
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
        self.subscribers.fetch_add(1, Ordering::AcqRel);
        // Through the same ordered channel as the events, under the same lock: the
        // fan-out adds it after every event up to `st.seq` and before any later one.
        st.fanout.send(Cmd::Subscribe(Subscriber {
            id,
            tx,
            view,
            lagged: Some(lag_tx),
        }));
        let snapshot = snapshot(&st.registry, redacted);
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
        self.lock().fanout.send(Cmd::Unsubscribe(id));
    }

    /// Number of live subscribers (one the fan-out dropped or was told to drop stops
    /// counting once the fan-out has handled it).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }

    /// Blocks until every event published so far is in its subscribers' queues: for
    /// in-process consumers and tests that read with `try_recv`. Never call it from
    /// a card thread or an async worker.
    pub fn wait_delivered(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        self.lock().fanout.send(Cmd::Barrier(done));
        let _ = wait.recv();
    }

    /// The readers now (identities included unless `redacted`).
    pub fn readers(&self, redacted: bool) -> Vec<Reader> {
        snapshot(&self.lock().registry, redacted)
    }

    /// One reader's current state and command handle.
    pub fn reader(&self, id: &str) -> Option<(Reader, Option<ReaderHandle>)> {
        self.lock()
            .registry
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
            pcsc: st.registry.pcsc(),
            nfc: st
                .registry
                .nfc()
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
        for e in st.registry.entries() {
            sample.add_reader(e.reader.kind);
        }
        sample
    }
}

fn snapshot(registry: &Registry, redacted: bool) -> Vec<Reader> {
    registry
        .entries()
        .map(|e| {
            if redacted {
                e.reader.redacted()
            } else {
                e.reader.clone()
            }
        })
        .collect()
}

impl EventSink for Hub {
    fn publish(&self, update: Update) {
        Hub::publish(self, update);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bus::Scopes;
    use crate::card::{CardType, Identity};
    use crate::protocol::{ProtocolError, ReaderKind, Service, Signature, WipedJson};

    fn add(hub: &Hub, id: &str) {
        hub.publish(Update::ReaderAdded {
            id: id.into(),
            name: id.into(),
            kind: ReaderKind::Simulated,
            contactless: false,
            handle: None,
        });
    }

    fn seqs(hub: &Hub, rx: &mut mpsc::Receiver<Notification>) -> Vec<u64> {
        hub.wait_delivered();
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
        assert_eq!(seqs(&hub, &mut sub.rx), vec![2, 3]);
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
        assert!(
            seqs(&hub, &mut sub.rx).is_empty(),
            "listing is not an event"
        );
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
        assert_eq!(seqs(&hub, &mut sub.rx), vec![1, 2], "down, then up");
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
        assert!(seqs(&hub, &mut sub.rx).is_empty());
    }

    #[test]
    fn full_queue_drops_only_that_subscriber() {
        let hub = Hub::new(PcscStatus::Disabled);
        let mut slow = hub.subscribe(2, false);
        let mut fast = hub.subscribe(64, false);
        for i in 0..5 {
            add(&hub, &format!("sim:{i}"));
        }
        hub.wait_delivered();
        assert!(slow.lagged.try_recv().is_ok(), "told it lagged");
        assert_eq!(seqs(&hub, &mut fast.rx), vec![1, 2, 3, 4, 5]);
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
        hub.wait_delivered();
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
        hub.wait_delivered();
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
        hub.wait_delivered();
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
        hub.wait_delivered();
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
        assert_eq!(seqs(&hub, &mut sub.rx), vec![1]);
        assert_eq!(hub.status().pcsc, PcscStatus::Down);
    }
    #[test]
    fn an_update_that_changes_nothing_takes_no_seq() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        add(&hub, "sim:0");
        hub.publish(Update::CardRemoved {
            reader: "sim:0".into(),
        });
        assert_eq!(hub.seq(), 1);
        let mut sub = hub.subscribe(16, false);
        add(&hub, "sim:1");
        assert_eq!(seqs(&hub, &mut sub.rx), vec![2]);
    }

    #[test]
    fn subscribers_joining_while_a_thread_publishes_get_exactly_the_events_after_their_snapshot() {
        let hub = Hub::new(PcscStatus::Disabled);
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    add(&hub, &format!("sim:{i}"));
                }
            })
        };
        let mut subs: Vec<Subscription> = (0..20).map(|_| hub.subscribe(4096, false)).collect();
        let _ = publisher.join();
        hub.wait_delivered();
        for s in &mut subs {
            // The snapshot holds exactly the readers added up to its seq.
            assert_eq!(s.snapshot.len() as u64, s.seq);
            let got = seqs(&hub, &mut s.rx);
            let want: Vec<u64> = (s.seq + 1..=2000).collect();
            assert_eq!(got, want, "subscribed at {}", s.seq);
        }
    }

    #[test]
    fn publishing_never_waits_for_a_subscriber_that_does_not_read() {
        let hub = Hub::new(PcscStatus::Disabled);
        let stuck = hub.subscribe(1, false);
        let mut fine = hub.subscribe(4096, false);
        for i in 0..1000 {
            add(&hub, &format!("sim:{i}"));
        }
        assert_eq!(seqs(&hub, &mut fine.rx).len(), 1000);
        assert_eq!(hub.subscriber_count(), 1, "the stuck one was dropped");
        drop(stuck);
    }

    #[test]
    fn every_subscriber_of_a_view_shares_one_complete_frame() {
        let hub = Hub::new(PcscStatus::Disabled);
        let mut a = hub.subscribe(16, false);
        let mut b = hub.subscribe(16, false);
        add(&hub, "sim:0");
        hub.wait_delivered();
        let (x, y) = (
            a.rx.try_recv().expect("event"),
            b.rx.try_recv().expect("event"),
        );
        assert!(Arc::ptr_eq(&x, &y), "one encoding, shared");
        let frame = x.frame();
        assert_eq!(frame[0], 0x81, "FIN + text");
        assert_eq!(&frame[frame.len() - x.json.len()..], x.json.as_bytes());
    }

    #[test]
    fn dropping_the_hub_ends_its_fan_out_thread() {
        let hub = Hub::new(PcscStatus::Disabled);
        let mut sub = hub.subscribe(16, false);
        add(&hub, "sim:0");
        drop(hub);
        // The thread handled what was sent, then ended (joined in the drop), and
        // with it the subscriber's sending side.
        assert_eq!(sub.rx.try_recv().map(|n| n.seq).ok(), Some(1));
        assert!(matches!(
            sub.rx.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn a_card_pulled_mid_read_leaves_a_gapless_sequence_without_its_stale_outcome() {
        let hub = Hub::new(PcscStatus::Disabled);
        add(&hub, "sim:0");
        let mut sub = hub.subscribe(64, false);
        hub.publish(Update::CardInserted {
            reader: "sim:0".into(),
            atr: vec![0x3B],
            card_type: CardType::Vitale2,
        });
        hub.publish(Update::CardReading {
            reader: "sim:0".into(),
            step: 1,
            total: 3,
        });
        hub.publish(Update::CardRemoved {
            reader: "sim:0".into(),
        });
        // The card thread, not yet aware, reports the rest of its read.
        hub.publish(Update::CardReading {
            reader: "sim:0".into(),
            step: 2,
            total: 3,
        });
        hub.publish(Update::IdentityRead {
            reader: "sim:0".into(),
            identity: one_beneficiary(),
            elapsed: Duration::from_millis(1),
        });
        add(&hub, "sim:1");
        hub.wait_delivered();
        let got: Vec<(u64, String)> = std::iter::from_fn(|| sub.rx.try_recv().ok())
            .map(|n| {
                let v: serde_json::Value = serde_json::from_str(&n.json).expect("json");
                (
                    n.seq,
                    v["params"]["type"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want: Vec<(u64, String)> = [
            (2, "card.inserted"),
            (3, "card.reading"),
            (4, "card.removed"),
            (5, "reader.added"),
        ]
        .iter()
        .map(|(s, t)| (*s, t.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
