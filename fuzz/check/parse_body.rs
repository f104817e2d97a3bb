//! Properties of `telemetron::ingest::parse::parse_body` on arbitrary input. The `parse_body`
//! fuzz target and the `fuzz_replay` test both include this file with `#[path]`, so they run the
//! same checks.
//!
//! The first input byte selects how the rest is used, by its value modulo 8. Even values parse
//! it as `BodyFormat::Json` and odd values as `BodyFormat::Ndjson`. The values 0 and 1 pass it
//! to the parser unchanged, 2 and 3 gunzip it first, 4 and 5 inflate it (zlib or raw deflate),
//! and 6 and 7 zstd-decode it. The ASCII digits `0` to `7` select the same cases, so seed files
//! can start with a readable digit.
//!
//! A violated property panics with a message naming it, which libFuzzer records as a crash.

use bytes::Bytes;
use serde_json::Value;
use telemetron::ingest::decode::{decode, ContentCoding};
use telemetron::ingest::event::MAX_EVENT_TYPE_BYTES;
use telemetron::ingest::parse::{
    parse_body, BodyError, BodyFormat, BodyShape, ItemError, JsonSyntax, ParseLimits, ParsedBody,
};

/// Parser limits, small so that inputs of a few KiB reach every limit.
pub const LIMITS: ParseLimits = ParseLimits {
    max_batch_events: 1000,
    max_data_depth: 8,
    max_data_bytes: 1024,
};

/// Maximum decoded size of a compressed input, in bytes.
pub const MAX_DECODED_BYTES: usize = 1 << 20;

/// Runs every check on one fuzz input: the selector byte, then the body.
///
/// # Panics
/// Panics when `decode` or `parse_body` panics, or when the parser breaks a property that this
/// file checks.
pub fn check_input(input: &[u8]) {
    let Some((&selector, rest)) = input.split_first() else {
        return;
    };
    let format = if selector % 2 == 0 {
        BodyFormat::Json
    } else {
        BodyFormat::Ndjson
    };
    let coding = match (selector % 8) / 2 {
        0 => None,
        1 => Some(ContentCoding::Gzip),
        2 => Some(ContentCoding::Deflate),
        _ => Some(ContentCoding::Zstd),
    };

    let body = match coding {
        None => Bytes::copy_from_slice(rest),
        Some(coding) => {
            // Invalid compressed data is an expected error, so it is not parsed.
            let Ok(decoded) = decode(Bytes::copy_from_slice(rest), &[coding], MAX_DECODED_BYTES)
            else {
                return;
            };
            assert!(
                decoded.len() <= MAX_DECODED_BYTES,
                "decode returned {} bytes, over its limit of {MAX_DECODED_BYTES}",
                decoded.len()
            );
            decoded
        }
    };
    check_body(&body, format);
}

/// Parses `body` as `format` and checks the result against counts and JSON validity computed
/// here, independently of the parser.
///
/// # Panics
/// Panics when a property does not hold.
pub fn check_body(body: &Bytes, format: BodyFormat) {
    let result = parse_body(body, format, &LIMITS);
    match format {
        BodyFormat::Json => check_json_body(body, &result),
        BodyFormat::Ndjson => check_ndjson_body(body, &result),
    }
    if let Ok(parsed) = &result {
        check_events(body, parsed);
    }
}

fn check_json_body(body: &Bytes, result: &Result<ParsedBody, BodyError>) {
    let first = body.iter().copied().find(|&byte| !is_json_whitespace(byte));
    let Some(first) = first else {
        assert_eq!(
            result,
            &Err(BodyError::EmptyBody),
            "a whitespace-only JSON body must be EmptyBody"
        );
        return;
    };

    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            // Which numbers simd-json accepts depends on its `big-int-as-float` and `128bit`
            // features, so InvalidNumber is the one syntax error allowed on text serde_json reads.
            if let Err(BodyError::InvalidJson { syntax, offset }) = result {
                assert_eq!(
                    *syntax,
                    JsonSyntax::InvalidNumber,
                    "serde_json accepts the body but parse_body rejects it as invalid JSON at {offset:?}"
                );
            }
            if let Ok(parsed) = result {
                let expected = match &value {
                    Value::Array(elements) => elements.len(),
                    _ => 1,
                };
                assert_eq!(
                    parsed.items.len(),
                    expected,
                    "item count differs from serde_json's element count"
                );
            }
        }
        Err(error) => {
            if is_serde_only_rejection(&error) {
                return;
            }
            assert!(
                matches!(result, Err(BodyError::InvalidJson { .. })),
                "serde_json rejects the body ({error}) but parse_body returns {result:?}"
            );
        }
    }

    match result {
        Ok(parsed) => {
            let (shape, expected) = match first {
                b'{' => (BodyShape::Single, 1),
                b'[' => (BodyShape::Array, count_array_elements(body)),
                other => panic!("parse_body accepted a JSON body starting with byte {other:#04x}"),
            };
            assert_eq!(parsed.shape, shape, "JSON body shape");
            assert_eq!(
                parsed.items.len(),
                expected,
                "JSON item count differs from the top-level element count"
            );
            check_item_split(parsed, expected);
        }
        Err(BodyError::EmptyBatch) => {
            assert_eq!(first, b'[', "EmptyBatch for a body that is not an array");
            assert_eq!(
                count_array_elements(body),
                0,
                "EmptyBatch for a non-empty array"
            );
        }
        Err(BodyError::TooManyEvents { count, limit }) => {
            assert_eq!(*limit, LIMITS.max_batch_events, "TooManyEvents limit");
            assert!(
                *count > *limit,
                "TooManyEvents with {count} events, within the limit"
            );
            assert_eq!(
                *count,
                count_array_elements(body),
                "TooManyEvents count differs from the top-level element count"
            );
        }
        Err(BodyError::EmptyBody) => panic!("EmptyBody for a body with non-whitespace bytes"),
        Err(_) => {}
    }
}

