//! The peer-wire state machine of one torrent, sans IO (quinn-proto style): every peer
//! connection's choke/interest state, the piece picker (rarest first, endgame), the choker
//! (tit-for-tat every `rechoke`, optimistic unchoke every `optimistic`), request pipelining,
//! piece assembly, hash-failure handling (blame, ban) and the admission policy for new peers.
//!
//! The driver ([`crate::session`]) owns sockets, disk and timers. It tells the core what
//! happened — [`Swarm::handle_connected`], [`Swarm::handle_message`],
//! [`Swarm::handle_disconnected`], [`Swarm::handle_uploaded`], [`Swarm::handle_piece_verified`]
//! / [`Swarm::handle_piece_failed`], [`Swarm::handle_timeout`] — always with `now`, and carries
//! out what [`Swarm::poll_action`] asks (send a message, read a block from disk and upload it,
//! verify and write a piece, disconnect a peer, announce completion), sleeping until
//! [`Swarm::poll_timeout`]. The core never reads the clock, so [`sim`] runs whole swarms of it
//! in virtual time.

pub mod sim;
#[cfg(test)]
mod tests;

use crate::admission;
use crate::bitfield::Bitfield;
use crate::choker::{ChokeParams, Choker, PeerStat};
use crate::config::ClientConfig;
use crate::meter::RateMeter;
use crate::picker::{Picker, Received};
use crate::wire::{BLOCK, BlockRef, Message};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The core's name for a peer connection (assigned by [`Swarm::handle_connected`]).
pub type PeerKey = u64;

/// The core's constants, from [`ClientConfig`] (or a test).
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The choker's slots and periods.
    pub choke: ChokeParams,
    /// Peer caps for the admission policy.
    pub limits: admission::Limits,
    /// Upload nothing: every request is refused, nobody is unchoked.
    pub no_upload: bool,
    /// Pieces failing their hash check a peer may contribute to before it is banned.
    pub max_hash_failures: u32,
    /// Fewest outstanding block requests per peer.
    pub min_requests: usize,
    /// Most outstanding block requests per peer.
    pub max_requests: usize,
    /// Seconds of a peer's download rate kept requested ahead.
    pub request_queue_secs: f64,
    /// Window of the per-peer rolling rates (the choker's input).
    pub rate_window: Duration,
}

impl SwarmConfig {
    /// The core's constants from the client's configuration.
    pub fn from_client(cfg: &ClientConfig) -> Self {
        SwarmConfig {
            choke: cfg.choke_params(),
            limits: admission::Limits { max_peers: cfg.max_peers, max_per_ip: cfg.max_peers_per_ip },
            no_upload: cfg.no_upload,
            max_hash_failures: cfg.max_hash_failures,
            min_requests: cfg.min_requests,
            max_requests: cfg.max_requests,
            request_queue_secs: cfg.request_queue_secs,
            rate_window: Duration::from_secs_f64(cfg.rate_window_secs.clamp(0.1, 3600.0)),
        }
    }
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self::from_client(&ClientConfig::default())
    }
}

/// A connection that finished its handshake, as the driver describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connected {
    /// The remote address.
    pub addr: SocketAddr,
    /// The peer id from its handshake.
    pub peer_id: [u8; 20],
    /// We dialled it.
    pub outgoing: bool,
    /// It speaks the fast extension (BEP 6).
    pub fast: bool,
}

/// What the core asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to `peer`.
    Send {
        /// The connection.
        peer: PeerKey,
        /// The message.
        msg: Message,
    },
    /// Read `block` from disk and send it to `peer` as a PIECE (queued behind earlier ones; a
    /// later CHOKE to the peer drops what is still queued).
    Upload {
        /// The connection.
        peer: PeerKey,
        /// The block asked for.
        block: BlockRef,
    },
    /// Drop `block` from `peer`'s upload queue if not sent yet (it cancelled).
    CancelUpload {
        /// The connection.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// Check piece `piece`'s hash, write it on success, and report with
    /// [`Swarm::handle_piece_verified`] or [`Swarm::handle_piece_failed`].
    Verify {
        /// The piece index.
        piece: u32,
        /// Its assembled bytes.
        data: Vec<u8>,
    },
    /// Close the connection to `peer` (the core has already forgotten it).
    Disconnect {
        /// The connection.
        peer: PeerKey,
        /// Why, for the log.
        reason: &'static str,
    },
    /// Every piece is verified: announce `completed` to the trackers.
    Completed,
}

