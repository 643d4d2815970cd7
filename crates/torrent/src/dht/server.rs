//! The thin tokio driver of the DHT node: one UDP socket, a 250 ms tick, and a handle through
//! which a torrent client asks for peers and announces itself.

use super::krpc::NodeInfo;
use super::krpc::{Id, MAX_PACKET};
use super::node::{Event, LookupId, Node, Status};
use super::state::{MAX_SAVED, SavedState};
use super::table::{Health, K};
use crate::config::DhtConfig;
use appnet_netkit::listen::{ListenOpts, bind_udp};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How often time is fed to the node.
const TICK: Duration = Duration::from_millis(250);
/// How often to ask the routers again while the routing table is nearly empty.
const REBOOTSTRAP: Duration = Duration::from_secs(10);
/// How often the state file (if any) is rewritten while the node runs; also at shutdown.
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);
/// How long resolving one bootstrap router's name may take.
const RESOLVE_LIMIT: Duration = Duration::from_secs(10);

enum Command {
    Lookup { info_hash: Id, announce: Option<u16>, peers: mpsc::Sender<Vec<SocketAddr>> },
    Status(oneshot::Sender<Status>),
}

/// Talks to a running [`Dht`] (cheap to clone).
#[derive(Debug, Clone)]
pub struct DhtHandle {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dht command")
    }
}

impl DhtHandle {
    /// Runs one get_peers lookup for `info_hash` (announcing `port` to the closest nodes when
    /// given); peers arrive on the receiver, which closes when the lookup ends.
    pub async fn lookup(&self, info_hash: Id, announce: Option<u16>) -> mpsc::Receiver<Vec<SocketAddr>> {
        let (peers, rx) = mpsc::channel(64);
        let _ = self.tx.send(Command::Lookup { info_hash, announce, peers }).await;
        rx
    }

