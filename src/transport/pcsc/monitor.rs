//! The monitor thread: one `pcsc::Context` blocked in `get_status_change` (SCardGetStatusChange)
//! on every reader plus the `\\?PnP?\Notification` pseudo-reader. Reader arrivals and
//! departures become reader events; card presence changes go to each reader's worker.
//! No polling: the call blocks until pcscd reports a change, `Context::cancel` wakes
//! it for shutdown, and a long timeout re-lists readers where PnP is unsupported.
//!
//! pcscd lost (killed, stopped): the old context never recovers (it answers
//! `NoService` forever), so the monitor reports `service.changed` down, removes the
//! readers, and establishes a new context with backoff (250 ms, doubling, capped at
//! 5 s); once it works: `service.changed` up and everything is announced and read again.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use pcsc::{Context, ReaderState, Scope, State};

use super::PcscOptions;
use super::channel::is_contactless_name;
use super::reader::{Presence, Worker};
use crate::card::ReadContext;
use crate::protocol::{ReaderKind, Service, ServiceState};
use crate::transport::{EventSink, ReaderHandle, Update};

/// Re-list readers this often as a safety net even with PnP notifications.
const RELIST_PNP: Duration = Duration::from_secs(60);
/// Re-list period where the PnP pseudo-reader is unsupported.
const RELIST_NO_PNP: Duration = Duration::from_secs(3);
/// First reconnection delay after pcscd is lost.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// Longest reconnection delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// State shared between the monitor thread and the backend handle.
#[derive(Default)]
pub struct Shared {
    stop: AtomicBool,
    ctx: Mutex<Option<Context>>,
    wake: (Mutex<()>, Condvar),
}

impl Shared {
    /// Asks the monitor to stop: wakes its sleeps and cancels its blocking call.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.1.notify_all();
        self.cancel();
    }

    /// Cancels the current `get_status_change`, if any.
    pub fn cancel(&self) {
        if let Some(ctx) = self.ctx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = ctx.cancel();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `d` unless stopped first; returns whether stopping.
    fn sleep(&self, d: Duration) -> bool {
        let guard = self.wake.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .wake
            .1
            .wait_timeout_while(guard, d, |_| !self.stopping());
        self.stopping()
    }

    fn set_ctx(&self, ctx: Option<Context>) {
        *self.ctx.lock().unwrap_or_else(|p| p.into_inner()) = ctx;
    }
}

struct Slot {
    id: String,
    worker: Worker,
    present: bool,
    count: u32,
}

enum End {
    Stopped,
    Lost(String),
}

