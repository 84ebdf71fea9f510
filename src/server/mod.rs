//! The local WebSocket/HTTP server: handshake rules, JSON-RPC 2.0, limits, `/health`,
//! the status page.
//!
//! OWNER: server helper. Skeleton only: the signatures below are what the daemon calls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Hub;

/// Server settings (product.md §3–4.5).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Exact allowed origins (`https://app.example`), compared normalised.
    pub allowed_origins: Vec<String>,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_native_clients: true,
            max_clients: 32,
            max_message_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(5),
            queue_len: 1024,
            rate_per_sec: 50,
            ping_interval: Duration::from_secs(30),
        }
    }
}

/// Serves WebSocket and HTTP on the given loopback listeners until `shutdown`
/// resolves, then closes every client with 1001 and returns.
pub async fn serve(
    listeners: Vec<tokio::net::TcpListener>,
    hub: Arc<Hub>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let _ = (listeners, hub, cfg);
    shutdown.await;
    Ok(())
}
