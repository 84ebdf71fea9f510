//! The bounded set of connections still in their HTTP handshake.
//!
//! A fixed number of slots bounds what half-open connections cost, but refusing the
//! newcomer when they are full lets anyone who holds that many idle sockets lock
//! everybody out. So a newcomer always gets a slot, and when all are taken the
//! *oldest* pending handshake is evicted: a legitimate client finishes its handshake
//! in milliseconds, so to evict it an attacker must open `max` connections within
//! those milliseconds, not merely hold them. Silent connections (no byte yet) go
//! first: a real client sends its request at once, so an attacker flooding with
//! idle sockets only ever evicts its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The pending-handshake slots, shared by every accept loop.
#[derive(Debug)]
pub struct PendingHandshakes {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Connections that have sent nothing yet, oldest first; dropping a sender tells
    /// its connection it was evicted.
    silent: BTreeMap<u64, oneshot::Sender<()>>,
    /// Connections whose request has started arriving, oldest first.
    talking: BTreeMap<u64, oneshot::Sender<()>>,
}

impl Inner {
    fn len(&self) -> usize {
        self.silent.len() + self.talking.len()
    }
}

/// One connection's slot; released on drop.
#[derive(Debug)]
pub struct HandshakeSlot {
    id: u64,
    owner: Arc<PendingHandshakes>,
}

/// Tells a connection that a newer one has taken its slot.
#[derive(Debug)]
pub struct Eviction(oneshot::Receiver<()>);

impl Eviction {
    /// Resolves when the slot has been taken by a newer connection.
    pub async fn wait(&mut self) {
        let _ = (&mut self.0).await;
    }
}

/// What [`PendingHandshakes::admit`] gives a new connection.
#[derive(Debug)]
pub struct Admission {
    /// The slot, released on drop.
    pub slot: HandshakeSlot,
    /// Resolves if the slot is taken away.
    pub eviction: Eviction,
    /// Whether an older connection was evicted to make room (for the log).
    pub evicted_other: bool,
}

impl PendingHandshakes {
    /// At most `max` handshakes at once (at least one).
    pub fn new(max: usize) -> Arc<PendingHandshakes> {
        Arc::new(PendingHandshakes {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent whatever panicked while holding the lock.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a new connection, evicting the oldest pending one if all
    /// are taken.
    pub fn admit(self: &Arc<Self>) -> Admission {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let evicted = if inner.len() >= self.max {
            // Dropping the sender wakes the evicted connection's `evicted()`.
            inner.silent.pop_first().is_some() || inner.talking.pop_first().is_some()
        } else {
            false
        };
        let id = inner.next;
        inner.next += 1;
        inner.silent.insert(id, tx);
        drop(inner);
        Admission {
            slot: HandshakeSlot {
                id,
                owner: self.clone(),
            },
            eviction: Eviction(rx),
            evicted_other: evicted,
        }
    }

    /// Handshakes pending now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no handshake is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl HandshakeSlot {
    /// Records that the client has sent its first byte: from now on it is evicted
    /// only after every silent connection.
    pub fn talking(&self) {
        let mut inner = self.owner.lock();
        if let Some(tx) = inner.silent.remove(&self.id) {
            inner.talking.insert(self.id, tx);
        }
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut inner = self.owner.lock();
        if inner.silent.remove(&self.id).is_none() {
            inner.talking.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// A slot and its eviction signal, as one connection holds them.
    struct Conn(HandshakeSlot, Eviction);

    fn admit(p: &Arc<PendingHandshakes>) -> (Conn, bool) {
        let a = p.admit();
        (Conn(a.slot, a.eviction), a.evicted_other)
    }

    fn is_evicted(c: &mut Conn) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(pin!(c.1.wait()).poll(&mut cx), Poll::Ready(()))
    }

    #[test]
    fn when_full_the_oldest_is_evicted_not_the_newcomer() {
        let p = PendingHandshakes::new(2);
        let (mut a, ev) = admit(&p);
        assert!(!ev);
        let (mut b, ev) = admit(&p);
        assert!(!ev);
        let (mut c, ev) = admit(&p);
        assert!(ev, "third admission evicts");
        assert!(is_evicted(&mut a), "the oldest goes");
        assert!(!is_evicted(&mut b) && !is_evicted(&mut c));
        assert_eq!(p.len(), 2);
        let (mut d, _) = admit(&p);
        assert!(is_evicted(&mut b));
        assert!(!is_evicted(&mut c) && !is_evicted(&mut d));
    }

    #[test]
    fn silent_connections_are_evicted_before_talking_ones() {
        let p = PendingHandshakes::new(3);
        let (mut client, _) = admit(&p);
        client.0.talking();
        let (mut idle1, _) = admit(&p);
        let (mut idle2, _) = admit(&p);
        let (mut idle3, ev) = admit(&p);
        assert!(ev);
        assert!(is_evicted(&mut idle1), "oldest silent goes first");
        assert!(!is_evicted(&mut client), "the older talking client stays");
        let (_idle4, _) = admit(&p);
        assert!(is_evicted(&mut idle2) && !is_evicted(&mut client));
        idle3.0.talking();
        let (mut idle5, _) = admit(&p);
        assert!(!is_evicted(&mut client) && !is_evicted(&mut idle3));
        // Every slot talking: the oldest of them goes.
        idle5.0.talking();
        let (_idle6, _) = admit(&p);
        assert!(is_evicted(&mut client), "oldest talking");
        assert!(!is_evicted(&mut idle3) && !is_evicted(&mut idle5));
        drop(client);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn dropping_a_slot_frees_it() {
        let p = PendingHandshakes::new(1);
        let (a, _) = admit(&p);
        drop(a);
        assert!(p.is_empty());
        let (mut b, ev) = admit(&p);
        assert!(!ev, "a freed slot is reused without evicting");
        assert!(!is_evicted(&mut b));
        // An evicted slot's drop does not remove its successor.
        let (mut c, ev) = admit(&p);
        assert!(ev && is_evicted(&mut b));
        drop(b);
        assert_eq!(p.len(), 1);
        assert!(!is_evicted(&mut c));
    }
}
