//! One WebSocket connection after the upgrade, in one task: it reads and answers
//! requests, forwards subscribed events, pings, and closes cleanly.
//!
//! Reading goes through tungstenite's [`WebSocketContext`] (RFC 6455: masking,
//! control frames, fragmentation, UTF-8, size limits, the close handshake), fed
//! straight from the socket with `try_read`. What tungstenite has to send itself
//! (pongs, pings, Close frames) comes back as bytes and joins the same ordered
//! [`Outbox`] as the text frames the session writes directly: responses, and events
//! the hub encoded once for every subscriber of a view. On each wake the session
//! queues everything that is ready and writes it in one vectored write, so a burst
//! of events costs one system call, not one per event.
//!
//! Every wait is bounded and nothing is waited on while holding what others need:
//! the write deadline runs only while a write is blocked, card work runs as tasks,
//! a client that lets its event queue fill is told so by the hub and closed with
//! 1008, and the closing handshake is bounded by `close_timeout`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketContext};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::handshake::Peer;
use super::limits::{ClientSlot, TokenBucket};
use super::methods::{self, Call};
use super::writer::{Closing, Flushed, Outbox};
use super::{Ctx, ServerConfig};
use crate::bus::{Notification, ScopedIdentity, Scopes};
use crate::protocol::WipedJson;
use crate::protocol::rpc::{self, Incoming, RpcError};
use crate::protocol::{ProtocolError, Reason};

/// Queued buffers beyond which the session stops reading requests: the client is not
/// taking its responses, so TCP pushes back on it instead of memory growing here.
const OUTBOX_READ_LIMIT: usize = 128;

/// Events taken from the subscription per wake: one vectored write's worth. While a
/// write is blocked none are taken, so the hub's bounded queue is what fills.
const EVENT_BATCH: usize = 32;

/// Messages read per wake before the other branches get a turn.
const READ_BATCH: usize = 32;

/// Everything a session starts with.
pub struct Start {
    /// The upgraded connection.
    pub stream: TcpStream,
    /// What the client sent after its request head (the start of its first frames).
    pub rest: Vec<u8>,
    /// Size limits for incoming frames and messages.
    pub config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
    /// Remote address, for logs.
    pub addr: SocketAddr,
    /// Who the client is (decides redaction and the signing origin).
    pub peer: Peer,
    /// The client slot, released when the session ends.
    pub slot: ClientSlot,
}

/// tungstenite's view of the socket: reads come straight from it without waiting
/// (`WouldBlock` when it is empty), writes (control frames only) are collected for
/// the outbox.
struct Io<'a> {
    tcp: &'a TcpStream,
    out: &'a mut Vec<u8>,
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.try_read(buf)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the connection ends.
enum End {
    /// The peer closed (its Close answered) or the socket failed: nothing more to do.
    Gone,
    /// Send this Close, then wait for the peer's (the closing handshake).
    Close(Closing),
    /// The stream is unusable (oversized frame, bad UTF-8, protocol error): send
    /// this Close, then discard whatever the client still sends.
    Fatal(Closing),
}

/// A live subscription.
struct Live {
    id: u64,
    rx: mpsc::Receiver<Notification>,
}

struct Session<'a> {
    ctx: &'a Ctx,
    peer: Peer,
    addr: SocketAddr,
    tcp: TcpStream,
    ws: WebSocketContext,
    /// Bytes tungstenite produced during the last call, moved to the outbox after it.
    control: Vec<u8>,
    outbox: Outbox,
    /// A write is waiting for the socket (its send buffer is full).
    blocked: bool,
    bucket: TokenBucket,
    tasks: JoinSet<Option<WipedJson>>,
    events: Option<Live>,
    /// Fires when the hub dropped the subscription because its queue filled.
    lagged: Option<oneshot::Receiver<()>>,
    /// Pings sent and not yet answered.
    unanswered: u32,
}

