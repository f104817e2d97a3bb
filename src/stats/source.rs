//! The statistics kept for one source, laid out compactly because there may be millions.
//!
//! A source with up to 4 event types takes 56 bytes and no heap allocation: two 12-byte
//! timestamps and the type counts inline, with 16-bit type ids and 32-bit counts. A source
//! outside those bounds moves its counts to the heap at full width, so counts stay exact and
//! the number of types per source is unbounded. The total is the sum of the counts, not a
//! stored field.

use crate::ingest::timestamp::Timestamp;

use super::TypeId;

/// Types a source stores without a heap allocation.
const INLINE_TYPES: usize = 4;

/// Marks an unused inline slot. It is not a valid inline id, so type id `u16::MAX` spills.
///
/// NOTE: once the interner contains more than 65,535 type names, a source with any of the later
/// types keeps its counts on the heap, which adds at least 128 bytes to that source.
const NO_TYPE: u16 = u16::MAX;

/// Entries reserved when the counts move to the heap, so a source with 5 to 8 types needs
/// one allocation.
const SPILL_CAPACITY: usize = 8;

/// One source's timestamp range and per-type counts.
#[derive(Clone, Debug)]
pub struct SourceStats {
    first: PackedTimestamp,
    last: PackedTimestamp,
    types: TypeCounts,
}

/// A [`Timestamp`] in 12 bytes with 4-byte alignment, where `Timestamp` takes 16 because
/// its `i64` needs 8-byte alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PackedTimestamp {
    /// [`Timestamp::unix_seconds`] as little-endian bytes, which need no alignment and which
    /// the compiler reads back with a single load.
    secs: [u8; 8],
    /// [`Timestamp::subsec_nanos`], so up to `1_999_999_999` during a leap second.
    nanos: u32,
}

/// Events per type, in first-seen order.
#[derive(Clone, Debug)]
enum TypeCounts {
    /// Up to [`INLINE_TYPES`] types with ids below `u16::MAX` and counts up to `u32::MAX`.
    /// Used slots come first, and the first [`NO_TYPE`] id ends them.
    Inline {
        ids: [u16; INLINE_TYPES],
        counts: [u32; INLINE_TYPES],
    },
    /// Every other case. Counts never move back inline, because they only grow.
    Spilled(Vec<(TypeId, u64)>),
}

impl SourceStats {
    /// Creates the statistics of a source from its first event.
    pub fn new(timestamp: Timestamp, type_id: TypeId) -> Self {
        let packed = PackedTimestamp::from(timestamp);
        let types = match u16::try_from(type_id) {
            Ok(id) if id != NO_TYPE => TypeCounts::Inline {
                ids: [id, NO_TYPE, NO_TYPE, NO_TYPE],
                counts: [1, 0, 0, 0],
            },
            _ => TypeCounts::Spilled(vec![(type_id, 1)]),
        };
        SourceStats {
            first: packed,
            last: packed,
            types,
        }
    }

    /// Adds `count` events of one type with the given timestamp.
    pub fn record(&mut self, timestamp: Timestamp, type_id: TypeId, count: u64) {
        let packed = PackedTimestamp::from(timestamp);
        self.first = self.first.min(packed);
        self.last = self.last.max(packed);
        self.types.add(type_id, count);
    }

    /// Adds another set of statistics for the same source.
    pub fn merge(&mut self, other: &SourceStats) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        match &other.types {
            TypeCounts::Inline { ids, counts } => {
                for (&id, &count) in ids.iter().zip(counts).take_while(|(id, _)| **id != NO_TYPE) {
                    self.types.add(TypeId::from(id), u64::from(count));
                }
            }
            TypeCounts::Spilled(entries) => {
                for &(type_id, count) in entries {
                    self.types.add(type_id, count);
                }
            }
        }
    }

    /// Returns the number of events recorded.
    ///
    /// The total is the sum of the per-type counts rather than a field, which saves 8 bytes
    /// per map slot and costs one pass over at most 4 counts for most sources.
    pub fn total_events(&self) -> u64 {
        self.type_counts().map(|(_, count)| count).sum()
    }

    /// Returns the earliest event timestamp.
    pub fn first_event(&self) -> Timestamp {
        self.first.unpack()
    }

    /// Returns the latest event timestamp.
    pub fn last_event(&self) -> Timestamp {
        self.last.unpack()
    }

    /// Returns the count per type id, in first-seen order.
    pub fn type_counts(&self) -> impl Iterator<Item = (TypeId, u64)> + '_ {
        let (inline, spilled) = match &self.types {
            TypeCounts::Inline { ids, counts } => {
                let used = ids
                    .iter()
                    .zip(counts)
                    .take_while(|(id, _)| **id != NO_TYPE)
                    .map(|(&id, &count)| (TypeId::from(id), u64::from(count)));
                (Some(used), None)
            }
            TypeCounts::Spilled(entries) => (None, Some(entries.iter().copied())),
        };
        inline
            .into_iter()
            .flatten()
            .chain(spilled.into_iter().flatten())
    }
}

