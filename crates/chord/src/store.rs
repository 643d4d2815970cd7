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
    bytes: usize,
}

impl Store {
    /// An empty store for a ring of `bits`-bit ids.
    pub fn new(bits: u8) -> Store {
        Store { bits, map: BTreeMap::new(), bytes: 0 }
    }

    /// The id of `key` on this ring.
    pub fn key_id(&self, key: &[u8]) -> Id {
        Id::hash(key, self.bits)
    }

    /// Inserts or replaces a value.
    pub fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let id = self.key_id(&key);
        self.bytes += key.len() + value.len();
        if let Some(old) = self.map.insert((id, key.clone()), value) {
            self.bytes -= key.len() + old.len();
        }
    }

    /// The value of `key`, if held here.
    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.map.get(&(self.key_id(key), key.to_vec()))
    }

    /// Removes `key`; whether it was present.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let id = self.key_id(key);
        match self.map.remove(&(id, key.to_vec())) {
            Some(v) => {
                self.bytes -= key.len() + v.len();
                true
            }
            None => false,
        }
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_hands_out_arcs() {
        let mut s = Store::new(8);
        s.insert(b"a".to_vec(), b"123".to_vec());
        s.insert(b"a".to_vec(), b"12".to_vec());
        s.insert(b"bb".to_vec(), b"x".to_vec());
        assert_eq!((s.len(), s.bytes()), (2, 6));
        assert!(s.remove(b"a"));
        assert!(!s.remove(b"a"));
        assert_eq!(s.bytes(), 3);
        let id = s.key_id(b"bb");
        assert_eq!(s.items_in(&id, &id).len(), 1, "(a, a] is the whole circle");
        assert_eq!(s.items_in(&id.add_pow2(0, 8), &id.add_pow2(1, 8)).len(), 0);
    }
}
