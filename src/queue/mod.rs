//! Bounded shard queues between the HTTP handlers and the batch workers.
//!
//! Each batch worker owns one shard. A handler reserves room for its events on a shard with
//! an atomic counter and then sends them as one [`Chunk`], so a push never waits: when no
//! shard has room the caller gets [`PushError::Full`] at once and returns 503. Events are
//! spread over shards by the pushing thread, not by source, so one busy source still uses
//! every worker. A thread stays on one shard for [`EVENTS_PER_SHARD_RUN`] events before
//! moving on, which keeps that shard's counters in its core's cache for a while.
//!
//! Closing is exact: after [`ShardQueues::close`] returns, no push is in flight and none
//! will succeed, so the workers can drain what is queued and know nothing more will come.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_utils::CachePadded;

use crate::ingest::event::Event;
use crate::stripes;

/// Events a thread pushes to one shard before it moves to the next. A 1,000-event batch
/// moves on after every push; single events stay for 64 pushes.
pub const EVENTS_PER_SHARD_RUN: usize = 64;

/// Events queued by one push: a single event, which needs no `Vec` of its own, or several in
/// their original order.
#[derive(Debug)]
pub enum Chunk {
    /// One event.
    One(Event),
    /// Several events.
    Many(Vec<Event>),
}

impl Chunk {
    /// Returns the number of events.
    pub fn len(&self) -> usize {
        match self {
            Chunk::One(_) => 1,
            Chunk::Many(events) => events.len(),
        }
    }

    /// Returns true if the chunk contains no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the events.
    pub fn events(&self) -> &[Event] {
        match self {
            Chunk::One(event) => std::slice::from_ref(event),
            Chunk::Many(events) => events,
        }
    }

    /// Moves the events to the end of `batch`.
    pub fn move_into(self, batch: &mut Vec<Event>) {
        match self {
            Chunk::One(event) => batch.push(event),
            // An empty batch takes the chunk's buffer rather than copying its events: the
            // worker's copying of 1,000-event chunks was 12% of its samples in the pipeline
            // bench. Only a buffer at least as large is taken, so the batch never has to grow
            // again.
            Chunk::Many(mut events) if batch.is_empty() && events.capacity() >= batch.capacity() => {
                std::mem::swap(batch, &mut events);
            }
            Chunk::Many(mut events) => batch.append(&mut events),
        }
    }
}

/// Reason a push did not queue every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Every shard is at capacity.
    #[error("all shard queues are full")]
    Full,
    /// The service is shutting down and takes no new events.
    #[error("the service is draining and accepts no new events")]
    Closed,
}

/// The worker's end of one shard.
pub struct ShardReceiver {
    /// Index of the shard, also the worker's index.
    pub shard: usize,
    receiver: Receiver<Chunk>,
}

struct Shard {
    sender: Sender<Chunk>,
    /// Events reserved or queued and not yet taken by the worker.
    depth: AtomicUsize,
    /// Events ever queued on this shard. Next to `depth`, which every push writes anyway,
    /// so counting costs no extra cache line.
    accepted: AtomicU64,
}

/// All shard queues plus the counters that make closing exact.
pub struct ShardQueues {
    shards: Vec<CachePadded<Shard>>,
    capacity: usize,
    closed: AtomicBool,
    /// Set once `close` has seen the last in-flight push finish.
    sealed: AtomicBool,
    /// Pushes in progress, one counter per [`stripes`] stripe; `close` waits for all to be 0.
    in_flight_pushes: Box<[CachePadded<AtomicUsize>]>,
}

/// The shard a thread pushes to and how many events it has pushed there in this run.
#[derive(Clone, Copy)]
struct ShardRun {
    cursor: usize,
    events: usize,
}

thread_local! {
    static SHARD_RUN: Cell<Option<ShardRun>> = const { Cell::new(None) };
}

