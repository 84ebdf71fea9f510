//! One worker thread per PC/SC reader, with its own `pcsc::Context` (the monitor's
//! context stays free for `get_status_change`; see the pcsc crate's notes on thread
//! safety and blocking calls). It owns the connected card, reads it on insertion and
//! serves `card.read`/`card.sign` requests, one at a time.
//!
//! Access follows cards.md §1: SHARED mode, one transaction per read (a few ms),
//! released at once so other middleware keeps working; the card is left as is on
//! disconnect (`LeaveCard`; dropping a `pcsc::Card` would reset it).

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pcsc::{Context, Disposition, Protocols, Scope, ShareMode};
use tokio::sync::mpsc;

use super::channel::{PcscChannel, is_contactless_atr};
use crate::card::{CardType, Cause, ChannelError, ReadContext};
use crate::protocol::{ProtocolError, Reason};
use crate::transport::worker;
use crate::transport::{EventSink, ReaderRequest, Update};

/// How long an insertion or a request waits for a reader held exclusively elsewhere.
pub const BUSY_WAIT: Duration = Duration::from_secs(3);
/// Step of that bounded wait (only while another application holds the reader).
const BUSY_STEP: Duration = Duration::from_millis(100);
/// Reads restarted after `SCARD_W_RESET_CARD` before giving up.
const RESET_RETRIES: usize = 2;

/// What the monitor tells a worker.
#[derive(Debug)]
pub enum Presence {
    /// A card is in the reader (a new one, if one was present before).
    Present {
        /// ATR as pcscd reported it.
        atr: Vec<u8>,
    },
    /// The reader is empty.
    Empty,
    /// Disconnect and end the thread.
    Stop,
}

