//! Built-in processors, one per file.

mod storage;

pub use storage::StorageProcessor;
