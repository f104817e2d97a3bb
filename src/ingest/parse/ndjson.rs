//! NDJSON framing: one event object per line. Lines end in `\n` or `\r\n`, whitespace-only
//! lines are skipped and do not count as events, and each line is parsed as its own JSON
//! document, so a bad line rejects only its own event.

use std::ops::Range;

use bytes::Bytes;
use memchr::memchr;
use simd_json::Node;

use super::error::{classify, is_json_whitespace};
use super::scan::{self, ScanError, Scanner};
use super::{
    check_event_count, fields, with_tape, BodyError, BodyShape, ItemError, JsonKind, JsonSyntax,
    ParseLimits, ParsedBody, Scratch,
};
use crate::ingest::event::Event;

pub(super) fn parse_ndjson(
    body: &Bytes,
    limits: &ParseLimits,
    scratch: &mut Scratch,
) -> Result<ParsedBody, BodyError> {
    // Counting first rejects an oversized batch before any event is parsed or stored.
    let count = lines(body)
        .filter(|line| line.content_start.is_some())
        .count();
    check_event_count(count, limits)?;

    scratch.input.clear();
    scratch.input.extend_from_slice(body);
    let Scratch {
        input,
        buffers,
        tape,
    } = scratch;
    let copy_address = input.as_ptr() as usize;
    let mut items = Vec::with_capacity(count);
    for line in lines(body) {
        let Some(content_start) = line.content_start else {
            continue;
        };
        let text = &body[line.span.clone()];
        let item = with_tape(
            &mut input[line.span.clone()],
            buffers,
            tape,
            |parsed| match parsed {
                Ok((nodes, structurals)) => build_ndjson_item(
                    body,
                    &line,
                    content_start,
                    copy_address,
                    nodes,
                    structurals,
                    limits,
                ),
                Err(error) => {
                    let (syntax, offset) = classify(&error, text);
                    Err(ItemError::InvalidJson {
                        line: line.number,
                        column: offset.map(|offset| offset + 1),
                        syntax,
                    })
                }
            },
        );
        items.push(item);
    }
    Ok(ParsedBody {
        shape: BodyShape::Ndjson,
        items,
    })
}

