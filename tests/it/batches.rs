//! Batch bodies: JSON arrays and NDJSON, per-item validation, the error cap, the batch size
//! limit and exact backpressure inside a batch.

use std::sync::{Arc, Condvar, Mutex};

use telemetron::config::PluginParams;
use telemetron::ingest::event::Event;
use telemetron::plugins::{PluginContext, Processor, ProcessorError, ProcessorRegistration};

use crate::support::client::event;
use crate::support::{post_json, send, TestServer};

const TS: &str = "2024-06-01T00:00:00Z";

fn post_ndjson(server: &TestServer, body: &str) -> crate::support::Response {
    send(
        server.addr,
        "POST",
        "/ingest",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
}

#[test]
fn array_accepts_valid_items_beside_invalid_ones() {
    let server = TestServer::start();
    let body = format!(
        "[{}, {{\"sourceId\": \"x\", \"type\": \"A\", \"timestamp\": \"{TS}\"}}, {}, 5]",
        event(1, "A", TS),
        event(2, "B", TS)
    );
    let response = post_json(server.addr, &body);
    assert_eq!(response.status, 202, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["rejected"], 2, "{answer}");
    assert_eq!(answer["errors"][0]["index"], 1, "{answer}");
    assert!(answer["errors"][0]["error"].as_str().unwrap_or("").contains("sourceId"), "{answer}");
    assert_eq!(answer["errors"][1]["index"], 3, "{answer}");
    server.wait_for_events(2);
}

#[test]
fn batch_response_keeps_documented_key_order() {
    let server = TestServer::start();
    let body = format!("[{}, 5]", event(1, "A", TS));
    let response = post_json(server.addr, &body);
    let text = response.text();

    assert_eq!(response.status, 202, "{text}");
    assert!(text.starts_with(r#"{"accepted":1,"rejected":1,"errors":[{"index":1,"error":"#), "{text}");
    server.wait_for_events(1);
}

#[test]
fn ndjson_counts_non_blank_lines() {
    let server = TestServer::start();
    let body = format!(
        "{}\r\n\r\n   \n{}\nnot json\n{}\n",
        event(1, "A", TS),
        event(2, "A", TS),
        event(3, "A", TS)
    );
    let response = post_ndjson(&server, &body);
    assert_eq!(response.status, 202, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    assert_eq!(answer["errors"][0]["index"], 2, "blank lines are not items: {answer}");
    server.wait_for_events(3);
}

#[test]
fn all_rejected_batch_is_400_with_details() {
    let server = TestServer::start();
    let response = post_json(server.addr, r#"[{"sourceId": -1}, 7]"#);
    assert_eq!(response.status, 400, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["rejected"], 2, "{answer}");
    assert_eq!(answer["errors"].as_array().map(Vec::len), Some(2), "{answer}");
}

#[test]
fn truncated_array_stores_nothing() {
    let server = TestServer::start();
    let body = format!("[{}, {}", event(1, "A", TS), event(2, "A", TS));
    let response = post_json(server.addr, &body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["error"].is_string());
    assert_eq!(post_json(server.addr, &event(9, "A", TS)).status, 202);
    let stats = server.wait_for_events(1);
    assert_eq!(stats["sources_count"], 1, "only the later single event is stored: {stats}");
}

#[test]
fn error_list_is_capped() {
    let server = TestServer::start();
    let items: Vec<String> = (0..250).map(|_| "{}".to_owned()).collect();
    let body = format!("[{},{}]", items.join(","), event(1, "A", TS));
    let response = post_json(server.addr, &body);
    assert_eq!(response.status, 202, "{}", response.text());
    let answer = response.json();
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["rejected"], 250);
    assert_eq!(
        answer["errors"].as_array().map(Vec::len),
        Some(telemetron::http::MAX_LISTED_ERRORS)
    );
    assert_eq!(answer["errors_omitted"], 250 - telemetron::http::MAX_LISTED_ERRORS);
}

#[test]
fn too_many_events_is_413() {
    let server = TestServer::with_config(|config| config.http.max_batch_events = 3);
    let items: Vec<String> = (0..4).map(|i| event(i, "A", TS)).collect();
    let response = post_json(server.addr, &format!("[{}]", items.join(",")));
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.json()["error"].as_str().unwrap_or("").contains('3'));
    let response = post_ndjson(&server, &items.join("\n"));
    assert_eq!(response.status, 413, "{}", response.text());
    let at_limit = post_json(server.addr, &format!("[{}]", items[..3].join(",")));
    assert_eq!(at_limit.status, 202, "{}", at_limit.text());
}

#[test]
fn empty_batch_is_400() {
    let server = TestServer::start();
    assert_eq!(post_json(server.addr, "[]").status, 400);
    assert_eq!(post_ndjson(&server, "\n \r\n").status, 400);
}

/// Blocks every call until the test opens the gate, so queued events stay queued.
struct GateProcessor;

static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

impl Processor for GateProcessor {
    fn process(&self, _batch: &[Event]) -> Result<(), ProcessorError> {
        let (open, changed) = &GATE;
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            let (guard, _) = changed
                .wait_timeout(open, std::time::Duration::from_secs(30))
                .unwrap_or_else(|e| e.into_inner());
            open = guard;
        }
        Ok(())
    }
}

fn build_gate(_: &PluginParams, _: &PluginContext) -> Result<Arc<dyn Processor>, String> {
    Ok(Arc::new(GateProcessor))
}

inventory::submit! {
    ProcessorRegistration { name: "TestBatchGateProcessor", build: build_gate }
}

/// Opens [`GATE`] when dropped, so a failing test still lets the server drain and stop.
struct OpenGateOnDrop;

impl Drop for OpenGateOnDrop {
    fn drop(&mut self) {
        let (open, changed) = &GATE;
        *open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        changed.notify_all();
    }
}

#[test]
fn backpressure_inside_batch_is_exact() {
    let server = TestServer::with_config(|config| {
        config.processor.workers = 1;
        config.processor.channel_capacity = 7;
        config.processor.batch_size = 1000;
        config.processor.batch_timeout = 1;
        config
            .processing
            .plugins
            .insert("TestBatchGateProcessor".into(), PluginParams::new());
    });
    // Declared after the server, so on a panic it drops (and opens) first.
    let gate = OpenGateOnDrop;

    let mut accepted_total = 0u64;
    let mut saw_partial = false;
    let mut saw_503 = false;
    for request in 0..20u64 {
        let items: Vec<String> = (0..5).map(|i| event(request * 10 + i, "A", TS)).collect();
        let response = post_json(server.addr, &format!("[{}]", items.join(",")));
        let answer = response.json();
        let accepted = answer["accepted"].as_u64().expect("accepted is a number");
        let rejected = answer["rejected"].as_u64().expect("rejected is a number");
        assert_eq!(accepted + rejected, 5, "every item has an outcome: {answer}");
        accepted_total += accepted;
        match response.status {
            202 if rejected > 0 => {
                saw_partial = true;
                let indexes: Vec<u64> = answer["errors"]
                    .as_array()
                    .expect("errors list")
                    .iter()
                    .map(|e| e["index"].as_u64().expect("index"))
                    .collect();
                let expected: Vec<u64> = (accepted..5).collect();
                assert_eq!(indexes, expected, "the queued items are a prefix: {answer}");
            }
            202 => {}
            503 => {
                assert_eq!(accepted, 0, "{answer}");
                assert!(response.header("retry-after").is_some(), "503 carries Retry-After");
                saw_503 = true;
                break;
            }
            other => panic!("unexpected status {other}: {answer}"),
        }
    }
    assert!(saw_partial, "a batch was partly queued before the queue filled");
    assert!(saw_503, "the full queue answered 503");

    drop(gate);
    server.wait_for_events(accepted_total);
    let summary = server.stop();
    assert_eq!(summary.accepted, accepted_total);
    assert_eq!(summary.processed, accepted_total);
}