impl ShardQueues {
    /// Creates `shards` queues of `capacity` events each and returns the workers' ends.
    ///
    /// # Panics
    /// Panics if `shards` or `capacity` is 0; the configuration check rules both out.
    pub fn new(shards: usize, capacity: usize) -> (ShardQueues, Vec<ShardReceiver>) {
        assert!(shards > 0, "the shard count is validated as non-zero");
        assert!(capacity > 0, "the shard capacity is validated as non-zero");
        let mut senders = Vec::with_capacity(shards);
        let mut receivers = Vec::with_capacity(shards);
        for shard in 0..shards {
            // A chunk holds at least one event and every event is reserved first, so
            // `capacity` chunks always fit and `try_send` cannot see a full channel.
            let (sender, receiver) = crossbeam_channel::bounded(capacity);
            senders.push(CachePadded::new(Shard {
                sender,
                depth: AtomicUsize::new(0),
                accepted: AtomicU64::new(0),
            }));
            receivers.push(ShardReceiver { shard, receiver });
        }
        let queues = ShardQueues {
            shards: senders,
            capacity,
            closed: AtomicBool::new(false),
            sealed: AtomicBool::new(false),
            in_flight_pushes: (0..stripes::COUNT).map(|_| CachePadded::new(AtomicUsize::new(0))).collect(),
        };
        (queues, receivers)
    }

    /// Queues `events` on one shard without waiting. Returns `Ok` only if all were queued.
    ///
    /// # Errors
    /// [`PushError::Full`] when no shard has room for all of them, [`PushError::Closed`]
    /// after [`ShardQueues::close`]. Nothing is queued in either case, and the events come
    /// back with the error so the caller can retry without copying them.
    pub fn try_push(&self, events: Vec<Event>) -> Result<(), (PushError, Vec<Event>)> {
        if events.is_empty() {
            return Ok(());
        }
        self.push_whole(Chunk::Many(events)).map_err(|(error, chunk)| match chunk {
            Chunk::Many(events) => (error, events),
            Chunk::One(event) => (error, vec![event]),
        })
    }

    /// Queues one event without waiting, like [`ShardQueues::try_push`] without the `Vec`.
    ///
    /// # Errors
    /// As [`ShardQueues::try_push`]; the event comes back with the error.
    pub fn try_push_one(&self, event: Event) -> Result<(), (PushError, Event)> {
        self.push_whole(Chunk::One(event)).map_err(|(error, chunk)| match chunk {
            Chunk::One(event) => (error, event),
            Chunk::Many(mut events) => (error, events.pop().expect("a pushed chunk keeps its one event")),
        })
    }

    fn push_whole(&self, chunk: Chunk) -> Result<(), (PushError, Chunk)> {
        let count = chunk.len();
        let _guard = match self.enter() {
            Ok(guard) => guard,
            Err(error) => return Err((error, chunk)),
        };

        let first = self.first_shard(count);
        for offset in 0..self.shards.len() {
            let index = (first + offset) % self.shards.len();
            if self.reserve_exactly(index, count) {
                self.send(index, chunk, count);
                return Ok(());
            }
        }
        Err((PushError::Full, chunk))
    }

    /// Queues as many of `events` as fit, in order, filling shards one after another.
    /// Returns how many were queued: always a prefix of `events`.
    ///
    /// # Errors
    /// [`PushError::Closed`] after [`ShardQueues::close`]; nothing is queued then.
    pub fn try_push_prefix(&self, mut events: Vec<Event>) -> Result<usize, PushError> {
        let _guard = self.enter()?;

        let total = events.len();
        let mut queued = 0;
        let first = self.first_shard(total);
        for offset in 0..self.shards.len() {
            if queued == total {
                break;
            }
            let index = (first + offset) % self.shards.len();
            let granted = self.reserve(index, total - queued);
            if granted == 0 {
                continue;
            }
            let rest = events.split_off(granted);
            self.send(index, Chunk::Many(events), granted);
            events = rest;
            queued += granted;
        }
        Ok(queued)
    }