/// The monitor thread's body.
pub fn run(sink: Arc<dyn EventSink>, opts: PcscOptions, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_FIRST;
    let mut down_reported = false;
    while !shared.stopping() {
        let ctx = match Context::establish(Scope::User) {
            Ok(c) => c,
            Err(e) => {
                if !down_reported {
                    tracing::warn!(error = %e, "PC/SC service unavailable; retrying");
                    publish_service(&sink, ServiceState::Down, format!("pcscd unavailable: {e}"));
                    down_reported = true;
                }
                if shared.sleep(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        shared.set_ctx(Some(ctx.clone()));
        let mut readers = BTreeMap::new();
        let end = watch(&sink, &opts, &ctx, &shared, &mut readers, &mut backoff);
        shared.set_ctx(None);
        if let End::Lost(detail) = &end {
            tracing::warn!(detail, "PC/SC service lost");
            publish_service(&sink, ServiceState::Down, detail.clone());
            down_reported = true;
        }
        for (_, slot) in std::mem::take(&mut readers) {
            slot.worker.stop();
            sink.publish(Update::ReaderRemoved { reader: slot.id });
        }
        drop(ctx);
        match end {
            End::Stopped => break,
            End::Lost(_) => {
                if shared.sleep(backoff) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn publish_service(sink: &dyn EventSink, state: ServiceState, detail: String) {
    sink.publish(Update::ServiceChanged {
        service: Service::Pcsc,
        state,
        detail,
    });
}

fn is_service_loss(e: pcsc::Error) -> bool {
    use pcsc::Error as E;
    matches!(
        e,
        E::NoService
            | E::ServiceStopped
            | E::InvalidHandle
            | E::CommError
            | E::InternalError
            | E::UnknownError
            | E::NoMemory
    )
}

fn watch(
    sink: &Arc<dyn EventSink>,
    opts: &PcscOptions,
    ctx: &Context,
    shared: &Shared,
    readers: &mut BTreeMap<CString, Slot>,
    backoff: &mut Duration,
) -> End {
    let pnp_name: &CStr = pcsc::PNP_NOTIFICATION();
    let mut states = vec![ReaderState::new(pnp_name, State::UNAWARE)];
    let mut pnp = cfg!(not(target_os = "macos"));
    // A real round trip before announcing the service up, then the readers.
    match ctx.list_readers_len() {
        Ok(_) | Err(pcsc::Error::NoReadersAvailable) => {}
        Err(e) => return End::Lost(format!("listing readers failed: {e}")),
    }
    publish_service(sink, ServiceState::Up, "pcscd reachable".into());
    *backoff = BACKOFF_FIRST;
    if let Err(e) = relist(sink, opts, ctx, readers, &mut states) {
        return End::Lost(format!("listing readers failed: {e}"));
    }
    loop {
        if shared.stopping() {
            return End::Stopped;
        }
        if !pnp {
            states.retain(|s| s.name() != pnp_name);
        }
        let timeout = if pnp { RELIST_PNP } else { RELIST_NO_PNP };
        match ctx.get_status_change(timeout, &mut states) {
            Ok(()) => {}
            Err(pcsc::Error::Timeout) => {
                if let Err(e) = relist(sink, opts, ctx, readers, &mut states) {
                    return End::Lost(format!("listing readers failed: {e}"));
                }
                continue;
            }
            Err(pcsc::Error::Cancelled) => continue,
            Err(pcsc::Error::UnknownReader) => {
                if let Err(e) = relist(sink, opts, ctx, readers, &mut states) {
                    return End::Lost(format!("listing readers failed: {e}"));
                }
                continue;
            }
            Err(e) if is_service_loss(e) || ctx.is_valid().is_err() => {
                return End::Lost(format!("pcscd lost: {e}"));
            }
            Err(e) => {
                // Unexpected but not fatal: do not spin on it.
                tracing::warn!(error = %e, "get_status_change failed");
                if shared.sleep(Duration::from_secs(1)) {
                    return End::Stopped;
                }
                continue;
            }
        }
        let mut need_relist = false;
        for rs in states.iter_mut() {
            let ev = rs.event_state();
            if rs.name() == pnp_name {
                if ev.contains(State::UNKNOWN) {
                    // Windows without PnP support, old pcsc-lite: fall back to re-listing.
                    pnp = false;
                } else if ev.contains(State::CHANGED) {
                    need_relist = true;
                }
                rs.sync_current_state();
                continue;
            }
            if ev.intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE) {
                need_relist = true;
                rs.sync_current_state();
                continue;
            }
            if ev.contains(State::CHANGED)
                && let Some(slot) = readers.get_mut(rs.name())
            {
                let present = ev.contains(State::PRESENT);
                let count = rs.event_count();
                if present && (!slot.present || count != slot.count) {
                    slot.worker.send(Presence::Present {
                        atr: rs.atr().to_vec(),
                    });
                } else if !present && slot.present {
                    slot.worker.send(Presence::Empty);
                }
                slot.present = present;
                slot.count = count;
            }
            rs.sync_current_state();
        }
        if need_relist && let Err(e) = relist(sink, opts, ctx, readers, &mut states) {
            return End::Lost(format!("listing readers failed: {e}"));
        }
    }
}

/// Brings the reader set in line with pcscd's list.
fn relist(
    sink: &Arc<dyn EventSink>,
    opts: &PcscOptions,
    ctx: &Context,
    readers: &mut BTreeMap<CString, Slot>,
    states: &mut Vec<ReaderState>,
) -> Result<(), pcsc::Error> {
    let names = match ctx.list_readers_owned() {
        Ok(n) => n,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(e),
    };
    let gone: Vec<CString> = readers
        .keys()
        .filter(|k| !names.contains(k))
        .cloned()
        .collect();
    for name in gone {
        if let Some(slot) = readers.remove(&name) {
            tracing::info!(reader = %slot.id, "reader removed");
            slot.worker.stop();
            sink.publish(Update::ReaderRemoved { reader: slot.id });
        }
        states.retain(|s| s.name() != name.as_c_str());
    }
    for name in names {
        if readers.contains_key(&name) {
            continue;
        }
        let display = name.to_string_lossy().into_owned();
        let id = format!("pcsc:{display}");
        let contactless = is_contactless_name(&display);
        let (handle, rx) = ReaderHandle::channel();
        let ctx_read = ReadContext {
            reader: id.clone(),
            apcv_aid: opts.apcv_aid.clone(),
            environment: None,
        };
        let worker = match Worker::spawn(sink.clone(), name.clone(), ctx_read, contactless, rx) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(reader = %id, error = %e, "cannot start reader thread");
                continue;
            }
        };
        tracing::info!(reader = %id, contactless, "reader added");
        sink.publish(Update::ReaderAdded {
            id: id.clone(),
            name: display,
            kind: ReaderKind::Pcsc,
            contactless,
            handle: Some(handle),
        });
        states.push(ReaderState::new(name.clone(), State::UNAWARE));
        readers.insert(
            name,
            Slot {
                id,
                worker,
                present: false,
                count: 0,
            },
        );
    }
    Ok(())
}
