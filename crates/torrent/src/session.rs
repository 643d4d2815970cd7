//! One torrent being downloaded or seeded: the shared state every peer connection feeds (picker,
//! piece buffers, peer table, choker), the listener, the tracker announces and the choker timer.
//! The per-connection protocol lives in [`crate::peer`]; the policies in the sans-IO cores.

use crate::admission;
use crate::bitfield::Bitfield;
use crate::choker::{ChokeParams, Choker, PeerStat};
use crate::config::ClientConfig;
use crate::metainfo::Metainfo;
use crate::meter::RateMeter;
use crate::picker::{Picker, Received};
use crate::storage::{self, Storage};
use crate::tracker::client as tracker_client;
use crate::tracker::proto::{Announce, Event};
use crate::wire::{BlockRef, Message};
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::rate::Limiter;
use appnet_netkit::{BoxError, Service, Shutdown};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// What a peer connection's writer is told to do.
#[derive(Debug)]
pub(crate) enum Out {
    /// Send a message.
    Msg(Message),
    /// Queue a block upload.
    Serve(BlockRef),
    /// Drop a queued upload (the peer cancelled).
    Unserve(BlockRef),
    /// Close the connection.
    Close,
}

/// Why a peer connection was closed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("banned after repeated corrupt pieces")]
    Banned,
}

pub(crate) struct PeerSlot {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
    pub outgoing: bool,
    pub tx: mpsc::UnboundedSender<Out>,
    pub bitfield: Bitfield,
    pub fast: bool,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub pending: HashSet<BlockRef>,
    pub down: RateMeter,
    pub up: RateMeter,
    pub connected_at: Instant,
    pub last_block: Option<Instant>,
    /// It was interested in us or a block went either way: never evicted for a newcomer.
    pub useful: bool,
    /// BEP 10 state (empty when the peer does not speak the extension protocol).
    pub ext: PeerExt,
}

/// What a peer told us in its extension handshake, and what we exchanged over extensions.
#[derive(Debug, Default)]
pub(crate) struct PeerExt {
    /// Its id for `ut_metadata` messages.
    pub ut_metadata: Option<u8>,
    /// Its id for `ut_pex` messages.
    pub ut_pex: Option<u8>,
    /// Where it accepts connections (for PEX when it connected to us).
    pub listen_port: Option<u16>,
    /// Metadata pieces sent to it (bounded per connection).
    pub metadata_served: u32,
    /// When we last acted on a PEX message from it.
    pub last_pex_in: Option<Instant>,
    /// Peers our PEX messages told it about (so the next one sends only the changes).
    pub pex_sent: HashSet<SocketAddr>,
}

struct PieceBuf {
    data: Vec<u8>,
    contributors: HashSet<SocketAddr>,
}

pub(crate) struct State {
    pub picker: Picker,
    bufs: HashMap<u32, PieceBuf>,
    pub peers: HashMap<u64, PeerSlot>,
    next_id: u64,
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
    completed_at: Option<Instant>,
    req_min: usize,
    req_max: usize,
    req_secs: f64,
}

/// A snapshot for progress bars and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Verified pieces.
    pub have: u32,
    /// Pieces in the torrent.
    pub pieces: u32,
    /// Bytes of the torrent.
    pub total: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Payload bytes received.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Connected peers.
    pub peers: usize,
    /// Receive rate, bytes/s (last few seconds).
    pub down_rate: f64,
    /// Send rate, bytes/s (last few seconds).
    pub up_rate: f64,
    /// Pieces that failed their hash check.
    pub hash_failures: u64,
}

pub(crate) struct Inner {
    pub meta: Arc<Metainfo>,
    pub cfg: ClientConfig,
    pub peer_id: [u8; 20],
    pub storage: Storage,
    state: Mutex<State>,
    pub up: Limiter,
    /// One block upload at a time waits on `up` (FIFO across connections), so a shaped peer
    /// with many connections does not have them all polling the bucket.
    pub up_gate: tokio::sync::Mutex<()>,
    pub down: Limiter,
    pub params: ChokeParams,
    pub listen: SocketAddr,
    complete: watch::Sender<bool>,
    pub shutdown: Shutdown,
}

/// A handle to a running (or bound) torrent session: progress, completion, extra peers.
#[derive(Clone)]
pub struct TorrentHandle {
    pub(crate) inner: Arc<Inner>,
}

