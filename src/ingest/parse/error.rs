//! Errors of request-body parsing: [`BodyError`] rejects a whole body, [`ItemError`] rejects one
//! event of a batch. Every `Display` text is lowercase without a final period, so the HTTP layer
//! can return it unchanged as the `error` string of a 400 response.
//!
//! Offsets count bytes from 0 in the body. Lines and columns count from 1, and a column counts
//! bytes within its line.

use std::fmt;

use simd_json::{ErrorType, Node, ValueType};

use super::scan::{self, Scanner};
use crate::ingest::timestamp::TimestampError;

/// Maximum length of a rejected `sourceId` number quoted in an error message, in bytes.
const MAX_QUOTED_NUMBER_BYTES: usize = 40;

/// Maximum length of a duplicate key quoted in an error message, in bytes.
const MAX_QUOTED_KEY_BYTES: usize = 64;

/// Rejection of a whole request body. Nothing from a rejected body is kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is empty or only whitespace.
    #[error("request body is empty, expected a JSON event object or an array of event objects")]
    EmptyBody,

    /// The body is not one valid JSON value.
    #[error("invalid JSON in request body{}: {syntax}", at_byte(.offset))]
    InvalidJson {
        /// Byte offset of the problem, when it is known.
        offset: Option<usize>,
        /// The syntax problem.
        syntax: JsonSyntax,
    },

    /// The body is valid JSON but neither an object nor an array.
    #[error("request body must be a JSON event object or an array of event objects, got {found}")]
    NotObjectOrArray {
        /// The top-level value's kind.
        found: JsonKind,
    },

    /// Arrays or objects nest deeper than the document allows.
    #[error("request body nests arrays and objects deeper than the maximum of {limit} levels at byte {offset}")]
    TooDeep {
        /// Offset of the first `[` or `{` past the limit.
        offset: usize,
        /// The maximum document depth, `max_data_depth + 2`.
        limit: usize,
    },

    /// The body contains no event: `[]`, or NDJSON with only blank lines.
    #[error("batch contains no events, send at least one event object")]
    EmptyBatch,

    /// The batch has more events than one request may carry.
    #[error("batch has {count} events, at most {limit} are allowed per request")]
    TooManyEvents {
        /// Events in the body; for NDJSON, its non-blank lines.
        count: usize,
        /// The configured `max_batch_events`.
        limit: usize,
    },
}

