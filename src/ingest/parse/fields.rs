//! Validation of one event object: checks each member against the event format and builds the
//! [`Event`].
//!
//! The caller walks simd-json's tape and the [`Scanner`] over the original body in step. The
//! tape supplies types and unescaped strings, the scanner supplies raw spans (the `sourceId`
//! number text and the `data` bytes) and nesting depths. Both list an object's members in the
//! order they were sent, which is what keeps them in step.

use std::ops::Range;

use bytes::Bytes;
use simd_json::Node;
use smallvec::SmallVec;

use super::error::{ItemError, JsonKind, RejectedSourceId};
use super::scan::{Member, ScanError, Scanner};
use super::{ParseLimits, MAX_EVENT_KEYS};
use crate::ingest::event::{Event, EventType, MAX_EVENT_TYPE_BYTES};
use crate::ingest::timestamp::Timestamp;

const SOURCE_ID: &str = "sourceId";
const TYPE: &str = "type";
const TIMESTAMP: &str = "timestamp";
const DATA: &str = "data";

/// Parses the event object that is the scanner's next value and whose tape node is `nodes[0]`.
///
/// `value_depth_budget` is how many levels a member's value may nest before the whole document
/// is too deep. Returns the event or the first problem found in it. Either way the scanner ends
/// after the object's `}`, so the caller can go on with the next element.
///
/// # Errors
///
/// Returns [`ScanError::TooDeep`] when a member's value exceeds `value_depth_budget`, and
/// [`ScanError::Malformed`] when the scanner and the tape disagree, which means `body` is not the
/// text the tape was built from.
pub(crate) fn parse_event(
    body: &Bytes,
    scanner: &mut Scanner<'_>,
    nodes: &[Node<'_>],
    value_depth_budget: usize,
    limits: &ParseLimits,
) -> Result<Result<Event, ItemError>, ScanError> {
    let Some(&Node::Object { len: key_count, .. }) = nodes.first() else {
        return Err(scanner.malformed());
    };

    // The pairwise duplicate check below is quadratic, so the key count is bounded first.
    if key_count > MAX_EVENT_KEYS {
        scanner.skip_value(value_depth_budget.saturating_add(1))?;
        return Ok(Err(ItemError::TooManyKeys {
            count: key_count,
            limit: MAX_EVENT_KEYS,
        }));
    }

    scanner.enter(b'{')?;
    let mut fields = Fields::new();
    let mut first_error = None;
    let mut node_index = 1;
    for _ in 0..key_count {
        let (Some(&Node::String(key)), Some(value)) =
            (nodes.get(node_index), nodes.get(node_index + 1))
        else {
            return Err(scanner.malformed());
        };
        let member = scanner
            .next_member_from_tape(value_depth_budget, key, value)?
            .ok_or_else(|| scanner.malformed())?;
        debug_assert!(
            body[member.key.clone()].contains(&b'\\')
                || &body[member.key.start + 1..member.key.end - 1] == key.as_bytes(),
            "scanner and tape disagree on a key"
        );
        node_index += 1 + subtree_len(value);

        // After the first problem the remaining members are still scanned, because the caller
        // continues after this object's end.
        if first_error.is_none() {
            if let Err(error) = fields.accept(key, value, &member, body, limits) {
                first_error = Some(error);
            }
        }
    }
    if scanner.next_member(value_depth_budget)?.is_some() {
        return Err(scanner.malformed());
    }

    if let Some(error) = first_error {
        return Ok(Err(error));
    }
    Ok(fields.into_event(body))
}

/// Number of tape nodes that `node` and its children occupy.
pub(crate) fn subtree_len(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => 1 + count,
        _ => 1,
    }
}

/// The fields of one event as its members are read. Strings borrow from the tape.
struct Fields<'t> {
    source_id: Option<u64>,
    event_type: Option<&'t str>,
    timestamp: Option<Timestamp>,
    data: Option<Range<usize>>,
    /// Keys other than the four known ones, for the duplicate check. Inline for the usual
    /// few, so an event costs no allocation and no zeroing of `MAX_EVENT_KEYS` slots.
    unknown_keys: SmallVec<[&'t str; 8]>,
}

