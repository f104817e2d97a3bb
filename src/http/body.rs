//! Request body handling for `/ingest`: which Content-Type and Content-Encoding are
//! accepted, and reading the body under the size limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::HeaderMap;

use crate::ingest::parse::BodyFormat;

/// Content types `/ingest` accepts, for the 415 message.
pub const ACCEPTED_CONTENT_TYPES: &str = "application/json, application/x-ndjson";

/// Content encodings `/ingest` accepts, for the 415 message.
pub const ACCEPTED_ENCODINGS: &str = "identity";

/// Why a body was not read.
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

/// Checks Content-Encoding; only `identity` (or none) is accepted.
///
/// # Errors
/// Returns the rejected encoding, for the 415 message.
pub fn check_encoding(headers: &HeaderMap) -> Result<(), String> {
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value.to_str().map_err(|_| "(not valid text)".to_owned())?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("identity") {
                return Err(coding.chars().take(100).collect());
            }
        }
    }
    Ok(())
}

/// Returns the declared Content-Length when it is over `limit`, so the request can be
/// answered 413 before its body is read (and before `100 Continue` is sent).
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
    fn encoding_accepts_only_identity() {
        assert!(check_encoding(&HeaderMap::new()).is_ok());
        assert!(check_encoding(&headers(CONTENT_ENCODING, "identity")).is_ok());
        assert_eq!(check_encoding(&headers(CONTENT_ENCODING, "br")), Err("br".to_owned()));
    }

    #[test]
    fn declared_length_is_compared_with_limit() {
        assert_eq!(declared_length_over(&headers(CONTENT_LENGTH, "11"), 10), Some(11));
        assert_eq!(declared_length_over(&headers(CONTENT_LENGTH, "10"), 10), None);
        assert_eq!(declared_length_over(&HeaderMap::new(), 10), None);
    }
}
