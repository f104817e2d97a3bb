//! Batch workers: retries, the dead-letter file and its counters, with a test processor
//! that fails on demand.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use telemetron::config::PluginParams;
use telemetron::ingest::event::Event;
use telemetron::plugins::{PluginContext, Processor, ProcessorError, ProcessorRegistration};

use crate::support::client::event;
use crate::support::{get, post_json, TestServer};

/// Fails every batch holding an event of type `Poison`; counts its calls on such batches.
struct PoisonProcessor {
    failures_before_success: u32,
    calls: AtomicU32,
}

impl Processor for PoisonProcessor {
    fn process(&self, batch: &[Event]) -> Result<(), ProcessorError> {
        if !batch.iter().any(|e| e.event_type.as_str() == "Poison") {
            return Ok(());
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures_before_success {
            return Err(ProcessorError(format!("poison event, call {call}")));
        }
        Ok(())
    }
}

fn build_poison(params: &PluginParams, _: &PluginContext) -> Result<Arc<dyn Processor>, String> {
    let failures = params
        .get("failures_before_success")
        .and_then(|v| v.as_u64())
        .unwrap_or(u64::from(u32::MAX));
    Ok(Arc::new(PoisonProcessor {
        failures_before_success: u32::try_from(failures).unwrap_or(u32::MAX),
        calls: AtomicU32::new(0),
    }))
}

inventory::submit! {
    ProcessorRegistration { name: "TestPoisonProcessor", build: build_poison }
}

fn server_with_poison(failures_before_success: u64) -> TestServer {
    TestServer::with_config(|config| {
        config.processor.retry_attempts = 2;
        config.processor.workers = 1;
        let mut params = PluginParams::new();
        params.insert("failures_before_success".into(), failures_before_success.into());
        config.processing.plugins.insert("TestPoisonProcessor".into(), params);
    })
}

fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("series {series} not found in:\n{metrics}"))
}

#[test]
fn failing_batch_goes_to_dead_letter_file() {
    let server = server_with_poison(u64::MAX);
    let response = post_json(server.addr, &event(9, "Poison", "2024-03-01T12:00:00Z"));
    assert_eq!(response.status, 202, "{}", response.text());

    let lines = server.wait_for_dead_letters(1);
    assert_eq!(lines[0]["event"]["sourceId"], 9);
    assert_eq!(lines[0]["event"]["type"], "Poison");
    assert_eq!(lines[0]["event"]["timestamp"], "2024-03-01T12:00:00Z");
    assert_eq!(lines[0]["failures"][0]["plugin"], "TestPoisonProcessor");
    assert_eq!(lines[0]["failures"][0]["attempts"], 3, "1 call + retry_attempts = 2");
    let error = lines[0]["failures"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("poison event"), "error text: {error}");

    let summary = server.stop();
    assert_eq!(summary.accepted, 1);
    assert_eq!(summary.dead_lettered, 1);
    assert_eq!(summary.processed, 0);
}

/// Polls `/metrics` until `series` shows `expected`, returning the last text.
fn wait_for_metric(server: &TestServer, series: &str, expected: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = get(server.addr, "/metrics").text();
        if metrics.contains(&format!("{series} {expected}")) || std::time::Instant::now() > deadline {
            return metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn dead_letter_counters_reach_metrics() {
    let server = server_with_poison(u64::MAX);
    assert_eq!(post_json(server.addr, &event(9, "Poison", "2024-03-01T12:00:00Z")).status, 202);
    server.wait_for_dead_letters(1);
    assert_eq!(post_json(server.addr, &event(9, "Heartbeat", "2024-03-01T12:00:00Z")).status, 202);

    let metrics = wait_for_metric(&server, "telemetron_events_processed_total", 1.0);
    assert_eq!(metric_value(&metrics, "telemetron_events_processed_total"), 1.0, "{metrics}");
    assert_eq!(metric_value(&metrics, "telemetron_events_dead_lettered_total"), 1.0, "{metrics}");
    assert_eq!(
        metric_value(&metrics, r#"telemetron_processor_plugin_errors_total{plugin="TestPoisonProcessor"}"#),
        3.0,
        "{metrics}"
    );
    let summary = server.stop();
    assert_eq!(summary.accepted, 2);
    assert_eq!(summary.processed, 1);
    assert_eq!(summary.dead_lettered, 1);
}

#[test]
fn retry_success_avoids_dead_letter() {
    let server = server_with_poison(2);
    assert_eq!(post_json(server.addr, &event(4, "Poison", "2024-03-01T12:00:00Z")).status, 202);
    server.wait_for_events(1);
    let text = std::fs::read_to_string(server.dead_letter_path()).unwrap_or_default();

    let summary = server.stop();
    assert_eq!(summary.processed, 1, "third call succeeds within retry_attempts = 2");
    assert_eq!(summary.dead_lettered, 0);
    assert!(text.is_empty(), "nothing dead-lettered: {text}");
}

#[test]
fn stats_appear_within_batch_timeout() {
    let server = TestServer::with_config(|config| {
        config.processor.batch_size = 1000;
        config.processor.batch_timeout = 50;
    });
    assert_eq!(post_json(server.addr, &event(1, "Heartbeat", "2024-03-01T12:00:00Z")).status, 202);
    let started = std::time::Instant::now();
    server.wait_for_events(1);
    // Generous bound for a loaded machine; without the timeout flush the batch of 1 would
    // wait for 999 more events and this would fail at the harness deadline.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Nice values of this process's threads named after the batch workers.
fn worker_nice_values() -> Vec<i64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            if !name.starts_with("telemetron-work") {
                return None;
            }
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            // Field 19 is the nice value; the fields after the `)` that ends the name start at 3.
            stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()
        })
        .collect()
}

#[test]
fn workers_take_configured_nice_value() {
    // Lowering the priority needs no privilege, and no other test server uses 7.
    let server = TestServer::with_config(|config| {
        config.processor.workers = 1;
        config.processor.worker_nice = 7;
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !worker_nice_values().contains(&7) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }

    assert!(worker_nice_values().contains(&7), "worker nice values: {:?}", worker_nice_values());
    drop(server);
}
