//! Measures `parse_body` on one event, a JSON array and an NDJSON body of 1,000 events, next to
//! simd-json alone on the same bytes, so the cost of building `Event`s over the parse floor
//! reads off one run.
//!
//! Two floors run on the same bytes. `simd_json_floor` does what `parse_body` does before it
//! builds events: copy the body into a reused buffer and run `simd_json::fill_tape` with
//! reused buffers, once per body or once per NDJSON line. The gap to it is the cost of what
//! `parse_body` adds on top: the scans of the raw bytes (for `data` spans and unpaired
//! surrogates), field checks, timestamp parsing and building `Event`s.
//! `simd_json_value` is simd-json as an application would use it on its own: the same copy,
//! then `simd_json::to_borrowed_value`, which also builds the document's objects.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;
use std::ops::Range;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use simd_json::{Buffers, Tape};
use telemetron::ingest::parse::{parse_body, BodyFormat, ParseLimits};

use fixtures::{SourceMix, SourceSampler, BODY_EVENTS};

/// One benchmark input: a body, its framing and its event count.
struct Case {
    shape: &'static str,
    body: Bytes,
    format: BodyFormat,
    events: usize,
}

fn cases() -> Vec<Case> {
    let mut sampler = SourceSampler::new(SourceMix::Uniform, 1_000, 7);
    vec![
        Case {
            shape: "single",
            body: fixtures::single_event_body(),
            format: BodyFormat::Json,
            events: 1,
        },
        Case {
            shape: "array_1000",
            body: fixtures::json_array_body(BODY_EVENTS, &mut sampler),
            format: BodyFormat::Json,
            events: BODY_EVENTS,
        },
        Case {
            shape: "ndjson_1000",
            body: fixtures::ndjson_body(BODY_EVENTS, &mut sampler),
            format: BodyFormat::Ndjson,
            events: BODY_EVENTS,
        },
    ]
}

/// simd-json's own work on a body, with every buffer kept between calls.
struct TapeFloor {
    input: Vec<u8>,
    buffers: Buffers,
    /// Kept empty between calls, so its `'static` lifetime refers to no data.
    tape: Tape<'static>,
}

impl TapeFloor {
    fn new() -> Self {
        TapeFloor {
            input: Vec::new(),
            buffers: Buffers::default(),
            tape: Tape(Vec::new()),
        }
    }

    /// Copies `body`, parses it to a tape and returns the total number of tape nodes.
    fn parse(&mut self, body: &[u8], format: BodyFormat) -> usize {
        self.input.clear();
        self.input.extend_from_slice(body);

        match format {
            BodyFormat::Json => self.fill(0..body.len()),
            BodyFormat::Ndjson => ndjson_lines(body).map(|line| self.fill(line)).sum(),
        }
    }

    fn fill(&mut self, range: Range<usize>) -> usize {
        let mut tape = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        simd_json::fill_tape(&mut self.input[range], &mut self.buffers, &mut tape)
            .expect("generated fixture is valid JSON");
        let nodes = tape.0.len();
        self.tape = tape.reset();
        nodes
    }
}

/// Copies `body` and parses it, or each NDJSON line, into a `simd_json::BorrowedValue`;
/// returns how many values were built.
fn value_floor(input: &mut Vec<u8>, body: &[u8], format: BodyFormat) -> usize {
    input.clear();
    input.extend_from_slice(body);
    let ranges: Vec<Range<usize>> = match format {
        BodyFormat::Json => std::iter::once(0..body.len()).collect(),
        BodyFormat::Ndjson => ndjson_lines(body).collect(),
    };
    let mut built = 0;
    for range in ranges {
        let value = simd_json::to_borrowed_value(&mut input[range]).expect("generated fixture is valid JSON");
        built += usize::from(!matches!(value, simd_json::BorrowedValue::Static(_)));
    }
    built
}

/// Byte ranges of the non-empty lines of `body`, without their `\n`.
fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        while start < body.len() {
            let end =
                memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |offset| start + offset);
            let line = start..end;
            start = end + 1;
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    })
}

fn bench_parse(c: &mut Criterion) {
    let limits = ParseLimits::default();
    let mut group = c.benchmark_group("parse");

    for case in cases() {
        group.throughput(Throughput::Elements(case.events as u64));

        group.bench_with_input(
            BenchmarkId::new("parse_body", case.shape),
            &case,
            |b, case| {
                b.iter(|| {
                    let parsed = parse_body(black_box(&case.body), case.format, &limits)
                        .expect("generated body parses");
                    debug_assert_eq!(parsed.items.len(), case.events);
                    parsed
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("simd_json_value", case.shape),
            &case,
            |b, case| {
                let mut input = Vec::new();
                b.iter(|| value_floor(&mut input, black_box(&case.body), case.format));
            },
        );

        group.bench_with_input(
            BenchmarkId::new("simd_json_floor", case.shape),
            &case,
            |b, case| {
                let mut floor = TapeFloor::new();
                b.iter(|| floor.parse(black_box(&case.body), case.format));
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = fixtures::criterion_config();
    targets = bench_parse
}
criterion_main!(benches);
