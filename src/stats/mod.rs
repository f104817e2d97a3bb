//! Per-source statistics: the store that `StorageProcessor` writes and `/stats` reads.
//!
//! Sources live in a `DashMap`, so a reader locks one map shard briefly and always copies a
//! source whole, never half-updated. The totals behind `GET /stats` are two counters split
//! into per-thread stripes ([`stripes`]), so that response costs the same however many
//! sources exist and workers do not pass a counter's cache line between cores. Event types
//! are interned to small ids ([`types::TypeInterner`]) so each source stores counts, not
//! strings.

mod source;
mod types;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use dashmap::DashMap;

use crate::ingest::event::Event;
use crate::ingest::timestamp::Timestamp;
use crate::stripes;

pub use source::SourceStats;
pub use types::{TypeId, TypeInterner};

type Hasher = foldhash::fast::RandomState;

/// Aggregated statistics for every source seen since start-up.
pub struct StatsStore {
    sources: DashMap<u64, SourceStats, Hasher>,
    types: TypeInterner,
    /// One stripe per writing thread ([`stripes`]); `totals` adds them up.
    counts: Box<[CachePadded<StripeCounts>]>,
}

/// The part of the totals that one stripe's threads recorded.
#[derive(Default)]
struct StripeCounts {
    sources: AtomicU64,
    events: AtomicU64,
}

/// The totals behind `GET /stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Totals {
    /// Distinct sources seen.
    pub sources_count: u64,
    /// Events stored.
    pub events_count: u64,
}

/// A consistent copy of one source's statistics, with type names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSnapshot {
    /// The source id.
    pub source_id: u64,
    /// Events stored for this source.
    pub total_events: u64,
    /// Earliest event timestamp.
    pub first_event: Timestamp,
    /// Latest event timestamp.
    pub last_event: Timestamp,
    /// Event count per type name, sorted by name.
    pub event_types: Vec<(std::sync::Arc<str>, u64)>,
}

impl Default for StatsStore {
    fn default() -> Self {
        StatsStore::new()
    }
}

/// Map shards per core. dashmap's default is 4, so two workers often take the same shard's
/// lock and move its cache line between cores. With 64 (128 shards on 2 cores), 2 threads
/// recorded 50% more uniform-source events per second in the `stats` bench than with 8.
const SHARDS_PER_CORE: usize = 64;

fn shard_amount() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores * SHARDS_PER_CORE).next_power_of_two()
}

thread_local! {
    /// Per-thread scratch for grouping a batch by source, kept to avoid a map per batch.
    static BATCH_GROUPS: RefCell<HashMap<u64, SourceStats, Hasher>> = RefCell::new(HashMap::default());
}

