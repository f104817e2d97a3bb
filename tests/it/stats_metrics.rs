//! `/stats`, `/stats/{source_id}` and `/metrics`, read back after known traffic: totals
//! must equal the 202 responses, per-source figures must come from the event timestamps, and
//! every metric line must parse in the Prometheus text format.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use telemetron::config::PluginParams;

use crate::support::client::{connect, encode, event, read_response};
use crate::support::{get, post_json, send, Response, TestServer};

/// Maximum wait for `/metrics` to show an expected value.
const METRICS_DEADLINE: Duration = Duration::from_secs(10);

/// Returns `/stats/{source}`, asserting 200.
fn source_stats(server: &TestServer, source: u64) -> serde_json::Value {
    let response = get(server.addr, &format!("/stats/{source}"));
    assert_eq!(response.status, 200, "GET /stats/{source}: {}", response.text());
    response.json()
}

fn post_accepted(server: &TestServer, body: &str) {
    let response = post_json(server.addr, body);
    assert_eq!(response.status, 202, "POST {body}: {}", response.text());
}

/// Returns the `error` string of a JSON error body, failing the test on any other shape.
fn error_text(response: &Response) -> String {
    let body = response.json();
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a body of {{\"error\": \"...\"}}, got {body}"))
        .to_owned()
}

#[test]
fn stats_follow_event_timestamps() {
    let server = TestServer::start();
    // Sent latest first, so arrival order differs from timestamp order. The +02:00 event is
    // the earliest in UTC although its local time is the latest of source 10.
    let source_10 = [
        ("Heartbeat", "2024-03-01T12:00:09Z"),
        ("Login", "2024-03-01T12:00:05Z"),
        ("Heartbeat", "2024-03-01T13:59:00+02:00"),
        ("Heartbeat", "2024-03-01T12:00:03.250Z"),
        ("Logout", "2024-03-01T12:00:07Z"),
    ];
    let source_20 = [("Login", "2024-03-02T00:00:00Z"), ("Login", "2024-02-28T23:59:59.999Z")];
    let source_30 = [("Heartbeat", "2024-03-01T08:00:00Z")];

    for (event_type, timestamp) in source_10 {
        post_accepted(&server, &event(10, event_type, timestamp));
    }
    for (event_type, timestamp) in source_20 {
        post_accepted(&server, &event(20, event_type, timestamp));
    }
    for (event_type, timestamp) in source_30 {
        post_accepted(&server, &event(30, event_type, timestamp));
    }
    let stats = server.wait_for_events(8);

    assert_eq!(stats["sources_count"], 3, "/stats: {stats}");
    assert_eq!(stats["events_count"], 8, "/stats: {stats}");

    let ten = source_stats(&server, 10);
    assert_eq!(ten["source_id"], 10, "/stats/10: {ten}");
    assert_eq!(ten["total_events"], 5, "/stats/10: {ten}");
    assert_eq!(ten["first_event"], "2024-03-01T11:59:00Z", "/stats/10: {ten}");
    assert_eq!(ten["last_event"], "2024-03-01T12:00:09Z", "/stats/10: {ten}");
    assert_eq!(
        ten["event_types"],
        serde_json::json!({ "Heartbeat": 3, "Login": 1, "Logout": 1 }),
        "/stats/10: {ten}"
    );

    let twenty = source_stats(&server, 20);
    assert_eq!(twenty["total_events"], 2, "/stats/20: {twenty}");
    assert_eq!(twenty["first_event"], "2024-02-28T23:59:59.999Z", "/stats/20: {twenty}");
    assert_eq!(twenty["last_event"], "2024-03-02T00:00:00Z", "/stats/20: {twenty}");
    assert_eq!(
        twenty["event_types"],
        serde_json::json!({ "Login": 2 }),
        "/stats/20: {twenty}"
    );

    let thirty = source_stats(&server, 30);
    assert_eq!(thirty["total_events"], 1, "/stats/30: {thirty}");
    assert_eq!(thirty["first_event"], "2024-03-01T08:00:00Z", "/stats/30: {thirty}");
    assert_eq!(thirty["last_event"], "2024-03-01T08:00:00Z", "/stats/30: {thirty}");
}

