//! Typed configuration: the structs every other module reads, their defaults, and the checks
//! that turn a merged `config.toml` plus `TELEMETRON_` environment overrides into a [`Config`].
//!
//! Loading lives in [`load`]; the keys, units and defaults are documented on the fields here
//! and in the repository's `config.toml`.

mod load;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use load::{load, ConfigError, ConfigSource, LoadedConfig, ENV_PREFIX};

/// The whole service configuration after defaults and overrides are applied.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener and its request limits.
    pub http: HttpConfig,
    /// Body parsing limits that apply to every event.
    pub ingest: IngestConfig,
    /// Shard queues, batch workers, retries and the dead-letter file.
    pub processor: ProcessorConfig,
    /// Enabled validator plugins.
    pub validation: PluginsConfig,
    /// Enabled processor plugins.
    pub processing: ProcessingConfig,
    /// Log output.
    pub log: LogConfig,
}

/// `[http]`: where the service listens and what one request may carry.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind. Default `127.0.0.1`.
    pub host: String,
    /// TCP port; 0 picks a free port. Default 8080.
    pub port: u16,
    /// Largest request body accepted, in bytes, before decompression. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Largest number of events in one request. Default 10,000.
    pub max_batch_events: usize,
    /// Largest body after decompression, in bytes. Default 16 MiB.
    pub max_decompressed_bytes: usize,
    /// Time a client has to send its request headers, in milliseconds; also the longest
    /// an idle keep-alive connection stays open. Default 10,000.
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request body once its headers arrived, in milliseconds.
    /// Default 30,000.
    pub body_read_timeout_ms: u64,
    /// Largest number of open client connections; further connections wait in the
    /// listen backlog. Default 10,000.
    pub max_connections: usize,
    /// Value of `Retry-After`, in seconds, on 503 responses. Default 1.
    pub retry_after_secs: u32,
    /// Time between `/readyz` turning 503 and the listener closing on shutdown, in
    /// milliseconds, so load balancers stop sending first. Default 0.
    pub drain_delay_ms: u64,
    /// Maximum wait for in-flight requests on shutdown, in milliseconds. Default 30,000.
    pub shutdown_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            max_body_bytes: 1024 * 1024,
            max_batch_events: 10_000,
            max_decompressed_bytes: 16 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 10_000,
            retry_after_secs: 1,
            drain_delay_ms: 0,
            shutdown_timeout_ms: 30_000,
        }
    }
}

impl HttpConfig {
    /// Returns the socket address built from `host` and `port`.
    ///
    /// # Errors
    /// Returns [`ConfigError::Invalid`] when `host` is not an IP address.
    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        let ip: IpAddr = self.host.parse().map_err(|_| ConfigError::Invalid {
            key: "http.host",
            message: format!(
                "`{}` is not an IP address; use one such as 127.0.0.1 or ::1",
                self.host
            ),
        })?;
        Ok(SocketAddr::new(ip, self.port))
    }
}

/// `[ingest]`: limits on one event's content.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Deepest nesting allowed inside an event's `data` (a scalar is 0, `{}` is 1). Default 32.
    pub max_data_depth: usize,
    /// Largest raw `data` value of one event, in bytes. Default 65,536.
    pub max_data_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_data_depth: 32,
            max_data_bytes: 64 * 1024,
        }
    }
}

/// `[processor]`: shard queues and batch workers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Capacity of each shard queue, in events. When every shard is full, `/ingest`
    /// returns 503. Default 10,000.
    pub channel_capacity: usize,
    /// Maximum events a worker passes to the processors in one call. Default 100.
    pub batch_size: usize,
    /// Maximum wait to fill a batch, in milliseconds. Default 100.
    pub batch_timeout: u64,
    /// Retries of a failed processor before the batch is dead-lettered. Default 3.
    pub retry_attempts: u32,
    /// Pause between retries, in milliseconds. Default 100.
    pub retry_delay: u64,
    /// Number of batch workers, one shard queue each; 0 means one per available core.
    /// Default 0.
    pub workers: usize,
    /// Pin each worker thread to a core. Default true.
    pub pin_workers: bool,
    /// Nice value of the worker threads, -20 to 19; 0 leaves them at the process's own.
    /// Default -5. A negative value needs CAP_SYS_NICE or a matching RLIMIT_NICE; without
    /// it the workers log a warning and run at the process's priority.
    pub worker_nice: i32,
    /// NDJSON file that receives events whose processing failed after all retries.
    /// Default `telemetron-dead-letter.ndjson` in the working directory.
    pub dead_letter_path: String,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            channel_capacity: 10_000,
            batch_size: 100,
            batch_timeout: 100,
            retry_attempts: 3,
            retry_delay: 100,
            workers: 0,
            pin_workers: true,
            worker_nice: -5,
            dead_letter_path: "telemetron-dead-letter.ndjson".to_owned(),
        }
    }
}

impl ProcessorConfig {
    /// Returns the batch timeout as a [`Duration`].
    pub fn batch_timeout(&self) -> Duration {
        Duration::from_millis(self.batch_timeout)
    }

    /// Returns the retry delay as a [`Duration`].
    pub fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.retry_delay)
    }

    /// Returns the number of workers to start, resolving 0 to the available cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Parameters of one plugin, as written under its `[...plugins.NAME]` table.
pub type PluginParams = serde_json::Map<String, serde_json::Value>;

/// `[validation]`: validators by name. A table present under `plugins` enables it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Plugin name to its parameters.
    pub plugins: BTreeMap<String, PluginParams>,
}

/// `[processing]`: processors by name. Without this section `StorageProcessor` alone runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessingConfig {
    /// Plugin name to its parameters.
    pub plugins: BTreeMap<String, PluginParams>,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        let mut plugins = BTreeMap::new();
        plugins.insert("StorageProcessor".to_owned(), PluginParams::new());
        ProcessingConfig { plugins }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: log output. The level comes from `RUST_LOG` (default `info`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

impl Config {
    /// Checks the values that types alone cannot: non-zero sizes and a parseable host.
    ///
    /// # Errors
    /// Returns [`ConfigError::Invalid`] naming the first key whose value is out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.socket_addr()?;

        let positive: [(&'static str, u64); 9] = [
            ("http.max_body_bytes", self.http.max_body_bytes as u64),
            ("http.max_batch_events", self.http.max_batch_events as u64),
            ("http.max_decompressed_bytes", self.http.max_decompressed_bytes as u64),
            ("http.header_read_timeout_ms", self.http.header_read_timeout_ms),
            ("http.body_read_timeout_ms", self.http.body_read_timeout_ms),
            ("http.max_connections", self.http.max_connections as u64),
            ("ingest.max_data_bytes", self.ingest.max_data_bytes as u64),
            ("processor.channel_capacity", self.processor.channel_capacity as u64),
            ("processor.batch_size", self.processor.batch_size as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    message: "must be greater than 0".to_owned(),
                });
            }
        }

        if self.processor.workers > 1024 {
            return Err(ConfigError::Invalid {
                key: "processor.workers",
                message: format!(
                    "{} workers is more than the 1024 allowed; use 0 for one per core",
                    self.processor.workers
                ),
            });
        }
        if !(-20..=19).contains(&self.processor.worker_nice) {
            return Err(ConfigError::Invalid {
                key: "processor.worker_nice",
                message: format!(
                    "{} is outside the nice range; use a value from -20 to 19, or 0 to leave the workers alone",
                    self.processor.worker_nice
                ),
            });
        }
        if self.processor.dead_letter_path.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "processor.dead_letter_path",
                message: "must name a file".to_owned(),
            });
        }
        Ok(())
    }
}