/// A bound torrent session; `run` it (it is a netkit [`Service`]).
pub struct Session {
    inner: Arc<Inner>,
    listener: TcpListener,
    initial_peers: Vec<SocketAddr>,
}

/// How often peers given to [`Session::add_peers`] are dialled again while not connected.
const REDIAL_GIVEN_PEERS: Duration = Duration::from_secs(15);

/// A fresh peer id: `-AN0100-` and 12 random characters (Azureus style).
pub fn new_peer_id() -> [u8; 20] {
    use rand::Rng;
    let mut id = *b"-AN0100-000000000000";
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut rng = rand::rng();
    for b in &mut id[8..] {
        *b = alphabet[rng.random_range(0..alphabet.len())];
    }
    id
}

impl Session {
    /// Opens the data (creating files when downloading), verifies what is already there, and
    /// binds the peer listener. With `seed`, the data must be complete.
    pub async fn bind(meta: Metainfo, cfg: ClientConfig, seed: bool) -> io::Result<Session> {
        let listener = bind_tcp(cfg.listen, &ListenOpts::default())?;
        Self::bind_on(meta, cfg, seed, listener, new_peer_id()).await
    }

    /// Like [`Session::bind`] on a listener bound earlier and with a given peer id: a magnet
    /// download announces its port and id while fetching the metadata, before the session.
    pub async fn bind_on(
        meta: Metainfo,
        cfg: ClientConfig,
        seed: bool,
        listener: TcpListener,
        peer_id: [u8; 20],
    ) -> io::Result<Session> {
        let meta = Arc::new(meta);
        let (m2, dir) = (meta.clone(), cfg.dir.clone());
        let opts = storage::DownloadOptions { overwrite: cfg.overwrite, preallocate: cfg.preallocate };
        let (storage, have) = tokio::task::spawn_blocking(move || -> io::Result<(Storage, Bitfield)> {
            if seed {
                let storage = Storage::open(&m2.info, &dir, false)?;
                let have = storage.verify(&m2.info, |_| {});
                Ok((storage, have))
            } else {
                Storage::open_download(&m2.info, &dir, opts)
            }
        })
        .await
        .map_err(io::Error::other)??;
        if seed && !have.is_full() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "only {} of {} pieces under {} match the torrent; is --data the directory that holds {:?}?",
                    have.count(),
                    have.len(),
                    cfg.dir.display(),
                    meta.info.name
                ),
            ));
        }
        let listen = listener.local_addr()?;
        let mut picker = Picker::new(meta.info.piece_length, meta.info.total_length());
        for i in have.ones() {
            picker.set_have(i);
        }
        let now = Instant::now();
        let done = picker.is_complete();
        let state = State {
            picker,
            bufs: HashMap::new(),
            peers: HashMap::new(),
            next_id: 1,
            connecting: HashSet::new(),
            failures: HashMap::new(),
            banned: HashSet::new(),
            choker: Choker::new(),
            rng: StdRng::from_rng(&mut rand::rng()),
            down_total: RateMeter::new(Duration::from_secs(5), now),
            up_total: RateMeter::new(Duration::from_secs(5), now),
            downloaded: 0,
            uploaded: 0,
            hash_failures: 0,
            completed_at: done.then_some(now),
            req_min: cfg.min_requests,
            req_max: cfg.max_requests,
            req_secs: cfg.request_queue_secs.clamp(0.01, 60.0),
        };
        let (complete, _) = watch::channel(done);
        let inner = Inner {
            params: cfg.choke_params(),
            up: cfg.limiter(cfg.upload_rate),
            up_gate: tokio::sync::Mutex::new(()),
            down: cfg.limiter(cfg.download_rate),
            meta,
            peer_id,
            storage,
            state: Mutex::new(state),
            listen,
            complete,
            shutdown: Shutdown::new(),
            cfg,
        };
        Ok(Session { inner: Arc::new(inner), listener, initial_peers: Vec::new() })
    }

    /// A handle for progress and completion (valid before and while running).
    pub fn handle(&self) -> TorrentHandle {
        TorrentHandle { inner: self.inner.clone() }
    }

    /// Peers to contact besides the tracker's (for tracker-less swarms and tests), at start and
    /// again every 15 s while not connected.
    pub fn add_peers(&mut self, peers: impl IntoIterator<Item = SocketAddr>) {
        self.initial_peers.extend(peers);
    }
}

