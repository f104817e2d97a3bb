//! `SourceIdValidator`: accepts only events whose `sourceId` is in a configured list.

use std::collections::HashSet;

use serde::Deserialize;

use crate::ingest::event::Event;
use crate::plugins::{PluginContext, PluginParams, Validator, ValidatorRegistration};

use super::parse_params;

/// Rejects events from sources that are not listed in `allowed`.
#[derive(Debug)]
pub struct SourceIdValidator {
    allowed: HashSet<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    allowed: Vec<SourceIdParam>,
}

/// A list entry: an integer in the file, or a numeric string from an environment override.
#[derive(Deserialize)]
#[serde(untagged)]
enum SourceIdParam {
    Number(u64),
    Text(String),
}

impl SourceIdValidator {
    /// Builds the validator from an explicit list.
    pub fn new(allowed: impl IntoIterator<Item = u64>) -> Self {
        SourceIdValidator {
            allowed: allowed.into_iter().collect(),
        }
    }

    fn build(params: &PluginParams, _: &PluginContext) -> Result<Box<dyn Validator>, String> {
        let params: Params = parse_params(params)
            .map_err(|err| format!("{err}; expected allowed = [source ids as integers from 0 to {}]", u64::MAX))?;
        let mut allowed = HashSet::with_capacity(params.allowed.len());
        for entry in params.allowed {
            let id = match entry {
                SourceIdParam::Number(id) => id,
                SourceIdParam::Text(text) => text.trim().parse().map_err(|_| {
                    format!("allowed: `{text}` is not a source id; use integers from 0 to {}", u64::MAX)
                })?,
            };
            allowed.insert(id);
        }
        if allowed.is_empty() {
            tracing::warn!(plugin = "SourceIdValidator", "allowed is empty, so every event will be rejected");
        }
        Ok(Box::new(SourceIdValidator { allowed }))
    }
}

impl Validator for SourceIdValidator {
    fn validate(&self, event: &Event) -> Result<(), String> {
        if self.allowed.contains(&event.source_id) {
            Ok(())
        } else {
            Err(format!("sourceId: {} is not in SourceIdValidator's allowed list", event.source_id))
        }
    }
}

inventory::submit! {
    ValidatorRegistration { name: "SourceIdValidator", build: SourceIdValidator::build }
}
