//! One torrent being downloaded or seeded, the thin tokio driver of the sans-IO
//! [`crate::swarm::Swarm`]: it owns the listener, the peer connections (`peer.rs`), the disk,
//! the clock and the timers, feeds the core what happens and carries out its actions. Tracker
//! announces are here too, and the BEP 10 extensions in `bep10_extension.rs`.

use crate::bitfield::Bitfield;
use crate::config::ClientConfig;
use crate::metainfo::Metainfo;
use crate::peer::{self, Out, PeerError, PeerHost};
use crate::storage::{self, Storage};
use crate::swarm::{Action, Connected, PeerKey, Swarm, SwarmConfig, SwarmError};
use crate::tracker::client as tracker_client;
use crate::tracker::proto::{Announce, Event};
use crate::wire::{Handshake, Message};
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::rate::Limiter;
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The driver's side of one peer connection: where its writer listens, and its BEP 10 state.
/// (The peer-wire state is the core's, under the same key.)
pub(crate) struct Conn {
    pub addr: SocketAddr,
    pub outgoing: bool,
    pub tx: mpsc::UnboundedSender<Out>,
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

/// Everything behind the session's lock: the sans-IO core and the connections it names.
pub(crate) struct State {
    pub swarm: Swarm,
    pub conns: HashMap<PeerKey, Conn>,
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
        let swarm = Swarm::new(
            SwarmConfig::from_client(&cfg),
            peer_id,
            meta.info.piece_length,
            meta.info.total_length(),
            &have,
            rand::random(),
            Instant::now(),
        );
        let done = swarm.is_complete();
        let state = State { swarm, conns: HashMap::new() };
        let (complete, _) = watch::channel(done);
        let inner = Inner {
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
            sd.spawn(async move { h.timer_loop().await });
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
            request_timeout: peer::HANDSHAKE_TIMEOUT,
            idle_timeout: peer::HANDSHAKE_TIMEOUT,
        };
        let acceptor = Acceptor::with_limits(listener, limits);
        while let Some(accepted) = acceptor.next(&sd).await {
            let Accepted::Conn(stream, addr, slot) = accepted else { continue };
            let h = h.clone();
            sd.spawn(async move { peer::run(h, stream, addr, Some(slot)).await });
        }
        drop(acceptor);
        {
            let st = h.lock();
            for c in st.conns.values() {
                let _ = c.tx.send(Out::Close);
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

    /// The configuration the session runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
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
        let s = self.lock().swarm.stats(Instant::now());
        Progress {
            have: s.have,
            pieces: s.pieces,
            total: self.inner.meta.info.total_length(),
            left: s.left,
            downloaded: s.downloaded,
            uploaded: s.uploaded,
            peers: s.peers,
            down_rate: s.down_rate,
            up_rate: s.up_rate,
            hash_failures: s.hash_failures,
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
        if !self.lock().swarm.start_dial(addr) {
            return;
        }
        let h = self.clone();
        self.inner.shutdown.spawn(async move {
            let r = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(addr)).await;
            // Connected or not, it no longer counts as a pending dial: a connected one is a
            // peer once its handshake is done.
            h.lock().swarm.dial_finished(addr);
            match r {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    peer::run(h.clone(), stream, addr, None).await;
                }
                Ok(Err(e)) => tracing::debug!("connect {addr}: {e}"),
                Err(_) => tracing::debug!("connect {addr}: timed out"),
            }
        });
    }

    /// Whether a connection may start its handshake: its address is not banned. (Incoming
    /// handshakes are bounded by the listener's connection policy; the peer slot is decided
    /// at `register`.)
    pub(crate) fn admit(&self, addr: &SocketAddr) -> bool {
        !self.lock().swarm.is_banned(addr)
    }

    /// Adds a handshaken peer; returns its key, or None if the core refused it (a duplicate
    /// connection, or no slot under the admission policy).
    pub(crate) fn register(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        fast: bool,
        extended: bool,
        tx: mpsc::UnboundedSender<Out>,
    ) -> Option<PeerKey> {
        let mut st = self.lock();
        let st = &mut *st;
        let key = st.swarm.handle_connected(Connected { addr, peer_id, outgoing, fast }, Instant::now())?;
        st.conns.insert(key, Conn { addr, outgoing, tx, ext: PeerExt::default() });
        // Queued under the lock, so no HAVE broadcast can overtake the opening message.
        let verify = self.dispatch(st);
        debug_assert!(verify.is_empty());
        if extended && let Some(c) = st.conns.get(&key) {
            let _ = c.tx.send(Out::Msg(self.ext_handshake()));
        }
        Some(key)
    }

    /// Removes a closed peer, giving its outstanding requests back to the picker.
    pub(crate) fn unregister(&self, id: PeerKey) {
        let mut st = self.lock();
        let st = &mut *st;
        st.conns.remove(&id);
        st.swarm.handle_disconnected(id, Instant::now());
        self.dispatch(st);
    }

    /// Carries out the core's actions (under the lock, so messages keep their order), except
    /// piece verification, which is returned for the caller to run off the lock.
    fn dispatch(&self, st: &mut State) -> Vec<(u32, Vec<u8>)> {
        let mut verify = Vec::new();
        while let Some(a) = st.swarm.poll_action() {
            let (peer, out) = match a {
                Action::Send { peer, msg } => (peer, Out::Msg(msg)),
                Action::Upload { peer, block } => (peer, Out::Serve(block)),
                Action::CancelUpload { peer, block } => (peer, Out::Unserve(block)),
                Action::Disconnect { peer, reason } => {
                    if let Some(c) = st.conns.get(&peer) {
                        tracing::debug!("peer {} dropped: {reason}", c.addr);
                    }
                    (peer, Out::Close)
                }
                Action::Verify { piece, data } => {
                    verify.push((piece, data));
                    continue;
                }
                Action::Completed => {
                    self.inner.complete.send_replace(true);
                    tracing::info!("download complete: {}", self.inner.meta.info.name);
                    continue;
                }
            };
            if let Some(c) = st.conns.get(&peer) {
                let _ = c.tx.send(out);
            }
        }
        verify
    }

