//! What stops the daemon gracefully, per OS (the one place for that concern).
//!
//! Unix: SIGINT, SIGTERM. Windows: every console control event — Ctrl-C,
//! Ctrl-Break, the console window closed, the user logging off, the machine
//! shutting down. For the last three Windows ends the process once the handler
//! returns; tokio's handler does not return for them, so the daemon gets the
//! system's grace period (about 5 s for a closed console) to close its clients with
//! 1001 and join its threads. A Windows service stop arrives through the service
//! control handler instead and is merged in by the service runner.
//!
//! The handlers are installed when [`shutdown_signal`] is called, not when its
//! future is first polled, so an event that arrives right after the ready line is
//! not lost.

use std::future::Future;

/// Resolves on the first stop request the OS delivers to a console process.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

/// Resolves on the first stop request the OS delivers to a console process.
#[cfg(windows)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::windows;
    let mut c = windows::ctrl_c()?;
    let mut brk = windows::ctrl_break()?;
    let mut close = windows::ctrl_close()?;
    let mut logoff = windows::ctrl_logoff()?;
    let mut down = windows::ctrl_shutdown()?;
    Ok(async move {
        let name = tokio::select! {
            _ = c.recv() => "CTRL_C_EVENT",
            _ = brk.recv() => "CTRL_BREAK_EVENT",
            _ = close.recv() => "CTRL_CLOSE_EVENT",
            _ = logoff.recv() => "CTRL_LOGOFF_EVENT",
            _ = down.recv() => "CTRL_SHUTDOWN_EVENT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

/// Elsewhere: Ctrl-C as tokio knows it.
#[cfg(not(any(unix, windows)))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

/// Calls `f` on the first stop request, for a program that blocks instead of running
/// on tokio (`sim vpcd`): the same requests as the daemon's, watched by a thread of
/// its own. The handlers are installed before this returns.
pub fn on_shutdown_signal(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let signal = rt.block_on(async { shutdown_signal() })?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            rt.block_on(signal);
            f();
        })?;
    Ok(())
}