/// Equal when the timestamps and the counts in first-seen order are equal, whether the
/// counts are inline or on the heap.
impl PartialEq for SourceStats {
    fn eq(&self, other: &SourceStats) -> bool {
        self.first == other.first
            && self.last == other.last
            && self.type_counts().eq(other.type_counts())
    }
}

impl Eq for SourceStats {}

impl From<Timestamp> for PackedTimestamp {
    fn from(timestamp: Timestamp) -> Self {
        PackedTimestamp {
            secs: timestamp.unix_seconds().to_le_bytes(),
            nanos: timestamp.subsec_nanos(),
        }
    }
}

impl PackedTimestamp {
    fn secs(self) -> i64 {
        i64::from_le_bytes(self.secs)
    }

    fn unpack(self) -> Timestamp {
        Timestamp::from_parts(self.secs(), self.nanos)
            .expect("a PackedTimestamp is built only from a valid Timestamp")
    }
}

/// Orders like `Timestamp`: by seconds, then by nanoseconds, so a leap second sorts after
/// the second it extends. A derived ordering would compare the little-endian bytes, which is
/// not the order of the signed seconds. Comparing the rebuilt `i64` is also faster than
/// comparing the seconds as two 32-bit halves, which made `StatsStore::record_batch` about
/// 20% slower in `benches/stats.rs` on a 2-core VM.
impl Ord for PackedTimestamp {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.secs(), self.nanos).cmp(&(other.secs(), other.nanos))
    }
}

impl PartialOrd for PackedTimestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl TypeCounts {
    fn add(&mut self, type_id: TypeId, count: u64) {
        match self {
            TypeCounts::Inline { ids, counts } => {
                if add_inline(ids, counts, type_id, count) {
                    return;
                }

                let mut entries = Vec::with_capacity(SPILL_CAPACITY);
                entries.extend(
                    ids.iter()
                        .zip(counts.iter())
                        .take_while(|(id, _)| **id != NO_TYPE)
                        .map(|(&id, &count)| (TypeId::from(id), u64::from(count))),
                );
                add_spilled(&mut entries, type_id, count);
                *self = TypeCounts::Spilled(entries);
            }
            TypeCounts::Spilled(entries) => add_spilled(entries, type_id, count),
        }
    }
}

/// Adds `count` to the inline slot of `type_id`, or returns false if the result does not fit
/// inline: the id is too large, the count would pass `u32::MAX`, or all slots are taken.
fn add_inline(
    ids: &mut [u16; INLINE_TYPES],
    counts: &mut [u32; INLINE_TYPES],
    type_id: TypeId,
    count: u64,
) -> bool {
    let (Ok(short_id), Ok(count)) = (u16::try_from(type_id), u32::try_from(count)) else {
        return false;
    };
    if short_id == NO_TYPE {
        return false;
    }

    for (id, slot_count) in ids.iter_mut().zip(counts.iter_mut()) {
        if *id == short_id {
            return match slot_count.checked_add(count) {
                Some(sum) => {
                    *slot_count = sum;
                    true
                }
                None => false,
            };
        }
        if *id == NO_TYPE {
            *id = short_id;
            *slot_count = count;
            return true;
        }
    }
    false
}

