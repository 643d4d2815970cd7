//! The iterative lookup state machine, shared by nodes (join, fix_fingers, user lookups) and by
//! the client: ask the best candidate, follow `Closer` answers, route around nodes that time out,
//! count hops and timeouts.
//!
//! Nodes learn about failures only through their own RPCs, so an answer may still name a dead
//! node. Every `FindSuccessor` therefore carries the nodes this lookup found dead, and when the
//! candidates run out the lookup asks the best node that already answered again, now telling
//! it which nodes to avoid: that node then answers from the rest of its fingers and successors.

use crate::id::Id;
use crate::wire::{NodeRef, Response};
use std::collections::HashSet;
use std::net::SocketAddr;

/// Upper bound on RPCs one lookup may send (hops plus timeouts), so no lookup runs forever.
pub const MAX_STEPS: u32 = 256;

/// What the lookup wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `FindSuccessor(target, avoid)` to this node (see [`Lookup::avoid`]).
    Ask(NodeRef),
    /// The target's successor list (first entry = the successor).
    Done(Vec<NodeRef>),
    /// No live candidate is left, or the step bound was hit.
    Failed,
}

/// An iterative find_successor in progress.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: Id,
    bits: u8,
    queue: Vec<NodeRef>,
    tried: HashSet<SocketAddr>,
    dead: Vec<NodeRef>,
    /// Nodes that answered, with how many dead nodes the lookup knew when they did.
    answered: Vec<(NodeRef, usize)>,
    current: Option<NodeRef>,
    rerouted_at: Option<usize>,
    /// FindSuccessor answers received.
    pub hops: u32,
    /// Candidates that failed to answer.
    pub timeouts: u32,
}

impl Lookup {
    /// A lookup for `target` starting from `candidates` (e.g. the local closest preceding
    /// nodes). A seed whose id is unknown may be given with id = target: it is asked first.
    pub fn new(target: Id, bits: u8, candidates: Vec<NodeRef>) -> Lookup {
        let mut l = Lookup {
            target,
            bits,
            queue: Vec::new(),
            tried: HashSet::new(),
            dead: Vec::new(),
            answered: Vec::new(),
            current: None,
            rerouted_at: None,
            hops: 0,
            timeouts: 0,
        };
        l.add(candidates);
        l
    }

    /// The id looked up.
    pub fn target(&self) -> Id {
        self.target
    }

    /// Ids of the nodes found dead so far (at most [`crate::wire::MAX_AVOID`], latest first):
    /// sent with every `FindSuccessor` so the answer leaves them out.
    pub fn avoid(&self) -> Vec<Id> {
        self.dead.iter().rev().take(crate::wire::MAX_AVOID).map(|n| n.id).collect()
    }

    /// For the node that started the lookup: whether it should consult its own routing table
    /// again (with [`avoid`](Self::avoid)) because the lookup ran out of candidates after
    /// finding more dead nodes than the last time it did so.
    pub fn may_reroute(&mut self) -> bool {
        let n = self.dead.len();
        if n == 0 || self.rerouted_at == Some(n) || self.hops + self.timeouts >= MAX_STEPS {
            return false;
        }
        self.rerouted_at = Some(n);
        true
    }

    /// Adds candidates (from the starting node's own table) and takes the next step.
    pub fn reseed(&mut self, nodes: Vec<NodeRef>) -> Step {
        self.add(nodes);
        self.next_step()
    }

    /// Whether the lookup already found `n` dead.
    pub fn is_dead(&self, n: &NodeRef) -> bool {
        self.dead.iter().any(|d| d.addr == n.addr)
    }

    fn add(&mut self, nodes: Vec<NodeRef>) {
        for n in nodes {
            if !self.tried.contains(&n.addr)
                && !self.is_dead(&n)
                && !self.queue.iter().any(|q| q.addr == n.addr)
            {
                self.queue.push(n);
            }
        }
        let (t, bits) = (self.target, self.bits);
        // Closest to the target (smallest clockwise distance to it) last, so pop() takes it.
        self.queue.sort_by_cached_key(|n| std::cmp::Reverse(n.id.distance_to(&t, bits)));
    }

    /// The next step: ask the best untried candidate, or re-ask the best node that answered
    /// before the lookup learned of more dead nodes.
    pub fn next_step(&mut self) -> Step {
        if self.hops + self.timeouts >= MAX_STEPS {
            return Step::Failed;
        }
        if let Some(n) = self.queue.pop() {
            self.tried.insert(n.addr);
            self.current = Some(n);
            return Step::Ask(n);
        }
        let known_dead = self.dead.len();
        let (t, bits) = (self.target, self.bits);
        let best = self
            .answered
            .iter_mut()
            .filter(|(_, seen)| *seen < known_dead)
            .min_by_key(|(n, _)| n.id.distance_to(&t, bits));
        match best {
            Some((n, seen)) => {
                *seen = known_dead;
                let n = *n;
                self.current = Some(n);
                Step::Ask(n)
            }
            None => Step::Failed,
        }
    }

