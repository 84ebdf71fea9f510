//! One accepted TCP connection before any WebSocket traffic: the request head within
//! the handshake deadline, then `/health`, the status page, `/diagnostics`, `/metrics` when enabled,
//! or the `/v1` upgrade with every rule of product.md §4.1 checked before the 101.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::Ctx;
use super::handshake::{Peer, host_allowed};
use super::http::{self, Head, HeadError};
use super::limits::ClientSlot;
use super::owner;
use super::pending::Admission;
use super::session::{self, Start};
use super::users;

const STATUS_HTML: &str = include_str!("status_page.html");
const STATUS_JS: &str = include_str!("status_page.js");
/// The JavaScript client (clients/js), so pages can import it from the daemon itself.
const CLIENT_JS: &str = include_str!("../../clients/js/vitale-bridge.js");

/// What the head decided.
enum Route {
    /// Send this response and close.
    Respond(Vec<u8>),
    /// Send the 101 and run a session.
    Upgrade {
        response: Vec<u8>,
        peer: Peer,
        slot: ClientSlot,
    },
}

/// Kernel send buffer per connection (Linux doubles it for bookkeeping): a few hundred
/// events, against megabytes when autotuned.
const SEND_BUFFER: usize = 64 * 1024;

/// Serves one connection from accept to close.
pub async fn handle(
    ctx: Arc<Ctx>,
    mut stream: TcpStream,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    admission: Admission,
) {
    let Admission {
        slot, mut eviction, ..
    } = admission;
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    // Left alone, Linux autotunes a loopback send buffer to megabytes at once, so a
    // client that stops reading would swallow thousands of events before the
    // per-client queue (`queue_len`) even starts to fill, and the daemon's memory per
    // stuck client would be bounded by the kernel, not by us. A fixed buffer keeps
    // both the queue limit meaningful and the memory per client small.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
    // The head, the decision and the response all fit in the handshake deadline; a
    // slow or silent client holds no client slot while it dawdles.
    let now = tokio::time::Instant::now();
    let deadline = now + ctx.cfg.handshake_timeout;
    let first_byte = now + ctx.cfg.first_byte_timeout.min(ctx.cfg.handshake_timeout);
    let handshake = async {
        // Idle sockets are the cheapest way to fill the handshake slots: one that
        // has sent nothing after `first_byte_timeout` is closed, long before the
        // handshake bound.
        let mut one = [0u8; 1];
        match tokio::time::timeout_at(first_byte, stream.peek(&mut one)).await {
            Ok(Ok(n)) if n > 0 => slot.talking(),
            // Closed or reset before a single byte: what Chromium's Local Network
            // Access block (and a port scan) looks like from here.
            Ok(Ok(_)) => {
                ctx.silent.noticed(&ctx.hub);
                return None;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                ctx.silent.noticed(&ctx.hub);
                return None;
            }
            Ok(Err(_)) => return None,
            Err(_) => {
                tracing::debug!(peer = %addr, "no request byte in time; closing");
                return None;
            }
        }
        let (head, rest) = match http::read_head(&mut stream).await {
            Ok(h) => h,
            Err(e) => {
                let response = match e {
                    HeadError::TooLarge => http::error_response(431, "request head too large"),
                    HeadError::Malformed => http::error_response(400, "malformed request"),
                    HeadError::Silent => {
                        ctx.silent.noticed(&ctx.hub);
                        return None;
                    }
                    HeadError::Closed | HeadError::Io(_) => return None,
                };
                tracing::debug!(peer = %addr, error = %e, "bad request head");
                let _ = stream.write_all(&response).await;
                return None;
            }
        };
        let route = route(&ctx, &head, addr, local).await;
        let (bytes, upgrade) = match route {
            Route::Respond(bytes) => (bytes, None),
            Route::Upgrade {
                response,
                peer,
                slot,
            } => (response, Some((peer, slot))),
        };
        stream.write_all(&bytes).await.ok()?;
        upgrade.map(|u| (u, rest))
    };
    let upgraded = tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => return,
        _ = eviction.wait() => {
            tracing::debug!(peer = %addr, "handshake evicted by a newer connection");
            return;
        }
        r = tokio::time::timeout_at(deadline, handshake) => match r {
            Ok(u) => u,
            Err(_) => {
                tracing::info!(peer = %addr, "handshake not completed in time; closing");
                return;
            }
        },
    };
    // The handshake is over either way. Free its slot before lingering, or a client
    // opening connections in a loop keeps every slot busy with lingering sockets.
    drop(slot);
    let Some(((peer, slot), rest)) = upgraded else {
        linger(&mut stream).await;
        return;
    };
    let limit = ctx.cfg.max_message_bytes;
    // tungstenite only reads here and writes control frames (pongs, pings, Close)
    // into a buffer the session empties after every call; responses and events never
    // pass through its write buffer.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024);
    session::run(
        ctx,
        Start {
            stream,
            rest,
            config,
            addr,
            peer,
            slot,
        },
        stop,
    )
    .await;
}

