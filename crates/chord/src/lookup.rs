//! The iterative lookup state machine, shared by nodes (join, fix_fingers, user lookups) and by
//! the client: ask the best candidate, follow `Closer` answers, route around nodes that time out,
//! count hops and timeouts.

use crate::id::Id;
use crate::wire::{NodeRef, Response};
use std::collections::HashSet;
use std::net::SocketAddr;

/// Upper bound on RPCs one lookup may send (hops plus timeouts), so no lookup runs forever.
pub const MAX_STEPS: u32 = 256;

/// What the lookup wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `FindSuccessor(target)` to this node.
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
    dead: HashSet<SocketAddr>,
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
            dead: HashSet::new(),
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

    fn add(&mut self, nodes: Vec<NodeRef>) {
        for n in nodes {
            if !self.tried.contains(&n.addr) && !self.queue.iter().any(|q| q.addr == n.addr) {
                self.queue.push(n);
            }
        }
        let (t, bits) = (self.target, self.bits);
        // Closest to the target (smallest clockwise distance to it) last, so pop() takes it.
        self.queue.sort_by_key(|n| std::cmp::Reverse(n.id.distance_to(&t, bits)));
    }

    /// The next step: ask the best untried candidate.
    pub fn next_step(&mut self) -> Step {
        if self.hops + self.timeouts >= MAX_STEPS {
            return Step::Failed;
        }
        match self.queue.pop() {
            Some(n) => {
                self.tried.insert(n.addr);
                Step::Ask(n)
            }
            None => Step::Failed,
        }
    }

    /// Feeds the answer of the node last asked.
    pub fn on_response(&mut self, resp: Response) -> Step {
        self.hops += 1;
        match resp {
            Response::Found { succs } => {
                let live: Vec<NodeRef> = succs.into_iter().filter(|n| !self.dead.contains(&n.addr)).collect();
                if live.is_empty() { self.next_step() } else { Step::Done(live) }
            }
            Response::Closer { nodes } => {
                let nodes = nodes.into_iter().filter(|n| !self.dead.contains(&n.addr)).collect();
                self.add(nodes);
                self.next_step()
            }
            _ => self.next_step(),
        }
    }

    /// The node last asked did not answer (or answered with an error).
    pub fn on_failure(&mut self, node: &NodeRef) -> Step {
        self.timeouts += 1;
        self.dead.insert(node.addr);
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
        assert_eq!(l.on_response(Response::Closer { nodes: vec![n(12), n(10)] }), Step::Ask(n(10)));
        assert_eq!(l.on_response(Response::Found { succs: vec![n(12), n(15)] }), Step::Done(vec![n(15)]));
        assert_eq!((l.hops, l.timeouts), (2, 1));
    }
}