impl Service for Session {
    fn local_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let Session { inner, listener, initial_peers } = self;
        let sd = inner.shutdown.clone();
        // Our own shutdown follows the caller's.
        {
            let (outer, mine) = (shutdown.clone(), sd.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = outer.wait() => mine.trigger(),
                    _ = mine.wait() => {}
                }
            });
        }
        let h = TorrentHandle { inner: inner.clone() };
        {
            // Given peers are dialled at once and again every 15 s while not connected (a peer
            // that was not ready, or dropped us, is tried again; `connect` skips live ones).
            let h = h.clone();
            sd.spawn(async move {
                let mut tick = tokio::time::interval(REDIAL_GIVEN_PEERS);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = h.inner.shutdown.wait() => return,
                        _ = tick.tick() => {}
                    }
                    for addr in &initial_peers {
                        h.connect(*addr);
                    }
                }
            });
        }
        {
            let h = h.clone();
            sd.spawn(async move { h.choke_loop().await });
        }
        {
            let h = h.clone();
            sd.spawn(async move { h.announce_loop().await });
        }
        {
            let h = h.clone();
            sd.spawn(async move { h.seed_timer().await });
        }
        {
            let h = h.clone();
            sd.spawn(async move { h.pex_loop().await });
        }
        // netkit's connection policy bounds the handshake stage: room for as many handshakes
        // as peers, a whole handshake within its deadline, and when full the oldest connection
        // still handshaking makes way. A registered peer's slot is marked busy; from then on
        // the admission core decides (see `register`).
        let limits = ConnLimits {
            max_connections: inner.cfg.max_peers.max(1).saturating_mul(2),
            max_per_ip: inner.cfg.max_peers_per_ip.max(1).saturating_mul(2),
            request_timeout: crate::peer::HANDSHAKE_TIMEOUT,
            idle_timeout: crate::peer::HANDSHAKE_TIMEOUT,
        };
        let acceptor = Acceptor::with_limits(listener, limits);
        while let Some(accepted) = acceptor.next(&sd).await {
            let Accepted::Conn(stream, addr, slot) = accepted else { continue };
            let h = h.clone();
            sd.spawn(async move { crate::peer::run(h, stream, addr, Some(slot)).await });
        }
        drop(acceptor);
        {
            let st = h.lock();
            for p in st.peers.values() {
                let _ = p.tx.send(Out::Close);
            }
        }
        sd.drain(Duration::from_secs(5)).await;
        Ok(())
    }
}

