//! PC/SC backend (crate `pcsc`): event-driven monitor and card access.
//!
//! - [`monitor`]: one thread on its own context blocked in `get_status_change`
//!   (PnP pseudo-reader for hotplug), service loss and recovery with backoff.
//! - [`reader`]: one worker thread per reader, with its own context, that connects
//!   SHARED, reads in short transactions and serves client requests.
//! - [`channel`]: the [`crate::card::CardChannel`] over a `pcsc::Card`.
//! - [`doctor`]: the checks behind `vitale-bridge doctor`.
//!
//! Platforms: built and tested on Linux (pcsc-lite). Windows (WinSCard) and macOS
//! (PCSC.framework) differences are kept behind `cfg` and **untested**: macOS has no
//! PnP pseudo-reader (the monitor re-lists every 3 s there, and wherever pcscd answers
//! `UNKNOWN` for it); Windows reader names carry no slot suffix and its error codes for
//! a stopped service are `SCARD_E_NO_SERVICE`/`SCARD_E_SERVICE_STOPPED`, both treated as
//! a service loss; `doctor`'s pcscd checks are Linux-only.

pub mod channel;
pub mod doctor;
pub mod monitor;
pub mod reader;

use std::sync::Arc;

use super::{Backend, Check};
use crate::transport::EventSink;

/// What the PC/SC backend needs from the configuration.
#[derive(Debug, Clone)]
pub struct PcscOptions {
    /// Phone profile AID, for phones in contactless PC/SC readers.
    pub apcv_aid: Vec<u8>,
}

/// The running backend: the monitor thread and what stops it.
struct PcscBackend {
    shared: Arc<monitor::Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend for PcscBackend {
    fn name(&self) -> &'static str {
        "pcsc"
    }

    fn shutdown(mut self: Box<Self>) {
        self.shared.request_stop();
        if let Some(t) = self.thread.take() {
            // SCardCancel only interrupts a call in progress: repeat it until the
            // monitor has seen the stop flag (bounded to the shutdown itself).
            while !t.is_finished() {
                self.shared.cancel();
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = t.join();
        }
    }
}

/// Starts the monitor thread(s); readers and cards are reported to `sink`.
pub fn spawn(sink: Arc<dyn EventSink>, opts: PcscOptions) -> Box<dyn Backend> {
    let shared = Arc::new(monitor::Shared::default());
    let s = shared.clone();
    match std::thread::Builder::new()
        .name("pcsc-monitor".into())
        .spawn(move || monitor::run(sink, opts, s))
    {
        Ok(t) => Box::new(PcscBackend {
            shared,
            thread: Some(t),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the PC/SC monitor thread");
            Box::new(super::Idle("pcsc"))
        }
    }
}

/// Reader names right now (for `vitale-bridge readers`).
pub fn list_readers() -> Result<Vec<String>, String> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)
        .map_err(|e| format!("PC/SC service unavailable ({e}); is pcscd running?"))?;
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(pcsc::Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(format!("listing PC/SC readers failed: {e}")),
    }
}

/// PC/SC checks for `vitale-bridge doctor`.
pub fn diagnose() -> Vec<Check> {
    doctor::checks()
}
