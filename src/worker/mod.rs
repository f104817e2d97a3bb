//! Batch workers: one OS thread per shard queue, optionally pinned to a core, that collects
//! events into batches and runs every enabled processor on each batch.
//!
//! A worker takes up to `batch_size` events, waiting at most `batch_timeout` after the first
//! one arrives. A failed processor is retried; when retries run out the batch is written to
//! the dead-letter file ([`dead_letter`]). Every event a worker takes ends as processed or
//! dead-lettered, and the worker exits only after the queues are sealed and its shard is
//! empty.

pub mod dead_letter;
mod priority;
mod process;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ingest::event::Event;
use crate::queue::{ShardQueues, ShardReceiver};
use crate::time_slice;

pub use dead_letter::DeadLetterQueue;
pub use process::{BatchRunner, ProcessorSlot};

/// How often an idle worker checks whether the queues were sealed.
const IDLE_POLL: Duration = Duration::from_millis(20);

/// Pause between looks at the queue while a batch fills.
const FILL_POLL: Duration = Duration::from_millis(1);

/// Batching settings shared by all workers.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// Maximum events per processor call.
    pub batch_size: usize,
    /// Maximum wait after the first event of a batch.
    pub batch_timeout: Duration,
    /// Pin worker `i` to core `i` modulo the core count.
    pub pin_workers: bool,
    /// Nice value for the worker threads; 0 leaves them alone.
    pub nice: i32,
}

/// Per-outcome event counts across all workers.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Events every processor handled.
    pub processed: AtomicU64,
    /// Events written to the dead-letter file.
    pub dead_lettered: AtomicU64,
}

impl Outcomes {
    /// Returns (processed, dead-lettered).
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.processed.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
        )
    }
}

/// Starts one worker thread per receiver.
///
/// # Errors
/// Returns the OS error if a thread cannot be spawned.
pub fn spawn_workers(
    receivers: Vec<ShardReceiver>,
    queues: Arc<ShardQueues>,
    runner: Arc<BatchRunner>,
    settings: BatchSettings,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let cores = if settings.pin_workers {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    if settings.pin_workers && cores.is_empty() {
        tracing::warn!("cannot list CPU cores, so batch workers run unpinned");
    }

    // Every worker fails to change its priority for the same reason, so one warning is enough.
    let nice_failure_logged = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(receivers.len());
    for receiver in receivers {
        let nice_failure_logged = nice_failure_logged.clone();
        let core = (!cores.is_empty()).then(|| cores[receiver.shard % cores.len()]);
        let queues = queues.clone();
        let runner = runner.clone();
        let settings = settings.clone();
        let handle = std::thread::Builder::new()
            .name(format!("telemetron-worker-{}", receiver.shard))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = receiver.shard, core = core.id, "pinning failed, so this worker runs unpinned");
                    }
                }
                if settings.nice != 0 {
                    if let Err(error) = priority::set_current_thread_nice(settings.nice) {
                        // A short time slice needs no privilege. In 8 s single-event load tests at
                        // 64 connections, the p99 was 1.53-1.61 ms at nice -5, 1.85-2.17 ms at nice 0,
                        // and 1.52-1.65 ms at nice 0 with this slice. Three rounds in a faster mode
                        // (p50 0.20-0.23 ms) are left out, because their p99 was 1.8-2.3 ms at nice -5
                        // and with the slice alike.
                        let fallback = time_slice::set_current_thread_slice(time_slice::MIN_SLICE);
                        log_nice_failure(receiver.shard, settings.nice, &error, &fallback, &nice_failure_logged);
                    }
                }
                run_worker(&receiver, &queues, &runner, &settings);
            })?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Logs a failed nice change as a warning for the first worker and at debug for the others,
/// which fail for the same reason, saying whether the short time slice took its place.
fn log_nice_failure(
    shard: usize,
    nice: i32,
    error: &std::io::Error,
    fallback: &std::io::Result<()>,
    logged: &AtomicBool,
) {
    if logged.swap(true, Ordering::Relaxed) {
        tracing::debug!(shard, nice, error = %error, "cannot set the worker's nice value");
        return;
    }
    match fallback {
        Ok(()) => tracing::warn!(
            shard,
            nice,
            error = %error,
            "cannot set the workers' nice value, so they run at the process's priority with a 0.1 ms time slice; \
             grant CAP_SYS_NICE, raise RLIMIT_NICE (LimitNICE= in systemd, ulimit -e), \
             or set processor.worker_nice = 0"
        ),
        Err(slice_error) => tracing::warn!(
            shard,
            nice,
            error = %error,
            slice_error = %slice_error,
            "cannot set the workers' nice value or shorten their time slice, so they run at the process's priority; \
             grant CAP_SYS_NICE, raise RLIMIT_NICE (LimitNICE= in systemd, ulimit -e), \
             or set processor.worker_nice = 0"
        ),
    }
}

fn run_worker(receiver: &ShardReceiver, queues: &ShardQueues, runner: &BatchRunner, settings: &BatchSettings) {
    let shard = receiver.shard;
    let mut batch: Vec<Event> = Vec::with_capacity(settings.batch_size);
    tracing::debug!(shard, "batch worker started");

    loop {
        let Some(first) = receiver.recv_timeout(queues, IDLE_POLL) else {
            if queues.is_sealed() && drain_once(receiver, queues, runner, settings, &mut batch) == 0 {
                break;
            }
            continue;
        };
        first.move_into(&mut batch);

        fill_batch(receiver, queues, settings, &mut batch);
        run_in_batches(shard, runner, settings, &mut batch);
    }
    tracing::debug!(shard, "batch worker drained and stopped");
}

/// Adds queued events to `batch` until it holds `batch_size` events or `batch_timeout` has
/// passed since this call, whichever comes first.
///
/// Between looks at the queue the worker sleeps instead of blocking on the channel: a
/// blocked receiver makes every push pay a futex wake-up, which under load costs more than
/// the batching saves. The sleep is short ([`FILL_POLL`]) so a batch closes at most that
/// long after it filled. Once the queues are sealed nothing more will arrive, so the
/// timeout is not waited out.
fn fill_batch(receiver: &ShardReceiver, queues: &ShardQueues, settings: &BatchSettings, batch: &mut Vec<Event>) {
    let deadline = Instant::now() + settings.batch_timeout;
    loop {
        while batch.len() < settings.batch_size {
            match receiver.try_recv(queues) {
                Some(chunk) => chunk.move_into(batch),
                None => break,
            }
        }
        if batch.len() >= settings.batch_size || queues.is_sealed() {
            return;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return;
        }
        std::thread::sleep(remaining.min(FILL_POLL));
    }
}

/// Processes everything left in the shard; returns how many events that was.
fn drain_once(
    receiver: &ShardReceiver,
    queues: &ShardQueues,
    runner: &BatchRunner,
    settings: &BatchSettings,
    batch: &mut Vec<Event>,
) -> usize {
    let mut drained = 0;
    while let Some(chunk) = receiver.try_recv(queues) {
        drained += chunk.len();
        chunk.move_into(batch);
        if batch.len() >= settings.batch_size {
            run_in_batches(receiver.shard, runner, settings, batch);
        }
    }
    run_in_batches(receiver.shard, runner, settings, batch);
    drained
}

/// Runs the processors on `batch` in slices of at most `batch_size`, then empties it.
fn run_in_batches(shard: usize, runner: &BatchRunner, settings: &BatchSettings, batch: &mut Vec<Event>) {
    for slice in batch.chunks(settings.batch_size) {
        runner.run(shard, slice);
    }
    batch.clear();
}