impl TorrentHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The torrent.
    pub fn metainfo(&self) -> &Metainfo {
        &self.inner.meta
    }

    /// Where we accept peers.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// Our peer id.
    pub fn peer_id(&self) -> [u8; 20] {
        self.inner.peer_id
    }

    /// Asks the session to stop (announcing `stopped`).
    pub fn stop(&self) {
        self.inner.shutdown.trigger();
    }

    /// Whether the session has been told to stop.
    pub fn is_stopping(&self) -> bool {
        self.inner.shutdown.is_triggered()
    }

    /// A progress snapshot.
    pub fn progress(&self) -> Progress {
        let mut st = self.lock();
        let now = Instant::now();
        let (down_rate, up_rate) = (st.down_total.rate(now), st.up_total.rate(now));
        Progress {
            have: st.picker.have().count(),
            pieces: st.picker.num_pieces(),
            total: self.inner.meta.info.total_length(),
            left: st.picker.left(),
            downloaded: st.downloaded,
            uploaded: st.uploaded,
            peers: st.peers.len(),
            down_rate,
            up_rate,
            hash_failures: st.hash_failures,
        }
    }

    /// Resolves once every piece is verified on disk.
    pub async fn wait_complete(&self) {
        let mut rx = self.inner.complete.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether every piece is verified on disk.
    pub fn is_complete(&self) -> bool {
        *self.inner.complete.borrow()
    }

    /// Connects to `addr` unless already connected, banned, ourselves, or at the peer cap.
    pub fn connect(&self, addr: SocketAddr) {
        if addr == self.inner.listen || self.inner.shutdown.is_triggered() {
            return;
        }
        {
            let mut st = self.lock();
            let busy = st.peers.values().any(|p| p.addr == addr) || st.connecting.contains(&addr);
            if busy
                || st.banned.contains(&ban_key(&addr))
                || matches!(self.admission(&st, addr.ip()), admission::Admit::Refuse(_))
            {
                return;
            }
            st.connecting.insert(addr);
        }
        let h = self.clone();
        self.inner.shutdown.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr)).await;
            match r {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    // Connected: it counts as a peer from here on, not as a pending connect.
                    h.lock().connecting.remove(&addr);
                    crate::peer::run(h.clone(), stream, addr, None).await;
                    return;
                }
                Ok(Err(e)) => tracing::debug!("connect {addr}: {e}"),
                Err(_) => tracing::debug!("connect {addr}: timed out"),
            }
            h.lock().connecting.remove(&addr);
        });
    }

    /// The admission policy's verdict on a newcomer from `ip` given the peers held now.
    fn admission(&self, st: &State, ip: IpAddr) -> admission::Admit {
        let held: Vec<admission::Held> = st
            .peers
            .iter()
            .map(|(id, p)| admission::Held {
                id: *id,
                ip: p.addr.ip().to_canonical(),
                since: p.connected_at,
                useful: p.useful,
            })
            .collect();
        let pending: Vec<IpAddr> = st.connecting.iter().map(|a| a.ip().to_canonical()).collect();
        admission::admit(&held, &pending, ip.to_canonical(), self.limits())
    }

    fn limits(&self) -> admission::Limits {
        admission::Limits { max_peers: self.inner.cfg.max_peers, max_per_ip: self.inner.cfg.max_peers_per_ip }
    }

    /// Whether a connection may start its handshake: its address is not banned. (Incoming
    /// handshakes are bounded by the listener's connection policy; the peer slot is decided
    /// at `register`.)
    pub(crate) fn admit(&self, addr: &SocketAddr) -> bool {
        !self.lock().banned.contains(&ban_key(addr))
    }

    /// Adds a handshaken peer; returns its id, or None if it duplicates a connection we keep.
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        fast: bool,
        extended: bool,
        tx: mpsc::UnboundedSender<Out>,
    ) -> Option<u64> {
        let mut st = self.lock();
        if let Some((&old_id, old)) = st.peers.iter().find(|(_, p)| p.peer_id == peer_id) {
            // Two connections between the same pair: both sides keep the one the lower id opened.
            let ours_lower = self.inner.peer_id < peer_id;
            if old.outgoing == outgoing || (outgoing != ours_lower) {
                return None;
            }
            let _ = old.tx.send(Out::Close);
            remove_peer(&mut st, old_id);
        }
        match self.admission(&st, addr.ip()) {
            admission::Admit::Yes => {}
            admission::Admit::Evict(victim) => {
                if let Some(p) = st.peers.get(&victim) {
                    tracing::debug!("peer {} evicted for {addr}: it never became useful", p.addr);
                    let _ = p.tx.send(Out::Close);
                }
                remove_peer(&mut st, victim);
            }
            admission::Admit::Refuse(why) => {
                tracing::debug!("peer {addr} refused: {why}");
                return None;
            }
        }
        // Queued under the lock, so no HAVE broadcast can overtake it.
        if let Some(m) = Self::opening_message(st.picker.have(), fast) {
            let _ = tx.send(Out::Msg(m));
        }
        if extended {
            let _ = tx.send(Out::Msg(self.ext_handshake()));
        }
        let id = st.next_id;
        st.next_id += 1;
        let now = Instant::now();
        let window = Duration::from_secs_f64(self.inner.cfg.rate_window_secs.clamp(0.1, 3600.0));
        let n = st.picker.num_pieces();
        st.peers.insert(
            id,
            PeerSlot {
                addr,
                peer_id,
                outgoing,
                tx,
                bitfield: Bitfield::new(n),
                fast,
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
                ext: PeerExt::default(),
            },
        );
        Some(id)
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

    /// Removes a closed peer, giving its outstanding requests back to the picker.
    pub(crate) fn unregister(&self, id: u64) {
        let mut st = self.lock();
        remove_peer(&mut st, id);
    }

    /// Handles one message from peer `id` (validated here against the torrent).
    pub(crate) async fn handle(&self, id: u64, msg: Message) -> Result<(), PeerError> {
        if let Message::Extended { id: ext_id, payload } = msg {
            return self.on_extended(id, ext_id, payload);
        }
        if let Some((index, buf)) = self.on_message(id, msg)? {
            // Its own task: if this connection is closed meanwhile (a duplicate connection
            // replaced it, say), the verified piece must still be recorded, not lost.
            let h = self.clone();
            tokio::spawn(async move { h.finish_piece(id, index, buf).await })
                .await
                .map_err(|e| PeerError::Io(io::Error::other(e)))??;
        }
        Ok(())
    }

    /// The synchronous part of [`Self::handle`]: returns a completed piece to verify.
    fn on_message(&self, id: u64, msg: Message) -> Result<Option<(u32, PieceBuf)>, PeerError> {
        let info = &self.inner.meta.info;
        msg.validate(info.num_pieces(), |i| info.piece_size(i))
            .map_err(|e| PeerError::Protocol(e.to_string()))?;
        let mut st = self.lock();
        let st = &mut *st;
        let Some(slot) = st.peers.get_mut(&id) else {
            return Err(PeerError::Protocol("unregistered".into()));
        };
        let now = Instant::now();
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
                    st.picker.cancel(&r);
                }
            }
            Message::Unchoke => {
                slot.peer_choking = false;
                fill_requests(st, id);
            }
            Message::Interested => {
                slot.peer_interested = true;
                slot.useful = true;
                let unchoked = st.peers.values().filter(|p| !p.am_choking && p.peer_interested).count();
                if !self.inner.cfg.no_upload && st.choker.has_free_slot(unchoked, &self.inner.params) {
                    set_choke(st, id, false);
                }
            }
            Message::NotInterested => slot.peer_interested = false,
            Message::Have(i) => {
                if slot.bitfield.set(i) {
                    st.picker.peer_has(i);
                }
                update_interest(st, id);
            }
            Message::Bitfield(bytes) => {
                let bf = Bitfield::from_bytes(&bytes, info.num_pieces())
                    .ok_or_else(|| PeerError::Protocol("bitfield with spare bits set".into()))?;
                // A repeated bitfield (some clients follow HAVE NONE with one) replaces the last.
                st.picker.peer_bitfield(&slot.bitfield, false);
                st.picker.peer_bitfield(&bf, true);
                slot.bitfield = bf;
                update_interest(st, id);
            }
            Message::HaveAll | Message::HaveNone => {
                if !slot.fast {
                    return Err(PeerError::Protocol("fast-extension message without the extension".into()));
                }
                let bf = if matches!(msg, Message::HaveAll) {
                    Bitfield::full(info.num_pieces())
                } else {
                    Bitfield::new(info.num_pieces())
                };
                st.picker.peer_bitfield(&slot.bitfield, false);
                st.picker.peer_bitfield(&bf, true);
                slot.bitfield = bf;
                update_interest(st, id);
            }
            Message::Request(r) => {
                let refuse = self.inner.cfg.no_upload || slot.am_choking || !st.picker.have().get(r.index);
                if !refuse {
                    let _ = slot.tx.send(Out::Serve(r));
                } else if slot.fast {
                    let _ = slot.tx.send(Out::Msg(Message::Reject(r)));
                }
            }
            Message::Cancel(r) => {
                let _ = slot.tx.send(Out::Unserve(r));
            }
            Message::Reject(r) => {
                if !slot.fast {
                    return Err(PeerError::Protocol("reject without the fast extension".into()));
                }
                if slot.pending.remove(&r) {
                    st.picker.cancel(&r);
                }
                fill_requests(st, id);
            }
            Message::Piece { index, begin, data } => {
                let r = BlockRef { index, begin, length: data.len() as u32 };
                let was_pending = slot.pending.remove(&r);
                slot.useful |= was_pending;
                slot.down.add(r.length as u64, now);
                slot.last_block = Some(now);
                st.down_total.add(r.length as u64, now);
                if !was_pending && !st.picker.is_expected(&r) {
                    // Late or unrequested: harmless (after a cancel or choke), ignore it.
                    fill_requests(st, id);
                    return Ok(None);
                }
                let ip = ban_key(&slot.addr);
                match st.picker.received(&r) {
                    Received::Duplicate => {}
                    Received::Fresh { others, piece_done } => {
                        st.downloaded += r.length as u64;
                        let size = info.piece_size(index) as usize;
                        let buf = st.bufs.entry(index).or_insert_with(|| PieceBuf {
                            data: vec![0; size],
                            contributors: HashSet::new(),
                        });
                        buf.data[begin as usize..begin as usize + data.len()].copy_from_slice(&data);
                        buf.contributors.insert(ip);
                        if others > 0 {
                            for (pid, p) in st.peers.iter_mut() {
                                if *pid != id && p.pending.remove(&r) {
                                    let _ = p.tx.send(Out::Msg(Message::Cancel(r)));
                                }
                            }
                        }
                        if piece_done && let Some(buf) = st.bufs.remove(&index) {
                            return Ok(Some((index, buf)));
                        }
                    }
                }
                fill_requests(st, id);
            }
        }
        Ok(None)
    }

    /// Verifies a completed piece, writes it, and tells everyone (or blames its senders).
    async fn finish_piece(&self, id: u64, index: u32, buf: PieceBuf) -> Result<(), PeerError> {
        let inner = self.inner.clone();
        let PieceBuf { data, contributors } = buf;
        let ok = tokio::task::spawn_blocking(move || -> io::Result<bool> {
            if !storage::piece_ok(&inner.meta.info, index, &data) {
                return Ok(false);
            }
            inner.storage.write_piece(index, &data, inner.cfg.fsync)?;
            Ok(true)
        })
        .await
        .map_err(io::Error::other)??;
        let mut st = self.lock();
        let st = &mut *st;
        if ok {
            st.picker.piece_verified(index);
            let ids: Vec<u64> = st.peers.keys().copied().collect();
            for pid in &ids {
                if let Some(p) = st.peers.get(pid)
                    && !p.bitfield.get(index)
                {
                    let _ = p.tx.send(Out::Msg(Message::Have(index)));
                }
                update_interest(st, *pid);
            }
            if st.picker.is_complete() && st.completed_at.is_none() {
                st.completed_at = Some(Instant::now());
                self.inner.complete.send_replace(true);
                tracing::info!("download complete: {}", self.inner.meta.info.name);
            }
            fill_requests(st, id);
            Ok(())
        } else {
            st.picker.piece_failed(index);
            st.hash_failures += 1;
            tracing::warn!("piece {index} failed its hash check (from {contributors:?})");
            let mut banned_self = false;
            for ip in contributors {
                let n = st.failures.entry(ip).or_default();
                *n += 1;
                if *n >= self.inner.cfg.max_hash_failures {
                    st.banned.insert(ip);
                    for (pid, p) in st.peers.iter() {
                        if ban_key(&p.addr) == ip {
                            let _ = p.tx.send(Out::Close);
                            banned_self |= *pid == id;
                        }
                    }
                }
            }
            if banned_self {
                return Err(PeerError::Banned);
            }
            fill_requests(st, id);
            Ok(())
        }
    }

    /// Counts an uploaded block.
    pub(crate) fn uploaded(&self, id: u64, bytes: u64) {
        let mut st = self.lock();
        let now = Instant::now();
        st.uploaded += bytes;
        st.up_total.add(bytes, now);
        if let Some(p) = st.peers.get_mut(&id) {
            p.up.add(bytes, now);
            p.useful = true;
        }
    }

    /// Whether we have piece `index` (uploads double-check before reading the disk).
    pub(crate) fn has_piece(&self, index: u32) -> bool {
        self.lock().picker.have().get(index)
    }

    async fn choke_loop(&self) {
        let params = self.inner.params;
        let mut tick = tokio::time::interval(params.rechoke);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.inner.shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            if self.inner.cfg.no_upload {
                continue;
            }
            let mut st = self.lock();
            let st = &mut *st;
            let now = Instant::now();
            let seeding = st.picker.is_complete();
            let stats: Vec<PeerStat> = st
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
            let unchoke = st.choker.rechoke(&stats, seeding, &params, now, &mut st.rng);
            let ids: Vec<u64> = st.peers.keys().copied().collect();
            for id in ids {
                set_choke(st, id, !unchoke.contains(&id));
            }
        }
    }

    async fn seed_timer(&self) {
        self.wait_complete().await;
        match self.inner.cfg.seed_time_secs {
            None => {}
            Some(secs) => {
                tokio::select! {
                    _ = self.inner.shutdown.wait() => {}
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => {
                        tracing::info!("seed time over; leaving the swarm");
                        self.inner.shutdown.trigger();
                    }
                }
            }
        }
    }

    fn announce(&self, event: Event) -> Announce {
        let st = self.lock();
        Announce {
            info_hash: self.inner.meta.info_hash,
            peer_id: self.inner.peer_id,
            port: self.inner.listen.port(),
            uploaded: st.uploaded,
            downloaded: st.downloaded,
            left: st.picker.left(),
            event,
            numwant: Some(self.inner.cfg.numwant),
            compact: true,
            no_peer_id: true,
            key: Some(u32::from_be_bytes([
                self.inner.peer_id[16],
                self.inner.peer_id[17],
                self.inner.peer_id[18],
                self.inner.peer_id[19],
            ])),
        }
    }

    async fn announce_once(&self, event: Event, timeout: Duration) -> Option<u32> {
        for url in self.inner.meta.trackers() {
            match tracker_client::announce(&url, &self.announce(event), timeout).await {
                Ok(reply) => {
                    tracing::info!(
                        "tracker {url}: {} peers ({} seeders, {} leechers)",
                        reply.peers.len(),
                        reply.complete,
                        reply.incomplete
                    );
                    for p in reply.peers {
                        self.connect(p.addr);
                    }
                    return Some(reply.interval);
                }
                Err(e) => tracing::warn!("tracker {url}: {e}"),
            }
        }
        None
    }

    async fn announce_loop(&self) {
        if self.inner.meta.trackers().is_empty() {
            return;
        }
        let mut complete = self.inner.complete.subscribe();
        let mut reported_complete = *complete.borrow();
        let mut event = Event::Started;
        let mut retry = Duration::from_secs(2);
        loop {
            let wait = match self.announce_once(event, Duration::from_secs(15)).await {
                Some(interval) => {
                    event = Event::None;
                    retry = Duration::from_secs(2);
                    Duration::from_secs((interval as u64).clamp(1, self.inner.cfg.max_announce_secs.max(1)))
                }
                None => {
                    retry = (retry * 2).min(Duration::from_secs(300));
                    retry
                }
            };
            tokio::select! {
                _ = self.inner.shutdown.wait() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = complete.wait_for(|d| *d), if !reported_complete => {
                    reported_complete = true;
                    event = Event::Completed;
                }
            }
        }
        let _ = self.announce_once(Event::Stopped, Duration::from_secs(3)).await;
    }
}