    /// Stops all further pushes and waits until none is in flight.
    ///
    /// After this returns, every event that any push reported as queued is in a shard, and
    /// no more will arrive.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        while self.in_flight_pushes.iter().any(|stripe| stripe.load(Ordering::SeqCst) != 0) {
            std::thread::yield_now();
        }
        self.sealed.store(true, Ordering::SeqCst);
    }

    /// Returns true once [`ShardQueues::close`] has returned: what is queued now is all
    /// that will ever be queued.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::SeqCst)
    }

    /// Returns true once [`ShardQueues::close`] has begun.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Returns the number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Returns the capacity of each shard, in events.
    pub fn capacity_per_shard(&self) -> usize {
        self.capacity
    }

    /// Returns the events waiting in one shard, reservations included.
    pub fn depth(&self, shard: usize) -> usize {
        self.shards[shard].depth.load(Ordering::Relaxed)
    }

    /// Returns the total number of events ever queued.
    pub fn accepted_total(&self) -> u64 {
        self.shards.iter().map(|shard| shard.accepted.load(Ordering::Relaxed)).sum()
    }

    /// Marks `count` events as taken off `shard` by its worker.
    fn release(&self, shard: usize, count: usize) {
        self.shards[shard].depth.fetch_sub(count, Ordering::Relaxed);
    }

    fn enter(&self) -> Result<PushGuard<'_>, PushError> {
        // SeqCst on both sides pairs with `close`: either this push sees `closed`, or
        // `close` finds this push in flight and waits for it. Every stripe takes part in the
        // same single order of SeqCst operations, so striping keeps that guarantee.
        let in_flight = &self.in_flight_pushes[stripes::index()];
        in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = PushGuard { in_flight };
        if self.closed.load(Ordering::SeqCst) {
            return Err(PushError::Closed);
        }
        Ok(guard)
    }

    /// Returns the shard this thread tries first for `count` events, and counts them
    /// towards the thread's run on it.
    fn first_shard(&self, count: usize) -> usize {
        let shards = self.shards.len();
        let step = |run: ShardRun| {
            let events = run.events + count;
            if events >= EVENTS_PER_SHARD_RUN {
                ShardRun { cursor: run.cursor.wrapping_add(1), events: 0 }
            } else {
                ShardRun { cursor: run.cursor, events }
            }
        };
        SHARD_RUN
            .try_with(|slot| {
                // Threads take consecutive stripes, so starting from the stripe puts the
                // runtime threads on different shards.
                let run = slot.get().unwrap_or(ShardRun { cursor: stripes::index(), events: 0 });
                slot.set(Some(step(run)));
                run.cursor % shards
            })
            .unwrap_or(0)
    }

    /// Reserves `count` slots on a shard if it has room for all of them, and returns whether
    /// it did. A shard with room for some of them keeps its free slots for other pushes.
    fn reserve_exactly(&self, index: usize, count: usize) -> bool {
        self.reserve_with(index, |free| if free >= count { count } else { 0 }) == count
    }

    /// Reserves up to `requested` slots on a shard and returns how many were granted.
    fn reserve(&self, index: usize, requested: usize) -> usize {
        self.reserve_with(index, |free| requested.min(free))
    }

    /// Reserves the slots that `grant` picks from the shard's free slots, and returns how many.
    fn reserve_with(&self, index: usize, grant: impl Fn(usize) -> usize) -> usize {
        let depth = &self.shards[index].depth;
        let mut current = depth.load(Ordering::Relaxed);
        loop {
            let granted = grant(self.capacity.saturating_sub(current));
            if granted == 0 {
                return 0;
            }
            match depth.compare_exchange_weak(current, current + granted, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return granted,
                Err(actual) => current = actual,
            }
        }
    }

    fn send(&self, index: usize, chunk: Chunk, count: usize) {
        // The reservation guarantees room (see `new`), and the receivers live until every
        // worker has drained after `close`, so this send cannot fail.
        let shard = &self.shards[index];
        if let Err(error) = shard.sender.try_send(chunk) {
            // Unreachable while the reservation arithmetic holds; if it ever breaks, the loss
            // is logged rather than silent.
            debug_assert!(false, "a reserved chunk always fits in its shard");
            tracing::error!(shard = index, events = count, error = %error, "queueing reserved events failed, so they are lost");
        }
        shard.accepted.fetch_add(count as u64, Ordering::Relaxed);
    }
}

impl ShardReceiver {
    /// Waits up to `timeout` for the next chunk and marks its events as taken.
    /// Returns `None` on timeout or when all senders are gone.
    pub fn recv_timeout(&self, queues: &ShardQueues, timeout: std::time::Duration) -> Option<Chunk> {
        let chunk = self.receiver.recv_timeout(timeout).ok()?;
        queues.release(self.shard, chunk.len());
        Some(chunk)
    }

