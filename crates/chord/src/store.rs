//! A node's (key, value) storage, ordered by key id so arcs of the circle can be handed over.
//! Keys whose ids collide (common on small teaching rings) are kept apart by the key bytes.

use crate::id::Id;
use crate::wire::Item;
use std::collections::{BTreeMap, HashMap, VecDeque};

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

/// How long a deleted key is remembered (milliseconds).
pub const TOMBSTONE_TTL_MS: u64 = 60 * 60 * 1000;
/// Most deleted keys remembered at once (the oldest are forgotten first).
pub const MAX_TOMBSTONES: usize = 65_536;

/// Keys deleted recently, so that a stale copy offered back by another node's garbage
/// collection (`Adopt`) does not bring a deleted key back. Bounded in count and age; keys are
/// kept as their SHA-1 digest.
#[derive(Debug, Default, Clone)]
pub struct Tombstones {
    at: HashMap<[u8; 20], u64>,
    order: VecDeque<([u8; 20], u64)>,
}

impl Tombstones {
    fn digest(key: &[u8]) -> [u8; 20] {
        Id::hash(key, 160).0
    }

    /// Remembers that `key` was deleted at `now`.
    pub fn insert(&mut self, key: &[u8], now: u64) {
        let d = Tombstones::digest(key);
        self.at.insert(d, now);
        self.order.push_back((d, now));
        self.expire(now);
    }

    /// Forgets `key` (it was stored again).
    pub fn remove(&mut self, key: &[u8]) {
        self.at.remove(&Tombstones::digest(key));
    }

    /// Whether `key` was deleted less than [`TOMBSTONE_TTL_MS`] ago.
    pub fn contains(&mut self, key: &[u8], now: u64) -> bool {
        self.expire(now);
        self.at.contains_key(&Tombstones::digest(key))
    }

    /// Deleted keys remembered.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no deleted key is remembered.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }

    fn expire(&mut self, now: u64) {
        while let Some(&(d, t)) = self.order.front() {
            let live = self.at.get(&d) == Some(&t);
            if !live {
                // Superseded by a later insert of the same key, or removed.
                self.order.pop_front();
            } else if now.saturating_sub(t) >= TOMBSTONE_TTL_MS || self.at.len() > MAX_TOMBSTONES {
                self.order.pop_front();
                self.at.remove(&d);
            } else {
                break;
            }
        }
        if self.order.len() > 2 * MAX_TOMBSTONES {
            // Superseded entries behind a live one: drop them.
            let at = &self.at;
            self.order.retain(|(d, t)| at.get(d) == Some(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_expire_and_are_bounded() {
        let mut t = Tombstones::default();
        t.insert(b"a", 0);
        assert!(t.contains(b"a", 10));
        assert!(!t.contains(b"b", 10));
        t.remove(b"a");
        assert!(!t.contains(b"a", 10));
        t.insert(b"a", 100);
        assert!(t.contains(b"a", TOMBSTONE_TTL_MS + 99));
        assert!(!t.contains(b"a", TOMBSTONE_TTL_MS + 100));
        for i in 0..MAX_TOMBSTONES + 10 {
            t.insert(format!("k{i}").as_bytes(), 200);
        }
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert!(!t.contains(b"k0", 200) && t.contains(format!("k{}", MAX_TOMBSTONES + 9).as_bytes(), 200));
    }

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
