//! One NFC device on its own blocking thread: open, let the chip wait for an
//! ISO 14443-4A target (InAutoPoll, endless; see `abort.rs` for how requests, shutdown
//! and removal end that wait), hand a tapped phone to the card worker, check its
//! presence while it is there, serve client requests, and reopen with backoff when the
//! device goes away.
//!
//! The legacy host-side poll (one bounded select every `poll_interval`) is kept behind
//! [`DeviceTask::host_poll`] for the benchmark's before/after comparison only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use nfc1::target_info::TargetInfo;
use nfc1::{BaudRate, Context, Device, Modulation, ModulationType, Property};

use super::abort::Gate;
use super::channel::NfcChannel;
use crate::card::{CardType, ReadContext};
use crate::protocol::{ReaderKind, Service, ServiceState};
use crate::transport::worker;
use crate::transport::{EventSink, ReaderHandle, ReaderRequest, Update};

/// SAK bit announcing ISO 14443-4 (the only targets a phone profile can talk to).
const SAK_ISO14443_4: u8 = 0x20;
/// First and largest wait between reopen attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Between presence checks while a target is in the field (no checks otherwise).
const PRESENCE_INTERVAL: Duration = Duration::from_millis(100);
/// InAutoPoll PollNr: poll until a target answers or the host aborts.
const POLL_FOREVER: u8 = 0xFF;
/// InAutoPoll Period, 150 ms units: how often a real PN532 repeats its polling round
/// while it waits (the host sleeps meanwhile).
const POLL_PERIOD: Duration = Duration::from_millis(150);

/// What the device thread receives.
pub enum Msg {
    /// A client request for the card in this reader.
    Request(ReaderRequest),
    /// Stop: close the device and leave.
    Stop,
}

/// Everything one device thread needs.
pub struct DeviceTask {
    /// The sink.
    pub sink: Arc<dyn EventSink>,
    /// libnfc connstring.
    pub connstring: String,
    /// Time between polls in the legacy host-poll mode.
    pub poll_interval: Duration,
    /// Legacy mode: bounded selects every `poll_interval` instead of the chip's wait.
    pub host_poll: bool,
    /// Lets other threads end the chip's wait.
    pub gate: std::sync::Arc<Gate>,
    /// Reader id and phone AID.
    pub ctx: ReadContext,
    /// Requests and stop.
    pub rx: Receiver<Msg>,
    /// Set by shutdown, checked between steps.
    pub stop: Arc<AtomicBool>,
}

enum Outcome {
    Stop,
    DeviceLost(String),
}

impl DeviceTask {
    /// Runs until stopped. Registers the reader first and removes it last.
    pub fn run(self) {
        let mut down_reported = false;
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            match open(&self.connstring, self.host_poll) {
                Ok((context, device)) => {
                    backoff = BACKOFF_MIN;
                    down_reported = false;
                    tracing::info!(device = %self.connstring, "NFC device open");
                    self.service(ServiceState::Up, self.connstring.clone());
                    // The context must outlive the device.
                    let outcome = self.serve_device(device);
                    drop(context);
                    match outcome {
                        Outcome::Stop => break,
                        Outcome::DeviceLost(why) => {
                            tracing::warn!(device = %self.connstring, error = %why, "NFC device lost; reopening");
                            // A quick reopen hides one-off link errors; a real loss
                            // fails to open and is reported below.
                            continue;
                        }
                    }
                }
                Err(why) => {
                    if !down_reported {
                        tracing::warn!(device = %self.connstring, error = %why, "NFC device unavailable; retrying with backoff");
                        self.service(ServiceState::Down, self.connstring.clone());
                        down_reported = true;
                    }
                    if self.wait(backoff, None).is_err() {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.sink.publish(Update::ReaderRemoved {
            reader: self.ctx.reader.clone(),
        });
    }

    fn service(&self, state: ServiceState, detail: String) {
        self.sink.publish(Update::ServiceChanged {
            service: Service::Nfc,
            state,
            detail,
        });
    }

    /// Waits for targets on one open device and serves it until it fails or the
    /// backend stops.
    fn serve_device(&self, mut device: Device) -> Outcome {
        // A phone (its type once detected) or an ignored target, while in the field.
        let mut present: Option<CardType> = None;
        let mut other_present = false;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                self.removed(&mut present);
                return Outcome::Stop;
            }
            if present.is_none() && !other_present {
                let found = if self.host_poll {
                    poll_once(&mut device)
                } else {
                    // Requests that came before (or aborted) the previous wait first,
                    // with no card to serve them from.
                    if self.drain_requests(&mut device, None).is_err() {
                        return Outcome::Stop;
                    }
                    // Not run: an abort came since the requests were drained.
                    self.gate
                        .wait(&mut device, wait_for_target)
                        .unwrap_or(Ok(None))
                };
                match found {
                    Ok(Some(Found::Phone)) => {
                        let started = Instant::now();
                        let mut channel = NfcChannel::new(&mut device);
                        let card_type = worker::on_inserted(&self.sink, &self.ctx, &mut channel);
                        tracing::debug!(reader = %self.ctx.reader, ms = started.elapsed().as_millis() as u64, "tap handled");
                        present = Some(card_type);
                    }
                    Ok(Some(Found::Other)) => {
                        tracing::info!(reader = %self.ctx.reader, "ignoring a target without ISO 14443-4 (not a phone) until it leaves");
                        other_present = true;
                    }
                    // Aborted for a request or shutdown: both are handled above.
                    Ok(None) | Err(nfc1::Error::OperationAborted) => {}
                    Err(e) => return Outcome::DeviceLost(e.to_string()),
                }
                if !self.host_poll {
                    continue;
                }
            } else {
                match device.initiator_target_is_present_any() {
                    Ok(()) => {}
                    Err(nfc1::Error::Io) => {
                        self.removed(&mut present);
                        return Outcome::DeviceLost("I/O error during presence check".into());
                    }
                    Err(_) => {
                        other_present = false;
                        self.removed(&mut present);
                        if !self.host_poll {
                            continue;
                        }
                    }
                }
            }
            let period = if self.host_poll {
                self.poll_interval
            } else {
                PRESENCE_INTERVAL
            };
            let card = present;
            let mut serve = |req: ReaderRequest| {
                let mut channel = NfcChannel::new(&mut device);
                let card = card.map(|t| (&mut channel as &mut dyn crate::card::CardChannel, t));
                worker::serve(&self.sink, &self.ctx, card, req);
            };
            if self.wait(period, Some(&mut serve)).is_err() {
                self.removed(&mut present);
                return Outcome::Stop;
            }
        }
    }

    /// Serves the requests already queued without waiting. `Err` means stop.
    fn drain_requests(&self, device: &mut Device, card: Option<CardType>) -> Result<(), ()> {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Request(req)) => {
                    let mut channel = NfcChannel::new(device);
                    let card = card.map(|t| (&mut channel as &mut dyn crate::card::CardChannel, t));
                    worker::serve(&self.sink, &self.ctx, card, req);
                }
                Ok(Msg::Stop) | Err(TryRecvError::Disconnected) => return Err(()),
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    fn removed(&self, present: &mut Option<CardType>) {
        if present.take().is_some() {
            tracing::info!(reader = %self.ctx.reader, "phone left the field");
            self.sink.publish(Update::CardRemoved {
                reader: self.ctx.reader.clone(),
            });
        }
    }

    /// Waits up to `period`, serving requests as they come (or refusing them when
    /// there is no device). `Err` means stop.
    fn wait(
        &self,
        period: Duration,
        mut serve: Option<&mut dyn FnMut(ReaderRequest)>,
    ) -> Result<(), ()> {
        let deadline = Instant::now() + period;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Msg::Request(req)) => match serve.as_mut() {
                    Some(serve) => serve(req),
                    None => worker::refuse(&self.ctx, req),
                },
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return Err(()),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
            }
        }
    }
}

