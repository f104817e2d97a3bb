//! Measures the whole in-process path from body bytes to statistics, with 1 and 2 workers and a
//! uniform or Zipf source mix. Each NDJSON body of 1,000 events is parsed, run through the
//! validator chain and queued with `try_push`. The real batch workers (`spawn_workers` with a
//! `BatchRunner` running `StorageProcessor`) then record the events.
//!
//! Each worker has its own pushing thread that parses, validates and pushes, as the service
//! runs one runtime thread per core in front of one worker per core. The clock stops when `StatsStore::totals` shows
//! every pushed event, so queueing and the hand-off to the workers count. HTTP, decompression
//! and the response are not part of it.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use telemetron::ingest::parse::{parse_body, BodyFormat, ParseLimits};
use telemetron::metrics::Metrics;
use telemetron::plugins::processors::StorageProcessor;
use telemetron::plugins::validators::{EventTypeValidator, SourceIdValidator};
use telemetron::plugins::Validator;
use telemetron::queue::{PushError, ShardQueues};
use telemetron::stats::StatsStore;
use telemetron::worker::{
    self, BatchRunner, BatchSettings, DeadLetterQueue, Outcomes, ProcessorSlot,
};

use fixtures::{SourceMix, SourceSampler, ALLOWED_TYPES, BODY_EVENTS, SOURCE_IDS};

/// Distinct bodies pushed per iteration, each with its own source ids.
const BODIES: usize = 10;

/// The defaults of `[processor]` in the service configuration.
const CHANNEL_CAPACITY: usize = 10_000;
const BATCH_SIZE: usize = 100;
const BATCH_TIMEOUT: Duration = Duration::from_millis(100);

/// How long the pushing thread waits before checking again when every shard is full. A client
/// that got 503 would wait longer, so this favours the service.
const FULL_RETRY_DELAY: Duration = Duration::from_micros(100);

/// How often the pushing thread checks whether the workers have recorded everything.
const DRAIN_POLL: Duration = Duration::from_micros(100);

fn bodies(mix: SourceMix) -> Vec<Bytes> {
    let mut sampler = SourceSampler::new(mix, SOURCE_IDS, 17);
    (0..BODIES)
        .map(|_| fixtures::ndjson_body(BODY_EVENTS, &mut sampler))
        .collect()
}

/// Parses, validates and queues one body, and returns the number of events queued.
fn ingest(body: &Bytes, validators: &[Box<dyn Validator>], queues: &ShardQueues) -> usize {
    let parsed = parse_body(body, BodyFormat::Ndjson, &ParseLimits::default())
        .expect("generated body parses");

    let mut valid = Vec::with_capacity(parsed.items.len());
    for item in parsed.items {
        let event = item.expect("generated event is valid");
        if validators
            .iter()
            .all(|validator| validator.validate(&event).is_ok())
        {
            valid.push(event);
        }
    }

    // A full queue hands the events back, and the pushing thread retries as a client that
    // got 503 would, only sooner.
    let count = valid.len();
    let mut pending = valid;
    loop {
        match queues.try_push(pending) {
            Ok(()) => return count,
            Err((PushError::Full, events)) => {
                pending = events;
                std::thread::sleep(FULL_RETRY_DELAY);
            }
            Err((PushError::Closed, _)) => panic!("the queues close only after the run"),
        }
    }
}

/// Starts `workers` batch workers on fresh queues and statistics, pushes every body `iters`
/// times and returns the time until the statistics hold all of them.
fn run_pipeline(
    workers: usize,
    bodies: &[Bytes],
    validators: &[Box<dyn Validator>],
    iters: u64,
    dead_letter_path: &Path,
) -> Duration {
    let (queues, receivers) = ShardQueues::new(workers, CHANNEL_CAPACITY);
    let queues = Arc::new(queues);
    let stats = Arc::new(StatsStore::new());
    let metrics = Arc::new(Metrics::new(workers));
    let outcomes = Arc::new(Outcomes::default());
    let runner = Arc::new(BatchRunner {
        processors: vec![ProcessorSlot {
            name: "StorageProcessor",
            processor: Arc::new(StorageProcessor::new(stats.clone())),
            metrics: metrics.plugin("StorageProcessor"),
        }],
        retry_attempts: 3,
        retry_delay: Duration::from_millis(100),
        dead_letter: DeadLetterQueue::open(dead_letter_path)
            .expect("temporary directory is writable"),
        outcomes: outcomes.clone(),
        metrics,
    });
    // NOTE: the service pins workers and raises their priority (nice -5) by default, but here
    // they run unpinned at the bench's own priority, so the scheduler places them and the
    // parsing threads freely. The service's figures may differ.
    let settings = BatchSettings {
        batch_size: BATCH_SIZE,
        batch_timeout: BATCH_TIMEOUT,
        pin_workers: false,
        nice: 0,
    };
    let handles = worker::spawn_workers(receivers, queues.clone(), runner, settings)
        .expect("worker threads start");

    // One pushing thread per worker, as the service runs one runtime thread per core: each
    // takes every `workers`-th body.
    let start = Instant::now();
    let queued: u64 = std::thread::scope(|scope| {
        let pushers: Vec<_> = (0..workers)
            .map(|pusher| {
                let queues = &queues;
                scope.spawn(move || {
                    let mut queued = 0;
                    for _ in 0..iters {
                        for body in bodies.iter().skip(pusher).step_by(workers) {
                            queued += ingest(body, validators, queues) as u64;
                        }
                    }
                    queued
                })
            })
            .collect();
        pushers
            .into_iter()
            .map(|pusher| pusher.join().expect("pushing thread does not panic"))
            .sum()
    });
    while stats.totals().events_count < queued {
        std::thread::sleep(DRAIN_POLL);
    }
    let elapsed = start.elapsed();

    queues.close();
    for handle in handles {
        handle.join().expect("batch worker does not panic");
    }
    assert_eq!(
        outcomes.snapshot(),
        (queued, 0),
        "every queued event is processed, none dead-lettered"
    );
    assert_eq!(
        queued,
        iters * (BODIES * BODY_EVENTS) as u64,
        "every generated event passes validation"
    );
    elapsed
}

fn bench_pipeline(c: &mut Criterion) {
    let validators: Vec<Box<dyn Validator>> = vec![
        Box::new(EventTypeValidator::new(ALLOWED_TYPES)),
        Box::new(SourceIdValidator::new(0..SOURCE_IDS)),
    ];
    let dead_letter_dir = tempfile::tempdir().expect("temporary directory can be created");
    let dead_letter_path = dead_letter_dir.path().join("dead-letter.ndjson");

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements((BODIES * BODY_EVENTS) as u64));
    // An iteration takes milliseconds, too long for linear sampling to fit 20 samples in 3 s.
    group.sampling_mode(SamplingMode::Flat);
    for mix in SourceMix::ALL {
        let bodies = bodies(mix);
        for workers in [1, 2] {
            group.bench_function(
                BenchmarkId::new("workers", format!("{workers}/{mix}")),
                |b| {
                    b.iter_custom(|iters| {
                        run_pipeline(workers, &bodies, &validators, iters, &dead_letter_path)
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = fixtures::criterion_config();
    targets = bench_pipeline
}
criterion_main!(benches);
