//! The sans-IO Chord node: routing maintenance (join, stabilize, notify, fix_fingers,
//! check_predecessor), failure handling, replication and key hand-over, and lookups. It never
//! touches a socket or a clock: drivers pass `now` (milliseconds on any monotonic scale), feed
//! requests and replies in, and carry out the [`Output`]s it returns. The TCP server and the
//! simulator drive this same code.

use crate::id::Id;
use crate::lookup::{Lookup, Step};
use crate::routing::Routing;
use crate::stats::Counters;
use crate::store::{Store, Tombstones};
use crate::suspects::Suspects;
use crate::time::Millis;
use crate::wire::{ErrorCode, Item, NodeRef, Request, Response};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// Most bytes of item data sent in one `Store` message during hand-over or replication.
const STORE_BATCH_BYTES: usize = 1024 * 1024;

/// Most arcs of foreign items one garbage-collection round checks (a lookup and a
/// `GetNeighbors` each), so a round's cost stays bounded however many arcs a node holds.
const MAX_GC_ARCS: u32 = 16;

/// Who sent a request, as far as the node can tell. Exists so that the node believes the
/// messages that change its routing or its data (`Notify`, `Leaving`, `Store`) only as far as
/// their sender is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A node of the ring: the frame carried a valid HMAC under the ring secret (or the
    /// driver is the simulator, or a test). Claims are believed.
    Trusted,
    /// Anyone who can reach the port, from this IP address (no ring secret). A `Notify` must
    /// name a node at this IP whose id is SHA-1 of its address or who confirms it when probed;
    /// a `Leaving` is believed only once a probe of the named node fails; a `Store` is kept
    /// only from the IP of a neighbour, or of the key's holders as a lookup finds them.
    Peer(IpAddr),
}

/// Tunables of the protocol (not of the transport).
#[derive(Debug, Clone)]
pub struct Params {
    /// Identifier width m (1..=160).
    pub bits: u8,
    /// Successor list length r.
    pub successors: usize,
    /// Copies of each key: on its successor and the next `replicas - 1` nodes.
    pub replicas: usize,
    /// Mean interval between stabilize rounds.
    pub stabilize_ms: Millis,
    /// Mean interval between fix_fingers steps (one finger lookup each).
    pub fix_fingers_ms: Millis,
    /// Mean interval between predecessor pings.
    pub check_predecessor_ms: Millis,
    /// Full re-replication every this many stabilize rounds (besides on every change).
    pub replicate_every: u32,
    /// Largest value accepted by `Put`.
    pub max_value: usize,
    /// Most items this node stores; `Put` beyond it is refused.
    pub max_items: usize,
    /// Most bytes of keys and values this node stores.
    pub max_bytes: usize,
    /// Interval between garbage-collection rounds, which drop items this node holds although
    /// it is neither their owner nor one of the owner's replica holders; 0 = never.
    pub gc_ms: Millis,
    /// Most checks of unauthenticated claims (probes of a `Notify` or `Leaving` node, owner
    /// lookups for a `Store`) in flight at once; claims beyond it are refused, so forged
    /// messages cannot make a node send unbounded traffic.
    pub max_claim_checks: usize,
}

impl Params {
    /// How long a peer found dead is kept out of what this node adopts from other nodes
    /// (successor lists, predecessor pointers, lookup answers): long enough for every node
    /// that still names it to notice the failure itself (a few stabilize and predecessor
    /// check periods), short enough that a wrongly suspected peer soon comes back.
    pub fn suspect_ms(&self) -> Millis {
        4 * self.stabilize_ms.max(self.check_predecessor_ms).max(1)
    }
}

impl Default for Params {
    fn default() -> Params {
        Params {
            bits: 160,
            successors: 3,
            replicas: 3,
            stabilize_ms: 1000,
            fix_fingers_ms: 250,
            check_predecessor_ms: 2000,
            replicate_every: 10,
            max_value: 64 * 1024,
            max_items: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            gc_ms: 10_000,
            max_claim_checks: 16,
        }
    }
}

/// Something the driver must do for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `req` to `to`; report the reply (or failure) with [`Node::handle_reply`] and `token`.
    Send { token: u64, to: SocketAddr, req: Request },
}

/// Why an RPC got no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcFailure {
    /// No answer in time, connection refused or reset: the peer is presumed dead.
    Unreachable,
    /// The peer answered with an error.
    Refused,
}

/// A finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupOutcome {
    /// The key's successor list (owner first).
    pub succs: Vec<NodeRef>,
    /// FindSuccessor RPCs answered on the way.
    pub hops: u32,
    /// RPCs that timed out on the way.
    pub timeouts: u32,
}

/// Things that happened, for drivers, tests and the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The node found its successor and is part of the ring.
    Joined,
    /// The join attempt failed; it is retried after a stabilize interval.
    JoinFailed(String),
    /// Graceful leave finished: keys and neighbours handed over.
    Left,
    /// A lookup started with [`Node::lookup`] finished (`None` = failed).
    LookupDone { op: u64, outcome: Option<LookupOutcome> },
    /// The deferred answer to a request handed in with [`Node::handle_request_deferred`].
    Reply { reply_to: u64, response: Response },
    /// A read started with [`Node::get`] finished.
    GetDone { op: u64, value: Option<Vec<u8>>, outcome: Option<LookupOutcome> },
}

/// Lifecycle of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking up its successor through a bootstrap node.
    Joining,
    /// Part of the ring.
    Active,
    /// Handing over before leaving.
    Leaving,
    /// Gone.
    Left,
}

#[derive(Debug)]
enum Purpose {
    Join,
    Finger(u8),
    User(u64),
    Get(u64, Vec<u8>),
    /// Who owns this id? (garbage collection)
    Gc(Id),
    /// Who holds these items? Kept if a holder has the sender's IP.
    StoreCheck(IpAddr, Vec<Item>),
}

/// An arc of the circle whose items garbage collection has already decided on this round.
#[derive(Debug, Clone, Copy)]
enum Checked {
    /// (a, b]
    Arc(Id, Id),
    /// Just this id (its owner's predecessor was unknown).
    Id(Id),
}

impl Checked {
    fn covers(&self, id: &Id) -> bool {
        match self {
            Checked::Arc(a, b) => id.in_half_open(a, b),
            Checked::Id(x) => x == id,
        }
    }
}

/// Who waits for a recursive lookup this node forwarded.
#[derive(Debug, Clone, Copy)]
enum ReplyTo {
    /// A request from the network, answered through [`Event::Reply`].
    Remote(u64),
    /// A lookup started here with [`Node::lookup_recursive`].
    Local(u64),
}

/// Longest path a recursive lookup may travel.
const MAX_ROUTE_HOPS: u8 = 64;

#[derive(Debug)]
enum Pending {
    Lookup {
        purpose: Purpose,
        lookup: Lookup,
        asked: NodeRef,
    },
    Fetch {
        op: u64,
        key: Vec<u8>,
        rest: Vec<NodeRef>,
        asked: NodeRef,
        outcome: LookupOutcome,
    },
    Stabilize {
        to: NodeRef,
    },
    CheckPredecessor {
        to: NodeRef,
    },
    Forward {
        reply: ReplyTo,
        id: Id,
        hops: u8,
        asked: NodeRef,
        rest: Vec<NodeRef>,
        dead: Vec<Id>,
    },
    Fire,
    /// Part of a graceful leave: `req` goes to the next of `rest` if this recipient fails, so
    /// a dead first successor does not take the handed-over items with it.
    LeaveHandover {
        req: Request,
        rest: Vec<NodeRef>,
    },
    /// Garbage collection asked the owner of `key` for its predecessor and successors.
    GcNeighbors {
        owner: NodeRef,
        key: Id,
    },
    /// Garbage collection handed these items to their owner; dropped here once it accepts.
    GcAdopt {
        items: Vec<Item>,
    },
    /// An unauthenticated `Notify` named `node`: believed if it answers the probe as itself.
    VerifyNotify {
        node: NodeRef,
    },
    /// An unauthenticated `Leaving` named `node`: believed only if the probe fails.
    VerifyLeaving {
        node: NodeRef,
        pred: Option<NodeRef>,
        succs: Vec<NodeRef>,
    },
}

/// One Chord node's protocol state.
#[derive(Debug)]
pub struct Node {
    params: Params,
    rt: Routing,
    store: Store,
    phase: Phase,
    bootstrap: Option<SocketAddr>,
    next_stabilize: Millis,
    next_fix: Millis,
    next_check: Millis,
    next_finger: u8,
    stabilizing: bool,
    fixing: bool,
    checking: bool,
    rounds: u32,
    replicated: Option<(Option<Id>, Vec<Id>)>,
    /// RPCs awaiting an answer: the peer asked and what to do with the answer.
    pending: HashMap<u64, (SocketAddr, Pending)>,
    /// Peers found dead lately, not adopted again from other nodes' state meanwhile.
    suspects: Suspects,
    next_token: u64,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    rng: u64,
    started: Millis,
    counters: Counters,
    tombstones: Tombstones,
    next_gc: Millis,
    /// The garbage-collection round in progress: arcs decided so far, arcs asked about.
    gc: Option<(Vec<Checked>, u32)>,
    gc_started: Millis,
}