#[test]
fn source_stats_keep_documented_key_order() {
    let server = TestServer::start();
    post_accepted(&server, &event(5, "Login", "2024-03-01T12:00:00Z"));
    post_accepted(&server, &event(5, "Heartbeat", "2024-03-01T12:00:01Z"));
    server.wait_for_events(2);

    let response = get(server.addr, "/stats/5");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.text(),
        r#"{"source_id":5,"total_events":2,"first_event":"2024-03-01T12:00:00Z","last_event":"2024-03-01T12:00:01Z","event_types":{"Heartbeat":1,"Login":1}}"#
    );
}

#[test]
fn stats_path_errors() {
    let server = TestServer::start();
    post_accepted(&server, &event(1, "Heartbeat", "2024-03-01T12:00:00Z"));
    server.wait_for_events(1);

    for path in [
        "/stats/abc",
        "/stats/-1",
        "/stats/+1",
        "/stats/1.0",
        "/stats/18446744073709551616",
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 400, "GET {path}: {}", response.text());
        let error = error_text(&response);
        assert!(
            error.contains("source id"),
            "GET {path}: error does not name the source id: {error}"
        );
    }

    let unknown = get(server.addr, "/stats/2");
    assert_eq!(unknown.status, 404, "GET /stats/2: {}", unknown.text());
    let error = error_text(&unknown);
    assert!(
        error.contains('2'),
        "GET /stats/2: error does not name the source: {error}"
    );

    let extra = get(server.addr, "/stats/1/extra");
    assert_eq!(extra.status, 404, "GET /stats/1/extra: {}", extra.text());
    error_text(&extra);
}

/// Sources in the burst, ranked by how often they are picked.
const BURST_SOURCES: u64 = 16;
const BURST_THREADS: u64 = 4;
const EVENTS_PER_THREAD: u64 = 800;

/// Picks source ranks 1..=[`BURST_SOURCES`] with probability proportional to 1/rank², so
/// rank 1 gets about 63% of the events. A fixed xorshift64 seed keeps every run the same.
struct ZipfSources {
    cumulative: Vec<f64>,
    state: u64,
}

impl ZipfSources {
    fn new(seed: u64) -> ZipfSources {
        let weights: Vec<f64> = (1..=BURST_SOURCES).map(|rank| 1.0 / (rank * rank) as f64).collect();
        let sum: f64 = weights.iter().sum();
        let mut running = 0.0;
        let cumulative = weights
            .iter()
            .map(|weight| {
                running += weight / sum;
                running
            })
            .collect();
        ZipfSources {
            cumulative,
            // xorshift64 never leaves 0, so the seed must not be 0.
            state: seed | 1,
        }
    }

    fn next_source(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let draw = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        let index = self
            .cumulative
            .iter()
            .position(|&bound| draw < bound)
            .unwrap_or(self.cumulative.len() - 1);
        100 + index as u64
    }
}

/// Events of one source that got a 202 response during the burst.
#[derive(Debug, Default, Clone)]
struct SourceTally {
    accepted: u64,
    first: Option<String>,
    last: Option<String>,
    types: BTreeMap<String, u64>,
}

