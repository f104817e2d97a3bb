//! Parsing of `POST /ingest` request bodies into [`Event`]s: one JSON event object, a JSON array
//! of them, or NDJSON with one object per line.
//!
//! simd-json validates each body (or NDJSON line) and builds a tape of types and unescaped
//! strings. The tape has no byte offsets, so a scanner over the original bytes supplies the raw
//! spans: `data` is kept as a zero-copy [`Bytes::slice`] of the body, exactly as sent.
//!
//! simd-json parses in place, so each call copies the body into a per-thread scratch buffer that
//! is reused across requests. Callers must cap the body size before calling [`parse_body`],
//! because simd-json's memory grows with the number of JSON tokens, not with nesting depth. In a
//! local measurement with simd-json 0.15.1, a 1 MiB body of `[` peaked at about 57 MiB RSS, a
//! worst case of about 55 bytes per body byte.

mod error;
mod fields;
mod ndjson;
mod scan;

use std::cell::Cell;

use bytes::Bytes;
use simd_json::{Buffers, Node, Tape};

use self::error::{classify, is_json_whitespace};
pub use self::error::{BodyError, ItemError, JsonKind, JsonSyntax, RejectedSourceId};
use self::scan::{ScanError, Scanner};
use crate::ingest::event::Event;

/// Maximum number of keys in one event object. The duplicate-key check compares unknown keys
/// pairwise, so this bounds its work at about 2,000 string comparisons per event.
pub const MAX_EVENT_KEYS: usize = 64;

/// Bodies up to this length leave their scratch buffers in the thread for the next request.
/// Larger ones free them afterwards, so one huge body does not pin tens of MiB per thread.
// NOTE: 256 KiB is a judgment call. Retaining the buffers of a 1.4 MB batch made its parse about
// 28% faster locally, at a cost of up to about 55 bytes per body byte kept for each thread.
const MAX_RETAINED_BODY_BYTES: usize = 256 * 1024;

/// Framing of a request body, chosen from the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON value: an event object or an array of event objects.
    Json,
    /// One event object per line (`application/x-ndjson`).
    Ndjson,
}

/// Limits applied while parsing one body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Maximum number of events in one body. Default 10,000.
    pub max_batch_events: usize,
    /// Maximum nesting depth of an event's `data`: a scalar is 0, `[]` or `{}` is 1. Default 32.
    pub max_data_depth: usize,
    /// Maximum raw length of an event's `data` value in bytes, as sent. Default 65,536.
    pub max_data_bytes: usize,
}

/// Floor of [`ParseLimits::max_document_depth`]. Depth costs only a counter in the scanner
/// and simd-json does not recurse, so this can be generous.
pub const MIN_DOCUMENT_DEPTH: usize = 1024;

impl ParseLimits {
    /// Maximum nesting depth of a whole document or NDJSON line: at least
    /// [`MIN_DOCUMENT_DEPTH`], and never less than `max_data_depth + 2` (an array of events
    /// adds two levels above `data`). Nesting in `data` past `max_data_depth` but within this
    /// limit rejects only that event, so its siblings in a batch are kept; a document deeper
    /// than this is rejected as a whole, JSON body or NDJSON line.
    #[must_use]
    pub fn max_document_depth(&self) -> usize {
        self.max_data_depth.saturating_add(2).max(MIN_DOCUMENT_DEPTH)
    }
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            max_batch_events: 10_000,
            max_data_depth: 32,
            max_data_bytes: 65_536,
        }
    }
}

/// The shape a parsed body had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyShape {
    /// A single JSON event object.
    Single,
    /// A JSON array of event objects.
    Array,
    /// NDJSON lines.
    Ndjson,
}

/// A body whose framing was valid: one result per event, in body order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedBody {
    /// The body's shape.
    pub shape: BodyShape,
    /// One entry per array element or non-blank NDJSON line; a `Single` body has one entry.
    pub items: Vec<Result<Event, ItemError>>,
}