/// Rejection of one event of a body. The other events are still parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// An NDJSON line is not one valid JSON value.
    #[error("invalid JSON on line {line}{}: {syntax}", at_column(.column))]
    InvalidJson {
        /// The line's number, counting blank lines too.
        line: usize,
        /// Byte column of the problem in the line, when it is known.
        column: Option<usize>,
        /// The syntax problem.
        syntax: JsonSyntax,
    },

    /// An NDJSON line nests arrays or objects deeper than the document allows.
    #[error("line {line} nests arrays and objects deeper than the maximum of {limit} levels")]
    TooDeep {
        /// The line's number, counting blank lines too.
        line: usize,
        /// The maximum document depth, `max_data_depth + 2`.
        limit: usize,
    },

    /// An array element or NDJSON line is not a JSON object.
    #[error("expected an event object, got {found}")]
    NotAnObject {
        /// The value's kind.
        found: JsonKind,
    },

    /// The event object has more keys than the duplicate-key check accepts.
    #[error("event object has {count} keys, at most {limit} are allowed")]
    TooManyKeys {
        /// Keys in the object.
        count: usize,
        /// [`MAX_EVENT_KEYS`](super::MAX_EVENT_KEYS).
        limit: usize,
    },

    /// A key occurs twice in the event object, compared after unescaping.
    #[error("duplicate key {} in event object", .key.escape_debug())]
    DuplicateKey {
        /// The unescaped key, cut to at most 64 bytes.
        key: Box<str>,
    },

    /// `sourceId`, `type` or `timestamp` is absent.
    #[error("{field}: missing required field")]
    MissingField {
        /// The field's JSON name.
        field: &'static str,
    },

    /// `sourceId` is not a JSON integer from 0 to `u64::MAX`.
    #[error("sourceId: expected an integer from 0 to 18446744073709551615, got {found}")]
    InvalidSourceId {
        /// The value as sent.
        found: RejectedSourceId,
    },

    /// `type` or `timestamp` is not a JSON string.
    #[error("{field}: expected a string, got {found}")]
    NotAString {
        /// The field's JSON name.
        field: &'static str,
        /// The value's kind.
        found: JsonKind,
    },

    /// `type` is `""`.
    #[error("type: must not be empty, expected 1 to {limit} bytes")]
    EmptyType {
        /// [`MAX_EVENT_TYPE_BYTES`](crate::ingest::event::MAX_EVENT_TYPE_BYTES).
        limit: usize,
    },

    /// `type` is longer than allowed after unescaping.
    #[error("type: must be at most {limit} bytes, got {len}")]
    TypeTooLong {
        /// Unescaped length in bytes.
        len: usize,
        /// [`MAX_EVENT_TYPE_BYTES`](crate::ingest::event::MAX_EVENT_TYPE_BYTES).
        limit: usize,
    },

    /// `timestamp` is a string but not a valid RFC 3339 timestamp.
    // The timestamp error is part of the message rather than `source()`, because clients see
    // only this Display text and a chain printer would otherwise repeat it.
    #[error("timestamp: {error}")]
    InvalidTimestamp {
        /// The timestamp parser's error.
        error: TimestampError,
    },

    /// `data` nests deeper than `max_data_depth`.
    #[error("data: nested {depth} levels deep, at most {limit} are allowed")]
    DataTooDeep {
        /// Depth of the value: a scalar is 0, `[]` or `{}` is 1.
        depth: usize,
        /// The configured `max_data_depth`.
        limit: usize,
    },

    /// The raw `data` value is longer than `max_data_bytes`.
    #[error("data: must be at most {limit} bytes, got {len}")]
    DataTooLarge {
        /// Raw length in bytes, as sent.
        len: usize,
        /// The configured `max_data_bytes`.
        limit: usize,
    },
}

impl ItemError {
    pub(crate) fn duplicate_key(key: &str) -> ItemError {
        let mut end = key.len().min(MAX_QUOTED_KEY_BYTES);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        ItemError::DuplicateKey {
            key: key[..end].into(),
        }
    }
}

/// A rejected `sourceId` value, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectedSourceId {
    /// A value that is not a number.
    NotANumber(JsonKind),
    /// A number that is negative, has a fraction or exponent, or exceeds `u64::MAX`: its raw
    /// text, cut to at most 40 bytes and then ending in `...`.
    Number(Box<str>),
}

impl RejectedSourceId {
    pub(crate) fn number(raw: &[u8]) -> RejectedSourceId {
        let quoted = &raw[..raw.len().min(MAX_QUOTED_NUMBER_BYTES)];
        let mut text = String::from_utf8_lossy(quoted).into_owned();
        if quoted.len() < raw.len() {
            text.push_str("...");
        }
        RejectedSourceId::Number(text.into())
    }
}

impl fmt::Display for RejectedSourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectedSourceId::NotANumber(kind) => kind.fmt(f),
            RejectedSourceId::Number(text) => f.write_str(text),
        }
    }
}

/// The kind of a JSON value, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// Any number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