    /// The node's status (`None` once it stopped).
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Looks for peers of `info_hash` (and announces `announce`) until `stop`: every 5 s while
    /// none were found, then every 15 minutes as BEP 5 announces expire. `sink` gets each batch.
    pub async fn find_peers(
        &self,
        info_hash: Id,
        announce: Option<u16>,
        stop: Shutdown,
        mut sink: impl FnMut(Vec<SocketAddr>) + Send,
    ) {
        let mut found = false;
        while !stop.is_triggered() {
            let mut rx = self.lookup(info_hash, announce).await;
            loop {
                tokio::select! {
                    _ = stop.wait() => return,
                    batch = rx.recv() => match batch {
                        Some(b) => { found |= !b.is_empty(); sink(b) }
                        None => break,
                    },
                }
            }
            let wait = if found { Duration::from_secs(15 * 60) } else { Duration::from_secs(5) };
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// A bound DHT node; `run` it (a netkit [`Service`]).
pub struct Dht {
    socket: UdpSocket,
    node: Node,
    routers: Vec<String>,
    /// Where the id and known nodes are kept across restarts, and the nodes read from there.
    state_file: Option<PathBuf>,
    known: Vec<NodeInfo>,
    rx: mpsc::Receiver<Command>,
    tx: mpsc::Sender<Command>,
}

impl Dht {
    /// Binds the UDP socket; the node id comes from the state file when there is one, else it
    /// is random. A state file that cannot be read is reported and replaced later.
    pub async fn bind(cfg: &DhtConfig) -> io::Result<Dht> {
        let socket = bind_udp(cfg.listen, &ListenOpts::default())?;
        let saved = match &cfg.state_file {
            Some(path) => SavedState::load(path).unwrap_or_else(|e| {
                tracing::warn!("dht state {}: {e}; starting with a new id", path.display());
                None
            }),
            None => None,
        };
        let (id, known) = match saved {
            Some(s) => (s.id, s.nodes),
            None => (rand::random(), Vec::new()),
        };
        let node = Node::new(id, rand::random(), Instant::now());
        let (tx, rx) = mpsc::channel(64);
        Ok(Dht {
            socket,
            node,
            routers: cfg.bootstrap.clone(),
            state_file: cfg.state_file.clone(),
            known,
            rx,
            tx,
        })
    }

    /// A handle for lookups and status.
    pub fn handle(&self) -> DhtHandle {
        DhtHandle { tx: self.tx.clone() }
    }

    /// Our node id.
    pub fn id(&self) -> Id {
        self.node.id()
    }
}

/// The routers' IPv4 addresses: names are looked up side by side, each within
/// [`RESOLVE_LIMIT`], so one hanging name does not hold back the others.
async fn resolve(routers: &[String]) -> Vec<SocketAddrV4> {
    let mut lookups = tokio::task::JoinSet::new();
    for r in routers.iter().take(16) {
        let r = r.clone(); // the task outlives this borrow
        lookups.spawn(async move {
            match tokio::time::timeout(RESOLVE_LIMIT, tokio::net::lookup_host(r.as_str())).await {
                Ok(Ok(addrs)) => addrs
                    .filter_map(|a| match a {
                        SocketAddr::V4(v4) => Some(v4),
                        SocketAddr::V6(_) => None,
                    })
                    .collect(),
                Ok(Err(e)) => {
                    tracing::warn!("dht bootstrap {r}: {e}");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!("dht bootstrap {r}: not resolved within {RESOLVE_LIMIT:?}");
                    Vec::new()
                }
            }
        });
    }
    let mut out = Vec::new();
    while let Some(done) = lookups.join_next().await {
        out.extend(done.unwrap_or_default());
    }
    out
}

impl Service for Dht {
    fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let Dht { socket, mut node, routers, state_file, known, mut rx, tx: _keep } = self;
        if !known.is_empty() {
            tracing::info!("dht: rejoining through {} nodes from the last run", known.len());
            node.restore(&known, Instant::now());
        }
        let mut last_save = Instant::now();
        let mut subs: HashMap<LookupId, mpsc::Sender<Vec<SocketAddr>>> = HashMap::new();
        let mut buf = vec![0u8; MAX_PACKET + 1];
        let mut tick = tokio::time::interval(TICK);
        let mut last_boot: Option<Instant> = None;
        // Router names are resolved off the loop: a hanging DNS server must not stall the DHT.
        let (boot_tx, mut boot_rx) = mpsc::channel::<Vec<SocketAddrV4>>(1);
        let mut resolving = false;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => node.handle(from, &buf[..n], Instant::now()),
                    Err(e) => tracing::debug!("dht recv: {e}"),
                },
                Some(cmd) = rx.recv() => match cmd {
                    Command::Lookup { info_hash, announce, peers } => {
                        let id = match announce {
                            Some(port) => node.announce(info_hash, Some(port), Instant::now()),
                            None => node.get_peers(info_hash, Instant::now()),
                        };
                        subs.insert(id, peers);
                    }
                    Command::Status(reply) => { let _ = reply.send(node.status(Instant::now())); }
                },
                Some(addrs) = boot_rx.recv() => {
                    resolving = false;
                    node.bootstrap(&addrs, Instant::now());
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    node.tick(now);
                    if let Some(path) = &state_file
                        && now.duration_since(last_save) >= SAVE_EVERY
                    {
                        last_save = now;
                        // The write and its fsync run off the loop, which keeps answering.
                        let (state, path) = (saved_state(&node, now), path.clone());
                        tokio::task::spawn_blocking(move || save(&state, &path));
                    }
                    if !routers.is_empty()
                        && !resolving
                        && node.table().len() < K
                        && last_boot.is_none_or(|t| now.duration_since(t) >= REBOOTSTRAP)
                    {
                        last_boot = Some(now);
                        resolving = true;
                        let (routers, boot_tx) = (routers.clone(), boot_tx.clone());
                        tokio::spawn(async move {
                            let _ = boot_tx.send(resolve(&routers).await).await;
                        });
                    }
                }
            }
            while let Some((to, data)) = node.poll_transmit() {
                if let Err(e) = socket.send_to(&data, to).await {
                    tracing::debug!("dht send to {to}: {e}");
                }
            }
            while let Some(ev) = node.poll_event() {
                match ev {
                    Event::Peers { lookup, peers, .. } => {
                        if let Some(s) = subs.get(&lookup) {
                            let _ = s.try_send(peers.into_iter().map(SocketAddr::V4).collect());
                        }
                    }
                    Event::LookupDone { lookup, announced, .. } => {
                        if subs.remove(&lookup).is_some() {
                            tracing::debug!("dht lookup {lookup} done, announced to {announced} nodes");
                        }
                    }
                }
            }
        }
        if let Some(path) = state_file {
            let state = saved_state(&node, Instant::now());
            let _ = tokio::task::spawn_blocking(move || save(&state, &path)).await;
        }
        Ok(())
    }
}

/// What to save: the node's id and the nodes that have answered it (good ones first).
fn saved_state(node: &Node, now: Instant) -> SavedState {
    let mut answered: Vec<_> = node.table().entries().filter(|e| e.last_response.is_some()).collect();
    answered.sort_by_key(|e| e.health(now) != Health::Good);
    SavedState { id: node.id(), nodes: answered.iter().map(|e| e.node).take(MAX_SAVED).collect() }
}

/// Writes the state file (blocking: it fsyncs), logging the outcome.
fn save(state: &SavedState, path: &Path) {
    match state.save(path) {
        Ok(()) => tracing::debug!("dht state saved to {} ({} nodes)", path.display(), state.nodes.len()),
        Err(e) => tracing::warn!("dht state {}: {e}", path.display()),
    }
}
