//! Telemetron scraped by a real Prometheus server, Debian's `prometheus` package (2.42),
//! which `.ci/run` installs. The test proves that real Prometheus parses `/metrics` (the
//! target is up with no scrape error), that counters arrive with the values the service
//! reports, and that every query of the Grafana dashboard is valid PromQL with results.
//!
//! Prometheus and the service both listen on 127.0.0.1, and Prometheus scrapes only the
//! test server.

use std::fs::File;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::dashboard::{load_dashboard, panel_queries, parse_query};
use crate::support::client::{encode, event, read_response, READ_TIMEOUT};
use crate::support::{get, post_json, Response, TestServer};

const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";
const PROMTOOL_BINARY: &str = "/usr/bin/promtool";

/// The shipped scrape configuration, checked with promtool.
const SHIPPED_SCRAPE_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus.yml");

/// Maximum wait for Prometheus to start, to scrape a value or to return data for a query.
/// Start-up and the first scrapes take a few seconds, and the rest is margin for a machine
/// loaded by parallel tests.
const PROMETHEUS_DEADLINE: Duration = Duration::from_secs(60);

/// Maximum wait for Prometheus to exit after SIGTERM before it gets SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Pause between two polls of the Prometheus API.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Events sent in one JSON array, then one by one.
const BATCH_EVENTS: u64 = 20;
const SINGLE_EVENTS: u64 = 5;

/// Fails the test, naming the install step, when a Debian package binary is missing.
fn require_binary(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run `bash .ci/run`, which installs Debian's prometheus package \
         (`apt-get install --no-install-recommends prometheus`), then rerun this test"
    );
}