impl SourceTally {
    fn record(&mut self, event_type: &str, timestamp: &str) {
        self.accepted += 1;
        if self.first.as_deref().map_or(true, |first| timestamp < first) {
            self.first = Some(timestamp.to_owned());
        }
        if self.last.as_deref().map_or(true, |last| timestamp > last) {
            self.last = Some(timestamp.to_owned());
        }
        *self.types.entry(event_type.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, other: &SourceTally) {
        self.accepted += other.accepted;
        for timestamp in other.first.iter().chain(&other.last) {
            if self.first.as_deref().map_or(true, |first| timestamp.as_str() < first) {
                self.first = Some(timestamp.clone());
            }
            if self.last.as_deref().map_or(true, |last| timestamp.as_str() > last) {
                self.last = Some(timestamp.clone());
            }
        }
        for (event_type, count) in &other.types {
            *self.types.entry(event_type.clone()).or_default() += count;
        }
    }
}

/// Responses one client thread received.
#[derive(Debug, Default)]
struct BurstReport {
    sources: HashMap<u64, SourceTally>,
    connections_opened: u64,
    /// Status and body of every response other than 202.
    unexpected_responses: Vec<String>,
}

/// Sends [`EVENTS_PER_THREAD`] events on one keep-alive connection, reconnecting only when
/// the server closes it, and tallies the 202 responses per source.
fn send_burst(addr: SocketAddr, thread: u64) -> BurstReport {
    let mut sources = ZipfSources::new(0x9E37_79B9_7F4A_7C15 ^ thread);
    let mut report = BurstReport::default();
    let mut connection: Option<BufReader<TcpStream>> = None;

    for index in 0..EVENTS_PER_THREAD {
        let source = sources.next_source();
        let event_type = if index % 3 == 0 { "Heartbeat" } else { "Metric" };
        // Steps of 7 seconds modulo one hour spread the timestamps out of send order.
        let second_of_hour = (index * 7 + thread * 131) % 3_600;
        let timestamp = format!("2024-06-01T10:{:02}:{:02}Z", second_of_hour / 60, second_of_hour % 60);
        let body = event(source, event_type, &timestamp);
        let request = encode(
            "POST",
            "/ingest",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );

        let reader = connection.get_or_insert_with(|| {
            report.connections_opened += 1;
            BufReader::new(connect(addr))
        });
        reader
            .get_mut()
            .write_all(&request)
            .expect("write a request on the keep-alive connection");
        let response = read_response(reader).unwrap_or_else(|| {
            panic!("thread {thread}: server closed the connection before responding to request {index}")
        });

        if response.status == 202 {
            report.sources.entry(source).or_default().record(event_type, &timestamp);
        } else {
            report
                .unexpected_responses
                .push(format!("{} {}", response.status, response.text()));
        }
        let closes = response
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        if closes {
            connection = None;
        }
    }
    report
}

#[test]
fn burst_totals_match_accepted() {
    let server = TestServer::start();
    let addr = server.addr;

    let handles: Vec<_> = (0..BURST_THREADS)
        .map(|thread| std::thread::spawn(move || send_burst(addr, thread)))
        .collect();
    let reports: Vec<BurstReport> = handles
        .into_iter()
        .map(|handle| handle.join().expect("burst client thread"))
        .collect();

    let mut tallies: BTreeMap<u64, SourceTally> = BTreeMap::new();
    for report in &reports {
        for (source, tally) in &report.sources {
            tallies.entry(*source).or_default().merge(tally);
        }
    }
    let accepted: u64 = tallies.values().map(|tally| tally.accepted).sum();
    let unexpected_responses: Vec<&String> = reports.iter().flat_map(|report| &report.unexpected_responses).collect();
    let connections: Vec<u64> = reports.iter().map(|report| report.connections_opened).collect();

    assert!(
        unexpected_responses.is_empty(),
        "{} responses were not 202, first ones: {:?}",
        unexpected_responses.len(),
        &unexpected_responses[..unexpected_responses.len().min(5)]
    );
    assert_eq!(
        connections,
        vec![1; BURST_THREADS as usize],
        "connections opened per client thread"
    );
    let top = tallies.values().map(|tally| tally.accepted).max().unwrap_or(0);
    assert!(
        top * 2 > accepted,
        "the busiest source sent {top} of {accepted} events, expected most"
    );

    let stats = server.wait_for_events(accepted);
    assert_eq!(stats["events_count"], accepted, "/stats: {stats}");
    assert_eq!(stats["sources_count"], tallies.len(), "/stats: {stats}");

    let mut per_source_sum = 0;
    for (source, tally) in &tallies {
        let stats = source_stats(&server, *source);
        let total = stats["total_events"].as_u64().unwrap_or(0);
        per_source_sum += total;
        assert_eq!(total, tally.accepted, "/stats/{source}: {stats}");
        assert_eq!(
            stats["first_event"].as_str(),
            tally.first.as_deref(),
            "/stats/{source}: {stats}"
        );
        assert_eq!(
            stats["last_event"].as_str(),
            tally.last.as_deref(),
            "/stats/{source}: {stats}"
        );
        assert_eq!(
            stats["event_types"],
            serde_json::json!(tally.types),
            "/stats/{source}: {stats}"
        );
    }
    assert_eq!(
        per_source_sum, accepted,
        "per-source totals do not add up to the accepted events"
    );
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name value` or `name{label="value",...} value`. Label values may contain the
/// escapes `\\`, `\"` and `\n`. A raw newline inside a label value splits the sample over
/// two lines, and neither half parses, so every line parsing proves there is none.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    let valid_name = name.chars().enumerate().all(|(index, character)| {
        character.is_ascii_alphabetic() || matches!(character, '_' | ':') || (index > 0 && character.is_ascii_digit())
    });
    if name.is_empty() || !valid_name {
        return Err(format!("invalid metric name {name:?}"));
    }

    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            if let Some(after_close) = rest.strip_prefix('}') {
                rest = after_close;
                break;
            }
            let (label, after_name) = rest.split_once("=\"").ok_or("label without =\"")?;
            let valid_label = !label.is_empty()
                && label
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '_');
            if !valid_label {
                return Err(format!("invalid label name {label:?}"));
            }
            let (value, after_value) = parse_label_value(after_name)?;
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} appears twice"));
            }
            rest = after_value.strip_prefix(',').unwrap_or(after_value);
        }
    }

    let value_text = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text.parse().map_err(|_| format!("value {text:?} is not a number"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads a quoted label value up to its closing quote and returns it unescaped, with the
/// text after the quote.
fn parse_label_value(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut characters = text.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return Ok((value, &text[index + 1..])),
            '\\' => match characters.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                other => return Err(format!("invalid escape \\{:?} in a label value", other.map(|(_, c)| c))),
            },
            other => value.push(other),
        }
    }
    Err("label value has no closing quote".to_owned())
}