impl JsonKind {
    pub(crate) fn of(node: &Node<'_>) -> JsonKind {
        match node.value_type() {
            ValueType::Null => JsonKind::Null,
            ValueType::Bool => JsonKind::Bool,
            ValueType::String => JsonKind::String,
            ValueType::Array => JsonKind::Array,
            ValueType::Object => JsonKind::Object,
            // The parser produces no other kind of value: the rest are integer and float types.
            _ => JsonKind::Number,
        }
    }
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// Syntax problem that makes a text invalid JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonSyntax {
    /// The text ends inside a value.
    #[error("unexpected end of input, the JSON value is incomplete")]
    UnexpectedEnd,
    /// More text follows a complete value.
    #[error("unexpected data after the first JSON value, expected exactly one value; send several events as a JSON array, or as one event per line with Content-Type application/x-ndjson")]
    TrailingData,
    /// A byte that cannot occur at this place.
    #[error("unexpected {}", describe_byte(*.0))]
    UnexpectedByte(u8),
    /// An object key not followed by `:`.
    #[error("expected ':' after an object key")]
    ExpectedColon,
    /// A malformed `true`, `false` or `null`.
    #[error("invalid literal, expected true, false or null")]
    InvalidLiteral,
    /// A number outside JSON's grammar, or one simd-json 0.19 cannot represent even as a
    /// float (such as `1e400`). Larger integers reach the field checks as floats, because the
    /// `big-int-as-float` and `128bit` features are on.
    #[error("invalid or out-of-range number, integers must fit in 64 bits and floats in f64")]
    InvalidNumber,
    /// An unterminated string, or a control character below U+0020 that is not escaped.
    #[error("unterminated string or unescaped control character in a string")]
    InvalidString,
    /// A backslash escape that JSON does not define, or a malformed `\u` escape.
    #[error("invalid escape sequence in a string")]
    InvalidEscape,
    /// A `\u` escape containing one half of a UTF-16 surrogate pair without the other half.
    #[error(
        "unpaired UTF-16 surrogate in a \\u escape, a high surrogate \\ud800-\\udbff must be \
         followed by a low surrogate \\udc00-\\udfff"
    )]
    UnpairedSurrogate,
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// Text longer than simd-json accepts.
    #[error("input is larger than 4 GiB")]
    TooLarge,
    /// Any other rejection by simd-json.
    #[error("invalid syntax")]
    Invalid,
}

/// Maps a simd-json error on `text` to what went wrong and, where known, the byte offset.
///
/// simd-json (0.15 and 0.19) reports no offset for errors found in its first, whole-input pass (UTF-8,
/// unterminated strings), and on AVX2 it reports string escape errors relative to the start of
/// the string. Those offsets are either recomputed here or left out.
pub(crate) fn classify(error: &simd_json::Error, text: &[u8]) -> (JsonSyntax, Option<usize>) {
    let position = error.character().map(|_| error.index());
    match error.error() {
        // The first pass reports unterminated strings and raw control characters as `Syntax`
        // without a position. The second pass reports running out of tokens as `Syntax` with one.
        ErrorType::Syntax if position.is_none() => (JsonSyntax::InvalidString, None),
        ErrorType::Eof | ErrorType::Syntax => (JsonSyntax::UnexpectedEnd, None),
        ErrorType::TrailingData => (JsonSyntax::TrailingData, trailing_data_offset(text, None)),
        ErrorType::ExpectedObjectColon => (JsonSyntax::ExpectedColon, position),
        ErrorType::ExpectedTrue | ErrorType::ExpectedFalse | ErrorType::ExpectedNull => {
            (JsonSyntax::InvalidLiteral, position)
        }
        ErrorType::InvalidNumber | ErrorType::InvalidExponent => {
            (JsonSyntax::InvalidNumber, position)
        }
        ErrorType::InvalidUnicodeCodepoint => match scan::find_unpaired_surrogate(text) {
            Some(surrogate) => (JsonSyntax::UnpairedSurrogate, Some(surrogate.offset)),
            None => (JsonSyntax::InvalidEscape, None),
        },
        ErrorType::InvalidEscape | ErrorType::InvalidUnicodeEscape => {
            (JsonSyntax::InvalidEscape, None)
        }
        ErrorType::InvalidUtf8 => {
            let offset = std::str::from_utf8(text)
                .err()
                .map(|error| error.valid_up_to());
            (JsonSyntax::InvalidUtf8, offset)
        }
        ErrorType::InputTooLarge => (JsonSyntax::TooLarge, None),
        _ => classify_unexpected_byte(text, position),
    }
}

/// simd-json (0.15 and 0.19) reports text after a complete object or array as an error at that value's
/// closing bracket, the same way it reports a misplaced bracket such as `[1,]`. Scanning the
/// prefix distinguishes the two.
fn classify_unexpected_byte(text: &[u8], position: Option<usize>) -> (JsonSyntax, Option<usize>) {
    let Some(offset) = position else {
        return (JsonSyntax::Invalid, None);
    };
    match text.get(offset) {
        Some(b'}' | b']') => {
            if let Some(trailing) = trailing_data_offset(text, Some(offset)) {
                return (JsonSyntax::TrailingData, Some(trailing));
            }
            (JsonSyntax::UnexpectedByte(text[offset]), Some(offset))
        }
        Some(&byte) => (JsonSyntax::UnexpectedByte(byte), Some(offset)),
        None => (JsonSyntax::Invalid, None),
    }
}

