//! Built-in validators, one per file.

mod event_type;
mod source_id;

pub use event_type::EventTypeValidator;
pub use source_id::SourceIdValidator;

use serde::de::DeserializeOwned;

use crate::config::PluginParams;

/// Deserialises a plugin's parameter table into its typed form.
///
/// # Errors
/// Returns serde's message, which names the unknown or mistyped key.
pub fn parse_params<T: DeserializeOwned>(params: &PluginParams) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|err| err.to_string())
}
