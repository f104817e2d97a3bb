//! Interning of event type names into small integer ids shared by all sources.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;

use crate::ingest::event::{EventType, HEARTBEAT};

/// An interned event type; `Heartbeat` is always id 0.
pub type TypeId = u32;

/// Maps event type names to ids and back.
///
/// NOTE: every distinct type name ever recorded stays interned for the life of the process,
/// so memory grows with the number of distinct names clients send.
pub struct TypeInterner {
    /// Tells this interner's entries in the per-thread caches from another interner's.
    instance: u64,
    ids: DashMap<Arc<str>, TypeId, foldhash::fast::RandomState>,
    names: RwLock<Vec<Arc<str>>>,
}

/// Names a thread's cache keeps before it stops adding: a name past this is looked up in the
/// shared map each time, as every name was before the cache.
const THREAD_CACHE_NAMES: usize = 256;

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// A thread's copy of the ids it has looked up, for one interner at a time.
#[derive(Default)]
struct ThreadCache {
    instance: Option<u64>,
    ids: HashMap<Box<str>, TypeId, foldhash::fast::RandomState>,
}

thread_local! {
    // An id never changes once assigned, so a copy cannot go stale. Taking the shared map's
    // read lock writes to a cache line that every worker uses on each event, and this cache
    // spares the workers that write.
    static THREAD_CACHE: RefCell<ThreadCache> = RefCell::new(ThreadCache::default());
}

impl Default for TypeInterner {
    fn default() -> Self {
        TypeInterner::new()
    }
}

impl TypeInterner {
    /// Creates an interner that holds `Heartbeat` as id 0.
    pub fn new() -> Self {
        let heartbeat: Arc<str> = Arc::from(HEARTBEAT);
        let ids = DashMap::with_hasher(foldhash::fast::RandomState::default());
        ids.insert(heartbeat.clone(), 0);
        TypeInterner {
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            ids,
            names: RwLock::new(vec![heartbeat]),
        }
    }

    /// Returns the id of `event_type`, assigning the next id on first sight.
    pub fn intern(&self, event_type: &EventType) -> TypeId {
        let name = match event_type {
            EventType::Heartbeat => return 0,
            EventType::Custom(name) => &**name,
        };
        let cached = THREAD_CACHE.try_with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.instance != Some(self.instance) {
                cache.instance = Some(self.instance);
                cache.ids.clear();
            }
            if let Some(&id) = cache.ids.get(name) {
                return id;
            }
            let id = self.intern_shared(name);
            if cache.ids.len() < THREAD_CACHE_NAMES {
                cache.ids.insert(name.into(), id);
            }
            id
        });
        // A thread being torn down has lost its cache, so it uses the shared map.
        cached.unwrap_or_else(|_| self.intern_shared(name))
    }

    /// Looks `name` up in the shared map, assigning the next id on first sight.
    fn intern_shared(&self, name: &str) -> TypeId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }

        // The names lock orders concurrent first sightings, so ids stay dense and each name
        // gets exactly one id.
        let mut names = self.names.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = TypeId::try_from(names.len()).expect("fewer than 2^32 distinct event types");
        let name: Arc<str> = Arc::from(name);
        names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    /// Returns the name of an id returned by [`TypeInterner::intern`].
    ///
    /// # Panics
    /// Panics if `id` was not returned by this interner.
    pub fn name(&self, id: TypeId) -> Arc<str> {
        let names = self.names.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        names[id as usize].clone()
    }

    /// Returns the number of interned names, `Heartbeat` included.
    pub fn len(&self) -> usize {
        self.names.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    /// Returns true if only `Heartbeat` is interned.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(name: &str) -> EventType {
        EventType::Custom(name.into())
    }

    #[test]
    fn threads_get_the_same_ids() {
        let interner = TypeInterner::new();
        let main_ids = [interner.intern(&custom("Boot")), interner.intern(&custom("Click"))];
        let other_ids = std::thread::scope(|scope| {
            scope
                .spawn(|| [interner.intern(&custom("Click")), interner.intern(&custom("Boot"))])
                .join()
                .expect("the thread returns its ids")
        });

        assert_eq!(main_ids, [1, 2]);
        assert_eq!(other_ids, [2, 1]);
        assert_eq!(interner.intern(&EventType::Heartbeat), 0);
        assert_eq!(&*interner.name(2), "Click");
    }

    #[test]
    fn interners_on_one_thread_keep_their_own_ids() {
        let first = TypeInterner::new();
        let second = TypeInterner::new();
        assert_eq!(first.intern(&custom("Boot")), 1);
        assert_eq!(second.intern(&custom("Click")), 1);
        assert_eq!(second.intern(&custom("Boot")), 2);

        // Each switch empties the thread's cache, which must not lose or mix up an id.
        assert_eq!(first.intern(&custom("Click")), 2);
        assert_eq!(first.intern(&custom("Boot")), 1);
        assert_eq!(second.intern(&custom("Boot")), 2);
        assert_eq!(first.len(), 3);
        assert_eq!(second.len(), 3);
    }

    #[test]
    fn names_past_the_cache_size_still_intern() {
        let interner = TypeInterner::new();
        let names: Vec<String> = (0..THREAD_CACHE_NAMES + 10).map(|i| format!("type-{i}")).collect();
        let ids: Vec<TypeId> = names.iter().map(|name| interner.intern(&custom(name))).collect();
        let again: Vec<TypeId> = names.iter().map(|name| interner.intern(&custom(name))).collect();

        assert_eq!(ids, again);
        assert_eq!(ids.last().copied(), Some((THREAD_CACHE_NAMES + 10) as TypeId));
    }
}