/// Runs one connection to its end.
pub async fn run(ctx: Arc<Ctx>, start: Start, mut stop: watch::Receiver<bool>) {
    let Start {
        stream,
        rest,
        config,
        addr,
        peer,
        slot,
    } = start;
    let cfg: &ServerConfig = &ctx.cfg;
    let mut session = Session {
        ctx: &ctx,
        peer,
        addr,
        tcp: stream,
        ws: WebSocketContext::from_partially_read(
            rest,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            Some(config),
        ),
        control: Vec::new(),
        outbox: Outbox::default(),
        blocked: false,
        bucket: TokenBucket::new(cfg.rate_per_sec, Instant::now()),
        tasks: JoinSet::new(),
        events: None,
        lagged: None,
        unanswered: 0,
    };
    let end = session.serve(&mut stop).await;
    session.release();
    let deadline = tokio::time::Instant::now() + cfg.close_timeout;
    let outcome = match end {
        End::Gone => {
            // A Close reply tungstenite queued goes out if the socket takes it.
            let _ = session.drain_outbox(deadline).await;
            "closed by client"
        }
        End::Close(closing) => {
            tracing::info!(peer = %addr, code = closing.code, reason = closing.reason, "closing client");
            session.queue_close(closing, true);
            if session.drain_outbox(deadline).await {
                // Read on so the peer's Close is seen and the closing handshake
                // completes (browsers report 1006 otherwise).
                session.await_peer_close(deadline).await;
            }
            "closed by server"
        }
        End::Fatal(closing) => {
            session.queue_close(closing, false);
            if session.drain_outbox(deadline).await {
                session.discard_input(deadline).await;
            }
            closing.reason
        }
    };
    drop(session);
    drop(slot);
    tracing::info!(peer = %addr, outcome, "client disconnected");
}