impl Node {
    /// A node alone on its own ring (the first node), or ready to [`join`](Self::join) one.
    pub fn new(params: Params, me: NodeRef, now: Millis) -> Node {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ me.addr.port() as u64;
        for b in me.id.0 {
            seed = seed.rotate_left(8) ^ b as u64;
        }
        let bits = params.bits;
        let mut node = Node {
            rt: Routing::new(me, bits, params.successors),
            store: Store::new(bits),
            phase: Phase::Active,
            bootstrap: None,
            next_stabilize: now,
            next_fix: now,
            next_check: now,
            next_finger: 0,
            stabilizing: false,
            fixing: false,
            checking: false,
            rounds: 0,
            replicated: None,
            pending: HashMap::new(),
            suspects: Suspects::new(params.suspect_ms()),
            next_token: 1,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            rng: seed | 1,
            started: now,
            counters: Counters::default(),
            tombstones: Tombstones::default(),
            next_gc: now,
            gc: None,
            gc_started: now,
            params,
        };
        // No draw from the jitter generator: with gc off the timers stay as they always were.
        if node.params.gc_ms > 0 {
            node.next_gc = now + node.params.gc_ms / 2 + node.rng % (node.params.gc_ms + 1);
        }
        node.next_stabilize = now + node.jitter(node.params.stabilize_ms);
        node.next_fix = now + node.jitter(node.params.fix_fingers_ms);
        node.next_check = now + node.jitter(node.params.check_predecessor_ms);
        node
    }

    /// This node's identity.
    pub fn me(&self) -> NodeRef {
        self.rt.me
    }

    /// The protocol parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Where in its lifecycle the node is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The routing state (predecessor, successors, fingers).
    pub fn routing(&self) -> &Routing {
        &self.rt
    }

    /// The items held.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the node counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Items whose id lies in this node's own arc (pred, me]: the ones it owns.
    pub fn owned_items(&self) -> usize {
        let me = self.rt.me.id;
        match self.rt.pred {
            Some(p) => self.store.ids().filter(|id| id.in_half_open(&p.id, &me)).count(),
            None => self.store.len(),
        }
    }