/// Parses a request body into events.
///
/// A problem inside one event becomes an [`ItemError`] at that event's index and the other
/// events are still returned. For NDJSON the index counts non-blank lines from 0.
///
/// # Errors
///
/// Returns a [`BodyError`], and keeps nothing from the body, when:
/// - a `Json` body is empty, is not exactly one valid JSON value (invalid UTF-8 and unpaired
///   surrogate escapes included), is a JSON scalar, or nests deeper than
///   [`ParseLimits::max_document_depth`] anywhere;
/// - the body contains no event (`[]`, or NDJSON without a non-blank line);
/// - the body contains more than `max_batch_events` events.
pub fn parse_body(
    body: &Bytes,
    format: BodyFormat,
    limits: &ParseLimits,
) -> Result<ParsedBody, BodyError> {
    with_scratch(body.len(), |scratch| match format {
        BodyFormat::Json => parse_json(body, limits, scratch),
        BodyFormat::Ndjson => ndjson::parse_ndjson(body, limits, scratch),
    })
}

/// Buffers reused by every parse on a thread.
struct Scratch {
    /// The mutable copy that simd-json parses in place.
    input: Vec<u8>,
    buffers: Buffers,
    /// Kept empty between parses, so its `'static` lifetime refers to no data.
    tape: Tape<'static>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            input: Vec::new(),
            // simd-json's own depth limit (1024 by default since 0.17) is lifted: the scanner
            // enforces `max_document_depth` with its own error, and simd-json's stack grows
            // with the number of tokens either way, which the body size limit bounds.
            buffers: Buffers::with_max_depth(128, usize::MAX),
            tape: Tape(Vec::new()),
        }
    }
}

thread_local! {
    static SCRATCH: Cell<Option<Scratch>> = const { Cell::new(None) };
}

fn with_scratch<R>(body_len: usize, parse: impl FnOnce(&mut Scratch) -> R) -> R {
    // The scratch is moved out of its slot rather than borrowed, so a nested call, or a call
    // while the thread is being torn down, just starts with fresh buffers.
    let mut scratch = SCRATCH
        .try_with(Cell::take)
        .ok()
        .flatten()
        .unwrap_or_else(Scratch::new);
    let result = parse(&mut scratch);
    if body_len <= MAX_RETAINED_BODY_BYTES {
        // An error here means the thread is exiting, so there is no later request to reuse it.
        let _ = SCRATCH.try_with(|slot| slot.set(Some(scratch)));
    }
    result
}

