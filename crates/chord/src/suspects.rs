//! Peers this node found dead, remembered for a while so that other nodes' stale state does not
//! bring them back.
//!
//! A node learns of a failure only through its own RPCs, so for a while after a peer dies the
//! other nodes' successor lists, predecessor pointers and lookup answers still name it. In a
//! ring of r + 1 nodes or fewer every successor list wraps around the whole ring, and stabilize
//! would merge the dead peer straight back in after it was purged, again and again until every
//! node had noticed. So a node marks each peer that failed to answer (or announced its leave)
//! for a bounded time and leaves it out of whatever it adopts from others meanwhile; a direct
//! sign of life (the peer answers one of our RPCs or notifies us) clears the mark at once.

use crate::time::Millis;
use crate::wire::NodeRef;
use std::net::SocketAddr;

/// Most peers remembered at once; the mark expiring first makes room for a new one.
pub const MAX_SUSPECTS: usize = 64;

/// Peers presumed dead, each until a deadline.
#[derive(Debug, Clone)]
pub struct Suspects {
    ttl: Millis,
    marks: Vec<(SocketAddr, Millis)>,
}

impl Suspects {
    /// An empty set whose marks last `ttl` milliseconds.
    pub fn new(ttl: Millis) -> Suspects {
        Suspects { ttl, marks: Vec::new() }
    }

    /// The peer at `addr` failed to answer (or left) at `now`.
    pub fn mark(&mut self, addr: SocketAddr, now: Millis) {
        let until = now.saturating_add(self.ttl);
        self.marks.retain(|(a, u)| *a != addr && *u > now);
        if self.marks.len() >= MAX_SUSPECTS
            && let Some(pos) = self.marks.iter().enumerate().min_by_key(|(_, (_, u))| *u).map(|(i, _)| i)
        {
            self.marks.swap_remove(pos);
        }
        self.marks.push((addr, until));
    }

    /// The peer at `addr` showed a sign of life: trust it again.
    pub fn clear(&mut self, addr: SocketAddr) {
        if !self.marks.is_empty() {
            self.marks.retain(|(a, _)| *a != addr);
        }
    }

    /// Whether the peer at `addr` is still presumed dead at `now`.
    pub fn contains(&self, addr: SocketAddr, now: Millis) -> bool {
        self.marks.iter().any(|(a, u)| *a == addr && *u > now)
    }

    /// Drops the presumed-dead peers from `nodes`.
    pub fn retain_live(&self, nodes: &mut Vec<NodeRef>, now: Millis) {
        if !self.marks.is_empty() {
            nodes.retain(|n| !self.contains(n.addr, now));
        }
    }

    /// `node` unless it is presumed dead.
    pub fn live(&self, node: Option<NodeRef>, now: Millis) -> Option<NodeRef> {
        node.filter(|n| !self.contains(n.addr, now))
    }

    /// Peers currently marked (expired marks included until the next `mark` prunes them).
    pub fn len(&self) -> usize {
        self.marks.len()
    }

    /// Whether no peer is marked.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], i))
    }

    fn node(i: u16) -> NodeRef {
        NodeRef { id: Id::from_u64(i as u64), addr: addr(i) }
    }

    #[test]
    fn a_mark_lasts_its_ttl_and_a_sign_of_life_clears_it() {
        let mut s = Suspects::new(100);
        s.mark(addr(1), 1000);
        assert!(s.contains(addr(1), 1000) && s.contains(addr(1), 1099));
        assert!(!s.contains(addr(1), 1100), "expired");
        assert!(!s.contains(addr(2), 1000));
        s.mark(addr(1), 1200);
        s.clear(addr(1));
        assert!(!s.contains(addr(1), 1201));
        // Marking again extends the deadline instead of adding a second entry.
        s.mark(addr(3), 0);
        s.mark(addr(3), 50);
        assert_eq!(s.len(), 1);
        assert!(s.contains(addr(3), 149));
    }

    #[test]
    fn filters_lists_and_pointers() {
        let mut s = Suspects::new(100);
        s.mark(addr(2), 0);
        let mut list = vec![node(1), node(2), node(3)];
        s.retain_live(&mut list, 10);
        assert_eq!(list, vec![node(1), node(3)]);
        assert_eq!(s.live(Some(node(2)), 10), None);
        assert_eq!(s.live(Some(node(3)), 10), Some(node(3)));
        assert_eq!(s.live(Some(node(2)), 100), Some(node(2)), "expired");
    }

    #[test]
    fn the_set_stays_bounded_and_evicts_the_oldest_mark() {
        let mut s = Suspects::new(1_000_000);
        for i in 0..(MAX_SUSPECTS as u16 + 10) {
            s.mark(addr(i), i as Millis);
        }
        assert_eq!(s.len(), MAX_SUSPECTS);
        assert!(!s.contains(addr(0), 100), "oldest evicted");
        assert!(s.contains(addr(MAX_SUSPECTS as u16 + 9), 100));
        // Expired marks make room before any live one is evicted.
        let mut s = Suspects::new(10);
        for i in 0..(MAX_SUSPECTS as u16) {
            s.mark(addr(i), 0);
        }
        s.mark(addr(999), 20);
        assert_eq!(s.len(), 1);
    }
}