    /// Every figure `Stats` answers with: the store, the routing table and the counters.
    pub fn stats(&self, now: Millis) -> Vec<(String, u64)> {
        let owned = self.owned_items();
        let mut out: Vec<(String, u64)> = [
            ("uptime_ms", now.saturating_sub(self.started)),
            ("items", self.store.len() as u64),
            ("items_owned", owned as u64),
            ("items_replica", (self.store.len() - owned) as u64),
            ("bytes", self.store.bytes() as u64),
            ("deleted_keys_remembered", self.tombstones.len() as u64),
            ("successors", self.rt.succs.len() as u64),
            ("fingers_distinct", self.rt.distinct_fingers().len() as u64),
            ("pending_rpcs", self.pending.len() as u64),
            ("peers_suspected", self.suspects.len() as u64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        out.extend(self.counters.list());
        out
    }

    /// Stores an item directly (simulator set-up and tests).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Installs routing state computed elsewhere (the simulator's converged start).
    pub fn install(&mut self, pred: Option<NodeRef>, succs: Vec<NodeRef>, fingers: Vec<Option<NodeRef>>) {
        self.rt.pred = pred;
        self.rt.set_successors(succs);
        if fingers.len() == self.rt.fingers.len() {
            self.rt.fingers = fingers;
        }
        self.phase = Phase::Active;
    }

    fn jitter(&mut self, mean: Millis) -> Millis {
        // xorshift64*: uniform in [mean/2, 3*mean/2], so nodes do not move in lock step.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let mean = mean.max(1);
        mean / 2 + r % (mean + 1)
    }

    fn send(&mut self, to: SocketAddr, req: Request, pending: Pending) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.counters.rpcs_out += 1;
        self.pending.insert(token, (to, pending));
        self.outputs.push_back(Output::Send { token, to, req });
        token
    }

    /// The next thing to send, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.phase {
            Phase::Left | Phase::Leaving => None,
            Phase::Joining => Some(self.next_stabilize),
            Phase::Active => {
                let next = self.next_stabilize.min(self.next_fix).min(self.next_check);
                Some(if self.params.gc_ms > 0 { next.min(self.next_gc) } else { next })
            }
        }
    }

    /// Runs the periodic tasks that are due.
    pub fn handle_timeout(&mut self, now: Millis) {
        match self.phase {
            Phase::Left | Phase::Leaving => {}
            Phase::Joining => {
                if now >= self.next_stabilize {
                    self.next_stabilize = now + self.params.stabilize_ms.max(1);
                    if !self
                        .pending
                        .values()
                        .any(|(_, p)| matches!(p, Pending::Lookup { purpose: Purpose::Join, .. }))
                    {
                        self.start_join();
                    }
                }
            }
            Phase::Active => {
                if now >= self.next_stabilize {
                    self.next_stabilize = now + self.jitter(self.params.stabilize_ms);
                    self.stabilize();
                }
                if now >= self.next_fix {
                    self.next_fix = now + self.jitter(self.params.fix_fingers_ms);
                    self.fix_fingers();
                }
                if now >= self.next_check {
                    self.next_check = now + self.jitter(self.params.check_predecessor_ms);
                    self.check_predecessor();
                }
                if self.params.gc_ms > 0 && now >= self.next_gc {
                    self.next_gc = now + self.params.gc_ms;
                    self.start_gc(now);
                }
            }
        }
    }

    /// Joins the ring that the node at `bootstrap` belongs to.
    pub fn join(&mut self, now: Millis, bootstrap: SocketAddr) {
        self.phase = Phase::Joining;
        self.bootstrap = Some(bootstrap);
        self.rt.pred = None;
        self.rt.succs.clear();
        self.next_stabilize = now + self.params.stabilize_ms.max(1);
        self.start_join();
    }

    fn start_join(&mut self) {
        let Some(addr) = self.bootstrap else { return };
        let me = self.rt.me;
        let seed = NodeRef { id: me.id, addr };
        let lookup = Lookup::new(me.id, self.params.bits, vec![seed]);
        self.drive_lookup(Purpose::Join, lookup, None);
    }

    /// Leaves gracefully: hands every item to the successor and tells both neighbours. A
    /// successor that fails is replaced by the next live one in the list.
    /// [`Event::Left`] follows once they have answered (or all failed).
    pub fn leave(&mut self, _now: Millis) {
        if matches!(self.phase, Phase::Left | Phase::Leaving) {
            return;
        }
        self.phase = Phase::Leaving;
        let me = self.rt.me;
        let succs: Vec<NodeRef> = self.rt.succs.iter().filter(|s| s.id != me.id).copied().collect();
        let pred = self.rt.pred;
        if let Some((s, rest)) = succs.split_first() {
            let leaving = Request::Leaving { node: me, pred, succs: succs.clone() };
            let handover = batches(self.store.all_items()).into_iter().map(|items| Request::Store { items });
            for req in handover.chain([leaving]) {
                self.send(s.addr, req.clone(), Pending::LeaveHandover { req, rest: rest.to_vec() });
            }
        }
        if let Some(p) = pred.filter(|p| Some(p.addr) != succs.first().map(|s| s.addr)) {
            let req = Request::Leaving { node: me, pred, succs: succs.clone() };
            self.send(p.addr, req.clone(), Pending::LeaveHandover { req, rest: Vec::new() });
        }
        self.finish_leave_if_done();
    }

    /// A leave message failed: send it to the next successor, if any is left to try.
    fn retry_leave(&mut self, req: Request, rest: Vec<NodeRef>) {
        if let Some((next, rest)) = rest.split_first() {
            self.send(next.addr, req.clone(), Pending::LeaveHandover { req, rest: rest.to_vec() });
        }
        self.finish_leave_if_done();
    }

    fn finish_leave_if_done(&mut self) {
        if self.phase == Phase::Leaving
            && !self.pending.values().any(|(_, p)| matches!(p, Pending::LeaveHandover { .. }))
        {
            self.phase = Phase::Left;
            self.pending.clear();
            self.events.push_back(Event::Left);
        }
    }

    /// Starts a lookup of `target`; its result arrives as [`Event::LookupDone`].
    pub fn lookup(&mut self, _now: Millis, target: Id) -> u64 {
        let op = self.next_token;
        self.next_token += 1;
        self.start_lookup(Purpose::User(op), target);
        op
    }

    /// Starts a read of `key`: lookup, then `Get` from the owner and, if it does not have it,
    /// from the replicas after it. The result arrives as [`Event::GetDone`].
    pub fn get(&mut self, _now: Millis, key: Vec<u8>) -> u64 {
        let op = self.next_token;
        self.next_token += 1;
        let target = self.store.key_id(&key);
        self.start_lookup(Purpose::Get(op, key), target);
        op
    }

    fn start_lookup(&mut self, purpose: Purpose, target: Id) {
        // The first step is local: no message when this node already knows the answer.
        match self.rt.route(&target, &[]) {
            Response::Found { succs } => {
                self.lookup_done(purpose, Some(LookupOutcome { succs, hops: 0, timeouts: 0 }))
            }
            Response::Closer { nodes } => {
                let lookup = Lookup::new(target, self.params.bits, nodes);
                self.drive_lookup(purpose, lookup, None);
            }
            _ => self.lookup_done(purpose, None),
        }
    }

    fn drive_lookup(&mut self, purpose: Purpose, mut lookup: Lookup, step: Option<Step>) {
        let step = step.unwrap_or_else(|| lookup.next_step());
        match step {
            Step::Ask(node) => {
                let req = Request::FindSuccessor { id: lookup.target(), avoid: lookup.avoid() };
                self.send(node.addr, req, Pending::Lookup { purpose, lookup, asked: node });
            }
            Step::Done(succs) => {
                let outcome = LookupOutcome { succs, hops: lookup.hops, timeouts: lookup.timeouts };
                self.lookup_done(purpose, Some(outcome));
            }
            Step::Failed => {
                // Out of candidates: the starting node asks its own table again, now without the
                // nodes found dead (they are purged from it too).
                if lookup.may_reroute() {
                    let step = match self.rt.route(&lookup.target(), &lookup.avoid()) {
                        Response::Found { succs } => {
                            let live: Vec<NodeRef> =
                                succs.into_iter().filter(|s| !lookup.is_dead(s)).collect();
                            if live.is_empty() { Step::Failed } else { Step::Done(live) }
                        }
                        Response::Closer { nodes } => lookup.reseed(nodes),
                        _ => Step::Failed,
                    };
                    return self.drive_lookup(purpose, lookup, Some(step));
                }
                self.lookup_done(purpose, None)
            }
        }
    }

    fn lookup_done(&mut self, purpose: Purpose, outcome: Option<LookupOutcome>) {
        self.counters.lookups += 1;
        match &outcome {
            Some(o) => {
                self.counters.lookup_hops += o.hops as u64;
                self.counters.lookup_timeouts += o.timeouts as u64;
            }
            None => self.counters.lookup_failures += 1,
        }
        match purpose {
            Purpose::Join => match outcome {
                Some(o) if o.succs.iter().any(|s| s.id == self.rt.me.id && s.addr != self.rt.me.addr) => {
                    self.events.push_back(Event::JoinFailed(format!(
                        "another node already has id {}",
                        self.rt.me.id.display(self.params.bits)
                    )));
                }
                Some(o) => {
                    self.rt.set_successors(o.succs);
                    self.rt.pred = None;
                    if self.rt.succs.is_empty() {
                        self.events
                            .push_back(Event::JoinFailed("the ring answered with no other node".into()));
                        return;
                    }
                    self.phase = Phase::Active;
                    self.events.push_back(Event::Joined);
                    // Stabilize at once: learn the successor's list and notify it.
                    self.stabilize();
                }
                None => self.events.push_back(Event::JoinFailed("no node of the ring answered".into())),
            },
            Purpose::Finger(k) => {
                self.fixing = false;
                if let Some(o) = outcome {
                    self.set_fingers_from(k, o.succs[0]);
                }
            }
            Purpose::User(op) => self.events.push_back(Event::LookupDone { op, outcome }),
            Purpose::Get(op, key) => match outcome {
                None => self.events.push_back(Event::GetDone { op, value: None, outcome: None }),
                Some(o) => {
                    // The whole list: if the first ones are dead but not yet purged, a later
                    // entry still holds a replica.
                    let mut rest: Vec<NodeRef> = o.succs.clone();
                    rest.reverse();
                    self.fetch_next(op, key, rest, o);
                }
            },
            Purpose::Gc(key) => match outcome {
                None => self.end_gc(),
                Some(o) if o.succs[0].addr == self.rt.me.addr => {
                    // We own it after all (our predecessor pointer is behind): keep it.
                    self.gc_checked(Checked::Id(key));
                }
                Some(o) => {
                    let owner = o.succs[0];
                    self.send(owner.addr, Request::GetNeighbors, Pending::GcNeighbors { owner, key });
                }
            },
            Purpose::StoreCheck(ip, items) => {
                match outcome.and_then(|o| o.succs.first().copied().zip(Some(o))) {
                    Some((owner, o))
                        if owner.addr != self.rt.me.addr && o.succs.iter().any(|n| n.addr.ip() == ip) =>
                    {
                        // The owner's items lie between this node and the owner, going clockwise.
                        let (me, owner) = (self.rt.me.id, owner.id);
                        let (keep, drop): (Vec<Item>, Vec<Item>) = items
                            .into_iter()
                            .partition(|item| self.store.key_id(&item.key).in_half_open(&me, &owner));
                        if !drop.is_empty() {
                            self.counters.claims_refused += 1;
                        }
                        self.keep_items(keep);
                    }
                    _ => self.counters.claims_refused += 1,
                }
            }
        }
    }

    fn fetch_next(&mut self, op: u64, key: Vec<u8>, mut rest: Vec<NodeRef>, outcome: LookupOutcome) {
        match rest.pop() {
            None => self.events.push_back(Event::GetDone { op, value: None, outcome: Some(outcome) }),
            Some(node) if node.addr == self.rt.me.addr => match self.store.get(&key).cloned() {
                Some(v) => {
                    self.events.push_back(Event::GetDone { op, value: Some(v), outcome: Some(outcome) })
                }
                None => self.fetch_next(op, key, rest, outcome),
            },
            Some(node) => {
                let req = Request::Get { key: key.clone() };
                self.send(node.addr, req, Pending::Fetch { op, key, rest, asked: node, outcome });
            }
        }
    }

    /// finger[k] = node, and every following finger whose start also falls in (start_k, node].
    fn set_fingers_from(&mut self, k: u8, node: NodeRef) {
        let start = self.rt.finger_start(k);
        let mut j = k;
        while (j as usize) < self.rt.fingers.len() {
            let s = self.rt.finger_start(j);
            // Later fingers share `node` only if their start lies in (start, node]; when the
            // start is the node's own id that arc is empty, not the whole circle.
            if j != k && (start == node.id || !s.in_half_open(&start, &node.id)) {
                break;
            }
            self.rt.fingers[j as usize] = Some(node);
            j += 1;
        }
        self.next_finger = if (j as usize) >= self.rt.fingers.len() { 0 } else { j };
    }

    fn stabilize(&mut self) {
        if self.stabilizing {
            return;
        }
        self.rounds = self.rounds.wrapping_add(1);
        match self.rt.succs.first().copied() {
            None => {
                // Alone: a predecessor that found us is also our successor.
                if let Some(p) = self.rt.pred {
                    self.rt.set_successors([p]);
                    self.notify_successor();
                }
            }
            Some(s) => {
                self.stabilizing = true;
                self.send(s.addr, Request::GetNeighbors, Pending::Stabilize { to: s });
            }
        }
        self.replicate();
    }

    fn notify_successor(&mut self) {
        if let Some(s) = self.rt.succs.first().copied() {
            let me = self.rt.me;
            self.send(s.addr, Request::Notify { node: me }, Pending::Fire);
        }
    }

    fn fix_fingers(&mut self) {
        if self.fixing || self.rt.succs.is_empty() {
            return;
        }
        let succ = self.rt.succs[0];
        // Fingers whose start lies before the successor need no lookup.
        for _ in 0..self.rt.fingers.len() {
            let k = self.next_finger;
            let start = self.rt.finger_start(k);
            if start.in_half_open(&self.rt.me.id, &succ.id) {
                self.rt.fingers[k as usize] = Some(succ);
                self.next_finger = if (k as usize) + 1 >= self.rt.fingers.len() { 0 } else { k + 1 };
                if self.next_finger == 0 {
                    return;
                }
                continue;
            }
            self.fixing = true;
            self.start_lookup(Purpose::Finger(k), start);
            return;
        }
    }

    fn check_predecessor(&mut self) {
        if self.checking {
            return;
        }
        if let Some(p) = self.rt.pred {
            self.checking = true;
            self.send(p.addr, Request::Ping, Pending::CheckPredecessor { to: p });
        }
    }

    /// Pushes the items this node owns to its replica holders when they (or the owned arc)
    /// changed, and every `replicate_every` rounds regardless.
    fn replicate(&mut self) {
        let copies = self.params.replicas.saturating_sub(1);
        let Some(pred) = self.rt.pred else { return };
        if copies == 0 || self.rt.succs.is_empty() {
            return;
        }
        let targets: Vec<NodeRef> = self.rt.succs.iter().take(copies).copied().collect();
        let state = (Some(pred.id), targets.iter().map(|n| n.id).collect::<Vec<_>>());
        let periodic =
            self.params.replicate_every > 0 && self.rounds.is_multiple_of(self.params.replicate_every);
        if self.replicated.as_ref() == Some(&state) && !periodic {
            return;
        }
        let items = self.store.items_in(&pred.id, &self.rt.me.id);
        let fresh: Vec<NodeRef> = match &self.replicated {
            Some((p, old)) if *p == state.0 && !periodic => {
                targets.iter().filter(|t| !old.contains(&t.id)).copied().collect()
            }
            _ => targets,
        };
        self.replicated = Some(state);
        if items.is_empty() {
            return;
        }
        for t in fresh {
            for batch in batches(items.clone()) {
                self.send(t.addr, Request::Store { items: batch }, Pending::Fire);
            }
        }
    }

    /// Starts a garbage-collection round unless one is running: for each arc of items this
    /// node does not own, it finds the owner and asks it for its successors. Items of an arc
    /// whose replica set (the owner and its first `replicas - 1` successors) does not include
    /// this node are handed to the owner with `Adopt`, and dropped only once it accepted them,
    /// so the last copy is never lost.
    fn start_gc(&mut self, now: Millis) {
        // A round normally ends within a few RPC timeouts; one that did not is abandoned.
        let stuck = now.saturating_sub(self.gc_started) > 10 * self.params.gc_ms.max(6_000);
        if (self.gc.is_some() && !stuck) || self.rt.pred.is_none() || self.rt.succs.is_empty() {
            return;
        }
        self.gc = Some((Vec::new(), 0));
        self.gc_started = now;
        self.gc_next_arc();
    }

    fn end_gc(&mut self) {
        if self.gc.take().is_some() {
            self.counters.gc_rounds += 1;
        }
    }

    /// Records a decided arc and moves on to the next one.
    fn gc_checked(&mut self, arc: Checked) {
        if let Some((checked, _)) = self.gc.as_mut() {
            checked.push(arc);
        }
        self.gc_next_arc();
    }

    fn gc_next_arc(&mut self) {
        let (Some((checked, arcs)), Some(pred)) = (self.gc.as_ref(), self.rt.pred) else {
            return self.end_gc();
        };
        if *arcs >= MAX_GC_ARCS || self.phase != Phase::Active {
            return self.end_gc();
        }
        let me = self.rt.me.id;
        let next = self
            .store
            .ids()
            .find(|id| !id.in_half_open(&pred.id, &me) && !checked.iter().any(|c| c.covers(id)))
            .copied();
        match next {
            None => self.end_gc(),
            Some(key) => {
                if let Some((_, arcs)) = self.gc.as_mut() {
                    *arcs += 1;
                }
                self.start_lookup(Purpose::Gc(key), key);
            }
        }
    }

    /// The owner of `key` told us its neighbours: keep its arc if we are one of its replica
    /// holders, else hand the arc's items to it.
    fn gc_decide(&mut self, owner: NodeRef, key: Id, pred: Option<NodeRef>, succs: Vec<NodeRef>) {
        let me = self.rt.me;
        let arc = match pred {
            Some(p) if key.in_half_open(&p.id, &owner.id) => Checked::Arc(p.id, owner.id),
            _ => Checked::Id(key),
        };
        let holders = succs.iter().take(self.params.replicas.saturating_sub(1));
        if holders.chain([&owner]).any(|n| n.addr == me.addr || n.id == me.id) {
            return self.gc_checked(arc);
        }
        let stale: Vec<Item> = self
            .store
            .all_items()
            .into_iter()
            .filter(|item| {
                let id = self.store.key_id(&item.key);
                arc.covers(&id) && !self.rt.owns(&id)
            })
            .collect();
        if let Some((checked, _)) = self.gc.as_mut() {
            checked.push(arc);
        }
        // One bounded batch per arc and round; what is left waits for the next round.
        match batches(stale).into_iter().next() {
            None => self.gc_next_arc(),
            Some(items) => {
                self.send(owner.addr, Request::Adopt { items: items.clone() }, Pending::GcAdopt { items });
            }
        }
    }

    /// The owner accepted our stale items: drop each one still holding the value we sent.
    fn gc_drop(&mut self, items: Vec<Item>) {
        for item in items {
            let id = self.store.key_id(&item.key);
            if self.store.get(&item.key) == Some(&item.value) && !self.rt.owns(&id) {
                self.store.remove(&item.key);
                self.counters.gc_dropped += 1;
            }
        }
        self.gc_next_arc();
    }

    /// Another node's garbage collection offers items it should not hold: keep those we lack
    /// and did not delete recently (never overwriting a value), and replicate the ones we own.
    fn on_adopt(&mut self, now: Millis, items: Vec<Item>) -> Response {
        if self.phase != Phase::Active {
            return Response::Error {
                code: ErrorCode::Unavailable,
                message: "this node is not active".into(),
            };
        }
        let mut full = false;
        let mut replicate = Vec::new();
        for item in items {
            if self.store.get(&item.key).is_some() || self.tombstones.contains(&item.key, now) {
                continue;
            }
            if item.value.len() > self.params.max_value || !self.has_room(&item.key, &item.value) {
                full = true;
                continue;
            }
            self.counters.gc_adopted += 1;
            if self.rt.owns(&self.store.key_id(&item.key)) {
                replicate.push(item.clone());
            }
            self.store.insert(item.key, item.value);
        }
        if !replicate.is_empty() {
            for t in self.replica_targets() {
                for batch in batches(replicate.clone()) {
                    self.send(t.addr, Request::Store { items: batch }, Pending::Fire);
                }
            }
        }
        if full {
            Response::Error { code: ErrorCode::Unavailable, message: "this node's store is full".into() }
        } else {
            Response::Ok
        }
    }

    /// Answers a request from a trusted sender (see [`Origin::Trusted`]).
    pub fn handle_request(&mut self, now: Millis, req: Request) -> Response {
        self.handle_request_from(now, Origin::Trusted, req)
    }

    /// Claim checks in flight (probes and owner lookups).
    fn claim_checks(&self) -> usize {
        self.pending
            .values()
            .filter(|(_, p)| {
                matches!(
                    p,
                    Pending::VerifyNotify { .. }
                        | Pending::VerifyLeaving { .. }
                        | Pending::Lookup { purpose: Purpose::StoreCheck(..), .. }
                )
            })
            .count()
    }

    /// Whether a probe of `addr` for a claim is already in flight.
    fn probing(&self, addr: SocketAddr) -> bool {
        self.pending.values().any(|(to, p)| {
            *to == addr && matches!(p, Pending::VerifyNotify { .. } | Pending::VerifyLeaving { .. })
        })
    }

    fn refuse_claim(&mut self, why: &str) -> Response {
        self.counters.claims_refused += 1;
        Response::Error { code: ErrorCode::Unavailable, message: why.into() }
    }

    /// Whether `ip` is the address of a node in this node's routing state.
    fn is_neighbour_ip(&self, ip: IpAddr) -> bool {
        self.rt
            .pred
            .iter()
            .chain(&self.rt.succs)
            .chain(self.rt.fingers.iter().flatten())
            .any(|n| n.addr.ip() == ip)
    }

    /// An unauthenticated `Notify`: the node must be at the sender's IP, and its id SHA-1 of
    /// its address (derived ids), or else confirmed by a probe.
    fn notify_from(&mut self, ip: IpAddr, node: NodeRef) -> Response {
        if node.addr.ip() != ip {
            return self.refuse_claim("Notify names a node at another address than the sender's");
        }
        let derived = Id::hash(node.addr.to_string().as_bytes(), self.params.bits) == node.id;
        if derived || self.rt.pred == Some(node) {
            self.suspects.clear(node.addr);
            self.on_notify(node);
            return Response::Ok;
        }
        if self.probing(node.addr) {
            return Response::Ok;
        }
        if self.claim_checks() >= self.params.max_claim_checks {
            return self.refuse_claim("too many claims being checked; try again later");
        }
        self.send(node.addr, Request::Ping, Pending::VerifyNotify { node });
        Response::Ok
    }

    /// An unauthenticated `Leaving`: probe the named node; believed only if it does not
    /// answer as itself (a leaving node answers `Ping` with an error). The neighbours it names
    /// are taken only from the node's own IP: a forger could otherwise slip its own nodes in
    /// when a node really went away.
    fn leaving_from(
        &mut self,
        ip: IpAddr,
        node: NodeRef,
        mut pred: Option<NodeRef>,
        mut succs: Vec<NodeRef>,
    ) -> Response {
        if node.addr == self.rt.me.addr || self.probing(node.addr) {
            return Response::Ok;
        }
        if node.addr.ip() != ip {
            pred = None;
            succs.clear();
        }
        if self.claim_checks() >= self.params.max_claim_checks {
            return self.refuse_claim("too many claims being checked; try again later");
        }
        self.send(node.addr, Request::Ping, Pending::VerifyLeaving { node, pred, succs });
        Response::Ok
    }

    /// An unauthenticated `Store`: kept at once from a neighbour's IP; otherwise kept once a
    /// lookup shows a holder of the first key at the sender's IP (and only the items of that
    /// owner's side of the ring).
    fn store_from(&mut self, ip: IpAddr, items: Vec<Item>) -> Response {
        if self.is_neighbour_ip(ip) {
            self.keep_items(items);
            return Response::Ok;
        }
        let Some(first) = items.first() else { return Response::Ok };
        if self.claim_checks() >= self.params.max_claim_checks {
            return self.refuse_claim("too many claims being checked; try again later");
        }
        let target = self.store.key_id(&first.key);
        self.start_lookup(Purpose::StoreCheck(ip, items), target);
        Response::Ok
    }

    fn keep_items(&mut self, items: Vec<Item>) {
        for item in items {
            if item.value.len() <= self.params.max_value && self.has_room(&item.key, &item.value) {
                self.store.insert(item.key, item.value);
            }
        }
    }

    /// A `Leaving` believed: the node is gone; link its neighbours.
    fn believe_leaving(
        &mut self,
        now: Millis,
        node: NodeRef,
        pred: Option<NodeRef>,
        mut succs: Vec<NodeRef>,
    ) {
        // Gone on purpose: the others' lists may still name it for a while.
        self.suspects.mark(node.addr, now);
        self.suspects.retain_live(&mut succs, now);
        let pred = self.suspects.live(pred, now);
        self.on_leaving(node, pred, succs);
    }

    /// Answers a request from another node or a client; `origin` says how far its claims are
    /// believed.
    pub fn handle_request_from(&mut self, now: Millis, origin: Origin, req: Request) -> Response {
        if matches!(self.phase, Phase::Left) {
            return Response::Error {
                code: ErrorCode::Unavailable,
                message: "this node has left the ring".into(),
            };
        }
        self.counters.requests_in += 1;
        if let Origin::Peer(ip) = origin {
            match req {
                Request::Notify { node } => return self.notify_from(ip, node),
                Request::Leaving { node, pred, succs } => return self.leaving_from(ip, node, pred, succs),
                Request::Store { items } => return self.store_from(ip, items),
                _ => {}
            }
        }
        match req {
            // A leaving node says so to probes, so a `Leaving` it sent is believed at once.
            Request::Ping if self.phase == Phase::Leaving => Response::Error {
                code: ErrorCode::Unavailable,
                message: "this node is leaving the ring".into(),
            },
            Request::Ping => Response::Pong { node: self.rt.me },
            Request::Info => Response::Info {
                node: self.rt.me,
                pred: self.rt.pred,
                succs: self.rt.succs.clone(),
                fingers: self.rt.distinct_fingers(),
                items: self.store.len() as u64,
            },
            Request::FindSuccessor { id, avoid } => {
                if self.phase == Phase::Joining {
                    return Response::Error {
                        code: ErrorCode::Unavailable,
                        message: "this node is still joining".into(),
                    };
                }
                self.rt.route(&id, &avoid)
            }
            Request::GetNeighbors => Response::Neighbors { pred: self.rt.pred, succs: self.rt.succs.clone() },
            Request::Notify { node } => {
                // A direct sign of life.
                self.suspects.clear(node.addr);
                self.on_notify(node);
                Response::Ok
            }
            Request::Get { key } => Response::Value { value: self.store.get(&key).cloned() },
            Request::Put { key, value } => {
                if value.len() > self.params.max_value {
                    return Response::Error {
                        code: ErrorCode::TooLarge,
                        message: format!(
                            "value of {} bytes is over this node's limit of {}",
                            value.len(),
                            self.params.max_value
                        ),
                    };
                }
                if !self.has_room(&key, &value) {
                    return Response::Error {
                        code: ErrorCode::Unavailable,
                        message: "this node's store is full".into(),
                    };
                }
                let item = Item { key: key.clone(), value: value.clone() };
                self.tombstones.remove(&key);
                self.store.insert(key, value);
                for t in self.replica_targets() {
                    self.send(t.addr, Request::Store { items: vec![item.clone()] }, Pending::Fire);
                }
                Response::Ok
            }
            Request::Delete { key } => {
                let existed = self.store.remove(&key);
                self.tombstones.insert(&key, now);
                if self.rt.owns(&self.store.key_id(&key)) {
                    for t in self.replica_targets() {
                        self.send(t.addr, Request::Delete { key: key.clone() }, Pending::Fire);
                    }
                }
                Response::Deleted { existed }
            }
            Request::Store { items } => {
                self.keep_items(items);
                Response::Ok
            }
            Request::Leaving { node, pred, succs } => {
                self.believe_leaving(now, node, pred, succs);
                Response::Ok
            }
            Request::Stats => Response::Stats { counters: self.stats(now) },
            Request::Adopt { items } => self.on_adopt(now, items),
            // Without a way to answer later, only a lookup this node can answer itself.
            Request::Route { id, hops } => match self.rt.route(&id, &[]) {
                Response::Found { succs } if !succs.is_empty() => Response::Routed { succs, hops },
                _ => Response::Error {
                    code: ErrorCode::Unavailable,
                    message: "recursive lookup needs forwarding; use handle_request_deferred".into(),
                },
            },
        }
    }

    /// Like [`handle_request_from`](Self::handle_request_from), but a recursive lookup
    /// (`Route`) that must be forwarded returns `None`; its answer comes later as
    /// [`Event::Reply`] with `reply_to`.
    pub fn handle_request_deferred(
        &mut self,
        now: Millis,
        origin: Origin,
        req: Request,
        reply_to: u64,
    ) -> Option<Response> {
        match req {
            Request::Route { id, hops } if self.phase == Phase::Active => {
                self.route_recursive(ReplyTo::Remote(reply_to), id, hops, Vec::new())
            }
            other => Some(self.handle_request_from(now, origin, other)),
        }
    }

    /// Starts a recursive lookup of `target` from this node: each node forwards the query to
    /// its closest preceding node until the key's predecessor answers. The result arrives as
    /// [`Event::LookupDone`] (hops = forwards between nodes).
    pub fn lookup_recursive(&mut self, _now: Millis, target: Id) -> u64 {
        let op = self.next_token;
        self.next_token += 1;
        if let Some(resp) = self.route_recursive(ReplyTo::Local(op), target, 0, Vec::new()) {
            self.finish_route(ReplyTo::Local(op), resp, 0);
        }
        op
    }

    /// One recursive step: answer now (`Some`) or forward to the best candidate not in `dead`.
    fn route_recursive(&mut self, reply: ReplyTo, id: Id, hops: u8, dead: Vec<Id>) -> Option<Response> {
        if hops >= MAX_ROUTE_HOPS || dead.len() > crate::wire::MAX_AVOID {
            return Some(Response::Error {
                code: ErrorCode::Unavailable,
                message: format!("recursive lookup gave up after {hops} hops"),
            });
        }
        match self.rt.route(&id, &dead) {
            Response::Found { succs } if !succs.is_empty() => Some(Response::Routed { succs, hops }),
            Response::Closer { mut nodes } => {
                nodes.reverse();
                let next = nodes.pop()?;
                let req = Request::Route { id, hops: hops + 1 };
                self.send(
                    next.addr,
                    req,
                    Pending::Forward { reply, id, hops, asked: next, rest: nodes, dead },
                );
                None
            }
            _ => Some(Response::Error {
                code: ErrorCode::Unavailable,
                message: "no live node to forward the lookup to".into(),
            }),
        }
    }

    fn finish_route(&mut self, reply: ReplyTo, response: Response, timeouts: u32) {
        match reply {
            ReplyTo::Remote(reply_to) => self.events.push_back(Event::Reply { reply_to, response }),
            ReplyTo::Local(op) => {
                let outcome = match response {
                    Response::Routed { succs, hops } => {
                        Some(LookupOutcome { succs, hops: hops as u32, timeouts })
                    }
                    _ => None,
                };
                self.counters.lookups += 1;
                match &outcome {
                    Some(o) => self.counters.lookup_hops += o.hops as u64,
                    None => self.counters.lookup_failures += 1,
                }
                self.events.push_back(Event::LookupDone { op, outcome });
            }
        }
    }

    /// Whether storing (key, value) stays within the item and byte limits.
    fn has_room(&self, key: &[u8], value: &[u8]) -> bool {
        let old = self.store.get(key).map(|v| key.len() + v.len());
        let items = self.store.len() + usize::from(old.is_none());
        let bytes = self.store.bytes() - old.unwrap_or(0) + key.len() + value.len();
        items <= self.params.max_items && bytes <= self.params.max_bytes
    }

    fn replica_targets(&self) -> Vec<NodeRef> {
        self.rt.succs.iter().take(self.params.replicas.saturating_sub(1)).copied().collect()
    }

    fn on_notify(&mut self, n: NodeRef) {
        if n.id == self.rt.me.id || self.phase != Phase::Active {
            return;
        }
        let me = self.rt.me.id;
        let accept = match self.rt.pred {
            None => true,
            Some(p) => n.id.in_open(&p.id, &me),
        };
        if !accept {
            return;
        }
        let old = self.rt.pred.replace(n);
        // Key migration: the arc (old predecessor, n] now belongs to n. We keep our copies (we
        // are n's first replica holder); n gets its keys now.
        let items = match old {
            Some(p) if p.id != n.id => self.store.items_in(&p.id, &n.id),
            Some(_) => Vec::new(),
            None => self.store.items_in(&me, &n.id),
        };
        for batch in batches(items) {
            self.send(n.addr, Request::Store { items: batch }, Pending::Fire);
        }
        if self.rt.succs.is_empty() {
            // Second node of a ring: it is our successor too.
            self.rt.set_successors([n]);
        }
    }

    fn on_leaving(&mut self, node: NodeRef, pred: Option<NodeRef>, succs: Vec<NodeRef>) {
        if self.rt.succs.first().is_some_and(|s| s.addr == node.addr) {
            let mut list: Vec<NodeRef> =
                self.rt.succs.iter().filter(|s| s.addr != node.addr).copied().collect();
            list.extend(succs.iter().filter(|s| s.addr != node.addr));
            self.rt.purge(node.addr);
            self.rt.set_successors(list);
            self.notify_successor();
        }
        if self.rt.pred.is_some_and(|p| p.addr == node.addr) {
            self.rt.purge(node.addr);
            self.rt.pred = pred.filter(|p| p.id != self.rt.me.id);
        }
        self.rt.purge(node.addr);
    }

    /// Feeds the reply (or failure) of an RPC sent through [`Output::Send`].
    pub fn handle_reply(&mut self, now: Millis, token: u64, reply: Result<Response, RpcFailure>) {
        let Some((peer, pending)) = self.pending.remove(&token) else { return };
        match &reply {
            Ok(Response::Error { .. }) | Err(RpcFailure::Refused) => self.counters.rpc_refused += 1,
            Err(RpcFailure::Unreachable) => {
                self.counters.rpc_unreachable += 1;
                // A forwarded recursive lookup also times out when a node further on is slow:
                // that says too little about the peer itself.
                if !matches!(pending, Pending::Forward { .. }) {
                    self.suspects.mark(peer, now);
                }
            }
            Ok(_) => {}
        }
        // Any answer, even an error, is a sign of life; the nodes it names are taken at face
        // value only if this node has not found them dead lately.
        let reply = reply.map(|resp| {
            self.suspects.clear(peer);
            // A lookup routes around them instead (see on_success).
            if matches!(pending, Pending::Lookup { .. }) { resp } else { self.without_suspects(resp, now) }
        });
        if let Ok(Response::Error { .. }) = reply {
            return self.on_failure(now, pending, RpcFailure::Refused);
        }
        match reply {
            Err(f) => self.on_failure(now, pending, f),
            Ok(resp) => self.on_success(now, pending, resp),
        }
    }

    /// `resp` without the nodes this node found dead lately. (Lookups route around them
    /// instead; a recursive lookup's answer is passed on as it came, for the asker to judge.)
    fn without_suspects(&self, resp: Response, now: Millis) -> Response {
        if self.suspects.is_empty() {
            return resp;
        }
        let s = &self.suspects;
        match resp {
            Response::Neighbors { pred, mut succs } => {
                s.retain_live(&mut succs, now);
                Response::Neighbors { pred: s.live(pred, now), succs }
            }
            other => other,
        }
    }

    fn on_success(&mut self, now: Millis, pending: Pending, resp: Response) {
        match pending {
            Pending::Lookup { purpose, mut lookup, .. } => {
                // Nodes found dead lately count as found dead by this lookup: it routes around
                // them and tells the nodes it asks next to avoid them.
                let named = match &resp {
                    Response::Found { succs: nodes } | Response::Closer { nodes } => nodes.as_slice(),
                    _ => &[],
                };
                let presumed: Vec<NodeRef> =
                    named.iter().filter(|n| self.suspects.contains(n.addr, now)).copied().collect();
                let step = lookup.on_response_presuming(resp, presumed);
                self.drive_lookup(purpose, lookup, Some(step));
            }
            Pending::Fetch { op, key, rest, outcome, .. } => match resp {
                Response::Value { value: Some(v) } => {
                    self.events.push_back(Event::GetDone { op, value: Some(v), outcome: Some(outcome) })
                }
                _ => self.fetch_next(op, key, rest, outcome),
            },
            Pending::Stabilize { to } => {
                self.stabilizing = false;
                if let Response::Neighbors { pred, succs } = resp {
                    let me = self.rt.me.id;
                    let mut list = Vec::with_capacity(succs.len() + 2);
                    if let Some(x) = pred.filter(|x| x.id.in_open(&me, &to.id)) {
                        list.push(x);
                    }
                    list.push(to);
                    list.extend(succs);
                    self.rt.set_successors(list);
                    self.notify_successor();
                }
            }
            Pending::CheckPredecessor { .. } => self.checking = false,
            Pending::Forward { reply, id, hops, asked, rest, dead } => match resp {
                Response::Routed { .. } => self.finish_route(reply, resp, 0),
                _ => self.forward_failed(reply, id, hops, asked, rest, dead),
            },
            Pending::Fire => {}
            Pending::LeaveHandover { .. } => self.finish_leave_if_done(),
            Pending::GcNeighbors { owner, key } => match resp {
                Response::Neighbors { pred, succs } => self.gc_decide(owner, key, pred, succs),
                _ => self.end_gc(),
            },
            Pending::GcAdopt { items } => match resp {
                Response::Ok => self.gc_drop(items),
                _ => self.gc_next_arc(),
            },
            Pending::VerifyNotify { node } => match resp {
                Response::Pong { node: n } if n == node => {
                    self.suspects.clear(node.addr);
                    self.on_notify(node);
                }
                _ => self.counters.claims_refused += 1,
            },
            Pending::VerifyLeaving { node, pred, succs } => match resp {
                Response::Pong { node: n } if n.id == node.id => {
                    tracing::info!(node = %node.addr, "ignored a Leaving for a node that still answers");
                    self.counters.claims_refused += 1;
                }
                _ => self.believe_leaving(now, node, pred, succs),
            },
        }
    }

    /// The next hop of a recursive lookup failed: try the other candidates, then route again
    /// without the nodes that failed.
    fn forward_failed(
        &mut self,
        reply: ReplyTo,
        id: Id,
        hops: u8,
        asked: NodeRef,
        mut rest: Vec<NodeRef>,
        mut dead: Vec<Id>,
    ) {
        dead.push(asked.id);
        let outcome = match rest.pop() {
            Some(next) => {
                let req = Request::Route { id, hops: hops + 1 };
                self.send(next.addr, req, Pending::Forward { reply, id, hops, asked: next, rest, dead });
                None
            }
            None => self.route_recursive(reply, id, hops, dead),
        };
        if let Some(resp) = outcome {
            self.finish_route(reply, resp, 1);
        }
    }

    fn on_failure(&mut self, now: Millis, pending: Pending, failure: RpcFailure) {
        match pending {
            Pending::Lookup { purpose, mut lookup, asked } => {
                if failure == RpcFailure::Unreachable && !matches!(purpose, Purpose::Join) {
                    self.rt.purge(asked.addr);
                }
                let step = lookup.on_failure(&asked);
                self.drive_lookup(purpose, lookup, Some(step));
            }
            Pending::Fetch { op, key, rest, asked, outcome } => {
                if failure == RpcFailure::Unreachable {
                    self.rt.purge(asked.addr);
                }
                let mut outcome = outcome;
                outcome.timeouts += 1;
                self.fetch_next(op, key, rest, outcome);
            }
            Pending::Stabilize { to } => {
                self.stabilizing = false;
                if failure == RpcFailure::Unreachable {
                    // The textbook repair: drop the dead successor, make the next one first and
                    // ask it for its successors to refill the list.
                    self.rt.purge(to.addr);
                    if !self.rt.succs.is_empty() {
                        self.stabilize();
                    }
                }
            }
            Pending::Forward { reply, id, hops, asked, rest, dead } => {
                if failure == RpcFailure::Unreachable {
                    self.rt.purge(asked.addr);
                }
                self.forward_failed(reply, id, hops, asked, rest, dead);
            }
            Pending::CheckPredecessor { to } => {
                self.checking = false;
                if failure == RpcFailure::Unreachable {
                    self.rt.purge(to.addr);
                }
            }
            Pending::Fire => {}
            Pending::LeaveHandover { req, rest } => self.retry_leave(req, rest),
            // Keep everything; the next round tries again.
            Pending::GcNeighbors { .. } => self.end_gc(),
            Pending::GcAdopt { .. } => self.gc_next_arc(),
            Pending::VerifyNotify { .. } => self.counters.claims_refused += 1,
            // No answer, or "leaving": the node is gone.
            Pending::VerifyLeaving { node, pred, succs } => self.believe_leaving(now, node, pred, succs),
        }
    }
}