impl StatsStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        StatsStore {
            sources: DashMap::with_hasher_and_shard_amount(Hasher::default(), shard_amount()),
            types: TypeInterner::new(),
            counts: (0..stripes::COUNT).map(|_| CachePadded::new(StripeCounts::default())).collect(),
        }
    }

    // TODO: in the pipeline bench, two workers deliver 1.52-1.67 times the events/s of one
    // (target 1.8). With one worker, its pushing thread and the worker each have one of the
    // 2 cores; with two, four threads share them, so the ratio is 2p1 / (p2 + w). perf gives
    // p1 = 356 ns of pushing per event alone, p2 = 374 ns when sharing, and w = 77 ns of worker
    // time, so 1.8 needs w under 22 ns, while this function alone takes about 38 ns on an idle
    // core. Giving each worker its own map shards made two threads here record 2.8 times the
    // events/s, but it left the pipeline ratio as it was. It also raised the p99 of one-source
    // HTTP load from 1.58 to 2.03 ms, because one worker then took every event, so it was not
    // kept.
    /// Adds a batch of events to the statistics.
    ///
    /// The batch is first grouped by source on this thread, so each source's map entry is
    /// locked once per batch rather than once per event.
    pub fn record_batch(&self, batch: &[Event]) {
        if batch.is_empty() {
            return;
        }

        BATCH_GROUPS.with(|groups| {
            let mut groups = groups.borrow_mut();
            groups.clear();
            for event in batch {
                let type_id = self.types.intern(&event.event_type);
                groups
                    .entry(event.source_id)
                    .and_modify(|stats| stats.record(event.timestamp, type_id, 1))
                    .or_insert_with(|| SourceStats::new(event.timestamp, type_id));
            }

            // The totals move inside the map shard's lock, together with the source they
            // count. A reader of `/stats/{id}` takes that lock, so it never sees a source's
            // events missing from `totals()`; a reader of `totals()` that then asks for the
            // source waits for the lock, so it never sees them missing from the source. This
            // holds for any stripe, because the lock orders the increment before the later read.
            let counts = &self.counts[stripes::index()];
            for (source_id, delta) in groups.drain() {
                self.sources
                    .entry(source_id)
                    .and_modify(|stats| {
                        stats.merge(&delta);
                        counts.events.fetch_add(delta.total_events(), Ordering::Relaxed);
                    })
                    .or_insert_with(|| {
                        counts.sources.fetch_add(1, Ordering::Relaxed);
                        counts.events.fetch_add(delta.total_events(), Ordering::Relaxed);
                        delta
                    });
            }
        });
    }

    /// Returns the totals, adding up [`stripes::COUNT`] stripes whatever the source count.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            sources_count: 0,
            events_count: 0,
        };
        for counts in self.counts.iter() {
            totals.sources_count += counts.sources.load(Ordering::Relaxed);
            totals.events_count += counts.events.load(Ordering::Relaxed);
        }
        totals
    }

    /// Returns a copy of one source's statistics, or `None` if it was never seen.
    pub fn source(&self, source_id: u64) -> Option<SourceSnapshot> {
        let stats = self.sources.get(&source_id)?.value().clone();
        let mut event_types: Vec<_> = stats
            .type_counts()
            .map(|(type_id, count)| (self.types.name(type_id), count))
            .collect();
        event_types.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Some(SourceSnapshot {
            source_id,
            total_events: stats.total_events(),
            first_event: stats.first_event(),
            last_event: stats.last_event(),
            event_types,
        })
    }

    /// Returns the number of distinct event types seen across all sources.
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Returns how many sources the map can store before one of its shards grows.
    ///
    /// Memory reports use it: the map's tables cost slots, not sources, and each shard's
    /// slot count doubles when that shard fills to 7/8.
    pub fn source_capacity(&self) -> usize {
        self.sources.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::EventType;

    fn event(source_id: u64, event_type: &str, timestamp: &str) -> Event {
        Event {
            source_id,
            event_type: EventType::from_name(event_type),
            timestamp: Timestamp::parse_rfc3339(timestamp).expect("test timestamp is valid"),
            data: None,
        }
    }

    #[test]
    fn records_totals_and_per_source_counts() {
        let store = StatsStore::new();
        store.record_batch(&[
            event(1, "Heartbeat", "2024-01-01T00:00:05Z"),
            event(1, "Boot", "2024-01-01T00:00:01Z"),
            event(2, "Heartbeat", "2024-01-01T00:00:03Z"),
        ]);
        store.record_batch(&[event(1, "Heartbeat", "2024-01-01T00:00:09Z")]);

        assert_eq!(store.totals(), Totals { sources_count: 2, events_count: 4 });
        let one = store.source(1).expect("source 1 was recorded");
        assert_eq!(one.total_events, 3);
        assert_eq!(one.first_event, Timestamp::parse_rfc3339("2024-01-01T00:00:01Z").unwrap());
        assert_eq!(one.last_event, Timestamp::parse_rfc3339("2024-01-01T00:00:09Z").unwrap());
        let names: Vec<(&str, u64)> = one.event_types.iter().map(|(n, c)| (&**n, *c)).collect();
        assert_eq!(names, vec![("Boot", 1), ("Heartbeat", 2)]);
    }

    #[test]
    fn totals_add_up_every_thread() {
        let store = StatsStore::new();
        std::thread::scope(|scope| {
            for thread in 0..4_u64 {
                let store = &store;
                scope.spawn(move || {
                    let batch: Vec<Event> = (0..10)
                        .map(|i| event(thread * 100 + i % 5, "Heartbeat", "2024-01-01T00:00:00Z"))
                        .collect();
                    store.record_batch(&batch);
                });
            }
        });

        assert_eq!(store.totals(), Totals { sources_count: 20, events_count: 40 });
    }

    #[test]
    fn unknown_source_is_none() {
        let store = StatsStore::new();
        assert!(store.source(7).is_none());
    }

    #[test]
    fn counts_many_types_per_source() {
        let store = StatsStore::new();
        let batch: Vec<Event> = (0..10)
            .map(|i| event(5, &format!("type-{i}"), "2024-01-01T00:00:00Z"))
            .collect();
        store.record_batch(&batch);
        store.record_batch(&batch);
        let five = store.source(5).expect("source 5 was recorded");
        assert_eq!(five.event_types.len(), 10);
        assert!(five.event_types.iter().all(|(_, count)| *count == 2));
        assert_eq!(five.total_events, 20);
    }
}
