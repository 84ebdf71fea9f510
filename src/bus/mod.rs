//! The event bus and reader registry: one ordered event sequence (`seq`), bounded
//! fan-out to any number of subscribers, the reader/card/identity state behind
//! `subscribe` snapshots, the card operations clients ask for, and the identity-free
//! counters behind `GET /metrics`.
//!
//! - [`hub`]: the façade backends publish to (the lock, `seq`, snapshots).
//! - [`registry`]: the reader state as a pure function of updates.
//! - [`fanout`]: the thread that encodes each event once per view, as a complete
//!   WebSocket frame, and queues it for every subscriber.

pub mod fanout;
pub mod hub;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod scope;

pub use hub::{Encoded, Hub, NfcState, Notification, PcscStatus, StatusSnapshot, Subscription};
pub use metrics::Metrics;
pub use scope::{ScopedIdentity, ScopedReader, Scopes, View};
