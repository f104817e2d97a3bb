//! Shutdown of the real binary. On SIGTERM or SIGINT while a client is sending, it turns
//! `/readyz` to 503, responds to further events with 503 or closes the connection, drains,
//! logs totals that include every event the client saw accepted, and exits 0. It also drains on
//! a SIGTERM sent right after start-up, and without waiting out a long batch timeout.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::client::{encode, read_response};
use crate::support::{get, post_json};
use crate::support::process::{ServiceProcess, WorkDir};

/// The batch timeout outlasts the drain delay, and the batch size exceeds the number of
/// events the test sends. So the workers still keep accepted events in memory when the
/// queues close, and the totals show whether the drain processed them.
const CONFIG: &str = r#"
[http]
port = 0
drain_delay_ms = 300

[processor]
workers = 2
pin_workers = false
batch_size = 1000
batch_timeout = 1000

[log]
format = "json"
"#;

const EVENT: &str = r#"{"sourceId":1,"type":"Heartbeat","timestamp":"2024-01-01T00:00:00Z"}"#;

/// 202 responses the client must see before the signal, so events are in flight when the
/// drain starts.
const ACCEPTED_BEFORE_SIGNAL: u64 = 200;

/// Maximum wait for those first 202 responses.
const FIRST_ACCEPTS_DEADLINE: Duration = Duration::from_secs(5);

/// Bounds on the sending client, whatever the server does.
const CLIENT_TIME_LIMIT: Duration = Duration::from_secs(10);
const CLIENT_REQUEST_LIMIT: u64 = 50_000;

/// Bound on `/readyz` polling after the signal.
const READYZ_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Pause between `/readyz` polls, so the poller leaves CPU time to the server and the
/// sending client. The 300 ms drain window still fits many polls.
const READYZ_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Maximum wait for a worker to take the queued events.
const QUEUE_DEADLINE: Duration = Duration::from_secs(5);

/// Pause between `/metrics` polls while waiting for the queue to empty.
const QUEUE_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Timeout for connecting, reading and writing on one client connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum number of unexpected responses kept for the failure message. The rest are only
/// counted.
const MAX_UNEXPECTED_SAMPLES: usize = 5;

/// Why the sending client stopped.
#[derive(Debug, PartialEq, Eq)]
enum ClientEnd {
    /// A new connection failed, with this error kind.
    ConnectFailed(std::io::ErrorKind),
    TimeLimit,
    RequestLimit,
    /// The test stopped it.
    Stopped,
}

/// What the sending client saw.
#[derive(Debug)]
struct ClientReport {
    requests: u64,
    accepted: u64,
    unavailable: u64,
    closed: u64,
    unexpected: u64,
    unexpected_samples: Vec<String>,
    end: ClientEnd,
}

/// What the `/readyz` poller saw after the signal.
#[derive(Debug, Default)]
struct ReadyzReport {
    ready: u64,
    draining: u64,
    other: Vec<String>,
}

