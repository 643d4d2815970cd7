//! The Gnutella node: the tokio driver around the sans-IO [`Router`]. It owns the sockets:
//! one listener serving both neighbours (`GNUTELLA CONNECT`) and HTTP (`GET`/`HEAD`), sniffed
//! from the first bytes; a dialer that joins through the candidate list one attempt at a time
//! and replaces lost neighbours from the hosts Pongs taught; one reader and one writer task per
//! neighbour; and the loop that feeds the router and carries out its actions (forward, drop,
//! learn hosts, answer Pushes with `GIV`).

use super::conn::{self, ConnError};
use super::handshake::{self, Capabilities};
use super::node_config::NodeConfig;
use super::router::{Action, NeighbourId, Role, Router, RouterConfig};
use super::wire::{Descriptor, Framer, Guid, Payload, Push};
use crate::http::UploadCtx;
use crate::http::upload::{refuse_busy, serve_http};
use crate::index::ShareIndex;
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::rate::TokenBucket;
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// Descriptors queued for one neighbour before further ones are dropped (a slow reader must
/// not grow our memory).
const SEND_QUEUE: usize = 512;
/// Bytes read to tell a handshake from HTTP.
const SNIFF: usize = 8;

/// A bound, not yet running node.
pub struct Node {
    listener: TcpListener,
    config: NodeConfig,
    index: Arc<ShareIndex>,
    servent: Guid,
    trace: Option<NodeTrace>,
}

/// One descriptor a node received or sent, for the lab's tour (which draws Query hop counts
/// and QueryHit reverse paths from them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    /// The node's own advertised address.
    pub node: SocketAddr,
    /// Whether it was received (`true`) or sent.
    pub received: bool,
    /// The neighbour's listen address (its TCP address if it announced none).
    pub neighbour: SocketAddr,
    /// "Ping", "Query", "QueryHit", ...
    pub kind: &'static str,
    /// The descriptor's GUID.
    pub guid: Guid,
    /// Its TTL and hops as on the wire.
    pub ttl: u8,
    /// Hops travelled.
    pub hops: u8,
}

/// Where a node reports its descriptors (cheap: called from the routing loop).
pub type NodeTrace = Arc<dyn Fn(TraceEvent) + Send + Sync>;

/// What the neighbour tasks tell the routing loop.
enum Event {
    Up { id: NeighbourId, role: Role, addr: SocketAddr, tx: mpsc::Sender<Vec<u8>>, kill: Arc<Notify> },
    Descriptor(NeighbourId, Descriptor),
    Down(NeighbourId),
}

/// State shared by the accept loop, the dialer and the routing loop.
struct Shared {
    config: NodeConfig,
    ours: Capabilities,
    /// Neighbour connections open or being admitted (the `--max-peers` count).
    neighbours: AtomicUsize,
    /// Of which ultrapeers (a leaf keeps at most `want_peers`, at most 3, of them).
    ultrapeers: AtomicUsize,
    /// Connections we opened (a plain node or leaf keeps `want_peers` of them; neighbours
    /// that connect to us, such as a searching client, do not count).
    outbound: AtomicUsize,
    /// Listen addresses of connected neighbours (not dialled again).
    connected: Mutex<HashSet<SocketAddr>>,
    /// Hosts learnt from Pongs and X-Try-Ultrapeers, newest last.
    hosts: Mutex<VecDeque<SocketAddr>>,
    next_id: AtomicU64,
    events: mpsc::Sender<Event>,
    upload: UploadCtx,
    index: Arc<ShareIndex>,
    servent: Guid,
}

impl Node {
    /// Scans `share` (hashing every file) and binds the listener.
    pub async fn bind(config: NodeConfig, share: &Path) -> io::Result<Node> {
        let dir = share.to_path_buf();
        let index =
            tokio::task::spawn_blocking(move || ShareIndex::scan(&dir)).await.map_err(io::Error::other)??;
        let listener = bind_tcp(config.upload.listen, &ListenOpts::default())?;
        Ok(Node {
            listener,
            config,
            index: Arc::new(index),
            servent: super::client::random_guid(),
            trace: None,
        })
    }

