//! A discrete-event simulator that runs the sans-IO [`Node`] core with virtual time and a random
//! per-message latency: thousands of nodes in one process, no sockets, deterministic for a seed.
//!
//! Node i has the address 10.x.y.z:4000 for x.y.z = i + 1, so the core and its messages are the
//! same as on real sockets. A message to a dead node produces a failure after the RPC timeout.

mod rng;

pub use rng::Rng;

use crate::id::Id;
use crate::node::{Event, Node, Origin, Output, Params, RpcFailure};
use crate::time::Millis;
use crate::wire::{NodeRef, Request, Response};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Network model of the simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Mean one-way message latency (exponentially distributed, as in the Chord paper).
    pub mean_latency_ms: f64,
    /// Longest one-way latency.
    pub max_latency_ms: u64,
    /// Time after which an RPC to a dead node is reported failed.
    pub rpc_timeout_ms: Millis,
    /// Seed of every random choice.
    pub seed: u64,
    /// Hand requests to nodes as from an unauthenticated sender at the sending node's address
    /// ([`Origin::Peer`]), as on a ring without a secret; false = [`Origin::Trusted`].
    pub verify_claims: bool,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            mean_latency_ms: 50.0,
            max_latency_ms: 400,
            rpc_timeout_ms: 500,
            seed: 1,
            verify_claims: false,
        }
    }
}

#[derive(Debug)]
enum Ev {
    Deliver {
        from: usize,
        to: usize,
        token: u64,
        req: Request,
    },
    /// A request from outside the ring (a forger at `from`); its answer is dropped.
    Inject {
        from: IpAddr,
        to: usize,
        req: Request,
    },
    Reply {
        to: usize,
        token: u64,
        result: Result<Response, RpcFailure>,
    },
    Wake {
        node: usize,
    },
}

struct Entry {
    at: Millis,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One simulated node: the core, whether its process is alive, and its pending wake-up.
pub struct SimNode {
    /// The protocol state.
    pub node: Node,
    /// False once killed (or left).
    pub alive: bool,
    wake: Option<Millis>,
}

/// The simulator: nodes, the event queue and virtual time.
pub struct Sim {
    /// Virtual time now.
    pub now: Millis,
    /// All nodes ever created, by index.
    pub nodes: Vec<SimNode>,
    /// Protocol parameters given to new nodes.
    pub params: Params,
    /// Network model.
    pub config: SimConfig,
    /// Random source for latencies (experiments may use it too).
    pub rng: Rng,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    events: Vec<(usize, Event)>,
    /// Recursive lookups waiting for their answer: reply token → (asking node, its RPC token).
    deferred: std::collections::HashMap<u64, (usize, u64)>,
    next_reply: u64,
    /// Messages delivered so far.
    pub messages: u64,
}

/// The simulated address of node `i`.
pub fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0001u32 + i as u32), 4000))
}

/// The node index of a simulated address.
pub fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) => (u32::from(*a.ip()) as usize).checked_sub(0x0a00_0001),
        SocketAddr::V6(_) => None,
    }
}

impl Sim {
    /// An empty network.
    pub fn new(params: Params, config: SimConfig) -> Sim {
        let rng = Rng::new(config.seed);
        Sim {
            now: 0,
            nodes: Vec::new(),
            params,
            config,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            events: Vec::new(),
            deferred: std::collections::HashMap::new(),
            next_reply: 0,
            messages: 0,
        }
    }

    /// Adds a live node with this id, alone on its ring until it joins or is installed.
    pub fn add_node(&mut self, id: Id) -> usize {
        let i = self.nodes.len();
        let node = Node::new(self.params.clone(), NodeRef { id, addr: addr_of(i) }, self.now);
        self.nodes.push(SimNode { node, alive: true, wake: None });
        self.pump(i);
        i
    }

    /// Builds a converged ring of nodes with these ids (exact successor lists, predecessors and
    /// fingers), as if it had run stabilization forever. Returns the node indices, in `ids` order.
    pub fn build_converged(&mut self, ids: &[Id]) -> Vec<usize> {
        let idx: Vec<usize> = ids.iter().map(|id| self.add_node(*id)).collect();
        let mut ring: Vec<NodeRef> = idx.iter().map(|&i| self.nodes[i].node.me()).collect();
        ring.sort_by_key(|n| n.id);
        let bits = self.params.bits;
        let r = self.params.successors;
        let n = ring.len();
        for (pos, me) in ring.iter().enumerate() {
            let pred = if n > 1 { Some(ring[(pos + n - 1) % n]) } else { None };
            let succs: Vec<NodeRef> = (1..=r.min(n.saturating_sub(1))).map(|k| ring[(pos + k) % n]).collect();
            let mut fingers = Vec::with_capacity(bits as usize);
            for k in 0..bits {
                let start = me.id.add_pow2(k, bits);
                fingers.push(if n > 1 { Some(successor_in(&ring, &start)) } else { None });
            }
            let i = index_of(me.addr).expect("sim address");
            self.nodes[i].node.install(pred, succs, fingers);
        }
        idx
    }

    /// Starts a new node with `id` that joins through node `via`.
    pub fn join(&mut self, id: Id, via: usize) -> usize {
        let i = self.add_node(id);
        self.nodes[i].node.join(self.now, addr_of(via));
        self.pump(i);
        i
    }

