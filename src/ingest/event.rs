//! The validated event that travels from the HTTP handler through the shard queues to the
//! processors. Everything here has already passed parsing: processors may rely on every field.

use bytes::Bytes;

use crate::ingest::timestamp::Timestamp;

/// The name of the one predefined event type.
pub const HEARTBEAT: &str = "Heartbeat";

/// An event's `type`: the predefined `Heartbeat` or any other non-empty string of at most
/// [`MAX_EVENT_TYPE_BYTES`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The predefined `Heartbeat` type.
    Heartbeat,
    /// Any other type, as sent.
    Custom(Box<str>),
}

/// Maximum length of an event's `type` in bytes (UTF-8).
pub const MAX_EVENT_TYPE_BYTES: usize = 256;

impl EventType {
    /// Builds the type from its JSON string, mapping `Heartbeat` to the predefined variant.
    pub fn from_name(name: &str) -> EventType {
        if name == HEARTBEAT {
            EventType::Heartbeat
        } else {
            EventType::Custom(name.into())
        }
    }

    /// The type's name as it appears in JSON.
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Heartbeat => HEARTBEAT,
            EventType::Custom(name) => name,
        }
    }
}

/// One accepted telemetry event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The sender's id, any `u64`.
    pub source_id: u64,
    /// The event's type.
    pub event_type: EventType,
    /// The time the client stamped on the event, normalised to UTC.
    pub timestamp: Timestamp,
    /// The `data` value exactly as the client sent it (raw JSON bytes, never re-serialised),
    /// or `None` when the field was absent. `"data": null` is kept as `Some(b"null")`.
    pub data: Option<Bytes>,
}
