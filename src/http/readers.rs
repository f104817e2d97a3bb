//! A thread of its own for connections that read: health checks, Prometheus scrapes and
//! statistics polls.
//!
//! Under full ingestion every runtime thread has dozens of ingest connections ready to run.
//! A `GET /stats/{id}` polled 1,000 times a second queued behind them: on two cores its
//! median was 0.3 ms and its p99 2.2-2.8 ms, although the handler takes microseconds. So a
//! connection whose first request starts with `GET ` or `HEAD ` moves to a single-threaded
//! runtime on its own OS thread. There the same poll's median is 0.06-0.09 ms and its p99
//! 1.8-2.3 ms, near the 1.7-2.0 ms the poller measures against `examples/http_ceiling.rs`
//! under the same load (`loadtest/scenarios.py stats`).
//!
//! The choice is made once per connection, not per request: a reader connection that later
//! posts events is served correctly, on the reader thread.
//!
//! The thread also requests the shortest time slice the kernel grants, 0.1 ms
//! ([`crate::time_slice`]), so it gets a core sooner when a read wakes it. In five alternating
//! 8 s rounds under full single-event load, the poll p99 was 1.87-2.24 ms without it and
//! 1.64-1.88 ms with it. Ingestion ran at a median of 126,700 and 130,800 requests/s, within
//! the spread of the rounds.

// NOTE: a client whose many connections each open with a GET and then carry its events shares
// this one thread among all of them. hyper keeps a connection until it closes, so it cannot
// move back to the runtime threads. Closing it after its first POST would move the client, but
// would leave requests pipelined behind that POST unanswered. The README therefore advises
// event senders not to open their connections with a GET.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::time_slice;

/// The reader thread and the handle that spawns connections onto it.
pub struct ReaderThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ReaderThread {
    /// Starts the thread and its runtime.
    ///
    /// # Errors
    /// Returns the OS error if the runtime or the thread cannot be created.
    pub fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("telemetron-read".to_owned())
            .spawn(move || {
                match time_slice::set_current_thread_slice(time_slice::MIN_SLICE) {
                    Ok(()) => {}
                    // Older kernels and other systems have no custom slices, so there is nothing to fix.
                    Err(error) if error.kind() == io::ErrorKind::Unsupported => {
                        tracing::debug!(error = %error, "the reader thread keeps the default time slice");
                    }
                    Err(error) => tracing::warn!(
                        error = %error,
                        "setting the reader thread's time slice failed, so statistics reads wait longer for a core under load"
                    ),
                }

                // Connections still open when the runtime drops are closed with it; by then
                // the graceful shutdown has given them their time.
                runtime.block_on(async move {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Returns the runtime that serves reader connections.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for ReaderThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the reader thread panicked");
            }
        }
    }
}

/// The outcome of peeking at a new connection's first bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// A `GET` or `HEAD` request line begins: the reader thread serves it.
    Read,
    /// Anything else: the runtime threads serve it, and hyper responds to what it cannot parse.
    Other,
    /// The client closed, failed or stayed silent for the whole timeout.
    Nothing,
}

/// Waits up to `timeout` for the connection's first bytes without consuming them.
pub async fn first_bytes(stream: &TcpStream, timeout: Duration) -> FirstBytes {
    let mut first = [0u8; 5];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(0) | Err(_)) | Err(_) => FirstBytes::Nothing,
        Ok(Ok(read)) if is_read_request(&first[..read]) => FirstBytes::Read,
        Ok(Ok(_)) => FirstBytes::Other,
    }
}

/// Returns whether `first` begins a `GET` or `HEAD` request line. A method split across two TCP
/// segments counts as not a read, which only costs that connection its separate thread.
fn is_read_request(first: &[u8]) -> bool {
    first.starts_with(b"GET ") || first.starts_with(b"HEAD ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_read_methods_only() {
        assert!(is_read_request(b"GET /"));
        assert!(is_read_request(b"HEAD "));
        assert!(!is_read_request(b"POST "));
        assert!(!is_read_request(b"GE"));
        assert!(!is_read_request(b"get /"));
        assert!(!is_read_request(b""));
    }
}