    /// Kills node i abruptly: it stops answering and its state is frozen.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
    }

    /// Node i leaves gracefully (hand-over), then stops.
    pub fn leave(&mut self, i: usize) {
        self.nodes[i].node.leave(self.now);
        self.pump(i);
    }

    /// Delivers `req` to node `to` after one latency, as sent by a host at `from` that is not
    /// a node (an attacker): unauthenticated ([`Origin::Peer`]) when the simulator checks
    /// claims, else believed as every sender is; the answer is dropped.
    pub fn inject(&mut self, from: IpAddr, to: usize, req: Request) {
        let at = self.now + self.latency();
        self.push(at, Ev::Inject { from, to, req });
    }

    /// Starts a lookup of `id` at node i; the result comes back from [`take_events`](Self::take_events).
    pub fn lookup(&mut self, i: usize, id: Id) -> u64 {
        let op = self.nodes[i].node.lookup(self.now, id);
        self.pump(i);
        op
    }

    /// Starts a recursive lookup of `id` at node i (forwarded node to node).
    pub fn lookup_recursive(&mut self, i: usize, id: Id) -> u64 {
        let op = self.nodes[i].node.lookup_recursive(self.now, id);
        self.pump(i);
        op
    }

    /// Starts a read of `key` at node i.
    pub fn get(&mut self, i: usize, key: Vec<u8>) -> u64 {
        let op = self.nodes[i].node.get(self.now, key);
        self.pump(i);
        op
    }

    /// Events raised by nodes since the last call, as (node index, event).
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Indices of live nodes that are part of the ring.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].node.phase() == crate::node::Phase::Active)
            .collect()
    }

    /// The live ring, sorted by id (the oracle lookups are checked against).
    pub fn live_ring(&self) -> Vec<NodeRef> {
        let mut v: Vec<NodeRef> = self.live().into_iter().map(|i| self.nodes[i].node.me()).collect();
        v.sort_by_key(|n| n.id);
        v
    }

    fn push(&mut self, at: Millis, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Entry { at, seq: self.seq, ev }));
    }

    fn latency(&mut self) -> Millis {
        let l = self.rng.exp(self.config.mean_latency_ms);
        (l as Millis).clamp(1, self.config.max_latency_ms.max(1))
    }

    /// Moves node i's outputs into the network and re-arms its timer.
    fn pump(&mut self, i: usize) {
        while let Some(Output::Send { token, to, req }) = self.nodes[i].node.poll_output() {
            match index_of(to).filter(|&t| t < self.nodes.len()) {
                Some(t) => {
                    let at = self.now + self.latency();
                    self.push(at, Ev::Deliver { from: i, to: t, token, req });
                }
                None => {
                    let at = self.now + self.config.rpc_timeout_ms;
                    self.push(at, Ev::Reply { to: i, token, result: Err(RpcFailure::Unreachable) });
                }
            }
        }
        while let Some(ev) = self.nodes[i].node.poll_event() {
            match ev {
                Event::Reply { reply_to, response } => {
                    if let Some((from, token)) = self.deferred.remove(&reply_to) {
                        let at = self.now + self.latency();
                        self.push(at, Ev::Reply { to: from, token, result: Ok(response) });
                    }
                }
                ev => self.events.push((i, ev)),
            }
        }
        let want = self.nodes[i].node.poll_timeout();
        if want.is_some() && want != self.nodes[i].wake {
            self.nodes[i].wake = want;
            let at = want.unwrap_or(0).max(self.now);
            self.push(at, Ev::Wake { node: i });
        }
    }

    /// Processes events until virtual time `until` (inclusive).
    pub fn run_until(&mut self, until: Millis) {
        while let Some(Reverse(top)) = self.queue.peek() {
            if top.at > until {
                break;
            }
            let Some(Reverse(Entry { at, ev, .. })) = self.queue.pop() else { break };
            self.now = self.now.max(at);
            self.step(ev);
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, token, req } => {
                self.messages += 1;
                if !self.nodes[to].alive {
                    let at = self.now + self.config.rpc_timeout_ms;
                    self.push(at, Ev::Reply { to: from, token, result: Err(RpcFailure::Unreachable) });
                    return;
                }
                // A separate counter: event order (and so every result) stays independent of
                // how many requests were handed in.
                self.next_reply += 1;
                let reply_to = self.next_reply;
                let origin = if self.config.verify_claims {
                    Origin::Peer(addr_of(from).ip())
                } else {
                    Origin::Trusted
                };
                let answer = self.nodes[to].node.handle_request_deferred(self.now, origin, req, reply_to);
                self.pump(to);
                match answer {
                    Some(resp) => {
                        let at = self.now + self.latency();
                        self.push(at, Ev::Reply { to: from, token, result: Ok(resp) });
                    }
                    None => {
                        self.deferred.insert(reply_to, (from, token));
                    }
                }
            }
            Ev::Inject { from, to, req } => {
                self.messages += 1;
                if self.nodes[to].alive {
                    self.next_reply += 1;
                    let reply_to = self.next_reply;
                    let origin = if self.config.verify_claims { Origin::Peer(from) } else { Origin::Trusted };
                    let _ = self.nodes[to].node.handle_request_deferred(self.now, origin, req, reply_to);
                    self.pump(to);
                }
            }
            Ev::Reply { to, token, result } => {
                if self.nodes[to].alive {
                    self.nodes[to].node.handle_reply(self.now, token, result);
                    self.pump(to);
                }
            }
            Ev::Wake { node } => {
                let n = &mut self.nodes[node];
                // Stale wake-ups (the deadline moved) find nothing due and do nothing.
                if n.alive && n.node.poll_timeout().is_some_and(|t| t <= self.now) {
                    n.wake = None;
                    n.node.handle_timeout(self.now);
                    self.pump(node);
                }
            }
        }
    }
}

/// The first node at or after `id` on a ring sorted by id.
pub fn successor_in(ring: &[NodeRef], id: &Id) -> NodeRef {
    let pos = ring.partition_point(|n| n.id < *id);
    ring[pos % ring.len()]
}