/// Parses `scratch_input` with simd-json into the scratch tape and hands the nodes and the
/// structural indexes to `build`. simd-json unescapes strings inside `scratch_input`, so it
/// must be a copy of the text.
fn with_tape<R>(
    scratch_input: &mut [u8],
    buffers: &mut Buffers,
    tape_slot: &mut Tape<'static>,
    build: impl FnOnce(Result<(&[Node<'_>], &[u32]), simd_json::Error>) -> R,
) -> R {
    let mut tape = std::mem::replace(tape_slot, Tape(Vec::new())).reset();
    let result = match simd_json::fill_tape(scratch_input, buffers, &mut tape) {
        Ok(()) => build(Ok((&tape.0, buffers.structural_indexes()))),
        Err(error) => build(Err(error)),
    };
    *tape_slot = tape.reset();
    result
}

fn parse_json(
    body: &Bytes,
    limits: &ParseLimits,
    scratch: &mut Scratch,
) -> Result<ParsedBody, BodyError> {
    let Some(start) = body.iter().position(|&byte| !is_json_whitespace(byte)) else {
        return Err(BodyError::EmptyBody);
    };

    scratch.input.clear();
    scratch.input.extend_from_slice(body);
    let Scratch {
        input,
        buffers,
        tape,
    } = scratch;
    let copy_address = input.as_ptr() as usize;
    with_tape(input, buffers, tape, |parsed| match parsed {
        Ok((nodes, structurals)) => build_json_body(body, start, copy_address, nodes, structurals, limits),
        Err(error) => {
            let (syntax, offset) = classify(&error, body);
            Err(BodyError::InvalidJson { offset, syntax })
        }
    })
}

fn build_json_body(
    body: &Bytes,
    start: usize,
    copy_address: usize,
    nodes: &[Node<'_>],
    structurals: &[u32],
    limits: &ParseLimits,
) -> Result<ParsedBody, BodyError> {
    if let Some(surrogate) = scan::find_unpaired_surrogate(body) {
        return Err(BodyError::InvalidJson {
            offset: Some(surrogate.offset),
            syntax: JsonSyntax::UnpairedSurrogate,
        });
    }

    let max_depth = limits.max_document_depth();
    let body_error = |error: ScanError| match error {
        ScanError::TooDeep { offset } => BodyError::TooDeep {
            offset,
            limit: max_depth,
        },
        // NOTE: simd-json accepted the body, so this means the scanner has a bug.
        ScanError::Malformed { offset } => BodyError::InvalidJson {
            offset: Some(offset),
            syntax: JsonSyntax::Invalid,
        },
    };
    let mut scanner = Scanner::new(body, start)
        .with_tape_copy(copy_address)
        .with_structurals(structurals, 0);

    match nodes.first() {
        Some(Node::Object { .. }) => {
            check_event_count(1, limits)?;

            // The event object is level 1, so its members' values start at level 2.
            let item = fields::parse_event(body, &mut scanner, nodes, max_depth - 1, limits)
                .map_err(body_error)?;
            Ok(ParsedBody {
                shape: BodyShape::Single,
                items: vec![item],
            })
        }
        Some(&Node::Array { len, .. }) => {
            check_event_count(len, limits)?;

            let mut items = Vec::with_capacity(len);
            scanner.enter(b'[').map_err(body_error)?;
            let mut node_index = 1;
            for _ in 0..len {
                if !scanner.next_element().map_err(body_error)? {
                    return Err(body_error(scanner.malformed()));
                }
                let element = nodes.get(node_index..).unwrap_or_default();
                let Some(node) = element.first() else {
                    return Err(body_error(scanner.malformed()));
                };

                // The array is level 1 and an event object level 2.
                let item = if let Node::Object { .. } = node {
                    fields::parse_event(body, &mut scanner, element, max_depth - 2, limits)
                        .map_err(body_error)?
                } else {
                    scanner.skip_value(max_depth - 1).map_err(body_error)?;
                    Err(ItemError::NotAnObject {
                        found: JsonKind::of(node),
                    })
                };
                node_index += fields::subtree_len(node);
                items.push(item);
            }
            Ok(ParsedBody {
                shape: BodyShape::Array,
                items,
            })
        }
        Some(other) => Err(BodyError::NotObjectOrArray {
            found: JsonKind::of(other),
        }),
        // simd-json 0.19 returns at least one node for every body it accepts.
        None => Err(BodyError::EmptyBody),
    }
}

fn check_event_count(count: usize, limits: &ParseLimits) -> Result<(), BodyError> {
    if count == 0 {
        return Err(BodyError::EmptyBatch);
    }
    if count > limits.max_batch_events {
        return Err(BodyError::TooManyEvents {
            count,
            limit: limits.max_batch_events,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::EventType;

    const EVENT: &str = r#"{"sourceId":7,"type":"Heartbeat","timestamp":"2024-05-01T12:00:00Z"}"#;

    fn parse(text: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
        parse_body(&Bytes::copy_from_slice(text), BodyFormat::Json, limits)
    }

    fn parse_default(text: &str) -> Result<ParsedBody, BodyError> {
        parse(text.as_bytes(), &ParseLimits::default())
    }

    fn invalid_json(text: &str) -> (Option<usize>, JsonSyntax) {
        match parse_default(text) {
            Err(BodyError::InvalidJson { offset, syntax }) => (offset, syntax),
            other => panic!("expected invalid JSON for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn single_object_body_yields_one_event() {
        let parsed = parse_default(&format!("  \r\n{EVENT}\n ")).expect("valid body");

        assert_eq!(parsed.shape, BodyShape::Single);
        assert_eq!(parsed.items.len(), 1);
        let event = parsed.items[0].as_ref().expect("valid event");
        assert_eq!(event.source_id, 7);
        assert_eq!(event.event_type, EventType::Heartbeat);
        assert_eq!(event.data, None);
    }

    #[test]
    fn array_body_yields_events_in_order() {
        let body = format!(
            r#"[ {EVENT} , {{"sourceId":8,"type":"a","timestamp":"2024-05-01T12:00:00Z"}} ]"#
        );
        let parsed = parse_default(&body).expect("valid body");

        assert_eq!(parsed.shape, BodyShape::Array);
        let ids: Vec<u64> = parsed
            .items
            .iter()
            .map(|item| item.as_ref().expect("valid event").source_id)
            .collect();
        assert_eq!(ids, [7, 8]);
    }

    #[test]
    fn array_keeps_valid_items_beside_invalid_ones() {
        let body = format!(
            r#"[{EVENT}, 5, {{"sourceId":-1,"type":"a","timestamp":"2024-05-01T12:00:00Z"}}, [[{{}}]], "x", {EVENT}]"#
        );
        let parsed = parse_default(&body).expect("valid body");

        assert_eq!(parsed.items.len(), 6);
        assert!(parsed.items[0].is_ok());
        assert_eq!(
            parsed.items[1],
            Err(ItemError::NotAnObject {
                found: JsonKind::Number
            })
        );
        assert!(matches!(
            parsed.items[2],
            Err(ItemError::InvalidSourceId { .. })
        ));
        assert_eq!(
            parsed.items[3],
            Err(ItemError::NotAnObject {
                found: JsonKind::Array
            })
        );
        assert_eq!(
            parsed.items[4],
            Err(ItemError::NotAnObject {
                found: JsonKind::String
            })
        );
        assert!(parsed.items[5].is_ok());
    }

    #[test]
    fn rejects_empty_body() {
        assert_eq!(parse_default(""), Err(BodyError::EmptyBody));
        assert_eq!(parse_default(" \r\n\t"), Err(BodyError::EmptyBody));
    }

    #[test]
    fn rejects_empty_array() {
        assert_eq!(parse_default(" [ ] "), Err(BodyError::EmptyBatch));
    }

    #[test]
    fn rejects_scalar_body() {
        for (text, found) in [
            ("1", JsonKind::Number),
            (r#""event""#, JsonKind::String),
            ("null", JsonKind::Null),
            ("true", JsonKind::Bool),
        ] {
            assert_eq!(
                parse_default(text),
                Err(BodyError::NotObjectOrArray { found }),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_trailing_bytes() {
        let body = format!("{EVENT} x");

        assert_eq!(
            invalid_json(&body),
            (Some(EVENT.len() + 1), JsonSyntax::TrailingData)
        );
    }

    #[test]
    fn rejects_two_concatenated_objects() {
        let body = format!("{EVENT}\n{EVENT}");

        assert_eq!(
            invalid_json(&body),
            (Some(EVENT.len() + 1), JsonSyntax::TrailingData)
        );
    }

    #[test]
    fn rejects_truncated_array() {
        let body = format!("[{EVENT}, {EVENT}");

        assert_eq!(invalid_json(&body), (None, JsonSyntax::UnexpectedEnd));
    }

    #[test]
    fn rejects_misplaced_bracket_as_unexpected_byte() {
        let body = format!("[{EVENT},]");

        assert_eq!(
            invalid_json(&body),
            (Some(EVENT.len() + 2), JsonSyntax::UnexpectedByte(b']'))
        );
    }

    #[test]
    fn rejects_body_over_event_limit() {
        let limits = ParseLimits {
            max_batch_events: 2,
            ..ParseLimits::default()
        };
        let two = format!("[{EVENT},{EVENT}]");
        let three = format!("[{EVENT},{EVENT},{EVENT}]");

        assert!(parse(two.as_bytes(), &limits).is_ok());
        assert_eq!(
            parse(three.as_bytes(), &limits),
            Err(BodyError::TooManyEvents { count: 3, limit: 2 })
        );
    }

    #[test]
    fn rejects_open_brackets_without_overflow() {
        let body = vec![b'['; 1 << 20];

        assert!(matches!(
            parse(&body, &ParseLimits::default()),
            Err(BodyError::InvalidJson { .. })
        ));
    }

    #[test]
    fn rejects_open_objects_without_overflow() {
        let body = br#"{"a":"#.repeat((1 << 20) / 5);

        assert!(matches!(
            parse(&body, &ParseLimits::default()),
            Err(BodyError::InvalidJson { .. })
        ));
    }

    #[test]
    fn rejects_deep_valid_nesting_as_too_deep() {
        let depth = 1 << 19;
        let mut body = vec![b'['; depth];
        body.extend(vec![b']'; depth]);

        assert_eq!(
            parse(&body, &ParseLimits::default()),
            Err(BodyError::TooDeep {
                offset: MIN_DOCUMENT_DEPTH,
                limit: MIN_DOCUMENT_DEPTH
            })
        );
    }

    #[test]
    fn rejects_deep_data_past_document_depth() {
        let depth = 1 << 19;
        let body = format!(
            r#"{{"data":{}{},"sourceId":1}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );

        assert!(matches!(
            parse_default(&body),
            Err(BodyError::TooDeep {
                limit: MIN_DOCUMENT_DEPTH,
                ..
            })
        ));
    }

    #[test]
    fn deep_data_in_array_rejects_only_that_event() {
        let limits = ParseLimits {
            max_data_depth: 2,
            ..ParseLimits::default()
        };
        let event = |data: &str| {
            format!(
                r#"{{"sourceId":1,"type":"a","timestamp":"2024-05-01T12:00:00Z","data":{data}}}"#
            )
        };
        let body = format!("[{},{}]", event("[[1]]"), event("[[[1]]]"));

        let parsed = parse(body.as_bytes(), &limits).expect("valid body");
        assert!(parsed.items[0].is_ok());
        assert!(matches!(
            parsed.items[1],
            Err(ItemError::DataTooDeep { limit: 2, .. })
        ));
    }

    #[test]
    fn rejects_unpaired_surrogate_anywhere_in_body() {
        let body = format!(r#"[{EVENT}, {{"other":"\ud800"}}]"#);

        assert_eq!(
            invalid_json(&body),
            (Some(EVENT.len() + 13), JsonSyntax::UnpairedSurrogate)
        );
    }

    #[test]
    fn rejects_invalid_utf8_anywhere_in_body() {
        let mut body = format!(r#"[{EVENT}, {{"other":""#).into_bytes();
        let offset = body.len();
        body.extend_from_slice(b"\xff\"}]");

        assert_eq!(
            parse(&body, &ParseLimits::default()),
            Err(BodyError::InvalidJson {
                offset: Some(offset),
                syntax: JsonSyntax::InvalidUtf8
            })
        );
    }

    #[test]
    fn data_is_a_slice_of_the_body() {
        let body = Bytes::from(
            r#"{"sourceId":1,"type":"a","timestamp":"2024-05-01T12:00:00Z","data":[1, 2]}"#,
        );
        let parsed =
            parse_body(&body, BodyFormat::Json, &ParseLimits::default()).expect("valid body");
        let data = parsed.items[0]
            .as_ref()
            .expect("valid event")
            .data
            .clone()
            .expect("data present");

        assert_eq!(&data[..], b"[1, 2]");
        let body_range = body.as_ptr_range();
        assert!(body_range.contains(&data.as_ptr()), "data was copied");
    }

    #[test]
    fn scratch_reuse_keeps_bodies_independent() {
        let escaped =
            r#"{"sourceId":1,"type":"\u0041\u0042\u0043","timestamp":"2024-05-01T12:00:00Z"}"#;
        let large = format!("[{}]", vec![EVENT; 5_000].join(","));
        assert!(large.len() > MAX_RETAINED_BODY_BYTES);

        for text in [escaped, &large, escaped, EVENT] {
            let parsed = parse_default(text).expect("valid body");
            let first = parsed.items[0].as_ref().expect("valid event");
            let expected = if text == escaped { "ABC" } else { "Heartbeat" };
            assert_eq!(first.event_type.as_str(), expected);
        }
    }
}
