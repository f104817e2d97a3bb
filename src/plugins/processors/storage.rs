//! `StorageProcessor`: adds each batch to the statistics that `/stats` serves.

use std::sync::Arc;

use crate::ingest::event::Event;
use crate::plugins::{PluginContext, PluginParams, Processor, ProcessorError, ProcessorRegistration};
use crate::stats::StatsStore;

/// Aggregates events into the shared [`StatsStore`]. It has no parameters and never fails.
pub struct StorageProcessor {
    stats: Arc<StatsStore>,
}

impl StorageProcessor {
    /// Creates the processor writing into `stats`.
    pub fn new(stats: Arc<StatsStore>) -> Self {
        StorageProcessor { stats }
    }

    fn build(params: &PluginParams, context: &PluginContext) -> Result<Arc<dyn Processor>, String> {
        if let Some(key) = params.keys().next() {
            return Err(format!("unknown parameter `{key}`; StorageProcessor takes none"));
        }
        Ok(Arc::new(StorageProcessor::new(context.stats.clone())))
    }
}

impl Processor for StorageProcessor {
    fn process(&self, batch: &[Event]) -> Result<(), ProcessorError> {
        self.stats.record_batch(batch);
        Ok(())
    }
}

inventory::submit! {
    ProcessorRegistration { name: "StorageProcessor", build: StorageProcessor::build }
}