fn add_spilled(entries: &mut Vec<(TypeId, u64)>, type_id: TypeId, count: u64) {
    match entries.iter_mut().find(|(id, _)| *id == type_id) {
        Some((_, existing)) => *existing += count,
        None => entries.push((type_id, count)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timestamp(secs: i64, nanos: u32) -> Timestamp {
        Timestamp::from_parts(secs, nanos).expect("test timestamp is valid")
    }

    fn counts(stats: &SourceStats) -> Vec<(TypeId, u64)> {
        stats.type_counts().collect()
    }

    fn is_inline(stats: &SourceStats) -> bool {
        matches!(stats.types, TypeCounts::Inline { .. })
    }

    /// Ordered pairs of (secs, nanos), each a valid `Timestamp`, across the sign change, the
    /// 32-bit boundaries of the seconds, leap seconds and the ends of the `i64` range.
    const ORDERED_PARTS: [(i64, u32); 16] = [
        (i64::MIN, 0),
        (i64::MIN, 999_999_999),
        (-62_167_219_201, 0),
        // -0001-12-31T23:59:60.5, a leap second, then 0000-01-01T00:00:00Z.
        (-62_167_219_201, 1_500_000_000),
        (-62_167_219_200, 0),
        (-(1 << 32) - 1, 0),
        (-(1 << 32), 0),
        (-1, 999_999_999),
        (0, 0),
        (59, 999_999_999),
        (59, 1_000_000_000),
        (59, 1_999_999_999),
        (60, 0),
        ((1 << 32) - 1, 0),
        (1 << 32, 0),
        (i64::MAX, 999_999_999),
    ];

    #[test]
    fn packed_timestamp_round_trips() {
        for (secs, nanos) in ORDERED_PARTS {
            let original = timestamp(secs, nanos);
            assert_eq!(
                PackedTimestamp::from(original).unpack(),
                original,
                "{secs}, {nanos}"
            );
        }
    }

    #[test]
    fn packed_timestamp_orders_like_timestamp() {
        for (i, &(secs_a, nanos_a)) in ORDERED_PARTS.iter().enumerate() {
            for &(secs_b, nanos_b) in &ORDERED_PARTS[i..] {
                let a = timestamp(secs_a, nanos_a);
                let b = timestamp(secs_b, nanos_b);
                assert!(
                    a <= b,
                    "table order: ({secs_a}, {nanos_a}) <= ({secs_b}, {nanos_b})"
                );
                assert_eq!(
                    PackedTimestamp::from(a).cmp(&PackedTimestamp::from(b)),
                    a.cmp(&b),
                    "({secs_a}, {nanos_a}) against ({secs_b}, {nanos_b})"
                );
            }
        }
    }

    #[test]
    fn leap_second_bounds_are_exact() {
        let before = Timestamp::parse_rfc3339("2016-12-31T23:59:59.999999999Z").unwrap();
        let leap = Timestamp::parse_rfc3339("2016-12-31T23:59:60.25Z").unwrap();
        let after = Timestamp::parse_rfc3339("2017-01-01T00:00:00Z").unwrap();

        let mut stats = SourceStats::new(leap, 0);
        stats.record(after, 0, 1);
        assert_eq!(stats.first_event(), leap);
        stats.record(before, 0, 1);
        assert_eq!(stats.first_event(), before);
        assert_eq!(stats.last_event(), after);

        let mut leap_last = SourceStats::new(before, 0);
        leap_last.record(leap, 0, 1);
        assert_eq!(leap_last.last_event(), leap);
    }

    #[test]
    fn negative_year_bounds_are_exact() {
        let year_minus_one = timestamp(-62_198_755_200, 123_456_789);
        let year_zero = timestamp(-62_167_219_200, 0);
        let mut stats = SourceStats::new(year_zero, 0);
        stats.record(year_minus_one, 0, 1);
        assert_eq!(stats.first_event(), year_minus_one);
        assert_eq!(stats.last_event(), year_zero);
    }

    #[test]
    fn four_types_stay_inline() {
        let mut stats = SourceStats::new(timestamp(0, 0), 0);
        for type_id in [1, 2, 3, 0, 3] {
            stats.record(timestamp(1, 0), type_id, 1);
        }
        assert!(is_inline(&stats));
        assert_eq!(counts(&stats), vec![(0, 2), (1, 1), (2, 1), (3, 2)]);
        assert_eq!(stats.total_events(), 6);
    }

    #[test]
    fn fifth_type_spills_in_first_seen_order() {
        let mut stats = SourceStats::new(timestamp(0, 0), 7);
        for type_id in [3, 0, 9, 7, 4, 12, 3] {
            stats.record(timestamp(0, 0), type_id, 1);
        }
        assert!(!is_inline(&stats));
        assert_eq!(
            counts(&stats),
            vec![(7, 2), (3, 2), (0, 1), (9, 1), (4, 1), (12, 1)]
        );
        assert_eq!(stats.total_events(), 8);
    }

    #[test]
    fn many_types_are_counted() {
        let mut stats = SourceStats::new(timestamp(0, 0), 0);
        for type_id in 1..100 {
            stats.record(timestamp(0, 0), type_id, u64::from(type_id));
        }
        let expected: Vec<(TypeId, u64)> = std::iter::once((0, 1))
            .chain((1..100).map(|id| (id, u64::from(id))))
            .collect();
        assert_eq!(counts(&stats), expected);
        assert_eq!(stats.total_events(), 1 + 99 * 100 / 2);
    }

    #[test]
    fn large_type_ids_spill() {
        for type_id in [u32::from(u16::MAX), u32::from(u16::MAX) + 1, u32::MAX] {
            let mut stats = SourceStats::new(timestamp(0, 0), type_id);
            assert!(!is_inline(&stats), "type id {type_id}");
            stats.record(timestamp(0, 0), 1, 2);
            assert_eq!(counts(&stats), vec![(type_id, 1), (1, 2)]);
        }

        let mut stats = SourceStats::new(timestamp(0, 0), u32::from(u16::MAX) - 1);
        assert!(is_inline(&stats));
        assert_eq!(counts(&stats), vec![(u32::from(u16::MAX) - 1, 1)]);
        stats.record(timestamp(0, 0), u32::MAX, 1);
        assert_eq!(
            counts(&stats),
            vec![(u32::from(u16::MAX) - 1, 1), (u32::MAX, 1)]
        );
    }

    #[test]
    fn counts_past_u32_max_are_exact() {
        let mut stats = SourceStats::new(timestamp(0, 0), 1);
        stats.record(timestamp(0, 0), 2, 5);
        stats.record(timestamp(0, 0), 1, u64::from(u32::MAX) - 1);
        assert!(is_inline(&stats), "u32::MAX still fits inline");
        assert_eq!(counts(&stats), vec![(1, u64::from(u32::MAX)), (2, 5)]);

        stats.record(timestamp(0, 0), 1, 1);
        assert!(!is_inline(&stats));
        assert_eq!(counts(&stats), vec![(1, u64::from(u32::MAX) + 1), (2, 5)]);

        stats.record(timestamp(0, 0), 3, 1 << 40);
        assert_eq!(
            stats.total_events(),
            u64::from(u32::MAX) + 1 + 5 + (1 << 40)
        );
    }

    #[test]
    fn merge_adds_counts_and_widens_range() {
        let mut left = SourceStats::new(timestamp(10, 5), 0);
        left.record(timestamp(12, 0), 1, 3);
        let mut right = SourceStats::new(timestamp(11, 0), 2);
        right.record(timestamp(9, 999_999_999), 1, u64::from(u32::MAX));

        left.merge(&right);
        assert_eq!(
            counts(&left),
            vec![(0, 1), (1, 3 + u64::from(u32::MAX)), (2, 1)]
        );
        assert_eq!(left.total_events(), 5 + u64::from(u32::MAX));
        assert_eq!(left.first_event(), timestamp(9, 999_999_999));
        assert_eq!(left.last_event(), timestamp(12, 0));
    }

    #[test]
    fn merge_of_spilled_into_inline() {
        let mut spilled = SourceStats::new(timestamp(0, 0), 0);
        for type_id in 1..6 {
            spilled.record(timestamp(0, 0), type_id, 1);
        }
        let mut inline = SourceStats::new(timestamp(0, 0), 5);
        inline.merge(&spilled);
        assert_eq!(
            counts(&inline),
            vec![(5, 2), (0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]
        );
    }

    #[test]
    fn equality_ignores_where_counts_live() {
        let inline = SourceStats::new(timestamp(0, 0), 1);
        let spilled = SourceStats {
            types: TypeCounts::Spilled(vec![(1, 1)]),
            ..inline.clone()
        };
        assert_eq!(inline, spilled);
        assert_ne!(inline, SourceStats::new(timestamp(0, 0), 2));
        assert_ne!(inline, SourceStats::new(timestamp(0, 1), 1));
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn source_stats_fit_in_56_bytes() {
        assert_eq!(std::mem::size_of::<SourceStats>(), 56);
        assert_eq!(std::mem::size_of::<(u64, SourceStats)>(), 64);
    }
}
