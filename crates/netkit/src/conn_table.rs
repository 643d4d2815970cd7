//! The admission policy every TCP server shares, as a pure table: who may connect, and whom to
//! close when the server is full. It takes `now` and holds no sockets, so it is unit-tested
//! deterministically; [`crate::accept`] drives it.
//!
//! The policy (what nginx's `limit_conn` and Knot's TCP handling do between them):
//! - at most `max_per_ip` connections from one source address (per address, not per prefix);
//! - at most `max_connections` in all; when full, a newcomer takes the slot of the connection
//!   that has been *not busy* (fresh, or idle between requests) the longest, instead of being
//!   refused. Only when every connection is busy serving a request is the newcomer refused.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

/// Where a connection is in its life, as far as admission cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, no complete request yet: evictable.
    Fresh,
    /// Serving a request (or a peer that proved useful): never evicted.
    Busy,
    /// Between requests: evictable.
    Idle,
}

/// Why a newcomer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source address already holds `max_per_ip` connections.
    PerAddress,
    /// Every slot is held by a busy connection.
    Full,
}

struct Entry<T> {
    ip: IpAddr,
    phase: Phase,
    since: Instant,
    payload: T,
}

/// The open connections of one listener, with the payload the driver keeps per connection
/// (the handle it uses to close an evicted one).
pub struct ConnTable<T> {
    max_connections: usize,
    max_per_ip: usize,
    next_id: u64,
    conns: HashMap<u64, Entry<T>>,
    per_ip: HashMap<IpAddr, usize>,
    /// Not-busy connections ordered by when they became so: the first is the eviction victim.
    evictable: BTreeSet<(Instant, u64)>,
}

impl<T> ConnTable<T> {
    /// A table admitting at most `max_connections` in all and `max_per_ip` per address (each
    /// at least 1).
    pub fn new(max_connections: usize, max_per_ip: usize) -> ConnTable<T> {
        ConnTable {
            max_connections: max_connections.max(1),
            max_per_ip: max_per_ip.max(1),
            next_id: 0,
            conns: HashMap::new(),
            per_ip: HashMap::new(),
            evictable: BTreeSet::new(),
        }
    }

    /// Admits a connection from `ip`: its id, and the payload of the connection evicted to
    /// make room (the caller closes that one).
    pub fn admit(&mut self, ip: IpAddr, now: Instant, payload: T) -> Result<(u64, Option<T>), Refused> {
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Err(Refused::PerAddress);
        }
        let mut evicted = None;
        if self.conns.len() >= self.max_connections {
            let Some(&(_, victim)) = self.evictable.iter().next() else { return Err(Refused::Full) };
            evicted = self.release(victim);
        }
        let id = self.next_id;
        self.next_id += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.evictable.insert((now, id));
        self.conns.insert(id, Entry { ip, phase: Phase::Fresh, since: now, payload });
        Ok((id, evicted))
    }

    /// Moves connection `id` to `phase` (a no-op for a connection already released).
    pub fn set_phase(&mut self, id: u64, phase: Phase, now: Instant) {
        let Some(entry) = self.conns.get_mut(&id) else { return };
        if entry.phase != Phase::Busy {
            self.evictable.remove(&(entry.since, id));
        }
        entry.phase = phase;
        entry.since = now;
        if phase != Phase::Busy {
            self.evictable.insert((now, id));
        }
    }

    /// Forgets connection `id`, returning its payload (`None` if it was already evicted).
    pub fn release(&mut self, id: u64) -> Option<T> {
        let entry = self.conns.remove(&id)?;
        if entry.phase != Phase::Busy {
            self.evictable.remove(&(entry.since, id));
        }
        if let Some(n) = self.per_ip.get_mut(&entry.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&entry.ip);
            }
        }
        Some(entry.payload)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Open connections from `ip`.
    pub fn count_for(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn caps_each_address() {
        let t0 = Instant::now();
        let mut table = ConnTable::new(100, 2);
        assert!(table.admit(ip(1), t0, ()).is_ok());
        assert!(table.admit(ip(1), t0, ()).is_ok());
        assert_eq!(table.admit(ip(1), t0, ()), Err(Refused::PerAddress));
        assert!(table.admit(ip(2), t0, ()).is_ok(), "another address is not affected");
        assert_eq!(table.count_for(ip(1)), 2);
    }

    #[test]
    fn full_table_evicts_the_longest_not_busy() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut table = ConnTable::new(3, 3);
        let (a, _) = table.admit(ip(1), t0, "a").unwrap();
        let (b, _) = table.admit(ip(1), t0 + s, "b").unwrap();
        let (c, _) = table.admit(ip(1), t0 + 2 * s, "c").unwrap();
        // a serves a request; b goes idle after c has been fresh for a while.
        table.set_phase(a, Phase::Busy, t0 + 3 * s);
        table.set_phase(b, Phase::Idle, t0 + 4 * s);
        let (_, evicted) = table.admit(ip(2), t0 + 5 * s, "d").unwrap();
        assert_eq!(evicted, Some("c"), "c has been not-busy since 2s, b only since 4s");
        let (_, evicted) = table.admit(ip(3), t0 + 6 * s, "e").unwrap();
        assert_eq!(evicted, Some("b"));
        assert_eq!(table.len(), 3);
        assert_eq!(table.count_for(ip(1)), 1, "evictions free the address's count");
        let _ = c;
    }

    #[test]
    fn all_busy_refuses_newcomers() {
        let t0 = Instant::now();
        let mut table = ConnTable::new(2, 2);
        let (a, _) = table.admit(ip(1), t0, ()).unwrap();
        let (b, _) = table.admit(ip(2), t0, ()).unwrap();
        table.set_phase(a, Phase::Busy, t0);
        table.set_phase(b, Phase::Busy, t0);
        assert_eq!(table.admit(ip(3), t0, ()), Err(Refused::Full));
        table.set_phase(b, Phase::Idle, t0);
        assert!(table.admit(ip(3), t0, ()).is_ok());
    }

    #[test]
    fn release_is_idempotent_and_frees_counts() {
        let t0 = Instant::now();
        let mut table = ConnTable::new(1, 1);
        let (a, _) = table.admit(ip(1), t0, 7).unwrap();
        let (_, evicted) = table.admit(ip(2), t0, 8).unwrap();
        assert_eq!(evicted, Some(7));
        assert_eq!(table.release(a), None, "an evicted connection's own release is a no-op");
        table.set_phase(a, Phase::Busy, t0);
        assert_eq!(table.len(), 1);
        assert_eq!(table.count_for(ip(1)), 0);
        assert!(table.admit(ip(1), t0, 9).is_ok());
    }
}
