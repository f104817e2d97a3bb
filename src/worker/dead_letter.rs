//! The dead-letter file: an append-only NDJSON file receiving every event whose batch
//! failed a processor after all retries, one line per event with the failures.
//!
//! Line format:
//! `{"dead_lettered_at":"...Z","shard":0,"failures":[{"plugin":"P","error":"...","attempts":4}],"event":{"sourceId":1,"type":"T","timestamp":"...Z","data":...}}`.
//! `data` is written as the raw JSON the client sent and is absent when the event had none.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::ingest::event::Event;
use crate::ingest::timestamp::Timestamp;

/// One processor's final failure on a batch.
#[derive(Clone, Debug)]
pub struct Failure {
    /// The processor's registered name.
    pub plugin: &'static str,
    /// Its last error.
    pub error: String,
    /// Calls made, the first one included.
    pub attempts: u32,
}

/// Errors opening the dead-letter file.
#[derive(Debug, thiserror::Error)]
#[error("cannot open dead-letter file {}: {source}; set processor.dead_letter_path to a writable file", .path.display())]
pub struct DeadLetterError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The shared dead-letter file.
pub struct DeadLetterQueue {
    path: PathBuf,
    file: Mutex<BufWriter<File>>,
}

impl DeadLetterQueue {
    /// Opens (creating if needed) the file for appending, so a bad path fails at start-up
    /// rather than when the first batch fails.
    ///
    /// # Errors
    /// Returns [`DeadLetterError`] when the file cannot be opened for appending.
    pub fn open(path: &Path) -> Result<DeadLetterQueue, DeadLetterError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DeadLetterError {
                path: path.to_owned(),
                source,
            })?;
        Ok(DeadLetterQueue {
            path: path.to_owned(),
            file: Mutex::new(BufWriter::new(file)),
        })
    }

    /// Returns the file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends every event of `batch` with its failures and flushes, then logs the batch
    /// under the `dlq_log` target.
    pub fn write(&self, shard: usize, batch: &[Event], failures: &[Failure]) {
        let now = now();
        let failures_json = failures_json(failures);
        let mut lines = String::with_capacity(batch.len() * 160);
        for event in batch {
            lines.push_str("{\"dead_lettered_at\":\"");
            now.write_rfc3339(&mut lines);
            lines.push_str("\",\"shard\":");
            lines.push_str(&shard.to_string());
            lines.push_str(",\"failures\":");
            lines.push_str(&failures_json);
            lines.push_str(",\"event\":");
            write_event_json(event, &mut lines);
            lines.push_str("}\n");
        }

        let result = {
            let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(lines.as_bytes()).and_then(|()| file.flush())
        };

        for failure in failures {
            tracing::error!(
                target: "dlq_log",
                shard,
                plugin = failure.plugin,
                attempts = failure.attempts,
                events = batch.len(),
                first_source_id = batch.first().map(|e| e.source_id),
                path = %self.path.display(),
                error = %failure.error,
                "batch dead-lettered after retries ran out"
            );
        }
        if let Err(error) = result {
            tracing::error!(
                target: "dlq_log",
                shard,
                events = batch.len(),
                path = %self.path.display(),
                error = %error,
                "writing the dead-letter file failed, so these events are lost; check disk space and permissions"
            );
        }
    }
}

/// Appends the event as a JSON object in the ingest format.
pub fn write_event_json(event: &Event, out: &mut String) {
    out.push_str("{\"sourceId\":");
    out.push_str(&event.source_id.to_string());
    out.push_str(",\"type\":");
    out.push_str(&serde_json::Value::from(event.event_type.as_str()).to_string());
    out.push_str(",\"timestamp\":\"");
    event.timestamp.write_rfc3339(out);
    out.push('"');
    if let Some(data) = &event.data {
        out.push_str(",\"data\":");
        // The parser checked that `data` is valid JSON, which is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(data));
    }
    out.push('}');
}

fn failures_json(failures: &[Failure]) -> String {
    let list: Vec<serde_json::Value> = failures
        .iter()
        .map(|failure| {
            serde_json::json!({
                "plugin": failure.plugin,
                "error": failure.error,
                "attempts": failure.attempts,
            })
        })
        .collect();
    serde_json::Value::Array(list).to_string()
}

fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_parts(since_epoch.as_secs() as i64, since_epoch.subsec_nanos()).unwrap_or_else(|| {
        Timestamp::from_parts(0, 0).expect("the epoch is a valid timestamp")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::EventType;

    #[test]
    fn writes_one_json_line_per_event() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dlq.ndjson");
        let queue = DeadLetterQueue::open(&path).expect("open");
        let event = Event {
            source_id: 42,
            event_type: EventType::from_name("Crash \"quoted\""),
            timestamp: Timestamp::parse_rfc3339("2024-05-01T10:00:00.5Z").expect("valid"),
            data: Some(bytes::Bytes::from_static(br#"{"k": [1, 2]}"#)),
        };
        let failures = [Failure {
            plugin: "Flaky",
            error: "disk \"full\"".to_owned(),
            attempts: 4,
        }];
        queue.write(3, &[event.clone(), event], &failures);

        let text = std::fs::read_to_string(&path).expect("read back");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let line: serde_json::Value = serde_json::from_str(lines[0]).expect("each line is JSON");
        assert_eq!(line["shard"], 3);
        assert_eq!(line["failures"][0]["plugin"], "Flaky");
        assert_eq!(line["failures"][0]["error"], "disk \"full\"");
        assert_eq!(line["failures"][0]["attempts"], 4);
        assert_eq!(line["event"]["sourceId"], 42);
        assert_eq!(line["event"]["type"], "Crash \"quoted\"");
        assert_eq!(line["event"]["timestamp"], "2024-05-01T10:00:00.5Z");
        assert_eq!(line["event"]["data"]["k"][1], 2);
    }

    #[test]
    fn open_fails_for_missing_directory() {
        let error = DeadLetterQueue::open(Path::new("/nonexistent-dir/dlq.ndjson"))
            .err()
            .expect("a missing directory cannot be opened");
        assert!(error.to_string().contains("processor.dead_letter_path"));
    }
}
