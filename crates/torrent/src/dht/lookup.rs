//! An iterative Kademlia lookup (BEP 5): ask the alpha=3 closest not-yet-asked nodes at a time,
//! learn closer nodes from their answers, stop when the 8 closest live candidates have all
//! answered. get_peers lookups also collect peers and the tokens needed to announce.

use super::krpc::{Id, NodeInfo, Response};
use super::table::{K, distance};
use std::net::SocketAddrV4;

/// Queries in flight at once per lookup.
pub const ALPHA: usize = 3;
/// Most candidates remembered per lookup.
pub const MAX_CANDIDATES: usize = 64;
/// Most queries one lookup may send.
pub const MAX_QUERIES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Asked,
    Replied,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    /// The id we were told (for bootstrap routers, a placeholder until they answer).
    id: Id,
    addr: SocketAddrV4,
    state: State,
    token: Option<Vec<u8>>,
}

/// One lookup's progress.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: Id,
    cands: Vec<Candidate>,
    queries: usize,
}

impl Lookup {
    /// Starts a lookup for `target` from `seeds`.
    pub fn new(target: Id, seeds: impl IntoIterator<Item = NodeInfo>) -> Lookup {
        let mut l = Lookup { target, cands: Vec::new(), queries: 0 };
        l.add(seeds);
        l
    }

    /// The id looked for.
    pub fn target(&self) -> Id {
        self.target
    }

    fn sort(&mut self) {
        let t = self.target;
        self.cands.sort_by_key(|c| distance(&c.id, &t));
    }

    /// Adds nodes learned from an answer (known addresses are ignored).
    pub fn add(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) {
        for n in nodes {
            if self.cands.iter().any(|c| c.addr == n.addr) {
                continue;
            }
            self.cands.push(Candidate { id: n.id, addr: n.addr, state: State::New, token: None });
        }
        self.sort();
        // Keep the closest, but never forget a node we are waiting on.
        let mut kept = 0;
        self.cands.retain(|c| {
            kept += 1;
            kept <= MAX_CANDIDATES || c.state == State::Asked
        });
    }

    fn in_flight(&self) -> usize {
        self.cands.iter().filter(|c| c.state == State::Asked).count()
    }

    /// The next node to query, if fewer than [`ALPHA`] are in flight and a not-yet-asked node is
    /// among the closest [`K`] live candidates. Marks it asked.
    pub fn next_query(&mut self) -> Option<SocketAddrV4> {
        if self.in_flight() >= ALPHA || self.queries >= MAX_QUERIES {
            return None;
        }
        let c = self
            .cands
            .iter_mut()
            .filter(|c| c.state != State::Failed)
            .take(K)
            .find(|c| c.state == State::New)?;
        c.state = State::Asked;
        self.queries += 1;
        Some(c.addr)
    }

    /// Records the answer from `addr` and learns the nodes it names.
    pub fn replied(&mut self, addr: SocketAddrV4, r: &Response) {
        if let Some(c) = self.cands.iter_mut().find(|c| c.addr == addr) {
            c.state = State::Replied;
            c.id = r.id;
            c.token = r.token.clone();
        }
        self.add(r.nodes.iter().copied());
    }

    /// Records that `addr` did not answer (or answered with an error).
    pub fn failed(&mut self, addr: SocketAddrV4) {
        if let Some(c) = self.cands.iter_mut().find(|c| c.addr == addr) {
            c.state = State::Failed;
        }
    }

    /// Whether the lookup is over: nothing in flight and no unasked node among the closest K
    /// live candidates (or the query budget is spent).
    pub fn done(&self) -> bool {
        let open =
            self.cands.iter().filter(|c| c.state != State::Failed).take(K).any(|c| c.state == State::New);
        self.in_flight() == 0 && (!open || self.queries >= MAX_QUERIES)
    }

    /// The closest [`K`] nodes that answered, with the tokens they gave.
    pub fn closest(&self) -> Vec<(NodeInfo, Option<Vec<u8>>)> {
        self.cands
            .iter()
            .filter(|c| c.state == State::Replied)
            .take(K)
            .map(|c| (NodeInfo { id: c.id, addr: c.addr }, c.token.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn n(b: u8) -> NodeInfo {
        NodeInfo { id: [b; 20], addr: SocketAddrV4::new(Ipv4Addr::LOCALHOST, u16::from(b) + 1000) }
    }

    #[test]
    fn converges_on_the_closest_nodes() {
        let mut l = Lookup::new([0; 20], (0x80..0x88).map(n));
        let first: Vec<_> = std::iter::from_fn(|| l.next_query()).collect();
        assert_eq!(first.len(), ALPHA, "alpha at a time");
        assert_eq!(first[0], n(0x80).addr, "closest first");
        // The first answers with much closer nodes: they go to the front of the queue.
        l.replied(
            first[0],
            &Response { id: [0x80; 20], nodes: (1..=8).map(n).collect(), ..Default::default() },
        );
        assert_eq!(l.next_query(), Some(n(1).addr));
        l.replied(n(1).addr, &Response { id: [1; 20], token: Some(vec![1]), ..Default::default() });
        l.failed(first[1]);
        l.failed(first[2]);
        let mut rounds = 0;
        while !l.done() {
            rounds += 1;
            assert!(rounds < 100);
            let Some(a) = l.next_query() else { break };
            let b = (a.port() - 1000) as u8;
            l.replied(a, &Response { id: [b; 20], token: Some(vec![b]), ..Default::default() });
        }
        assert!(l.done());
        let closest: Vec<u8> = l.closest().iter().map(|(n, _)| n.id[0]).collect();
        assert_eq!(closest, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(l.closest()[0].1, Some(vec![1]));
    }

    #[test]
    fn empty_lookup_is_done_and_budget_is_bounded() {
        assert!(Lookup::new([0; 20], []).done());
        let mut l = Lookup::new([0; 20], [n(1)]);
        let mut sent = 0;
        while let Some(a) = l.next_query() {
            sent += 1;
            // Every answer names fresh closer-looking nodes; the budget still ends the lookup.
            let more = (0..8u16).map(|i| NodeInfo {
                id: [0; 20],
                addr: SocketAddrV4::new(Ipv4Addr::new(10, 0, (sent >> 8) as u8, sent as u8), 2000 + i),
            });
            l.replied(a, &Response { id: [1; 20], nodes: more.collect(), ..Default::default() });
        }
        assert!(sent <= MAX_QUERIES);
        assert!(l.done());
    }
}