impl<'t> Fields<'t> {
    fn new() -> Self {
        Fields {
            source_id: None,
            event_type: None,
            timestamp: None,
            data: None,
            unknown_keys: SmallVec::new(),
        }
    }

    /// Checks one member and stores its value.
    fn accept(
        &mut self,
        key: &'t str,
        value: &Node<'t>,
        member: &Member,
        body: &[u8],
        limits: &ParseLimits,
    ) -> Result<(), ItemError> {
        // Each known field is stored only once it is valid and the first error ends the
        // object, so a stored field also means the key was seen before.
        match key {
            SOURCE_ID => {
                if self.source_id.is_some() {
                    return Err(ItemError::duplicate_key(key));
                }
                self.source_id = Some(parse_source_id(value, &body[member.value.clone()])?);
            }
            TYPE => {
                if self.event_type.is_some() {
                    return Err(ItemError::duplicate_key(key));
                }
                self.event_type = Some(parse_event_type(value)?);
            }
            TIMESTAMP => {
                if self.timestamp.is_some() {
                    return Err(ItemError::duplicate_key(key));
                }
                let Node::String(text) = value else {
                    return Err(ItemError::NotAString {
                        field: TIMESTAMP,
                        found: JsonKind::of(value),
                    });
                };
                let timestamp = Timestamp::parse_rfc3339(text)
                    .map_err(|error| ItemError::InvalidTimestamp { error })?;
                self.timestamp = Some(timestamp);
            }
            DATA => {
                if self.data.is_some() {
                    return Err(ItemError::duplicate_key(key));
                }
                self.data = Some(check_data(member, limits)?);
            }
            _ => {
                // `parse_event` admits at most MAX_EVENT_KEYS members, which bounds this.
                if self.unknown_keys.contains(&key) {
                    return Err(ItemError::duplicate_key(key));
                }
                self.unknown_keys.push(key);
            }
        }
        Ok(())
    }

    fn into_event(self, body: &Bytes) -> Result<Event, ItemError> {
        let source_id = self
            .source_id
            .ok_or(ItemError::MissingField { field: SOURCE_ID })?;
        let event_type = self
            .event_type
            .ok_or(ItemError::MissingField { field: TYPE })?;
        let timestamp = self
            .timestamp
            .ok_or(ItemError::MissingField { field: TIMESTAMP })?;
        Ok(Event {
            source_id,
            event_type: EventType::from_name(event_type),
            timestamp,
            data: self.data.map(|span| body.slice(span)),
        })
    }
}

/// Reads `sourceId` from its raw number text, because simd-json 0.19 turns `-0` into the
/// integer 0 and `1.0` or `1e3` into floats, which would hide values the format rejects.
fn parse_source_id(value: &Node<'_>, raw: &[u8]) -> Result<u64, ItemError> {
    let kind = JsonKind::of(value);
    if kind != JsonKind::Number {
        return Err(ItemError::InvalidSourceId {
            found: RejectedSourceId::NotANumber(kind),
        });
    }

    let source_id = parse_decimal_u64(raw).ok_or_else(|| ItemError::InvalidSourceId {
        found: RejectedSourceId::number(raw),
    })?;
    debug_assert!(
        !matches!(value, Node::Static(simd_json::StaticNode::U64(n)) if *n != source_id),
        "scanner and tape disagree on sourceId"
    );
    Ok(source_id)
}

/// Parses a non-empty run of ASCII digits, or returns `None` for any other text or for a value
/// above `u64::MAX`.
fn parse_decimal_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0_u64, |value, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
    })
}