/// Why the core refused a message (the driver closes the connection and logs it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwarmError {
    /// The peer broke the protocol; it has been forgotten.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The key names no connected peer (closed, evicted or banned meanwhile).
    #[error("not a connected peer")]
    UnknownPeer,
}

/// Counters for progress bars, announces and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwarmStats {
    /// Verified pieces.
    pub have: u32,
    /// Pieces in the torrent.
    pub pieces: u32,
    /// Bytes still missing.
    pub left: u64,
    /// Payload bytes received (fresh blocks only).
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Connected peers.
    pub peers: usize,
    /// Receive rate, bytes/s (last 5 s).
    pub down_rate: f64,
    /// Send rate, bytes/s (last 5 s).
    pub up_rate: f64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
}

/// One connected peer as the core sees it.
#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    peer_id: [u8; 20],
    outgoing: bool,
    bitfield: Bitfield,
    fast: bool,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Blocks we requested from it and still expect.
    pending: HashSet<BlockRef>,
    down: RateMeter,
    up: RateMeter,
    connected_at: Instant,
    last_block: Option<Instant>,
    /// It was interested in us or a block went either way: never evicted for a newcomer.
    useful: bool,
}

/// A piece being assembled, and who sent its blocks (blamed if its hash is wrong).
#[derive(Debug)]
struct PieceBuf {
    data: Vec<u8>,
    contributors: HashSet<SocketAddr>,
}

/// The state machine of one torrent's swarm (see the module docs).
#[derive(Debug)]
pub struct Swarm {
    cfg: SwarmConfig,
    our_id: [u8; 20],
    picker: Picker,
    bufs: HashMap<u32, PieceBuf>,
    /// Contributors of pieces handed out for verification, until the verdict.
    verifying: HashMap<u32, HashSet<SocketAddr>>,
    peers: HashMap<PeerKey, Peer>,
    next_key: PeerKey,
    connecting: HashSet<SocketAddr>,
    failures: HashMap<SocketAddr, u32>,
    banned: HashSet<SocketAddr>,
    choker: Choker,
    rng: StdRng,
    down_total: RateMeter,
    up_total: RateMeter,
    downloaded: u64,
    uploaded: u64,
    hash_failures: u64,
    completed: bool,
    next_rechoke: Instant,
    actions: VecDeque<Action>,
}

/// Whom a ban or a hash failure is charged to: the IP address, except on loopback, where many
/// peers (a lab, a test swarm) share 127.0.0.1 and the port tells them apart.
pub fn ban_key(addr: &SocketAddr) -> SocketAddr {
    if addr.ip().is_loopback() { *addr } else { SocketAddr::new(addr.ip(), 0) }
}

