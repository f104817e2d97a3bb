//! Maps method and path to a handler and records the request metrics.

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::response::{self, Body};
use super::{health, ingest, metrics, stats};
use crate::metrics::Endpoint;
use crate::AppState;

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// Routes one request and records its count and duration.
pub async fn route(state: &AppState, request: Request<Incoming>) -> Response<Body> {
    // quanta reads the TSC directly. `std::time::Instant` costs a system call per reading on
    // virtual machines whose clock source has no vDSO path, twice per request.
    let started = quanta::Instant::now();
    let (endpoint, response) = dispatch(state, request).await;
    state
        .metrics
        .record_request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

async fn dispatch(state: &AppState, request: Request<Incoming>) -> (Endpoint, Response<Body>) {
    let method = request.method().clone();
    let path = request.uri().path();
    let is_get = method == Method::GET || method == Method::HEAD;

    match path {
        "/ingest" if method == Method::POST => (Endpoint::Ingest, ingest::handle(state, request).await),
        "/ingest" => (Endpoint::Ingest, refuse_method(&method, path, POST)),
        "/stats" if is_get => (Endpoint::Stats, stats::totals(state)),
        "/stats" => (Endpoint::Stats, refuse_method(&method, path, GET)),
        "/metrics" if is_get => (Endpoint::Metrics, metrics::render(state)),
        "/metrics" => (Endpoint::Metrics, refuse_method(&method, path, GET)),
        "/healthz" if is_get => (Endpoint::Healthz, health::healthz()),
        "/healthz" => (Endpoint::Healthz, refuse_method(&method, path, GET)),
        "/readyz" if is_get => (Endpoint::Readyz, health::readyz(state)),
        "/readyz" => (Endpoint::Readyz, refuse_method(&method, path, GET)),
        _ => match path.strip_prefix("/stats/") {
            Some(id) if !id.contains('/') && is_get => (Endpoint::StatsSource, stats::source(state, id)),
            Some(id) if !id.contains('/') => (Endpoint::StatsSource, refuse_method(&method, path, GET)),
            _ => (Endpoint::Unknown, unknown_path(&method, path)),
        },
    }
}

/// 405 for a known path. The request body, if any, is left unread, so the connection closes.
fn refuse_method(method: &Method, path: &str, allow: &'static str) -> Response<Body> {
    response::close_connection(response::method_not_allowed(method, path, allow))
}

fn unknown_path(method: &Method, path: &str) -> Response<Body> {
    let answer = response::not_found_path(&path.chars().take(200).collect::<String>());
    if *method == Method::GET || *method == Method::HEAD {
        answer
    } else {
        // Other methods may carry a body that was not read.
        response::close_connection(answer)
    }
}
