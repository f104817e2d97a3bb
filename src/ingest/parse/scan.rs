//! A byte scanner over JSON text that simd-json has already validated. simd-json's tape carries
//! no byte offsets, so this scanner recovers what the tape lacks: where each object member's key
//! and value start and end in the original body, and how deeply a value nests.
//!
//! Callers must pass bytes that simd-json accepted, or a prefix of them that ends at a value
//! boundary, and must walk members and elements in the same order as the tape. On other input
//! the scanner does not panic, but it returns [`ScanError::Malformed`] or meaningless spans.
//! Nesting is tracked with a counter instead of recursion, so any depth costs constant stack.
//!
//! Arrays and objects are skipped over simd-json's structural indexes when the caller passes
//! them ([`Scanner::with_structurals`]). Stage 1 lists the offset of every bracket, brace,
//! comma, colon, opening quote and scalar start outside strings. Matching brackets over that
//! list takes one step per token instead of one per byte, and never reads inside a string.

use std::ops::Range;

use memchr::{memchr, memchr2};

/// Bytes of a string checked one by one before switching to memchr.
const SHORT_STRING_BYTES: usize = 32;

/// Reason a scan stopped before the end of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// The array or object opened at `offset` nests deeper than the caller's depth budget.
    TooDeep { offset: usize },
    /// The byte at `offset` cannot occur here in valid JSON, so the caller broke the contract.
    Malformed { offset: usize },
}

/// One object member as byte ranges into the scanned text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// The key with its quotes, still escaped.
    pub(crate) key: Range<usize>,
    /// The value without surrounding whitespace.
    pub(crate) value: Range<usize>,
    /// Nesting depth of the value: 0 for a scalar, 1 for `[]` or `{}`, 2 for `[[]]`.
    pub(crate) depth: usize,
}

/// An unpaired UTF-16 surrogate in a `\u` escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnpairedSurrogate {
    /// Offset of the escape's backslash.
    pub(crate) offset: usize,
}

/// A cursor over validated JSON text.
pub(crate) struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Address of the byte that simd-json parsed in place of `bytes[0]`, or 0 when unknown.
    tape_base: usize,
    /// simd-json's structural indexes of the document, in ascending order, or empty.
    structurals: &'a [u32],
    /// Offset in `bytes` of the document the structural indexes count from.
    structural_base: usize,
    /// Structural indexes before this one lie before `pos`, so searches start here.
    structural_cursor: usize,
}

impl<'a> Scanner<'a> {
    /// Creates a scanner over `bytes` that starts at offset `pos`. All offsets it reports are
    /// offsets into `bytes`.
    pub(crate) fn new(bytes: &'a [u8], pos: usize) -> Self {
        Scanner {
            bytes,
            pos,
            tape_base: 0,
            structurals: &[],
            structural_base: 0,
            structural_cursor: 0,
        }
    }

    /// Lets [`Scanner::skip_value`] skip arrays and objects over simd-json's structural
    /// indexes (`Buffers::structural_indexes` after the parse) of the document that starts at
    /// offset `base` in `bytes`. A container whose opening bracket the indexes do not list is
    /// scanned byte by byte as before.
    pub(crate) fn with_structurals(mut self, structurals: &'a [u32], base: usize) -> Self {
        self.structurals = structurals;
        self.structural_base = base;
        self
    }

    /// Lets [`Scanner::next_member_from_tape`] locate tape strings in `bytes`. `copy_address`
    /// must be the address of the buffer simd-json parsed in place, a copy of `bytes` at the
    /// same offsets.
    ///
    /// simd-json 0.19 returns every string as a slice of its input buffer at the string's
    /// own offset, unescaped in place, so a string's address minus the buffer's address is
    /// where the string starts in `bytes`. A string found elsewhere fails the checks in
    /// [`Scanner::unescaped_string_at`] and is scanned instead.
    pub(crate) fn with_tape_copy(mut self, copy_address: usize) -> Self {
        self.tape_base = copy_address;
        self
    }

    /// Returns the offset in `bytes` of a string from the tape, if it lies in the copy.
    fn tape_offset(&self, text: &str) -> Option<usize> {
        let offset = (text.as_ptr() as usize).checked_sub(self.tape_base)?;
        (self.tape_base != 0 && offset + text.len() <= self.bytes.len()).then_some(offset)
    }