fn parse_event_type<'t>(value: &Node<'t>) -> Result<&'t str, ItemError> {
    let Node::String(name) = value else {
        return Err(ItemError::NotAString {
            field: TYPE,
            found: JsonKind::of(value),
        });
    };
    if name.is_empty() {
        return Err(ItemError::EmptyType {
            limit: MAX_EVENT_TYPE_BYTES,
        });
    }
    if name.len() > MAX_EVENT_TYPE_BYTES {
        return Err(ItemError::TypeTooLong {
            len: name.len(),
            limit: MAX_EVENT_TYPE_BYTES,
        });
    }
    Ok(name)
}

fn check_data(member: &Member, limits: &ParseLimits) -> Result<Range<usize>, ItemError> {
    let len = member.value.len();
    if len > limits.max_data_bytes {
        return Err(ItemError::DataTooLarge {
            len,
            limit: limits.max_data_bytes,
        });
    }
    if member.depth > limits.max_data_depth {
        return Err(ItemError::DataTooDeep {
            depth: member.depth,
            limit: limits.max_data_depth,
        });
    }
    Ok(member.value.clone())
}

#[cfg(test)]
mod tests {
    use super::super::{parse_body, BodyError, BodyFormat, JsonSyntax};
    use super::*;

    const TIME: &str = "2024-05-01T12:00:00Z";

