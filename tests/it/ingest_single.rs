//! `POST /ingest` with one event per request: the event rules from the README checked over
//! real HTTP, the validator plugins, and the 503 response when the shard queue is full.
//!
//! Every rejection must be a 400 whose JSON `error` names the field (or, for a body that is
//! not one JSON value, the problem), and must leave `/stats` unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use telemetron::config::{Config, PluginParams};
use telemetron::ingest::event::Event;
use telemetron::plugins::{PluginContext, Processor, ProcessorError, ProcessorRegistration};

use crate::support::client::event;
use crate::support::{get, post_json, send, Response, TestServer};

/// Source of the valid event sent after each rejection. See [`Ingest::assert_nothing_stored`].
const SENTINEL_SOURCE: u64 = 4_242;

const TIMESTAMP: &str = "2024-05-01T12:00:00Z";

/// Maximum wait for `/stats` to show an expected value.
const STATS_DEADLINE: Duration = Duration::from_secs(10);

/// Maximum length of a request body quoted in a failure message.
const MAX_QUOTED_BODY_CHARS: usize = 160;

/// A server under test and the `/stats` totals it must show.
///
/// The server runs one worker with a batch size of 1, so events reach `/stats` in the order
/// they were queued. That order is what lets a sentinel event prove that an earlier
/// rejected event was never queued.
struct Ingest {
    server: TestServer,
    sentinel_source: u64,
    sentinels_sent: u64,
}

impl Ingest {
    fn start() -> Ingest {
        Ingest::with_config(|_| {})
    }

    fn with_config(adjust: impl FnOnce(&mut Config)) -> Ingest {
        let server = TestServer::with_config(|config| {
            config.processor.workers = 1;
            config.processor.batch_size = 1;
            adjust(config);
        });
        Ingest {
            server,
            sentinel_source: SENTINEL_SOURCE,
            sentinels_sent: 0,
        }
    }

    /// Sends the sentinel events from `source` instead, for servers whose validators reject
    /// [`SENTINEL_SOURCE`].
    fn with_sentinel_source(mut self, source: u64) -> Ingest {
        self.sentinel_source = source;
        self
    }

    /// Posts `body`, asserts 202 and waits until `/stats` counts exactly one more event.
    fn accepts(&self, body: &str) {
        let before = events_count(&self.server.stats());
        let response = post_json(self.server.addr, body);
        assert_eq!(
            response.status,
            202,
            "POST {}: {}",
            quote(body.as_bytes()),
            response.text()
        );
        self.server.wait_for_events(before + 1);
    }

    /// Posts `body` as JSON, asserts 400 with a JSON error containing `expected`, checks
    /// that `/stats` did not change, and returns the error text.
    fn rejects(&mut self, body: &[u8], expected: &str) -> String {
        let before = self.server.stats();
        let response = send(
            self.server.addr,
            "POST",
            "/ingest",
            &[("Content-Type", "application/json")],
            body,
        );
        let quoted_body = quote(body);
        assert_eq!(response.status, 400, "POST {quoted_body}: {}", response.text());
        let error = error_text(&response);
        self.assert_nothing_stored(&before, &quoted_body);
        assert!(
            error.contains(expected),
            "POST {quoted_body}: error {error:?} does not contain {expected:?}"
        );
        error
    }

    /// Checks that `/stats` still equals `before`, then sends a valid sentinel event and
    /// waits until it is counted. One worker processes events in queue order, so by then an
    /// event wrongly queued before the sentinel is counted too, and the totals would show it.
    fn assert_nothing_stored(&mut self, before: &serde_json::Value, quoted_body: &str) {
        let now = self.server.stats();
        assert_eq!(&now, before, "/stats changed after the rejected POST {quoted_body}");

        let sentinel = event(self.sentinel_source, "Heartbeat", TIMESTAMP);
        let response = post_json(self.server.addr, &sentinel);
        assert_eq!(response.status, 202, "sentinel {sentinel}: {}", response.text());
        self.sentinels_sent += 1;
        self.wait_for_source_total(self.sentinel_source, self.sentinels_sent);

        let after = self.server.stats();
        let new_sources = u64::from(self.sentinels_sent == 1);
        assert_eq!(
            events_count(&after),
            events_count(before) + 1,
            "after the rejected POST {quoted_body} and one sentinel: /stats {after}"
        );
        assert_eq!(
            sources_count(&after),
            sources_count(before) + new_sources,
            "after the rejected POST {quoted_body} and one sentinel: /stats {after}"
        );
    }

