//! Turning request bodies into validated events: the event type, RFC 3339 timestamps and
//! the `simd-json` body parser.

pub mod decode;
pub mod event;
pub mod parse;
pub mod timestamp;
