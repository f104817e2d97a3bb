//! Measures `StatsStore::record_batch`, the work `StorageProcessor` does per batch, on 100-event
//! batches over 10,000 source ids and 4 event types, from one thread and from two threads
//! recording into one store at once.
//!
//! The uniform mix spreads events over all sources. The Zipf mix (exponent 1.1) sends about
//! 15% of events from one source, so two threads often contend on that source's map shard.
//! Each store is warmed with every batch before timing, so the figures are for a store that
//! already contains the sources rather than for first inserts.
//!
//! The two threads update the same sources, so each source's entry moves between the cores'
//! caches, as it does between batch workers in the service. Two threads can therefore record
//! fewer events per second in total than one; the pair of figures shows that cost.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use telemetron::ingest::event::Event;
use telemetron::stats::StatsStore;

use fixtures::{SourceMix, SourceSampler, SOURCE_IDS};

const BATCH_EVENTS: usize = 100;

/// Batches cycled through: 10,000 events, so the uniform mix reaches most sources.
const POOL_BATCHES: usize = 100;

fn batch_pool(mix: SourceMix) -> Vec<Vec<Event>> {
    let mut sampler = SourceSampler::new(mix, SOURCE_IDS, 5);
    (0..POOL_BATCHES)
        .map(|_| fixtures::events(BATCH_EVENTS, &mut sampler))
        .collect()
}

fn warmed_store(pool: &[Vec<Event>]) -> StatsStore {
    let store = StatsStore::new();
    for batch in pool {
        store.record_batch(batch);
    }
    store
}

/// Records `iters` batches on each of `threads` threads, started together, and returns the
/// time from the first start to the last finish.
fn record_concurrently(
    store: &StatsStore,
    pool: &[Vec<Event>],
    threads: usize,
    iters: u64,
) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let barrier = &barrier;
                scope.spawn(move || {
                    // Threads start at different points of the pool, so they record different
                    // batches but still share the busiest sources.
                    let offset = thread * POOL_BATCHES / threads;
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters as usize {
                        store.record_batch(&pool[(offset + i) % POOL_BATCHES]);
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("recording thread does not panic"))
            .collect()
    });

    let first_start = spans
        .iter()
        .map(|span| span.0)
        .min()
        .expect("at least one thread");
    let last_end = spans
        .iter()
        .map(|span| span.1)
        .max()
        .expect("at least one thread");
    last_end - first_start
}

fn bench_stats(c: &mut Criterion) {
    let mut group = c.benchmark_group("stats");
    for mix in SourceMix::ALL {
        let pool = batch_pool(mix);

        group.throughput(Throughput::Elements(BATCH_EVENTS as u64));
        let store = warmed_store(&pool);
        group.bench_function(BenchmarkId::new("threads", format!("1/{mix}")), |b| {
            let mut next = 0;
            b.iter(|| {
                store.record_batch(&pool[next]);
                next = (next + 1) % POOL_BATCHES;
            });
        });

        // One iteration is one batch on each thread, so throughput counts both.
        group.throughput(Throughput::Elements(2 * BATCH_EVENTS as u64));
        let store = warmed_store(&pool);
        group.bench_function(BenchmarkId::new("threads", format!("2/{mix}")), |b| {
            b.iter_custom(|iters| record_concurrently(&store, &pool, 2, iters));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = fixtures::criterion_config();
    targets = bench_stats
}
criterion_main!(benches);
