//! A bounded flood well beyond capacity: every answer is 202 or 503 with `Retry-After`,
//! `/healthz` keeps answering, memory stays bounded, and afterwards `/stats` equals the
//! number of accepted events exactly.

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use telemetron::config::PluginParams;
use telemetron::ingest::event::Event;
use telemetron::plugins::{PluginContext, Processor, ProcessorError, ProcessorRegistration};

use crate::support::client::{connect, encode, event, read_response};
use crate::support::{get, TestServer};

/// Flood length; the test stops by itself after this.
const FLOOD_TIME: Duration = Duration::from_secs(3);
/// Most requests one client thread sends.
const MAX_REQUESTS_PER_CLIENT: u64 = 20_000;
const CLIENTS: u64 = 6;
const EVENTS_PER_REQUEST: u64 = 50;
/// Resident memory bound for the whole test process (server and clients) during the flood.
const RSS_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// Takes 2 ms per batch so that a few client threads overrun the queues.
struct SlowProcessor;

impl Processor for SlowProcessor {
    fn process(&self, _batch: &[Event]) -> Result<(), ProcessorError> {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    }
}

fn build_slow(_: &PluginParams, _: &PluginContext) -> Result<Arc<dyn Processor>, String> {
    Ok(Arc::new(SlowProcessor))
}

inventory::submit! {
    ProcessorRegistration { name: "TestSlowProcessor", build: build_slow }
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn flood_answers_202_or_503_and_loses_nothing() {
    let server = TestServer::with_config(|config| {
        config.processor.workers = 2;
        config.processor.channel_capacity = 2_000;
        config.processor.batch_size = 100;
        config
            .processing
            .plugins
            .insert("TestSlowProcessor".into(), PluginParams::new());
    });
    let addr = server.addr;
    let accepted = Arc::new(AtomicU64::new(0));
    let overloaded = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let (accepted, overloaded) = (accepted.clone(), overloaded.clone());
            std::thread::spawn(move || {
                let items: Vec<String> = (0..EVENTS_PER_REQUEST)
                    .map(|i| event(client * 1000 + i, "Flood", "2024-06-01T00:00:00Z"))
                    .collect();
                let request = encode(
                    "POST",
                    "/ingest",
                    &[("Content-Type", "application/json")],
                    format!("[{}]", items.join(",")).as_bytes(),
                );
                let mut stream = connect(addr);
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                for _ in 0..MAX_REQUESTS_PER_CLIENT {
                    if started.elapsed() > FLOOD_TIME {
                        break;
                    }
                    stream.write_all(&request).expect("send request");
                    let response = read_response(&mut reader).expect("every request is answered");
                    let answer = response.json();
                    match response.status {
                        202 => {
                            accepted.fetch_add(answer["accepted"].as_u64().expect("accepted"), Ordering::Relaxed);
                        }
                        503 => {
                            assert!(response.header("retry-after").is_some(), "503 without Retry-After");
                            overloaded.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("flood got status {other}: {answer}"),
                    }
                }
            })
        })
        .collect();

    let health_stop = stop.clone();
    let health = std::thread::spawn(move || {
        let mut peak_rss = 0;
        let mut checks = 0u32;
        while !health_stop.load(Ordering::Relaxed) {
            let requested = Instant::now();
            let response = get(addr, "/healthz");
            assert_eq!(response.status, 200, "/healthz during the flood");
            assert!(requested.elapsed() < Duration::from_secs(2), "/healthz took {:?}", requested.elapsed());
            peak_rss = peak_rss.max(resident_bytes());
            checks += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (checks, peak_rss)
    });

    for client in clients {
        client.join().expect("client thread");
    }
    stop.store(true, Ordering::Relaxed);
    let (checks, peak_rss) = health.join().expect("health thread");

    let accepted = accepted.load(Ordering::Relaxed);
    assert!(checks > 0, "/healthz was checked during the flood");
    assert!(overloaded.load(Ordering::Relaxed) > 0, "the flood exceeded capacity");
    assert!(peak_rss < RSS_LIMIT_BYTES, "resident memory reached {peak_rss} bytes");
    let stats = server.wait_for_events(accepted);
    assert_eq!(stats["events_count"], accepted);
    let summary = server.stop();
    assert_eq!(summary.accepted, accepted);
    assert_eq!(summary.processed, accepted);
}