    /// Returns the raw span of a tape string written without escapes (quotes included),
    /// when it starts exactly at `at`; otherwise `None`.
    fn unescaped_string_at(&self, text: &str, at: usize) -> Option<Range<usize>> {
        let start = self.tape_offset(text)?;
        let end = start + text.len();
        let plain = start == at + 1
            && self.bytes.get(at) == Some(&b'"')
            && self.bytes.get(end) == Some(&b'"')
            && !self.bytes[start..end].contains(&b'\\');
        plain.then_some(at..end + 1)
    }

    /// Like [`Scanner::next_member`], given the member's key and value from the tape. Keys
    /// and string values written without escapes are located from their tape addresses
    /// instead of being scanned byte by byte; anything else falls back to the scan.
    pub(crate) fn next_member_from_tape(
        &mut self,
        depth_budget: usize,
        key: &str,
        value: &simd_json::Node<'_>,
    ) -> Result<Option<Member>, ScanError> {
        let resume = self.pos;
        self.skip_whitespace();
        if self.peek() == Some(b',') {
            self.pos += 1;
            self.skip_whitespace();
        }
        let Some(key_span) = self.unescaped_string_at(key, self.pos) else {
            self.pos = resume;
            return self.next_member(depth_budget);
        };
        self.pos = key_span.end;

        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.malformed());
        }
        self.pos += 1;
        self.skip_whitespace();

        if let simd_json::Node::String(text) = value {
            if let Some(value_span) = self.unescaped_string_at(text, self.pos) {
                self.pos = value_span.end;
                return Ok(Some(Member {
                    key: key_span,
                    value: value_span,
                    depth: 0,
                }));
            }
        }
        let (value_span, depth) = self.skip_value(depth_budget)?;
        Ok(Some(Member {
            key: key_span,
            value: value_span,
            depth,
        }))
    }

    /// Skips whitespace, then consumes `open` (`{` or `[`).
    pub(crate) fn enter(&mut self, open: u8) -> Result<(), ScanError> {
        self.skip_whitespace();
        if self.peek() != Some(open) {
            return Err(self.malformed());
        }
        self.pos += 1;
        Ok(())
    }

    /// Returns the next member of the object entered last, or `None` after consuming its `}`.
    /// `depth_budget` is how many levels the member's value may nest.
    pub(crate) fn next_member(&mut self, depth_budget: usize) -> Result<Option<Member>, ScanError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
            }
            _ => {}
        }

        let key_start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.malformed());
        }
        self.skip_string()?;
        let key = key_start..self.pos;

        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.malformed());
        }
        self.pos += 1;
        self.skip_whitespace();

        let (value, depth) = self.skip_value(depth_budget)?;
        Ok(Some(Member { key, value, depth }))
    }

    /// Moves to the start of the next element of the array entered last and returns `true`, or
    /// consumes its `]` and returns `false`.
    pub(crate) fn next_element(&mut self) -> Result<bool, ScanError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b',') => {
                self.pos += 1;
                self.skip_whitespace();
                Ok(true)
            }
            Some(_) => Ok(true),
            None => Err(self.malformed()),
        }
    }

    /// Skips whitespace and one value, returning the value's span and nesting depth.
    ///
    /// A value that nests deeper than `depth_budget` levels stops the scan with
    /// [`ScanError::TooDeep`] at the first container past the budget, so a deep document is
    /// rejected after reading at most `depth_budget + 1` of its openings.
    pub(crate) fn skip_value(
        &mut self,
        depth_budget: usize,
    ) -> Result<(Range<usize>, usize), ScanError> {
        self.skip_whitespace();
        let start = self.pos;
        let depth = match self.peek() {
            Some(b'"') => {
                self.skip_string()?;
                0
            }
            Some(b'{' | b'[') => self.skip_container(depth_budget)?,
            Some(_) => {
                self.skip_scalar();
                if self.pos == start {
                    return Err(self.malformed());
                }
                0
            }
            None => return Err(self.malformed()),
        };
        Ok((start..self.pos, depth))
    }

    fn skip_container(&mut self, depth_budget: usize) -> Result<usize, ScanError> {
        if let Some(skipped) = self.skip_container_by_structurals(depth_budget) {
            return skipped;
        }
        let mut depth = 0_usize;
        let mut max_depth = 0_usize;
        while let Some(&byte) = self.bytes.get(self.pos) {
            match byte {
                b'"' => {
                    self.skip_string()?;
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > depth_budget {
                        return Err(ScanError::TooDeep { offset: self.pos });
                    }
                    max_depth = max_depth.max(depth);
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or_else(|| self.malformed())?;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(max_depth);
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
        Err(self.malformed())
    }

    /// Skips the array or object at `pos` by walking the structural indexes from its opening
    /// bracket, with the same depth rules as the byte scan in [`Scanner::skip_container`].
    /// Returns `None`, with `pos` unchanged, when the indexes do not list `pos` or disagree
    /// with the bytes, so the caller scans the bytes instead.
    fn skip_container_by_structurals(
        &mut self,
        depth_budget: usize,
    ) -> Option<Result<usize, ScanError>> {
        let target = u32::try_from(self.pos.checked_sub(self.structural_base)?).ok()?;
        let rest = self.structurals.get(self.structural_cursor..)?;
        let first = rest.partition_point(|&index| index < target);
        if rest.get(first) != Some(&target) {
            return None;
        }

        let mut depth = 0_usize;
        let mut max_depth = 0_usize;
        for (step, &index) in rest[first..].iter().enumerate() {
            let at = self.structural_base + index as usize;
            match *self.bytes.get(at)? {
                b'{' | b'[' => {
                    depth += 1;
                    if depth > depth_budget {
                        return Some(Err(ScanError::TooDeep { offset: at }));
                    }
                    max_depth = max_depth.max(depth);
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.pos = at + 1;
                        self.structural_cursor += first + step + 1;
                        return Some(Ok(max_depth));
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn skip_string(&mut self) -> Result<(), ScanError> {
        let mut pos = self.pos + 1;

        // Event strings are mostly short keys and values, where a plain loop beats the setup
        // cost of a vectorised search. Longer strings continue with memchr below.
        let short_end = self.bytes.len().min(pos + SHORT_STRING_BYTES);
        while pos < short_end {
            match self.bytes[pos] {
                b'"' => {
                    self.pos = pos + 1;
                    return Ok(());
                }
                b'\\' => pos += 2,
                _ => pos += 1,
            }
        }

        loop {
            let rest = self.bytes.get(pos..).ok_or_else(|| self.malformed())?;
            let Some(found) = memchr2(b'"', b'\\', rest) else {
                return Err(self.malformed());
            };
            if rest[found] == b'"' {
                self.pos = pos + found + 1;
                return Ok(());
            }

            // Stepping over the escaped byte is enough even for `\uXXXX`, because hex digits
            // are never a quote or a backslash.
            pos += found + 2;
        }
    }

    /// Skips a number, `true`, `false` or `null`. These end at the first structural or
    /// whitespace byte, because validated JSON puts nothing else right after them.
    fn skip_scalar(&mut self) {
        while let Some(&byte) = self.bytes.get(self.pos) {
            if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Returns the error for a byte at the current position that valid JSON cannot have.
    pub(crate) fn malformed(&self) -> ScanError {
        ScanError::Malformed { offset: self.pos }
    }
}

/// Finds the first `\u` escape in `bytes` that is an unpaired UTF-16 surrogate: a low surrogate
/// (`\udc00` to `\udfff`) on its own, or a high surrogate (`\ud800` to `\udbff`) not directly
/// followed by a low one.
///
/// simd-json 0.15 turned a lone high surrogate into U+0000 and accepted `\ud800\uffff` as
/// U+123FF. 0.19 rejects both itself; this check keeps the rule from depending on the
/// simd-json version. `bytes` must be JSON text that simd-json accepted, because this check
/// assumes every backslash starts an escape inside a string.
pub(crate) fn find_unpaired_surrogate(bytes: &[u8]) -> Option<UnpairedSurrogate> {
    let mut pos = 0;
    while let Some(found) = bytes.get(pos..).and_then(|rest| memchr(b'\\', rest)) {
        let escape = pos + found;
        if bytes.get(escape + 1) != Some(&b'u') {
            pos = escape + 2;
            continue;
        }

        match parse_hex4(bytes, escape + 2) {
            Some(0xD800..=0xDBFF) => {
                let low_follows = bytes.get(escape + 6) == Some(&b'\\')
                    && bytes.get(escape + 7) == Some(&b'u')
                    && matches!(parse_hex4(bytes, escape + 8), Some(0xDC00..=0xDFFF));
                if !low_follows {
                    return Some(UnpairedSurrogate { offset: escape });
                }
                pos = escape + 12;
            }
            Some(0xDC00..=0xDFFF) => return Some(UnpairedSurrogate { offset: escape }),
            _ => pos = escape + 6,
        }
    }
    None
}

fn parse_hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0_u32, |code, &digit| {
        Some(code * 16 + char::from(digit).to_digit(16)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str, depth_budget: usize) -> Result<Vec<Member>, ScanError> {
        let mut scanner = Scanner::new(text.as_bytes(), 0);
        scanner.enter(b'{')?;
        let mut found = Vec::new();
        while let Some(member) = scanner.next_member(depth_budget)? {
            found.push(member);
        }
        Ok(found)
    }

    fn spans<'t>(text: &'t str, member: &Member) -> (&'t str, &'t str) {
        (&text[member.key.clone()], &text[member.value.clone()])
    }

    /// simd-json's structural indexes of `text`.
    fn structural_indexes(text: &str) -> Vec<u32> {
        let mut copy = text.as_bytes().to_vec();
        let mut buffers = simd_json::Buffers::default();
        let mut tape = simd_json::Tape(Vec::new());
        simd_json::fill_tape(&mut copy, &mut buffers, &mut tape).expect("test text is valid JSON");
        buffers.structural_indexes().to_vec()
    }

    /// Members of the object that starts at `base` in `text`, scanned with `structurals`
    /// counted from `base`. Also returns how far the structural cursor moved.
    fn members_over_structurals(
        text: &str,
        base: usize,
        structurals: &[u32],
        depth_budget: usize,
    ) -> (Result<Vec<Member>, ScanError>, usize) {
        let mut scanner = Scanner::new(text.as_bytes(), base).with_structurals(structurals, base);
        let mut scan = || {
            scanner.enter(b'{')?;
            let mut found = Vec::new();
            while let Some(member) = scanner.next_member(depth_budget)? {
                found.push(member);
            }
            Ok(found)
        };
        let found = scan();
        (found, scanner.structural_cursor)
    }

    const TRICKY_OBJECTS: [&str; 6] = [
        r#" { "a" : 1 , "b\"c":"x\\\"}" ,"d":{"e":[1,{}]}, "f" :null}"#,
        r#"{"data":{"s":"}]{[\"","n":[[],[[]],{"k":"]"}],"u":"\u00e9"},"x":[ ]}"#,
        "{\"data\" :\t[ 1 ,\n{ \"a\" : [ ] } ] , \"t\":true}",
        r#"{"d":[[[[[[1]]]]]],"e":{"f":{"g":{}}}}"#,
        r#"{"d":["a\\","b\\\\",{"\"":"\\\""}]}"#,
        r#"{}"#,
    ];

    #[test]
    fn structural_skip_matches_byte_scan() {
        for text in TRICKY_OBJECTS {
            let structurals = structural_indexes(text);
            for budget in [1, 2, 3, 10] {
                let (over_structurals, _) = members_over_structurals(text, 0, &structurals, budget);
                assert_eq!(
                    over_structurals,
                    members(text, budget),
                    "{text} with depth budget {budget}"
                );
            }
        }
    }

    #[test]
    fn structural_skip_is_used_for_containers() {
        let text = r#"{"data":{"a":[1,2,"]"]},"n":1}"#;
        let structurals = structural_indexes(text);
        let (found, cursor) = members_over_structurals(text, 0, &structurals, 10);

        assert_eq!(found, members(text, 10));
        // The skip ends after the `}` of `data`, which is structural index 13.
        assert_eq!(cursor, 14);
    }

    #[test]
    fn structural_skip_counts_from_the_document_base() {
        // An NDJSON line after another: its indexes count from the line's first byte.
        let first = r#"{"d":[1]}"#;
        let second = r#"{"d":{"x":"{"},"e":[[]]}"#;
        let text = format!("{first}\n{second}");
        let structurals = structural_indexes(second);
        let (found, cursor) = members_over_structurals(&text, first.len() + 1, &structurals, 10);
        let found = found.expect("valid object");

        assert!(cursor > 0, "the structural path was not taken");
        assert_eq!(spans(&text, &found[0]), (r#""d""#, r#"{"x":"{"}"#));
        assert_eq!(spans(&text, &found[1]), (r#""e""#, "[[]]"));
        assert_eq!(found[1].depth, 2);
    }

    #[test]
    fn mismatched_structurals_fall_back_to_byte_scan() {
        let text = r#"{"d":{"a":[1]},"e":[2]}"#;
        // Indexes of some other document: none lists the `{` of `d` at offset 5.
        let (found, cursor) = members_over_structurals(text, 0, &[0, 1, 3, 4, 9, 30], 10);

        assert_eq!(found, members(text, 10));
        assert_eq!(cursor, 0);
    }

    #[test]
    fn members_yield_raw_key_and_value_spans() {
        let text = r#" { "a" : 1 , "b\"c":"x\\\"}" ,"d":{"e":[1,{}]}, "f" :null}"#;
        let found = members(text, 10).expect("valid object");

        assert_eq!(found.len(), 4);
        assert_eq!(spans(text, &found[0]), (r#""a""#, "1"));
        assert_eq!(spans(text, &found[1]), (r#""b\"c""#, r#""x\\\"}""#));
        assert_eq!(spans(text, &found[2]), (r#""d""#, r#"{"e":[1,{}]}"#));
        assert_eq!(spans(text, &found[3]), (r#""f""#, "null"));
    }

    #[test]
    fn members_report_value_depth() {
        let text = r#"{"scalar":1,"empty":[],"two":[{}],"string":"[[[","three":{"a":[[]]}}"#;
        let depths: Vec<usize> = members(text, 10)
            .expect("valid object")
            .iter()
            .map(|member| member.depth)
            .collect();

        assert_eq!(depths, [0, 1, 2, 0, 3]);
    }

    #[test]
    fn empty_object_has_no_members() {
        assert_eq!(members(" {  } ", 10), Ok(Vec::new()));
    }

    #[test]
    fn value_past_depth_budget_is_too_deep() {
        let text = r#"{"a":[[1]],"b":[[[1]]]}"#;

        assert_eq!(members(text, 3).map(|found| found.len()), Ok(2));
        assert_eq!(members(text, 2), Err(ScanError::TooDeep { offset: 17 }));
    }

    #[test]
    fn deep_nesting_stops_at_budget() {
        let text = "[".repeat(1 << 20);
        let mut scanner = Scanner::new(text.as_bytes(), 0);

        assert_eq!(
            scanner.skip_value(34),
            Err(ScanError::TooDeep { offset: 34 })
        );
    }

    #[test]
    fn truncated_text_is_malformed() {
        for text in [r#"{"a":[1,2"#, r#"{"a":"abc"#, r#"{"a""#, r#"{"a":"#] {
            assert!(
                matches!(members(text, 10), Err(ScanError::Malformed { .. })),
                "{text} was not reported as malformed"
            );
        }
    }

    #[test]
    fn elements_are_visited_in_order() {
        let text = r#"[ 1 , "a" ,{"b":[2]} ]"#;
        let mut scanner = Scanner::new(text.as_bytes(), 0);
        scanner.enter(b'[').expect("array start");

        let mut found = Vec::new();
        while scanner.next_element().expect("valid array") {
            let (span, _) = scanner.skip_value(10).expect("valid element");
            found.push(&text[span]);
        }

        assert_eq!(found, ["1", r#""a""#, r#"{"b":[2]}"#]);
    }

    #[test]
    fn paired_surrogates_pass() {
        assert_eq!(
            find_unpaired_surrogate(br#""\ud83d\ude00 \u00e9 \\ud800""#),
            None
        );
    }

    #[test]
    fn lone_high_surrogate_is_found() {
        let text = br#""ok \ud800""#;

        assert_eq!(
            find_unpaired_surrogate(text),
            Some(UnpairedSurrogate { offset: 4 })
        );
    }

    #[test]
    fn high_surrogate_before_non_low_escape_is_found() {
        for text in [
            br#""\ud800\uffff""#,
            br#""\ud800\u0041""#,
            br#""\ud800\ud800""#,
        ] {
            assert_eq!(
                find_unpaired_surrogate(text),
                Some(UnpairedSurrogate { offset: 1 })
            );
        }
    }

    #[test]
    fn lone_low_surrogate_is_found() {
        assert_eq!(
            find_unpaired_surrogate(br#""a\\\udc00""#),
            Some(UnpairedSurrogate { offset: 4 })
        );
    }
}