    /// Reports every descriptor received and sent to `trace`.
    pub fn with_trace(mut self, trace: NodeTrace) -> Node {
        self.trace = Some(trace);
        self
    }

    /// Replaces the candidates to join through (when they are only known after binding, as
    /// in the lab's overlays on port 0).
    pub fn set_connect(&mut self, connect: Vec<SocketAddr>) {
        self.config.connect = connect;
    }

    /// The files shared.
    pub fn index(&self) -> &ShareIndex {
        &self.index
    }

    /// This servent's GUID (QueryHits, Push).
    pub fn servent(&self) -> Guid {
        self.servent
    }
}

/// The address we advertise: the bound address (an unspecified IP is advertised as 127.0.0.1,
/// which only suits loopback overlays; bind a real address otherwise).
fn advertised(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => a,
        other => SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, other.port()),
    }
}

impl Service for Node {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.upload.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let local = self.local_addr();
        let me = advertised(local);
        let cfg = &self.config;
        let rcfg = RouterConfig {
            ultrapeer: cfg.ultrapeer,
            servent: self.servent,
            addr: me,
            firewalled: cfg.firewalled,
            query_rate: cfg.query_rate,
            query_burst: cfg.query_burst,
            keepalive: Duration::from_secs(cfg.keepalive_secs.max(1)),
            idle_timeout: Duration::from_secs(cfg.neighbour_timeout_secs.max(2)),
            // QRP PATCH fragments of 2 KiB keep every descriptor we send under 4 KiB of payload,
            // the size Wireshark's Gnutella dissector (and some old servents) handle in one piece.
            qrp_fragment: 2048,
            seed: u64::from_le_bytes(self.servent.0[..8].try_into().unwrap_or([1; 8])) | 1,
            ..RouterConfig::default()
        };
        let router = Router::new(rcfg, Box::new(ShareIndex::clone(&self.index)));
        let (events_tx, events_rx) = mpsc::channel(4096);
        let ours = Capabilities {
            user_agent: format!("appnet/{}", env!("CARGO_PKG_VERSION")),
            ultrapeer: cfg.ultrapeer,
            query_routing: true,
            pong_caching: true,
            listen: Some(SocketAddr::V4(me)),
        };
        let mut upload_cfg = cfg.upload.clone();
        upload_cfg.listen = local;
        let shared = Arc::new(Shared {
            config: self.config.clone(),
            ours,
            neighbours: AtomicUsize::new(0),
            ultrapeers: AtomicUsize::new(0),
            outbound: AtomicUsize::new(0),
            connected: Mutex::new(HashSet::new()),
            hosts: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            events: events_tx,
            upload: UploadCtx::new(self.index.clone(), upload_cfg),
            index: self.index.clone(),
            servent: self.servent,
        });
        tracing::info!(listen = %local, ultrapeer = cfg.ultrapeer, files = self.index.len(), "gnutella node up");
        shutdown.spawn(route_loop(router, events_rx, shared.clone(), self.trace.clone(), shutdown.clone()));
        shutdown.spawn(dial_loop(shared.clone(), shutdown.clone()));
        let mut limits = cfg.upload.conn_limits();
        limits.max_connections = limits.max_connections.max(cfg.max_peers + 1);
        let acceptor = Acceptor::with_limits(self.listener, limits);
        while let Some(accepted) = acceptor.next(&shutdown).await {
            match accepted {
                Accepted::Conn(stream, peer, slot) => {
                    let (shared, sd) = (shared.clone(), shutdown.clone());
                    shutdown.spawn(async move {
                        if let Err(e) = serve_inbound(stream, peer, slot, &shared, &sd).await {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    });
                }
                Accepted::OverCap(stream, peer) => {
                    tracing::info!(%peer, "connection cap reached; refusing");
                    shutdown.spawn(refuse_busy(stream));
                }
            }
        }
        drop(acceptor);
        shutdown.drain(Duration::from_secs(5)).await;
        Ok(())
    }
}