/// A Prometheus server on 127.0.0.1 with its storage, configuration and log in a temporary
/// directory. Dropping it stops the process by its PID and removes the directory.
struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `target` every second and waits until `/-/ready` returns
    /// 200. Fails the test if Prometheus exits or is not ready within
    /// [`PROMETHEUS_DEADLINE`].
    fn start(target: SocketAddr) -> PrometheusServer {
        require_binary(PROMETHEUS_BINARY);
        let dir = tempfile::tempdir().expect("create a temp dir for Prometheus");

        // Prometheus rejects a scrape timeout above the interval. Rendering /metrics takes
        // milliseconds.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: telemetron\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{target}\"]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the Prometheus configuration");
        let storage_path = dir.path().join("data");

        // Prometheus picks no port by itself, so the test takes a free one from the kernel
        // and releases it. If another process takes it in between, Prometheus exits with a
        // bind error, and the readiness wait below reports that with the log.
        let addr = free_loopback_port();

        // Output goes to a file that failure messages show, so a passing run stays quiet.
        let log = File::create(dir.path().join("prometheus.log")).expect("create the Prometheus log file");
        let child = Command::new(PROMETHEUS_BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", storage_path.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("duplicate the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {PROMETHEUS_BINARY}: {error}"));

        let mut prometheus = PrometheusServer { child, addr, dir };
        prometheus.wait_until_ready();
        prometheus
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        let mut last_response = "no connection".to_owned();
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "Prometheus exited with {status} before it was ready; log:\n{}",
                    self.log()
                );
            }
            match try_get(self.addr, "/-/ready") {
                Some(response) if response.status == 200 => return,
                Some(response) => last_response = format!("{} {}", response.status, response.text().trim()),
                None => {}
            }
            assert!(
                started.elapsed() < PROMETHEUS_DEADLINE,
                "Prometheus was not ready within {PROMETHEUS_DEADLINE:?} (last response: {last_response}); log:\n{}",
                self.log()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("check whether Prometheus exited")
    }

    /// Returns the log Prometheus wrote so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log"))
            .unwrap_or_else(|error| format!("(cannot read the log: {error})"))
    }

    /// Sends `GET path` to the Prometheus HTTP API and returns the JSON body. Prometheus
    /// reports query errors as 400 or 422 with a JSON body, so the status is not checked.
    fn api(&self, path: &str) -> serde_json::Value {
        let response = get(self.addr, path);
        serde_json::from_slice(&response.body).unwrap_or_else(|error| {
            panic!(
                "Prometheus returned {} for GET {path} with a body that is not JSON ({error}): {}",
                response.status,
                response.text()
            )
        })
    }

    /// Runs an instant query.
    fn query(&self, promql: &str) -> serde_json::Value {
        self.api(&format!("/api/v1/query?query={}", percent_encode(promql)))
    }

    /// Polls `attempt` until it returns `Ok`. After [`PROMETHEUS_DEADLINE`] it fails the
    /// test with the last `Err`, which describes the last response, and the Prometheus log.
    fn poll<T>(&mut self, what: &str, mut attempt: impl FnMut(&Self) -> Result<T, String>) -> T {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                panic!(
                    "Prometheus exited with {status} while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            match attempt(self) {
                Ok(value) => return value,
                Err(last_response) => assert!(
                    started.elapsed() < PROMETHEUS_DEADLINE,
                    "no {what} within {PROMETHEUS_DEADLINE:?}; last response:\n{last_response}\nPrometheus log:\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = libc::pid_t::try_from(self.child.id()).expect("a PID fits in pid_t");
            // SAFETY: kill(2) takes plain integers and touches no memory of this process.
            // The PID is still this child's, because it is reaped only below and an exited
            // child stays a zombie that keeps its PID until then.
            unsafe { libc::kill(pid, libc::SIGTERM) };

            let deadline = Instant::now() + STOP_DEADLINE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // SIGKILL in case SIGTERM was not enough. It returns an error, ignored here, if
            // the child has exited.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Returns a loopback address whose port was free a moment ago.
fn free_loopback_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address of the probe listener")
}

/// Sends `GET path` like [`get`], but returns `None` when nothing listens yet.
fn try_get(addr: SocketAddr, path: &str) -> Option<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set read timeout");
    stream.write_all(&encode("GET", path, &[], b"")).ok()?;
    read_response(&mut BufReader::new(stream))
}

/// Percent-encodes `text` for a URL query value, keeping only the unreserved characters of
/// RFC 3986.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Returns the `data.result` array of a successful query response, or the whole response
/// as text.
fn query_results(body: &serde_json::Value) -> Result<&Vec<serde_json::Value>, String> {
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    body["data"]["result"].as_array().ok_or_else(|| body.to_string())
}

/// Sends [`BATCH_EVENTS`] events in one array and [`SINGLE_EVENTS`] one by one, plus one
/// invalid event, and returns the number accepted.
fn send_events(server: &TestServer) -> u64 {
    let batch: Vec<String> = (0..BATCH_EVENTS)
        .map(|index| event(index % 4, "Heartbeat", "2024-05-01T12:00:00Z"))
        .collect();
    let response = post_json(server.addr, &format!("[{}]", batch.join(",")));
    assert_eq!(response.status, 202, "batch of {BATCH_EVENTS}: {}", response.text());
    assert_eq!(
        response.json()["accepted"],
        BATCH_EVENTS,
        "batch response: {}",
        response.text()
    );

    for index in 0..SINGLE_EVENTS {
        let response = post_json(server.addr, &event(100 + index, "Login", "2024-05-01T12:00:01.5Z"));
        assert_eq!(response.status, 202, "single event {index}: {}", response.text());
    }

    // A rejection, so the rejected-events series has a non-zero value.
    let response = post_json(
        server.addr,
        r#"{"sourceId": -1, "type": "Heartbeat", "timestamp": "2024-05-01T12:00:00Z"}"#,
    );
    assert_eq!(response.status, 400, "invalid event: {}", response.text());

    BATCH_EVENTS + SINGLE_EVENTS
}

#[test]
fn prometheus_scrapes_processed_events() {
    require_binary(PROMETHEUS_BINARY);
    let server = TestServer::start();
    let mut prometheus = PrometheusServer::start(server.addr);

    let sent = send_events(&server);
    server.wait_for_events(sent);

    // Prometheus drops samples from a scrape it cannot parse and marks the target down, so
    // a rejected exposition shows up here as a scrape error, reported at once.
    let scrape_url = format!("http://{}/metrics", server.addr);
    let processed = prometheus.poll(
        "telemetron_events_processed_total equal to the events sent",
        |prometheus| {
            let targets = prometheus.api("/api/v1/targets");
            if let Some(target) = find_target(&targets, &scrape_url) {
                let last_error = target["lastError"].as_str().unwrap_or_default();
                assert!(
                    target["health"] != "down" && last_error.is_empty(),
                    "Prometheus failed to scrape {scrape_url}: {last_error}\ntarget: {target}"
                );
            }

            let body = prometheus.query("telemetron_events_processed_total");
            let results = query_results(&body)?;
            let [result] = results.as_slice() else {
                return Err(body.to_string());
            };
            let value = result["value"][1].as_str().ok_or_else(|| body.to_string())?;
            match value.parse::<f64>() {
                Ok(number) if number == sent as f64 => Ok(result.clone()),
                _ => Err(body.to_string()),
            }
        },
    );
    assert_eq!(processed["metric"]["job"], "telemetron", "series labels: {processed}");
    assert_eq!(
        processed["metric"]["instance"],
        server.addr.to_string(),
        "series labels: {processed}"
    );

    let targets = prometheus.api("/api/v1/targets");
    let target = find_target(&targets, &scrape_url)
        .unwrap_or_else(|| panic!("Prometheus lists no target with scrapeUrl {scrape_url}: {targets}"));
    assert_eq!(target["health"], "up", "target: {target}");
    assert_eq!(target["lastError"], "", "target: {target}");
}

#[test]
fn prometheus_runs_dashboard_queries() {
    require_binary(PROMETHEUS_BINARY);
    let server = TestServer::start();
    let mut prometheus = PrometheusServer::start(server.addr);
    let sent = send_events(&server);
    server.wait_for_events(sent);

    let queries = panel_queries(&load_dashboard());
    assert!(!queries.is_empty(), "the dashboard has no queries");

    for query in queries {
        let promql = query.promql();
        let by_clauses = parse_query(&promql).by_clauses;
        let context = format!("panel {:?} query {}: {promql}", query.panel, query.ref_id);

        // An error response fails at once, because a query Prometheus cannot parse never
        // starts working. An empty result is retried, because a rate needs two scrapes
        // inside its window.
        let results = prometheus.poll(&format!("result for {context}"), |prometheus| {
            let body = prometheus.query(&promql);
            assert_eq!(
                body["status"], "success",
                "Prometheus rejected {context}\nresponse: {body}"
            );
            match query_results(&body) {
                Ok(results) if !results.is_empty() => Ok(results.clone()),
                _ => Err(body.to_string()),
            }
        });

        // With a single `by` clause, every result series carries its labels. The quantile
        // functions consume `le`, so it is not among them.
        if let [by_labels] = by_clauses.as_slice() {
            for result in &results {
                for label in by_labels.iter().filter(|label| label.as_str() != "le") {
                    assert!(
                        result["metric"][label].is_string(),
                        "{context}\nresult has no label {label:?}: {result}"
                    );
                }
            }
        }
    }
}

#[test]
fn shipped_scrape_config_passes_promtool() {
    require_binary(PROMTOOL_BINARY);
    let output = Command::new(PROMTOOL_BINARY)
        .args(["check", "config", SHIPPED_SCRAPE_CONFIG])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {PROMTOOL_BINARY}: {error}"));
    assert!(
        output.status.success(),
        "promtool check config {SHIPPED_SCRAPE_CONFIG} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Returns the active target whose `scrapeUrl` is `scrape_url`.
fn find_target<'a>(targets: &'a serde_json::Value, scrape_url: &str) -> Option<&'a serde_json::Value> {
    targets["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|target| target["scrapeUrl"] == scrape_url)
}
