//! A least-recently-used map bounded by accounted bytes, not entries, sans-IO: the cache's
//! memory stays under its budget whatever the mix of small and large answers a flood brings.
//! Entries live in a slab linked into a recency list, so a lookup, an insert and each eviction
//! are O(1) (plus the hash); nothing is ever swept in bulk.

use std::collections::HashMap;
use std::sync::Arc;

/// The key type: a byte string shared by the index and the slab (stored once).
pub type Key = Arc<[u8]>;

/// No neighbour in the recency list.
const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node<V> {
    key: Key,
    value: V,
    bytes: usize,
    /// Towards the most recently used end.
    prev: usize,
    /// Towards the least recently used end.
    next: usize,
}

/// Bytes the map's own bookkeeping costs per entry besides the key and the value: the slab
/// slot, the index's bucket (doubled for the hash table's spare capacity), the key's reference
/// counts and the allocator's headers.
pub const ENTRY_OVERHEAD: usize =
    std::mem::size_of::<usize>() * 4 + 2 * (std::mem::size_of::<(Key, usize)>() + 8) + 16 + 32;

/// A map from byte-string keys to values, evicting the least recently used entries whenever the
/// accounted bytes (each entry's `bytes` as given, plus its key and [`ENTRY_OVERHEAD`]) exceed
/// the budget.
#[derive(Debug)]
pub struct ByteLru<V> {
    index: HashMap<Key, usize>,
    slab: Vec<Option<Node<V>>>,
    free: Vec<usize>,
    /// Most recently used.
    head: usize,
    /// Least recently used: the next to go.
    tail: usize,
    used: usize,
    budget: usize,
}

impl<V> ByteLru<V> {
    /// An empty map that keeps at most `budget` accounted bytes.
    pub fn new(budget: usize) -> ByteLru<V> {
        ByteLru {
            index: HashMap::new(),
            slab: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            used: 0,
            budget,
        }
    }

    /// The accounted bytes in use (never more than the budget after an insert).
    pub fn used(&self) -> usize {
        self.used
    }

    /// The byte budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// What one entry with this key and value size is charged.
    pub fn charge(key_len: usize, value_bytes: usize) -> usize {
        key_len + value_bytes + ENTRY_OVERHEAD
    }

    fn node(&self, i: usize) -> &Node<V> {
        self.slab[i].as_ref().expect("linked slots are occupied")
    }

    fn node_mut(&mut self, i: usize) -> &mut Node<V> {
        self.slab[i].as_mut().expect("linked slots are occupied")
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = {
            let n = self.node(i);
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
    }

    fn push_front(&mut self, i: usize) {
        let old = self.head;
        {
            let n = self.node_mut(i);
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.node_mut(old).prev = i;
        }
        self.head = i;
    }

    /// The value for `key`, marked most recently used.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let i = *self.index.get(key)?;
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        Some(&mut self.node_mut(i).value)
    }