fn build_ndjson_item(
    body: &Bytes,
    line: &Line,
    content_start: usize,
    copy_address: usize,
    nodes: &[Node<'_>],
    structurals: &[u32],
    limits: &ParseLimits,
) -> Result<Event, ItemError> {
    let text = &body[line.span.clone()];
    if let Some(surrogate) = scan::find_unpaired_surrogate(text) {
        return Err(ItemError::InvalidJson {
            line: line.number,
            column: Some(surrogate.offset + 1),
            syntax: JsonSyntax::UnpairedSurrogate,
        });
    }
    match nodes.first() {
        Some(Node::Object { .. }) => {}
        Some(other) => {
            return Err(ItemError::NotAnObject {
                found: JsonKind::of(other),
            })
        }
        None => {
            return Err(ItemError::InvalidJson {
                line: line.number,
                column: None,
                syntax: JsonSyntax::Invalid,
            })
        }
    }

    // The scanner reads the body only up to the line's end, and its offsets are body offsets.
    // simd-json parsed the line on its own, so its structural indexes count from the line's start.
    let max_depth = limits.max_document_depth();
    let mut scanner = Scanner::new(&body[..line.span.end], content_start)
        .with_tape_copy(copy_address)
        .with_structurals(structurals, line.span.start);
    match fields::parse_event(body, &mut scanner, nodes, max_depth - 1, limits) {
        Ok(item) => item,
        Err(ScanError::TooDeep { .. }) => Err(ItemError::TooDeep {
            line: line.number,
            limit: max_depth,
        }),
        // NOTE: simd-json accepted the line, so this means the scanner has a bug.
        Err(ScanError::Malformed { offset }) => Err(ItemError::InvalidJson {
            line: line.number,
            column: Some(offset - line.span.start + 1),
            syntax: JsonSyntax::Invalid,
        }),
    }
}

/// One NDJSON line without its `\n`.
struct Line {
    /// Counted from 1, blank lines included.
    number: usize,
    span: Range<usize>,
    /// Offset of the first non-whitespace byte, or `None` for a blank line.
    content_start: Option<usize>,
}

fn lines(body: &[u8]) -> impl Iterator<Item = Line> + '_ {
    let mut start = 0;
    let mut number = 0;
    std::iter::from_fn(move || {
        if start >= body.len() {
            return None;
        }
        let end = memchr(b'\n', &body[start..]).map_or(body.len(), |found| start + found);
        let span = start..end;
        start = end + 1;
        number += 1;
        let content_start = body[span.clone()]
            .iter()
            .position(|&byte| !is_json_whitespace(byte))
            .map(|offset| span.start + offset);
        Some(Line {
            number,
            span,
            content_start,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_body;
    use super::super::BodyFormat;
    use super::*;

    const EVENT: &str = r#"{"sourceId":7,"type":"Heartbeat","timestamp":"2024-05-01T12:00:00Z"}"#;

    fn parse_with(text: &[u8], limits: &ParseLimits) -> Result<ParsedBody, BodyError> {
        parse_body(&Bytes::copy_from_slice(text), BodyFormat::Ndjson, limits)
    }

    fn parse(text: &str) -> Vec<Result<Event, ItemError>> {
        let parsed = parse_with(text.as_bytes(), &ParseLimits::default()).expect("valid body");
        assert_eq!(parsed.shape, BodyShape::Ndjson);
        parsed.items
    }

    fn event(source_id: u64) -> String {
        format!(r#"{{"sourceId":{source_id},"type":"a","timestamp":"2024-05-01T12:00:00Z"}}"#)
    }

    fn source_ids(items: &[Result<Event, ItemError>]) -> Vec<Option<u64>> {
        items
            .iter()
            .map(|item| item.as_ref().ok().map(|event| event.source_id))
            .collect()
    }

    #[test]
    fn parses_one_event_per_line() {
        let items = parse(&format!("{}\n{}\n{}", event(1), event(2), event(3)));

        assert_eq!(source_ids(&items), [Some(1), Some(2), Some(3)]);
    }

    #[test]
    fn accepts_crlf_line_ends() {
        let items = parse(&format!("{}\r\n{}\r\n", event(1), event(2)));

        assert_eq!(source_ids(&items), [Some(1), Some(2)]);
    }

    #[test]
    fn accepts_missing_and_present_final_newline() {
        assert_eq!(source_ids(&parse(&event(1))), [Some(1)]);
        assert_eq!(source_ids(&parse(&format!("{}\n", event(1)))), [Some(1)]);
    }

    #[test]
    fn skips_blank_lines_without_counting_them() {
        let text = format!("\n  \t\r\n{}\n\n \n{}\n\r\n", event(1), event(2));

        assert_eq!(source_ids(&parse(&text)), [Some(1), Some(2)]);
    }

    #[test]
    fn bad_line_in_middle_is_item_error() {
        // Line 3 is bad. The blank line 2 counts for the line number but not for the index.
        let text = format!("{}\n\n{{\"sourceId\" 2}}\n{}\n", event(1), event(3));
        let items = parse(&text);

        assert_eq!(source_ids(&items), [Some(1), None, Some(3)]);
        assert_eq!(
            items[1],
            Err(ItemError::InvalidJson {
                line: 3,
                column: Some(13),
                syntax: JsonSyntax::ExpectedColon
            })
        );
        assert_eq!(
            items[1]
                .as_ref()
                .map_err(ToString::to_string)
                .expect_err("bad line"),
            "invalid JSON on line 3 at column 13: expected ':' after an object key"
        );
    }

    #[test]
    fn two_objects_on_one_line_are_item_error() {
        let items = parse(&format!("{EVENT} {EVENT}\n{EVENT}"));

        assert_eq!(
            items[0],
            Err(ItemError::InvalidJson {
                line: 1,
                column: Some(EVENT.len() + 2),
                syntax: JsonSyntax::TrailingData
            })
        );
        assert!(items[1].is_ok());
    }

    #[test]
    fn non_object_line_is_item_error() {
        let items = parse(&format!("[{EVENT}]\n42\n{EVENT}"));

        assert_eq!(
            items[0],
            Err(ItemError::NotAnObject {
                found: JsonKind::Array
            })
        );
        assert_eq!(
            items[1],
            Err(ItemError::NotAnObject {
                found: JsonKind::Number
            })
        );
        assert!(items[2].is_ok());
    }

    #[test]
    fn rejects_body_without_events() {
        assert_eq!(
            parse_with(b"", &ParseLimits::default()),
            Err(BodyError::EmptyBatch)
        );
        assert_eq!(
            parse_with(b"\n \r\n\t\n", &ParseLimits::default()),
            Err(BodyError::EmptyBatch)
        );
    }

    #[test]
    fn rejects_body_over_event_limit() {
        let limits = ParseLimits {
            max_batch_events: 2,
            ..ParseLimits::default()
        };
        let two_with_blanks = format!("{EVENT}\n\n  \n{EVENT}\n\n");
        let three = format!("{EVENT}\n{EVENT}\n{EVENT}\n");

        assert!(parse_with(two_with_blanks.as_bytes(), &limits).is_ok());
        assert_eq!(
            parse_with(three.as_bytes(), &limits),
            Err(BodyError::TooManyEvents { count: 3, limit: 2 })
        );
    }

    #[test]
    fn unpaired_surrogate_is_item_error() {
        let items = parse(&format!("{EVENT}\n{{\"x\":\"\\ud800\"}}\n{EVENT}"));

        assert_eq!(
            items[1],
            Err(ItemError::InvalidJson {
                line: 2,
                column: Some(7),
                syntax: JsonSyntax::UnpairedSurrogate
            })
        );
        assert_eq!(source_ids(&items), [Some(7), None, Some(7)]);
    }

    #[test]
    fn invalid_utf8_is_item_error() {
        let mut text = format!("{EVENT}\n{{\"x\":\"").into_bytes();
        text.extend_from_slice(b"\xe2\x82\"}\n");
        text.extend_from_slice(EVENT.as_bytes());
        let items = parse_with(&text, &ParseLimits::default())
            .expect("valid body")
            .items;

        assert_eq!(
            items[1],
            Err(ItemError::InvalidJson {
                line: 2,
                column: Some(7),
                syntax: JsonSyntax::InvalidUtf8
            })
        );
        assert_eq!(source_ids(&items), [Some(7), None, Some(7)]);
    }

    #[test]
    fn source_id_above_u64_max_is_item_error() {
        let items = parse(&format!(
            "{}\n{EVENT}",
            event(0).replacen('0', "18446744073709551616", 1)
        ));

        assert!(matches!(
            items[0],
            Err(ItemError::InvalidJson {
                syntax: JsonSyntax::InvalidNumber,
                ..
            } | ItemError::InvalidSourceId { .. })
        ));
        assert!(items[1].is_ok());
    }

    #[test]
    fn open_brackets_line_is_item_error() {
        let mut text = vec![b'['; 1 << 20];
        text.push(b'\n');
        text.extend_from_slice(EVENT.as_bytes());
        let items = parse_with(&text, &ParseLimits::default())
            .expect("valid body")
            .items;

        assert!(matches!(
            items[0],
            Err(ItemError::InvalidJson { line: 1, .. })
        ));
        assert!(items[1].is_ok());
    }

    #[test]
    fn open_objects_line_is_item_error() {
        let mut text = br#"{"a":"#.repeat((1 << 20) / 5);
        text.push(b'\n');
        text.extend_from_slice(EVENT.as_bytes());
        let items = parse_with(&text, &ParseLimits::default())
            .expect("valid body")
            .items;

        assert!(matches!(
            items[0],
            Err(ItemError::InvalidJson { line: 1, .. })
        ));
        assert!(items[1].is_ok());
    }

    #[test]
    fn deep_valid_line_is_too_deep() {
        let depth = 1 << 19;
        let text = format!(
            "{EVENT}\n{{\"data\":{}{}}}\n{EVENT}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let items = parse(&text);

        assert_eq!(
            items[1],
            Err(ItemError::TooDeep {
                line: 2,
                limit: crate::ingest::parse::MIN_DOCUMENT_DEPTH
            })
        );
        assert_eq!(source_ids(&items), [Some(7), None, Some(7)]);
    }

    #[test]
    fn data_on_later_line_is_kept_exactly() {
        let raw = r#"{ "k" : [ "v\t" ] }"#;
        let text = format!("{EVENT}\r\n\r\n{{\"data\": {raw} ,\"sourceId\":2,\"type\":\"a\",\"timestamp\":\"2024-05-01T12:00:00Z\"}}\r\n");
        let items = parse(&text);

        let second = items[1].as_ref().expect("valid event");
        assert_eq!(second.data.as_deref(), Some(raw.as_bytes()));
    }

    #[test]
    fn lines_split_on_newline_only() {
        let found: Vec<(usize, Range<usize>, Option<usize>)> = lines(b"a\r\n \n\n  b")
            .map(|line| (line.number, line.span, line.content_start))
            .collect();

        assert_eq!(
            found,
            [
                (1, 0..2, Some(0)),
                (2, 3..4, None),
                (3, 5..5, None),
                (4, 6..9, Some(8))
            ]
        );
    }
}
