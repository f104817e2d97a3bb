//! Metric names, units and labels. Every series Telemetron exports is named here.
//!
//! Labels take only values from fixed sets (`endpoint`, `status`, `reason`, `shard`,
//! `plugin`, `thread`), never a value a client chose, so the number of series is bounded.

/// Counter of HTTP requests. Labels: `endpoint`.
pub const HTTP_REQUESTS_TOTAL: &str = "telemetron_http_requests_total";
/// Histogram of request handling time in seconds. Labels: `endpoint`, `status`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "telemetron_http_requests_duration_seconds";
/// Counter of connections that sent data, by the thread serving them. Labels: `thread`
/// (`runtime` or `reader`).
pub const HTTP_CONNECTIONS_TOTAL: &str = "telemetron_http_connections_total";
/// Counter of events queued for processing (answered 202).
pub const EVENTS_ACCEPTED_TOTAL: &str = "telemetron_ingest_events_accepted_total";
/// Counter of events not queued. Labels: `reason`.
pub const EVENTS_REJECTED_TOTAL: &str = "telemetron_ingest_events_rejected_total";
/// Counter of events every processor handled without error.
pub const EVENTS_PROCESSED_TOTAL: &str = "telemetron_events_processed_total";
/// Counter of events written to the dead-letter file after retries ran out.
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "telemetron_events_dead_lettered_total";
/// Counter of failed processor calls, retries included. Labels: `plugin`.
pub const PLUGIN_ERRORS_TOTAL: &str = "telemetron_processor_plugin_errors_total";
/// Histogram of one processor call's time in seconds. Labels: `plugin`, `status`.
pub const PLUGIN_DURATION_SECONDS: &str = "telemetron_processor_plugin_duration_seconds";
/// Gauge of events waiting in a shard queue. Labels: `shard`.
pub const QUEUE_DEPTH_EVENTS: &str = "telemetron_queue_depth_events";
/// Gauge of a shard queue's capacity in events. Labels: `shard`.
pub const QUEUE_CAPACITY_EVENTS: &str = "telemetron_queue_capacity_events";
/// Gauge of distinct sources in the statistics.
pub const STATS_SOURCES: &str = "telemetron_stats_sources";

/// Histogram bucket bounds in seconds, shared by both histograms: fine below a millisecond,
/// where request handling usually sits, and coarse up to ten seconds for slow processors.
pub const DURATION_BUCKETS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];
