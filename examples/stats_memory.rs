//! Measures the heap that `StatsStore` uses per source.
//!
//! The example records `--sources` sources (default 1,000,000), each with `--types` event
//! types (default 4: `Heartbeat` plus 3 custom types) and `--events-per-type` events of each
//! type (default 2), through `record_batch` on 100-event batches. A counting global allocator
//! wraps the system allocator, so the figure is the exact number of live heap bytes after
//! recording minus before, divided by the source count. RSS from `/proc/self/status` is
//! printed for reference. RSS also counts allocator overhead and memory that glibc keeps
//! after a free, so it is not the store's size.
//!
//! Run: `cargo run --release --example stats_memory`, with `-- --types 1` or `-- --types 8`
//! for other type mixes and `--sources N` for other source counts.
//!
//! The first output line is the summary. The table lines that follow estimate how the bytes
//! split between the map's slots and other allocations. Each map shard is a hashbrown table
//! whose slot count is a power of two that doubles when the shard is 7/8 full, so bytes per
//! source depend on where the source count falls between two doublings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::size_of;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use telemetron::ingest::event::{Event, EventType};
use telemetron::ingest::timestamp::Timestamp;
use telemetron::stats::{SourceStats, StatsStore};

/// Counts the bytes and allocations the program holds, then forwards to [`System`].
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn note_alloc(size: usize) {
    let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
    LIVE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
}

fn note_dealloc(size: usize) {
    LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
    LIVE_ALLOCATIONS.fetch_sub(1, Ordering::Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System`, which implements
// `GlobalAlloc` correctly, and only updates counters besides. So each method keeps the
// contract that `GlobalAlloc` states for it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`, and `System` needs no more.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note_alloc(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block that this allocator, and so `System`, returned
        // for `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block that `System` returned for `layout` and a valid
        // `new_size`.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            note_dealloc(layout.size());
            note_alloc(new_size);
        }
        new_ptr
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Events per `record_batch` call, the default `processor.batch_size`.
const BATCH_EVENTS: usize = 100;

/// Sources whose events are shuffled together, so a batch mixes about 100 sources and each
/// source's events arrive in several batches.
const WINDOW_SOURCES: usize = 1_024;

/// Custom type names that sources draw their types from.
const CUSTOM_TYPES: usize = 16;

/// 2024-01-01T00:00:00Z, the start of the generated timestamps.
const START_UNIX_SECONDS: i64 = 1_704_067_200;

/// SplitMix64, so every run records the same events.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

struct Options {
    sources: usize,
    types: usize,
    events_per_type: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        sources: 1_000_000,
        types: 4,
        events_per_type: 2,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("missing value after `{flag}`"))?;
        let number: usize = value.replace('_', "").parse().map_err(|_| {
            format!("invalid value `{value}` for `{flag}`: expected a positive integer")
        })?;
        match flag.as_str() {
            "--sources" => options.sources = number,
            "--types" => options.types = number,
            "--events-per-type" => options.events_per_type = number,
            _ => {
                return Err(format!(
                    "unknown option `{flag}`: expected --sources, --types or --events-per-type"
                ))
            }
        }
    }
    if options.types == 0 || options.types > CUSTOM_TYPES + 1 {
        return Err(format!(
            "invalid --types {}: expected 1 to {}",
            options.types,
            CUSTOM_TYPES + 1
        ));
    }
    if options.sources == 0 || options.events_per_type == 0 {
        return Err("--sources and --events-per-type must be at least 1".to_owned());
    }
    Ok(options)
}

/// Returns the resident set size in bytes, or 0 where `/proc` is unavailable.
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<usize>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Returns type `slot` of the source with index `source`: slot 0 is `Heartbeat`, the others
/// are consecutive names from the custom pool starting at a per-source offset.
fn event_type(custom_names: &[String], source: usize, slot: usize) -> EventType {
    if slot == 0 {
        return EventType::Heartbeat;
    }
    let offset = source.wrapping_mul(7) % CUSTOM_TYPES;
    EventType::Custom(
        custom_names[(offset + slot - 1) % CUSTOM_TYPES]
            .as_str()
            .into(),
    )
}

