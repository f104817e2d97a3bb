//! Validator and processor plugins: the traits, their `inventory` registration, and the
//! registry that builds the plugins a configuration enables.
//!
//! A plugin registers itself once with `inventory::submit!` and is enabled by naming it
//! under `[validation.plugins.NAME]` or `[processing.plugins.NAME]`. Names match without
//! regard to case, because environment overrides arrive lowercased. Enabled plugins run in
//! the alphabetical order of their registered names, so the order never depends on how the
//! configuration was written.

pub mod processors;
mod registry;
pub mod validators;

use std::sync::Arc;

use crate::ingest::event::Event;
use crate::stats::StatsStore;

pub use registry::{build_plugins, EnabledPlugins};

/// Parameters of one plugin as written in its configuration table.
pub use crate::config::PluginParams;

/// A check that every event must pass before it is queued.
///
/// Validators run on the HTTP request path, on tokio threads: they must be fast and must
/// never block.
pub trait Validator: Send + Sync + 'static {
    /// Checks one event.
    ///
    /// # Errors
    /// Returns the reason the event is rejected; the client receives it in a 400 response, so
    /// it should name the field and what is allowed.
    fn validate(&self, event: &Event) -> Result<(), String>;
}

/// Work done on each batch of accepted events.
///
/// Processors run on the batch worker threads, one call per batch, and several workers may
/// call the same processor at once. A failed call is retried with the same batch, so a
/// processor must tolerate seeing events again after it returned an error.
pub trait Processor: Send + Sync + 'static {
    /// Processes one batch of at most `processor.batch_size` events.
    ///
    /// # Errors
    /// Returns why the batch failed; the worker retries, then dead-letters the batch.
    fn process(&self, batch: &[Event]) -> Result<(), ProcessorError>;
}

/// A processor failure, kept as text for the log and the dead-letter file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessorError(pub String);

/// What a plugin may use while it is built.
#[derive(Clone)]
pub struct PluginContext {
    /// The statistics served by `/stats`.
    pub stats: Arc<StatsStore>,
}

/// Builds a validator from its parameters, or returns why they are invalid.
pub type BuildValidator = fn(&PluginParams, &PluginContext) -> Result<Box<dyn Validator>, String>;

/// Builds a processor from its parameters, or returns why they are invalid.
pub type BuildProcessor = fn(&PluginParams, &PluginContext) -> Result<Arc<dyn Processor>, String>;

/// A validator that can be enabled by name. Submit one with `inventory::submit!`.
pub struct ValidatorRegistration {
    /// Name used in `[validation.plugins.NAME]`.
    pub name: &'static str,
    /// Builds the validator from its parameters.
    pub build: BuildValidator,
}

/// A processor that can be enabled by name. Submit one with `inventory::submit!`.
pub struct ProcessorRegistration {
    /// Name used in `[processing.plugins.NAME]`.
    pub name: &'static str,
    /// Builds the processor from its parameters.
    pub build: BuildProcessor,
}

inventory::collect!(ValidatorRegistration);
inventory::collect!(ProcessorRegistration);