fn open(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// POSTs [`EVENT`] over keep-alive connections, opening a new one whenever the server
/// closes the current one, until a connection cannot be opened, a limit is reached or
/// `stop` is set. Sends on `first_accepts` once [`ACCEPTED_BEFORE_SIGNAL`] events are
/// accepted.
fn send_events(addr: SocketAddr, stop: &AtomicBool, first_accepts: mpsc::Sender<()>) -> ClientReport {
    let request = encode("POST", "/ingest", &[("Content-Type", "application/json")], EVENT.as_bytes());
    let started = Instant::now();
    let mut report = ClientReport {
        requests: 0,
        accepted: 0,
        unavailable: 0,
        closed: 0,
        unexpected: 0,
        unexpected_samples: Vec::new(),
        end: ClientEnd::Stopped,
    };
    let mut connection: Option<BufReader<TcpStream>> = None;

    loop {
        if stop.load(Ordering::SeqCst) {
            report.end = ClientEnd::Stopped;
            break;
        }
        if started.elapsed() >= CLIENT_TIME_LIMIT {
            report.end = ClientEnd::TimeLimit;
            break;
        }
        if report.requests >= CLIENT_REQUEST_LIMIT {
            report.end = ClientEnd::RequestLimit;
            break;
        }

        let reader = match connection.as_mut() {
            Some(reader) => reader,
            None => match open(addr) {
                Ok(reader) => connection.insert(reader),
                Err(error) => {
                    report.end = ClientEnd::ConnectFailed(error.kind());
                    break;
                }
            },
        };

        report.requests += 1;
        if reader.get_mut().write_all(&request).is_err() {
            report.closed += 1;
            connection = None;
            continue;
        }
        let Some(response) = read_response(reader) else {
            report.closed += 1;
            connection = None;
            continue;
        };

        match response.status {
            202 => {
                report.accepted += 1;
                if report.accepted == ACCEPTED_BEFORE_SIGNAL {
                    let _ = first_accepts.send(());
                }
            }
            503 if response.header("retry-after").is_some() => report.unavailable += 1,
            _ => {
                report.unexpected += 1;
                if report.unexpected_samples.len() < MAX_UNEXPECTED_SAMPLES {
                    report.unexpected_samples.push(format!(
                        "{} (Retry-After: {:?}) {}",
                        response.status,
                        response.header("retry-after"),
                        response.text()
                    ));
                }
            }
        }
        if response
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
        {
            connection = None;
        }
    }
    report
}

/// GETs `/readyz`, each time on a new connection, until a connection cannot be opened or
/// [`READYZ_TIME_LIMIT`] passes.
fn poll_readyz(addr: SocketAddr) -> ReadyzReport {
    let request = encode("GET", "/readyz", &[], b"");
    let started = Instant::now();
    let mut report = ReadyzReport::default();

    while started.elapsed() < READYZ_TIME_LIMIT {
        let Ok(mut reader) = open(addr) else { break };
        if reader.get_mut().write_all(&request).is_err() {
            continue;
        }
        // The listener may close between connect and response, and the next connect then fails.
        if let Some(response) = read_response(&mut reader) {
            match response.status {
                200 => report.ready += 1,
                503 if response.text().contains("draining") => report.draining += 1,
                _ => report.other.push(format!("{} {}", response.status, response.text())),
            }
        }
        std::thread::sleep(READYZ_POLL_INTERVAL);
    }
    report
}

/// Polls `/metrics` until shard 0 has no queued events, which means its worker has taken
/// them all into the batch it is filling.
fn wait_until_shard_0_empty(addr: SocketAddr) {
    let deadline = Instant::now() + QUEUE_DEADLINE;
    loop {
        let metrics = get(addr, "/metrics").text();
        let depth: Option<f64> = metrics
            .lines()
            .find_map(|line| line.strip_prefix(r#"telemetron_queue_depth_events{shard="0"} "#))
            .and_then(|value| value.trim().parse().ok());
        if depth == Some(0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shard 0 queue depth is {depth:?} after {QUEUE_DEADLINE:?}; /metrics:\n{metrics}"
        );
        std::thread::sleep(QUEUE_POLL_INTERVAL);
    }
}

/// Starts the binary, sends events from a client thread, delivers `signal` once some are
/// accepted, and checks the drain.
fn drains_on_signal(signal: libc::c_int, signal_name: &str) {
    let dir = WorkDir::new();
    dir.write("telemetron.toml", CONFIG);
    let mut service = dir.spawn(&["--config", "telemetron.toml"], &[]);
    let addr = service.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (first_accepts, first_accepts_seen) = mpsc::channel();
    let client_stop = stop.clone();
    let client = std::thread::spawn(move || send_events(addr, &client_stop, first_accepts));

    // The sender drops if the client ends early, which ends this wait too.
    if first_accepts_seen.recv_timeout(FIRST_ACCEPTS_DEADLINE).is_err() {
        stop.store(true, Ordering::SeqCst);
        let report = client.join().expect("client thread");
        panic!(
            "the client did not see {ACCEPTED_BEFORE_SIGNAL} 202 responses within {FIRST_ACCEPTS_DEADLINE:?}: {report:#?}\nstderr:\n{}",
            service.stderr_text()
        );
    }

    service.signal(signal);
    let readyz = std::thread::spawn(move || poll_readyz(addr));
    let client = client.join().expect("client thread");
    let readyz = readyz.join().expect("readyz thread");

    let requested = service.wait_for_log("shutdown requested");
    let complete = service.wait_for_log("shutdown complete");
    let status = service.wait_for_exit();
    check_drain(&service, &client, &readyz, &requested, &complete);
    assert_eq!(requested["signal"], signal_name, "shutdown requested line: {requested}");
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", service.stderr_text());
}

fn check_drain(
    service: &ServiceProcess,
    client: &ClientReport,
    readyz: &ReadyzReport,
    requested: &serde_json::Value,
    complete: &serde_json::Value,
) {
    // A connection still in the listen backlog when the listener closes is reset.
    assert!(
        matches!(
            client.end,
            ClientEnd::ConnectFailed(std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset)
        ),
        "the client should stop because the listener closed: {client:#?}"
    );
    assert_eq!(client.unexpected, 0, "responses other than 202 and 503 with Retry-After: {client:#?}");
    assert!(
        readyz.draining > 0,
        "/readyz never returned 503 draining after the signal: {readyz:#?}\nstderr:\n{}",
        service.stderr_text()
    );
    assert!(readyz.other.is_empty(), "unexpected /readyz responses: {readyz:#?}");

    let accepted = complete["accepted"].as_u64();
    let processed = complete["processed"].as_u64().unwrap_or(0);
    let dead_lettered = complete["dead_lettered"].as_u64().unwrap_or(0);
    assert_eq!(
        accepted,
        Some(client.accepted),
        "accepted total vs. the client's 202 count: {complete}\nclient: {client:#?}\nsignal: {requested}"
    );
    assert_eq!(
        accepted,
        Some(processed + dead_lettered),
        "accepted vs. processed + dead_lettered: {complete}"
    );
}

#[test]
fn sigterm_drains_while_sending() {
    drains_on_signal(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_drains_while_sending() {
    drains_on_signal(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_right_after_listening_drains() {
    // A SIGTERM that arrives before the service installs its handler kills the process.
    // That window is short and a single run may miss it, so the test repeats the run.
    const RUNS: usize = 10;

    for run in 0..RUNS {
        let dir = WorkDir::new();
        dir.write(
            "telemetron.toml",
            "[http]\nport = 0\n\n[processor]\nworkers = 1\npin_workers = false\n\n[log]\nformat = \"json\"\n",
        );
        let mut service = dir.spawn(&["--config", "telemetron.toml"], &[]);
        service.signal(libc::SIGTERM);
        let status = service.wait_for_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "run {run}: exit status after SIGTERM right after the listening line ({status}); stderr:\n{}",
            service.stderr_text()
        );
    }
}

#[test]
fn drain_skips_batch_timeout() {
    const EVENTS: u64 = 10;
    // Far longer than the drain may take. A worker waiting to fill a batch must flush it as
    // soon as the queues close, not when this timeout ends.
    const BATCH_TIMEOUT_MS: u64 = 60_000;
    const DRAIN_LIMIT: Duration = Duration::from_secs(5);

    let dir = WorkDir::new();
    dir.write(
        "telemetron.toml",
        &format!(
            "[http]\nport = 0\n\n[processor]\nworkers = 1\npin_workers = false\nbatch_size = 1000\nbatch_timeout = {BATCH_TIMEOUT_MS}\n\n[log]\nformat = \"json\"\n"
        ),
    );
    let mut service = dir.spawn(&["--config", "telemetron.toml"], &[]);
    for _ in 0..EVENTS {
        let response = post_json(service.addr, EVENT);
        assert_eq!(response.status, 202, "POST /ingest: {}", response.text());
    }
    // A worker that has not yet taken the events when the queues close never starts the
    // timed wait, so the test would pass without checking it.
    wait_until_shard_0_empty(service.addr);

    service.signal(libc::SIGTERM);
    let status = service.wait_for_exit_within(DRAIN_LIMIT);
    assert!(
        status.is_some(),
        "still running {DRAIN_LIMIT:?} after SIGTERM with batch_timeout = {BATCH_TIMEOUT_MS} ms; stderr:\n{}",
        service.stderr_text()
    );
    let complete = service.wait_for_log("shutdown complete");
    assert_eq!(complete["processed"], EVENTS, "shutdown complete line: {complete}");
}
