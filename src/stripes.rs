//! Per-thread stripe choice for counters that many threads write.
//!
//! Counters written on every request are split into [`COUNT`] cache-line-padded stripes
//! (see [`crate::metrics::striped`] and the queue's in-flight count). Each thread takes the
//! next stripe on its first call, so the runtime threads, started together, get different
//! stripes and their writes do not move a cache line between cores.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Number of stripes, a power of two, and more than the runtime threads of the machines this
/// is sized for. Two threads that share a stripe stay correct and only share a cache line.
pub const COUNT: usize = 16;

static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Returns the calling thread's stripe, below [`COUNT`].
pub fn index() -> usize {
    INDEX
        .try_with(|slot| {
            let mut index = slot.get();
            if index == usize::MAX {
                index = NEXT.fetch_add(1, Ordering::Relaxed) % COUNT;
                slot.set(index);
            }
            index
        })
        // A thread being torn down has lost its slot; stripe 0 is as correct as any.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_stays_fixed_per_thread() {
        let first = index();
        assert_eq!(index(), first);
        assert!(first < COUNT);
    }

    #[test]
    fn index_is_below_count_on_new_threads() {
        let indexes: Vec<usize> = (0..COUNT + 1)
            .map(|_| std::thread::spawn(index).join().expect("the thread returns its stripe"))
            .collect();
        assert!(indexes.iter().all(|&stripe| stripe < COUNT), "{indexes:?}");
    }
}
