//! Shutdown signals: SIGTERM and Ctrl-C (SIGINT) start the drain.

use std::future::Future;

/// Installs the SIGTERM and SIGINT handlers now and returns a future that completes when
/// either signal arrives. Installing before the listener is announced means a signal sent
/// right after start-up still drains instead of killing the process.
///
/// Must be called within a tokio runtime.
///
/// # Errors
/// Returns the OS error if a handler cannot be installed.
///
/// # Cancel safety
/// The returned future is cancel safe: dropping it only stops listening for the signals.
#[cfg(unix)]
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    use tokio::signal::unix::{signal, SignalKind};

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
    })
}

/// Returns a future that completes on Ctrl-C.
///
/// # Errors
/// Never fails on this platform; the signature matches the Unix version.
#[cfg(not(unix))]
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!(signal = "ctrl-c", "shutdown requested");
    })
}
