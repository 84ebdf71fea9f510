//! The outgoing half of one WebSocket connection: responses, subscribed events, pings
//! and the closing frame, in order, with every wait bounded.
//!
//! A write that cannot complete (the client stopped reading) never blocks anything
//! else: it races server shutdown, the session's abort, the subscription's lag flag
//! and a write deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bus::Notification;
use crate::protocol::WipedJson;

/// A text frame over the shared, wiped buffer: no copy per client.
fn text(json: &WipedJson) -> Message {
    // The buffer is serde_json output, so always UTF-8; an empty frame stands in
    // rather than a panic should that ever not hold.
    Message::Text(Utf8Bytes::try_from(json.bytes()).unwrap_or_default())
}

/// The write half of a connection.
pub type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// How often a blocked write checks whether the hub dropped its subscription. Only
/// runs while a write is pending, never on an idle connection.
const LAG_POLL: Duration = Duration::from_millis(50);

/// What the session asks the writer to send.
#[derive(Debug)]
pub enum Out {
    /// A response (wiped once sent: it may be an identity).
    Text(WipedJson),
    /// Start forwarding events; the response (if any) goes out before any of them.
    Subscribed {
        /// The `subscribe` response, `None` for a notification.
        response: Option<WipedJson>,
        /// Events after the snapshot.
        rx: mpsc::Receiver<Notification>,
        /// Set by the hub when this subscriber's queue filled.
        lagged: Arc<AtomicBool>,
    },
    /// Stop forwarding events, then send the response (if any).
    Unsubscribed {
        /// The `unsubscribe` response.
        response: Option<WipedJson>,
    },
    /// Close after everything queued before it.
    Close(Closing),
}

/// A close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// RFC 6455 close code.
    pub code: u16,
    /// Short reason (sent in the frame and logged).
    pub reason: &'static str,
}

impl Closing {
    /// Server shutdown (1001).
    pub const GOING_AWAY: Closing = Closing {
        code: 1001,
        reason: "server shutting down",
    };
    /// The outgoing queue filled (1008).
    pub const QUEUE_FULL: Closing = Closing {
        code: 1008,
        reason: "outgoing queue full",
    };
    /// The client stopped reading.
    pub const WRITE_STALLED: Closing = Closing {
        code: 1008,
        reason: "client stopped reading",
    };
    /// Two pings went unanswered.
    pub const NO_PONG: Closing = Closing {
        code: 1008,
        reason: "no pong",
    };
    /// A message over the size limit (1009).
    pub const TOO_BIG: Closing = Closing {
        code: 1009,
        reason: "message too big",
    };
    /// A text frame that is not UTF-8 (1007).
    pub const BAD_UTF8: Closing = Closing {
        code: 1007,
        reason: "invalid UTF-8",
    };
    /// A WebSocket protocol violation (1002).
    pub const PROTOCOL: Closing = Closing {
        code: 1002,
        reason: "protocol error",
    };
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It sent (or tried to send) a Close frame.
    Closed(Closing),
    /// The session ended it, or the socket failed; nothing more can be sent.
    Stopped,
}

/// Timing and shared state the writer needs.
pub struct Writer {
    /// The socket's write half.
    pub sink: Sink,
    /// Requests from the session.
    pub out: mpsc::Receiver<Out>,
    /// Server shutdown.
    pub stop: watch::Receiver<bool>,
    /// Set (or dropped) by the session when it is done.
    pub abort: watch::Receiver<bool>,
    /// Pings sent and not yet answered; the session resets it on a pong.
    pub unanswered: Arc<AtomicU32>,
    /// Ping interval.
    pub ping_interval: Duration,
    /// Longest a single write may take.
    pub write_timeout: Duration,
    /// Longest the closing frame may take to go out.
    pub close_timeout: Duration,
}

struct Sub {
    rx: mpsc::Receiver<Notification>,
    lagged: Arc<AtomicBool>,
}

enum Halt {
    Close(Closing),
    Stop,
}

impl Writer {
    /// Runs until the connection must close; returns the sink (for the session's
    /// final drain) and how it ended.
    pub async fn run(mut self) -> (Sink, Ended) {
        let mut sub: Option<Sub> = None;
        let start = Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let halt = loop {
            if sub
                .as_ref()
                .is_some_and(|s| s.lagged.load(Ordering::Acquire))
            {
                break Halt::Close(Closing::QUEUE_FULL);
            }
            let msg = tokio::select! {
                biased;
                _ = wait_true(&mut self.abort) => break Halt::Stop,
                _ = wait_true(&mut self.stop) => break Halt::Close(Closing::GOING_AWAY),
                out = self.out.recv() => match out {
                    None => break Halt::Stop,
                    Some(Out::Text(t)) => text(&t),
                    Some(Out::Subscribed { response, rx, lagged }) => {
                        sub = Some(Sub { rx, lagged });
                        match response {
                            Some(r) => text(&r),
                            None => continue,
                        }
                    }
                    Some(Out::Unsubscribed { response }) => {
                        sub = None;
                        match response {
                            Some(r) => text(&r),
                            None => continue,
                        }
                    }
                    Some(Out::Close(c)) => break Halt::Close(c),
                },
                n = next_event(&mut sub) => match n {
                    Some(n) => text(&n.json),
                    None => {
                        let lagged = sub.as_ref().is_some_and(|s| s.lagged.load(Ordering::Acquire));
                        if lagged {
                            break Halt::Close(Closing::QUEUE_FULL);
                        }
                        sub = None;
                        continue;
                    }
                },
                _ = ping.tick() => {
                    if self.unanswered.load(Ordering::Acquire) >= 2 {
                        break Halt::Close(Closing::NO_PONG);
                    }
                    self.unanswered.fetch_add(1, Ordering::AcqRel);
                    Message::Ping(Default::default())
                }
            };
            let lag = sub.as_ref().map(|s| s.lagged.clone());
            if let Err(h) = self.write(msg, lag).await {
                break h;
            }
        };
        match halt {
            Halt::Stop => (self.sink, Ended::Stopped),
            Halt::Close(c) => {
                let frame = CloseFrame {
                    code: CloseCode::from(c.code),
                    reason: c.reason.into(),
                };
                // A client that stopped reading cannot take the frame; don't wait on it.
                let _ = tokio::time::timeout(
                    self.close_timeout,
                    self.sink.send(Message::Close(Some(frame))),
                )
                .await;
                (self.sink, Ended::Closed(c))
            }
        }
    }

    async fn write(&mut self, msg: Message, lag: Option<Arc<AtomicBool>>) -> Result<(), Halt> {
        let send = self.sink.send(msg);
        tokio::pin!(send);
        let deadline = tokio::time::sleep(self.write_timeout);
        tokio::pin!(deadline);
        let mut lag_poll = tokio::time::interval(LAG_POLL);
        loop {
            tokio::select! {
                biased;
                r = &mut send => return r.map_err(|_| Halt::Stop),
                _ = wait_true(&mut self.abort) => return Err(Halt::Stop),
                _ = wait_true(&mut self.stop) => return Err(Halt::Close(Closing::GOING_AWAY)),
                _ = lag_poll.tick(), if lag.is_some() => {
                    if lag.as_ref().is_some_and(|l| l.load(Ordering::Acquire)) {
                        return Err(Halt::Close(Closing::QUEUE_FULL));
                    }
                }
                _ = &mut deadline => return Err(Halt::Close(Closing::WRITE_STALLED)),
            }
        }
    }
}

/// Resolves when the flag is set or its sender is gone.
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn next_event(sub: &mut Option<Sub>) -> Option<Notification> {
    match sub {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}