/// Sniffs the first bytes: a Gnutella handshake, an HTTP request, or junk.
async fn serve_inbound(
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: ConnSlot,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let mut prefix = Vec::with_capacity(64);
    while prefix.len() < SNIFF {
        let mut b = [0u8; 64];
        let n = tokio::select! {
            n = stream.read(&mut b) => n?,
            _ = slot.closed() => return Ok(()),
            _ = shutdown.wait() => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        prefix.extend_from_slice(&b[..n]);
        if prefix.starts_with(b"GET ") || prefix.starts_with(b"HEAD") {
            break;
        }
    }
    if handshake::CONNECT_PREFIX.starts_with(&prefix[..prefix.len().min(handshake::CONNECT_PREFIX.len())])
        || prefix.starts_with(handshake::CONNECT_PREFIX)
    {
        slot.busy();
        return inbound_neighbour(stream, peer, prefix, shared, shutdown).await;
    }
    if prefix.starts_with(b"GNUTELLA") {
        // Not a CONNECT line (a bare response): not a way to open a connection.
        return Ok(());
    }
    // Everything else is HTTP (a bad request gets its 400 there).
    serve_http(stream, peer, prefix, Some(&slot), &shared.upload, shutdown).await
}

/// Reserves a neighbour place for a peer announcing `they`; `Err` with a reason and a list
/// of hosts to try instead when full.
fn admit(shared: &Shared, they: &Capabilities) -> Result<Role, (String, Vec<SocketAddr>)> {
    let cfg = &shared.config;
    let role = handshake::role(cfg.ultrapeer, they.ultrapeer);
    let try_instead =
        || shared.hosts.lock().unwrap_or_else(|p| p.into_inner()).iter().rev().take(10).copied().collect();
    if role == Role::Ultrapeer
        && !cfg.ultrapeer
        && shared.ultrapeers.load(Ordering::SeqCst) >= cfg.want_peers.clamp(1, 3)
    {
        return Err(("Full: enough ultrapeers".into(), try_instead()));
    }
    let taken = shared
        .neighbours
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < cfg.max_peers).then_some(n + 1));
    if taken.is_err() {
        return Err(("Full".into(), try_instead()));
    }
    if role == Role::Ultrapeer {
        shared.ultrapeers.fetch_add(1, Ordering::SeqCst);
    }
    Ok(role)
}

fn release(shared: &Shared, role: Role) {
    shared.neighbours.fetch_sub(1, Ordering::SeqCst);
    if role == Role::Ultrapeer {
        shared.ultrapeers.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn inbound_neighbour(
    mut stream: TcpStream,
    peer: SocketAddr,
    prefix: Vec<u8>,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let timeout = Duration::from_secs(shared.config.handshake_timeout_secs.max(1));
    let mut admitted = None;
    let result = conn::accept(&mut stream, prefix, &shared.ours, timeout, |they| {
        let role = admit(shared, they)?;
        admitted = Some(role);
        Ok(())
    })
    .await;
    match result {
        Ok((theirs, rest)) => {
            let role = admitted.unwrap_or(Role::Peer);
            tracing::info!(%peer, ?role, agent = %theirs.user_agent, "neighbour accepted");
            run_neighbour(stream, peer, theirs.listen, role, false, rest, shared, shutdown).await;
            Ok(())
        }
        Err(e) => {
            if let Some(role) = admitted {
                release(shared, role);
            }
            match e {
                ConnError::Refused { reason, .. } => tracing::info!(%peer, "refused a neighbour: {reason}"),
                e => tracing::info!(%peer, "bad handshake: {e}"),
            }
            Ok(())
        }
    }
}

/// Runs one neighbour connection until it closes or is dropped; releases its place.
#[allow(clippy::too_many_arguments)]
async fn run_neighbour(
    stream: TcpStream,
    peer: SocketAddr,
    listen: Option<SocketAddr>,
    role: Role,
    outbound: bool,
    rest: Vec<u8>,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(SEND_QUEUE);
    let kill = Arc::new(Notify::new());
    let key = listen.unwrap_or(peer);
    shared.connected.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    let up = Event::Up { id, role, addr: key, tx, kill: kill.clone() };
    if shared.events.send(up).await.is_err() {
        release(shared, role);
        return;
    }
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut framer = Framer::new(shared.config.max_payload);
    framer.push(&rest);
    let mut buf = vec![0u8; 16 * 1024];
    'conn: loop {
        loop {
            match framer.next_descriptor() {
                Ok(Some(d)) => {
                    if shared.events.send(Event::Descriptor(id, d)).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%peer, "bad descriptor ({e}); dropping the connection");
                    break 'conn;
                }
            }
        }
        let n = tokio::select! {
            n = read.read(&mut buf) => match n { Ok(n) => n, Err(_) => break },
            _ = kill.notified() => break,
            _ = shutdown.wait() => break,
        };
        if n == 0 {
            break;
        }
        framer.push(&buf[..n]);
    }
    let _ = shared.events.send(Event::Down(id)).await;
    writer.abort();
    shared.connected.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
    if outbound {
        shared.outbound.fetch_sub(1, Ordering::SeqCst);
    }
    release(shared, role);
    tracing::info!(%peer, ?role, "neighbour gone");
}

