//! Runs the enabled processors on one batch, with retries and dead-lettering.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ingest::event::Event;
use crate::metrics::{Metrics, PluginMetrics};
use crate::plugins::{Processor, ProcessorError};

use super::dead_letter::{DeadLetterQueue, Failure};
use super::Outcomes;

/// One enabled processor with its metric handles.
pub struct ProcessorSlot {
    /// Registered name, used in logs, metrics and the dead-letter file.
    pub name: &'static str,
    /// The processor.
    pub processor: Arc<dyn Processor>,
    /// Its pre-registered metric handles.
    pub metrics: PluginMetrics,
}

/// Everything a worker needs to finish a batch.
pub struct BatchRunner {
    /// Processors in run order.
    pub processors: Vec<ProcessorSlot>,
    /// Retries after a failed call.
    pub retry_attempts: u32,
    /// Pause between retries.
    pub retry_delay: Duration,
    /// Where batches go when retries run out.
    pub dead_letter: DeadLetterQueue,
    /// Outcome counters.
    pub outcomes: Arc<Outcomes>,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
}

impl BatchRunner {
    /// Runs every processor on `batch`, retrying each failed one, and records the outcome:
    /// processed when all succeeded, otherwise dead-lettered with every failure.
    pub fn run(&self, shard: usize, batch: &[Event]) {
        if batch.is_empty() {
            return;
        }

        let mut failures = Vec::new();
        for slot in &self.processors {
            if let Err(error) = self.run_with_retries(shard, slot, batch) {
                failures.push(Failure {
                    plugin: slot.name,
                    error: error.0,
                    attempts: self.retry_attempts + 1,
                });
            }
        }

        let count = batch.len() as u64;
        if failures.is_empty() {
            self.outcomes.processed.fetch_add(count, Ordering::Relaxed);
            self.metrics.events_processed.increment(count);
            return;
        }
        self.dead_letter.write(shard, batch, &failures);
        self.outcomes.dead_lettered.fetch_add(count, Ordering::Relaxed);
        self.metrics.events_dead_lettered.increment(count);
    }

    fn run_with_retries(&self, shard: usize, slot: &ProcessorSlot, batch: &[Event]) -> Result<(), ProcessorError> {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| slot.processor.process(batch))).unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic payload".to_owned());
                Err(ProcessorError(format!("processor panicked: {message}")))
            });
            let seconds = started.elapsed().as_secs_f64();

            let error = match result {
                Ok(()) => {
                    slot.metrics.duration_ok.record(seconds);
                    return Ok(());
                }
                Err(error) => error,
            };
            slot.metrics.duration_error.record(seconds);
            slot.metrics.errors.increment(1);

            if attempt >= self.retry_attempts {
                return Err(error);
            }
            attempt += 1;
            tracing::warn!(
                shard,
                plugin = slot.name,
                attempt,
                retry_attempts = self.retry_attempts,
                events = batch.len(),
                error = %error,
                "processor failed, retrying"
            );
            std::thread::sleep(self.retry_delay);
        }
    }
}
