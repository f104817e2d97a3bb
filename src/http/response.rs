//! The status table: every answer the HTTP layer gives is built here, so codes, headers and
//! JSON error bodies stay consistent.
//!
//! | status | when | extra headers |
//! | --- | --- | --- |
//! | 200 | stats, metrics, health | |
//! | 202 | events accepted | |
//! | 400 | bad JSON, bad field, rejected by a validator, bad source id | |
//! | 404 | unknown path or source | |
//! | 405 | wrong method | `Allow` |
//! | 413 | body, decompressed body or batch over its limit | |
//! | 415 | unsupported Content-Type or Content-Encoding | |
//! | 503 | every shard full, or draining | `Retry-After` |
//!
//! Error bodies are always `{"error": "..."}`, or the batch result for batch requests.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// The body type of every response.
pub type Body = Full<Bytes>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Builds a JSON response from already-encoded bytes.
pub fn json_bytes(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// Builds a JSON response from a value.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(status, value.to_string())
}

/// Builds `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// 404 for a path that is not served.
pub fn not_found_path(path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {path}; endpoints are POST /ingest, GET /stats, GET /stats/{{source_id}}, GET /metrics, GET /healthz, GET /readyz"),
    )
}

/// 405 with the `Allow` header listing the methods the path takes.
pub fn method_not_allowed(method: &hyper::Method, path: &str, allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {path}; use {allow}"),
    );
    response.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// 503 with `Retry-After`.
pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// Marks a response as the last one on its connection. Used when the request body was not
/// read to its end, so that no unread bytes are ever taken for the next request.
pub fn close_connection(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 200 with a plain-text body.
pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
