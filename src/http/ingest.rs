//! `POST /ingest`: reads and parses the body, validates each event, queues the valid ones
//! and returns what was accepted.
//!
//! A single event gets 202, 400 or 503. A batch (a JSON array or NDJSON) gets
//! `{"accepted": n, "rejected": m, "errors": [{"index": i, "error": "..."}]}`: 202 when
//! at least one event was queued, 503 with `Retry-After` when valid events could not be
//! queued and none was, otherwise 400. At most [`MAX_LISTED_ERRORS`] errors are listed, and
//! `errors_omitted` counts the rest. "Accepted" always means queued, and every queued event
//! is processed or dead-lettered.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};


use super::body;
use super::response::{self, Body};
use crate::ingest::event::Event;
use crate::ingest::parse::{self, BodyError, BodyShape, ParsedBody};
use crate::metrics::RejectReason;
use crate::queue::PushError;
use crate::AppState;

/// Maximum number of per-item errors listed in a batch response.
pub const MAX_LISTED_ERRORS: usize = 100;

const SINGLE_ACCEPTED: &str = r#"{"accepted":1,"rejected":0,"errors":[]}"#;

/// Handles one `POST /ingest` request.
pub async fn handle(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    // Draining alone does not reject: until the listener closes and the queues are sealed,
    // requests that still arrive are served, and after that `try_push` fails and the request gets 503.
    let (format, bytes) = match body::receive(state, request).await {
        Ok(received) => received,
        Err(rejection) => return rejection,
    };

    let parsed = match parse::parse_body(&bytes, format, &state.parse_limits) {
        Ok(parsed) => parsed,
        Err(error) => return reject_body(state, &error),
    };
    match parsed.shape {
        BodyShape::Single => accept_single(state, parsed),
        BodyShape::Array | BodyShape::Ndjson => accept_batch(state, parsed),
    }
}

fn reject_body(state: &AppState, error: &BodyError) -> Response<Body> {
    let (status, reason) = match error {
        BodyError::TooManyEvents { .. } => (StatusCode::PAYLOAD_TOO_LARGE, RejectReason::TooLarge),
        _ => (StatusCode::BAD_REQUEST, RejectReason::InvalidBody),
    };
    state.metrics.record_rejected(reason, 1);
    response::error(status, error.to_string())
}

fn accept_single(state: &AppState, parsed: ParsedBody) -> Response<Body> {
    let Some(item) = parsed.items.into_iter().next() else {
        state.metrics.record_rejected(RejectReason::InvalidBody, 1);
        return response::error(StatusCode::BAD_REQUEST, "request body holds no event");
    };
    let event = match item {
        Ok(event) => event,
        Err(error) => {
            state.metrics.record_rejected(RejectReason::InvalidEvent, 1);
            return response::error(StatusCode::BAD_REQUEST, error.to_string());
        }
    };
    if let Err(reason) = validate(state, &event) {
        state.metrics.record_rejected(RejectReason::Validator, 1);
        return response::error(StatusCode::BAD_REQUEST, reason);
    }

    match state.queues.try_push_one(event) {
        Ok(()) => {
            state.metrics.record_accepted(1);
            response::json_bytes(StatusCode::ACCEPTED, SINGLE_ACCEPTED)
        }
        Err((error, _event)) => reject_push(state, error, 1),
    }
}

fn reject_push(state: &AppState, error: PushError, count: u64) -> Response<Body> {
    let retry_after = state.config.http.retry_after_secs;
    match error {
        PushError::Full => {
            state.metrics.record_rejected(RejectReason::Overloaded, count);
            response::unavailable(
                "overloaded: every shard queue is full; retry after the Retry-After delay",
                retry_after,
            )
        }
        PushError::Closed => {
            state.metrics.record_rejected(RejectReason::Draining, count);
            response::close_connection(response::unavailable(
                "draining: the service is shutting down; retry against another instance",
                retry_after,
            ))
        }
    }
}

/// Runs the validator chain in order; the first rejection wins.
fn validate(state: &AppState, event: &Event) -> Result<(), String> {
    for (name, validator) in &state.validators {
        validator
            .validate(event)
            .map_err(|reason| format!("rejected by {name}: {reason}"))?;
    }
    Ok(())
}

/// Per-item errors of a batch response, capped at [`MAX_LISTED_ERRORS`].
struct ItemErrors {
    listed: Vec<ItemErrorEntry>,
    total: usize,
}

impl ItemErrors {
    fn push(&mut self, index: usize, message: String) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(ItemErrorEntry { index, error: message });
        }
    }
}

fn accept_batch(state: &AppState, parsed: ParsedBody) -> Response<Body> {
    let mut errors = ItemErrors {
        listed: Vec::new(),
        total: 0,
    };
    let mut valid = Vec::with_capacity(parsed.items.len());
    let mut valid_indexes = Vec::with_capacity(parsed.items.len());
    let (mut invalid, mut rejected_by_validator) = (0u64, 0u64);

    for (index, item) in parsed.items.into_iter().enumerate() {
        match item {
            Ok(event) => match validate(state, &event) {
                Ok(()) => {
                    valid.push(event);
                    valid_indexes.push(index);
                }
                Err(reason) => {
                    rejected_by_validator += 1;
                    errors.push(index, reason);
                }
            },
            Err(error) => {
                invalid += 1;
                errors.push(index, error.to_string());
            }
        }
    }
    state.metrics.record_rejected(RejectReason::InvalidEvent, invalid);
    state.metrics.record_rejected(RejectReason::Validator, rejected_by_validator);

    let valid_count = valid.len();
    let (accepted, push_error) = match state.queues.try_push_prefix(valid) {
        Ok(queued) if queued < valid_count => (queued, Some(PushError::Full)),
        Ok(queued) => (queued, None),
        Err(error) => (0, Some(error)),
    };
    state.metrics.record_accepted(accepted as u64);

    if let Some(push_error) = push_error {
        let refused = valid_count - accepted;
        let reason = match push_error {
            PushError::Full => RejectReason::Overloaded,
            PushError::Closed => RejectReason::Draining,
        };
        state.metrics.record_rejected(reason, refused as u64);
        for &index in &valid_indexes[accepted..] {
            errors.push(index, format!("not queued: {push_error}; retry this event later"));
        }
        if accepted == 0 {
            let mut answer = reject_push(state, push_error, 0);
            *answer.body_mut() = batch_body(0, &errors);
            return answer;
        }
    }

    let status = if accepted > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut answer = response::json_bytes(status, "");
    *answer.body_mut() = batch_body(accepted, &errors);
    answer
}

/// One listed error of a batch response, serialised as `{"index": i, "error": "..."}`.
#[derive(serde::Serialize)]
struct ItemErrorEntry {
    index: usize,
    error: String,
}

/// The batch response body. Structs rather than `json!`, whose map sorts the keys, so the
/// fields come in the documented order, as in the single-event response.
#[derive(serde::Serialize)]
struct BatchResponse<'a> {
    accepted: usize,
    rejected: usize,
    errors: &'a [ItemErrorEntry],
    #[serde(skip_serializing_if = "Option::is_none")]
    errors_omitted: Option<usize>,
}

fn batch_body(accepted: usize, errors: &ItemErrors) -> Body {
    let omitted = errors.total - errors.listed.len();
    let response_body = BatchResponse {
        accepted,
        rejected: errors.total,
        errors: &errors.listed,
        errors_omitted: (omitted > 0).then_some(omitted),
    };
    let text = serde_json::to_string(&response_body).expect("a batch response contains only numbers and strings");
    Body::new(text.into())
}