    /// Returns the next chunk without waiting, or `None` if the shard is empty.
    pub fn try_recv(&self, queues: &ShardQueues) -> Option<Chunk> {
        let chunk = self.receiver.try_recv().ok()?;
        queues.release(self.shard, chunk.len());
        Some(chunk)
    }
}

struct PushGuard<'a> {
    in_flight: &'a AtomicUsize,
}

impl Drop for PushGuard<'_> {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::event::EventType;
    use crate::ingest::timestamp::Timestamp;
    use std::time::Duration;

    fn events(count: usize) -> Vec<Event> {
        (0..count)
            .map(|i| Event {
                source_id: i as u64,
                event_type: EventType::Heartbeat,
                timestamp: Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").expect("valid"),
                data: None,
            })
            .collect()
    }

    #[test]
    fn rejects_push_when_every_shard_is_full() {
        let (queues, _receivers) = ShardQueues::new(2, 3);
        assert!(queues.try_push(events(3)).is_ok());
        assert!(queues.try_push(events(3)).is_ok());
        assert_eq!(queues.try_push(events(1)).map_err(|(error, _)| error), Err(PushError::Full));
        assert_eq!(queues.accepted_total(), 6);
    }

    #[test]
    fn prefix_push_queues_what_fits_in_order() {
        let (queues, receivers) = ShardQueues::new(2, 4);
        assert_eq!(queues.try_push_prefix(events(10)), Ok(8));
        let mut seen: Vec<u64> = Vec::new();
        for receiver in &receivers {
            while let Some(chunk) = receiver.try_recv(&queues) {
                seen.extend(chunk.events().iter().map(|e| e.source_id));
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<u64>>());
        assert_eq!(queues.depth(0) + queues.depth(1), 0);
    }

    #[test]
    fn single_pushes_move_on_after_a_run() {
        let (queues, _receivers) = ShardQueues::new(2, 1000);
        for event in events(2 * EVENTS_PER_SHARD_RUN) {
            assert!(queues.try_push_one(event).is_ok());
        }
        assert_eq!(queues.depth(0), EVENTS_PER_SHARD_RUN);
        assert_eq!(queues.depth(1), EVENTS_PER_SHARD_RUN);
        assert_eq!(queues.accepted_total(), 2 * EVENTS_PER_SHARD_RUN as u64);
    }

    #[test]
    fn refused_push_reserves_nothing() {
        let (queues, _receivers) = ShardQueues::new(1, 3);
        assert!(queues.try_push(events(2)).is_ok());
        let (error, back) = queues.try_push(events(2)).expect_err("one slot is left, two are needed");
        assert_eq!((error, back.len()), (PushError::Full, 2));
        assert_eq!(queues.depth(0), 2, "the refused push left the depth as it was");
        assert!(queues.try_push(events(1)).is_ok(), "the last slot is still free");
    }

    #[test]
    fn moving_chunks_keeps_the_batch_order() {
        let mut batch = Vec::with_capacity(2);
        Chunk::Many(events(3)).move_into(&mut batch);
        Chunk::One(events(1).remove(0)).move_into(&mut batch);
        Chunk::Many(events(2)).move_into(&mut batch);
        let ids: Vec<u64> = batch.iter().map(|e| e.source_id).collect();
        assert_eq!(ids, vec![0, 1, 2, 0, 0, 1]);
    }

    #[test]
    fn closed_queues_reject_pushes() {
        let (queues, _receivers) = ShardQueues::new(1, 4);
        queues.close();
        assert_eq!(queues.try_push(events(1)).map_err(|(error, _)| error), Err(PushError::Closed));
        assert_eq!(queues.try_push_prefix(events(1)), Err(PushError::Closed));
    }

    #[test]
    fn receiving_frees_capacity() {
        let (queues, receivers) = ShardQueues::new(1, 2);
        assert!(queues.try_push(events(2)).is_ok(), "room for two");
        assert_eq!(queues.try_push(events(1)).map_err(|(error, _)| error), Err(PushError::Full));
        let chunk = receivers[0].recv_timeout(&queues, Duration::from_millis(10)).expect("a chunk");
        assert_eq!(chunk.len(), 2);
        assert!(queues.try_push(events(1)).is_ok());
    }
}
