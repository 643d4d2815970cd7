//! The sans-IO Chord node: routing maintenance (join, stabilize, notify, fix_fingers,
//! check_predecessor), failure handling, replication and key hand-over, and lookups. It never
//! touches a socket or a clock: drivers pass `now` (milliseconds on any monotonic scale), feed
//! requests and replies in, and carry out the [`Output`]s it returns. The TCP server and the
//! simulator drive this same code.

use crate::id::Id;
use crate::lookup::{Lookup, Step};
use crate::routing::Routing;
use crate::store::Store;
use crate::wire::{ErrorCode, Item, NodeRef, Request, Response};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Milliseconds on the driver's monotonic clock (real or virtual).
pub type Millis = u64;

/// Most bytes of item data sent in one `Store` message during hand-over or replication.
const STORE_BATCH_BYTES: usize = 1024 * 1024;

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
    pending: HashMap<u64, Pending>,
    next_token: u64,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
    rng: u64,
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
            next_token: 1,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
            rng: seed | 1,
            params,
        };
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
        self.pending.insert(token, pending);
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
            Phase::Active => Some(self.next_stabilize.min(self.next_fix).min(self.next_check)),
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
                        .any(|p| matches!(p, Pending::Lookup { purpose: Purpose::Join, .. }))
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
            && !self.pending.values().any(|p| matches!(p, Pending::LeaveHandover { .. }))
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
            if j != k && !s.in_half_open(&start, &node.id) {
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

    /// Answers a request from another node or a client.
    pub fn handle_request(&mut self, _now: Millis, req: Request) -> Response {
        if matches!(self.phase, Phase::Left) {
            return Response::Error {
                code: ErrorCode::Unavailable,
                message: "this node has left the ring".into(),
            };
        }
        match req {
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
                self.store.insert(key, value);
                for t in self.replica_targets() {
                    self.send(t.addr, Request::Store { items: vec![item.clone()] }, Pending::Fire);
                }
                Response::Ok
            }
            Request::Delete { key } => {
                let existed = self.store.remove(&key);
                if self.rt.owns(&self.store.key_id(&key)) {
                    for t in self.replica_targets() {
                        self.send(t.addr, Request::Delete { key: key.clone() }, Pending::Fire);
                    }
                }
                Response::Deleted { existed }
            }
            Request::Store { items } => {
                for item in items {
                    if item.value.len() <= self.params.max_value && self.has_room(&item.key, &item.value) {
                        self.store.insert(item.key, item.value);
                    }
                }
                Response::Ok
            }
            Request::Leaving { node, pred, succs } => {
                self.on_leaving(node, pred, succs);
                Response::Ok
            }
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

    /// Like [`handle_request`](Self::handle_request), but a recursive lookup (`Route`) that must
    /// be forwarded returns `None`; its answer comes later as [`Event::Reply`] with `reply_to`.
    pub fn handle_request_deferred(&mut self, now: Millis, req: Request, reply_to: u64) -> Option<Response> {
        match req {
            Request::Route { id, hops } if self.phase == Phase::Active => {
                self.route_recursive(ReplyTo::Remote(reply_to), id, hops, Vec::new())
            }
            other => Some(self.handle_request(now, other)),
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
    pub fn handle_reply(&mut self, _now: Millis, token: u64, reply: Result<Response, RpcFailure>) {
        let Some(pending) = self.pending.remove(&token) else { return };
        if let Ok(Response::Error { .. }) = reply {
            return self.on_failure(pending, RpcFailure::Refused);
        }
        match reply {
            Err(f) => self.on_failure(pending, f),
            Ok(resp) => self.on_success(pending, resp),
        }
    }

    fn on_success(&mut self, pending: Pending, resp: Response) {
        match pending {
            Pending::Lookup { purpose, mut lookup, .. } => {
                let step = lookup.on_response(resp);
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

    fn on_failure(&mut self, pending: Pending, failure: RpcFailure) {
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
}
