//! Reads `config.toml` (or the file given with `--config`) and `TELEMETRON_` environment
//! overrides, then deserialises and validates them into a [`Config`].

use std::path::{Path, PathBuf};

use config::ValueKind;
use thiserror::Error;

use super::Config;

/// Prefix of environment overrides; `__` separates nested keys (`TELEMETRON_HTTP__PORT`).
pub const ENV_PREFIX: &str = "TELEMETRON";

/// Name of the file read from the working directory when no path is given.
const DEFAULT_FILE: &str = "config.toml";

/// Origin of the configuration, for the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, plus any environment overrides.
    File(PathBuf),
    /// Built-in defaults plus any environment overrides: no file was found.
    Defaults,
}

/// A validated configuration and its origin.
#[derive(Clone, Debug)]
pub struct LoadedConfig {
    /// The effective settings.
    pub config: Config,
    /// Their origin.
    pub source: ConfigSource,
    /// Names of the `TELEMETRON_` variables that were applied.
    pub env_overrides: Vec<String>,
}

/// Errors from loading or validating configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist.
    #[error("config file {} not found; pass an existing file to --config or omit it to use config.toml or the defaults", .0.display())]
    FileNotFound(PathBuf),
    /// The file or an override could not be read or has a value of the wrong type.
    #[error("invalid configuration: {0}")]
    Parse(#[from] config::ConfigError),
    /// A number or boolean setting written as a fractional number or a string. The `config`
    /// crate would otherwise convert it (1.5 to 2, "8080" to 8080).
    #[error("invalid configuration: {key}: {message}")]
    WrongType {
        /// Dotted key, such as `processor.worker_nice`.
        key: String,
        /// The value found and what to write instead.
        message: String,
    },
    /// A value is of the right type but out of range.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// Dotted key, such as `processor.batch_size`.
        key: &'static str,
        /// Description of the problem and of the allowed values.
        message: String,
    },
    /// A plugin name or its parameters are not valid.
    #[error("invalid configuration: {0}")]
    Plugin(String),
}

/// Loads the configuration: `path` if given (it must exist), else `config.toml` in the
/// working directory if present, else the built-in defaults; then `TELEMETRON_` overrides.
///
/// # Errors
/// Returns [`ConfigError`] when the file is missing or malformed, a value has the wrong type,
/// a key is unknown, or a value is out of range.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let file = match path {
        Some(path) if !path.is_file() => return Err(ConfigError::FileNotFound(path.to_owned())),
        Some(path) => Some(path.to_owned()),
        None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
    };

    let mut builder = config::Config::builder();
    if let Some(file) = &file {
        // Always TOML, whatever the file is called: the `config` crate would otherwise guess
        // the format from the extension and reject `telemetron.conf`.
        let path = file.to_string_lossy();
        builder = builder.add_source(config::File::new(&path, config::FileFormat::Toml).required(true));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("validation.plugins.sourceidvalidator.allowed")
            .with_list_parse_key("validation.plugins.eventtypevalidator.allowed"),
    );

    let built = builder.build()?;
    check_scalar_types(&built)?;
    let config: Config = built.try_deserialize()?;
    config.validate()?;

    let env_overrides = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(&format!("{ENV_PREFIX}_")))
        .collect();
    Ok(LoadedConfig {
        config,
        source: file.map_or(ConfigSource::Defaults, ConfigSource::File),
        env_overrides,
    })
}

/// Rejects a whole-number setting given as a fractional number or a string, and a boolean
/// setting given as a string. The `config` crate would convert them, rounding 1.5 to 2.
/// Environment values are parsed before this check, so `TELEMETRON_HTTP__PORT=8081` passes.
fn check_scalar_types(built: &config::Config) -> Result<(), ConfigError> {
    let defaults = toml::Value::try_from(Config::default()).expect("the default configuration serialises");
    let Some(sections) = defaults.as_table() else {
        return Ok(());
    };
    for (section, keys) in sections {
        let (Some(keys), Ok(values)) = (keys.as_table(), built.get_table(section)) else {
            continue;
        };
        for (key, default) in keys {
            let Some(value) = values.get(key) else {
                continue;
            };
            let (matches, expected) = match default {
                toml::Value::Integer(_) => (
                    matches!(
                        value.kind,
                        ValueKind::I64(_) | ValueKind::I128(_) | ValueKind::U64(_) | ValueKind::U128(_)
                    ),
                    "a whole number without quotes or decimals",
                ),
                toml::Value::Boolean(_) => (matches!(value.kind, ValueKind::Boolean(_)), "true or false without quotes"),
                _ => continue,
            };
            if !matches {
                let variable = format!("{ENV_PREFIX}_{}__{}", section.to_uppercase(), key.to_uppercase());
                let origin = if std::env::var_os(&variable).is_some() {
                    format!(" (from {variable})")
                } else {
                    String::new()
                };
                return Err(ConfigError::WrongType {
                    key: format!("{section}.{key}"),
                    message: format!("found {}{origin}; write {expected}", value_description(&value.kind)),
                });
            }
        }
    }
    Ok(())
}

fn value_description(kind: &ValueKind) -> String {
    match kind {
        ValueKind::String(text) => format!("the string {text:?}"),
        ValueKind::Float(number) => format!("the fractional number {number}"),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<(), ConfigError> {
        let built = config::Config::builder()
            .add_source(config::File::from_str(toml_text, config::FileFormat::Toml))
            .build()
            .expect("valid TOML");
        check_scalar_types(&built)
    }

    #[test]
    fn fractional_integer_setting_is_rejected() {
        let error = check("[processor]\nworker_nice = 1.5\n").expect_err("1.5 is not a nice value");
        assert!(error.to_string().contains("processor.worker_nice"), "{error}");
        assert!(error.to_string().contains("1.5"), "{error}");
    }

    #[test]
    fn quoted_integer_setting_is_rejected() {
        let error = check("[http]\nport = \"8085\"\n").expect_err("a quoted port is a string");
        assert!(error.to_string().contains("http.port"), "{error}");
    }

    #[test]
    fn quoted_boolean_setting_is_rejected() {
        let error = check("[processor]\npin_workers = \"true\"\n").expect_err("a quoted boolean is a string");
        assert!(error.to_string().contains("processor.pin_workers"), "{error}");
    }

    #[test]
    fn typed_settings_pass() {
        let checked = check("[http]\nport = 8085\nhost = \"127.0.0.1\"\n[processor]\npin_workers = false\nworker_nice = -5\n");
        assert!(checked.is_ok(), "{checked:?}");
    }
}
