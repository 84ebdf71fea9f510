//! The local WebSocket/HTTP server: handshake rules, JSON-RPC 2.0, limits, `/health`,
//! the status page (product.md §4–5), and the opt-in Prometheus `/metrics`.
//!
//! - [`handshake`]: pure `Host`/`Origin` rules.
//! - [`http`]: bounded request-head reading and plain responses.
//! - `router`: one connection up to the 101 (or the HTTP answer).
//! - [`methods`]: method parameters, pure (the JSON-RPC envelope is [`crate::protocol::rpc`]).
//! - [`metrics`]: the Prometheus rendering of `/metrics`.
//! - `session` and [`writer`]: one upgraded connection, incoming and outgoing.
//! - [`limits`]: the rate limiter and client slots.
//! - [`silent`]: connections closed before a byte (Local Network Access blocks).
//! - [`pending`]: the bounded handshake slots (oldest evicted when full).
//! - [`owner`] and [`users`]: which OS user owns a client socket, and whether that
//!   user may connect (the local trust boundary, docs/security.md).

pub mod handshake;
pub mod http;
pub mod limits;
pub mod methods;
pub mod metrics;
pub mod owner;
pub mod pending;
mod router;
mod session;
pub mod silent;
pub mod users;
pub mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bus::Hub;
use handshake::OriginPolicy;
use pending::PendingHandshakes;
use users::UserPolicy;

/// Server settings (product.md §3–4.5).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Exact allowed origins (`https://app.example`), compared normalised; each
    /// gets every scope unless `origin_scopes` narrows it.
    pub allowed_origins: Vec<String>,
    /// Origins with the scopes they get (the `[origins."…"]` table form); an
    /// origin listed here is allowed even if absent from `allowed_origins`.
    pub origin_scopes: Vec<(String, crate::bus::Scopes)>,
    /// Whether clients without an Origin header may connect.
    pub allow_native_clients: bool,
    /// Open connections at most; more get HTTP 503.
    pub max_clients: usize,
    /// Largest message in bytes; bigger closes with 1009.
    pub max_message_bytes: usize,
    /// Time allowed to complete the HTTP upgrade.
    pub handshake_timeout: Duration,
    /// Outgoing queue per client, in messages; a full queue closes with 1008.
    pub queue_len: usize,
    /// Requests per second per connection.
    pub rate_per_sec: u32,
    /// Ping interval; two missed pongs close the connection.
    pub ping_interval: Duration,
    /// How long a closing handshake may take before the socket is dropped.
    pub close_timeout: Duration,
    /// Card operations (`card.read`, `card.sign`) in flight per connection.
    pub max_inflight: usize,
    /// Connections still in their HTTP handshake at once; beyond this the oldest
    /// pending one is closed to make room.
    pub max_pending_handshakes: usize,
    /// How long a new connection may stay silent before its first byte; shorter than
    /// `handshake_timeout` so idle sockets free their handshake slot quickly.
    pub first_byte_timeout: Duration,
    /// Users besides the daemon's own effective user whose sockets may connect
    /// (resolved uids of `allowed_users`).
    pub allowed_uids: Vec<u32>,
    /// Groups whose members' sockets may connect (resolved gids of `allowed_groups`).
    pub allowed_gids: Vec<u32>,
    /// Serve `GET /metrics`; when off the path is unknown (404).
    pub metrics: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            origin_scopes: Vec::new(),
            allow_native_clients: true,
            max_clients: 32,
            max_message_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(5),
            queue_len: 1024,
            rate_per_sec: 50,
            ping_interval: Duration::from_secs(30),
            close_timeout: Duration::from_secs(3),
            max_inflight: 4,
            max_pending_handshakes: 128,
            first_byte_timeout: Duration::from_secs(1),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            metrics: false,
        }
    }
}

/// What every connection shares.
struct Ctx {
    hub: Arc<Hub>,
    cfg: ServerConfig,
    policy: OriginPolicy,
    silent: silent::SilentWatch,
    users: Arc<UserPolicy>,
}

/// Serves WebSocket and HTTP on the given loopback listeners until `shutdown`
/// resolves, then closes every client with 1001 and returns once all connections
/// have ended.
pub async fn serve(
    listeners: Vec<TcpListener>,
    hub: Arc<Hub>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (mut policy, mut invalid) =
        OriginPolicy::new(&cfg.allowed_origins, cfg.allow_native_clients);
    invalid.extend(policy.with_scopes(&cfg.origin_scopes));
    for entry in invalid {
        tracing::warn!(origin = ?entry, "allowed_origins entry is not an origin (scheme://host[:port]); it matches nothing");
    }
    let pending = PendingHandshakes::new(cfg.max_pending_handshakes);
    let users = Arc::new(UserPolicy::for_this_process(
        cfg.allowed_uids.clone(),
        cfg.allowed_gids.clone(),
    ));
    tracing::info!(
        uid = users.own(),
        allowed_users = ?cfg.allowed_uids,
        allowed_groups = ?cfg.allowed_gids,
        "serving only sockets of these OS users"
    );
    let ctx = Arc::new(Ctx {
        hub,
        cfg,
        policy,
        silent: silent::SilentWatch::default(),
        users,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; when all are gone, `recv` returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut accepters = Vec::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "websocket server listening");
        }
        accepters.push(tokio::spawn(accept_loop(
            listener,
            ctx.clone(),
            pending.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
        )));
    }
    drop(alive_tx);
    shutdown.await;
    tracing::info!("websocket server stopping; closing clients with 1001");
    let _ = stop_tx.send(true);
    for a in accepters {
        let _ = a.await;
    }
    let _ = alive_rx.recv().await;
    tracing::info!("websocket server stopped");
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    pending: Arc<PendingHandshakes>,
    mut stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admission = pending.admit();
        if admission.evicted_other {
            // Debug only: under a flood this would be one line per connection.
            tracing::debug!(peer = %addr, "handshake slots full; closed the oldest pending handshake");
        }
        let ctx = ctx.clone();
        let stop = stop.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            router::handle(ctx, stream, addr, stop, admission).await;
            drop(alive);
        });
    }
}
