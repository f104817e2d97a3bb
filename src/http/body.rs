//! Request body handling for `/ingest`: which Content-Type and Content-Encoding are
//! accepted, reading the body under the size and time limits, and decoding it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming, SizeHint};
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{HeaderMap, Request, Response, StatusCode};

use super::response::{self, Body};
use crate::ingest::decode::{self, DecodeError, SUPPORTED_ENCODINGS};
use crate::metrics::RejectReason;
use crate::AppState;

use crate::ingest::decode::ContentCoding;
use crate::ingest::parse::BodyFormat;

/// Largest body that [`detach`] copies out of the connection's read buffer.
const DETACH_MAX_BYTES: usize = 64 * 1024;

/// Content types `/ingest` accepts, for the 415 message.
pub const ACCEPTED_CONTENT_TYPES: &str = "application/json, application/x-ndjson";

/// Reason a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyReadError {
    /// The body exceeded `limit` bytes.
    #[error("request body is larger than the {limit} bytes allowed by http.max_body_bytes; split it into smaller requests")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The connection failed or the client stopped sending.
    #[error("reading the request body failed: {0}")]
    Read(String),
}

/// Checks the request's headers, reads its body and decodes it. Returns the body format
/// and the decoded bytes, or the finished rejection.
///
/// Every rejection made before the body was read to its end closes the connection, so
/// unread body bytes are never taken for the next request.
pub async fn receive(state: &AppState, request: Request<Incoming>) -> Result<(BodyFormat, Bytes), Response<Body>> {
    let reject = |reason: RejectReason, status: StatusCode, message: String| {
        state.metrics.record_rejected(reason, 1);
        response::close_connection(response::error(status, message))
    };

    let format = body_format(request.headers()).map_err(|media_type| {
        reject(
            RejectReason::UnsupportedMediaType,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type `{media_type}`; send {ACCEPTED_CONTENT_TYPES}"),
        )
    })?;
    let codings = content_codings(request.headers()).map_err(|coding| {
        reject(
            RejectReason::UnsupportedMediaType,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding `{coding}`; supported encodings: {SUPPORTED_ENCODINGS}"),
        )
    })?;

    let http = &state.config.http;
    let limit = http.max_body_bytes;
    if let Some(length) = declared_length_over(&request.body().size_hint(), limit) {
        return Err(reject(
            RejectReason::TooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Content-Length {length} is over the {limit} bytes allowed by http.max_body_bytes; split the events into smaller requests"),
        ));
    }

    let timeout = Duration::from_millis(http.body_read_timeout_ms);
    let bytes = match read_with_timeout(read_limited(request.into_body(), limit), timeout).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error @ BodyReadError::TooLarge { .. })) => {
            return Err(reject(RejectReason::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, error.to_string()));
        }
        Ok(Err(error @ BodyReadError::Read(_))) => {
            return Err(reject(RejectReason::InvalidBody, StatusCode::BAD_REQUEST, error.to_string()));
        }
        Err(_) => {
            return Err(reject(
                RejectReason::InvalidBody,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms (http.body_read_timeout_ms); send the body faster or in smaller requests",
                    timeout.as_millis()
                ),
            ));
        }
    };
    if codings.is_empty() {
        return Ok((format, detach(bytes)));
    }

    // Decoding up to max_decompressed_bytes takes milliseconds of CPU, too long for a
    // runtime thread that serves other connections.
    let decompressed_limit = http.max_decompressed_bytes;
    let decoded = tokio::task::spawn_blocking(move || decode::decode(bytes, &codings, decompressed_limit)).await;
    match decoded {
        Ok(Ok(bytes)) => Ok((format, bytes)),
        Ok(Err(error @ DecodeError::TooLarge { .. })) => {
            state.metrics.record_rejected(RejectReason::TooLarge, 1);
            Err(response::error(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()))
        }
        Ok(Err(error @ DecodeError::Corrupt { .. })) => {
            state.metrics.record_rejected(RejectReason::InvalidBody, 1);
            Err(response::error(StatusCode::BAD_REQUEST, error.to_string()))
        }
        Err(join_error) => {
            tracing::error!(error = %join_error, "body decoding task failed");
            state.metrics.record_rejected(RejectReason::InvalidBody, 1);
            Err(response::error(StatusCode::BAD_REQUEST, "body decoding failed; retry the request"))
        }
    }
}

/// Returns a small body in an allocation of its own.
///
/// hyper hands out a body that arrived in one read as a slice of the connection's read
/// buffer. Queued events keep slices of the body until a worker has processed them. While one
/// lives, the whole buffer of several kilobytes stays allocated, so a queue of small events
/// would pin many times its own size. A large body fills most of the buffer it sits in, so
/// it is kept as it is.
fn detach(bytes: Bytes) -> Bytes {
    if bytes.len() <= DETACH_MAX_BYTES && !bytes.is_unique() {
        Bytes::copy_from_slice(&bytes)
    } else {
        bytes
    }
}

/// Awaits `read`, giving up after `timeout`. A small body usually arrives with its headers,
/// so the first poll finishes it; only a body still in flight then gets a timer, which spares
/// the common case a clock reading and a timer registration.
async fn read_with_timeout<F: std::future::Future>(
    read: F,
    timeout: Duration,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut read = std::pin::pin!(read);
    if let std::task::Poll::Ready(output) = std::future::poll_fn(|context| std::task::Poll::Ready(read.as_mut().poll(context))).await {
        return Ok(output);
    }
    tokio::time::timeout(timeout, read).await
}