fn check_ndjson_body(body: &Bytes, result: &Result<ParsedBody, BodyError>) {
    let lines: Vec<&[u8]> = body
        .split(|&byte| byte == b'\n')
        .filter(|line| !is_blank_line(line))
        .collect();
    let count = lines.len();

    let parsed = match result {
        Ok(parsed) => parsed,
        Err(BodyError::EmptyBatch) => {
            assert_eq!(
                count, 0,
                "EmptyBatch for NDJSON with {count} non-blank lines"
            );
            return;
        }
        Err(BodyError::TooManyEvents {
            count: reported,
            limit,
        }) => {
            assert_eq!(
                *reported, count,
                "TooManyEvents count differs from the non-blank lines"
            );
            assert_eq!(*limit, LIMITS.max_batch_events, "TooManyEvents limit");
            assert!(
                count > *limit,
                "TooManyEvents with {count} lines, within the limit"
            );
            return;
        }
        Err(other) => panic!("NDJSON body rejected as a whole with {other:?}"),
    };
    assert!(
        count >= 1,
        "NDJSON body without non-blank lines was accepted"
    );
    assert!(
        count <= LIMITS.max_batch_events,
        "NDJSON body over max_batch_events was accepted"
    );
    assert_eq!(parsed.shape, BodyShape::Ndjson, "NDJSON body shape");
    assert_eq!(
        parsed.items.len(),
        count,
        "NDJSON item count differs from the non-blank line count"
    );
    check_item_split(parsed, count);

    for (index, (line, item)) in lines.iter().zip(&parsed.items).enumerate() {
        match serde_json::from_slice::<Value>(line) {
            Ok(_) => {
                if let Err(ItemError::InvalidJson {
                    syntax,
                    line: number,
                    ..
                }) = item
                {
                    assert_eq!(
                        *syntax,
                        JsonSyntax::InvalidNumber,
                        "serde_json accepts NDJSON item {index} but it is rejected as invalid JSON on line {number}"
                    );
                }
            }
            Err(error) => {
                if is_serde_only_rejection(&error) {
                    continue;
                }
                assert!(
                    matches!(item, Err(ItemError::InvalidJson { .. })),
                    "serde_json rejects NDJSON item {index} ({error}) but parse_body returns {item:?}"
                );
            }
        }
    }
}

/// Checks that the items split into accepted and rejected events that add up to `expected`.
fn check_item_split(parsed: &ParsedBody, expected: usize) {
    let accepted = parsed.items.iter().filter(|item| item.is_ok()).count();
    let rejected = parsed.items.iter().filter(|item| item.is_err()).count();
    assert_eq!(
        accepted + rejected,
        expected,
        "accepted ({accepted}) plus rejected ({rejected}) differs from the items seen"
    );
}

fn check_events(body: &Bytes, parsed: &ParsedBody) {
    let body_range = body.as_ptr_range();
    for (index, item) in parsed.items.iter().enumerate() {
        let Ok(event) = item else {
            continue;
        };

        let event_type = event.event_type.as_str();
        assert!(!event_type.is_empty(), "event {index} has an empty type");
        assert!(
            event_type.len() <= MAX_EVENT_TYPE_BYTES,
            "event {index} has a type of {} bytes, over {MAX_EVENT_TYPE_BYTES}",
            event_type.len()
        );

        let Some(data) = &event.data else {
            continue;
        };
        assert!(
            body_range.contains(&data.as_ptr()),
            "event {index} data is not a slice of the body"
        );
        assert!(
            data.len() <= LIMITS.max_data_bytes,
            "event {index} data is {} bytes, over max_data_bytes",
            data.len()
        );
        let value = match serde_json::from_slice::<Value>(data) {
            Ok(value) => value,
            Err(error) => panic!(
                "event {index} data is not valid JSON for serde_json ({error}): {:?}",
                String::from_utf8_lossy(data)
            ),
        };
        let depth = nesting_depth(&value);
        assert!(
            depth <= LIMITS.max_data_depth,
            "event {index} data nests {depth} levels, over max_data_depth"
        );
    }
}

/// Returns true for serde_json errors on text that is valid JSON. serde_json 1 stops at 128
/// levels of nesting and rejects numbers outside the f64 range, and simd-json has its own limits
/// there.
fn is_serde_only_rejection(error: &serde_json::Error) -> bool {
    let message = error.to_string();
    message.starts_with("recursion limit exceeded") || message.starts_with("number out of range")
}

/// Counts the elements of the top-level array of `body`, which must be valid JSON.
fn count_array_elements(body: &[u8]) -> usize {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut commas = 0;
    let mut has_element = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                has_element |= depth == 1;
            }
            b'[' | b'{' => {
                has_element |= depth == 1;
                depth += 1;
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => commas += 1,
            _ if depth == 1 && !is_json_whitespace(byte) => has_element = true,
            _ => {}
        }
    }
    if has_element {
        commas + 1
    } else {
        0
    }
}

/// Returns the depth of a JSON value as `max_data_depth` counts it: a scalar is 0, `[]` or `{}`
/// is 1.
fn nesting_depth(value: &Value) -> usize {
    match value {
        Value::Array(elements) => 1 + elements.iter().map(nesting_depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(nesting_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// Returns true when an NDJSON line, without its `\n`, contains only spaces, tabs and CRs.
fn is_blank_line(line: &[u8]) -> bool {
    line.iter()
        .all(|&byte| matches!(byte, b' ' | b'\t' | b'\r'))
}
