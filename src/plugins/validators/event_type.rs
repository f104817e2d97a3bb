//! `EventTypeValidator`: accepts only events whose `type` is in a configured list.

use std::collections::HashSet;

use serde::Deserialize;

use crate::ingest::event::Event;
use crate::plugins::{PluginContext, PluginParams, Validator, ValidatorRegistration};

use super::parse_params;

/// Rejects events whose type is not listed in `allowed`; an empty list allows every type.
#[derive(Debug)]
pub struct EventTypeValidator {
    /// foldhash rather than the standard SipHash: the list is fixed by the configuration, so
    /// there is no insertion flooding to defend against, and the lookup runs for every event.
    allowed: HashSet<Box<str>, foldhash::fast::RandomState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    allowed: Vec<String>,
}

impl EventTypeValidator {
    /// Builds the validator from an explicit list; an empty list allows every type.
    pub fn new<S: Into<Box<str>>>(allowed: impl IntoIterator<Item = S>) -> Self {
        EventTypeValidator {
            allowed: allowed.into_iter().map(Into::into).collect(),
        }
    }

    fn build(params: &PluginParams, _: &PluginContext) -> Result<Box<dyn Validator>, String> {
        let params: Params =
            parse_params(params).map_err(|err| format!("{err}; expected allowed = [event type names]"))?;
        if params.allowed.is_empty() {
            tracing::warn!(plugin = "EventTypeValidator", "allowed is empty, so every event type is accepted");
        }
        Ok(Box::new(EventTypeValidator::new(params.allowed)))
    }
}

impl Validator for EventTypeValidator {
    fn validate(&self, event: &Event) -> Result<(), String> {
        if self.allowed.is_empty() || self.allowed.contains(event.event_type.as_str()) {
            Ok(())
        } else {
            Err(format!(
                "type: `{}` is not in EventTypeValidator's allowed list",
                event.event_type.as_str()
            ))
        }
    }
}

inventory::submit! {
    ValidatorRegistration { name: "EventTypeValidator", build: EventTypeValidator::build }
}
