//! The HTTP ceiling: a `hyper` server on the same runtime and connection settings as
//! Telemetron that reads each request body in full and answers 202 with a body of the same
//! size as Telemetron's, doing no other work. Benchmarks compare Telemetron's single-event
//! path against it, so the comparison isolates what parsing, validation, queueing and
//! metrics cost on top of HTTP itself.
//!
//! Run: `PORT=8090 cargo run --release --example http_ceiling` (listens on 127.0.0.1 only).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// Same body as Telemetron's response to one accepted event, so responses are equal in size.
const ACCEPTED: &str = r#"{"accepted":1,"rejected":0,"errors":[]}"#;
/// Same default as Telemetron's `http.max_body_bytes`.
const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn answer(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let read = Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await;
    let (status, body) = match read {
        Ok(_) => (StatusCode::ACCEPTED, ACCEPTED),
        Err(_) => (StatusCode::PAYLOAD_TOO_LARGE, r#"{"error":"body too large"}"#),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("PORT `{text}` is not a port number"))
        })?,
        Err(_) => 8090,
    };
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await?;
        eprintln!("http_ceiling listening on {address}");
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(std::time::Duration::from_secs(10))
            .keep_alive(true);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service_fn(answer));
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    })
}