/// Parses every line of a `/metrics` body that is not a comment or blank.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => samples.push(sample),
            Err(error) => panic!("/metrics line {}: {error}: {line:?}\n{text}", number + 1),
        }
    }
    samples
}

/// Returns the value of the one sample named `name` with exactly `labels`.
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let expected_labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(label, value)| ((*label).to_owned(), (*value).to_owned()))
        .collect();
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.name == name && sample.labels == expected_labels)
        .collect();
    assert_eq!(found.len(), 1, "samples of {name}{labels:?}: {found:?}");
    found[0].value
}

/// Polls `/metrics` until `name` (without labels) reaches `expected`. Returns the last text
/// and its samples even on timeout, so the caller's assertion shows the final value.
fn wait_for_metric(server: &TestServer, name: &str, expected: f64) -> (String, Vec<Sample>) {
    let started = Instant::now();
    loop {
        let text = get(server.addr, "/metrics").text();
        let samples = parse_metrics(&text);
        let reached = samples
            .iter()
            .any(|sample| sample.name == name && sample.labels.is_empty() && sample.value >= expected);
        if reached || started.elapsed() > METRICS_DEADLINE {
            return (text, samples);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Posts `body` with `content_type` and asserts the status.
fn post_expecting(server: &TestServer, content_type: &str, body: &[u8], status: u16) {
    let response = send(server.addr, "POST", "/ingest", &[("Content-Type", content_type)], body);
    assert_eq!(
        response.status,
        status,
        "POST ({content_type}) {}: {}",
        String::from_utf8_lossy(&body[..body.len().min(120)]),
        response.text()
    );
}

#[test]
fn metrics_count_mixed_traffic() {
    const MAX_BODY_BYTES: usize = 4_096;
    let server = TestServer::with_config(|config| {
        config.http.max_body_bytes = MAX_BODY_BYTES;
        let mut allowed = PluginParams::new();
        allowed.insert("allowed".to_owned(), serde_json::json!([1, 2]));
        config
            .validation
            .plugins
            .insert("SourceIdValidator".to_owned(), allowed);
    });
    let json = "application/json";
    let timestamp = "2024-03-01T12:00:00Z";

    let accepted = [
        event(1, "Heartbeat", timestamp),
        event(2, "Login", timestamp),
        event(1, "x", timestamp),
    ];
    let invalid_events = [
        r#"{"sourceId":1,"timestamp":"2024-03-01T12:00:00Z"}"#.to_owned(),
        event(1, "Heartbeat", "2024-03-01T12:00:00"),
        r#"{"sourceId":-1,"type":"Heartbeat","timestamp":"2024-03-01T12:00:00Z"}"#.to_owned(),
        event(1, "", timestamp),
    ];
    let invalid_bodies = [
        r#"{"sourceId":"#.to_owned(),
        "42".to_owned(),
        format!("{}{}", accepted[0], accepted[1]),
    ];
    let unlisted_sources = [event(3, "Heartbeat", timestamp), event(4, "Heartbeat", timestamp)];
    let too_large = format!("{}{}", " ".repeat(MAX_BODY_BYTES), accepted[0]);

    for body in &accepted {
        post_expecting(&server, json, body.as_bytes(), 202);
    }
    for body in invalid_events.iter().chain(&invalid_bodies).chain(&unlisted_sources) {
        post_expecting(&server, json, body.as_bytes(), 400);
    }
    post_expecting(&server, "text/plain", accepted[0].as_bytes(), 415);
    post_expecting(&server, json, too_large.as_bytes(), 413);
    let ingest_requests = accepted.len() + invalid_events.len() + invalid_bodies.len() + unlisted_sources.len() + 2;

    let accepted_count = accepted.len() as f64;
    let (text, samples) = wait_for_metric(&server, "telemetron_events_processed_total", accepted_count);
    let rejected = |reason: &str| {
        metric(
            &samples,
            "telemetron_ingest_events_rejected_total",
            &[("reason", reason)],
        )
    };

    assert_eq!(
        metric(&samples, "telemetron_ingest_events_accepted_total", &[]),
        accepted_count
    );
    assert_eq!(
        rejected("invalid_event"),
        invalid_events.len() as f64,
        "reason invalid_event"
    );
    assert_eq!(
        rejected("invalid_body"),
        invalid_bodies.len() as f64,
        "reason invalid_body"
    );
    assert_eq!(rejected("validator"), unlisted_sources.len() as f64, "reason validator");
    assert_eq!(rejected("unsupported_media_type"), 1.0, "reason unsupported_media_type");
    assert_eq!(rejected("too_large"), 1.0, "reason too_large");
    assert_eq!(rejected("overloaded"), 0.0, "reason overloaded");
    assert_eq!(rejected("draining"), 0.0, "reason draining");
    assert_eq!(
        metric(&samples, "telemetron_events_processed_total", &[]),
        accepted_count
    );
    assert_eq!(metric(&samples, "telemetron_events_dead_lettered_total", &[]), 0.0);
    assert_eq!(
        metric(&samples, "telemetron_http_requests_total", &[("endpoint", "ingest")]),
        ingest_requests as f64,
        "requests sent to /ingest"
    );

    let ingest_durations = |status: &str| {
        metric(
            &samples,
            "telemetron_http_requests_duration_seconds_count",
            &[("endpoint", "ingest"), ("status", status)],
        )
    };
    assert_eq!(
        ingest_durations("202"),
        accepted_count,
        "duration samples of 202 responses"
    );
    let bad_requests = invalid_events.len() + invalid_bodies.len() + unlisted_sources.len();
    assert_eq!(
        ingest_durations("400"),
        bad_requests as f64,
        "duration samples of 400 responses"
    );
    assert_eq!(ingest_durations("413"), 1.0, "duration samples of 413 responses");
    assert_eq!(ingest_durations("415"), 1.0, "duration samples of 415 responses");

    let source_labels: Vec<&Sample> = samples
        .iter()
        .filter(|sample| sample.labels.keys().any(|label| label.contains("source")))
        .collect();
    assert!(
        source_labels.is_empty(),
        "samples with a source label: {source_labels:?}"
    );
    assert!(!text.contains("source_id"), "/metrics mentions source_id:\n{text}");
}
