//! Fan-out: each event serialized once per distinct view into one complete
//! WebSocket text frame, handed to every subscriber of that view by reference count.
//!
//! The hub sends `Cmd`s under its lock, in `seq` order, and returns at once: all
//! per-subscriber work runs on one fan-out thread, never on a card thread and never
//! under the hub's lock. A subscription travels through the same channel as the
//! events, so a subscriber whose snapshot is at `seq` S is added after every event
//! up to S and before every later one: it receives exactly the events after S,
//! gapless and in order. Each subscriber has a bounded queue; one that lets it fill
//! is told so (its session closes it with 1008) and dropped, and everyone else keeps
//! receiving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::scope::{ScopedIdentity, Scopes, View};
use crate::protocol::event::{Event, EventKind, REDACTED};
use crate::protocol::rpc::EventNotification;
use crate::protocol::wiped::{WipedFrame, WipedJson};

/// One event as sent to the subscribers of one view: its JSON-RPC notification,
/// inside one complete, unmasked text frame, wiped when the last reference goes.
#[derive(Debug)]
pub struct Encoded {
    /// The event's `seq`.
    pub seq: u64,
    /// The notification text (the frame's payload: the same buffer, no copy).
    pub json: WipedJson,
    frame: Bytes,
}

impl Encoded {
    fn new(seq: u64, frame: WipedFrame) -> Encoded {
        Encoded {
            seq,
            json: frame.json(),
            frame: frame.bytes(),
        }
    }

    /// The complete WebSocket frame (header and payload), shared, no copy.
    pub fn frame(&self) -> Bytes {
        self.frame.clone()
    }
}

/// What a subscriber receives: one reference-count clone per subscriber.
pub type Notification = Arc<Encoded>;

/// What the hub asks of the fan-out, in order.
pub(super) enum Cmd {
    /// Deliver this event to every subscriber.
    Event(Event),
    /// Add a subscriber; it receives every event sent after this command.
    Subscribe(Subscriber),
    /// Stop delivering to this subscriber.
    Unsubscribe(u64),
    /// Answer once every command before this one is handled.
    Barrier(std::sync::mpsc::Sender<()>),
}

/// One subscriber's end of its queue.
pub(super) struct Subscriber {
    pub(super) id: u64,
    pub(super) tx: mpsc::Sender<Notification>,
    pub(super) view: View,
    pub(super) lagged: Option<oneshot::Sender<()>>,
}

/// The subscribers, and delivery to them.
pub(super) struct Fanout {
    subscribers: Vec<Subscriber>,
    /// Live subscribers, for [`super::Hub::subscriber_count`]: the hub counts a new
    /// one when it subscribes, the fan-out uncounts the ones it drops.
    count: Arc<AtomicUsize>,
}

/// Commands handled per wake of the fan-out thread at most.
const BATCH: usize = 256;

