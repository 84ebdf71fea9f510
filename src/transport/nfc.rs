//! libnfc backend (crate `nfc1`): one blocking thread per NFC device.
//!
//! OWNER: NFC helper. Skeleton only: the signatures below are what the daemon calls.

use std::sync::Arc;
use std::time::Duration;

use super::{Backend, Check, Idle};
use crate::bus::Hub;

/// What the NFC backend needs from the configuration.
#[derive(Debug, Clone)]
pub struct NfcOptions {
    /// libnfc connstrings (`pn532_uart:/dev/ttyUSB0`, …); empty = scan USB once at start.
    pub devices: Vec<String>,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Phone profile AID.
    pub apcv_aid: Vec<u8>,
}

/// Opens the devices, one thread each; phones are reported to `hub`.
pub fn spawn(hub: Arc<Hub>, opts: NfcOptions) -> Box<dyn Backend> {
    let _ = (hub, opts);
    Box::new(Idle("nfc"))
}

/// NFC devices libnfc finds without intrusive scans (for `vitale-bridge readers`).
pub fn list_devices() -> Result<Vec<String>, String> {
    Err("NFC backend not built yet".into())
}

/// NFC checks for `vitale-bridge doctor` (devices, kernel modules holding them).
pub fn diagnose(opts: &NfcOptions) -> Vec<Check> {
    let _ = opts;
    Vec::new()
}
