//! Fuzz target for the request-body parser: gzip, deflate and zstd decoding, then JSON or
//! NDJSON parsing. The input layout and the checked properties are in `check/parse_body.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check/parse_body.rs"]
mod check;

fuzz_target!(|input: &[u8]| check::check_input(input));
