//! Hardware backends and simulated readers. Each backend runs its blocking work on its
//! own threads, talks to cards through a [`crate::card::CardChannel`], and reports to
//! the [`crate::bus::Hub`]; [`worker`] holds the card handling they all share.

pub mod nfc;
pub mod pcsc;
pub mod sim;
pub mod worker;

/// A running backend, as the daemon holds it.
pub trait Backend: Send {
    /// Short name for logs (`pcsc`, `nfc`, `sim`).
    fn name(&self) -> &'static str;
    /// Cancels every blocking call, stops and joins the backend's threads.
    fn shutdown(self: Box<Self>);
}
