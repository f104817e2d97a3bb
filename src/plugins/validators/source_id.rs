//! `SourceIdValidator`: accepts only events whose `sourceId` is in a configured list.

use std::collections::HashSet;

use crate::ingest::event::Event;
use crate::plugins::{PluginContext, PluginParams, Validator, ValidatorRegistration};

/// The allowed ids. foldhash rather than the standard SipHash: the set is fixed by the
/// configuration, so there is no insertion flooding to defend against, and the lookup runs
/// for every event.
type AllowedIds = HashSet<u64, foldhash::fast::RandomState>;

/// Rejects events from sources that are not listed in `allowed`.
#[derive(Debug)]
pub struct SourceIdValidator {
    allowed: AllowedIds,
}

impl SourceIdValidator {
    /// Builds the validator from an explicit list.
    pub fn new(allowed: impl IntoIterator<Item = u64>) -> Self {
        SourceIdValidator {
            allowed: allowed.into_iter().collect(),
        }
    }

    fn build(params: &PluginParams, _: &PluginContext) -> Result<Box<dyn Validator>, String> {
        if let Some(key) = params.keys().find(|key| *key != "allowed") {
            return Err(format!("unknown parameter `{key}`; SourceIdValidator takes only allowed"));
        }
        let allowed = parse_allowed(params.get("allowed"))?;
        if allowed.is_empty() {
            tracing::warn!(plugin = "SourceIdValidator", "allowed is empty, so every event will be rejected");
        }
        Ok(Box::new(SourceIdValidator { allowed }))
    }
}

/// Reads `allowed`: a list of integers from the file, or strings from an environment
/// override, where a single value arrives as a scalar rather than a one-element list.
/// TOML integers stop at `i64::MAX`, so larger ids must be written as strings in the file.
fn parse_allowed(value: Option<&serde_json::Value>) -> Result<AllowedIds, String> {
    let expected = format!("expected allowed = [source ids as integers from 0 to {}]", u64::MAX);
    let entries: Vec<&serde_json::Value> = match value {
        None => return Err(format!("missing allowed; {expected}")),
        Some(serde_json::Value::Array(list)) => list.iter().collect(),
        Some(single) => vec![single],
    };

    let mut allowed = AllowedIds::with_capacity_and_hasher(entries.len(), Default::default());
    for entry in entries {
        let id = match entry {
            serde_json::Value::Number(number) => number.as_u64(),
            serde_json::Value::String(text) => text.trim().parse().ok(),
            _ => None,
        };
        let id = id.ok_or_else(|| format!("allowed: `{entry}` is not a source id; {expected}"))?;
        allowed.insert(id);
    }
    Ok(allowed)
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

#[cfg(test)]
mod tests {
    use super::parse_allowed;
    use serde_json::json;

    #[test]
    fn allowed_accepts_lists_scalars_and_strings() {
        assert_eq!(parse_allowed(Some(&json!([1, 2]))).map(|s| s.len()), Ok(2));
        assert_eq!(parse_allowed(Some(&json!("42"))).map(|s| s.contains(&42)), Ok(true));
        assert_eq!(parse_allowed(Some(&json!(["18446744073709551615"]))).map(|s| s.contains(&u64::MAX)), Ok(true));
    }

    #[test]
    fn allowed_rejects_non_ids_by_value() {
        for bad in [json!([-1]), json!([1.5]), json!(["x"]), json!([true])] {
            let error = parse_allowed(Some(&bad)).expect_err("not a source id");
            assert!(error.starts_with("allowed: `"), "{error}");
            assert!(error.contains("is not a source id"), "{error}");
        }
        assert!(parse_allowed(None).is_err());
    }
}