    /// Feeds the answer of the node last asked.
    pub fn on_response(&mut self, resp: Response) -> Step {
        self.on_response_presuming(resp, Vec::new())
    }

    /// Feeds the answer of the node last asked, treating the nodes in `presumed` as dead
    /// without asking them (the starting node found them dead lately): they are no
    /// candidates, and they join [`avoid`](Self::avoid), so the node that named them may be
    /// asked again without them.
    pub fn on_response_presuming(&mut self, resp: Response, presumed: Vec<NodeRef>) -> Step {
        self.hops += 1;
        if let Some(n) = self.current.take() {
            let known = self.dead.len();
            match self.answered.iter_mut().find(|(a, _)| a.addr == n.addr) {
                Some(entry) => entry.1 = known,
                None => self.answered.push((n, known)),
            }
        }
        for node in presumed {
            if !self.is_dead(&node) {
                self.dead.push(node);
                self.queue.retain(|q| q.addr != node.addr);
            }
        }
        match resp {
            Response::Found { succs } => {
                let live: Vec<NodeRef> = succs.into_iter().filter(|n| !self.is_dead(n)).collect();
                if live.is_empty() { self.next_step() } else { Step::Done(live) }
            }
            Response::Closer { nodes } => {
                self.add(nodes);
                self.next_step()
            }
            _ => self.next_step(),
        }
    }

    /// The node last asked did not answer (or answered with an error).
    pub fn on_failure(&mut self, node: &NodeRef) -> Step {
        self.timeouts += 1;
        self.current = None;
        if !self.is_dead(node) {
            self.dead.push(*node);
        }
        self.answered.retain(|(a, _)| a.addr != node.addr);
        self.next_step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn n(id: u64) -> NodeRef {
        NodeRef { id: Id::from_u64(id), addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 1000 + id as u16)) }
    }

    #[test]
    fn follows_closer_nodes_and_routes_around_failures() {
        let mut l = Lookup::new(Id::from_u64(14), 4, vec![n(8), n(12), n(4)]);
        assert_eq!(l.next_step(), Step::Ask(n(12)));
        assert_eq!(l.on_failure(&n(12)), Step::Ask(n(8)));
        assert_eq!(l.avoid(), vec![Id::from_u64(12)]);
        assert_eq!(l.on_response(Response::Closer { nodes: vec![n(12), n(10)] }), Step::Ask(n(10)));
        assert_eq!(l.on_response(Response::Found { succs: vec![n(12), n(15)] }), Step::Done(vec![n(15)]));
        assert_eq!((l.hops, l.timeouts), (2, 1));
    }

    #[test]
    fn re_asks_an_answered_node_once_its_suggestion_died() {
        let mut l = Lookup::new(Id::from_u64(6), 4, vec![n(1)]);
        assert_eq!(l.next_step(), Step::Ask(n(1)));
        // 1 only knows 5 (dead) as closer; after 5 fails, 1 is asked again with avoid = [5].
        assert_eq!(l.on_response(Response::Closer { nodes: vec![n(5)] }), Step::Ask(n(5)));
        assert_eq!(l.on_failure(&n(5)), Step::Ask(n(1)));
        assert_eq!(l.avoid(), vec![Id::from_u64(5)]);
        assert_eq!(l.on_response(Response::Found { succs: vec![n(8)] }), Step::Done(vec![n(8)]));
        // Nothing left to re-ask once everyone answered with what is known.
        let mut l = Lookup::new(Id::from_u64(6), 4, vec![n(1)]);
        l.next_step();
        assert_eq!(l.on_response(Response::Closer { nodes: vec![] }), Step::Failed);
    }

    #[test]
    fn a_node_presumed_dead_is_avoided_like_one_that_timed_out() {
        let mut l = Lookup::new(Id::from_u64(6), 4, vec![n(1)]);
        assert_eq!(l.next_step(), Step::Ask(n(1)));
        // 1 names 5 (which the starting node found dead lately): 1 is asked again, told to
        // avoid 5, without a timeout on the way.
        let step = l.on_response_presuming(Response::Closer { nodes: vec![n(5)] }, vec![n(5)]);
        assert_eq!(step, Step::Ask(n(1)));
        assert_eq!(l.avoid(), vec![Id::from_u64(5)]);
        assert_eq!(l.on_response(Response::Found { succs: vec![n(5), n(8)] }), Step::Done(vec![n(8)]));
        assert_eq!((l.hops, l.timeouts), (2, 0));
    }
}
