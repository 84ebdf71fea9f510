//! Hardware backends and simulated readers. Each backend runs its blocking work on its
//! own threads, talks to cards through a [`crate::card::CardChannel`], and reports
//! through the [`EventSink`] it is given (the bus implements it); [`worker`] holds the
//! card handling they all share, [`handle`] the command side of a reader.

pub mod handle;
pub mod nfc;
pub mod pcsc;
pub mod sim;
pub mod sink;
pub mod worker;

pub use handle::{ReaderHandle, ReaderRequest};
pub use sink::{EventSink, Update};

/// A running backend, as the daemon holds it.
pub trait Backend: Send {
    /// Short name for logs (`pcsc`, `nfc`, `sim`).
    fn name(&self) -> &'static str;
    /// Cancels every blocking call, stops and joins the backend's threads.
    fn shutdown(self: Box<Self>);
}

/// One line of `vitale-bridge doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// OK, WARN or FAIL.
    pub status: CheckStatus,
    /// What was checked and what was found.
    pub what: String,
    /// How to fix it, when not OK.
    pub fix: Option<String>,
}

/// Outcome of a doctor check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// Works, but something is off.
    Warn,
    /// Broken.
    Fail,
}

/// A backend that does nothing (a transport turned off, or not built yet).
#[derive(Debug)]
pub struct Idle(pub &'static str);

impl Backend for Idle {
    fn name(&self) -> &'static str {
        self.0
    }
    fn shutdown(self: Box<Self>) {}
}
