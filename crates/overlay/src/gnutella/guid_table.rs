//! A bounded map with expiry keyed by GUID: the duplicate-suppression set and the reverse-path
//! routing tables of a servent. Entries expire `ttl` after insertion; when the map is full the
//! oldest entry is evicted, so no neighbour can grow it without bound.

use super::wire::Guid;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// GUID → value, at most `cap` entries, each kept for `ttl`.
#[derive(Debug, Clone)]
pub struct GuidTable<V> {
    map: HashMap<Guid, (V, Instant)>,
    order: VecDeque<(Guid, Instant)>,
    cap: usize,
    ttl: Duration,
}

impl<V> GuidTable<V> {
    /// An empty table.
    pub fn new(cap: usize, ttl: Duration) -> Self {
        GuidTable { map: HashMap::new(), order: VecDeque::new(), cap: cap.max(1), ttl }
    }

    /// Inserts `guid` unless present (and unexpired): true if it was new.
    pub fn insert(&mut self, guid: Guid, v: V, now: Instant) -> bool {
        self.expire(now);
        if self.map.contains_key(&guid) {
            return false;
        }
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some((g, at)) => {
                    if self.map.get(&g).is_some_and(|(_, t)| *t == at) {
                        self.map.remove(&g);
                    }
                }
                None => break,
            }
        }
        self.map.insert(guid, (v, now));
        self.order.push_back((guid, now));
        true
    }

    /// The value for `guid`, if present and unexpired at `now`.
    pub fn get(&self, guid: &Guid, now: Instant) -> Option<&V> {
        self.map.get(guid).filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl).map(|(v, _)| v)
    }

    /// Whether `guid` is present and unexpired.
    pub fn contains(&self, guid: &Guid, now: Instant) -> bool {
        self.get(guid, now).is_some()
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(g, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl && self.order.len() <= self.cap * 2 {
                break;
            }
            self.order.pop_front();
            if self.map.get(&g).is_some_and(|(_, t)| *t == at) {
                self.map.remove(&g);
            }
        }
    }

    /// Removes every entry whose value satisfies `f` (e.g. routes through a lost neighbour).
    pub fn retain(&mut self, mut f: impl FnMut(&V) -> bool) {
        self.map.retain(|_, (v, _)| f(v));
    }

    /// Number of entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(n: u8) -> Guid {
        Guid([n; 16])
    }

    #[test]
    fn duplicates_expiry_and_cap() {
        let t0 = Instant::now();
        let mut t = GuidTable::new(3, Duration::from_secs(10));
        assert!(t.insert(g(1), 'a', t0));
        assert!(!t.insert(g(1), 'b', t0), "duplicate");
        assert_eq!(t.get(&g(1), t0), Some(&'a'));
        assert!(t.insert(g(2), 'b', t0));
        assert!(t.insert(g(3), 'c', t0));
        assert!(t.insert(g(4), 'd', t0), "full: the oldest is evicted");
        assert_eq!(t.len(), 3);
        assert!(!t.contains(&g(1), t0));
        let later = t0 + Duration::from_secs(11);
        assert!(!t.contains(&g(4), later), "expired");
        t.expire(later);
        assert!(t.is_empty());
        assert!(t.insert(g(4), 'e', later), "a GUID may be reused after expiry");
        t.retain(|v| *v != 'e');
        assert!(t.is_empty());
    }

    #[test]
    fn order_queue_stays_bounded_under_churn() {
        let t0 = Instant::now();
        let mut t = GuidTable::new(10, Duration::from_secs(1000));
        for i in 0..10_000u32 {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&i.to_le_bytes());
            t.insert(Guid(b), i, t0);
            t.retain(|v| v % 2 == 0);
        }
        assert!(t.len() <= 10);
        assert!(t.order.len() <= 21);
    }
}
