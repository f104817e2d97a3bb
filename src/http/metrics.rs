//! `GET /metrics`: the Prometheus text exposition format.

use hyper::{Response, StatusCode};

use super::response::{self, Body};
use crate::AppState;

/// Content type of the Prometheus text format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric after sampling the queue depths and the source count.
pub fn render(state: &AppState) -> Response<Body> {
    let queues = &state.queues;
    let depths = (0..queues.shard_count()).map(|shard| queues.depth(shard));
    let body = state.metrics.render(depths, state.stats.totals().sources_count);
    response::text(StatusCode::OK, PROMETHEUS_TEXT, body)
}
