//! Wires backends, the hub and the server together under one shutdown tree.
//!
//! Order matters: bind the loopback listeners first (a port clash is reported before
//! any hardware is touched), print the ready line, start the backends, serve until
//! the shutdown future resolves, then stop the server (clients get 1001) and join
//! every backend thread.

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::bus::{Hub, PcscStatus};
use crate::config::Config;
use crate::transport::{self, Backend};

mod shutdown;
pub use shutdown::{on_shutdown_signal, shutdown_signal};

/// Which readers the daemon serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hardware: PC/SC and NFC as configured.
    Run,
    /// Simulated readers only, no hardware and no pcscd.
    Demo,
}

/// A fatal daemon error (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The port could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another vitale-bridge running? choose another port with --listen 127.0.0.1:PORT)"
    )]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `[::1]` on our port is held by someone else. Fatal: browsers try `[::1]` first
    /// for `localhost`, so whoever holds it would be `localhost:PORT` to them.
    #[error(
        "cannot listen on {addr}: {source}; another process holds it, and browsers resolving localhost would reach that process instead of vitale-bridge. Stop the other process, or choose a port free on both 127.0.0.1 and [::1] with --listen 127.0.0.1:PORT"
    )]
    BindV6 {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("server failed: {0}")]
    Server(#[source] std::io::Error),
    /// Writing the ready line failed (stdout closed).
    #[error("cannot write the ready line: {0}")]
    Ready(#[source] std::io::Error),
}

/// Binds `127.0.0.1:PORT` and `[::1]` on the same port. Port 0 picks a free port for
/// IPv4 and reuses it for IPv6 (another one is tried if that is taken on `[::1]`).
/// Only loopback addresses are ever bound, whatever `listen` holds (the config
/// refuses others anyway).
///
/// `[::1]` may be missing only because this host has no IPv6 loopback; any other
/// failure there is fatal ([`DaemonError::BindV6`]).
pub async fn bind(listen: SocketAddr) -> Result<Vec<TcpListener>, DaemonError> {
    const ATTEMPTS_FOR_ANY_PORT: usize = 8;
    let attempts = if listen.port() == 0 {
        ATTEMPTS_FOR_ANY_PORT
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        match bind_pair(listen.port()).await {
            Err(DaemonError::BindV6 { addr, source })
                if listen.port() == 0 && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                last = Some(DaemonError::BindV6 { addr, source });
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| DaemonError::Server(std::io::ErrorKind::AddrInUse.into())))
}

async fn bind_pair(port: u16) -> Result<Vec<TcpListener>, DaemonError> {
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let first = TcpListener::bind(v4)
        .await
        .map_err(|source| DaemonError::Bind { addr: v4, source })?;
    let port = first
        .local_addr()
        .map_err(|source| DaemonError::Bind { addr: v4, source })?
        .port();
    let mut listeners = vec![first];
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    match TcpListener::bind(v6).await {
        Ok(l) => listeners.push(l),
        Err(e) if ipv6_unavailable(&e) => {
            tracing::info!(addr = %v6, error = %e, "no IPv6 loopback on this host; serving 127.0.0.1 only");
        }
        Err(source) => return Err(DaemonError::BindV6 { addr: v6, source }),
    }
    Ok(listeners)
}

/// The errors that mean "this host has no IPv6 loopback" rather than "someone else
/// has the port": IPv6 disabled on `lo` (EADDRNOTAVAIL) or absent from the kernel
/// (EAFNOSUPPORT).
fn ipv6_unavailable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::AddrNotAvailable || e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// Raises the soft limit on open descriptors to the hard limit, so that sockets
/// held open by a hostile local process exhaust the handshake slots (which evict the
/// oldest) before they exhaust descriptors (which would stop `accept`).
pub fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            {
                Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-file limit"),
                Err(e) => {
                    tracing::warn!(soft, hard, error = %e, "cannot raise the open-file limit")
                }
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
        }
    }
}

/// The port the first listener is bound to.
pub fn port(listeners: &[TcpListener]) -> u16 {
    listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port())
}

/// Makes the process non-dumpable: no core files and no ptrace by other users'
/// processes, because its memory holds health data (product.md §5).
pub fn harden_process() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot make the process non-dumpable");
    }
}

/// Starts the backends `mode` and `cfg` ask for. Blocking: call from a blocking
/// context.
pub fn start_backends(hub: &Arc<Hub>, cfg: &Config, mode: Mode) -> Vec<Box<dyn Backend>> {
    let mut backends = Vec::new();
    match mode {
        Mode::Demo => {
            backends.push(transport::sim::spawn_demo(
                hub.clone(),
                transport::sim::DemoOptions {
                    interval: Duration::from_millis(cfg.demo.interval_ms.get()),
                    apcv_aid: cfg.apcv_aid(),
                },
            ));
        }
        Mode::Run => {
            if cfg.pcsc.enabled {
                backends.push(transport::pcsc::spawn(hub.clone(), cfg.pcsc_options()));
            }
            if cfg.nfc.enabled {
                backends.push(transport::nfc::spawn(hub.clone(), cfg.nfc_options()));
            }
        }
    }
    for b in &backends {
        tracing::info!(backend = b.name(), "backend started");
    }
    backends
}

/// Stops every backend (cancels blocking calls, joins threads).
pub fn stop_backends(backends: Vec<Box<dyn Backend>>) {
    for b in backends {
        let name = b.name();
        b.shutdown();
        tracing::info!(backend = name, "backend stopped");
    }
}

/// The hub's initial PC/SC status for `mode`.
pub fn initial_pcsc_status(cfg: &Config, mode: Mode) -> PcscStatus {
    match mode {
        Mode::Run if cfg.pcsc.enabled => PcscStatus::Down,
        _ => PcscStatus::Disabled,
    }
}

/// Runs the daemon until `shutdown` resolves. Prints the ready line on stdout once
/// listening.
pub async fn run(
    cfg: Config,
    mode: Mode,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    harden_process();
    raise_fd_limit();
    let listeners = bind(*cfg.listen).await?;
    let port = port(&listeners);
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on ws://127.0.0.1:{port}/v1").map_err(DaemonError::Ready)?;
        out.flush().map_err(DaemonError::Ready)?;
    }
    tracing::info!(
        port,
        ipv6 = listeners.len() > 1,
        ?mode,
        origins = cfg.allowed_origins.len(),
        "listening"
    );

    let hub = Hub::new(initial_pcsc_status(&cfg, mode));
    let backends = {
        let hub = hub.clone();
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || start_backends(&hub, &cfg, mode))
            .await
            .unwrap_or_default()
    };

    let served = crate::server::serve(listeners, hub, cfg.server(), shutdown).await;
    tracing::info!("server stopped; stopping backends");
    // Joining backend threads blocks; keep it off the async workers.
    let _ = tokio::task::spawn_blocking(move || stop_backends(backends)).await;
    served.map_err(DaemonError::Server)
}