impl Swarm {
    /// A swarm for `total` bytes in pieces of `piece_length`, already holding `have`; `our_id`
    /// breaks ties between duplicate connections, `seed` makes every random choice repeatable.
    pub fn new(
        cfg: SwarmConfig,
        our_id: [u8; 20],
        piece_length: u64,
        total: u64,
        have: &Bitfield,
        seed: u64,
        now: Instant,
    ) -> Swarm {
        let mut picker = Picker::new(piece_length, total);
        for i in have.ones() {
            picker.set_have(i);
        }
        let completed = picker.is_complete();
        Swarm {
            cfg,
            our_id,
            picker,
            bufs: HashMap::new(),
            verifying: HashMap::new(),
            peers: HashMap::new(),
            next_key: 1,
            connecting: HashSet::new(),
            failures: HashMap::new(),
            banned: HashSet::new(),
            choker: Choker::new(),
            rng: StdRng::seed_from_u64(seed),
            down_total: RateMeter::new(Duration::from_secs(5), now),
            up_total: RateMeter::new(Duration::from_secs(5), now),
            downloaded: 0,
            uploaded: 0,
            hash_failures: 0,
            completed,
            next_rechoke: now,
            actions: VecDeque::new(),
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Swarm::handle_timeout`] must next be called (the next choker round), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.cfg.no_upload).then_some(self.next_rechoke)
    }

    /// Runs what is due at `now`: a choker round every `rechoke` (tit-for-tat, with the
    /// optimistic unchoke rotated every `optimistic`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.cfg.no_upload || now < self.next_rechoke {
            return;
        }
        self.next_rechoke = now + self.cfg.choke.rechoke;
        let seeding = self.picker.is_complete();
        let mut stats: Vec<PeerStat> = self
            .peers
            .iter_mut()
            .map(|(id, p)| PeerStat {
                id: *id,
                interested: p.peer_interested,
                down_rate: p.down.rate(now),
                up_rate: p.up.rate(now),
                connected_at: p.connected_at,
                last_block: p.last_block,
                we_are_interested: p.am_interested,
            })
            .collect();
        stats.sort_by_key(|s| s.id); // HashMap order must not leak into the random draw
        let unchoke = self.choker.rechoke(&stats, seeding, &self.cfg.choke, now, &mut self.rng);
        for s in &stats {
            self.set_choke(s.id, !unchoke.contains(&s.id));
        }
    }

    /// The current optimistic unchoke (for tests and status pages).
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.choker.optimistic()
    }

    /// Whether `addr` was banned for sending corrupt pieces (its handshakes are refused).
    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.banned.contains(&ban_key(addr))
    }

    /// Whether the driver should dial `addr`: not connected or being dialled, not banned, and
    /// the admission policy would not refuse it. True records it as being dialled until
    /// [`Swarm::dial_finished`].
    pub fn start_dial(&mut self, addr: SocketAddr) -> bool {
        let busy = self.peers.values().any(|p| p.addr == addr) || self.connecting.contains(&addr);
        if busy || self.is_banned(&addr) || matches!(self.admission(addr.ip()), admission::Admit::Refuse(_)) {
            return false;
        }
        self.connecting.insert(addr);
        true
    }

    /// A dial from [`Swarm::start_dial`] connected or failed (a connected one is admitted by
    /// [`Swarm::handle_connected`] after its handshake).
    pub fn dial_finished(&mut self, addr: SocketAddr) {
        self.connecting.remove(&addr);
    }

    fn admission(&self, ip: IpAddr) -> admission::Admit {
        let held: Vec<admission::Held> = self
            .peers
            .iter()
            .map(|(id, p)| admission::Held {
                id: *id,
                ip: p.addr.ip().to_canonical(),
                since: p.connected_at,
                useful: p.useful,
            })
            .collect();
        let pending: Vec<IpAddr> = self.connecting.iter().map(|a| a.ip().to_canonical()).collect();
        admission::admit(&held, &pending, ip.to_canonical(), self.cfg.limits)
    }

    /// A handshake completed: admits the peer (a duplicate connection keeps the one the lower
    /// peer id opened; a full table evicts the oldest idle peer) and queues our opening
    /// message. `None`: refused, close it.
    pub fn handle_connected(&mut self, c: Connected, now: Instant) -> Option<PeerKey> {
        if self.is_banned(&c.addr) {
            return None;
        }
        if let Some((&old_key, old)) = self.peers.iter().find(|(_, p)| p.peer_id == c.peer_id) {
            // Two connections between the same pair: both sides keep the one the lower id opened.
            let ours_lower = self.our_id < c.peer_id;
            if old.outgoing == c.outgoing || (c.outgoing != ours_lower) {
                return None;
            }
            self.drop_peer(old_key, "replaced by a connection the other way");
        }
        match self.admission(c.addr.ip()) {
            admission::Admit::Yes => {}
            admission::Admit::Evict(victim) => self.drop_peer(victim, "evicted: it never became useful"),
            admission::Admit::Refuse(why) => {
                tracing::debug!("peer {} refused: {why}", c.addr);
                return None;
            }
        }
        let key = self.next_key;
        self.next_key += 1;
        if let Some(m) = opening_message(self.picker.have(), c.fast) {
            self.actions.push_back(Action::Send { peer: key, msg: m });
        }
        let window = self.cfg.rate_window;
        self.peers.insert(
            key,
            Peer {
                addr: c.addr,
                peer_id: c.peer_id,
                outgoing: c.outgoing,
                bitfield: Bitfield::new(self.picker.num_pieces()),
                fast: c.fast,
                am_choking: true,
                am_interested: false,
                peer_choking: true,
                peer_interested: false,
                pending: HashSet::new(),
                down: RateMeter::new(window, now),
                up: RateMeter::new(window, now),
                connected_at: now,
                last_block: None,
                useful: false,
            },
        );
        Some(key)
    }

    /// The connection closed: its pieces no longer count for rarity and its outstanding
    /// requests go back to the picker. Unknown keys are ignored.
    pub fn handle_disconnected(&mut self, peer: PeerKey, _now: Instant) {
        self.forget(peer);
    }

    fn forget(&mut self, peer: PeerKey) -> bool {
        let Some(p) = self.peers.remove(&peer) else { return false };
        self.picker.peer_bitfield(&p.bitfield, false);
        for r in &p.pending {
            self.picker.cancel(r);
        }
        // A choker whose optimistic peer left notices at its next round.
        true
    }

    /// Forgets `peer` and asks the driver to close it.
    fn drop_peer(&mut self, peer: PeerKey, reason: &'static str) {
        if self.forget(peer) {
            self.actions.push_back(Action::Disconnect { peer, reason });
        }
    }

    /// A message from `peer`. Extension (BEP 10) messages are the driver's; they are ignored
    /// here. An error means the peer broke the protocol: it is forgotten, close it.
    pub fn handle_message(&mut self, peer: PeerKey, msg: Message, now: Instant) -> Result<(), SwarmError> {
        if !self.peers.contains_key(&peer) {
            return Err(SwarmError::UnknownPeer);
        }
        let res = self.on_message(peer, msg, now);
        if res.is_err() {
            self.forget(peer);
        }
        res
    }

    fn on_message(&mut self, id: PeerKey, msg: Message, now: Instant) -> Result<(), SwarmError> {
        let n = self.picker.num_pieces();
        msg.validate(n, |i| self.picker.piece_size(i)).map_err(|e| SwarmError::Protocol(e.to_string()))?;
        let Some(slot) = self.peers.get_mut(&id) else { return Err(SwarmError::UnknownPeer) };
        match msg {
            Message::KeepAlive
            | Message::Extended { .. }
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_)
            | Message::Unknown(_) => {}
            Message::Choke => {
                slot.peer_choking = true;
                for r in slot.pending.drain() {
                    self.picker.cancel(&r);
                }
            }
            Message::Unchoke => {
                slot.peer_choking = false;
                self.fill_requests(id, now);
            }
            Message::Interested => {
                slot.peer_interested = true;
                slot.useful = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking && p.peer_interested).count();
                if !self.cfg.no_upload && self.choker.has_free_slot(unchoked, &self.cfg.choke) {
                    self.set_choke(id, false);
                }
            }
            Message::NotInterested => slot.peer_interested = false,
            Message::Have(i) => {
                if slot.bitfield.set(i) {
                    self.picker.peer_has(i);
                }
                self.update_interest(id, now);
            }
            Message::Bitfield(bytes) => {
                let bf = Bitfield::from_bytes(&bytes, n)
                    .ok_or_else(|| SwarmError::Protocol("bitfield with spare bits set".into()))?;
                // A repeated bitfield (some clients follow HAVE NONE with one) replaces the last.
                self.picker.peer_bitfield(&slot.bitfield, false);
                self.picker.peer_bitfield(&bf, true);
                slot.bitfield = bf;
                self.update_interest(id, now);
            }
            Message::HaveAll | Message::HaveNone => {
                if !slot.fast {
                    return Err(SwarmError::Protocol("fast-extension message without the extension".into()));
                }
                let bf = if matches!(msg, Message::HaveAll) { Bitfield::full(n) } else { Bitfield::new(n) };
                self.picker.peer_bitfield(&slot.bitfield, false);
                self.picker.peer_bitfield(&bf, true);
                slot.bitfield = bf;
                self.update_interest(id, now);
            }
            Message::Request(r) => {
                let refuse = self.cfg.no_upload || slot.am_choking || !self.picker.have().get(r.index);
                if !refuse {
                    self.actions.push_back(Action::Upload { peer: id, block: r });
                } else if slot.fast {
                    self.actions.push_back(Action::Send { peer: id, msg: Message::Reject(r) });
                }
            }
            Message::Cancel(r) => self.actions.push_back(Action::CancelUpload { peer: id, block: r }),
            Message::Reject(r) => {
                if !slot.fast {
                    return Err(SwarmError::Protocol("reject without the fast extension".into()));
                }
                if slot.pending.remove(&r) {
                    self.picker.cancel(&r);
                }
                self.fill_requests(id, now);
            }
            Message::Piece { index, begin, data } => {
                let r = BlockRef { index, begin, length: data.len() as u32 };
                let was_pending = slot.pending.remove(&r);
                slot.useful |= was_pending;
                slot.down.add(r.length as u64, now);
                slot.last_block = Some(now);
                let from = ban_key(&slot.addr);
                self.down_total.add(r.length as u64, now);
                if !was_pending && !self.picker.is_expected(&r) {
                    // Late or unrequested: harmless (after a cancel or choke), ignore it.
                    self.fill_requests(id, now);
                    return Ok(());
                }
                if let Received::Fresh { others, piece_done } = self.picker.received(&r) {
                    self.downloaded += r.length as u64;
                    let size = self.picker.piece_size(index) as usize;
                    let buf = self
                        .bufs
                        .entry(index)
                        .or_insert_with(|| PieceBuf { data: vec![0; size], contributors: HashSet::new() });
                    buf.data[begin as usize..begin as usize + data.len()].copy_from_slice(&data);
                    buf.contributors.insert(from);
                    if others > 0 {
                        // Endgame: the same block is on its way from others; cancel those.
                        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                        keys.sort_unstable();
                        for k in keys {
                            if k != id
                                && let Some(p) = self.peers.get_mut(&k)
                                && p.pending.remove(&r)
                            {
                                self.actions.push_back(Action::Send { peer: k, msg: Message::Cancel(r) });
                            }
                        }
                    }
                    if piece_done && let Some(buf) = self.bufs.remove(&index) {
                        // The next requests to this peer wait for the verdict (the driver
                        // verifies before reading more from it).
                        self.verifying.insert(index, buf.contributors);
                        self.actions.push_back(Action::Verify { piece: index, data: buf.data });
                        return Ok(());
                    }
                }
                self.fill_requests(id, now);
            }
        }
        Ok(())
    }

    /// A block of `bytes` went out to `peer` (the choker's input when seeding).
    pub fn handle_uploaded(&mut self, peer: PeerKey, bytes: u64, now: Instant) {
        self.uploaded += bytes;
        self.up_total.add(bytes, now);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.up.add(bytes, now);
            p.useful = true;
        }
    }

    /// Piece `piece` matched its hash and is on disk: HAVE to everyone lacking it, interest
    /// updated, requests topped up, completion announced.
    pub fn handle_piece_verified(&mut self, piece: u32, now: Instant) {
        self.verifying.remove(&piece);
        self.picker.piece_verified(piece);
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            if let Some(p) = self.peers.get(&k)
                && !p.bitfield.get(piece)
            {
                self.actions.push_back(Action::Send { peer: k, msg: Message::Have(piece) });
            }
            self.update_interest(k, now);
        }
        if self.picker.is_complete() && !self.completed {
            self.completed = true;
            self.actions.push_back(Action::Completed);
        }
    }

    /// Piece `piece` failed its hash check: its blocks are requested again, and every peer
    /// that contributed is charged; one charged `max_hash_failures` times is banned and
    /// disconnected.
    pub fn handle_piece_failed(&mut self, piece: u32, now: Instant) {
        self.picker.piece_failed(piece);
        self.hash_failures += 1;
        let contributors = self.verifying.remove(&piece).unwrap_or_default();
        tracing::warn!("piece {piece} failed its hash check (from {contributors:?})");
        let mut contributors: Vec<SocketAddr> = contributors.into_iter().collect();
        contributors.sort_unstable();
        for ip in contributors {
            let n = self.failures.entry(ip).or_default();
            *n += 1;
            if *n >= self.cfg.max_hash_failures {
                self.banned.insert(ip);
                let mut victims: Vec<PeerKey> =
                    self.peers.iter().filter(|(_, p)| ban_key(&p.addr) == ip).map(|(k, _)| *k).collect();
                victims.sort_unstable();
                for k in victims {
                    self.drop_peer(k, "banned after repeated corrupt pieces");
                }
            }
        }
        self.fill_all(now);
    }

    /// Piece `piece` could not be written (a disk error): its blocks are requested again and
    /// nobody is blamed.
    pub fn handle_piece_unwritten(&mut self, piece: u32, now: Instant) {
        self.verifying.remove(&piece);
        self.picker.piece_failed(piece);
        self.fill_all(now);
    }

    fn fill_all(&mut self, now: Instant) {
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            self.fill_requests(k, now);
        }
    }

    /// Whether we have piece `index` (uploads double-check before reading the disk).
    pub fn has_piece(&self, index: u32) -> bool {
        self.picker.have().get(index)
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// The verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// Counters at `now`.
    pub fn stats(&mut self, now: Instant) -> SwarmStats {
        SwarmStats {
            have: self.picker.have().count(),
            pieces: self.picker.num_pieces(),
            left: self.picker.left(),
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            peers: self.peers.len(),
            down_rate: self.down_total.rate(now),
            up_rate: self.up_total.rate(now),
            hash_failures: self.hash_failures,
        }
    }

    /// Connected peers' keys, in order.
    pub fn peer_keys(&self) -> Vec<PeerKey> {
        let mut keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    /// Whether we are choking `peer` (None: not connected).
    pub fn am_choking(&self, peer: PeerKey) -> Option<bool> {
        self.peers.get(&peer).map(|p| p.am_choking)
    }

    /// Blocks requested from `peer` and not yet received.
    pub fn pending_requests(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.pending.len())
    }

    fn set_choke(&mut self, id: PeerKey, choke: bool) {
        if let Some(p) = self.peers.get_mut(&id)
            && p.am_choking != choke
        {
            p.am_choking = choke;
            let msg = if choke { Message::Choke } else { Message::Unchoke };
            self.actions.push_back(Action::Send { peer: id, msg });
        }
    }

    /// Sends INTERESTED / NOT INTERESTED when our interest in `id` changed, then requests.
    fn update_interest(&mut self, id: PeerKey, now: Instant) {
        let Some(p) = self.peers.get_mut(&id) else { return };
        let want = self.picker.wants_from(&p.bitfield);
        if want != p.am_interested {
            p.am_interested = want;
            let msg = if want { Message::Interested } else { Message::NotInterested };
            self.actions.push_back(Action::Send { peer: id, msg });
        }
        self.fill_requests(id, now);
    }

    /// Tops up the request pipeline to `id`, sized to its rate (`request_queue_secs` of data).
    fn fill_requests(&mut self, id: PeerKey, now: Instant) {
        let min = self.cfg.min_requests.max(1);
        let max = self.cfg.max_requests.max(min);
        let secs = self.cfg.request_queue_secs.clamp(0.01, 60.0);
        let Swarm { picker, peers, rng, actions, .. } = self;
        let Some(p) = peers.get_mut(&id) else { return };
        if p.peer_choking || !p.am_interested || picker.is_complete() {
            return;
        }
        let rate = p.down.rate(now);
        let target = ((rate * secs / BLOCK as f64) as usize).clamp(min, max);
        if p.pending.len() >= target {
            return;
        }
        let pending = &p.pending;
        let picks = picker.pick(&p.bitfield, target - pending.len(), &|r| pending.contains(r), rng);
        for r in picks {
            p.pending.insert(r);
            actions.push_back(Action::Send { peer: id, msg: Message::Request(r) });
        }
    }
}

/// What we announce right after the handshake (BITFIELD, or HAVE ALL/NONE with BEP 6).
fn opening_message(have: &Bitfield, fast: bool) -> Option<Message> {
    if fast && have.is_full() {
        Some(Message::HaveAll)
    } else if fast && have.count() == 0 {
        Some(Message::HaveNone)
    } else if have.count() > 0 {
        Some(Message::Bitfield(have.as_bytes().to_vec().into()))
    } else {
        None
    }
}