    /// Handles one message from peer `id`: extension messages here, the rest in the core.
    pub(crate) async fn handle(&self, id: PeerKey, msg: Message) -> Result<(), PeerError> {
        if let Message::Extended { id: ext_id, payload } = msg {
            return self.on_extended(id, ext_id, payload);
        }
        let (res, verify) = {
            let mut st = self.lock();
            let st = &mut *st;
            let res = st.swarm.handle_message(id, msg, Instant::now());
            (res, self.dispatch(st))
        };
        for (piece, data) in verify {
            // Its own task: if this connection is closed meanwhile (a duplicate connection
            // replaced it, say), the verified piece must still be recorded, not lost. The
            // reader waits for it, so a fast peer cannot queue unverified pieces without bound.
            let h = self.clone();
            tokio::spawn(async move { h.finish_piece(piece, data).await })
                .await
                .map_err(|e| PeerError::Io(io::Error::other(e)))??;
        }
        res.map_err(|e| match e {
            SwarmError::Protocol(why) => PeerError::Protocol(why),
            SwarmError::UnknownPeer => PeerError::Protocol("unregistered".into()),
        })
    }

    /// Verifies a completed piece and writes it, then tells the core the verdict.
    async fn finish_piece(&self, index: u32, data: Vec<u8>) -> Result<(), PeerError> {
        let inner = self.inner.clone();
        let verdict = tokio::task::spawn_blocking(move || -> io::Result<bool> {
            if !storage::piece_ok(&inner.meta.info, index, &data) {
                return Ok(false);
            }
            inner.storage.write_piece(index, &data, inner.cfg.fsync)?;
            Ok(true)
        })
        .await
        .map_err(io::Error::other)?;
        let mut st = self.lock();
        let st = &mut *st;
        let now = Instant::now();
        match &verdict {
            Ok(true) => st.swarm.handle_piece_verified(index, now),
            Ok(false) => st.swarm.handle_piece_failed(index, now),
            Err(_) => st.swarm.handle_piece_unwritten(index, now),
        }
        let more = self.dispatch(st);
        debug_assert!(more.is_empty(), "a verdict completes no piece");
        verdict?;
        Ok(())
    }

    /// Counts an uploaded block.
    pub(crate) fn uploaded(&self, id: PeerKey, bytes: u64) {
        self.lock().swarm.handle_uploaded(id, bytes, Instant::now());
    }

    /// Whether we have piece `index` (uploads double-check before reading the disk).
    pub(crate) fn has_piece(&self, index: u32) -> bool {
        self.lock().swarm.has_piece(index)
    }

    /// The core's timer: sleeps until `poll_timeout` and runs `handle_timeout` (the choker).
    async fn timer_loop(&self) {
        loop {
            let Some(at) = self.lock().swarm.poll_timeout() else { return };
            tokio::select! {
                _ = self.inner.shutdown.wait() => return,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            let mut st = self.lock();
            let st = &mut *st;
            st.swarm.handle_timeout(Instant::now());
            self.dispatch(st);
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
        let s = self.lock().swarm.stats(Instant::now());
        Announce {
            info_hash: self.inner.meta.info_hash,
            peer_id: self.inner.peer_id,
            port: self.inner.listen.port(),
            uploaded: s.uploaded,
            downloaded: s.downloaded,
            left: s.left,
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

/// The session's side of each peer connection: `peer.rs` runs a connection against this
/// interface, so it does not depend on the session.
impl PeerHost for TorrentHandle {
    fn admit(&self, addr: &SocketAddr) -> bool {
        TorrentHandle::admit(self, addr)
    }

    fn handshake(&self) -> Handshake {
        Handshake::new(self.inner.meta.info_hash, self.inner.peer_id)
    }

    fn num_pieces(&self) -> u32 {
        self.inner.meta.info.num_pieces()
    }

    fn download_limiter(&self) -> Limiter {
        self.inner.down.clone()
    }

    fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    fn register(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        fast: bool,
        extended: bool,
        tx: mpsc::UnboundedSender<Out>,
    ) -> Option<PeerKey> {
        TorrentHandle::register(self, addr, peer_id, outgoing, fast, extended, tx)
    }

    fn unregister(&self, id: PeerKey) {
        TorrentHandle::unregister(self, id)
    }

    fn handle(&self, id: PeerKey, msg: Message) -> impl Future<Output = Result<(), PeerError>> + Send {
        TorrentHandle::handle(self, id, msg)
    }

    fn is_stopping(&self) -> bool {
        TorrentHandle::is_stopping(self)
    }

    fn has_piece(&self, index: u32) -> bool {
        TorrentHandle::has_piece(self, index)
    }

    fn read_block(&self, index: u32, begin: u32, buf: &mut [u8]) -> io::Result<()> {
        self.inner.storage.read_into(index, begin, buf)
    }

    async fn upload_turn(&self, bytes: u64) {
        if self.inner.up.is_limited() {
            let _turn = self.inner.up_gate.lock().await;
            self.inner.up.acquire(bytes).await;
        }
    }

    fn uploaded(&self, id: PeerKey, bytes: u64) {
        TorrentHandle::uploaded(self, id, bytes)
    }
}
