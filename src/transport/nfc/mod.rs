//! libnfc backend (crate `nfc1`): one blocking thread per NFC device.
//!
//! Each device (`nfc.devices` / `--nfc CONNSTRING`, or what libnfc's non-intrusive USB
//! scan finds once at start) is a contactless reader `nfc:<connstring>`. Its thread
//! lets the chip wait for an ISO 14443-4A target (no host-side polling: the host
//! sleeps until the chip answers), hands a tapped phone to the card worker (detection
//! probes the phone profile), checks presence only while a target is in the field,
//! serves `card.read`/`card.sign` (a request ends the chip's wait through
//! `nfc_abort_command`), and reports the device's state as `service.changed` (nfc,
//! up/down, detail = connstring), reopening with backoff.

mod abort;
mod channel;
mod device;
pub mod doctor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use channel::{ATR, NfcChannel};
pub use doctor::diagnose;

use self::abort::Gate;
use self::device::{DeviceTask, Msg};
use super::Backend;
use super::{EventSink, ReaderHandle, Update};
use crate::card::ReadContext;

/// What the NFC backend needs from the configuration.
#[derive(Debug, Clone)]
pub struct NfcOptions {
    /// libnfc connstrings (`pn532_uart:/dev/ttyUSB0`, …); empty = scan USB once at start.
    pub devices: Vec<String>,
    /// Poll interval of the legacy host poll (ignored unless `host_poll`).
    pub poll_interval: Duration,
    /// Legacy mode: the host selects every `poll_interval` instead of letting the chip
    /// wait. Not reachable from the configuration; kept for the benchmark's comparison.
    pub host_poll: bool,
    /// Phone profile AID.
    pub apcv_aid: Vec<u8>,
}

/// The deprecated `nfc.poll_interval_ms` default; any other value gets one info log.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How many devices a USB scan reports at most.
const SCAN_MAX: usize = 16;

/// Opens the devices, one thread each; phones are reported to `sink`.
pub fn spawn(sink: Arc<dyn EventSink>, opts: NfcOptions) -> Box<dyn Backend> {
    let devices = if opts.devices.is_empty() {
        match list_devices() {
            Ok(found) => {
                tracing::info!(count = found.len(), "NFC USB scan");
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "NFC USB scan failed");
                Vec::new()
            }
        }
    } else {
        opts.devices.clone()
    };
    if !opts.host_poll && opts.poll_interval != DEFAULT_POLL_INTERVAL {
        tracing::info!(
            "nfc.poll_interval_ms is deprecated and ignored: the NFC chip waits for a tap itself"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    // Listed before any thread runs, so `status` names every configured device from
    // the first connection on.
    for connstring in &devices {
        sink.publish(Update::NfcOpening {
            connstring: connstring.clone(),
        });
    }
    for connstring in devices {
        match spawn_device(&sink, &opts, &connstring, stop.clone()) {
            Ok(worker) => workers.push(worker),
            Err(e) => {
                tracing::error!(device = %connstring, error = %e, "cannot start NFC device thread")
            }
        }
    }
    Box::new(NfcBackend { stop, workers })
}

struct Worker {
    tx: mpsc::Sender<Msg>,
    gate: Arc<Gate>,
    thread: JoinHandle<()>,
}

fn spawn_device(
    sink: &Arc<dyn EventSink>,
    opts: &NfcOptions,
    connstring: &str,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Worker> {
    let ctx = ReadContext {
        reader: format!("nfc:{connstring}"),
        apcv_aid: opts.apcv_aid.clone(),
        environment: None,
    };
    let (tx, rx) = mpsc::channel();
    let (handle, mut requests) = ReaderHandle::channel();
    let gate = Arc::new(Gate::default());
    // Bridge the sink's async request queue to the device thread; the chip may be
    // waiting for a target, so end that wait to have the request served now. Ends
    // when the sink drops the reader.
    let bridge_tx = tx.clone();
    let bridge_gate = gate.clone();
    std::thread::Builder::new()
        .name(format!("nfc-req {connstring}"))
        .spawn(move || {
            while let Some(req) = requests.blocking_recv() {
                if bridge_tx.send(Msg::Request(req)).is_err() {
                    break;
                }
                bridge_gate.abort_wait();
            }
        })?;
    device::add_reader(sink, &ctx, connstring, handle);
    let task = DeviceTask {
        sink: sink.clone(),
        connstring: connstring.to_string(),
        poll_interval: opts.poll_interval.max(Duration::from_millis(10)),
        host_poll: opts.host_poll,
        gate: gate.clone(),
        ctx,
        rx,
        stop,
    };
    let thread = std::thread::Builder::new()
        .name(format!("nfc {connstring}"))
        .spawn(move || task.run())?;
    Ok(Worker { tx, gate, thread })
}

struct NfcBackend {
    stop: Arc<AtomicBool>,
    workers: Vec<Worker>,
}

impl Backend for NfcBackend {
    fn name(&self) -> &'static str {
        "nfc"
    }

    fn shutdown(self: Box<Self>) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            let _ = w.tx.send(Msg::Stop);
            w.gate.abort_wait();
        }
        for w in self.workers {
            if w.thread.join().is_err() {
                tracing::error!("an NFC device thread panicked");
            }
        }
    }
}

/// NFC devices libnfc finds without intrusive scans (for `vitale-bridge readers`).
/// Serial devices (PN532 on a UART) are never scanned: name them with `--nfc`.
pub fn list_devices() -> Result<Vec<String>, String> {
    let mut context = nfc1::Context::new().map_err(|e| format!("libnfc init: {e}"))?;
    context
        .list_devices(SCAN_MAX)
        .map_err(|e| format!("libnfc scan: {e}"))
}