    /// Polls `/stats/{source}` until `total_events` reaches `expected`.
    fn wait_for_source_total(&self, source: u64, expected: u64) {
        let started = Instant::now();
        loop {
            let response = get(self.server.addr, &format!("/stats/{source}"));
            let total = (response.status == 200)
                .then(|| response.json()["total_events"].as_u64())
                .flatten();
            if total == Some(expected) {
                return;
            }
            assert!(
                started.elapsed() < STATS_DEADLINE,
                "/stats/{source} did not reach total_events {expected}: {} {}",
                response.status,
                response.text()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Returns `/stats/{source}`, asserting 200.
    fn source(&self, source: u64) -> serde_json::Value {
        let response = get(self.server.addr, &format!("/stats/{source}"));
        assert_eq!(response.status, 200, "GET /stats/{source}: {}", response.text());
        response.json()
    }
}

fn events_count(stats: &serde_json::Value) -> u64 {
    stats["events_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("/stats has no numeric events_count: {stats}"))
}

fn sources_count(stats: &serde_json::Value) -> u64 {
    stats["sources_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("/stats has no numeric sources_count: {stats}"))
}

/// Returns the `error` string of a JSON error body, failing the test on any other shape.
fn error_text(response: &Response) -> String {
    let body = response.json();
    let is_error_object = body.as_object().is_some_and(|object| object.len() == 1);
    assert!(
        is_error_object,
        "expected a body of exactly {{\"error\": ...}}, got {body}"
    );
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {body}"))
        .to_owned()
}

/// Returns the start of a request body for failure messages.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.chars().count() <= MAX_QUOTED_BODY_CHARS {
        return text.into_owned();
    }
    let start: String = text.chars().take(MAX_QUOTED_BODY_CHARS).collect();
    format!("{start}... ({} bytes)", body.len())
}

/// Builds an event whose `sourceId` is the raw JSON text `source_id`.
fn with_source_id(source_id: &str) -> String {
    format!(r#"{{"sourceId":{source_id},"type":"Heartbeat","timestamp":"{TIMESTAMP}"}}"#)
}

/// Builds an event from source 1 whose `type` is the raw JSON text `event_type`.
fn with_type(event_type: &str) -> String {
    format!(r#"{{"sourceId":1,"type":{event_type},"timestamp":"{TIMESTAMP}"}}"#)
}

/// Builds an event from `source` whose `timestamp` is the raw JSON text `timestamp`.
fn with_timestamp(source: u64, timestamp: &str) -> String {
    format!(r#"{{"sourceId":{source},"type":"Heartbeat","timestamp":{timestamp}}}"#)
}

/// Builds an event from source 1 whose `data` is the raw JSON text `data`.
fn with_data(data: &str) -> String {
    format!(r#"{{"sourceId":1,"type":"Heartbeat","timestamp":"{TIMESTAMP}","data":{data}}}"#)
}

/// Builds a JSON value that nests `depth` levels, alternating objects and arrays. `{}` is
/// 1 level and `{"a":[]}` is 2.
fn nested(depth: usize) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for level in 0..depth {
        let is_last = level + 1 == depth;
        if level % 2 == 0 {
            open.push_str(if is_last { "{" } else { r#"{"a":"# });
            close.insert(0, '}');
        } else {
            open.push('[');
            close.insert(0, ']');
        }
    }
    open + &close
}

fn params(value: serde_json::Value) -> PluginParams {
    value
        .as_object()
        .expect("plugin parameters are written as a JSON object")
        .clone()
}

#[test]
fn source_id_bounds_accepted() {
    let ingest = Ingest::start();

    ingest.accepts(&with_source_id("0"));
    ingest.accepts(&with_source_id("18446744073709551615"));

    let zero = ingest.source(0);
    assert_eq!(zero["source_id"], 0, "/stats/0: {zero}");
    assert_eq!(zero["total_events"], 1, "/stats/0: {zero}");
    let max = ingest.source(u64::MAX);
    assert_eq!(max["source_id"].as_u64(), Some(u64::MAX), "/stats/{}: {max}", u64::MAX);
    assert_eq!(max["total_events"], 1, "/stats/{}: {max}", u64::MAX);
}

#[test]
fn source_id_invalid_rejected() {
    let mut ingest = Ingest::start();

    for raw in ["-1", "-0", "1.0", "1e3", r#""1""#, "null", "true", "[1]"] {
        ingest.rejects(with_source_id(raw).as_bytes(), "sourceId");
    }
    let missing = format!(r#"{{"type":"Heartbeat","timestamp":"{TIMESTAMP}"}}"#);
    ingest.rejects(missing.as_bytes(), "sourceId");
}

#[test]
fn source_id_overflow_names_field() {
    let mut ingest = Ingest::start();

    for raw in ["18446744073709551616", "-9223372036854775809"] {
        ingest.rejects(with_source_id(raw).as_bytes(), "sourceId");
    }
}

#[test]
fn event_type_accepted() {
    let ingest = Ingest::start();
    let longest_ascii = "a".repeat(256);
    // 128 two-byte characters: 256 bytes but only 128 characters.
    let longest_multibyte = "é".repeat(128);

    for event_type in ["Heartbeat", "Custom", &longest_ascii, &longest_multibyte] {
        ingest.accepts(&event(1, event_type, TIMESTAMP));
    }
    ingest.accepts(&with_type(r#""A\u0042""#));

    let stats = ingest.source(1);
    let types = &stats["event_types"];
    assert_eq!(types["Heartbeat"], 1, "/stats/1: {stats}");
    assert_eq!(types["Custom"], 1, "/stats/1: {stats}");
    assert_eq!(types[&longest_ascii], 1, "/stats/1: {stats}");
    assert_eq!(types[&longest_multibyte], 1, "/stats/1: {stats}");
    assert_eq!(types["AB"], 1, "escaped type is stored unescaped; /stats/1: {stats}");
    assert_eq!(types.as_object().map(|map| map.len()), Some(5), "/stats/1: {stats}");
}

#[test]
fn event_type_invalid_rejected() {
    let mut ingest = Ingest::start();

    ingest.rejects(event(1, "", TIMESTAMP).as_bytes(), "type");
    ingest.rejects(event(1, &"a".repeat(257), TIMESTAMP).as_bytes(), "type");
    let over_by_one_byte = format!("{}a", "é".repeat(128));
    ingest.rejects(event(1, &over_by_one_byte, TIMESTAMP).as_bytes(), "type");
    ingest.rejects(with_type("42").as_bytes(), "type");
    ingest.rejects(with_type("null").as_bytes(), "type");
    let missing = format!(r#"{{"sourceId":1,"timestamp":"{TIMESTAMP}"}}"#);
    ingest.rejects(missing.as_bytes(), "type");

    // Invalid UTF-8 fails the whole body, so the error gives the byte offset, not the field.
    let mut invalid_utf8 = br#"{"sourceId":1,"type":"ab"#.to_vec();
    let bad_byte = invalid_utf8.len();
    invalid_utf8.extend_from_slice(b"\xff\xfe\",\"timestamp\":\"2024-05-01T12:00:00Z\"}");
    let error = ingest.rejects(&invalid_utf8, "UTF-8");
    assert!(
        error.contains(&format!("byte {bad_byte}")),
        "error does not locate byte {bad_byte}: {error}"
    );

    for surrogate in [r#""\ud800""#, r#""a\udc00""#, r#""\ud800\u0041""#] {
        ingest.rejects(with_type(surrogate).as_bytes(), "surrogate");
    }
}

#[test]
fn timestamp_normalised_to_utc() {
    let ingest = Ingest::start();
    let cases = [
        (101, "2024-02-29T23:59:60Z", "2024-02-29T23:59:60Z"),
        (102, "2024-05-01t12:00:00z", "2024-05-01T12:00:00Z"),
        (103, "2024-05-01T12:00:00+05:30", "2024-05-01T06:30:00Z"),
        (
            104,
            "2024-05-01T12:00:00.123456789987Z",
            "2024-05-01T12:00:00.123456789Z",
        ),
        (105, "2024-01-01T01:00:00.5+02:00", "2023-12-31T23:00:00.5Z"),
        (106, "2024-05-01T12:00:00-00:00", "2024-05-01T12:00:00Z"),
    ];

    for (source, sent, _) in cases {
        ingest.accepts(&event(source, "Heartbeat", sent));
    }
    for (source, sent, stored) in cases {
        let stats = ingest.source(source);
        assert_eq!(stats["first_event"], stored, "sent {sent}; /stats/{source}: {stats}");
        assert_eq!(stats["last_event"], stored, "sent {sent}; /stats/{source}: {stats}");
    }
}

#[test]
fn timestamp_invalid_rejected() {
    let mut ingest = Ingest::start();
    let invalid = [
        "2024-05-01T12:00:00",
        "2023-02-29T12:00:00Z",
        "2024-04-31T12:00:00Z",
        "10000-01-01T00:00:00Z",
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:60Z",
        "2024-05-01T12:00:00+24:00",
        "",
    ];

    for timestamp in invalid {
        ingest.rejects(event(1, "Heartbeat", timestamp).as_bytes(), "timestamp");
    }
    ingest.rejects(with_timestamp(1, "1714564800").as_bytes(), "timestamp");
    let missing = r#"{"sourceId":1,"type":"Heartbeat"}"#;
    ingest.rejects(missing.as_bytes(), "timestamp");
}

#[test]
fn data_accepted() {
    let ingest = Ingest::start();

    ingest.accepts(&event(1, "Heartbeat", TIMESTAMP));
    ingest.accepts(&with_data("null"));
    ingest.accepts(&with_data(
        r#"{"cpu":0.4,"disks":[{"name":"sda","free":12}],"tags":{}}"#,
    ));
    ingest.accepts(&with_data(&nested(32)));

    let stats = ingest.source(1);
    assert_eq!(stats["total_events"], 4, "/stats/1: {stats}");
}

#[test]
fn data_too_deep_rejected() {
    let mut ingest = Ingest::start();

    let error = ingest.rejects(with_data(&nested(33)).as_bytes(), "data");
    assert!(error.contains("32"), "error does not name the limit of 32: {error}");

    // Past the document limit of at least 1024 levels the error is about the whole body,
    // so it does not name `data`.
    ingest.rejects(with_data(&nested(5_000)).as_bytes(), "nests");
}

#[test]
fn data_depth_follows_config() {
    let mut ingest = Ingest::with_config(|config| config.ingest.max_data_depth = 2);

    ingest.accepts(&with_data(&nested(2)));
    let error = ingest.rejects(with_data(&nested(3)).as_bytes(), "data");
    assert!(error.contains('2'), "error does not name the limit of 2: {error}");
}

#[test]
fn duplicate_keys_rejected() {
    let mut ingest = Ingest::start();
    let bodies = [
        format!(r#"{{"sourceId":1,"sourceId":2,"type":"Heartbeat","timestamp":"{TIMESTAMP}"}}"#),
        format!(r#"{{"sourceId":1,"source\u0049d":2,"type":"Heartbeat","timestamp":"{TIMESTAMP}"}}"#),
        format!(r#"{{"sourceId":1,"type":"Heartbeat","timestamp":"{TIMESTAMP}","source\u0049d":1}}"#),
    ];

    for body in &bodies {
        let error = ingest.rejects(body.as_bytes(), "sourceId");
        assert!(error.contains("duplicate"), "error does not say duplicate: {error}");
    }
    let twice = [
        (
            format!(r#"{{"sourceId":1,"type":"A","type":"B","timestamp":"{TIMESTAMP}"}}"#),
            "type",
        ),
        (
            format!(r#"{{"sourceId":1,"type":"A","timestamp":"{TIMESTAMP}","timestamp":"{TIMESTAMP}"}}"#),
            "timestamp",
        ),
        (
            format!(r#"{{"sourceId":1,"type":"A","timestamp":"{TIMESTAMP}","x":1,"x":2}}"#),
            "x",
        ),
    ];
    for (body, key) in &twice {
        let error = ingest.rejects(body.as_bytes(), "duplicate");
        assert!(error.contains(key), "error does not name {key}: {error}");
    }
}

#[test]
fn unknown_fields_ignored() {
    let ingest = Ingest::start();
    let body = format!(
        r#"{{"sourceId":7,"version":2,"type":"Heartbeat","tags":["a"],"timestamp":"{TIMESTAMP}","extra":{{"x":null}}}}"#
    );

    ingest.accepts(&body);

    let stats = ingest.source(7);
    assert_eq!(stats["event_types"]["Heartbeat"], 1, "/stats/7: {stats}");
}

#[test]
fn concatenated_objects_rejected() {
    let mut ingest = Ingest::start();
    let first = event(1, "Heartbeat", TIMESTAMP);
    let second = event(2, "Heartbeat", TIMESTAMP);

    ingest.rejects(format!("{first}{second}").as_bytes(), "one value");
    ingest.rejects(format!("{first}\n{second}").as_bytes(), "one value");

    for source in [1, 2] {
        let response = get(ingest.server.addr, &format!("/stats/{source}"));
        assert_eq!(response.status, 404, "GET /stats/{source}: {}", response.text());
    }
    let stats = ingest.server.stats();
    assert_eq!(
        events_count(&stats),
        ingest.sentinels_sent,
        "only the sentinels may be stored: /stats {stats}"
    );
}

#[test]
fn malformed_body_rejected() {
    let mut ingest = Ingest::start();
    let valid = event(1, "Heartbeat", TIMESTAMP);

    ingest.rejects(format!("{valid} x").as_bytes(), "one value");
    ingest.rejects(format!("{valid},").as_bytes(), "JSON");
    ingest.rejects(&valid.as_bytes()[..valid.len() - 1], "JSON");
    ingest.rejects(b"", "empty");
    ingest.rejects(b" \r\n\t", "empty");
    for scalar in ["42", r#""event""#, "null", "true"] {
        ingest.rejects(scalar.as_bytes(), "event object");
    }
}

#[test]
fn source_id_validator_rejects_unlisted() {
    let mut ingest = Ingest::with_config(|config| {
        let allowed = params(serde_json::json!({ "allowed": [1, 2] }));
        config
            .validation
            .plugins
            .insert("SourceIdValidator".to_owned(), allowed);
    })
    .with_sentinel_source(1);

    ingest.accepts(&event(2, "Heartbeat", TIMESTAMP));
    let error = ingest.rejects(event(3, "Heartbeat", TIMESTAMP).as_bytes(), "SourceIdValidator");
    assert!(error.contains("sourceId"), "error does not name sourceId: {error}");
}

#[test]
fn event_type_validator_rejects_unlisted() {
    let mut ingest = Ingest::with_config(|config| {
        let allowed = params(serde_json::json!({ "allowed": ["Heartbeat"] }));
        config
            .validation
            .plugins
            .insert("EventTypeValidator".to_owned(), allowed);
    });

    ingest.accepts(&event(1, "Heartbeat", TIMESTAMP));
    let error = ingest.rejects(event(1, "Login", TIMESTAMP).as_bytes(), "EventTypeValidator");
    assert!(error.contains("type"), "error does not name type: {error}");
}

#[test]
fn empty_type_list_allows_all() {
    let ingest = Ingest::with_config(|config| {
        let allowed = params(serde_json::json!({ "allowed": [] }));
        config
            .validation
            .plugins
            .insert("EventTypeValidator".to_owned(), allowed);
    });

    for event_type in ["Heartbeat", "Login", "x"] {
        ingest.accepts(&event(1, event_type, TIMESTAMP));
    }
}

/// Whether [`GateProcessor`] lets batches through. Only `full_queue_returns_503` enables
/// the processor, so one process-wide gate is enough.
static GATE_OPEN: Mutex<bool> = Mutex::new(false);
static GATE_CHANGED: Condvar = Condvar::new();

/// Batches that have reached the gate.
static GATE_ARRIVALS: AtomicUsize = AtomicUsize::new(0);

/// Maximum time the gate blocks a batch, so a failed test cannot hang its server's drain.
const GATE_TIMEOUT: Duration = Duration::from_secs(20);

/// Blocks each batch until the test opens [`GATE_OPEN`]. Its name sorts before
/// `StorageProcessor`, so a blocked event is not in `/stats` yet.
struct GateProcessor;

impl Processor for GateProcessor {
    fn process(&self, _batch: &[Event]) -> Result<(), ProcessorError> {
        GATE_ARRIVALS.fetch_add(1, Ordering::SeqCst);
        let open = GATE_OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        let (open, _) = GATE_CHANGED
            .wait_timeout_while(open, GATE_TIMEOUT, |open| !*open)
            .unwrap_or_else(PoisonError::into_inner);
        if *open {
            Ok(())
        } else {
            Err(ProcessorError(format!(
                "the test gate stayed closed for {GATE_TIMEOUT:?}"
            )))
        }
    }
}

fn build_gate(_: &PluginParams, _: &PluginContext) -> Result<Arc<dyn Processor>, String> {
    Ok(Arc::new(GateProcessor))
}

inventory::submit! {
    ProcessorRegistration { name: "GateProcessor", build: build_gate }
}

/// Opens the gate when dropped, so the worker is released even when an assertion fails.
struct OpenGateOnDrop;

impl Drop for OpenGateOnDrop {
    fn drop(&mut self) {
        *GATE_OPEN.lock().unwrap_or_else(PoisonError::into_inner) = true;
        GATE_CHANGED.notify_all();
    }
}

#[test]
fn full_queue_returns_503() {
    const CAPACITY: u64 = 5;
    const MAX_REQUESTS: u64 = CAPACITY + 20;
    let server = TestServer::with_config(|config| {
        config.processor.workers = 1;
        config.processor.channel_capacity = CAPACITY as usize;
        config.processor.batch_size = 1;
        config
            .processing
            .plugins
            .insert("GateProcessor".to_owned(), PluginParams::new());
    });
    // Declared after the server, so it is dropped first and the drain can finish.
    let gate = OpenGateOnDrop;
    let body = event(1, "Heartbeat", TIMESTAMP);

    let first = post_json(server.addr, &body);
    assert_eq!(first.status, 202, "first POST: {}", first.text());
    let started = Instant::now();
    while GATE_ARRIVALS.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < STATS_DEADLINE, "the worker never reached the gate");
        std::thread::sleep(Duration::from_millis(2));
    }

    // The worker is blocked on the first event, so the queue takes exactly CAPACITY more.
    let mut accepted = 1;
    let mut unavailable = None;
    for _ in 0..MAX_REQUESTS {
        let response = post_json(server.addr, &body);
        match response.status {
            202 => accepted += 1,
            503 => {
                unavailable = Some(response);
                break;
            }
            other => panic!("POST while the queue fills: unexpected {other}: {}", response.text()),
        }
    }
    let unavailable =
        unavailable.unwrap_or_else(|| panic!("no 503 after {MAX_REQUESTS} requests; {accepted} were accepted"));
    assert_eq!(accepted, CAPACITY + 1, "202 responses before the first 503");

    let retry_after = unavailable.header("retry-after");
    assert!(
        retry_after
            .and_then(|value| value.parse::<u32>().ok())
            .is_some_and(|secs| secs >= 1),
        "503 has Retry-After {retry_after:?}, expected whole seconds: {:?}",
        unavailable.headers
    );
    let error = error_text(&unavailable);
    assert!(
        error.contains("full"),
        "503 error does not say the queue is full: {error}"
    );

    let stats_while_blocked = server.stats();
    assert_eq!(
        events_count(&stats_while_blocked),
        0,
        "events counted while the gate was closed: {stats_while_blocked}"
    );

    drop(gate);
    server.wait_for_events(accepted);
    let summary = server.stop();
    assert_eq!(summary.accepted, accepted, "run summary accepted");
    assert_eq!(summary.processed, accepted, "run summary processed");
}