impl Session<'_> {
    /// Serves the connection until it must end.
    async fn serve(&mut self, stop: &mut watch::Receiver<bool>) -> End {
        let ctx = self.ctx;
        let cfg = &ctx.cfg;
        // Registered once for the connection's life.
        let mut stopped = pin!(stop.wait_for(|s| *s));
        let start = tokio::time::Instant::now() + cfg.ping_interval;
        let mut ping = tokio::time::interval_at(start, cfg.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // One deadline, armed (reset) only while a write is blocked.
        let write_timeout = cfg.ping_interval.max(cfg.close_timeout);
        let mut deadline = pin!(tokio::time::sleep(write_timeout));
        // Frames that came with the request head are already in tungstenite's buffer,
        // and what arrived since the router's last read may never be signalled again:
        // read before the first wait.
        let mut step = self.read_messages();
        loop {
            if let Some(end) = step {
                return end;
            }
            let was_blocked = self.blocked;
            match self.outbox.flush(&self.tcp) {
                Ok(Flushed::Done) => self.blocked = false,
                Ok(Flushed::Blocked { progressed }) => {
                    // A client that takes bytes, however slowly, gets a fresh
                    // deadline; one that takes none runs out of the one it has.
                    if !was_blocked || progressed {
                        deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + write_timeout);
                    }
                    self.blocked = true;
                }
                Err(_) => return End::Gone,
            }
            let reading = self.outbox.len() < OUTBOX_READ_LIMIT;
            let taking = !self.blocked;
            step = tokio::select! {
                biased;
                _ = &mut stopped => return End::Close(Closing::GOING_AWAY),
                _ = lag(&mut self.lagged) => return End::Close(Closing::QUEUE_FULL),
                _ = &mut deadline, if self.blocked => return End::Close(Closing::WRITE_STALLED),
                w = self.tcp.writable(), if self.blocked => match w {
                    Ok(()) => None,
                    Err(_) => return End::Gone,
                },
                n = next_event(&mut self.events), if taking => {
                    match n {
                        Some(n) => {
                            self.outbox.push(n.frame());
                            self.take_events();
                        }
                        // The hub ended the subscription; if it lagged, `lagged`
                        // fires next.
                        None => self.events = None,
                    }
                    None
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok(Some(response)) = done {
                        self.outbox.push_text(response.bytes());
                    }
                    None
                }
                r = self.tcp.readable(), if reading => match r {
                    Ok(()) => self.read_messages(),
                    Err(_) => return End::Gone,
                },
                _ = ping.tick() => {
                    if self.unanswered >= 2 {
                        return End::Close(Closing::NO_PONG);
                    }
                    self.unanswered += 1;
                    let mut io = Io { tcp: &self.tcp, out: &mut self.control };
                    if self.ws.write(&mut io, Message::Ping(Default::default())).is_err()
                        || self.ws.flush(&mut io).is_err()
                    {
                        return End::Gone;
                    }
                    self.take_control();
                    None
                }
            };
        }
    }

    /// Queues the events already waiting, up to one batch.
    fn take_events(&mut self) {
        let Some(live) = self.events.as_mut() else {
            return;
        };
        for _ in 1..EVENT_BATCH {
            match live.rx.try_recv() {
                Ok(n) => self.outbox.push(n.frame()),
                Err(_) => break,
            }
        }
    }

    /// Moves what tungstenite wrote (pongs, pings, Close frames) to the outbox.
    fn take_control(&mut self) {
        if !self.control.is_empty() {
            let bytes = std::mem::take(&mut self.control);
            self.outbox.push(Bytes::from(bytes));
        }
    }

    /// Reads and handles the messages the socket has, up to a batch. `Some` when the
    /// connection must end.
    fn read_messages(&mut self) -> Option<End> {
        for _ in 0..READ_BATCH {
            let mut io = Io {
                tcp: &self.tcp,
                out: &mut self.control,
            };
            let read = self.ws.read(&mut io);
            self.take_control();
            match read {
                Ok(Message::Text(t)) => self.on_text(t.as_str()),
                Ok(Message::Binary(_)) => {
                    let e = RpcError::invalid_request(
                        "binary frames are not accepted; send JSON-RPC as text",
                    );
                    self.respond(rpc::failure(&Value::Null, &e).into());
                }
                Ok(Message::Pong(_)) => self.unanswered = 0,
                // tungstenite answers pings itself (the pong is in `control`); a Close
                // is answered on the next read, which then ends the stream.
                Ok(Message::Ping(_) | Message::Close(_) | Message::Frame(_)) => {}
                Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return None;
                }
                Err(e) => return Some(self.read_error(e)),
            }
        }
        None
    }

    fn read_error(&mut self, e: WsError) -> End {
        use tokio_tungstenite::tungstenite::error::ProtocolError as P;
        match e {
            WsError::Capacity(_) => {
                tracing::info!(peer = %self.addr, limit = self.ctx.cfg.max_message_bytes, "message over the size limit");
                End::Fatal(Closing::TOO_BIG)
            }
            WsError::Utf8(_) => {
                tracing::info!(peer = %self.addr, "text frame with invalid UTF-8");
                let e = RpcError::parse("text frame is not valid UTF-8");
                self.respond(rpc::failure(&Value::Null, &e).into());
                End::Fatal(Closing::BAD_UTF8)
            }
            // The peer hung up without a Close: nothing to answer.
            WsError::Protocol(P::ResetWithoutClosingHandshake) => End::Gone,
            WsError::Protocol(p) => {
                tracing::info!(peer = %self.addr, error = %p, "websocket protocol error");
                End::Fatal(Closing::PROTOCOL)
            }
            other => {
                tracing::debug!(peer = %self.addr, error = %other, "connection ended");
                End::Gone
            }
        }
    }

    /// Queues a response.
    fn respond(&mut self, text: WipedJson) {
        self.outbox.push_text(text.bytes());
    }

    fn on_text(&mut self, text: &str) {
        let within_rate = self.bucket.take(Instant::now());
        let req = match rpc::parse(text) {
            Incoming::Invalid { id, error, respond } => {
                if respond {
                    self.respond(rpc::failure(&id, &error).into());
                }
                return;
            }
            Incoming::Request(r) => r,
        };
        if !within_rate {
            let Some(id) = req.id else { return };
            let e = ProtocolError::new(
                Reason::RateLimited,
                format!(
                    "more than {} requests per second; retry in {} ms",
                    self.ctx.cfg.rate_per_sec,
                    self.bucket.retry_after().as_millis().max(1)
                ),
            );
            self.respond(rpc::failure(&id, &e.into()).into());
            return;
        }
        match Call::parse(&req.method, req.params) {
            Ok(call) => self.dispatch(req.id, call),
            Err(e) => {
                if let Some(id) = req.id {
                    self.respond(rpc::failure(&id, &e).into());
                }
            }
        }
    }

    fn dispatch(&mut self, id: Option<Value>, call: Call) {
        let hub = &self.ctx.hub;
        let redacted = self.peer.redacted();
        let result = match call {
            Call::Hello { client } => {
                if let Some(client) = client {
                    let shown: String = client.chars().take(64).collect();
                    tracing::debug!(peer = %self.addr, client = ?shown, "hello");
                }
                methods::hello(redacted, self.peer.scopes())
            }
            Call::Status => methods::status(hub),
            Call::ReadersList => {
                let Some(id) = id else { return };
                let readers = hub.readers(redacted);
                let result = methods::ReadersResult::new(&readers, self.peer.scopes());
                self.respond(rpc::success_wiped(&id, result));
                return;
            }
            Call::Subscribe => {
                self.unsubscribe();
                let sub = hub.subscribe_as(self.ctx.cfg.queue_len, self.peer.view());
                // The response is queued before any event is taken: the client sees
                // the snapshot at `seq`, then exactly the events after it.
                if let Some(id) = id {
                    let result = methods::SubscribeResult {
                        seq: sub.seq,
                        snapshot: methods::ReadersResult::new(&sub.snapshot, self.peer.scopes()),
                    };
                    self.respond(rpc::success_wiped(&id, result));
                }
                self.events = Some(Live {
                    id: sub.id,
                    rx: sub.rx,
                });
                self.lagged = Some(sub.lagged);
                return;
            }
            Call::Unsubscribe => {
                self.unsubscribe();
                if let Some(id) = id {
                    self.respond(rpc::success(&id, json!({})).into());
                }
                return;
            }
            card @ (Call::CardRead { .. } | Call::CardSign { .. }) => {
                // A card answer nobody waits for is not worth a trip to the card.
                if let Some(id) = id {
                    self.card_work(id, card);
                }
                return;
            }
        };
        if let Some(id) = id {
            self.respond(rpc::success(&id, result).into());
        }
    }

    fn card_work(&mut self, id: Value, call: Call) {
        if self.peer.redacted() {
            self.respond(rpc::failure(&id, &methods::not_permitted()).into());
            return;
        }
        if matches!(call, Call::CardSign { .. }) && !self.peer.scopes().contains(Scopes::SIGN) {
            self.respond(rpc::failure(&id, &methods::sign_not_permitted()).into());
            return;
        }
        let scopes = self.peer.scopes();
        if self.tasks.len() >= self.ctx.cfg.max_inflight {
            let e = ProtocolError::new(
                Reason::RateLimited,
                format!(
                    "{} card operations already in progress on this connection",
                    self.ctx.cfg.max_inflight
                ),
            );
            self.respond(rpc::failure(&id, &e.into()).into());
            return;
        }
        let hub = self.ctx.hub.clone();
        let binding = self.peer.binding().to_string();
        let addr = self.addr;
        self.tasks.spawn(async move {
            match call {
                Call::CardRead { reader, fresh } => {
                    let started = Instant::now();
                    let r = hub.read_card(&reader, fresh).await;
                    tracing::info!(peer = %addr, reader = %reader, fresh, ok = r.is_ok(), ms = started.elapsed().as_millis() as u64, "card.read");
                    Some(match r {
                        Ok(identity) => rpc::success_wiped(&id, ScopedIdentity(&identity, scopes)),
                        Err(e) => rpc::failure(&id, &e.into()).into(),
                    })
                }
                Call::CardSign { reader, challenge } => {
                    let r = hub.sign(&reader, &binding, &challenge).await;
                    tracing::info!(peer = %addr, reader = %reader, ok = r.is_ok(), "card.sign");
                    Some(match r {
                        Ok(sig) => rpc::success_wiped(&id, &*sig),
                        Err(e) => rpc::failure(&id, &e.into()).into(),
                    })
                }
                _ => None,
            }
        });
    }

    fn unsubscribe(&mut self) {
        if let Some(live) = self.events.take() {
            self.ctx.hub.unsubscribe(live.id);
        }
        self.lagged = None;
    }

    /// Releases what the session holds in the hub and stops its card work. What the
    /// outbox holds (at most a batch and some responses) still goes out ahead of the
    /// Close, within the close deadline.
    fn release(&mut self) {
        self.unsubscribe();
        self.tasks.abort_all();
    }

    /// Queues a Close frame behind whatever is being written. `handshake`: through
    /// tungstenite, which then expects the peer's Close; otherwise (the stream is
    /// unusable) a bare frame.
    fn queue_close(&mut self, closing: Closing, handshake: bool) {
        let frame = CloseFrame {
            code: CloseCode::from(closing.code),
            reason: closing.reason.into(),
        };
        let mut io = Io {
            tcp: &self.tcp,
            out: &mut self.control,
        };
        let sent = handshake && self.ws.close(&mut io, Some(frame.clone())).is_ok();
        if !sent {
            self.control.clear();
            // Formatting into a Vec cannot fail.
            let _ = Frame::close(Some(frame)).format(&mut self.control);
        }
        self.take_control();
    }

    /// Writes the outbox out until `deadline`; whether it all went.
    async fn drain_outbox(&mut self, deadline: tokio::time::Instant) -> bool {
        let all = tokio::time::timeout_at(deadline, async {
            loop {
                match self.outbox.flush(&self.tcp) {
                    Ok(Flushed::Done) => return true,
                    Ok(Flushed::Blocked { .. }) => {
                        if self.tcp.writable().await.is_err() {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
        });
        all.await.unwrap_or(false)
    }

    /// After our Close: reads until the peer's Close (tungstenite then reports the
    /// connection closed) or `deadline`, answering nothing but pings.
    async fn await_peer_close(&mut self, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                if self.tcp.readable().await.is_err() {
                    return;
                }
                loop {
                    let mut io = Io {
                        tcp: &self.tcp,
                        out: &mut self.control,
                    };
                    match self.ws.read(&mut io) {
                        Ok(_) => continue,
                        Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            break;
                        }
                        Err(_) => return,
                    }
                }
            }
        })
        .await;
    }

    /// Discards whatever the client still sends (the rest of an oversized frame, its
    /// Close) until it hangs up or `deadline`, in a fixed buffer.
    async fn discard_input(&mut self, deadline: tokio::time::Instant) {
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                if self.tcp.readable().await.is_err() {
                    return;
                }
                match self.tcp.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }
}

/// Resolves when the hub reports the subscription lagged; pending otherwise (no
/// subscription, or one that ended normally).
async fn lag(lagged: &mut Option<oneshot::Receiver<()>>) {
    match lagged {
        Some(rx) => {
            if rx.await.is_err() {
                // Ended without lagging (unsubscribed): nothing to report.
                *lagged = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<Live>) -> Option<Notification> {
    match events {
        Some(live) => live.rx.recv().await,
        None => std::future::pending().await,
    }
}
