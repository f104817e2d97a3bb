//! One accepted connection, from its first bytes to its end: it is served on the runtime
//! threads, or on the reader thread when it opens with a read ([`super::readers`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::readers::{self, FirstBytes};
use super::router;
use crate::metrics::ConnectionThread;
use crate::AppState;

/// Settings and handles every connection uses, cloned once per accepted connection.
#[derive(Clone)]
pub struct Connections {
    /// hyper's connection settings.
    pub builder: http1::Builder,
    /// The service's shared state.
    pub state: Arc<AppState>,
    /// Runtime of the reader thread.
    pub reader_runtime: Handle,
    /// How long a new connection may stay silent, the same as hyper's header read timeout.
    pub first_bytes_timeout: Duration,
    /// Changes when the server stops accepting.
    pub closing: watch::Receiver<()>,
}

/// The resources that end with a connection: its slot under `http.max_connections` and its
/// registration with the graceful shutdown.
pub struct Slot {
    /// The client's address, for logs.
    pub peer: SocketAddr,
    /// Released when the connection ends.
    pub permit: OwnedSemaphorePermit,
    /// Lets shutdown close the connection after its current request.
    pub watcher: Watcher,
}

impl Connections {
    /// Waits for the connection's first bytes, then serves it where it belongs.
    pub async fn handle(mut self, stream: TcpStream, slot: Slot) {
        let first = tokio::select! {
            first = readers::first_bytes(&stream, self.first_bytes_timeout) => first,
            // A connection that has sent nothing is idle, and shutdown closes idle connections.
            _ = self.closing.changed() => return,
        };
        match first {
            // hyper would close it without a response too, because no request arrived.
            FirstBytes::Nothing => {}
            FirstBytes::Read => {
                self.state.metrics.record_connection(ConnectionThread::Reader);
                self.move_to_readers(stream, slot);
            }
            FirstBytes::Other => {
                self.state.metrics.record_connection(ConnectionThread::Runtime);
                self.serve(stream, slot).await;
            }
        }
    }

    fn move_to_readers(self, stream: TcpStream, slot: Slot) {
        // The socket leaves this runtime's reactor and registers with the reader thread's.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(peer = %slot.peer, error = %error, "cannot move a connection to the reader thread, closing it");
                return;
            }
        };
        let runtime = self.reader_runtime.clone();
        runtime.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => self.serve(stream, slot).await,
                Err(error) => {
                    tracing::debug!(peer = %slot.peer, error = %error, "the reader thread cannot take a connection, closing it");
                }
            }
        });
    }

    async fn serve(self, stream: TcpStream, slot: Slot) {
        let state = self.state;
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(router::route(&state, request).await) }
        });
        let connection = slot.watcher.watch(self.builder.serve_connection(TokioIo::new(stream), service));
        if let Err(error) = connection.await {
            tracing::debug!(peer = %slot.peer, error = %error, "connection ended with an error");
        }
        drop(slot.permit);
    }
}
