//! Measures the validator chain that `POST /ingest` runs on every parsed event: an
//! `EventTypeValidator` with 10 allowed types, then a `SourceIdValidator` with 1,000 allowed ids,
//! in the alphabetical order the service runs them.
//!
//! `all_accepted` is the common case. In `10pct_rejected` one event in ten has a source id
//! outside the list, so the rejection message is built as the HTTP handler would build it.

#[path = "fixtures/mod.rs"]
mod fixtures;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use telemetron::ingest::event::Event;
use telemetron::ingest::parse::BodyFormat;
use telemetron::plugins::validators::{EventTypeValidator, SourceIdValidator};
use telemetron::plugins::Validator;

use fixtures::{SourceMix, SourceSampler, ALLOWED_TYPES, BODY_EVENTS};

const ALLOWED_SOURCES: u64 = 1_000;

/// Runs the chain on every event and returns the number accepted. As in the HTTP handler, the
/// first rejection wins and its message names the validator.
fn run_chain(validators: &[(&str, Box<dyn Validator>)], events: &[Event]) -> usize {
    let mut accepted = 0;
    for event in events {
        let verdict = validators.iter().try_for_each(|(name, validator)| {
            validator
                .validate(event)
                .map_err(|reason| format!("rejected by {name}: {reason}"))
        });
        match verdict {
            Ok(()) => accepted += 1,
            Err(message) => {
                black_box(message);
            }
        }
    }
    accepted
}

fn bench_validate(c: &mut Criterion) {
    let validators: Vec<(&str, Box<dyn Validator>)> = vec![
        (
            "EventTypeValidator",
            Box::new(EventTypeValidator::new(ALLOWED_TYPES)),
        ),
        (
            "SourceIdValidator",
            Box::new(SourceIdValidator::new(0..ALLOWED_SOURCES)),
        ),
    ];

    // Source ids are drawn from 0..1,000 for the accepted case and from 0..1,111 for the other,
    // so about one event in ten falls outside the allowed list.
    let cases = [
        ("all_accepted", ALLOWED_SOURCES),
        ("10pct_rejected", ALLOWED_SOURCES * 10 / 9),
    ];

    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(BODY_EVENTS as u64));
    for (name, source_ids) in cases {
        let mut sampler = SourceSampler::new(SourceMix::Uniform, source_ids, 11);
        let body = fixtures::ndjson_body(BODY_EVENTS, &mut sampler);
        let events = fixtures::parse_events(&body, BodyFormat::Ndjson);

        group.bench_with_input(BenchmarkId::new("chain", name), &events, |b, events| {
            b.iter(|| run_chain(&validators, black_box(events)));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = fixtures::criterion_config();
    targets = bench_validate
}
criterion_main!(benches);
