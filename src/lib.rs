//! Telemetron: a telemetry ingestion service.
//!
//! One event's path from socket to statistics:
//!
//! 1. [`http`] accepts the connection and routes `POST /ingest` to its handler, which
//!    checks Content-Type, Content-Encoding and size, and reads the body under the limit.
//! 2. [`ingest::parse`] parses the body once with `simd-json` into [`ingest::event::Event`]s,
//!    keeping each event's `data` as the raw bytes the client sent.
//! 3. The enabled validator [`plugins`] check each event; a rejection is a 400.
//! 4. [`queue`] puts the valid events on a shard queue without waiting; when every shard is
//!    full the client gets 503 with `Retry-After`, never a silent drop.
//! 5. A [`worker`] thread per shard takes events in batches and runs every enabled processor
//!    on them, retrying failures and dead-lettering what still fails.
//! 6. The `StorageProcessor` adds each batch to [`stats`], which `GET /stats` reads.
//!
//! [`run`] wires these together and drains them on shutdown.

pub mod allocator;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod shutdown;
pub mod stats;
pub mod stripes;
mod time_slice;
pub mod worker;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};
use crate::ingest::parse::ParseLimits;
use crate::metrics::Metrics;
use crate::plugins::{PluginContext, Validator};
use crate::queue::ShardQueues;
use crate::stats::StatsStore;
use crate::worker::{BatchRunner, BatchSettings, DeadLetterQueue, Outcomes, ProcessorSlot};

