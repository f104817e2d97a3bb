//! Request body handling for `/ingest`: which Content-Type and Content-Encoding are
//! accepted, reading the body under the size and time limits, and decoding it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Request, Response, StatusCode};

use super::response::{self, Body};
use crate::ingest::decode::{self, DecodeError, SUPPORTED_ENCODINGS};
use crate::metrics::RejectReason;
use crate::AppState;

use crate::ingest::decode::ContentCoding;
use crate::ingest::parse::BodyFormat;

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
    if let Some(length) = declared_length_over(request.headers(), limit) {
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
        return Ok((format, bytes));
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
pub fn declared_length_over(headers: &HeaderMap, limit: usize) -> Option<u64> {
    let length: u64 = headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()?;
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
pub async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, BodyReadError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(BodyReadError::TooLarge { limit }),
        Err(error) => Err(BodyReadError::Read(error.to_string())),
    }
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
    fn declared_length_is_compared_with_limit() {
        assert_eq!(declared_length_over(&headers(CONTENT_LENGTH, "11"), 10), Some(11));
        assert_eq!(declared_length_over(&headers(CONTENT_LENGTH, "10"), 10), None);
        assert_eq!(declared_length_over(&HeaderMap::new(), 10), None);
    }
}
