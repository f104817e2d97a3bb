//! `GET /healthz` (the process runs) and `GET /readyz` (it takes traffic now).

use hyper::{Response, StatusCode};

use super::response::{self, Body};
use crate::AppState;

/// Share of total queue capacity above which `/readyz` reports not ready, so load
/// balancers steer traffic away before clients see 503s from `/ingest`.
const READY_HIGH_WATER: f64 = 0.9;

/// Handles `GET /healthz`: 200 for as long as the process serves HTTP.
pub fn healthz() -> Response<Body> {
    response::json_bytes(StatusCode::OK, r#"{"status":"ok"}"#)
}

/// Handles `GET /readyz`: 200 while accepting, 503 while draining or while the queues are
/// above their high-water mark.
pub fn readyz(state: &AppState) -> Response<Body> {
    let retry_after = state.config.http.retry_after_secs;
    if state.is_draining() {
        return response::unavailable("draining: the service is shutting down", retry_after);
    }

    let queues = &state.queues;
    let capacity = (queues.capacity_per_shard() * queues.shard_count()) as f64;
    let depth: usize = (0..queues.shard_count()).map(|shard| queues.depth(shard)).sum();
    if depth as f64 >= capacity * READY_HIGH_WATER {
        return response::unavailable(
            format!("overloaded: {depth} of {capacity} queued events"),
            retry_after,
        );
    }
    response::json_bytes(StatusCode::OK, r#"{"status":"ready"}"#)
}
