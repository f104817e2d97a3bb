//! Prometheus metrics: one recorder per running service, with every hot-path handle
//! registered up front so recording is an atomic update, never a lookup by name.
//!
//! The per-request series (request durations, accepted and rejected events) are kept in
//! [`striped`] form and copied into the exporter when `/metrics` is rendered. The request
//! counts are the duration histograms' counts. The per-batch series of the workers use the
//! exporter's handles directly.
//!
//! The recorder is not installed globally, so several services in one process (as in the
//! tests) keep separate counts. Histogram samples are buffered until drained, so the
//! service calls [`Metrics::run_upkeep`] periodically to keep memory bounded whether or not
//! anyone scrapes.

pub mod names;
pub mod striped;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use names::*;
use striped::{StripedCounter, StripedHistogram};

/// The HTTP routes, as the `endpoint` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /ingest`.
    Ingest,
    /// `GET /stats`.
    Stats,
    /// `GET /stats/{source_id}`.
    StatsSource,
    /// `GET /metrics`.
    Metrics,
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// Any other path.
    Unknown,
}

impl Endpoint {
    const ALL: [Endpoint; 7] = [
        Endpoint::Ingest,
        Endpoint::Stats,
        Endpoint::StatsSource,
        Endpoint::Metrics,
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Unknown,
    ];

    /// Returns the label value.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Ingest => "ingest",
            Endpoint::Stats => "stats",
            Endpoint::StatsSource => "stats_source",
            Endpoint::Metrics => "metrics",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Unknown => "unknown",
        }
    }
}

/// Reason events were not queued, as the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The body was not valid JSON or not of an accepted shape.
    InvalidBody,
    /// A field was missing or invalid.
    InvalidEvent,
    /// A validator plugin rejected the event.
    Validator,
    /// The body or the batch was over a size limit.
    TooLarge,
    /// The Content-Type or Content-Encoding is not supported.
    UnsupportedMediaType,
    /// Every shard queue was full.
    Overloaded,
    /// The service was shutting down.
    Draining,
}

impl RejectReason {
    const ALL: [RejectReason; 7] = [
        RejectReason::InvalidBody,
        RejectReason::InvalidEvent,
        RejectReason::Validator,
        RejectReason::TooLarge,
        RejectReason::UnsupportedMediaType,
        RejectReason::Overloaded,
        RejectReason::Draining,
    ];

    /// Returns the label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::InvalidBody => "invalid_body",
            RejectReason::InvalidEvent => "invalid_event",
            RejectReason::Validator => "validator",
            RejectReason::TooLarge => "too_large",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::Overloaded => "overloaded",
            RejectReason::Draining => "draining",
        }
    }
}

/// Status codes that get their own `status` label value; any other shares `other`.
const STATUSES: [u16; 12] = [200, 202, 400, 404, 405, 408, 413, 415, 429, 500, 503, 0];

fn status_index(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&known| known == status)
        .unwrap_or(STATUSES.len() - 1)
}

fn status_label(index: usize) -> String {
    match STATUSES[index] {
        0 => "other".to_owned(),
        code => code.to_string(),
    }
}

/// Handles for one processor plugin.
pub struct PluginMetrics {
    /// Failed calls.
    pub errors: Counter,
    /// Duration of successful calls.
    pub duration_ok: Histogram,
    /// Duration of failed calls.
    pub duration_error: Histogram,
}

/// A counter updated on the request path: added to in stripes, copied into the exporter's
/// counter when `/metrics` is rendered.
struct HotCounter {
    striped: StripedCounter,
    exported: Counter,
}

impl HotCounter {
    fn new(exported: Counter) -> Self {
        HotCounter {
            striped: StripedCounter::default(),
            exported,
        }
    }

    fn publish(&self) {
        self.exported.absolute(self.striped.sum());
    }
}

/// The thread kind that serves a connection, as the `thread` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionThread {
    /// The multi-threaded runtime that serves ingestion.
    Runtime,
    /// The reader thread, for connections that open with `GET` or `HEAD`.
    Reader,
}

impl ConnectionThread {
    const ALL: [ConnectionThread; 2] = [ConnectionThread::Runtime, ConnectionThread::Reader];

    /// Returns the label value.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionThread::Runtime => "runtime",
            ConnectionThread::Reader => "reader",
        }
    }
}

