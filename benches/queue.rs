//! Measures the shard queues between the HTTP handlers and the workers:
//! `ShardQueues::try_push_one` of single events, `ShardQueues::try_push` of 100-event chunks,
//! and the matching `ShardReceiver::try_recv`, with 1 and 2 shards.
//!
//! Each iteration pushes 64 chunks and then receives all of them on the same thread, so the
//! figures are the uncontended cost of the atomics and the channel, without thread hand-off.
//! The received chunks are pushed again, so no iteration allocates.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use telemetron::queue::{Chunk, ShardQueues, ShardReceiver};

use fixtures::{SourceMix, SourceSampler, SOURCE_IDS};

/// Chunks pushed, then received, per iteration.
const ROUND_CHUNKS: usize = 64;

/// The default `processor.channel_capacity`, enough for one round of 100-event chunks on one
/// shard.
const CAPACITY_PER_SHARD: usize = 10_000;

/// Time spent in each half of a round trip.
#[derive(Default)]
struct RoundTimes {
    push: Duration,
    recv: Duration,
}

/// Queues, receivers and the chunks that circulate through them.
struct Rig {
    queues: ShardQueues,
    receivers: Vec<ShardReceiver>,
    chunks: Vec<Chunk>,
}

impl Rig {
    fn new(shards: usize, chunk_len: usize) -> Self {
        let (queues, receivers) = ShardQueues::new(shards, CAPACITY_PER_SHARD);
        let mut sampler = SourceSampler::new(SourceMix::Uniform, SOURCE_IDS, 3);
        let chunks = (0..ROUND_CHUNKS)
            .map(|_| {
                let mut events = fixtures::events(chunk_len, &mut sampler);
                match events.len() {
                    1 => Chunk::One(events.pop().expect("one event")),
                    _ => Chunk::Many(events),
                }
            })
            .collect();
        Rig {
            queues,
            receivers,
            chunks,
        }
    }

    /// Runs `iters` rounds: push every chunk, then drain every shard.
    fn run(&mut self, iters: u64) -> RoundTimes {
        let mut times = RoundTimes::default();
        for _ in 0..iters {
            let start = Instant::now();
            for chunk in self.chunks.drain(..) {
                let pushed = match chunk {
                    Chunk::One(event) => self.queues.try_push_one(event).map_err(|(error, _)| error),
                    Chunk::Many(events) => self.queues.try_push(events).map_err(|(error, _)| error),
                };
                pushed.expect("a round fits in one shard");
            }
            let pushed = Instant::now();
            for receiver in &self.receivers {
                while let Some(chunk) = receiver.try_recv(&self.queues) {
                    self.chunks.push(chunk);
                }
            }
            let received = Instant::now();

            assert_eq!(
                self.chunks.len(),
                ROUND_CHUNKS,
                "every pushed chunk comes back"
            );
            times.push += pushed - start;
            times.recv += received - pushed;
        }
        times
    }
}

fn bench_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    for chunk_len in [1, 100] {
        group.throughput(Throughput::Elements((ROUND_CHUNKS * chunk_len) as u64));
        for shards in [1, 2] {
            let mut rig = Rig::new(shards, chunk_len);
            group.bench_function(
                BenchmarkId::new(format!("try_push_chunk_{chunk_len}"), shards),
                |b| {
                    b.iter_custom(|iters| rig.run(iters).push);
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("try_recv_chunk_{chunk_len}"), shards),
                |b| {
                    b.iter_custom(|iters| rig.run(iters).recv);
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = fixtures::criterion_config();
    targets = bench_queue
}
criterion_main!(benches);