    /// Inserts (or replaces) `key` with a value accounted at `bytes`, then evicts least recently
    /// used entries until the budget holds. Returns how many other entries were evicted. A value
    /// bigger than the whole budget is not kept at all.
    pub fn insert(&mut self, key: &[u8], value: V, bytes: usize) -> usize {
        self.remove(key);
        let charge = Self::charge(key.len(), bytes);
        if charge > self.budget {
            return 0;
        }
        let key: Key = key.into();
        let node = Node { key: key.clone(), value, bytes: charge, prev: NIL, next: NIL };
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i] = Some(node);
                i
            }
            None => {
                self.slab.push(Some(node));
                self.slab.len() - 1
            }
        };
        self.index.insert(key, i);
        self.push_front(i);
        self.used += charge;
        let mut evicted = 0;
        while self.used > self.budget && self.tail != i {
            self.pop_lru();
            evicted += 1;
        }
        evicted
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let i = self.index.remove(key)?;
        Some(self.take(i))
    }

    fn take(&mut self, i: usize) -> V {
        self.unlink(i);
        let node = self.slab[i].take().expect("indexed slots are occupied");
        self.free.push(i);
        self.used -= node.bytes;
        node.value
    }

    fn pop_lru(&mut self) {
        if self.tail == NIL {
            return;
        }
        let i = self.tail;
        let key = self.node(i).key.clone();
        self.index.remove(&key);
        self.take(i);
    }

    /// Calls `f` on every value; `f` returns the value's new accounted size when it changed it.
    /// Entries that grew may push the map over its budget: least recently used ones then go.
    /// Returns how many were evicted.
    pub fn update_all(&mut self, mut f: impl FnMut(&mut V) -> Option<usize>) -> usize {
        for slot in self.slab.iter_mut().flatten() {
            if let Some(bytes) = f(&mut slot.value) {
                let charge = Self::charge(slot.key.len(), bytes);
                self.used = self.used - slot.bytes + charge;
                slot.bytes = charge;
            }
        }
        let mut evicted = 0;
        while self.used > self.budget && self.tail != NIL {
            self.pop_lru();
            evicted += 1;
        }
        evicted
    }

    /// Drops everything, releasing the memory.
    pub fn clear(&mut self) {
        *self = ByteLru::new(self.budget);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, bytes: usize) -> usize {
        ByteLru::<()>::charge(key.len(), bytes)
    }

    #[test]
    fn accounts_bytes_and_evicts_the_least_recently_used_first() {
        let budget = 3 * charge("k0", 100);
        let mut m = ByteLru::new(budget);
        for k in ["k0", "k1", "k2"] {
            assert_eq!(m.insert(k.as_bytes(), k.to_string(), 100), 0);
        }
        assert_eq!(m.used(), budget);
        // Touch k0 so k1 is now the oldest.
        assert!(m.get_mut(b"k0").is_some());
        assert_eq!(m.insert(b"k3", "k3".into(), 100), 1);
        assert!(m.get_mut(b"k1").is_none(), "the least recently used went");
        assert!(m.get_mut(b"k0").is_some());
        // A big entry pushes out as many as it needs.
        assert_eq!(m.insert(b"k4", "k4".into(), 250), 2);
        assert!(m.used() <= budget);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn replacing_and_removing_keep_the_count_exact() {
        let mut m = ByteLru::new(10_000);
        m.insert(b"a", 1u8, 100);
        m.insert(b"a", 2u8, 300);
        assert_eq!(m.len(), 1);
        assert_eq!(m.used(), charge("a", 300));
        assert_eq!(m.remove(b"a"), Some(2));
        assert_eq!(m.used(), 0);
        assert!(m.is_empty());
        // Freed slots are reused rather than growing the slab.
        for i in 0..10u8 {
            m.insert(&[i], i, 10);
            m.remove(&[i]);
        }
        assert_eq!(m.slab.len(), 1);
    }

    #[test]
    fn an_entry_larger_than_the_budget_is_not_kept() {
        let mut m = ByteLru::new(charge("a", 10));
        m.insert(b"a", (), 10);
        assert_eq!(m.insert(b"b", (), 1_000), 0);
        assert!(m.get_mut(b"b").is_none());
        assert!(m.get_mut(b"a").is_some());
    }

    #[test]
    fn growth_in_place_is_accounted_and_evicts() {
        let mut m = ByteLru::new(2 * charge("a", 100));
        m.insert(b"a", 100usize, 100);
        m.insert(b"b", 100usize, 100);
        let evicted = m.update_all(|v| {
            *v += 50;
            Some(*v)
        });
        assert_eq!(evicted, 1);
        assert_eq!(m.len(), 1);
        assert!(m.used() <= m.budget());
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_budget() {
        let budget = 64 * 1024;
        let mut m = ByteLru::new(budget);
        for i in 0..100_000u32 {
            m.insert(&i.to_be_bytes(), i, 40 + (i as usize % 200));
            assert!(m.used() <= budget);
        }
        assert!(m.len() < budget / ENTRY_OVERHEAD);
        assert!(m.slab.len() <= budget / ENTRY_OVERHEAD + 1, "the slab is bounded too");
    }
}
