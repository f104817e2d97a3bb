//! `TestServer`: the real service, run in-process on 127.0.0.1:0 with its own runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use telemetron::config::Config;
use telemetron::{RunError, RunSummary};
use tokio::sync::oneshot;

use super::client::get;

/// Maximum wait for statistics to reflect accepted events.
const STATS_DEADLINE: Duration = Duration::from_secs(10);

/// A running service and the temporary directory holding its dead-letter file.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<RunSummary, RunError>>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts the service on test defaults: 2 unpinned workers, a 20 ms batch timeout.
    pub fn start() -> TestServer {
        TestServer::with_config(|_| {})
    }

    /// Starts the service after `adjust` has changed the test defaults.
    pub fn with_config(adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::try_with_config(adjust).expect("the test server starts")
    }

    /// Like [`TestServer::with_config`], but returns start-up errors.
    pub fn try_with_config(adjust: impl FnOnce(&mut Config)) -> Result<TestServer, RunError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::default();
        config.http.port = 0;
        config.processor.workers = 2;
        config.processor.pin_workers = false;
        config.processor.batch_timeout = 20;
        config.processor.retry_delay = 1;
        config.processor.dead_letter_path = dir.path().join("dead-letter.ndjson").display().to_string();
        adjust(&mut config);

        // Binding before the server starts means early requests wait in the backlog, so
        // no readiness polling is needed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("local addr");

        telemetron::check_config(&config)?;
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                telemetron::run(config, listener, async move {
                    let _ = shutdown_signal.await;
                })
                .await
            })
        });
        Ok(TestServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            dir,
        })
    }

    /// Path of the dead-letter file.
    pub fn dead_letter_path(&self) -> PathBuf {
        self.dir.path().join("dead-letter.ndjson")
    }

    /// Polls the dead-letter file until it contains `expected` lines and returns them parsed;
    /// fails the test after [`STATS_DEADLINE`].
    pub fn wait_for_dead_letters(&self, expected: usize) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.dead_letter_path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            assert!(lines.len() <= expected, "dead-letter file has more than {expected} lines:\n{text}");
            if lines.len() == expected {
                return lines
                    .iter()
                    .map(|line| serde_json::from_str(line).expect("each dead-letter line is JSON"))
                    .collect();
            }
            assert!(
                started.elapsed() < STATS_DEADLINE,
                "dead-letter file stayed at {} lines, expected {expected}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Returns `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let response = get(self.addr, "/stats");
        assert_eq!(response.status, 200, "GET /stats: {}", response.text());
        response.json()
    }

    /// Polls `/stats` until `events_count` reaches `expected`; fails the test after
    /// [`STATS_DEADLINE`] or if the count goes past `expected`.
    pub fn wait_for_events(&self, expected: u64) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let stats = self.stats();
            let count = stats["events_count"].as_u64().expect("events_count is a number");
            assert!(count <= expected, "events_count {count} is above the expected {expected}");
            if count == expected {
                return stats;
            }
            assert!(
                started.elapsed() < STATS_DEADLINE,
                "events_count stayed at {count}, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts the drain and returns the final totals.
    pub fn stop(mut self) -> RunSummary {
        self.stop_inner().expect("the server ran and drained")
    }

    fn stop_inner(&mut self) -> Option<RunSummary> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let thread = self.thread.take()?;
        Some(thread.join().expect("server thread").expect("server ran"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.stop_inner();
        } else if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
