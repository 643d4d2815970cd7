//! A discrete-event simulator that runs [`Swarm`] cores in virtual time, the way Chord's
//! simulator drives its `Node`: no sockets, no disk, deterministic for a seed. Each node has
//! an upload rate (blocks leave one after another, round robin over its peers), every message
//! takes `latency` and links stay FIFO, verification compares with the true content, and a
//! `corrupt` node sends garbage blocks. Every message sent is logged for the tests' checks.
//!
//! Node i has the address 10.0.x.y:6881 for x.y = i + 1 and peer id `[i + 1; 20]`.

use super::{Action, Connected, PeerKey, Swarm, SwarmConfig};
use crate::bitfield::Bitfield;
use crate::wire::{BlockRef, Message};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The network and torrent the simulator models.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// One-way latency of every message.
    pub latency: Duration,
    /// Time a piece's hash check and write take.
    pub verify_time: Duration,
    /// Piece length of the torrent.
    pub piece_length: u64,
    /// Torrent size in bytes.
    pub total: u64,
    /// Whether peers speak the fast extension (REJECT, HAVE ALL/NONE).
    pub fast: bool,
    /// Seed of the content and of every core's random choices.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            latency: Duration::from_millis(10),
            verify_time: Duration::from_millis(1),
            piece_length: 64 * 1024,
            total: 16 * 64 * 1024,
            fast: false,
            seed: 1,
        }
    }
}

/// One simulated client.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Pieces it starts with.
    pub have: Vec<u32>,
    /// Bytes per second it uploads (all peers together).
    pub upload_rate: u64,
    /// It sends garbage in every block.
    pub corrupt: bool,
    /// Its core's constants.
    pub cfg: SwarmConfig,
}

impl NodeSpec {
    /// A node with nothing, uploading at `rate` bytes/s.
    pub fn leecher(rate: u64) -> Self {
        NodeSpec { have: Vec::new(), upload_rate: rate, corrupt: false, cfg: SwarmConfig::default() }
    }

    /// A node with every piece of `sim`'s torrent, uploading at `rate` bytes/s.
    pub fn seeder(sim: &SimConfig, rate: u64) -> Self {
        let n = sim.total.div_ceil(sim.piece_length) as u32;
        NodeSpec { have: (0..n).collect(), ..Self::leecher(rate) }
    }
}

/// A message one node sent another, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Virtual time since the start.
    pub at: Duration,
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// The message (PIECE data is not kept: `Piece` carries an empty payload here).
    pub msg: Message,
}

#[derive(Debug)]
struct Node {
    swarm: Swarm,
    addr: SocketAddr,
    rate: u64,
    corrupt: bool,
    /// Our key → (remote node, its key for us).
    links: HashMap<PeerKey, (usize, PeerKey)>,
    uploads: BTreeMap<PeerKey, VecDeque<BlockRef>>,
    last_served: PeerKey,
    pumping: bool,
    completed_at: Option<Duration>,
    verifying: usize,
}

#[derive(Debug)]
enum Event {
    Deliver { to: usize, key: PeerKey, msg: Message },
    Pump(usize),
    Verified { node: usize, piece: u32, ok: bool },
}

/// The simulator (see the module docs).
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    t0: Instant,
    now: Instant,
    content: Vec<u8>,
    nodes: Vec<Node>,
    events: BTreeMap<(Instant, u64), Event>,
    seq: u64,
    /// FIFO per direction: the earliest time the next message on (from, to) may arrive.
    link_free: HashMap<(usize, usize), Instant>,
    /// Every message sent, in order.
    pub log: Vec<Sent>,
    /// Every disconnect a core asked for: (time, by, peer node, reason).
    pub disconnects: Vec<(Duration, usize, usize, &'static str)>,
    /// Every hash check: (time, node, piece, passed).
    pub verifications: Vec<(Duration, usize, u32, bool)>,
}

fn peer_id(i: usize) -> [u8; 20] {
    [(i + 1) as u8; 20]
}

