//! Who may take a peer slot, sans IO: a cap on peers in all and per IP address, where a
//! newcomer that finds the cap reached takes the slot of the oldest peer that has not become
//! useful (never interested, no block either way), so connections that only handshake cannot
//! starve real peers. Useful peers are never evicted; a newcomer is refused only when every
//! slot it could take is held by one.

use std::net::IpAddr;
use std::time::Instant;

/// The caps (from [`crate::config::ClientConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most peers connected or being connected to.
    pub max_peers: usize,
    /// Most of them from one IP address.
    pub max_per_ip: usize,
}

/// A connected peer as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The session's id for it.
    pub id: u64,
    /// Its address.
    pub ip: IpAddr,
    /// When it was admitted.
    pub since: Instant,
    /// It was interested in us, or a block went either way.
    pub useful: bool,
}

/// The verdict on a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot is free.
    Yes,
    /// Close this peer and give its slot to the newcomer.
    Evict(u64),
    /// No slot: every one it could take is held by a useful peer.
    Refuse(&'static str),
}

/// Decides on a newcomer from `ip`, given the peers held and the outgoing connections still
/// being set up (`pending`, which count but cannot be evicted).
pub fn admit(held: &[Held], pending: &[IpAddr], ip: IpAddr, limits: Limits) -> Admit {
    let oldest_idle = |same_ip: bool| {
        held.iter()
            .filter(|h| !h.useful && (!same_ip || h.ip == ip))
            .min_by_key(|h| (h.since, h.id))
            .map(|h| h.id)
    };
    let from_ip = held.iter().filter(|h| h.ip == ip).count() + pending.iter().filter(|p| **p == ip).count();
    if from_ip >= limits.max_per_ip.max(1) {
        return oldest_idle(true)
            .map_or(Admit::Refuse("too many connections from this address"), Admit::Evict);
    }
    if held.len() + pending.len() >= limits.max_peers.max(1) {
        return oldest_idle(false).map_or(Admit::Refuse("every peer slot is in use"), Admit::Evict);
    }
    Admit::Yes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn held(id: u64, from: u8, age: u64, useful: bool, t0: Instant) -> Held {
        Held { id, ip: ip(from), since: t0 + Duration::from_secs(100 - age), useful }
    }

    const LIMITS: Limits = Limits { max_peers: 4, max_per_ip: 2 };

    #[test]
    fn free_slots_admit() {
        let t0 = Instant::now();
        assert_eq!(admit(&[], &[], ip(1), LIMITS), Admit::Yes);
        let h = [held(1, 1, 5, false, t0), held(2, 2, 5, true, t0)];
        assert_eq!(admit(&h, &[ip(3)], ip(1), LIMITS), Admit::Yes);
    }

    /// The hostile tester's flood: slots full of peers that only handshook. A real peer takes
    /// the oldest one's slot instead of being refused.
    #[test]
    fn a_full_table_of_idle_peers_evicts_the_oldest() {
        let t0 = Instant::now();
        let h = [
            held(1, 1, 10, false, t0),
            held(2, 2, 30, false, t0),
            held(3, 3, 50, true, t0),
            held(4, 4, 20, false, t0),
        ];
        assert_eq!(admit(&h, &[], ip(9), LIMITS), Admit::Evict(2));
        let busy: Vec<Held> = h.iter().map(|x| Held { useful: true, ..*x }).collect();
        assert!(matches!(admit(&busy, &[], ip(9), LIMITS), Admit::Refuse(_)));
        // Pending outgoing connections count, but only held peers can be evicted.
        assert!(matches!(admit(&busy[..2], &[ip(5), ip(6)], ip(9), LIMITS), Admit::Refuse(_)));
        assert_eq!(admit(&h[..2], &[ip(5), ip(6)], ip(9), LIMITS), Admit::Evict(2));
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let t0 = Instant::now();
        let h = [held(1, 1, 10, false, t0), held(2, 1, 5, false, t0), held(3, 2, 50, false, t0)];
        // Over the per-IP cap: an older idle peer of another address is not touched.
        assert_eq!(admit(&h, &[], ip(1), LIMITS), Admit::Evict(1));
        let h = [held(1, 1, 10, true, t0), held(2, 1, 5, true, t0), held(3, 2, 50, false, t0)];
        assert!(matches!(admit(&h, &[], ip(1), LIMITS), Admit::Refuse(_)));
        assert_eq!(admit(&h, &[], ip(7), LIMITS), Admit::Yes);
        assert!(matches!(admit(&h[..1], &[ip(1)], ip(1), LIMITS), Admit::Refuse(_)));
    }
}