/// Returns where data starts after the first complete value of `text`, or `None` if the first
/// value does not end at `value_end` (an offset of its last byte) when one is given.
fn trailing_data_offset(text: &[u8], value_end: Option<usize>) -> Option<usize> {
    let limit = value_end.map_or(text.len(), |end| end + 1);
    let start = text.iter().position(|&byte| !is_json_whitespace(byte))?;
    let mut scanner = Scanner::new(text.get(..limit)?, start);
    let (span, _) = scanner.skip_value(usize::MAX).ok()?;
    if value_end.is_some_and(|end| span.end != end + 1) {
        return None;
    }
    let after = text.get(span.end..)?;
    let next = after.iter().position(|&byte| !is_json_whitespace(byte))?;
    Some(span.end + next)
}

pub(crate) fn is_json_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

fn at_byte(offset: &Option<usize>) -> Position {
    Position {
        label: "byte",
        value: *offset,
    }
}

fn at_column(column: &Option<usize>) -> Position {
    Position {
        label: "column",
        value: *column,
    }
}

/// Formats ` at <label> <value>`, or nothing when the position is unknown.
struct Position {
    label: &'static str,
    value: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(value) => write!(f, " at {} {value}", self.label),
            None => Ok(()),
        }
    }
}

fn describe_byte(byte: u8) -> ByteDescription {
    ByteDescription(byte)
}

/// Formats a byte as a quoted character when it is printable ASCII, else in hex.
struct ByteDescription(u8);