/// Whom a ban or a hash failure is charged to: the IP address, except on loopback, where many
/// peers (a lab, a test swarm) share 127.0.0.1 and the port tells them apart.
fn ban_key(addr: &SocketAddr) -> SocketAddr {
    if addr.ip().is_loopback() { *addr } else { SocketAddr::new(addr.ip(), 0) }
}

fn remove_peer(st: &mut State, id: u64) {
    if let Some(p) = st.peers.remove(&id) {
        st.picker.peer_bitfield(&p.bitfield, false);
        for r in &p.pending {
            st.picker.cancel(r);
        }
        if st.choker.optimistic() == Some(id) {
            // The choker notices the missing peer at its next run.
        }
    }
}

fn set_choke(st: &mut State, id: u64, choke: bool) {
    if let Some(p) = st.peers.get_mut(&id)
        && p.am_choking != choke
    {
        p.am_choking = choke;
        let _ = p.tx.send(Out::Msg(if choke { Message::Choke } else { Message::Unchoke }));
    }
}

/// Sends INTERESTED / NOT INTERESTED when our interest in peer `id` changed, then requests.
fn update_interest(st: &mut State, id: u64) {
    let Some(p) = st.peers.get_mut(&id) else { return };
    let want = st.picker.wants_from(&p.bitfield);
    if want != p.am_interested {
        p.am_interested = want;
        let _ = p.tx.send(Out::Msg(if want { Message::Interested } else { Message::NotInterested }));
    }
    fill_requests(st, id);
}

/// Tops up the request pipeline to peer `id`, sized to its rate (`request_queue_secs` of data).
fn fill_requests(st: &mut State, id: u64) {
    let (min, max) = (st.req_min.max(1), st.req_max.max(st.req_min.max(1)));
    let secs = st.req_secs;
    let State { picker, peers, rng, .. } = st;
    let Some(p) = peers.get_mut(&id) else { return };
    if p.peer_choking || !p.am_interested || picker.is_complete() {
        return;
    }
    let rate = p.down.rate(Instant::now());
    let target = ((rate * secs / crate::wire::BLOCK as f64) as usize).clamp(min, max);
    if p.pending.len() >= target {
        return;
    }
    let pending = &p.pending;
    let picks = picker.pick(&p.bitfield, target - pending.len(), &|r| pending.contains(r), rng);
    for r in picks {
        p.pending.insert(r);
        let _ = p.tx.send(Out::Msg(Message::Request(r)));
    }
}
