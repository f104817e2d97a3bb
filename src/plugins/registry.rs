//! Builds the enabled plugins from configuration, in a fixed order, and rejects unknown names.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, PluginParams};

use super::{PluginContext, Processor, ProcessorRegistration, Validator, ValidatorRegistration};

/// The plugins a configuration enables, each with its registered name, in run order.
pub struct EnabledPlugins {
    /// Validators in alphabetical order of name.
    pub validators: Vec<(&'static str, Box<dyn Validator>)>,
    /// Processors in alphabetical order of name.
    pub processors: Vec<(&'static str, Arc<dyn Processor>)>,
}

/// Builds every plugin the configuration names.
///
/// # Errors
/// Returns [`ConfigError::Plugin`] for an unknown name (listing the known ones) or for
/// parameters the plugin rejects.
pub fn build_plugins(config: &Config, context: &PluginContext) -> Result<EnabledPlugins, ConfigError> {
    let known_validators: Vec<_> = inventory::iter::<ValidatorRegistration>
        .into_iter()
        .map(|r| (r.name, r.build))
        .collect();
    let known_processors: Vec<_> = inventory::iter::<ProcessorRegistration>
        .into_iter()
        .map(|r| (r.name, r.build))
        .collect();

    let mut validators = Vec::new();
    for (name, params) in resolve("validation", &config.validation.plugins, &known_validators)? {
        let build = lookup(&known_validators, name);
        let plugin = build(&params, context).map_err(|message| plugin_error("validation", name, message))?;
        validators.push((name, plugin));
    }

    let mut processors = Vec::new();
    for (name, params) in resolve("processing", &config.processing.plugins, &known_processors)? {
        let build = lookup(&known_processors, name);
        let plugin = build(&params, context).map_err(|message| plugin_error("processing", name, message))?;
        processors.push((name, plugin));
    }

    Ok(EnabledPlugins {
        validators,
        processors,
    })
}

fn plugin_error(section: &str, name: &str, message: String) -> ConfigError {
    ConfigError::Plugin(format!("{section}.plugins.{name}: {message}"))
}

fn lookup<T: Copy>(known: &[(&'static str, T)], name: &str) -> T {
    known
        .iter()
        .find(|(known_name, _)| *known_name == name)
        .map(|(_, build)| *build)
        .expect("resolve returns registered names only")
}

/// Maps configured names to registered ones, case-insensitively, merging the tables that
/// differ only in case (a lowercased environment override lands beside the file's table;
/// later keys in byte order win, and lowercase sorts after uppercase). Returns them sorted
/// by registered name.
fn resolve<T>(
    section: &str,
    configured: &BTreeMap<String, PluginParams>,
    known: &[(&'static str, T)],
) -> Result<BTreeMap<&'static str, PluginParams>, ConfigError> {
    let mut resolved: BTreeMap<&'static str, PluginParams> = BTreeMap::new();
    for (name, params) in configured {
        let Some((registered, _)) = known.iter().find(|(known_name, _)| known_name.eq_ignore_ascii_case(name)) else {
            let mut names: Vec<&str> = known.iter().map(|(known_name, _)| *known_name).collect();
            names.sort_unstable();
            return Err(ConfigError::Plugin(format!(
                "unknown plugin `{name}` in [{section}.plugins]; known plugins: {}",
                names.join(", ")
            )));
        };
        if resolved.contains_key(registered) {
            tracing::info!(
                section,
                plugin = *registered,
                table = %name,
                "two tables name the same plugin; keys of the later one (environment overrides come last) replace the earlier"
            );
        }
        let merged = resolved.entry(registered).or_default();
        for (key, value) in params {
            merged.insert(key.clone(), value.clone());
        }
    }
    Ok(resolved)
}
