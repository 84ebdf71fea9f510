//! PC/SC backend (crate `pcsc`): event-driven monitor and card access.
//!
//! OWNER: PC/SC helper. Skeleton only: the signatures below are what the daemon calls.

use std::sync::Arc;

use super::{Backend, Check, Idle};
use crate::bus::Hub;

/// What the PC/SC backend needs from the configuration.
#[derive(Debug, Clone)]
pub struct PcscOptions {
    /// Phone profile AID, for phones in contactless PC/SC readers.
    pub apcv_aid: Vec<u8>,
}

/// Starts the monitor thread(s); readers and cards are reported to `hub`.
pub fn spawn(hub: Arc<Hub>, opts: PcscOptions) -> Box<dyn Backend> {
    let _ = (hub, opts);
    Box::new(Idle("pcsc"))
}

/// Reader names right now (for `vitale-bridge readers`).
pub fn list_readers() -> Result<Vec<String>, String> {
    Err("PC/SC backend not built yet".into())
}

/// PC/SC checks for `vitale-bridge doctor`.
pub fn diagnose() -> Vec<Check> {
    Vec::new()
}