/// Records every source's events through `record_batch`, and returns the events recorded and
/// the time spent inside `record_batch`, which leaves out generating the events.
fn record_all(store: &StatsStore, options: &Options, seed: u64) -> (u64, Duration) {
    let custom_names: Vec<String> = (0..CUSTOM_TYPES).map(|i| format!("Custom{i}")).collect();
    let events_per_source = options.types * options.events_per_type;
    let mut rng = Rng(seed);
    let mut recorded = 0u64;
    let mut recording = Duration::ZERO;
    let mut events: Vec<Event> = Vec::with_capacity(WINDOW_SOURCES * events_per_source);

    for window_start in (0..options.sources).step_by(WINDOW_SOURCES) {
        let window_end = (window_start + WINDOW_SOURCES).min(options.sources);
        events.clear();
        for source in window_start..window_end {
            // Scrambled ids spread sources over the map's shards as real ids would.
            let source_id = Rng(source as u64).next_u64();
            let source_start = START_UNIX_SECONDS + (source % 86_400) as i64;
            for slot in 0..options.types {
                for repeat in 0..options.events_per_type {
                    let secs = source_start + rng.below(3_600) as i64 + repeat as i64;
                    let nanos = rng.below(1_000_000_000) as u32;
                    events.push(Event {
                        source_id,
                        event_type: event_type(&custom_names, source, slot),
                        timestamp: Timestamp::from_parts(secs, nanos)
                            .expect("nanos below one second are valid"),
                        data: None,
                    });
                }
            }
        }

        // Fisher-Yates, so batches interleave the window's sources.
        for i in (1..events.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            events.swap(i, j);
        }

        let started = Instant::now();
        for batch in events.chunks(BATCH_EVENTS) {
            store.record_batch(batch);
        }
        recording += started.elapsed();
        recorded += events.len() as u64;
    }
    (recorded, recording)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("stats_memory: {message}");
            std::process::exit(2);
        }
    };

    let rss_before = rss_bytes();
    let live_before = LIVE_BYTES.load(Ordering::Relaxed);
    let allocations_before = LIVE_ALLOCATIONS.load(Ordering::Relaxed);

    let store = StatsStore::new();
    let (recorded, inserting) = record_all(&store, &options, 0x5EED);

    let live_after = LIVE_BYTES.load(Ordering::Relaxed);
    let allocations_after = LIVE_ALLOCATIONS.load(Ordering::Relaxed);
    let peak = PEAK_BYTES.load(Ordering::Relaxed);
    let rss_after = rss_bytes();

    let totals = store.totals();
    assert_eq!(
        totals.sources_count, options.sources as u64,
        "every source is counted once"
    );
    assert_eq!(totals.events_count, recorded, "every event is counted");

    let sources = options.sources as f64;
    let heap_bytes = live_after.saturating_sub(live_before);
    let rss_delta = rss_after.saturating_sub(rss_before);
    println!(
        "stats_memory: sources={} types={} events={} heap_bytes_per_source={:.1} rss_bytes_per_source={:.1}",
        options.sources,
        options.types,
        recorded,
        heap_bytes as f64 / sources,
        rss_delta as f64 / sources,
    );

    // Each shard's capacity is 7/8 of its slots once it has 8 or more, so the slots follow
    // from the capacity. Every slot contains one entry and one control byte.
    let entry_bytes = size_of::<(u64, SourceStats)>();
    let capacity = store.source_capacity();
    let slots = capacity * 8 / 7;
    let table_bytes = slots * (entry_bytes + 1);
    let other_bytes = heap_bytes.saturating_sub(table_bytes);
    let other_per_source = other_bytes as f64 / sources;
    let slot_cost = (entry_bytes + 1) as f64;

    println!(
        "  size_of::<SourceStats>()         {} bytes",
        size_of::<SourceStats>()
    );
    println!("  size_of::<(u64, SourceStats)>()  {entry_bytes} bytes (one map slot, plus 1 control byte)");
    println!("  map capacity                     {capacity} sources, about {slots} slots");
    println!(
        "  map load                         {:.3} sources per slot",
        sources / slots as f64
    );
    println!(
        "  heap                             {heap_bytes} bytes live after minus before, in {} more allocations",
        allocations_after as isize - allocations_before as isize
    );
    println!(
        "  heap in map slots (estimate)     {table_bytes} bytes, {:.1} per source",
        table_bytes as f64 / sources
    );
    println!(
        "  heap elsewhere (estimate)        {other_bytes} bytes, {other_per_source:.1} per source (spilled types, interner, batch scratch)"
    );
    println!(
        "  projected at load 7/16 and 7/8   {:.1} and {:.1} bytes per source (right after and right before a shard doubles)",
        slot_cost * 16.0 / 7.0 + other_per_source,
        slot_cost * 8.0 / 7.0 + other_per_source,
    );
    println!(
        "  heap peak while recording        {} bytes (the event buffer included)",
        peak.saturating_sub(live_before)
    );
    println!("  rss before / after               {rss_before} / {rss_after} bytes");

    // A second pass over the same sources with new events times updates of existing
    // sources, which at this size miss the CPU caches on most lookups.
    let (updated, updating) = record_all(&store, &options, 0xF00D);
    println!(
        "  record_batch time                {:.1} ns per event inserting sources, {:.1} ns per event updating them",
        inserting.as_nanos() as f64 / recorded as f64,
        updating.as_nanos() as f64 / updated as f64,
    );
}