/// All metric handles of one running service.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Exported request counts per endpoint, copied from the duration histograms' counts.
    http_requests: Vec<Counter>,
    http_durations: Vec<Vec<OnceLock<StripedHistogram>>>,
    /// Connections by the thread that serves them, indexed by `ConnectionThread as usize`.
    connections: [Counter; 2],
    events_accepted: HotCounter,
    events_rejected: Vec<HotCounter>,
    /// Events all processors handled.
    pub events_processed: Counter,
    /// Events written to the dead-letter file.
    pub events_dead_lettered: Counter,
    queue_depth: Vec<Gauge>,
    stats_sources: Gauge,
}

const HTTP_REQUEST_DURATION_HELP: &str = "Time from request head to response, by endpoint and status";

const METADATA: Metadata<'static> = Metadata::new("telemetron", Level::INFO, Some(module_path!()));

impl Metrics {
    /// Creates the recorder and registers the handles for `shards` queues.
    ///
    /// # Panics
    /// Panics if the bucket list is empty, which it is not.
    pub fn new(shards: usize) -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS_SECONDS)
            .expect("the bucket list is a non-empty constant")
            .build_recorder();
        let handle = recorder.handle();
        describe(&recorder);

        let http_requests = Endpoint::ALL
            .iter()
            .map(|endpoint| counter(&recorder, HTTP_REQUESTS_TOTAL, vec![Label::new("endpoint", endpoint.label())]))
            .collect();
        let http_durations = Endpoint::ALL
            .iter()
            .map(|_| STATUSES.iter().map(|_| OnceLock::new()).collect())
            .collect();
        let events_rejected = RejectReason::ALL
            .iter()
            .map(|reason| HotCounter::new(counter(&recorder, EVENTS_REJECTED_TOTAL, vec![Label::new("reason", reason.label())])))
            .collect();

        let mut queue_depth = Vec::with_capacity(shards);
        for shard in 0..shards {
            let labels = vec![Label::new("shard", shard.to_string())];
            queue_depth.push(recorder.register_gauge(&Key::from_parts(QUEUE_DEPTH_EVENTS, labels), &METADATA));
        }

        let connections = ConnectionThread::ALL
            .map(|thread| counter(&recorder, HTTP_CONNECTIONS_TOTAL, vec![Label::new("thread", thread.label())]));

        Metrics {
            connections,
            events_accepted: HotCounter::new(counter(&recorder, EVENTS_ACCEPTED_TOTAL, vec![])),
            events_processed: counter(&recorder, EVENTS_PROCESSED_TOTAL, vec![]),
            events_dead_lettered: counter(&recorder, EVENTS_DEAD_LETTERED_TOTAL, vec![]),
            stats_sources: recorder.register_gauge(&Key::from_name(STATS_SOURCES), &METADATA),
            recorder,
            handle,
            http_requests,
            http_durations,
            events_rejected,
            queue_depth,
        }
    }

    /// Sets each shard's capacity gauge.
    pub fn set_queue_capacity(&self, capacity: usize) {
        for shard in 0..self.queue_depth.len() {
            let labels = vec![Label::new("shard", shard.to_string())];
            self.recorder
                .register_gauge(&Key::from_parts(QUEUE_CAPACITY_EVENTS, labels), &METADATA)
                .set(capacity as f64);
        }
    }

    /// Registers the handles of one processor plugin. Call once per plugin at start-up.
    pub fn plugin(&self, plugin: &'static str) -> PluginMetrics {
        let label = || Label::new("plugin", plugin);
        PluginMetrics {
            errors: counter(&self.recorder, PLUGIN_ERRORS_TOTAL, vec![label()]),
            duration_ok: self.recorder.register_histogram(
                &Key::from_parts(PLUGIN_DURATION_SECONDS, vec![label(), Label::new("status", "ok")]),
                &METADATA,
            ),
            duration_error: self.recorder.register_histogram(
                &Key::from_parts(PLUGIN_DURATION_SECONDS, vec![label(), Label::new("status", "error")]),
                &METADATA,
            ),
        }
    }

    /// Records one completed HTTP request. Its count is the histogram's, so a request costs
    /// one histogram update and no separate counter.
    pub fn record_request(&self, endpoint: Endpoint, status: u16, duration: Duration) {
        self.http_durations[endpoint as usize][status_index(status)]
            .get_or_init(|| StripedHistogram::new(&DURATION_BUCKETS_SECONDS))
            .record(duration);
    }

    /// Counts one connection and where it is served.
    pub fn record_connection(&self, thread: ConnectionThread) {
        self.connections[thread as usize].increment(1);
    }

    /// Counts events that were queued.
    pub fn record_accepted(&self, count: u64) {
        if count > 0 {
            self.events_accepted.striped.add(count);
        }
    }

    /// Counts events that were not queued.
    pub fn record_rejected(&self, reason: RejectReason, count: u64) {
        if count > 0 {
            self.events_rejected[reason as usize].striped.add(count);
        }
    }

    /// Renders the Prometheus text format after refreshing the sampled gauges and copying
    /// the request-path series into the exporter.
    pub fn render(&self, queue_depths: impl Iterator<Item = usize>, sources: u64) -> String {
        for (gauge, depth) in self.queue_depth.iter().zip(queue_depths) {
            gauge.set(depth as f64);
        }
        self.stats_sources.set(sources as f64);

        // One snapshot feeds both the request counts and the histogram lines, so the two
        // agree within a scrape.
        let mut series = Vec::new();
        for ((endpoint, by_status), requests) in Endpoint::ALL.iter().zip(&self.http_durations).zip(&self.http_requests) {
            let mut endpoint_total = 0;
            for (status_index, histogram) in by_status.iter().enumerate() {
                if let Some(histogram) = histogram.get() {
                    let snapshot = histogram.snapshot();
                    endpoint_total += snapshot.count();
                    series.push((endpoint.label(), status_label(status_index), snapshot));
                }
            }
            requests.absolute(endpoint_total);
        }
        for counter in &self.events_rejected {
            counter.publish();
        }
        self.events_accepted.publish();

        let mut text = self.handle.render();
        render_request_durations(&mut text, &series);
        text
    }

    /// Drains buffered histogram samples; call periodically so memory stays bounded.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Appends the request duration histogram family, one series per endpoint and status seen
