//! The statistics kept for one source, laid out compactly because there may be millions.

use smallvec::SmallVec;

use crate::ingest::timestamp::Timestamp;

use super::TypeId;

/// Events per type; the first four types are stored inline, without a heap allocation.
type TypeCounts = SmallVec<[(TypeId, u64); 4]>;

/// One source's totals, timestamp range and per-type counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStats {
    total: u64,
    first: Timestamp,
    last: Timestamp,
    types: TypeCounts,
}

impl SourceStats {
    /// Creates the statistics of a source from its first event.
    pub fn new(timestamp: Timestamp, type_id: TypeId) -> Self {
        let mut types = TypeCounts::new();
        types.push((type_id, 1));
        SourceStats {
            total: 1,
            first: timestamp,
            last: timestamp,
            types,
        }
    }

    /// Adds `count` events of one type with the given timestamp.
    pub fn record(&mut self, timestamp: Timestamp, type_id: TypeId, count: u64) {
        self.total += count;
        self.first = self.first.min(timestamp);
        self.last = self.last.max(timestamp);
        match self.types.iter_mut().find(|(id, _)| *id == type_id) {
            Some((_, existing)) => *existing += count,
            None => self.types.push((type_id, count)),
        }
    }

    /// Adds another set of statistics for the same source.
    pub fn merge(&mut self, other: &SourceStats) {
        self.total += other.total;
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        for &(type_id, count) in &other.types {
            match self.types.iter_mut().find(|(id, _)| *id == type_id) {
                Some((_, existing)) => *existing += count,
                None => self.types.push((type_id, count)),
            }
        }
    }

    /// Returns the number of events recorded.
    pub fn total_events(&self) -> u64 {
        self.total
    }

    /// Returns the earliest event timestamp.
    pub fn first_event(&self) -> Timestamp {
        self.first
    }

    /// Returns the latest event timestamp.
    pub fn last_event(&self) -> Timestamp {
        self.last
    }

    /// Returns the count per type id, in first-seen order.
    pub fn type_counts(&self) -> impl Iterator<Item = (TypeId, u64)> + '_ {
        self.types.iter().copied()
    }
}