/// Half-closes after a plain response and discards what the client still sends for
/// a moment, so closing with unread input does not reset the connection before the
/// client has read the response.
async fn linger(stream: &mut TcpStream) {
    const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
    const MAX_DISCARD: usize = 256 * 1024;
    let _ = stream.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut discarded = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while discarded < MAX_DISCARD {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

async fn route(ctx: &Ctx, head: &Head, addr: SocketAddr, local: SocketAddr) -> Route {
    let port = local.port();
    let host_ok = head.single("host").is_some_and(|h| host_allowed(h, port));
    if !host_ok {
        tracing::info!(peer = %addr, host = ?head.all("host"), path = %head.path, "rejected: bad Host header");
        return Route::Respond(http::error_response(403, "bad Host header"));
    }
    let get = head.method == "GET";
    match head.path.as_str() {
        "/health" if get => Route::Respond(health()),
        "/" if get => Route::Respond(page(STATUS_HTML, "text/html; charset=utf-8")),
        "/status.js" if get => Route::Respond(page(STATUS_JS, "text/javascript; charset=utf-8")),
        "/client.js" if get => Route::Respond(client_js()),
        "/diagnostics" if get => Route::Respond(ctx.silent.diagnostics_response()),
        "/v1" if get => match user_allowed(ctx, addr, local).await {
            Ok(()) => upgrade(ctx, head, addr, port),
            Err(refused) => refused,
        },
        // Disabled, the endpoint does not exist: 404 like any unknown path.
        "/metrics" if get && ctx.cfg.metrics => match user_allowed(ctx, addr, local).await {
            Ok(()) => metrics(ctx, head, addr, port),
            Err(refused) => refused,
        },
        "/health" | "/" | "/status.js" | "/client.js" | "/diagnostics" | "/v1" => {
            Route::Respond(http::error_response(405, "method not allowed"))
        }
        "/metrics" if ctx.cfg.metrics => {
            Route::Respond(http::error_response(405, "method not allowed"))
        }
        _ => Route::Respond(http::error_response(404, "not found")),
    }
}

/// The local trust boundary (docs/security.md): the client's socket must belong to
/// the daemon's own user, an `allowed_users` entry or a member of `allowed_groups`,
/// whatever the client says about itself. Checked before any upgrade or metrics
/// answer; when the owner cannot be determined the client is refused.
async fn user_allowed(ctx: &Ctx, addr: SocketAddr, local: SocketAddr) -> Result<(), Route> {
    let policy = ctx.users.clone();
    // procfs and NSS reads block; keep them off the async workers.
    let decided = tokio::task::spawn_blocking(move || {
        owner::lookup(addr, local).map(|uid| (uid, policy.decide(uid, users::account)))
    })
    .await;
    let refuse = || Route::Respond(http::error_response(403, "OS user not allowed"));
    match decided {
        Ok(Ok((_, Ok(_)))) => Ok(()),
        Ok(Ok((uid, Err(denied)))) => {
            tracing::warn!(uid, peer_port = addr.port(), reason = %denied, "refused: client socket belongs to another OS user");
            Err(refuse())
        }
        Ok(Err(e @ owner::LookupError::ForeignAccount { .. })) => {
            tracing::warn!(peer_port = addr.port(), reason = %e, "refused: client socket belongs to another OS user");
            Err(refuse())
        }
        Ok(Err(e)) => {
            tracing::warn!(peer_port = addr.port(), error = %e, "refused: cannot tell which OS user owns the client socket");
            Err(refuse())
        }
        Err(e) => {
            tracing::warn!(peer_port = addr.port(), error = %e, "refused: socket owner lookup failed");
            Err(refuse())
        }
    }
}

/// `GET /metrics`: Prometheus text. A scraper sends no `Origin`; a request that does
/// is a web page, held to the same origin rules as the WebSocket (no CORS header is
/// sent either way). Native clients are let in whatever `allow_native_clients` says:
/// that switch guards identities, and metrics carry none.
fn metrics(ctx: &Ctx, head: &Head, addr: SocketAddr, port: u16) -> Route {
    let origins = head.all("origin");
    if !origins.is_empty()
        && let Err(refusal) = ctx.policy.check(&origins, port)
    {
        tracing::info!(peer = %addr, origin = ?origins, reason = refusal.as_str(), "rejected metrics request");
        return Route::Respond(http::error_response(403, refusal.as_str()));
    }
    let body = super::metrics::render(&ctx.hub.metrics_sample());
    Route::Respond(http::response(
        200,
        super::metrics::CONTENT_TYPE,
        &[],
        body.as_bytes(),
    ))
}

fn upgrade(ctx: &Ctx, head: &Head, addr: SocketAddr, port: u16) -> Route {
    let origins = head.all("origin");
    let peer = match ctx.policy.check(&origins, port) {
        Ok(p) => p,
        Err(refusal) => {
            tracing::info!(peer = %addr, origin = ?origins, reason = refusal.as_str(), "rejected websocket handshake");
            return Route::Respond(http::error_response(403, refusal.as_str()));
        }
    };
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return Route::Respond(http::response(
            426,
            "text/plain; charset=utf-8",
            &[("Upgrade", "websocket")],
            b"this endpoint speaks WebSocket\n",
        ));
    }
    if head.single("sec-websocket-version") != Some("13") {
        return Route::Respond(http::response(
            426,
            "text/plain; charset=utf-8",
            &[("Sec-WebSocket-Version", "13")],
            b"unsupported WebSocket version\n",
        ));
    }
    let Some(key) = head.single("sec-websocket-key").filter(|k| valid_key(k)) else {
        return Route::Respond(http::error_response(400, "bad Sec-WebSocket-Key"));
    };
    let Some(slot) = ClientSlot::acquire(&ctx.hub, ctx.cfg.max_clients) else {
        tracing::warn!(peer = %addr, origin = ?origins, max = ctx.cfg.max_clients, "rejected websocket handshake: client limit reached");
        return Route::Respond(http::error_response(503, "too many clients"));
    };
    tracing::info!(peer = %addr, origin = ?origins, redacted = peer.redacted(), scopes = ?peer.scopes().names(), "client connected");
    Route::Upgrade {
        response: http::upgrade_response(key),
        peer,
        slot,
    }
}

/// A Sec-WebSocket-Key is base64 of 16 bytes (RFC 6455 §4.1).
fn valid_key(key: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|k| k.len() == 16)
}

/// Public code with no secrets: any origin may import it as a module (module scripts
/// are fetched with CORS). The Host check above still applies.
fn client_js() -> Vec<u8> {
    http::response(
        200,
        "text/javascript; charset=utf-8",
        &[("Access-Control-Allow-Origin", "*")],
        CLIENT_JS.as_bytes(),
    )
}

fn health() -> Vec<u8> {
    let body =
        serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}).to_string();
    http::response(200, "application/json", &[], body.as_bytes())
}

fn page(body: &str, content_type: &str) -> Vec<u8> {
    http::response(
        200,
        content_type,
        &[
            (
                "Content-Security-Policy",
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        ],
        body.as_bytes(),
    )
}