/// The monitor's handle on a worker thread.
#[derive(Debug)]
pub struct Worker {
    tx: mpsc::UnboundedSender<Presence>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker for reader `name`; `requests` comes from the sink's handle.
    pub fn spawn(
        sink: Arc<dyn EventSink>,
        name: CString,
        ctx: ReadContext,
        contactless: bool,
        requests: mpsc::Receiver<ReaderRequest>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("pcsc-reader-{}", ctx.reader))
            .spawn(move || {
                let mut w = ReaderThread {
                    sink,
                    name,
                    ctx,
                    contactless,
                    pctx: None,
                    card: None,
                    busy_atr: None,
                    presence: rx,
                };
                w.run(requests);
            })?;
        Ok(Worker {
            tx,
            thread: Some(thread),
        })
    }

    /// Forwards a presence change.
    pub fn send(&self, p: Presence) {
        let _ = self.tx.send(p);
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        let _ = self.tx.send(Presence::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Connected {
    card: pcsc::Card,
    atr: Vec<u8>,
    card_type: CardType,
}

struct ReaderThread {
    sink: Arc<dyn EventSink>,
    name: CString,
    ctx: ReadContext,
    contactless: bool,
    pctx: Option<Context>,
    card: Option<Connected>,
    /// ATR of a card we could not connect to because the reader was held exclusively.
    busy_atr: Option<Vec<u8>>,
    presence: mpsc::UnboundedReceiver<Presence>,
}

enum Msg {
    Presence(Option<Presence>),
    Request(Option<ReaderRequest>),
}

enum Connect {
    Ok(pcsc::Card),
    Busy,
    Gone,
    Failed(ChannelError),
    Interrupted(Presence),
}

impl ReaderThread {
    fn run(&mut self, mut requests: mpsc::Receiver<ReaderRequest>) {
        let rt = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(reader = %self.ctx.reader, error = %e, "reader worker cannot start");
                return;
            }
        };
        let mut requests_open = true;
        let mut next: Option<Presence> = None;
        loop {
            let msg = match next.take() {
                Some(p) => Msg::Presence(Some(p)),
                None => rt.block_on(async {
                    tokio::select! {
                        biased;
                        p = self.presence.recv() => Msg::Presence(p),
                        r = requests.recv(), if requests_open => Msg::Request(r),
                    }
                }),
            };
            match msg {
                Msg::Presence(None) | Msg::Presence(Some(Presence::Stop)) => break,
                Msg::Presence(Some(Presence::Empty)) => self.removed(),
                Msg::Presence(Some(Presence::Present { atr })) => {
                    if self.card.is_some() || self.busy_atr.is_some() {
                        self.removed();
                    }
                    next = self.inserted(atr);
                }
                Msg::Request(None) => requests_open = false,
                Msg::Request(Some(req)) => next = self.serve(req),
            }
        }
        self.disconnect();
    }

    fn context(&mut self) -> Result<&Context, ChannelError> {
        if self.pctx.is_none() {
            let c = Context::establish(Scope::User)
                .map_err(|e| ChannelError::ServiceDown(Cause::new(e)))?;
            self.pctx = Some(c);
        }
        self.pctx
            .as_ref()
            .ok_or_else(|| ChannelError::ServiceDown("no PC/SC context".into()))
    }

    /// SCardConnect in SHARED mode, waiting at most [`BUSY_WAIT`] for a reader held
    /// exclusively elsewhere; a presence change interrupts the wait.
    fn connect(&mut self) -> Connect {
        let deadline = Instant::now() + BUSY_WAIT;
        let name = self.name.clone();
        loop {
            let result = match self.context() {
                Ok(c) => c.connect(&name, ShareMode::Shared, Protocols::ANY),
                Err(e) => return Connect::Failed(e),
            };
            match result {
                Ok(card) => return Connect::Ok(card),
                Err(pcsc::Error::SharingViolation) if Instant::now() < deadline => {
                    std::thread::sleep(BUSY_STEP);
                    if let Ok(p) = self.presence.try_recv() {
                        return Connect::Interrupted(p);
                    }
                }
                Err(pcsc::Error::SharingViolation) => return Connect::Busy,
                Err(pcsc::Error::NoSmartcard | pcsc::Error::RemovedCard) => return Connect::Gone,
                Err(e) => {
                    if matches!(e, pcsc::Error::NoService | pcsc::Error::InvalidHandle) {
                        // This context died with pcscd; a later attempt gets a new one.
                        self.pctx = None;
                    }
                    return Connect::Failed(super::channel::map_error(e));
                }
            }
        }
    }

    /// A card arrived: connect, detect, read. Returns a presence change that
    /// interrupted the connection, for the main loop to handle next.
    fn inserted(&mut self, atr: Vec<u8>) -> Option<Presence> {
        let card = match self.connect() {
            Connect::Ok(card) => card,
            Connect::Interrupted(p) => return Some(p),
            Connect::Gone => return None,
            Connect::Busy => {
                tracing::info!(reader = %self.ctx.reader, "reader held exclusively by another application");
                self.busy_atr = Some(atr.clone());
                // The ATR hint keeps `card.read` routed here, to retry once the reader frees.
                let card_type = match crate::card::detect::atr_hint(&atr) {
                    crate::card::detect::AtrHint::Vitale2 => CardType::Vitale2,
                    _ => CardType::Unknown,
                };
                self.announce(atr, card_type, busy_error());
                return None;
            }
            Connect::Failed(e) => {
                tracing::info!(reader = %self.ctx.reader, error = %e, "cannot connect to the card");
                self.announce_failure(atr, crate::card::CardError::Channel(e).into());
                return None;
            }
        };
        self.read_new(card, atr);
        None
    }

    /// Detects and reads a freshly connected card; on a reset by another application,
    /// reconnects and starts over (never reusing what was read before the reset).
    fn read_new(&mut self, mut card: pcsc::Card, atr: Vec<u8>) {
        let atr = card_atr(&card).unwrap_or(atr);
        let contactless = self.contactless || is_contactless_atr(&atr);
        for attempt in 0..=RESET_RETRIES {
            let outcome = match card.transaction() {
                Ok(tx) => {
                    let mut ch = channel(&self.pctx, &self.name, &tx, atr.clone(), contactless);
                    let t = worker::on_inserted(&self.sink, &self.ctx, &mut ch);
                    tracing::debug!(reader = %self.ctx.reader, apdus = ch.sent, "card handled");
                    let failure = ch.failure.take();
                    drop(ch);
                    let _ = tx.end(Disposition::LeaveCard);
                    Ok((t, failure))
                }
                Err(e) => Err(super::channel::map_error(e)),
            };
            match outcome {
                Ok((_, Some(ChannelError::Reset))) | Err(ChannelError::Reset)
                    if attempt < RESET_RETRIES =>
                {
                    tracing::info!(reader = %self.ctx.reader, "card reset by another application; reconnecting");
                    if card
                        .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard)
                        .is_err()
                    {
                        return;
                    }
                }
                Ok((card_type, _)) => {
                    self.card = Some(Connected {
                        card,
                        atr,
                        card_type,
                    });
                    return;
                }
                Err(e) => {
                    self.announce_failure(atr, crate::card::CardError::Channel(e).into());
                    return;
                }
            }
        }
    }

    fn announce_failure(&self, atr: Vec<u8>, error: ProtocolError) {
        self.announce(atr, CardType::Unknown, error);
    }

    fn announce(&self, atr: Vec<u8>, card_type: CardType, error: ProtocolError) {
        self.sink.publish(Update::CardInserted {
            reader: self.ctx.reader.clone(),
            atr,
            card_type,
        });
        self.sink.publish(Update::IdentityError {
            reader: self.ctx.reader.clone(),
            error,
        });
    }

    fn removed(&mut self) {
        self.busy_atr = None;
        self.disconnect();
        self.sink.publish(Update::CardRemoved {
            reader: self.ctx.reader.clone(),
        });
    }

    fn disconnect(&mut self) {
        if let Some(c) = self.card.take() {
            // LeaveCard: dropping a pcsc::Card would reset it under other applications.
            if let Err((card, e)) = c.card.disconnect(Disposition::LeaveCard) {
                tracing::debug!(reader = %self.ctx.reader, error = %e, "disconnect failed");
                drop(card);
            }
        }
    }

    /// Serves a client request on the card in the reader.
    fn serve(&mut self, req: ReaderRequest) -> Option<Presence> {
        if self.card.is_none()
            && let Some(atr) = self.busy_atr.clone()
        {
            // The reader was held exclusively at insertion: try again, bounded.
            match self.connect() {
                Connect::Ok(card) => {
                    self.busy_atr = None;
                    self.read_new(card, atr);
                }
                Connect::Interrupted(p) => {
                    refuse(req, busy_error());
                    return Some(p);
                }
                Connect::Busy => {
                    refuse(req, busy_error());
                    return None;
                }
                Connect::Gone | Connect::Failed(_) => {}
            }
        }
        let Some(c) = self.card.as_mut() else {
            worker::serve(&self.sink, &self.ctx, None, req);
            return None;
        };
        let contactless = self.contactless || is_contactless_atr(&c.atr);
        let mut reconnected = false;
        let reset = loop {
            // `transaction2` hands the card back with the error, to reconnect it.
            match c.card.transaction2() {
                Ok(tx) => {
                    let mut ch = channel(&self.pctx, &self.name, &tx, c.atr.clone(), contactless);
                    worker::serve(&self.sink, &self.ctx, Some((&mut ch, c.card_type)), req);
                    let reset = ch.failure == Some(ChannelError::Reset);
                    drop(ch);
                    let _ = tx.end(Disposition::LeaveCard);
                    break reset;
                }
                // Reset by another application since our last use: reconnect, and the
                // request reads the card afresh (never the pre-reset state). The
                // transaction that finds this is the one the request uses otherwise, so
                // the usual case costs pcscd one round-trip, not a probe and then one.
                Err((card, pcsc::Error::ResetCard)) if !reconnected => {
                    tracing::info!(reader = %self.ctx.reader, "card reset by another application; reconnecting");
                    let _ =
                        card.reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard);
                    reconnected = true;
                }
                Err((_, e)) => {
                    let err: ProtocolError =
                        crate::card::CardError::Channel(super::channel::map_error(e)).into();
                    refuse(req, err);
                    break e == pcsc::Error::ResetCard;
                }
            }
        };
        if reset {
            // The client got CARD_REMOVED (retriable); the next read starts afresh.
            let _ = c
                .card
                .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard);
        }
        None
    }
}

fn card_atr(card: &pcsc::Card) -> Option<Vec<u8>> {
    card.status2_owned().ok().map(|s| s.atr().to_vec())
}

fn busy_error() -> ProtocolError {
    ProtocolError::new(
        Reason::ReaderBusy,
        "another application holds the reader exclusively; close it and try again",
    )
}

fn refuse(req: ReaderRequest, err: ProtocolError) {
    match req {
        ReaderRequest::Read { reply } => {
            let _ = reply.send(Err(err));
        }
        ReaderRequest::Sign { reply, .. } => {
            let _ = reply.send(Err(err));
        }
    }
}

/// A channel onto `card` that, given the reader's context, can tell a removal from a
/// card that answered badly.
fn channel<'a>(
    pctx: &'a Option<Context>,
    name: &'a std::ffi::CStr,
    card: &'a pcsc::Card,
    atr: Vec<u8>,
    contactless: bool,
) -> PcscChannel<'a> {
    let ch = PcscChannel::new(card, atr, contactless);
    match pctx {
        Some(context) => ch.watching(context, name),
        None => ch,
    }
}
