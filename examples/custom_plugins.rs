//! A Telemetron binary with plugins of its own, built outside the crate: a validator that
//! rejects events stamped too far in the future, and a processor that appends a line per
//! batch to a file. Both register with `inventory::submit!`; the library's command line
//! then finds them by name like the built-in plugins.
//!
//! Run: `cargo run --example custom_plugins -- --config my.toml`, with
//! `[validation.plugins.MaxFutureSkew]` (`max_skew_secs = 300`) and
//! `[processing.plugins.BatchLog]` (`path = "batches.log"`) in `my.toml`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use telemetron::ingest::event::Event;
use telemetron::plugins::{
    PluginContext, PluginParams, Processor, ProcessorError, ProcessorRegistration, Validator,
    ValidatorRegistration,
};

/// Rejects events whose timestamp is more than `max_skew_secs` ahead of this host's clock.
struct MaxFutureSkew {
    max_skew_secs: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkewParams {
    max_skew_secs: i64,
}

impl Validator for MaxFutureSkew {
    fn validate(&self, event: &Event) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        if event.timestamp.unix_seconds() > now + self.max_skew_secs {
            return Err(format!(
                "timestamp: {} is more than {} s ahead of the server clock",
                event.timestamp, self.max_skew_secs
            ));
        }
        Ok(())
    }
}

fn build_skew(params: &PluginParams, _: &PluginContext) -> Result<Box<dyn Validator>, String> {
    let params: SkewParams = serde_json::from_value(serde_json::Value::Object(params.clone()))
        .map_err(|error| format!("{error}; expected max_skew_secs = <seconds>"))?;
    Ok(Box::new(MaxFutureSkew {
        max_skew_secs: params.max_skew_secs,
    }))
}

/// Appends `events=N first_source=ID` per batch to a file.
struct BatchLog {
    file: Mutex<std::fs::File>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLogParams {
    path: String,
}

impl Processor for BatchLog {
    fn process(&self, batch: &[Event]) -> Result<(), ProcessorError> {
        let first = batch.first().map_or(0, |event| event.source_id);
        let mut file = self.file.lock().map_err(|_| ProcessorError("batch log lock poisoned".into()))?;
        writeln!(file, "events={} first_source={first}", batch.len())
            .map_err(|error| ProcessorError(format!("cannot append to the batch log: {error}")))
    }
}

fn build_batch_log(params: &PluginParams, _: &PluginContext) -> Result<Arc<dyn Processor>, String> {
    let params: BatchLogParams = serde_json::from_value(serde_json::Value::Object(params.clone()))
        .map_err(|error| format!("{error}; expected path = \"<file>\""))?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&params.path)
        .map_err(|error| format!("path: cannot open {}: {error}", params.path))?;
    Ok(Arc::new(BatchLog { file: Mutex::new(file) }))
}

inventory::submit! {
    ValidatorRegistration { name: "MaxFutureSkew", build: build_skew }
}

inventory::submit! {
    ProcessorRegistration { name: "BatchLog", build: build_batch_log }
}

/// The allocator of the `telemetron` binary, which a binary of its own has to choose again.
#[global_allocator]
static ALLOCATOR: telemetron::allocator::Mimalloc = telemetron::allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    telemetron::cli::main()
}