    /// Builds an event body whose `sourceId` value is the JSON text `raw`.
    fn with_source_id(raw: &str) -> String {
        format!(r#"{{"sourceId":{raw},"type":"a","timestamp":"{TIME}"}}"#)
    }

    /// Builds an event body whose `type` value is the JSON text `raw`.
    fn with_type(raw: &str) -> String {
        format!(r#"{{"sourceId":1,"type":{raw},"timestamp":"{TIME}"}}"#)
    }

    /// Builds an event body with the `extra` members after the three required ones.
    fn with_members(extra: &str) -> String {
        format!(r#"{{"sourceId":1,"type":"a","timestamp":"{TIME}",{extra}}}"#)
    }

    fn parse_with(text: &str, limits: &ParseLimits) -> Result<Event, ItemError> {
        let body = Bytes::copy_from_slice(text.as_bytes());
        let parsed = parse_body(&body, BodyFormat::Json, limits).expect("body is valid JSON");
        assert_eq!(parsed.items.len(), 1);
        parsed.items.into_iter().next().expect("one item")
    }

    fn parse(text: &str) -> Result<Event, ItemError> {
        parse_with(text, &ParseLimits::default())
    }

    fn error_text(text: &str) -> String {
        parse(text).expect_err("event is invalid").to_string()
    }

    #[test]
    fn accepts_u64_max_source_id() {
        let event = parse(&with_source_id("18446744073709551615")).expect("valid event");

        assert_eq!(event.source_id, u64::MAX);
    }

    #[test]
    fn accepts_zero_source_id() {
        assert_eq!(
            parse(&with_source_id("0")).map(|event| event.source_id),
            Ok(0)
        );
    }

    #[test]
    fn rejects_source_ids_outside_u64_as_items() {
        // simd-json needs its `big-int-as-float` and `128bit` features for these to reach the
        // sourceId check instead of failing the whole body as invalid JSON.
        for raw in ["18446744073709551616", "-9223372036854775809", "340282366920938463463374607431768211456"] {
            let body = Bytes::from(with_source_id(raw));
            let parsed = parse_body(&body, BodyFormat::Json, &ParseLimits::default()).expect("valid JSON");
            assert_eq!(
                parsed.items[0].as_ref().map_err(ToString::to_string).expect_err("rejected"),
                format!("sourceId: expected an integer from 0 to 18446744073709551615, got {raw}")
            );
        }
    }

    #[test]
    fn rejects_negative_source_id() {
        assert_eq!(
            error_text(&with_source_id("-1")),
            "sourceId: expected an integer from 0 to 18446744073709551615, got -1"
        );
    }

    #[test]
    fn rejects_negative_zero_source_id() {
        assert_eq!(
            parse(&with_source_id("-0")),
            Err(ItemError::InvalidSourceId {
                found: RejectedSourceId::Number("-0".into())
            })
        );
    }

    #[test]
    fn rejects_fractional_source_id() {
        for raw in ["1.0", "7.5", "-0.0"] {
            assert_eq!(
                parse(&with_source_id(raw)),
                Err(ItemError::InvalidSourceId {
                    found: RejectedSourceId::Number(raw.into())
                }),
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_exponent_source_id() {
        for raw in ["1e3", "1E3", "1e+0", "10e-1"] {
            assert_eq!(
                parse(&with_source_id(raw)),
                Err(ItemError::InvalidSourceId {
                    found: RejectedSourceId::Number(raw.into())
                }),
                "{raw}"
            );
        }
    }

    #[test]
    fn rejects_non_number_source_id() {
        assert_eq!(
            error_text(&with_source_id(r#""1""#)),
            "sourceId: expected an integer from 0 to 18446744073709551615, got a string"
        );
        for (raw, kind) in [
            ("null", JsonKind::Null),
            ("true", JsonKind::Bool),
            ("[1]", JsonKind::Array),
        ] {
            assert_eq!(
                parse(&with_source_id(raw)),
                Err(ItemError::InvalidSourceId {
                    found: RejectedSourceId::NotANumber(kind)
                }),
                "{raw}"
            );
        }
    }

    #[test]
    fn long_rejected_source_id_is_cut_in_message() {
        let raw = format!("1.{}", "0".repeat(60));

        assert_eq!(
            error_text(&with_source_id(&raw)),
            format!(
                "sourceId: expected an integer from 0 to 18446744073709551615, got 1.{}...",
                "0".repeat(38)
            )
        );
    }

    #[test]
    fn rejects_empty_type() {
        assert_eq!(
            error_text(&with_type(r#""""#)),
            "type: must not be empty, expected 1 to 256 bytes"
        );
    }

    #[test]
    fn accepts_type_of_256_bytes() {
        let name = "t".repeat(256);
        let event = parse(&with_type(&format!(r#""{name}""#))).expect("valid event");

        assert_eq!(event.event_type.as_str(), name);
    }

    #[test]
    fn rejects_type_of_257_bytes() {
        let name = "t".repeat(257);

        assert_eq!(
            error_text(&with_type(&format!(r#""{name}""#))),
            "type: must be at most 256 bytes, got 257"
        );
    }

    #[test]
    fn type_length_counts_unescaped_bytes() {
        // Each `\u00e9` is 6 bytes as sent and 2 bytes (é) after unescaping.
        let fits = format!(r#""{}""#, r"\u00e9".repeat(128));
        let too_long = format!(r#""{}""#, r"\u00e9".repeat(129));

        assert_eq!(
            parse(&with_type(&fits)).map(|event| event.event_type.as_str().len()),
            Ok(256)
        );
        assert_eq!(
            parse(&with_type(&too_long)),
            Err(ItemError::TypeTooLong {
                len: 258,
                limit: MAX_EVENT_TYPE_BYTES
            })
        );
    }

    #[test]
    fn unescapes_type() {
        let event = parse(&with_type(r#""Heart\u0062eat""#)).expect("valid event");
        assert_eq!(event.event_type, EventType::Heartbeat);

        let event = parse(&with_type(r#""a\"b\\c\n\ud83d\ude00""#)).expect("valid event");
        assert_eq!(
            event.event_type,
            EventType::Custom("a\"b\\c\n\u{1f600}".into())
        );
    }

    #[test]
    fn rejects_non_string_type() {
        assert_eq!(
            error_text(&with_type("12")),
            "type: expected a string, got a number"
        );
        assert_eq!(
            parse(&with_type("null")),
            Err(ItemError::NotAString {
                field: TYPE,
                found: JsonKind::Null
            })
        );
    }

    #[test]
    fn rejects_invalid_utf8_in_type() {
        let mut text = br#"{"sourceId":1,"timestamp":"2024-05-01T12:00:00Z","type":"a"#.to_vec();
        let offset = text.len();
        text.extend_from_slice(b"\xc3\x28\"}");
        let result = parse_body(
            &Bytes::from(text),
            BodyFormat::Json,
            &ParseLimits::default(),
        );

        assert_eq!(
            result,
            Err(BodyError::InvalidJson {
                offset: Some(offset),
                syntax: JsonSyntax::InvalidUtf8
            })
        );
    }

    #[test]
    fn rejects_lone_surrogate_in_type() {
        for (escape, offset) in [
            (r"\ud800", 22),
            (r"x\ud800x", 23),
            (r"\udc00", 22),
            (r"\ud800\uffff", 22),
        ] {
            let body = Bytes::from(format!(
                r#"{{"sourceId":1,"type":"{escape}","timestamp":"{TIME}"}}"#
            ));
            let result = parse_body(&body, BodyFormat::Json, &ParseLimits::default());

            assert_eq!(
                result,
                Err(BodyError::InvalidJson {
                    offset: Some(offset),
                    syntax: JsonSyntax::UnpairedSurrogate
                }),
                "{escape}"
            );
        }
    }

    #[test]
    fn rejects_invalid_timestamp() {
        let expected = Timestamp::parse_rfc3339("yesterday").expect_err("not a timestamp");
        let text = r#"{"sourceId":1,"type":"a","timestamp":"yesterday"}"#;

        assert_eq!(
            parse(text),
            Err(ItemError::InvalidTimestamp {
                error: expected.clone()
            })
        );
        assert_eq!(error_text(text), format!("timestamp: {expected}"));
    }

    #[test]
    fn rejects_non_string_timestamp() {
        let text = r#"{"sourceId":1,"type":"a","timestamp":1714564800}"#;

        assert_eq!(
            error_text(text),
            "timestamp: expected a string, got a number"
        );
    }

    #[test]
    fn accepts_timestamp() {
        let event = parse(&with_source_id("1")).expect("valid event");

        assert_eq!(Ok(event.timestamp), Timestamp::parse_rfc3339(TIME));
    }

    #[test]
    fn rejects_missing_fields() {
        let cases = [
            (
                format!(r#"{{"type":"a","timestamp":"{TIME}"}}"#),
                "sourceId: missing required field",
            ),
            (
                format!(r#"{{"sourceId":1,"timestamp":"{TIME}"}}"#),
                "type: missing required field",
            ),
            (
                r#"{"sourceId":1,"type":"a"}"#.to_owned(),
                "timestamp: missing required field",
            ),
            ("{}".to_owned(), "sourceId: missing required field"),
        ];
        for (text, expected) in cases {
            assert_eq!(error_text(&text), expected, "{text}");
        }
    }

    #[test]
    fn keys_are_case_sensitive() {
        let text = format!(r#"{{"SourceId":1,"type":"a","timestamp":"{TIME}"}}"#);

        assert_eq!(
            parse(&text),
            Err(ItemError::MissingField { field: SOURCE_ID })
        );
    }

    #[test]
    fn rejects_duplicate_known_key() {
        assert_eq!(
            error_text(&with_members(r#""sourceId":2"#)),
            "duplicate key sourceId in event object"
        );
        for key in [TYPE, TIMESTAMP] {
            let extra = format!(r#""{key}":"x""#);
            assert_eq!(
                parse(&with_members(&extra)),
                Err(ItemError::duplicate_key(key)),
                "{key}"
            );
        }
        assert_eq!(
            parse(&with_members(r#""data":1,"data":2"#)),
            Err(ItemError::duplicate_key(DATA))
        );
    }

    #[test]
    fn rejects_duplicate_key_written_with_escapes() {
        assert_eq!(
            parse(&with_members(r#""source\u0049d":2"#)),
            Err(ItemError::duplicate_key(SOURCE_ID))
        );
        assert_eq!(
            parse(&with_members(r#""\u0074ype":"b""#)),
            Err(ItemError::duplicate_key(TYPE))
        );
    }

    #[test]
    fn rejects_duplicate_unknown_key() {
        assert_eq!(
            error_text(&with_members(r#""x":1,"y":2,"x":3"#)),
            "duplicate key x in event object"
        );
        assert_eq!(
            parse(&with_members(r#""k\n":1,"k\u000a":2"#)),
            Err(ItemError::DuplicateKey { key: "k\n".into() })
        );
        assert_eq!(
            error_text(&with_members(r#""k\n":1,"k\u000a":2"#)),
            r"duplicate key k\n in event object"
        );
    }

    #[test]
    fn ignores_unknown_fields() {
        let event = parse(&with_members(
            r#""extra":{"sourceId":"nested keys are not event keys"},"more":[1]"#,
        ))
        .expect("valid event");

        assert_eq!(event.source_id, 1);
        assert_eq!(event.data, None);
    }

    #[test]
    fn accepts_up_to_64_keys() {
        let unknown: Vec<String> = (0..61).map(|i| format!(r#""k{i}":{i}"#)).collect();

        assert!(parse(&with_members(&unknown.join(","))).is_ok());
    }

    #[test]
    fn rejects_more_than_64_keys() {
        let unknown: Vec<String> = (0..62).map(|i| format!(r#""k{i}":{i}"#)).collect();

        assert_eq!(
            error_text(&with_members(&unknown.join(","))),
            "event object has 65 keys, at most 64 are allowed"
        );
    }

    #[test]
    fn data_absent_is_none() {
        assert_eq!(
            parse(&with_source_id("1")).map(|event| event.data),
            Ok(None)
        );
    }

    #[test]
    fn data_null_is_kept() {
        let event = parse(&with_members(r#""data":null"#)).expect("valid event");

        assert_eq!(event.data.as_deref(), Some(&b"null"[..]));
    }

    #[test]
    fn data_keeps_raw_bytes_exactly() {
        let raw = r#"{ "a" : "\u00e9\n\"}" ,"b":[1, 2.50E1,	{}] , "c":{"d":null} }"#;
        let text =
            format!(r#"{{"data" :  {raw}  , "sourceId":1,"type":"a","timestamp":"{TIME}"}}"#);
        let event = parse(&text).expect("valid event");

        assert_eq!(event.data.as_deref(), Some(raw.as_bytes()));
    }

    #[test]
    fn data_keeps_scalars_exactly() {
        for raw in [r#""x\u0041""#, "-1.50e+3", "true", "18446744073709551615"] {
            let event = parse(&with_members(&format!(r#""data":{raw}"#))).expect("valid event");
            assert_eq!(event.data.as_deref(), Some(raw.as_bytes()), "{raw}");
        }
    }

    #[test]
    fn accepts_data_at_depth_limit() {
        let raw = format!("{}{}", "[".repeat(32), "]".repeat(32));
        let event = parse(&with_members(&format!(r#""data":{raw}"#))).expect("valid event");

        assert_eq!(event.data.as_deref(), Some(raw.as_bytes()));
    }

    #[test]
    fn rejects_data_past_depth_limit() {
        let raw = format!(r#"{}{{"a":1}}{}"#, "[".repeat(32), "]".repeat(32));

        assert_eq!(
            error_text(&with_members(&format!(r#""data":{raw}"#))),
            "data: nested 33 levels deep, at most 32 are allowed"
        );
    }

    #[test]
    fn rejects_data_over_byte_limit() {
        let limits = ParseLimits {
            max_data_bytes: 10,
            ..ParseLimits::default()
        };
        let fits = with_members(r#""data": "12345678" "#);
        let too_long = with_members(r#""data":"123456789""#);

        assert!(parse_with(&fits, &limits).is_ok());
        assert_eq!(
            parse_with(&too_long, &limits).map_err(|error| error.to_string()),
            Err("data: must be at most 10 bytes, got 11".to_owned())
        );
    }

    #[test]
    fn first_problem_wins() {
        let text = format!(r#"{{"sourceId":-1,"type":"","timestamp":"{TIME}"}}"#);

        assert!(matches!(
            parse(&text),
            Err(ItemError::InvalidSourceId { .. })
        ));
    }
}