/// How often buffered histogram samples are drained.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// State shared by all HTTP handlers.
pub struct AppState {
    /// The effective configuration.
    pub config: Config,
    /// Limits handed to the body parser.
    pub parse_limits: ParseLimits,
    /// The shard queues.
    pub queues: Arc<ShardQueues>,
    /// The statistics.
    pub stats: Arc<StatsStore>,
    /// Enabled validators in run order.
    pub validators: Vec<(&'static str, Box<dyn Validator>)>,
    /// Metric handles.
    pub metrics: Arc<Metrics>,
    draining: AtomicBool,
}

impl AppState {
    /// Returns true once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Event totals at the end of a run. `accepted == processed + dead_lettered` after a clean
/// drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// Events accepted with a 202 response.
    pub accepted: u64,
    /// Events every processor handled.
    pub processed: u64,
    /// Events written to the dead-letter file.
    pub dead_lettered: u64,
}

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration or a plugin's parameters are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The dead-letter file cannot be opened.
    #[error(transparent)]
    DeadLetter(#[from] worker::dead_letter::DeadLetterError),
    /// A worker thread could not be started.
    #[error("cannot start batch worker threads: {0}")]
    Workers(#[source] std::io::Error),
    /// The thread for reading connections could not be started.
    #[error("cannot start the HTTP reader thread: {0}")]
    Readers(#[source] std::io::Error),
}

/// Checks everything start-up would check except the listener: values, plugin names and
/// parameters, and the dead-letter path.
///
/// # Errors
/// Returns the first problem found.
pub fn check_config(config: &Config) -> Result<(), RunError> {
    config.validate()?;
    let context = PluginContext {
        stats: Arc::new(StatsStore::new()),
    };
    plugins::build_plugins(config, &context)?;
    DeadLetterQueue::open(Path::new(&config.processor.dead_letter_path))?;
    Ok(())
}

/// Runs the service on `listener` until `shutdown` completes, then drains: `/readyz` turns
/// 503, the listener closes, in-flight requests finish, every queued event goes through
/// the processors, and the totals are logged and returned.
///
/// Must be called within a multi-threaded tokio runtime.
///
/// # Errors
/// Returns [`RunError`] if plugins, the dead-letter file or the workers cannot be set up;
/// nothing has been accepted then.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<RunSummary, RunError> {
    config.validate()?;
    let stats = Arc::new(StatsStore::new());
    let plugins = plugins::build_plugins(&config, &PluginContext { stats: stats.clone() })?;
    let dead_letter = DeadLetterQueue::open(Path::new(&config.processor.dead_letter_path))?;

    let worker_count = config.processor.worker_count();
    let (queues, receivers) = ShardQueues::new(worker_count, config.processor.channel_capacity);
    let queues = Arc::new(queues);
    let metrics = Arc::new(Metrics::new(worker_count));
    metrics.set_queue_capacity(config.processor.channel_capacity);

    let validator_names: Vec<&str> = plugins.validators.iter().map(|(name, _)| *name).collect();
    let processor_names: Vec<&str> = plugins.processors.iter().map(|(name, _)| *name).collect();
    if !processor_names.contains(&"StorageProcessor") {
        tracing::warn!("StorageProcessor is not enabled, so /stats will stay empty");
    }

    let outcomes = Arc::new(Outcomes::default());
    let runner = Arc::new(BatchRunner {
        processors: plugins
            .processors
            .into_iter()
            .map(|(name, processor)| ProcessorSlot {
                name,
                processor,
                metrics: metrics.plugin(name),
            })
            .collect(),
        retry_attempts: config.processor.retry_attempts,
        retry_delay: config.processor.retry_delay(),
        dead_letter,
        outcomes: outcomes.clone(),
        metrics: metrics.clone(),
    });
    let settings = BatchSettings {
        batch_size: config.processor.batch_size,
        batch_timeout: config.processor.batch_timeout(),
        pin_workers: config.processor.pin_workers,
        nice: config.processor.worker_nice,
    };
    // Started before the workers, so a failure here leaves no thread to stop.
    let readers = http::ReaderThread::start().map_err(RunError::Readers)?;
    let workers =
        worker::spawn_workers(receivers, queues.clone(), runner, settings).map_err(RunError::Workers)?;

    let address = listener
        .local_addr()
        .map_or_else(|error| format!("unknown ({error})"), |address| address.to_string());
    tracing::info!(
        address = %address,
        workers = worker_count,
        channel_capacity = config.processor.channel_capacity,
        batch_size = config.processor.batch_size,
        batch_timeout_ms = config.processor.batch_timeout,
        validators = ?validator_names,
        processors = ?processor_names,
        dead_letter_path = %config.processor.dead_letter_path,
        "telemetron listening"
    );

    let drain_delay = Duration::from_millis(config.http.drain_delay_ms);
    let state = Arc::new(AppState {
        parse_limits: ParseLimits {
            max_batch_events: config.http.max_batch_events,
            max_data_depth: config.ingest.max_data_depth,
            max_data_bytes: config.ingest.max_data_bytes,
        },
        config,
        queues: queues.clone(),
        stats,
        validators: plugins.validators,
        metrics: metrics.clone(),
        draining: AtomicBool::new(false),
    });

    let upkeep = tokio::spawn(async move {
        let mut interval = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        loop {
            interval.tick().await;
            metrics.run_upkeep();
        }
    });

    let stop_state = state.clone();
    let stop = async move {
        shutdown.await;
        stop_state.draining.store(true, Ordering::SeqCst);
        tracing::info!(drain_delay_ms = drain_delay.as_millis() as u64, "draining: /readyz now returns 503");
        tokio::time::sleep(drain_delay).await;
    };
    let finished_in_time = http::serve(listener, state.clone(), readers, stop).await;
    upkeep.abort();

    // Connections that outlived the timeout may still push; `close` makes them fail with
    // 503 and waits for any push already under way, so the count below is final.
    let close_queues = queues.clone();
    let join = tokio::task::spawn_blocking(move || {
        close_queues.close();
        for handle in workers {
            if handle.join().is_err() {
                tracing::error!("a batch worker panicked while draining; its unprocessed events are lost");
            }
        }
    });
    if join.await.is_err() {
        tracing::error!("waiting for the batch workers failed");
    }

    let (processed, dead_lettered) = outcomes.snapshot();
    let summary = RunSummary {
        accepted: queues.accepted_total(),
        processed,
        dead_lettered,
    };
    if summary.accepted == summary.processed + summary.dead_lettered {
        tracing::info!(
            accepted = summary.accepted,
            processed = summary.processed,
            dead_lettered = summary.dead_lettered,
            connections_finished = finished_in_time,
            "shutdown complete"
        );
    } else {
        tracing::error!(
            accepted = summary.accepted,
            processed = summary.processed,
            dead_lettered = summary.dead_lettered,
            "shutdown complete but accepted events are missing from the totals"
        );
    }
    Ok(summary)
}
