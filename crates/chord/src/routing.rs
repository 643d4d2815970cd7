//! A node's routing state: predecessor, successor list and finger table, and the pure routing
//! decisions made from it (closest preceding node, one step of find_successor, failure purge).

use crate::id::Id;
use crate::wire::{NodeRef, Response};
use std::net::SocketAddr;

/// How many next hops a `Closer` answer offers, so a lookup can route around a dead one.
pub const CLOSER_CANDIDATES: usize = 3;

/// Predecessor, successors and fingers of one node.
#[derive(Debug, Clone)]
pub struct Routing {
    /// This node.
    pub me: NodeRef,
    /// Identifier width m.
    pub bits: u8,
    /// Longest successor list kept (r).
    pub r: usize,
    /// The predecessor, if known and believed alive.
    pub pred: Option<NodeRef>,
    /// The first r successors, nearest first; empty when the node believes it is alone.
    pub succs: Vec<NodeRef>,
    /// finger[k] = successor(me + 2^k), when known.
    pub fingers: Vec<Option<NodeRef>>,
}

impl Routing {
    /// A node alone on its ring.
    pub fn new(me: NodeRef, bits: u8, r: usize) -> Routing {
        Routing { me, bits, r: r.max(1), pred: None, succs: Vec::new(), fingers: vec![None; bits as usize] }
    }

    /// The first successor, or this node when alone.
    pub fn successor(&self) -> NodeRef {
        self.succs.first().copied().unwrap_or(self.me)
    }

    /// Start of finger k: me + 2^k mod 2^m.
    pub fn finger_start(&self, k: u8) -> Id {
        self.me.id.add_pow2(k, self.bits)
    }

    /// Replaces the successor list with `list`, dropping this node and duplicates, keeping the
    /// r nearest in ring order.
    pub fn set_successors(&mut self, list: impl IntoIterator<Item = NodeRef>) {
        let me = self.me;
        let bits = self.bits;
        let mut v: Vec<NodeRef> = list.into_iter().filter(|n| n.addr != me.addr && n.id != me.id).collect();
        v.sort_by_cached_key(|n| me.id.distance_to(&n.id, bits));
        v.dedup_by(|a, b| a.id == b.id);
        v.truncate(self.r);
        self.succs = v;
        if let (Some(s), Some(f)) = (self.succs.first(), self.fingers.first_mut()) {
            *f = Some(*s);
        }
    }

    /// Forgets every pointer to the node at `addr` (it failed to answer). Returns whether the
    /// first successor was among them.
    pub fn purge(&mut self, addr: SocketAddr) -> bool {
        let was_first = self.succs.first().is_some_and(|s| s.addr == addr);
        self.succs.retain(|n| n.addr != addr);
        if self.pred.is_some_and(|p| p.addr == addr) {
            self.pred = None;
        }
        for f in self.fingers.iter_mut() {
            if f.is_some_and(|n| n.addr == addr) {
                *f = None;
            }
        }
        if self.succs.is_empty() {
            // Textbook repair when the whole list is gone: fall back on the nearest finger.
            let me = self.me;
            let bits = self.bits;
            if let Some(best) =
                self.fingers.iter().flatten().copied().min_by_key(|n| me.id.distance_to(&n.id, bits))
            {
                self.succs.push(best);
            }
        }
        was_first
    }

    /// Up to `k` known nodes strictly between this node and `target`, closest to `target` first
    /// (fingers and successor list both count).
    pub fn closest_preceding(&self, target: &Id, k: usize, avoid: &[Id]) -> Vec<NodeRef> {
        let me = self.me.id;
        // Keep the k best by insertion: fingers repeat a lot, so this beats sort + dedup.
        let mut best: Vec<(Id, NodeRef)> = Vec::with_capacity(k + 1);
        let mut last: Option<Id> = None;
        for n in self.fingers.iter().rev().flatten().chain(self.succs.iter()) {
            // Neighbouring fingers usually name the same node: skip repeats cheaply.
            if last == Some(n.id) {
                continue;
            }
            last = Some(n.id);
            if !n.id.in_open(&me, target) || best.iter().any(|(_, b)| b.id == n.id) || avoid.contains(&n.id) {
                continue;
            }
            let d = n.id.distance_to(target, self.bits);
            if best.len() == k && best.last().is_some_and(|(worst, _)| d >= *worst) {
                continue;
            }
            let pos = best.partition_point(|(bd, _)| *bd <= d);
            best.insert(pos, (d, *n));
            best.truncate(k);
        }
        best.into_iter().map(|(_, n)| n).collect()
    }

    /// One step of find_successor(target) at this node: `Found` when target is in
    /// (me, successor], else the closest preceding nodes to ask next. Nodes in `avoid` (dead,
    /// as far as the asker knows) are left out of both answers.
    pub fn route(&self, target: &Id, avoid: &[Id]) -> Response {
        if self.succs.is_empty() {
            return Response::Found { succs: vec![self.me] };
        }
        let succs: Vec<NodeRef> = self.succs.iter().filter(|s| !avoid.contains(&s.id)).copied().collect();
        if let Some(first) = succs.first()
            && target.in_half_open(&self.me.id, &first.id)
        {
            return Response::Found { succs };
        }
        let nodes = self.closest_preceding(target, CLOSER_CANDIDATES, avoid);
        match (nodes.is_empty(), succs.is_empty()) {
            (false, _) => Response::Closer { nodes },
            (true, false) => Response::Found { succs },
            // Every successor we know is avoided: we cannot name the target's successor; the
            // asker goes on with its other candidates.
            (true, true) => Response::Found { succs: Vec::new() },
        }
    }

    /// Whether this node is responsible for `id`, i.e. id ∈ (pred, me]. Unknown predecessor:
    /// assume yes.
    pub fn owns(&self, id: &Id) -> bool {
        match &self.pred {
            Some(p) => id.in_half_open(&p.id, &self.me.id),
            None => true,
        }
    }

    /// Distinct fingers as (index, node), for `Info`.
    pub fn distinct_fingers(&self) -> Vec<(u8, NodeRef)> {
        let mut out: Vec<(u8, NodeRef)> = Vec::new();
        for (k, f) in self.fingers.iter().enumerate() {
            if let Some(n) = f
                && out.last().is_none_or(|(_, last)| last.id != n.id)
            {
                out.push((k as u8, *n));
            }
        }
        out
    }
}