impl Fanout {
    /// Handles commands in order; each run of consecutive events is delivered
    /// subscriber by subscriber, so a burst already queued reaches a session's queue
    /// whole, before that session runs, and goes out in one write.
    fn handle_all(&mut self, cmds: impl IntoIterator<Item = Cmd>) {
        let mut run: Vec<Event> = Vec::new();
        for cmd in cmds {
            match cmd {
                Cmd::Event(event) => {
                    run.push(event);
                    continue;
                }
                other => {
                    self.deliver(&run);
                    run.clear();
                    self.handle(other);
                }
            }
        }
        self.deliver(&run);
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Event(event) => self.deliver(std::slice::from_ref(&event)),
            Cmd::Subscribe(s) => self.subscribers.push(s),
            Cmd::Unsubscribe(id) => self.drop_where(|s| s.id == id),
            Cmd::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    fn deliver(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for event in events {
            tracing::debug!(seq = event.seq, kind = event.kind.type_name(), reader = ?event.reader, "event");
        }
        let mut views: Vec<Views<'_>> = events.iter().map(Views::new).collect();
        let before = self.subscribers.len();
        self.subscribers.retain_mut(|s| {
            for v in views.iter_mut() {
                match s.tx.try_send(v.get(&s.view)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if let Some(lagged) = s.lagged.take() {
                            let _ = lagged.send(());
                        }
                        tracing::warn!(subscriber = s.id, "subscriber queue full; dropping it");
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
        self.count
            .fetch_sub(before - self.subscribers.len(), Ordering::AcqRel);
    }

    fn drop_where(&mut self, f: impl Fn(&Subscriber) -> bool) {
        let before = self.subscribers.len();
        self.subscribers.retain(|s| !f(s));
        self.count
            .fetch_sub(before - self.subscribers.len(), Ordering::AcqRel);
    }
}

/// Where the hub sends its commands.
pub(super) enum Sink {
    /// The fan-out task on the runtime the hub was created in (the daemon's case):
    /// its wakes of the sessions go to its own worker's run queue, not to the
    /// runtime's shared inject queue as wakes from a foreign thread would.
    Task(mpsc::UnboundedSender<Cmd>),
    /// A fan-out thread, when the hub is created outside a runtime (the command line's
    /// synchronous paths, unit tests); joined when the sink is dropped.
    Thread {
        tx: Option<mpsc::UnboundedSender<Cmd>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// Handled in place, under the hub's lock: only if the fan-out could not be
    /// started or has died, so events keep flowing (slower) rather than stopping.
    Inline(Fanout),
}

impl Sink {
    /// Starts the fan-out: a task if called on a tokio runtime, a thread otherwise.
    /// It ends when the sink (the hub) is dropped.
    pub(super) fn start(count: Arc<AtomicUsize>) -> Sink {
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        let mut fanout = Fanout {
            subscribers: Vec::new(),
            count: count.clone(),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                while let Some(first) = rx.recv().await {
                    fanout.handle_all(std::iter::once(first).chain(queued(&mut rx)));
                }
            });
            return Sink::Task(tx);
        }
        let spawned = std::thread::Builder::new()
            .name("fanout".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    fanout.handle_all(std::iter::once(first).chain(queued(&mut rx)));
                }
            });
        match spawned {
            Ok(thread) => Sink::Thread {
                tx: Some(tx),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the fan-out thread; fanning out in place");
                Sink::Inline(Fanout {
                    subscribers: Vec::new(),
                    count,
                })
            }
        }
    }

    /// Hands a command to the fan-out; never waits for a subscriber.
    pub(super) fn send(&mut self, cmd: Cmd) {
        let failed = match self {
            Sink::Task(tx) | Sink::Thread { tx: Some(tx), .. } => match tx.send(cmd) {
                Ok(()) => return,
                Err(mpsc::error::SendError(cmd)) => cmd,
            },
            Sink::Thread { tx: None, .. } => cmd,
            Sink::Inline(f) => return f.handle(cmd),
        };
        // The fan-out panicked (or its runtime is gone); its subscribers' queues went
        // with it, so their sessions see their subscriptions end.
        tracing::error!("the fan-out stopped; fanning out in place");
        let mut inline = Fanout {
            subscribers: Vec::new(),
            count: Arc::new(AtomicUsize::new(0)),
        };
        inline.handle(failed);
        *self = Sink::Inline(inline);
    }
}

/// Whatever is already queued, handled with the command that woke the fan-out: a
/// burst published back to back is one delivery.
fn queued(rx: &mut mpsc::UnboundedReceiver<Cmd>) -> impl Iterator<Item = Cmd> + '_ {
    std::iter::from_fn(move || rx.try_recv().ok()).take(BATCH - 1)
}

/// Ends the thread with the hub: closing the channel ends its loop once it has
/// handled what was sent, and it is joined so no thread outlives its hub.
impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Thread { tx, thread } = self {
            drop(tx.take());
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
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
    full: Option<Notification>,
    redacted: Option<Notification>,
    scoped: [Option<Notification>; 16],
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

    fn get(&mut self, view: &View) -> Notification {
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

    fn redacted(&mut self) -> Notification {
        let event = self.event;
        self.redacted
            .get_or_insert_with(|| {
                // Numbers and fixed strings: it cannot fail, but a fixed text stands
                // in rather than a panic, and the seq is still delivered.
                let redacted = event.with_data(REDACTED);
                let frame =
                    WipedFrame::encode(&EventNotification::new(&redacted)).unwrap_or_else(|_| {
                        WipedFrame::from_static(
                            r#"{"jsonrpc":"2.0","method":"event","params":{"redacted":true}}"#,
                        )
                    });
                Arc::new(Encoded::new(event.seq, frame))
            })
            .clone()
    }

    fn encode_full(&mut self) -> Notification {
        match WipedFrame::encode(&EventNotification::new(self.event)) {
            Ok(f) => Arc::new(Encoded::new(self.event.seq, f)),
            // Never expected; the event still goes out, without its data, so no
            // subscriber sees a gap in `seq`.
            Err(e) => {
                tracing::error!(error = %e, "event serialization failed; sending it redacted");
                self.redacted()
            }
        }
    }

    fn encode_scoped(&mut self, scopes: Scopes) -> Notification {
        let EventKind::IdentityRead(identity) = &self.event.kind else {
            return self.encode_full();
        };
        let scoped = self.event.with_data(ScopedIdentity(identity, scopes));
        match WipedFrame::encode(&EventNotification::new(&scoped)) {
            Ok(f) => Arc::new(Encoded::new(self.event.seq, f)),
            Err(e) => {
                tracing::error!(error = %e, "event serialization failed; sending it redacted");
                self.redacted()
            }
        }
    }
}