/// so far, in the exporter's layout (a blank line ends the family).
fn render_request_durations(out: &mut String, series: &[(&str, String, striped::HistogramSnapshot)]) {
    if series.is_empty() {
        return;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "# HELP {HTTP_REQUEST_DURATION_SECONDS} {HTTP_REQUEST_DURATION_HELP}\n# TYPE {HTTP_REQUEST_DURATION_SECONDS} histogram\n"
    ));
    for (endpoint, status, snapshot) in series {
        let labels = format!("endpoint=\"{endpoint}\",status=\"{status}\"");
        striped::write_histogram(out, HTTP_REQUEST_DURATION_SECONDS, &labels, &DURATION_BUCKETS_SECONDS, snapshot);
    }
    out.push('\n');
}

fn counter(recorder: &PrometheusRecorder, name: &'static str, labels: Vec<Label>) -> Counter {
    recorder.register_counter(&Key::from_parts(name, labels), &METADATA)
}

fn describe(recorder: &PrometheusRecorder) {
    let counters = [
        (HTTP_REQUESTS_TOTAL, "HTTP requests received, by endpoint"),
        (HTTP_CONNECTIONS_TOTAL, "Connections that sent data, by the thread serving them"),
        (EVENTS_ACCEPTED_TOTAL, "Events queued for processing (answered 202)"),
        (EVENTS_REJECTED_TOTAL, "Events not queued, by reason"),
        (EVENTS_PROCESSED_TOTAL, "Events every processor handled without error"),
        (EVENTS_DEAD_LETTERED_TOTAL, "Events written to the dead-letter file"),
        (PLUGIN_ERRORS_TOTAL, "Failed processor calls, retries included, by plugin"),
    ];
    for (name, help) in counters {
        recorder.describe_counter(name.into(), None, help.into());
    }
    recorder.describe_histogram(
        PLUGIN_DURATION_SECONDS.into(),
        Some(Unit::Seconds),
        "Time of one processor call on one batch, by plugin and status".into(),
    );
    recorder.describe_gauge(QUEUE_DEPTH_EVENTS.into(), None, "Events waiting in a shard queue".into());
    recorder.describe_gauge(QUEUE_CAPACITY_EVENTS.into(), None, "Capacity of a shard queue in events".into());
    recorder.describe_gauge(STATS_SOURCES.into(), None, "Distinct sources in the statistics".into());
}
