//! In-process simulated readers for demo mode: virtual cards and phones that run the
//! real card logic through the same channel and worker as hardware.
//!
//! OWNER: CLI/daemon helper. Skeleton only.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Idle};
use crate::bus::Hub;

/// Demo timing and profile.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Time between demo steps (insert, remove, tap…).
    pub interval: Duration,
    /// Phone profile AID.
    pub apcv_aid: Vec<u8>,
}

/// Starts the simulated readers.
pub fn spawn_demo(hub: Arc<Hub>, opts: DemoOptions) -> Box<dyn Backend> {
    let _ = (hub, opts);
    Box::new(Idle("sim"))
}