/// Opens outgoing connections while fewer than `want_peers` neighbours are up: the
/// `--connect` candidates first, in order, one attempt at a time, then hosts from Pongs.
async fn dial_loop(shared: Arc<Shared>, shutdown: Shutdown) {
    let every = Duration::from_secs(shared.config.dial_interval_secs.max(1));
    let me = shared.ours.listen;
    let mut failures: HashMap<SocketAddr, (u32, Instant)> = HashMap::new();
    loop {
        let want = shared.config.want_peers.min(shared.config.max_peers);
        let ups = shared.ultrapeers.load(Ordering::SeqCst);
        let (all, out) = (shared.neighbours.load(Ordering::SeqCst), shared.outbound.load(Ordering::SeqCst));
        // An ultrapeer counts its fellow ultrapeers (leaves come to it); a leaf or plain node
        // the connections it opened (a leaf keeps 1-3 ultrapeers).
        let enough = if shared.config.ultrapeer {
            ups >= want
        } else {
            out >= if ups > 0 { want.clamp(1, 3) } else { want }
        } || all >= shared.config.max_peers;
        if !enough {
            let mut candidates: Vec<SocketAddr> = shared.config.connect.clone();
            candidates.extend(shared.hosts.lock().unwrap_or_else(|p| p.into_inner()).iter().rev());
            let now = Instant::now();
            let next = candidates.into_iter().find(|c| {
                Some(*c) != me
                    && !shared.connected.lock().unwrap_or_else(|p| p.into_inner()).contains(c)
                    && failures.get(c).is_none_or(|(n, at)| now >= *at + every * (1 << (*n).min(5)))
            });
            if let Some(addr) = next {
                match dial(addr, &shared, &shutdown).await {
                    Ok(()) => {
                        failures.remove(&addr);
                    }
                    Err(e) => {
                        tracing::info!(%addr, "could not join through this candidate: {e}");
                        let f = failures.entry(addr).or_insert((0, now));
                        *f = (f.0 + 1, Instant::now());
                        continue; // try the next candidate at once
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One outgoing attempt; on success the connection runs in its own task.
async fn dial(addr: SocketAddr, shared: &Arc<Shared>, shutdown: &Shutdown) -> Result<(), ConnError> {
    let timeout = Duration::from_secs(shared.config.handshake_timeout_secs.max(1));
    let taken = shared
        .neighbours
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < shared.config.max_peers).then_some(n + 1));
    if taken.is_err() {
        return Ok(());
    }
    let attempt = async {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnError::TimedOut)??;
        let (theirs, rest) = conn::initiate(&mut stream, &shared.ours, timeout).await?;
        Ok::<_, ConnError>((stream, theirs, rest))
    };
    match attempt.await {
        Ok((stream, theirs, rest)) => {
            let role = handshake::role(shared.config.ultrapeer, theirs.ultrapeer);
            if role == Role::Ultrapeer {
                shared.ultrapeers.fetch_add(1, Ordering::SeqCst);
            }
            tracing::info!(%addr, ?role, agent = %theirs.user_agent, "joined a neighbour");
            let (shared, sd) = (shared.clone(), shutdown.clone());
            let listen = theirs.listen.or(Some(addr));
            shared.outbound.fetch_add(1, Ordering::SeqCst);
            shutdown.spawn(async move {
                run_neighbour(stream, addr, listen, role, true, rest, &shared, &sd).await
            });
            Ok(())
        }
        Err(e) => {
            shared.neighbours.fetch_sub(1, Ordering::SeqCst);
            if let ConnError::Refused { try_instead, .. } = &e {
                learn(shared, try_instead.iter().copied());
            }
            Err(e)
        }
    }
}

fn learn(shared: &Shared, addrs: impl Iterator<Item = SocketAddr>) {
    let mut hosts = shared.hosts.lock().unwrap_or_else(|p| p.into_inner());
    for a in addrs {
        if Some(a) != shared.ours.listen && !hosts.contains(&a) {
            hosts.push_back(a);
            if hosts.len() > 200 {
                hosts.pop_front();
            }
        }
    }
}

struct Link {
    tx: mpsc::Sender<Vec<u8>>,
    kill: Arc<Notify>,
    addr: SocketAddr,
}

/// Feeds the router and carries out its actions.
async fn route_loop(
    mut router: Router,
    mut events: mpsc::Receiver<Event>,
    shared: Arc<Shared>,
    trace: Option<NodeTrace>,
    shutdown: Shutdown,
) {
    let mut links: HashMap<NeighbourId, Link> = HashMap::new();
    let me = shared.ours.listen.unwrap_or(shared.config.upload.listen);
    let report = |received: bool, neighbour: SocketAddr, d: &Descriptor| {
        if let Some(t) = &trace {
            t(TraceEvent {
                node: me,
                received,
                neighbour,
                kind: descriptor_name(d),
                guid: d.guid,
                ttl: d.ttl,
                hops: d.hops,
            });
        }
    };
    // A routed Push makes this node connect wherever it says, so answering is bounded: a
    // token bucket and a cap on answers in flight keep a flood of Pushes from turning the node
    // into a connection cannon, and a Push naming our own listener is refused.
    let mut push_budget = TokenBucket::new(PUSH_ANSWERS_PER_SEC, PUSH_ANSWER_BURST, Instant::now());
    let push_inflight = Arc::new(AtomicUsize::new(0));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let actions = tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Up { id, role, addr, tx, kill }) => {
                    links.insert(id, Link { tx, kill, addr });
                    router.add_neighbour(id, role, Instant::now())
                }
                Some(Event::Descriptor(id, d)) => {
                    // KaZaA's incentive: servents that offer files to the overlay (their Pong
                    // says they share some) are queued ahead of those that only download.
                    if let Payload::Pong(p) = &d.payload
                        && p.files > 0
                        && !p.ip.is_unspecified()
                    {
                        shared.upload.record_uploader(IpAddr::V4(p.ip));
                    }
                    tracing::trace!(neighbour = id, ptype = d.payload.ptype(), ttl = d.ttl, hops = d.hops, "descriptor");
                    if let Some(link) = links.get(&id) {
                        report(true, link.addr, &d);
                    }
                    router.on_descriptor(id, d, Instant::now())
                }
                Some(Event::Down(id)) => {
                    links.remove(&id);
                    router.remove_neighbour(id);
                    Vec::new()
                }
                None => return,
            },
            _ = tick.tick() => router.tick(Instant::now()),
            _ = shutdown.wait() => return,
        };
        for action in actions {
            match action {
                Action::Send(id, d) => {
                    if let Some(link) = links.get(&id) {
                        if link.tx.try_send(d.encode()).is_err() {
                            tracing::debug!(neighbour = id, "send queue full; descriptor dropped");
                        } else {
                            report(false, link.addr, &d);
                        }
                    }
                }
                Action::Drop(id, why) => {
                    tracing::info!(neighbour = id, "dropping a neighbour: {why}");
                    if let Some(link) = links.remove(&id) {
                        link.kill.notify_one();
                    }
                    router.remove_neighbour(id);
                }
                Action::Host(addr) => learn(&shared, std::iter::once(SocketAddr::V4(addr))),
                Action::PushRequest(push) => {
                    let to = SocketAddr::V4(SocketAddrV4::new(push.ip, push.port));
                    if names_own_listener(to, shared.upload.config.listen) {
                        tracing::info!(%to, "refused a Push naming this node's own listener");
                        continue;
                    }
                    if push_inflight.load(Ordering::Relaxed) >= MAX_PUSH_ANSWERS_IN_FLIGHT
                        || !push_budget.try_take(1, Instant::now())
                    {
                        tracing::debug!(%to, "Push not answered: over the answer rate");
                        continue;
                    }
                    push_inflight.fetch_add(1, Ordering::Relaxed);
                    let (shared, sd, inflight) = (shared.clone(), shutdown.clone(), push_inflight.clone());
                    shutdown.spawn(async move {
                        if let Err(e) = answer_push(&push, &shared, &sd).await {
                            tracing::info!(to = %push.ip, "could not answer a Push: {e}");
                        }
                        inflight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Action::Deliver { .. } => {}
            }
        }
    }
}

/// Pushes answered per second (sustained) and in a burst.
const PUSH_ANSWERS_PER_SEC: u64 = 4;
const PUSH_ANSWER_BURST: u64 = 16;
/// Push answers (outgoing GIV connections and their uploads) at once.
const MAX_PUSH_ANSWERS_IN_FLIGHT: usize = 16;

/// Whether `to` is this node's own listener (`listen`, or its port on a loopback address when
/// the node listens on the unspecified address).
fn names_own_listener(to: SocketAddr, listen: SocketAddr) -> bool {
    to.port() == listen.port()
        && (to.ip() == listen.ip() || (listen.ip().is_unspecified() && to.ip().is_loopback()))
}

/// A Push for one of our files: connect out to the requester, say `GIV <index>:<guid>/<name>`,
/// then serve its HTTP GET on that connection (how a firewalled servent uploads).
async fn answer_push(push: &Push, shared: &Arc<Shared>, shutdown: &Shutdown) -> io::Result<()> {
    let Some(file) = shared.index.by_index(push.index) else {
        return Err(io::Error::new(io::ErrorKind::NotFound, "no such file index"));
    };
    let to = SocketAddr::V4(SocketAddrV4::new(push.ip, push.port));
    if to.ip().is_unspecified() || push.port == 0 || matches!(to.ip(), IpAddr::V4(ip) if ip.is_multicast()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "unusable Push address"));
    }
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(to))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let giv = format!("GIV {}:{}/{}\n\n", push.index, shared.servent, file.name);
    stream.write_all(giv.as_bytes()).await?;
    // The requester's GET comes on this connection; the usual HTTP limits apply.
    serve_http(stream, to, Vec::new(), None, &shared.upload, shutdown).await
}

/// The descriptor's type name, as traces and the tour print it.
pub fn descriptor_name(d: &Descriptor) -> &'static str {
    match d.payload {
        Payload::Ping(_) => "Ping",
        Payload::Pong(_) => "Pong",
        Payload::Query(_) => "Query",
        Payload::QueryHit(_) => "QueryHit",
        Payload::Push(_) => "Push",
        Payload::Bye(_) => "Bye",
        Payload::RouteTable(_) => "RouteTableUpdate",
        Payload::Unknown { .. } => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::names_own_listener;

    #[test]
    fn a_push_naming_our_own_listener_is_recognised() {
        let a = |s: &str| s.parse().unwrap();
        assert!(names_own_listener(a("127.0.11.10:6346"), a("127.0.11.10:6346")));
        assert!(names_own_listener(a("127.0.0.1:6346"), a("0.0.0.0:6346")));
        // Another lab peer on the same port is somebody else.
        assert!(!names_own_listener(a("127.0.11.12:6346"), a("127.0.11.10:6346")));
        assert!(!names_own_listener(a("127.0.11.10:6347"), a("127.0.11.10:6346")));
    }
}