/// Splits items into `Store` messages of bounded size.
fn batches(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for item in items {
        let size = item.key.len() + item.value.len() + 6;
        if !cur.is_empty() && (bytes + size > STORE_BATCH_BYTES || cur.len() >= crate::wire::MAX_ITEMS) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(params: Params) -> Node {
        let me = NodeRef { id: Id::from_u64(7), addr: "127.0.0.1:7".parse().unwrap() };
        Node::new(params, me, 0)
    }

    #[test]
    fn puts_over_the_limits_are_refused() {
        let mut n = node(Params { bits: 8, max_value: 4, max_items: 2, max_bytes: 12, ..Params::default() });
        let put = |k: &str, v: &str| Request::Put { key: k.into(), value: v.into() };
        assert!(matches!(
            n.handle_request(0, put("a", "12345")),
            Response::Error { code: ErrorCode::TooLarge, .. }
        ));
        assert_eq!(n.handle_request(0, put("a", "1234")), Response::Ok);
        assert_eq!(n.handle_request(0, put("b", "1234")), Response::Ok);
        // Two items of 5 bytes: a third item, or growing one past 12 bytes, is refused.
        assert!(matches!(
            n.handle_request(0, put("c", "1")),
            Response::Error { code: ErrorCode::Unavailable, .. }
        ));
        assert_eq!(n.handle_request(0, put("a", "12")), Response::Ok);
        let items = vec![Item { key: b"d".to_vec(), value: b"1".to_vec() }];
        assert_eq!(n.handle_request(0, Request::Store { items }), Response::Ok);
        assert_eq!(n.store().len(), 2, "Store beyond max_items is dropped");
    }

    #[test]
    fn alone_node_answers_every_lookup_itself_and_left_node_refuses() {
        let mut n = node(Params { bits: 8, ..Params::default() });
        let resp = n.handle_request(0, Request::FindSuccessor { id: Id::from_u64(200), avoid: vec![] });
        assert_eq!(resp, Response::Found { succs: vec![n.me()] });
        n.leave(0);
        assert_eq!(n.poll_event(), Some(Event::Left));
        assert!(matches!(
            n.handle_request(0, Request::Ping),
            Response::Error { code: ErrorCode::Unavailable, .. }
        ));
    }

    #[test]
    fn leave_hands_items_to_the_next_successor_when_the_first_is_dead() {
        let mut n = node(Params { bits: 8, ..Params::default() });
        let at = |id: u64, port: u16| NodeRef { id: Id::from_u64(id), addr: ([127, 0, 0, 1], port).into() };
        let (dead, live, pred) = (at(9, 9), at(11, 11), at(3, 3));
        n.install(Some(pred), vec![dead, live], vec![]);
        let items = vec![Item { key: b"k".to_vec(), value: b"v".to_vec() }];
        assert_eq!(n.handle_request(0, Request::Store { items }), Response::Ok);
        n.leave(0);
        let mut to_dead = Vec::new();
        while let Some(Output::Send { token, to, req }) = n.poll_output() {
            if to == dead.addr {
                to_dead.push((token, req));
            } else {
                assert_eq!(to, pred.addr);
                n.handle_reply(0, token, Ok(Response::Ok));
            }
        }
        assert_eq!(to_dead.len(), 2, "the items and the Leaving notice go to the first successor");
        for (token, _) in &to_dead {
            n.handle_reply(0, *token, Err(RpcFailure::Unreachable));
        }
        let retried: Vec<_> = std::iter::from_fn(|| n.poll_output()).collect();
        let Output::Send { to, req: Request::Store { items }, .. } = &retried[0] else {
            panic!("{retried:?}")
        };
        assert_eq!((*to, items[0].key.as_slice()), (live.addr, b"k".as_slice()));
        assert!(
            matches!(&retried[1], Output::Send { to, req: Request::Leaving { .. }, .. } if *to == live.addr)
        );
        assert_eq!(n.poll_event(), None, "not left while the retries are in flight");
        for Output::Send { token, .. } in retried {
            n.handle_reply(0, token, Ok(Response::Ok));
        }
        assert_eq!(n.poll_event(), Some(Event::Left));
    }

    fn at(id: u64) -> NodeRef {
        NodeRef { id: Id::from_u64(id), addr: ([127, 0, 0, 1], 1000 + id as u16).into() }
    }

    /// A key whose 8-bit id lies in (a, b].
    fn key_in(a: u64, b: u64) -> Vec<u8> {
        (0..10_000)
            .map(|i| format!("key-{i}").into_bytes())
            .find(|k| Id::hash(k, 8).in_half_open(&Id::from_u64(a), &Id::from_u64(b)))
            .expect("some key hashes there")
    }

    /// Answers the node's RPCs with `respond` (None = leave unanswered) until it sends nothing
    /// more; returns every request sent, with its recipient.
    fn drive(
        n: &mut Node,
        now: Millis,
        mut respond: impl FnMut(SocketAddr, &Request) -> Option<Result<Response, RpcFailure>>,
    ) -> Vec<(SocketAddr, Request)> {
        let mut sent = Vec::new();
        for _ in 0..1000 {
            let Some(Output::Send { token, to, req }) = n.poll_output() else { break };
            if let Some(reply) = respond(to, &req) {
                n.handle_reply(now, token, reply);
            }
            sent.push((to, req));
        }
        sent
    }

    /// One stabilize round of node 7 at `now` (9 answers only if `nine_alive`; 11 names 9 as
    /// its predecessor and 20, 9 as its successors; the rest answer Ok). Returns node 7's
    /// successors afterwards.
    fn stabilize_with(n: &mut Node, now: Millis, nine_alive: bool) -> Vec<NodeRef> {
        n.next_stabilize = now;
        n.handle_timeout(now);
        drive(n, now, |to, req| match req {
            _ if to == at(9).addr && !nine_alive => Some(Err(RpcFailure::Unreachable)),
            Request::GetNeighbors if to == at(9).addr => {
                Some(Ok(Response::Neighbors { pred: Some(at(7)), succs: vec![at(11), at(20)] }))
            }
            Request::GetNeighbors => {
                Some(Ok(Response::Neighbors { pred: Some(at(9)), succs: vec![at(20), at(9)] }))
            }
            _ => Some(Ok(Response::Ok)),
        });
        n.routing().succs.clone()
    }

    #[test]
    fn a_peer_found_dead_is_not_adopted_from_others_until_it_shows_life_or_the_mark_expires() {
        let params = Params { bits: 8, gc_ms: 0, ..Params::default() };
        let ttl = params.suspect_ms();
        let mut n = Node::new(params, at(7), 0);
        n.install(Some(at(5)), vec![at(9), at(11)], vec![]);
        // 9 does not answer: 7 moves on to 11, whose predecessor pointer and list still name 9.
        assert_eq!(stabilize_with(&mut n, 1000, false), vec![at(11), at(20)]);
        assert_eq!(stabilize_with(&mut n, 2000, false), vec![at(11), at(20)], "9 came back");
        // Nor from a lookup answer.
        let op = n.lookup(2000, Id::from_u64(100));
        drive(&mut n, 2000, |_, _| Some(Ok(Response::Found { succs: vec![at(9), at(20)] })));
        let Some(Event::LookupDone { op: done, outcome: Some(o) }) = n.poll_event() else { panic!() };
        assert_eq!((done, o.succs), (op, vec![at(20)]));
        // Its own Notify is a sign of life: 11's pointer to it is believed again.
        assert_eq!(n.handle_request(2500, Request::Notify { node: at(9) }), Response::Ok);
        assert_eq!(stabilize_with(&mut n, 3000, true), vec![at(9), at(11), at(20)]);
        // Found dead again; after the mark expires, others' word is taken again.
        assert_eq!(stabilize_with(&mut n, 4000, false), vec![at(11), at(20)]);
        assert_eq!(stabilize_with(&mut n, 4000 + ttl - 1, false), vec![at(11), at(20)]);
        assert_eq!(stabilize_with(&mut n, 4000 + ttl, false)[0], at(9), "mark expired");
    }

    #[test]
    fn a_finger_whose_start_is_the_found_node_fills_no_later_finger() {
        // The textbook ring 1, 3, 4, 5, 8, 10, 12, 15 (m = 4): node 3's finger starts are
        // 4, 5, 7, 11; the successor of 4 is 4 itself, which must not claim fingers 5, 7, 11.
        let mut n = Node::new(Params { bits: 4, ..Params::default() }, at(3), 0);
        n.set_fingers_from(0, at(4));
        let fingers: Vec<_> = n.routing().fingers.iter().map(|f| f.map(|f| f.id)).collect();
        assert_eq!(fingers, vec![Some(Id::from_u64(4)), None, None, None]);
        // A node past several starts still fills each start up to it: 8 succeeds 7 but not 11.
        n.set_fingers_from(1, at(5));
        n.set_fingers_from(2, at(8));
        let fingers: Vec<_> = n.routing().fingers.iter().map(|f| f.map(|f| f.id)).collect();
        assert_eq!(fingers[1], Some(Id::from_u64(5)));
        assert_eq!(fingers[2], Some(Id::from_u64(8)));
        assert_eq!(fingers[3], None, "start 11 is past 8");
    }

    /// Node 7 (pred 5, successors 9, 11, 13) holding one item it owns and one of the arc
    /// (200, 210], owned by node 210, whose successors are `owner_succs`.
    fn gc_setup(owner_succs: Vec<NodeRef>) -> (Node, Vec<u8>, Vec<u8>, Vec<NodeRef>) {
        let params = Params { bits: 8, gc_ms: 1000, ..Params::default() };
        let mut n = Node::new(params, at(7), 0);
        n.install(Some(at(5)), vec![at(9), at(11), at(13)], vec![]);
        let (mine, foreign) = (key_in(5, 7), key_in(200, 210));
        n.store_mut().insert(mine.clone(), b"mine".to_vec());
        n.store_mut().insert(foreign.clone(), b"old".to_vec());
        (n, mine, foreign, owner_succs)
    }

    /// Runs one garbage-collection round at t = 2 s (the first is due within 1.5 s), the
    /// owner answering with its successors and `adopt` to an `Adopt`.
    fn gc_round(
        n: &mut Node,
        foreign: &[u8],
        owner_succs: &[NodeRef],
        adopt: Result<Response, RpcFailure>,
    ) -> Vec<(SocketAddr, Request)> {
        let kid = Id::hash(foreign, 8);
        n.handle_timeout(2000);
        drive(n, 2000, |to, req| match req {
            Request::FindSuccessor { id, .. } if *id == kid => {
                Some(Ok(Response::Found { succs: vec![at(210), at(220), at(230)] }))
            }
            Request::GetNeighbors if to == at(210).addr => {
                Some(Ok(Response::Neighbors { pred: Some(at(200)), succs: owner_succs.to_vec() }))
            }
            Request::Adopt { .. } => Some(adopt.clone()),
            _ => None,
        })
    }

    #[test]
    fn gc_hands_a_stale_item_to_its_owner_then_drops_it() {
        let (mut n, mine, foreign, succs) = gc_setup(vec![at(220), at(230), at(240)]);
        let sent = gc_round(&mut n, &foreign, &succs, Ok(Response::Ok));
        let adopts: Vec<_> = sent.iter().filter(|(_, r)| matches!(r, Request::Adopt { .. })).collect();
        assert_eq!(adopts.len(), 1, "{sent:?}");
        let (to, Request::Adopt { items }) = adopts[0] else { unreachable!() };
        assert_eq!((*to, items.len(), items[0].key.as_slice()), (at(210).addr, 1, foreign.as_slice()));
        assert_eq!(n.store().get(&foreign), None, "dropped once the owner accepted it");
        assert_eq!(n.store().get(&mine), Some(&b"mine".to_vec()), "its own items are never collected");
        assert_eq!((n.counters().gc_dropped, n.counters().gc_rounds), (1, 1));
    }

    #[test]
    fn gc_keeps_items_it_is_a_replica_holder_for_or_could_not_hand_over() {
        // The owner's first successor is this node: a legitimate replica, no Adopt.
        let (mut n, _, foreign, succs) = gc_setup(vec![at(7), at(9), at(11)]);
        let sent = gc_round(&mut n, &foreign, &succs, Ok(Response::Ok));
        assert!(!sent.iter().any(|(_, r)| matches!(r, Request::Adopt { .. })), "{sent:?}");
        assert!(n.store().get(&foreign).is_some());
        // The owner is out of the replica set, but the hand-over fails or is refused: keep it.
        for failure in [
            Err(RpcFailure::Unreachable),
            Ok(Response::Error { code: ErrorCode::Unavailable, message: "full".into() }),
        ] {
            let (mut n, _, foreign, succs) = gc_setup(vec![at(220), at(230), at(240)]);
            gc_round(&mut n, &foreign, &succs, failure);
            assert_eq!(n.store().get(&foreign), Some(&b"old".to_vec()));
            assert_eq!(n.counters().gc_dropped, 0);
        }
        // No predecessor: the node cannot tell what it owns, so it collects nothing.
        let (mut n, _, foreign, succs) = gc_setup(vec![at(220)]);
        n.install(None, vec![at(9)], vec![]);
        let sent = gc_round(&mut n, &foreign, &succs, Ok(Response::Ok));
        assert!(
            !sent
                .iter()
                .any(|(_, r)| matches!(r, Request::FindSuccessor { id, .. } if *id == Id::hash(&foreign, 8)))
        );
    }

    #[test]
    fn gc_waits_for_its_period() {
        let (mut n, _, foreign, _) = gc_setup(vec![]);
        let kid = Id::hash(&foreign, 8);
        n.handle_timeout(400);
        let sent = drive(&mut n, 400, |_, _| None);
        assert!(!sent.iter().any(|(_, r)| matches!(r, Request::FindSuccessor { id, .. } if *id == kid)));
        assert!(n.poll_timeout().is_some_and(|t| t <= 1500));
    }

    #[test]
    fn adopt_keeps_what_is_missing_but_never_a_deleted_key_or_over_a_value() {
        let mut n = node(Params { bits: 8, ..Params::default() });
        n.install(Some(at(5)), vec![at(9), at(11)], vec![]);
        let (owned, deleted, present) = (key_in(5, 7), key_in(150, 160), key_in(100, 110));
        n.handle_request(
            10,
            Request::Store { items: vec![Item { key: deleted.clone(), value: b"x".to_vec() }] },
        );
        assert_eq!(
            n.handle_request(20, Request::Delete { key: deleted.clone() }),
            Response::Deleted { existed: true }
        );
        n.store_mut().insert(present.clone(), b"new".to_vec());
        while n.poll_output().is_some() {}
        let items = [(&owned, "a"), (&deleted, "b"), (&present, "old")]
            .map(|(k, v)| Item { key: k.clone(), value: v.as_bytes().to_vec() })
            .to_vec();
        assert_eq!(n.handle_request(30, Request::Adopt { items }), Response::Ok);
        assert_eq!(n.store().get(&owned), Some(&b"a".to_vec()));
        assert_eq!(n.store().get(&deleted), None, "a key deleted here is not brought back");
        assert_eq!(n.store().get(&present), Some(&b"new".to_vec()), "a value held is not overwritten");
        assert_eq!(n.counters().gc_adopted, 1);
        // The adopted item it owns goes to its replica holders.
        let sent = drive(&mut n, 30, |_, _| None);
        let stored: Vec<_> =
            sent.iter().filter(|(_, r)| matches!(r, Request::Store { .. })).map(|(to, _)| *to).collect();
        assert_eq!(stored, vec![at(9).addr, at(11).addr]);
        // Put clears the tombstone: a later Adopt may bring the key again.
        n.handle_request(40, Request::Put { key: deleted.clone(), value: b"v2".to_vec() });
        n.handle_request(41, Request::Delete { key: deleted.clone() });
        n.handle_request(42, Request::Put { key: deleted.clone(), value: b"v3".to_vec() });
        n.store_mut().remove(&deleted);
        let items = vec![Item { key: deleted.clone(), value: b"v3".to_vec() }];
        assert_eq!(n.handle_request(50, Request::Adopt { items }), Response::Ok);
        assert_eq!(n.store().get(&deleted), Some(&b"v3".to_vec()));
    }

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 6, 6, 6));

    /// Node 7 of the 8-bit ring 5, 7, 9, 11 (all on 127.0.0.1).
    fn ring_node() -> Node {
        let mut n = Node::new(Params { bits: 8, gc_ms: 0, ..Params::default() }, at(7), 0);
        n.install(Some(at(5)), vec![at(9), at(11)], vec![]);
        n
    }

    #[test]
    fn a_forged_leaving_for_a_live_node_is_refuted_by_a_probe() {
        let mut n = ring_node();
        let forged = Request::Leaving { node: at(9), pred: Some(at(7)), succs: vec![at(11)] };
        assert_eq!(n.handle_request_from(10, Origin::Peer(ATTACKER), forged.clone()), Response::Ok);
        assert_eq!(n.routing().succs, vec![at(9), at(11)], "nothing changes before the probe answers");
        // The only message: a Ping to the named node; it answers as itself.
        let sent = drive(&mut n, 20, |_, _| Some(Ok(Response::Pong { node: at(9) })));
        assert_eq!(sent, vec![(at(9).addr, Request::Ping)]);
        assert_eq!(n.routing().succs, vec![at(9), at(11)]);
        assert_eq!(n.counters().claims_refused, 1);
        // Repeating it while a probe is in flight sends no second probe.
        n.handle_request_from(30, Origin::Peer(ATTACKER), forged.clone());
        n.handle_request_from(30, Origin::Peer(ATTACKER), forged);
        assert_eq!(std::iter::from_fn(|| n.poll_output()).count(), 1);
    }

    #[test]
    fn a_real_leaving_is_believed_once_the_probe_fails_or_says_leaving() {
        for probe in [
            Err(RpcFailure::Unreachable),
            Ok(Response::Error { code: ErrorCode::Unavailable, message: "leaving".into() }),
        ] {
            let mut n = ring_node();
            let leaving = Request::Leaving { node: at(9), pred: Some(at(7)), succs: vec![at(11), at(13)] };
            n.handle_request_from(10, Origin::Peer(at(9).addr.ip()), leaving);
            drive(&mut n, 20, |to, req| match req {
                Request::Ping if to == at(9).addr => Some(probe.clone()),
                _ => None,
            });
            assert_eq!(n.routing().succs[0], at(11), "{probe:?}");
            assert!(!n.routing().succs.contains(&at(9)));
        }
        // Trusted (an authenticated ring): believed at once, no probe.
        let mut n = ring_node();
        let leaving = Request::Leaving { node: at(9), pred: Some(at(7)), succs: vec![at(11)] };
        n.handle_request(10, leaving);
        assert_eq!(n.routing().succs[0], at(11));
        assert!(
            !std::iter::from_fn(|| n.poll_output())
                .any(|o| matches!(o, Output::Send { req: Request::Ping, .. }))
        );
    }

    #[test]
    fn claim_checks_in_flight_are_bounded() {
        let mut n =
            Node::new(Params { bits: 8, gc_ms: 0, max_claim_checks: 3, ..Params::default() }, at(7), 0);
        n.install(Some(at(5)), vec![at(9), at(11)], vec![]);
        let leaving = |id| Request::Leaving { node: at(id), pred: None, succs: vec![] };
        for id in [20, 30, 40] {
            assert_eq!(n.handle_request_from(0, Origin::Peer(ATTACKER), leaving(id)), Response::Ok);
        }
        let r = n.handle_request_from(0, Origin::Peer(ATTACKER), leaving(50));
        assert!(matches!(r, Response::Error { code: ErrorCode::Unavailable, .. }), "{r:?}");
        assert_eq!(std::iter::from_fn(|| n.poll_output()).count(), 3, "three probes, no fourth");
    }

    #[test]
    fn a_leaving_from_elsewhere_for_a_dead_node_brings_no_neighbours_of_its_own() {
        let mut n = ring_node();
        let planted = NodeRef { id: Id::from_u64(10), addr: (ATTACKER, 1).into() };
        let forged = Request::Leaving { node: at(9), pred: Some(planted), succs: vec![planted] };
        n.handle_request_from(10, Origin::Peer(ATTACKER), forged);
        drive(&mut n, 20, |_, _| Some(Err(RpcFailure::Unreachable)));
        assert_eq!(n.routing().succs, vec![at(11)], "9 is gone, and nothing planted in its place");
    }

    #[test]
    fn a_leaving_node_answers_probes_with_an_error() {
        let mut n = ring_node();
        n.leave(0);
        assert!(matches!(
            n.handle_request(1, Request::Ping),
            Response::Error { code: ErrorCode::Unavailable, .. }
        ));
    }

    #[test]
    fn notify_claims_are_checked_against_the_sender() {
        // From another IP than the node it names: refused outright.
        let mut n = ring_node();
        let six = at(6);
        let r = n.handle_request_from(10, Origin::Peer(ATTACKER), Request::Notify { node: six });
        assert!(matches!(r, Response::Error { code: ErrorCode::Unavailable, .. }), "{r:?}");
        assert_eq!(n.routing().pred, Some(at(5)));
        // From its IP with an id that is not SHA-1 of its address: probed; an answer as
        // another node (or none) leaves the predecessor alone.
        n.handle_request_from(10, Origin::Peer(six.addr.ip()), Request::Notify { node: six });
        assert_eq!(n.routing().pred, Some(at(5)), "not before the probe");
        drive(&mut n, 20, |_, _| Some(Ok(Response::Pong { node: at(200) })));
        assert_eq!(n.routing().pred, Some(at(5)));
        assert_eq!(n.counters().claims_refused, 2);
        // ... and it is believed once the node confirms.
        n.handle_request_from(30, Origin::Peer(six.addr.ip()), Request::Notify { node: six });
        drive(&mut n, 40, |to, req| match req {
            Request::Ping if to == six.addr => Some(Ok(Response::Pong { node: six })),
            _ => None,
        });
        assert_eq!(n.routing().pred, Some(six));
        // A derived id (SHA-1 of the address) is believed without a probe.
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let derived = NodeRef { id: Id::hash(addr.to_string().as_bytes(), 8), addr };
        let mut n = Node::new(Params { bits: 8, gc_ms: 0, ..Params::default() }, at(7), 0);
        n.install(None, vec![at(9)], vec![]);
        n.handle_request_from(10, Origin::Peer(addr.ip()), Request::Notify { node: derived });
        assert_eq!(n.routing().pred, Some(derived));
    }

    #[test]
    fn stores_from_strangers_are_kept_only_for_a_key_holder_at_their_address() {
        let item = |k: &[u8]| Item { key: k.to_vec(), value: b"forged".to_vec() };
        // From a neighbour's IP: kept at once.
        let mut n = ring_node();
        let k = key_in(100, 110);
        n.handle_request_from(10, Origin::Peer(at(5).addr.ip()), Request::Store { items: vec![item(&k)] });
        assert_eq!(n.store().get(&k), Some(&b"forged".to_vec()));
        // From elsewhere: the first key's holders are looked up; none is at the sender's IP.
        let mut n = ring_node();
        n.store_mut().insert(k.clone(), b"real".to_vec());
        let r = n.handle_request_from(10, Origin::Peer(ATTACKER), Request::Store { items: vec![item(&k)] });
        assert_eq!(r, Response::Ok);
        drive(&mut n, 20, |_, _| Some(Ok(Response::Found { succs: vec![at(110), at(120)] })));
        assert_eq!(n.store().get(&k), Some(&b"real".to_vec()), "not overwritten");
        assert_eq!(n.counters().claims_refused, 1);
        // The key's owner sending from another host: kept (its own arc only).
        let owner = NodeRef { id: Id::from_u64(110), addr: (ATTACKER, 4000).into() };
        let mine = key_in(5, 7);
        let items = vec![item(&k), item(&mine)];
        n.handle_request_from(30, Origin::Peer(ATTACKER), Request::Store { items });
        drive(&mut n, 40, |_, _| Some(Ok(Response::Found { succs: vec![owner, at(120)] })));
        assert_eq!(n.store().get(&k), Some(&b"forged".to_vec()));
        assert_eq!(n.store().get(&mine), None, "an item of this node's own arc is not the sender's");
    }

    #[test]
    fn stats_report_the_store_and_the_counters() {
        let mut n = node(Params { bits: 8, ..Params::default() });
        n.install(Some(at(5)), vec![at(9)], vec![]);
        n.handle_request(0, Request::Put { key: key_in(5, 7), value: b"12345".to_vec() });
        n.handle_request(
            0,
            Request::Store { items: vec![Item { key: key_in(100, 110), value: b"1".to_vec() }] },
        );
        let Response::Stats { counters } = n.handle_request(2500, Request::Stats) else { panic!() };
        let get = |name: &str| counters.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        assert_eq!(get("items"), Some(2));
        assert_eq!(get("items_owned"), Some(1));
        assert_eq!(get("items_replica"), Some(1));
        assert_eq!(get("uptime_ms"), Some(2500));
        assert_eq!(get("requests_in"), Some(3));
        assert_eq!(get("rpcs_out"), Some(1), "the Put's replica");
        assert!(counters.iter().all(|(k, _)| k.len() <= crate::wire::MAX_COUNTER_NAME));
    }
}
