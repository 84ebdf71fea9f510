//! One NFC device on its own blocking thread: open, poll for ISO 14443-4A targets in
//! short bounded steps, hand a tapped phone to the card worker, check its presence,
//! serve client requests between steps, and reopen with backoff when the device goes
//! away.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nfc1::target_info::TargetInfo;
use nfc1::{BaudRate, Context, Device, Modulation, ModulationType, Property};

use super::channel::NfcChannel;
use crate::bus::{Hub, ReaderKind, ReaderRequest, Service, ServiceState, Update};
use crate::card::{CardType, ReadContext};
use crate::transport::worker;

/// SAK bit announcing ISO 14443-4 (the only targets a phone profile can talk to).
const SAK_ISO14443_4: u8 = 0x20;
/// First and largest wait between reopen attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the device thread receives.
pub enum Msg {
    /// A client request for the card in this reader.
    Request(ReaderRequest),
    /// Stop: close the device and leave.
    Stop,
}

/// Everything one device thread needs.
pub struct DeviceTask {
    /// The hub.
    pub hub: Arc<Hub>,
    /// libnfc connstring.
    pub connstring: String,
    /// Time between polls (and presence checks).
    pub poll_interval: Duration,
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
            match open(&self.connstring) {
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
        self.hub.publish(Update::ReaderRemoved {
            reader: self.ctx.reader.clone(),
        });
    }

    fn service(&self, state: ServiceState, detail: String) {
        self.hub.publish(Update::ServiceChanged {
            service: Service::Nfc,
            state,
            detail,
        });
    }

    /// Polls and serves one open device until it fails or the backend stops.
    fn serve_device(&self, mut device: Device) -> Outcome {
        let mut present: Option<CardType> = None;
        let mut ignored_uid: Option<Vec<u8>> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Outcome::Stop;
            }
            match present {
                None => match poll_once(&mut device) {
                    Ok(Some(Found::Phone)) => {
                        ignored_uid = None;
                        let started = Instant::now();
                        let mut channel = NfcChannel::new(&mut device);
                        let card_type = worker::on_inserted(&self.hub, &self.ctx, &mut channel);
                        tracing::debug!(reader = %self.ctx.reader, ms = started.elapsed().as_millis() as u64, "tap handled");
                        present = Some(card_type);
                    }
                    Ok(Some(Found::Other(uid))) => {
                        if ignored_uid.as_ref() != Some(&uid) {
                            tracing::info!(reader = %self.ctx.reader, "ignoring a target without ISO 14443-4 (not a phone)");
                            ignored_uid = Some(uid);
                        }
                    }
                    Ok(None) => ignored_uid = None,
                    Err(e) => return Outcome::DeviceLost(e.to_string()),
                },
                Some(_) => match device.initiator_target_is_present_any() {
                    Ok(()) => {}
                    Err(nfc1::Error::Io) => {
                        self.removed(&mut present);
                        return Outcome::DeviceLost("I/O error during presence check".into());
                    }
                    Err(_) => self.removed(&mut present),
                },
            }
            let card = present;
            let mut serve = |req: ReaderRequest| {
                let mut channel = NfcChannel::new(&mut device);
                let card = card.map(|t| (&mut channel as &mut dyn crate::card::CardChannel, t));
                worker::serve(&self.hub, &self.ctx, card, req);
            };
            if self.wait(self.poll_interval, Some(&mut serve)).is_err() {
                self.removed(&mut present);
                return Outcome::Stop;
            }
        }
    }

    fn removed(&self, present: &mut Option<CardType>) {
        if present.take().is_some() {
            tracing::info!(reader = %self.ctx.reader, "phone left the field");
            self.hub.publish(Update::CardRemoved {
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
pub fn add_reader(
    hub: &Hub,
    ctx: &ReadContext,
    connstring: &str,
    handle: crate::bus::ReaderHandle,
) {
    hub.publish(Update::ReaderAdded {
        id: ctx.reader.clone(),
        name: connstring.to_string(),
        kind: ReaderKind::Nfc,
        contactless: true,
        handle: Some(handle),
    });
}

enum Found {
    Phone,
    Other(Vec<u8>),
}

/// One bounded InListPassiveTarget for ISO 14443-A at 106 kbps.
fn poll_once(device: &mut Device) -> Result<Option<Found>, nfc1::Error> {
    let modulation = Modulation {
        modulation_type: ModulationType::Iso14443a,
        baud_rate: BaudRate::Baud106,
    };
    let target = device.initiator_select_passive_target(&modulation)?;
    // nfc1 returns Ok with an all-zero target when nothing answered (libnfc returns 0
    // targets, not an error): a real target has a UID.
    match target.target_info {
        TargetInfo::Iso14443a(info) if info.uid_len > 0 => {
            let uid = info.uid.get(..info.uid_len).unwrap_or(&info.uid).to_vec();
            if info.sak & SAK_ISO14443_4 != 0 {
                Ok(Some(Found::Phone))
            } else {
                Ok(Some(Found::Other(uid)))
            }
        }
        _ => Ok(None),
    }
}

/// Opens and initialises a device as an initiator that selects once per call.
fn open(connstring: &str) -> Result<(Context, Device), String> {
    let mut context = Context::new().map_err(|e| format!("libnfc init: {e}"))?;
    let mut device = context
        .open_with_connstring(connstring)
        .map_err(|e| format!("cannot open {connstring}: {e}"))?;
    device
        .initiator_init()
        .map_err(|e| format!("initiator init: {e}"))?;
    // Without this, InListPassiveTarget waits forever for a target: polls must be
    // short so the thread can serve requests and stop.
    device
        .set_property_bool(Property::InfiniteSelect, false)
        .map_err(|e| format!("setting single select: {e}"))?;
    Ok((context, device))
}
