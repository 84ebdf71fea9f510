//! One WebSocket connection after the upgrade: reads and answers requests, runs card
//! work as bounded tasks, hands output to its [`Writer`], and closes cleanly.
//!
//! The session never waits on the client while holding anything others need: output
//! goes through the writer (which races shutdown and lag), card work runs as tasks,
//! and every closing wait is bounded by `close_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::handshake::Peer;
use super::limits::{ClientSlot, TokenBucket};
use super::methods::{self, Call};
use super::writer::{Closing, Ended, Out, Sink, Writer};
use super::{Ctx, ServerConfig};
use crate::bus::{ScopedIdentity, Scopes};
use crate::protocol::WipedJson;
use crate::protocol::rpc::{self, Incoming, RpcError};
use crate::protocol::{ProtocolError, Reason};

type Source = SplitStream<WebSocketStream<TcpStream>>;

/// Responses waiting for the writer; beyond this the session stops reading, which
/// pushes back on the client through TCP.
const OUT_QUEUE: usize = 64;

/// Everything a session starts with.
pub struct Start {
    /// The upgraded connection.
    pub ws: WebSocketStream<TcpStream>,
    /// Remote address, for logs.
    pub addr: SocketAddr,
    /// Who the client is (decides redaction and the signing origin).
    pub peer: Peer,
    /// The client slot, released when the session ends.
    pub slot: ClientSlot,
}

/// Why the read loop stopped.
enum ReadEnd {
    /// The peer closed or the socket failed: nothing more to do.
    Gone,
    /// The writer is closing (or has closed): read until the peer's Close.
    Closing,
    /// The stream is unusable (oversized frame, bad UTF-8, protocol error): send this
    /// close, then drain the raw socket.
    Fatal(Closing),
}

struct Session<'a> {
    ctx: &'a Ctx,
    peer: Peer,
    addr: SocketAddr,
    out: mpsc::Sender<Out>,
    bucket: TokenBucket,
    tasks: JoinSet<()>,
    subscription: Option<u64>,
    unanswered: Arc<AtomicU32>,
}

/// The writer task and, once it has finished, what it handed back.
struct WriterTask {
    handle: Option<JoinHandle<(Sink, Ended)>>,
    sink: Option<Sink>,
}

impl WriterTask {
    /// Waits for the writer to finish; pending forever once it has.
    async fn wait(&mut self) -> Option<Ended> {
        let Some(handle) = self.handle.as_mut() else {
            return std::future::pending().await;
        };
        let result = handle.await;
        self.handle = None;
        match result {
            Ok((sink, ended)) => {
                self.sink = Some(sink);
                Some(ended)
            }
            Err(_) => None,
        }
    }

    /// Lets the writer finish until `deadline`, then stops it; returns the sink if
    /// it came back.
    async fn finish(&mut self, deadline: tokio::time::Instant) -> Option<Sink> {
        if self.handle.is_some()
            && tokio::time::timeout_at(deadline, self.wait())
                .await
                .is_err()
            && let Some(h) = self.handle.take()
        {
            h.abort();
        }
        self.sink.take()
    }
}

/// Runs one connection to its end.
pub async fn run(ctx: Arc<Ctx>, start: Start, mut stop: watch::Receiver<bool>) {
    let Start {
        ws,
        addr,
        peer,
        slot,
    } = start;
    let cfg: &ServerConfig = &ctx.cfg;
    let (sink, mut source) = ws.split();
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let (abort_tx, abort_rx) = watch::channel(false);
    let unanswered = Arc::new(AtomicU32::new(0));
    let mut writer = WriterTask {
        handle: Some(tokio::spawn(
            Writer {
                sink,
                out: out_rx,
                stop: stop.clone(),
                abort: abort_rx,
                unanswered: unanswered.clone(),
                ping_interval: cfg.ping_interval,
                write_timeout: cfg.ping_interval.max(cfg.close_timeout),
                close_timeout: cfg.close_timeout,
            }
            .run(),
        )),
        sink: None,
    };
    let mut session = Session {
        ctx: &ctx,
        peer,
        addr,
        out: out_tx,
        bucket: TokenBucket::new(cfg.rate_per_sec, Instant::now()),
        tasks: JoinSet::new(),
        subscription: None,
        unanswered,
    };
    let end = session.read_loop(&mut source, &mut stop, &mut writer).await;
    let close_deadline = tokio::time::Instant::now() + cfg.close_timeout;
    let outcome = match end {
        ReadEnd::Gone => "closed by client",
        ReadEnd::Closing => {
            // Keep reading so tungstenite sees the peer's Close and the closing
            // handshake completes (browsers report 1006 otherwise).
            let _ = tokio::time::timeout_at(close_deadline, async {
                while let Some(Ok(_)) = source.next().await {}
            })
            .await;
            "closed by server"
        }
        ReadEnd::Fatal(closing) => {
            let queued =
                tokio::time::timeout_at(close_deadline, session.out.send(Out::Close(closing)));
            let _ = queued.await;
            if let Some(sink) = writer.finish(close_deadline).await
                && let Ok(mut ws) = source.reunite(sink)
            {
                drain_raw(ws.get_mut(), close_deadline).await;
            }
            closing.reason
        }
    };
    session.finish();
    let _ = abort_tx.send(true);
    drop(session);
    writer
        .finish(tokio::time::Instant::now() + cfg.close_timeout)
        .await;
    drop(slot);
    tracing::info!(peer = %addr, outcome, "client disconnected");
}