impl Sim {
    /// A simulator of `nodes` (not yet connected), at virtual time zero.
    pub fn new(cfg: SimConfig, nodes: Vec<NodeSpec>) -> Sim {
        let t0 = Instant::now(); // only the origin of the virtual clock
        let content: Vec<u8> = (0..cfg.total)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(cfg.seed) >> 7) as u8)
            .collect();
        let n = cfg.total.div_ceil(cfg.piece_length) as u32;
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut have = Bitfield::new(n);
                for p in &spec.have {
                    have.set(*p);
                }
                let x = (i + 1) as u16;
                Node {
                    swarm: Swarm::new(
                        spec.cfg,
                        peer_id(i),
                        cfg.piece_length,
                        cfg.total,
                        &have,
                        cfg.seed.wrapping_mul(1000).wrapping_add(i as u64),
                        t0,
                    ),
                    addr: SocketAddr::from(([10, 0, (x >> 8) as u8, x as u8], 6881)),
                    rate: spec.upload_rate.max(1),
                    corrupt: spec.corrupt,
                    links: HashMap::new(),
                    uploads: BTreeMap::new(),
                    last_served: 0,
                    pumping: false,
                    completed_at: have.is_full().then_some(Duration::ZERO),
                    verifying: 0,
                }
            })
            .collect();
        Sim {
            cfg,
            t0,
            now: t0,
            content,
            nodes,
            events: BTreeMap::new(),
            seq: 0,
            link_free: HashMap::new(),
            log: Vec::new(),
            disconnects: Vec::new(),
            verifications: Vec::new(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Node `i`'s core (for inspection).
    pub fn swarm(&mut self, i: usize) -> &mut Swarm {
        &mut self.nodes[i].swarm
    }

    /// When node `i` had every piece (zero for nodes that started complete).
    pub fn completed_at(&self, i: usize) -> Option<Duration> {
        self.nodes[i].completed_at
    }

    /// Node `i`'s peer key for node `j`, if connected.
    pub fn key_of(&self, i: usize, j: usize) -> Option<PeerKey> {
        self.nodes[i].links.iter().find(|(_, (m, _))| *m == j).map(|(k, _)| *k)
    }

    /// Whether nothing is left to happen: no message in flight, no upload queued, no piece
    /// being verified.
    pub fn is_quiet(&self) -> bool {
        self.events.values().all(|e| !matches!(e, Event::Deliver { .. } | Event::Verified { .. }))
            && self.nodes.iter().all(|n| n.verifying == 0 && n.uploads.values().all(VecDeque::is_empty))
    }

    /// Connects node `a` (dialling) to node `b`; false if either core refused.
    pub fn connect(&mut self, a: usize, b: usize) -> bool {
        let fast = self.cfg.fast;
        let now = self.now;
        let ca = Connected { addr: self.nodes[b].addr, peer_id: peer_id(b), outgoing: true, fast };
        let cb = Connected { addr: self.nodes[a].addr, peer_id: peer_id(a), outgoing: false, fast };
        let ka = self.nodes[a].swarm.handle_connected(ca, now);
        let kb = self.nodes[b].swarm.handle_connected(cb, now);
        let ok = match (ka, kb) {
            (Some(ka), Some(kb)) => {
                self.nodes[a].links.insert(ka, (b, kb));
                self.nodes[b].links.insert(kb, (a, ka));
                true
            }
            (Some(k), None) => {
                self.nodes[a].swarm.handle_disconnected(k, now);
                false
            }
            (None, Some(k)) => {
                self.nodes[b].swarm.handle_disconnected(k, now);
                false
            }
            (None, None) => false,
        };
        self.drain(vec![a, b]);
        ok
    }

    fn schedule(&mut self, at: Instant, e: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), e);
    }

    /// Sends `msg` from node `from` over its connection `key` after `delay`, FIFO per link.
    fn send(&mut self, from: usize, key: PeerKey, msg: Message, delay: Duration) {
        let Some(&(to, their)) = self.nodes[from].links.get(&key) else { return };
        let logged = match &msg {
            Message::Piece { index, begin, .. } => {
                Message::Piece { index: *index, begin: *begin, data: Bytes::new() }
            }
            m => m.clone(),
        };
        self.log.push(Sent { at: self.elapsed() + delay, from, to, msg: logged });
        let free = self.link_free.entry((from, to)).or_insert(self.now);
        let at = (self.now + delay + self.cfg.latency).max(*free);
        *free = at;
        self.schedule(at, Event::Deliver { to, key: their, msg });
    }

    /// Carries out the actions of the given nodes (and of the nodes they disconnect).
    fn drain(&mut self, mut work: Vec<usize>) {
        let mut rounds = 0;
        while let Some(n) = work.pop() {
            rounds += 1;
            assert!(rounds < 1_000_000, "actions never stop");
            while let Some(a) = self.nodes[n].swarm.poll_action() {
                self.act(n, a, &mut work);
            }
        }
    }

    fn act(&mut self, n: usize, a: Action, work: &mut Vec<usize>) {
        let fast = self.cfg.fast;
        match a {
            Action::Send { peer, msg } => {
                if msg == Message::Choke {
                    // Choking drops the queued uploads (each rejected with the fast extension).
                    let dropped: Vec<BlockRef> = self.nodes[n]
                        .uploads
                        .get_mut(&peer)
                        .map(|q| q.drain(..).collect())
                        .unwrap_or_default();
                    for r in dropped.into_iter().filter(|_| fast) {
                        self.send(n, peer, Message::Reject(r), Duration::ZERO);
                    }
                }
                self.send(n, peer, msg, Duration::ZERO);
            }
            Action::Upload { peer, block } => {
                let q = self.nodes[n].uploads.entry(peer).or_default();
                if !q.contains(&block) {
                    q.push_back(block);
                }
                if !self.nodes[n].pumping {
                    self.nodes[n].pumping = true;
                    self.schedule(self.now, Event::Pump(n));
                }
            }
            Action::CancelUpload { peer, block } => {
                let q = self.nodes[n].uploads.entry(peer).or_default();
                if let Some(pos) = q.iter().position(|r| *r == block) {
                    q.remove(pos);
                    if fast {
                        self.send(n, peer, Message::Reject(block), Duration::ZERO);
                    }
                }
            }
            Action::Verify { piece, data } => {
                let start = piece as usize * self.cfg.piece_length as usize;
                let ok = data[..] == self.content[start..start + data.len()];
                self.nodes[n].verifying += 1;
                self.schedule(self.now + self.cfg.verify_time, Event::Verified { node: n, piece, ok });
            }
            Action::Disconnect { peer, reason } => {
                let Some((m, theirs)) = self.nodes[n].links.remove(&peer) else { return };
                self.nodes[n].uploads.remove(&peer);
                self.disconnects.push((self.elapsed(), n, m, reason));
                self.nodes[m].links.remove(&theirs);
                self.nodes[m].uploads.remove(&theirs);
                self.nodes[m].swarm.handle_disconnected(theirs, self.now);
                work.push(m);
            }
            Action::Completed => {
                if self.nodes[n].completed_at.is_none() {
                    self.nodes[n].completed_at = Some(self.elapsed());
                }
            }
        }
    }

    /// Sends node `n`'s next queued block (round robin over its peers) at its upload rate.
    fn pump(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.pumping = false;
        let after: Vec<PeerKey> = node.uploads.range(node.last_served + 1..).map(|(k, _)| *k).collect();
        let before: Vec<PeerKey> = node.uploads.range(..=node.last_served).map(|(k, _)| *k).collect();
        let Some(key) = after.into_iter().chain(before).find(|k| !node.uploads[k].is_empty()) else { return };
        node.last_served = key;
        let Some(r) = node.uploads.get_mut(&key).and_then(VecDeque::pop_front) else { return };
        if !node.swarm.has_piece(r.index) {
            self.schedule(self.now, Event::Pump(n));
            self.nodes[n].pumping = true;
            return;
        }
        let start = r.index as usize * self.cfg.piece_length as usize + r.begin as usize;
        let mut data = self.content[start..start + r.length as usize].to_vec();
        if node.corrupt {
            data.iter_mut().for_each(|b| *b ^= 0x5a);
        }
        let tx = Duration::from_secs_f64(r.length as f64 / node.rate as f64);
        node.swarm.handle_uploaded(key, r.length as u64, self.now);
        self.send(n, key, Message::Piece { index: r.index, begin: r.begin, data: data.into() }, tx);
        self.nodes[n].pumping = true;
        self.schedule(self.now + tx, Event::Pump(n));
    }

    /// Runs until `done` holds, virtual time passes `limit`, or `max_steps` events; returns
    /// whether `done` held. Every step is one event or one round of due timers.
    pub fn run_until(&mut self, limit: Duration, max_steps: usize, done: impl Fn(&Sim) -> bool) -> bool {
        let deadline = self.t0 + limit;
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            let next_event = self.events.first_key_value().map(|(k, _)| k.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.swarm.poll_timeout()).min();
            let next = match (next_event, next_timer) {
                (Some(e), Some(t)) => e.min(t),
                (e, t) => match e.or(t) {
                    Some(x) => x,
                    None => return done(self),
                },
            };
            if next > deadline {
                self.now = deadline;
                return done(self);
            }
            self.now = self.now.max(next);
            if next_timer.is_some_and(|t| t <= next) {
                let due: Vec<usize> = (0..self.nodes.len())
                    .filter(|&i| self.nodes[i].swarm.poll_timeout().is_some_and(|t| t <= self.now))
                    .collect();
                for &i in &due {
                    self.nodes[i].swarm.handle_timeout(self.now);
                }
                self.drain(due);
                continue;
            }
            let Some((_, e)) = self.events.pop_first() else { continue };
            match e {
                Event::Deliver { to, key, msg } => {
                    if !self.nodes[to].links.contains_key(&key) {
                        continue; // the connection closed meanwhile
                    }
                    if let Err(e) = self.nodes[to].swarm.handle_message(key, msg, self.now) {
                        // The core forgot the peer; close the link from both ends.
                        let reason = match e {
                            super::SwarmError::Protocol(_) => "protocol violation",
                            super::SwarmError::UnknownPeer => "unknown peer",
                        };
                        let mut work = vec![to];
                        if let Some((m, theirs)) = self.nodes[to].links.remove(&key) {
                            self.disconnects.push((self.elapsed(), to, m, reason));
                            self.nodes[m].links.remove(&theirs);
                            self.nodes[m].swarm.handle_disconnected(theirs, self.now);
                            work.push(m);
                        }
                        self.drain(work);
                        continue;
                    }
                    self.drain(vec![to]);
                }
                Event::Pump(n) => {
                    self.pump(n);
                    self.drain(vec![n]);
                }
                Event::Verified { node, piece, ok } => {
                    self.nodes[node].verifying -= 1;
                    self.verifications.push((self.elapsed(), node, piece, ok));
                    if ok {
                        self.nodes[node].swarm.handle_piece_verified(piece, self.now);
                    } else {
                        self.nodes[node].swarm.handle_piece_failed(piece, self.now);
                    }
                    self.drain(vec![node]);
                }
            }
        }
        done(self)
    }
}
