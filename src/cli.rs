//! The command line and start-up sequence shared by the `telemetron` binary and by binaries
//! that link Telemetron as a library to add their own plugins: parse arguments, load
//! configuration, set up logging, bind the listener, run until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{self, ConfigSource, LoadedConfig, LogFormat};

/// Telemetry ingestion service: receives events over HTTP, validates and processes them,
/// and serves per-source statistics.
#[derive(Parser, Debug)]
#[command(name = "telemetron", version, about)]
struct Cli {
    /// Configuration file; without it, ./config.toml is used when present, else the
    /// built-in defaults. TELEMETRON_ environment variables override either.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration, print the effective settings as TOML and exit: 0 when
    /// valid, 1 otherwise.
    CheckConfig,
}

/// Errors that end the process with exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The service could not start.
    #[error(transparent)]
    Run(#[from] crate::RunError),
    /// The listener could not be bound.
    #[error("cannot listen on {address} (http.host, http.port): {source}; if the port is in use, pick another with http.port or TELEMETRON_HTTP__PORT")]
    Bind {
        /// The address from the configuration.
        address: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The SIGTERM or SIGINT handler could not be installed.
    #[error("cannot install the SIGTERM and SIGINT handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The tokio runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Runs the `telemetron` command line: the whole program of the binary. Every plugin
/// registered with `inventory::submit!` anywhere in the final binary is available.
pub fn main() -> ExitCode {
    let cli = Cli::parse();

    let loaded = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("telemetron: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        return check_config(&loaded);
    }

    init_logging(loaded.config.log.format);
    match serve(loaded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "telemetron stopped");
            eprintln!("telemetron: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(loaded: &LoadedConfig) -> ExitCode {
    if let Err(error) = crate::check_config(&loaded.config) {
        eprintln!("telemetron: {error}");
        return ExitCode::FAILURE;
    }
    match &loaded.source {
        ConfigSource::File(path) => println!("# configuration from {}", path.display()),
        ConfigSource::Defaults => println!("# no config file found: built-in defaults"),
    }
    for name in &loaded.env_overrides {
        println!("# overridden by environment variable {name}");
    }
    match toml::to_string(&loaded.config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("telemetron: cannot print the configuration as TOML: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the global `tracing` subscriber: level from `RUST_LOG` (default `info`),
/// output to stderr as text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: under systemd or a log shipper they would end up in
    // the stored lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

fn serve(loaded: LoadedConfig) -> Result<(), CliError> {
    let config = loaded.config;
    match &loaded.source {
        ConfigSource::File(path) => {
            tracing::info!(path = %path.display(), overrides = ?loaded.env_overrides, "configuration loaded");
        }
        ConfigSource::Defaults => tracing::info!(
            overrides = ?loaded.env_overrides,
            "no config.toml in the working directory and no --config given, so the built-in defaults apply"
        ),
    }

    let address = config.http.socket_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("telemetron-http")
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async move {
        let shutdown = crate::shutdown::signal().map_err(CliError::Signals)?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| CliError::Bind { address, source })?;
        crate::run(config, listener, shutdown).await?;
        Ok(())
    })
}
