//! Caps on work in flight per key, so one flood cannot take everyone's share: questions being
//! resolved per client, and upstream exchanges per zone (like Unbound's `ratelimit` per
//! delegation point). The core, [`InFlight`], is pure: it counts per key and says yes or no.
//! [`Gate`] shares it between tasks and hands out [`Ticket`]s that give the slot back on drop,
//! so a cancelled or panicking task can never leak one.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts of work in flight per key, each capped at `limit` (0 = no limit). Only keys with
/// work in flight are stored, so the map never outgrows the work itself.
#[derive(Debug)]
pub struct InFlight<K> {
    limit: usize,
    counts: HashMap<K, usize>,
}

impl<K: Hash + Eq + Clone> InFlight<K> {
    /// No work in flight; at most `limit` per key (0 = unlimited).
    pub fn new(limit: usize) -> InFlight<K> {
        InFlight { limit, counts: HashMap::new() }
    }

    /// Takes a slot for `key` if it has one free; `false` means over the limit.
    pub fn try_acquire(&mut self, key: &K) -> bool {
        if self.limit == 0 {
            return true;
        }
        match self.counts.get_mut(key) {
            Some(n) if *n >= self.limit => false,
            Some(n) => {
                *n += 1;
                true
            }
            None => {
                self.counts.insert(key.clone(), 1);
                true
            }
        }
    }

    /// Gives back a slot taken by [`try_acquire`](Self::try_acquire).
    pub fn release(&mut self, key: &K) {
        if let Some(n) = self.counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// Work in flight for `key`.
    pub fn in_flight(&self, key: &K) -> usize {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Keys with work in flight.
    pub fn keys(&self) -> usize {
        self.counts.len()
    }
}

/// An [`InFlight`] shared between tasks.
#[derive(Debug, Clone)]
pub struct Gate<K> {
    inner: Arc<Mutex<InFlight<K>>>,
}

/// A slot held in a [`Gate`]; dropping it gives the slot back.
#[derive(Debug)]
pub struct Ticket<K: Hash + Eq + Clone> {
    gate: Arc<Mutex<InFlight<K>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Gate<K> {
    /// A gate allowing `limit` per key (0 = unlimited).
    pub fn new(limit: usize) -> Gate<K> {
        Gate { inner: Arc::new(Mutex::new(InFlight::new(limit))) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight<K>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket for `key`, or `None` when `key` already has its limit in flight.
    pub fn try_enter(&self, key: K) -> Option<Ticket<K>> {
        self.lock().try_acquire(&key).then(|| Ticket { gate: self.inner.clone(), key })
    }

    /// Work in flight for `key`.
    pub fn in_flight(&self, key: &K) -> usize {
        self.lock().in_flight(key)
    }
}

impl<K: Hash + Eq + Clone> Drop for Ticket<K> {
    fn drop(&mut self) {
        self.gate.lock().unwrap_or_else(|e| e.into_inner()).release(&self.key);
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64 (one host usually has
/// a whole /64, so counting single IPv6 addresses would let it multiply its share at will).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match appnet_dns::respond::canonical(ip) {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_its_own_cap() {
        let mut f = InFlight::new(2);
        assert!(f.try_acquire(&"a"));
        assert!(f.try_acquire(&"a"));
        assert!(!f.try_acquire(&"a"), "the third for the same key is refused");
        assert!(f.try_acquire(&"b"), "another key is unaffected");
        f.release(&"a");
        assert!(f.try_acquire(&"a"), "a released slot is free again");
        assert_eq!(f.in_flight(&"a"), 2);
        f.release(&"a");
        f.release(&"a");
        f.release(&"b");
        assert_eq!(f.keys(), 0, "idle keys are forgotten");
        // Releasing what was never taken does nothing.
        f.release(&"zz");
        assert_eq!(f.keys(), 0);
    }

    #[test]
    fn zero_means_unlimited() {
        let mut f = InFlight::new(0);
        assert!((0..10_000).all(|_| f.try_acquire(&1u8)));
        assert_eq!(f.keys(), 0);
    }

    #[test]
    fn tickets_give_their_slot_back_when_dropped() {
        let g = Gate::new(1);
        let t = g.try_enter("zone").expect("first");
        assert!(g.try_enter("zone").is_none());
        assert_eq!(g.in_flight(&"zone"), 1);
        drop(t);
        assert_eq!(g.in_flight(&"zone"), 0);
        assert!(g.try_enter("zone").is_some());
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