impl fmt::Display for ByteDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let byte = self.0;
        if byte.is_ascii_graphic() || byte == b' ' {
            write!(f, "character '{}'", char::from(byte))
        } else {
            write!(f, "byte 0x{byte:02x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify_text(text: &str) -> (JsonSyntax, Option<usize>) {
        let mut copy = text.as_bytes().to_vec();
        let error = simd_json::to_tape(&mut copy).expect_err("invalid JSON");
        classify(&error, text.as_bytes())
    }

    #[test]
    fn body_error_messages_name_value_and_limit() {
        let cases = [
            (
                BodyError::InvalidJson { offset: Some(5), syntax: JsonSyntax::ExpectedColon },
                "invalid JSON in request body at byte 5: expected ':' after an object key",
            ),
            (
                BodyError::InvalidJson { offset: None, syntax: JsonSyntax::UnexpectedEnd },
                "invalid JSON in request body: unexpected end of input, the JSON value is incomplete",
            ),
            (
                BodyError::NotObjectOrArray { found: JsonKind::Null },
                "request body must be a JSON event object or an array of event objects, got null",
            ),
            (
                BodyError::TooDeep { offset: 34, limit: 34 },
                "request body nests arrays and objects deeper than the maximum of 34 levels at byte 34",
            ),
            (
                BodyError::TooManyEvents { count: 10_001, limit: 10_000 },
                "batch has 10001 events, at most 10000 are allowed per request",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn item_error_messages_name_field_and_limit() {
        let cases = [
            (
                ItemError::InvalidJson {
                    line: 4,
                    column: None,
                    syntax: JsonSyntax::InvalidUtf8,
                },
                "invalid JSON on line 4: invalid UTF-8",
            ),
            (
                ItemError::InvalidJson {
                    line: 4,
                    column: Some(2),
                    syntax: JsonSyntax::UnexpectedByte(0x01),
                },
                "invalid JSON on line 4 at column 2: unexpected byte 0x01",
            ),
            (
                ItemError::NotAnObject {
                    found: JsonKind::Array,
                },
                "expected an event object, got an array",
            ),
            (
                ItemError::MissingField { field: "timestamp" },
                "timestamp: missing required field",
            ),
            (
                ItemError::duplicate_key("sourceId"),
                "duplicate key sourceId in event object",
            ),
            (
                ItemError::InvalidSourceId {
                    found: RejectedSourceId::NotANumber(JsonKind::String),
                },
                "sourceId: expected an integer from 0 to 18446744073709551615, got a string",
            ),
            (
                ItemError::TypeTooLong {
                    len: 300,
                    limit: 256,
                },
                "type: must be at most 256 bytes, got 300",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.to_string(), expected);
        }
    }

    #[test]
    fn messages_are_lowercase_without_final_period() {
        let syntaxes = [
            JsonSyntax::UnexpectedEnd,
            JsonSyntax::TrailingData,
            JsonSyntax::UnexpectedByte(b'x'),
            JsonSyntax::ExpectedColon,
            JsonSyntax::InvalidLiteral,
            JsonSyntax::InvalidNumber,
            JsonSyntax::InvalidString,
            JsonSyntax::InvalidEscape,
            JsonSyntax::UnpairedSurrogate,
            JsonSyntax::InvalidUtf8,
            JsonSyntax::TooLarge,
            JsonSyntax::Invalid,
        ];
        let mut messages: Vec<String> = syntaxes.iter().map(ToString::to_string).collect();
        messages.push(BodyError::EmptyBody.to_string());
        messages.push(BodyError::EmptyBatch.to_string());
        messages.push(ItemError::EmptyType { limit: 256 }.to_string());
        messages.push(
            ItemError::TooManyKeys {
                count: 65,
                limit: 64,
            }
            .to_string(),
        );
        messages.push(
            ItemError::DataTooDeep {
                depth: 33,
                limit: 32,
            }
            .to_string(),
        );
        messages.push(ItemError::DataTooLarge { len: 9, limit: 8 }.to_string());
        messages.push(ItemError::TooDeep { line: 1, limit: 34 }.to_string());

        for message in messages {
            let first = message.chars().next().expect("non-empty message");
            assert!(first.is_lowercase(), "{message:?} starts in upper case");
            assert!(!message.ends_with('.'), "{message:?} ends with a period");
        }
    }

    #[test]
    fn duplicate_key_is_cut_at_char_boundary() {
        let key = format!("{}é", "k".repeat(63));
        let ItemError::DuplicateKey { key: quoted_key } = ItemError::duplicate_key(&key) else {
            panic!("wrong variant");
        };

        assert_eq!(*quoted_key, *"k".repeat(63));
    }

    #[test]
    fn classifies_text_after_value_as_trailing_data() {
        assert_eq!(
            classify_text(r#"{"a":[1]}  {}"#),
            (JsonSyntax::TrailingData, Some(11))
        );
        assert_eq!(classify_text("[1] 2"), (JsonSyntax::TrailingData, Some(4)));
        assert_eq!(classify_text("1 2"), (JsonSyntax::TrailingData, Some(2)));
    }

    #[test]
    fn classifies_misplaced_bracket_as_unexpected_byte() {
        assert_eq!(
            classify_text("[1,]"),
            (JsonSyntax::UnexpectedByte(b']'), Some(3))
        );
        assert_eq!(
            classify_text(r#"{"a":1,}"#),
            (JsonSyntax::UnexpectedByte(b'}'), Some(7))
        );
    }

    #[test]
    fn classifies_lone_low_surrogate_with_offset() {
        assert_eq!(
            classify_text(r#"{"a":"xy\udc00"}"#),
            (JsonSyntax::UnpairedSurrogate, Some(8))
        );
    }

    #[test]
    fn classifies_common_errors() {
        assert_eq!(
            classify_text(r#"{"a":tru}"#),
            (JsonSyntax::InvalidLiteral, Some(5))
        );
        assert_eq!(classify_text("[01]"), (JsonSyntax::InvalidNumber, Some(2)));
        assert_eq!(
            classify_text(r#"["\q"]"#),
            (JsonSyntax::InvalidEscape, None)
        );
        assert_eq!(classify_text(r#"["abc"#), (JsonSyntax::InvalidString, None));
        assert_eq!(
            classify_text("[\"\u{1}\"]"),
            (JsonSyntax::InvalidString, None)
        );
        assert_eq!(classify_text("[1,"), (JsonSyntax::UnexpectedEnd, None));
        assert_eq!(classify_text(""), (JsonSyntax::UnexpectedEnd, None));
    }
}
