//! Reads `config.toml` (or the file given with `--config`) and `TELEMETRON_` environment
//! overrides, then deserialises and validates them into a [`Config`].

use std::path::{Path, PathBuf};

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

    let config: Config = builder.build()?.try_deserialize()?;
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