/// Registers the reader for `ctx`; returns nothing the thread must keep.
pub fn add_reader(sink: &dyn EventSink, ctx: &ReadContext, connstring: &str, handle: ReaderHandle) {
    sink.publish(Update::ReaderAdded {
        id: ctx.reader.clone(),
        name: connstring.to_string(),
        kind: ReaderKind::Nfc,
        contactless: true,
        handle: Some(handle),
    });
}

enum Found {
    Phone,
    Other,
}

fn iso14443a_106() -> Modulation {
    Modulation {
        modulation_type: ModulationType::Iso14443a,
        baud_rate: BaudRate::Baud106,
    }
}

/// What a select or poll reported.
fn found(target: nfc1::Target) -> Option<Found> {
    // nfc1 returns Ok with an all-zero target when nothing answered (libnfc returns 0
    // targets, not an error): a real target has a UID.
    match target.target_info {
        TargetInfo::Iso14443a(info) if info.uid_len > 0 => {
            Some(if info.sak & SAK_ISO14443_4 != 0 {
                Found::Phone
            } else {
                Found::Other
            })
        }
        _ => None,
    }
}

/// InAutoPoll (PN532 UM §7.3.13) with PollNr FF: the chip polls on its own and answers
/// when a target is activated; the host thread sleeps in libnfc meanwhile (timeout 0:
/// until the answer, an abort or a link error). Blocking, hence on the device thread.
fn wait_for_target(device: &mut Device) -> Result<Option<Found>, nfc1::Error> {
    device
        .initiator_poll_target(&[iso14443a_106()], POLL_FOREVER, POLL_PERIOD)
        .map(found)
}

/// One bounded InListPassiveTarget for ISO 14443-A at 106 kbps (legacy host poll).
fn poll_once(device: &mut Device) -> Result<Option<Found>, nfc1::Error> {
    device
        .initiator_select_passive_target(&iso14443a_106())
        .map(found)
}

/// Opens and initialises a device as an initiator.
fn open(connstring: &str, host_poll: bool) -> Result<(Context, Device), String> {
    let mut context = Context::new().map_err(|e| format!("libnfc init: {e}"))?;
    let mut device = context
        .open_with_connstring(connstring)
        .map_err(|e| format!("cannot open {connstring}: {e}"))?;
    device
        .initiator_init()
        .map_err(|e| format!("initiator init: {e}"))?;
    // The legacy poll needs bounded selects so the thread can serve requests and stop
    // between them (InAutoPoll ignores this property).
    if host_poll {
        device
            .set_property_bool(Property::InfiniteSelect, false)
            .map_err(|e| format!("setting single select: {e}"))?;
    }
    Ok((context, device))
}
