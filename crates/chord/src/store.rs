//! A node's (key, value) storage, ordered by key id so arcs of the circle can be handed over.
//! Keys whose ids collide (common on small teaching rings) are kept apart by the key bytes.

use crate::id::Id;
use crate::wire::Item;
use std::collections::BTreeMap;

/// Items a node keeps: the ones it owns and the replicas it holds for its predecessors.
#[derive(Debug, Default, Clone)]
pub struct Store {
    bits: u8,
    map: BTreeMap<(Id, Vec<u8>), Vec<u8>>,
}

impl Store {
    /// An empty store for a ring of `bits`-bit ids.
    pub fn new(bits: u8) -> Store {
        Store { bits, map: BTreeMap::new() }
    }

    /// The id of `key` on this ring.
    pub fn key_id(&self, key: &[u8]) -> Id {
        Id::hash(key, self.bits)
    }

    /// Inserts or replaces a value.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let id = self.key_id(&key);
        self.map.insert((id, key), value);
    }

    /// The value of `key`, if held here.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(&(self.key_id(key), key.to_vec()))
    }

    /// Removes `key`; whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let id = self.key_id(key);
        self.map.remove(&(id, key.to_vec())).is_some()
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Copies of the items whose ids lie in the arc (a, b].
    pub fn items_in(&self, a: &Id, b: &Id) -> Vec<Item> {
        self.map
            .iter()
            .filter(|((id, _), _)| id.in_half_open(a, b))
            .map(|((_, k), v)| Item { key: k.clone(), value: v.clone() })
            .collect()
    }

    /// Copies of every item.
    pub fn all_items(&self) -> Vec<Item> {
        self.map.iter().map(|((_, k), v)| Item { key: k.clone(), value: v.clone() }).collect()
    }

    /// Every key id held (with repeats for colliding keys), in order.
    pub fn ids(&self) -> impl Iterator<Item = &Id> {
        self.map.keys().map(|(id, _)| id)
    }
}
