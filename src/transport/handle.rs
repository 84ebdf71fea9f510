//! The command side of a reader: requests that must run on the backend thread that
//! owns the card, serialised per reader.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::card::{Identity, SignOutcome};
use crate::protocol::ProtocolError;

/// Work a backend thread performs on the card in its reader.
#[derive(Debug)]
pub enum ReaderRequest {
    /// Read the identity again (the backend publishes the usual events too).
    Read {
        /// Where the result goes.
        reply: oneshot::Sender<Result<Arc<Identity>, ProtocolError>>,
    },
    /// Have the phone sign an origin-bound digest.
    Sign {
        /// `SHA-256(SHA-256(origin) ‖ SHA-256(challenge))`.
        digest: [u8; 32],
        /// Where the unverified outcome goes.
        reply: oneshot::Sender<Result<SignOutcome, ProtocolError>>,
    },
}

/// The async side's handle on one reader's backend thread.
///
/// Cloned into the registry; the `turn` mutex makes card work strictly one at a time
/// per reader, so a second `card.read` waits its turn instead of failing.
#[derive(Debug, Clone)]
pub struct ReaderHandle {
    tx: mpsc::Sender<ReaderRequest>,
    turn: Arc<Mutex<()>>,
}

impl ReaderHandle {
    /// A handle and the receiver the backend thread serves (with `blocking_recv` or
    /// `try_recv`; never from an async task).
    pub fn channel() -> (ReaderHandle, mpsc::Receiver<ReaderRequest>) {
        let (tx, rx) = mpsc::channel(4);
        (
            ReaderHandle {
                tx,
                turn: Arc::new(Mutex::new(())),
            },
            rx,
        )
    }

    /// The per-reader turn lock.
    pub(crate) fn turn(&self) -> &Arc<Mutex<()>> {
        &self.turn
    }

    /// Sends a request to the backend thread (public so backend tests can reach it
    /// without a card in the registry).
    pub async fn send(&self, req: ReaderRequest) -> Result<(), ()> {
        self.tx.send(req).await.map_err(|_| ())
    }
}
