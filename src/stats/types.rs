//! Interning of event type names into small integer ids shared by all sources.

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
    ids: DashMap<Arc<str>, TypeId, foldhash::fast::RandomState>,
    names: RwLock<Vec<Arc<str>>>,
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