/// Discards whatever the client still sends (the rest of an oversized frame, its
/// Close) until it hangs up or the deadline passes, in a fixed buffer.
async fn drain_raw(stream: &mut TcpStream, deadline: tokio::time::Instant) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

impl Session<'_> {
    async fn read_loop(
        &mut self,
        source: &mut Source,
        stop: &mut watch::Receiver<bool>,
        writer: &mut WriterTask,
    ) -> ReadEnd {
        loop {
            let msg = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return ReadEnd::Closing,
                w = writer.wait() => {
                    // The writer closed on its own (lag, no pong, stalled) or died.
                    return match w {
                        Some(Ended::Closed(c)) => {
                            tracing::info!(peer = %self.addr, code = c.code, reason = c.reason, "closing client");
                            ReadEnd::Closing
                        }
                        _ => ReadEnd::Gone,
                    };
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => continue,
                m = source.next() => m,
            };
            let step = match msg {
                None => return ReadEnd::Gone,
                Some(Ok(Message::Text(t))) => self.on_text(t.as_str()).await,
                Some(Ok(Message::Binary(_))) => {
                    let e = RpcError::invalid_request(
                        "binary frames are not accepted; send JSON-RPC as text",
                    );
                    self.send(rpc::failure(&Value::Null, &e)).await
                }
                Some(Ok(Message::Pong(_))) => {
                    self.unanswered.store(0, Ordering::Release);
                    Ok(())
                }
                // Pings are answered by tungstenite; a Close is answered on the next
                // read, which then ends the stream.
                Some(Ok(Message::Ping(_) | Message::Close(_) | Message::Frame(_))) => Ok(()),
                Some(Err(e)) => return self.read_error(e).await,
            };
            if step.is_err() {
                // The writer is gone: it is closing the connection.
                return ReadEnd::Closing;
            }
        }
    }

    async fn read_error(&mut self, e: WsError) -> ReadEnd {
        match e {
            WsError::Capacity(_) => {
                tracing::info!(peer = %self.addr, limit = self.ctx.cfg.max_message_bytes, "message over the size limit");
                ReadEnd::Fatal(Closing::TOO_BIG)
            }
            WsError::Utf8(_) => {
                tracing::info!(peer = %self.addr, "text frame with invalid UTF-8");
                let e = RpcError::parse("text frame is not valid UTF-8");
                let _ = self.send(rpc::failure(&Value::Null, &e)).await;
                ReadEnd::Fatal(Closing::BAD_UTF8)
            }
            WsError::Protocol(p) => {
                tracing::info!(peer = %self.addr, error = %p, "websocket protocol error");
                ReadEnd::Fatal(Closing::PROTOCOL)
            }
            other => {
                tracing::debug!(peer = %self.addr, error = %other, "connection ended");
                ReadEnd::Gone
            }
        }
    }

    /// Queues a response; `Err` when the writer has gone.
    async fn send(&self, text: impl Into<WipedJson>) -> Result<(), ()> {
        self.out.send(Out::Text(text.into())).await.map_err(|_| ())
    }

    async fn on_text(&mut self, text: &str) -> Result<(), ()> {
        let within_rate = self.bucket.take(Instant::now());
        let req = match rpc::parse(text) {
            Incoming::Invalid { id, error, respond } => {
                return if respond {
                    self.send(rpc::failure(&id, &error)).await
                } else {
                    Ok(())
                };
            }
            Incoming::Request(r) => r,
        };
        if !within_rate {
            let Some(id) = req.id else { return Ok(()) };
            let e = ProtocolError::new(
                Reason::RateLimited,
                format!(
                    "more than {} requests per second; retry in {} ms",
                    self.ctx.cfg.rate_per_sec,
                    self.bucket.retry_after().as_millis().max(1)
                ),
            );
            return self.send(rpc::failure(&id, &e.into())).await;
        }
        let call = match Call::parse(&req.method, req.params) {
            Ok(c) => c,
            Err(e) => {
                return match req.id {
                    Some(id) => self.send(rpc::failure(&id, &e)).await,
                    None => Ok(()),
                };
            }
        };
        self.dispatch(req.id, call).await
    }

    async fn dispatch(&mut self, id: Option<Value>, call: Call) -> Result<(), ()> {
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
                let Some(id) = id else { return Ok(()) };
                let readers = hub.readers(redacted);
                let result = methods::ReadersResult::new(&readers, self.peer.scopes());
                return self.send(rpc::success_wiped(&id, result)).await;
            }
            Call::Subscribe => {
                if let Some(old) = self.subscription.take() {
                    hub.unsubscribe(old);
                }
                let sub = hub.subscribe_as(self.ctx.cfg.queue_len, self.peer.view());
                self.subscription = Some(sub.id);
                let scopes = self.peer.scopes();
                let response = id.as_ref().map(|id| {
                    let result = methods::SubscribeResult {
                        seq: sub.seq,
                        snapshot: methods::ReadersResult::new(&sub.snapshot, scopes),
                    };
                    rpc::success_wiped(id, result)
                });
                return self
                    .out
                    .send(Out::Subscribed {
                        response,
                        rx: sub.rx,
                        lagged: sub.lagged,
                    })
                    .await
                    .map_err(|_| ());
            }
            Call::Unsubscribe => {
                if let Some(old) = self.subscription.take() {
                    hub.unsubscribe(old);
                }
                let response = id.as_ref().map(|id| rpc::success(id, json!({})).into());
                return self
                    .out
                    .send(Out::Unsubscribed { response })
                    .await
                    .map_err(|_| ());
            }
            card @ (Call::CardRead { .. } | Call::CardSign { .. }) => {
                // A card answer nobody waits for is not worth a trip to the card.
                let Some(id) = id else { return Ok(()) };
                return self.card_work(id, card).await;
            }
        };
        match id {
            Some(id) => self.send(rpc::success(&id, result)).await,
            None => Ok(()),
        }
    }

    async fn card_work(&mut self, id: Value, call: Call) -> Result<(), ()> {
        if self.peer.redacted() {
            return self
                .send(rpc::failure(&id, &methods::not_permitted()))
                .await;
        }
        if matches!(call, Call::CardSign { .. }) && !self.peer.scopes().contains(Scopes::SIGN) {
            return self
                .send(rpc::failure(&id, &methods::sign_not_permitted()))
                .await;
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
            return self.send(rpc::failure(&id, &e.into())).await;
        }
        let hub = self.ctx.hub.clone();
        let out = self.out.clone();
        let binding = self.peer.binding().to_string();
        let addr = self.addr;
        self.tasks.spawn(async move {
            let text = match call {
                Call::CardRead { reader, fresh } => {
                    let started = Instant::now();
                    let r = hub.read_card(&reader, fresh).await;
                    tracing::info!(peer = %addr, reader = %reader, fresh, ok = r.is_ok(), ms = started.elapsed().as_millis() as u64, "card.read");
                    match r {
                        Ok(identity) => rpc::success_wiped(&id, ScopedIdentity(&identity, scopes)),
                        Err(e) => rpc::failure(&id, &e.into()).into(),
                    }
                }
                Call::CardSign { reader, challenge } => {
                    let r = hub.sign(&reader, &binding, &challenge).await;
                    tracing::info!(peer = %addr, reader = %reader, ok = r.is_ok(), "card.sign");
                    match r {
                        Ok(sig) => rpc::success_wiped(&id, &*sig),
                        Err(e) => rpc::failure(&id, &e.into()).into(),
                    }
                }
                _ => return,
            };
            let _ = out.send(Out::Text(text)).await;
        });
        Ok(())
    }

    /// Releases what the session holds in the hub and stops its card work.
    fn finish(&mut self) {
        if let Some(id) = self.subscription.take() {
            self.ctx.hub.unsubscribe(id);
        }
        self.tasks.abort_all();
    }
}