/// Returns the body format for the request's Content-Type: JSON when absent or
/// `application/json`, NDJSON for `application/x-ndjson`. Parameters and case are ignored.
///
/// # Errors
/// Returns the rejected media type, for the 415 message.
pub fn body_format(headers: &HeaderMap) -> Result<BodyFormat, String> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(BodyFormat::Json);
    };
    // Most clients send exactly this, so the exact comparison skips the general parse below.
    if value.as_bytes() == b"application/json" {
        return Ok(BodyFormat::Json);
    }
    let Ok(value) = value.to_str() else {
        return Err("(not valid text)".to_owned());
    };
    let media_type = value.split(';').next().unwrap_or("").trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(BodyFormat::Json)
    } else if media_type.eq_ignore_ascii_case("application/x-ndjson") {
        Ok(BodyFormat::Ndjson)
    } else {
        Err(media_type.chars().take(100).collect())
    }
}

/// Returns the codings listed in Content-Encoding, in the order they were applied;
/// `identity` is skipped.
///
/// # Errors
/// Returns the first unsupported coding, for the 415 message.
pub fn content_codings(headers: &HeaderMap) -> Result<Vec<ContentCoding>, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| "(not valid text)".to_owned())?;
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            if let Some(coding) = ContentCoding::from_name(name)? {
                codings.push(coding);
            }
        }
    }
    Ok(codings)
}

/// Returns the declared Content-Length when it is over `limit`, so the request can get
/// 413 before its body is read (and before `100 Continue` is sent).
///
/// hyper has already parsed and checked Content-Length and reports it as the body's exact
/// size hint; a chunked body has none.
pub fn declared_length_over(size_hint: &SizeHint, limit: usize) -> Option<u64> {
    let length = size_hint.exact()?;
    (length > limit as u64).then_some(length)
}

/// Reads the whole body, stopping as soon as it passes `limit` bytes (chunked bodies too).
///
/// # Errors
/// [`BodyReadError::TooLarge`] past the limit, [`BodyReadError::Read`] when the client
/// disconnects or sends a malformed body.
///
/// # Cancel safety
/// Not cancel safe: bytes read before cancellation are lost with the request.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, BodyReadError> {
    // A body that arrives in one frame, as small bodies do, is returned as that frame. Only a
    // body in several frames is copied into one buffer.
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut total = 0_usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyReadError::Read(error.to_string()))?;
        // Trailers carry no body bytes.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(BodyReadError::TooLarge { limit });
        }
        if let Some(buffer) = joined.as_mut() {
            buffer.extend_from_slice(&data);
        } else if let Some(earlier) = first.take() {
            // hyper's hint is the rest of a Content-Length body; it was checked against the
            // limit above, and a chunked body has a hint of 0.
            let rest = usize::try_from(body.size_hint().lower()).unwrap_or(limit);
            let mut buffer = BytesMut::with_capacity(total.saturating_add(rest).min(limit));
            buffer.extend_from_slice(&earlier);
            buffer.extend_from_slice(&data);
            joined = Some(buffer);
        } else {
            first = Some(data);
        }
    }
    Ok(match (joined, first) {
        (Some(buffer), _) => buffer.freeze(),
        (None, Some(only)) => only,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(name: hyper::header::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn content_type_ignores_case_and_parameters() {
        assert_eq!(body_format(&HeaderMap::new()), Ok(BodyFormat::Json));
        assert_eq!(body_format(&headers(CONTENT_TYPE, "Application/JSON; charset=utf-8")), Ok(BodyFormat::Json));
        assert_eq!(body_format(&headers(CONTENT_TYPE, "application/x-ndjson")), Ok(BodyFormat::Ndjson));
        assert_eq!(body_format(&headers(CONTENT_TYPE, "text/plain")), Err("text/plain".to_owned()));
    }

    #[test]
    fn content_codings_skip_identity_and_reject_unknown() {
        assert_eq!(content_codings(&HeaderMap::new()), Ok(vec![]));
        assert_eq!(content_codings(&headers(CONTENT_ENCODING, "identity")), Ok(vec![]));
        assert_eq!(
            content_codings(&headers(CONTENT_ENCODING, "gzip, zstd")),
            Ok(vec![ContentCoding::Gzip, ContentCoding::Zstd])
        );
        assert_eq!(content_codings(&headers(CONTENT_ENCODING, "br")), Err("br".to_owned()));
    }

    #[test]
    fn detach_copies_small_shared_bodies() {
        let buffer = Bytes::from(vec![b'x'; 100]);
        let body = buffer.slice(10..20);
        let detached = detach(body.clone());
        assert_eq!(detached, body);
        assert!(detached.is_unique(), "the copy shares nothing with the read buffer");
    }

    #[test]
    fn detach_keeps_unique_and_large_bodies() {
        let unique = Bytes::from(vec![b'x'; 100]);
        let pointer = unique.as_ptr();
        assert_eq!(detach(unique).as_ptr(), pointer);

        let buffer = Bytes::from(vec![b'x'; DETACH_MAX_BYTES + 2]);
        let large = buffer.slice(1..);
        let pointer = large.as_ptr();
        assert_eq!(detach(large).as_ptr(), pointer);
    }

    #[test]
    fn declared_length_is_compared_with_limit() {
        assert_eq!(declared_length_over(&SizeHint::with_exact(11), 10), Some(11));
        assert_eq!(declared_length_over(&SizeHint::with_exact(10), 10), None);
        assert_eq!(declared_length_over(&SizeHint::new(), 10), None);
    }
}
