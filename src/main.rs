//! The `telemetron` binary: parses the command line, loads configuration, sets up logging,
//! binds the listener and runs the service until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use telemetron::config::{self, ConfigSource, LogFormat};
use tracing_subscriber::EnvFilter;

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

fn main() -> ExitCode {
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
            tracing::error!(error = %format!("{error:#}"), "telemetron stopped");
            eprintln!("telemetron: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(loaded: &config::LoadedConfig) -> ExitCode {
    if let Err(error) = telemetron::check_config(&loaded.config) {
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
    match toml_text(&loaded.config) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("telemetron: cannot print the configuration: {error}");
            ExitCode::FAILURE
        }
    }
}

fn toml_text(config: &config::Config) -> anyhow::Result<String> {
    toml::to_string(config).context("serialising the configuration as TOML")
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

fn serve(loaded: config::LoadedConfig) -> anyhow::Result<()> {
    let config = loaded.config;
    match &loaded.source {
        ConfigSource::File(path) => tracing::info!(path = %path.display(), overrides = ?loaded.env_overrides, "configuration loaded"),
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
        .context("starting the tokio runtime")?;

    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!(
                "cannot listen on {address} (http.host, http.port); if the port is in use, pick another with http.port or TELEMETRON_HTTP__PORT"
            )
        })?;
        telemetron::run(config, listener, telemetron::shutdown::signal()).await?;
        Ok(())
    })
}
