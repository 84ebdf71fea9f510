//! The event bus and reader registry: one ordered event sequence (`seq`), bounded
//! fan-out to any number of subscribers, the reader/card/identity state behind
//! `subscribe` snapshots, the card operations clients ask for, and the identity-free
//! counters behind `GET /metrics`.

pub mod hub;
pub mod metrics;
pub mod ops;
pub mod scope;

pub use hub::{Hub, NfcState, Notification, PcscStatus, StatusSnapshot, Subscription};
pub use metrics::Metrics;
pub use scope::{ScopedIdentity, ScopedReader, Scopes, View};
