//! Downloading from a magnet link, first half: find peers (the link's trackers, its `x.pe`
//! addresses, peers they tell us about over PEX) and fetch the info dictionary from them with
//! the extension protocol (BEP 10) and metadata exchange (BEP 9). The assembly and its hash
//! check are the sans-IO [`MetadataFetch`]; this is the thin tokio driver around it. The result
//! is an ordinary [`Metainfo`] for [`crate::Session`].

use crate::bep9_metadata::{DataOutcome, MetadataFetch};
use crate::metainfo::{Magnet, Metainfo, MetainfoError};
use crate::tracker::client as tracker_client;
use crate::tracker::proto::{Announce, Event};
use crate::wire::ext::{ExtHandshake, HANDSHAKE_ID, MetadataMsg, OUR_UT_METADATA, OUR_UT_PEX, Pex, message};
use crate::wire::{HANDSHAKE_LEN, Handshake, Message};
use appnet_netkit::Shutdown;
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Our client name in extension handshakes (`v`).
pub const CLIENT_NAME: &str = concat!("appnet ", env!("CARGO_PKG_VERSION"));
/// Metadata requests kept in flight to one peer.
const PIPELINE: usize = 4;
/// An unanswered metadata request goes to another peer after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to connect and handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer that sends nothing for this long is dropped.
const IDLE: Duration = Duration::from_secs(60);
/// A peer is not dialled again sooner than this after the last attempt.
const REDIAL: Duration = Duration::from_secs(5);
/// Most peer addresses remembered (from trackers, PEX and the link).
const MAX_KNOWN: usize = 1000;
/// Largest message read while fetching (bitfields of huge torrents are the biggest).
const MAX_MESSAGE: u32 = 1 << 20;

/// Why the metadata could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum MagnetError {
    /// Asked to stop before the metadata arrived.
    #[error("stopped before the metadata arrived")]
    Stopped,
    /// The info dictionary hashed right but is not a valid torrent.
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
}

/// How to look for peers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Our peer id (use the session's, so trackers see one peer).
    pub peer_id: [u8; 20],
    /// The port our session listens on (announced to trackers and in the extension handshake).
    pub listen_port: u16,
    /// Peers to contact besides the link's `x.pe` and the trackers' (`--peer`).
    pub peers: Vec<SocketAddr>,
    /// Most simultaneous peer connections.
    pub max_peers: usize,
    /// Peers asked of each tracker.
    pub numwant: u32,
    /// Seconds between tracker announces while fetching.
    pub announce_every: Duration,
    /// A running DHT node to find peers through (and announce `listen_port` to), if any.
    pub dht: Option<crate::dht::DhtHandle>,
}

/// The fetched torrent and the peers found on the way (hand them to the session).
#[derive(Debug)]
pub struct Fetched {
    /// The torrent: the verified info dictionary plus the link's trackers.
    pub meta: Metainfo,
    /// Every peer address we learned of.
    pub peers: Vec<SocketAddr>,
    /// Assemblies that failed the hash check (peers sent forged or stale metadata).
    pub hash_failures: u32,
}

/// What the fetch is doing, for progress output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStatus {
    /// Peer addresses known.
    pub known: usize,
    /// Peers connected now.
    pub connected: usize,
    /// Metadata pieces received / needed (0 / 0 before a peer told us the size).
    pub have: u32,
    /// Metadata pieces in the info dictionary.
    pub pieces: u32,
}

struct Shared {
    info_hash: [u8; 20],
    opts: FetchOptions,
    fetch: Mutex<MetadataFetch<SocketAddr>>,
    known: Mutex<Vec<SocketAddr>>,
    connected: Mutex<HashSet<SocketAddr>>,
    done: watch::Sender<Option<Vec<u8>>>,
    stop: Shutdown,
}

impl Shared {
    fn learn(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for a in addrs {
            if known.len() < MAX_KNOWN && !known.contains(&a) && a.port() != 0 {
                known.push(a);
            }
        }
    }

    fn status(&self) -> FetchStatus {
        let f = self.fetch.lock().unwrap_or_else(|e| e.into_inner());
        FetchStatus {
            known: self.known.lock().unwrap_or_else(|e| e.into_inner()).len(),
            connected: self.connected.lock().unwrap_or_else(|e| e.into_inner()).len(),
            have: f.have(),
            pieces: f.num_pieces(),
        }
    }
}

/// Resolves the link's `x.pe` entries (`ip:port` or `host:port`), skipping ones that fail.
pub async fn resolve_peers(magnet: &Magnet) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for p in magnet.peers.iter().take(100) {
        match tokio::net::lookup_host(p.as_str()).await {
            Ok(addrs) => out.extend(addrs.take(4)),
            Err(e) => tracing::warn!("magnet peer {p}: {e}"),
        }
    }
    out
}

/// Fetches the info dictionary for `magnet` from peers, until it arrives (verified against the
/// info hash) or `shutdown` triggers. `status` is called about once a second.
pub async fn fetch(
    magnet: &Magnet,
    opts: FetchOptions,
    shutdown: &Shutdown,
    mut status: impl FnMut(FetchStatus),
) -> Result<Fetched, MagnetError> {
    let (done, mut done_rx) = watch::channel(None);
    let stop = shutdown.child();
    let shared = Arc::new(Shared {
        info_hash: magnet.info_hash,
        fetch: Mutex::new(MetadataFetch::new(magnet.info_hash, REQUEST_TIMEOUT)),
        known: Mutex::new(Vec::new()),
        connected: Mutex::new(HashSet::new()),
        done,
        stop: stop.clone(),
        opts,
    });
    shared.learn(shared.opts.peers.clone());
    shared.learn(resolve_peers(magnet).await);
    if let Some(dht) = shared.opts.dht.clone() {
        let (s, until) = (shared.clone(), stop.clone());
        let port = shared.opts.listen_port;
        stop.spawn(async move { dht.find_peers(s.info_hash, Some(port), until, |b| s.learn(b)).await });
    }
    for url in magnet.trackers.clone() {
        let s = shared.clone();
        stop.spawn(async move { announce_loop(s, url).await });
    }
    let mut last_dial: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let result = loop {
        tokio::select! {
            _ = stop.wait() => break None,
            r = done_rx.wait_for(Option::is_some) => break r.ok().and_then(|v| v.clone()),
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let candidates: Vec<SocketAddr> = shared.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for addr in candidates {
            let busy = {
                let c = shared.connected.lock().unwrap_or_else(|e| e.into_inner());
                if c.len() >= shared.opts.max_peers.max(1) {
                    break;
                }
                c.contains(&addr)
            };
            let recent = last_dial.get(&addr).is_some_and(|t| now.duration_since(*t) < REDIAL);
            let bad = shared.fetch.lock().unwrap_or_else(|e| e.into_inner()).is_bad(&addr);
            if busy || recent || bad {
                continue;
            }
            last_dial.insert(addr, now);
            shared.connected.lock().unwrap_or_else(|e| e.into_inner()).insert(addr);
            let s = shared.clone();
            stop.spawn(async move {
                match peer(&s, addr).await {
                    Ok(()) => tracing::debug!("metadata peer {addr} closed"),
                    Err(e) => tracing::debug!("metadata peer {addr}: {e}"),
                }
                s.fetch.lock().unwrap_or_else(|e| e.into_inner()).peer_gone(&addr);
                s.connected.lock().unwrap_or_else(|e| e.into_inner()).remove(&addr);
            });
        }
        if now.duration_since(last_status) >= Duration::from_secs(1) {
            last_status = now;
            status(shared.status());
        }
    };
    stop.drain(Duration::from_secs(3)).await;
    let info = result.ok_or(MagnetError::Stopped)?;
    let meta = magnet.to_metainfo(&info)?;
    let peers = shared.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let hash_failures = shared.fetch.lock().unwrap_or_else(|e| e.into_inner()).failures();
    Ok(Fetched { meta, peers, hash_failures })
}

async fn announce_loop(s: Arc<Shared>, url: String) {
    let mut event = Event::Started;
    loop {
        let a = Announce {
            info_hash: s.info_hash,
            peer_id: s.opts.peer_id,
            port: s.opts.listen_port,
            uploaded: 0,
            downloaded: 0,
            // The size is unknown until the metadata arrives; any non-zero value says leecher.
            left: 16 * 1024,
            event,
            numwant: Some(s.opts.numwant),
            compact: true,
            no_peer_id: true,
            key: None,
        };
        match tracker_client::announce(&url, &a, Duration::from_secs(15)).await {
            Ok(reply) => {
                tracing::info!("tracker {url}: {} peers", reply.peers.len());
                s.learn(reply.peers.into_iter().map(|p| p.addr));
                event = Event::None;
            }
            Err(e) => tracing::warn!("tracker {url}: {e}"),
        }
        tokio::select! {
            _ = s.stop.wait() => return,
            _ = tokio::time::sleep(s.opts.announce_every) => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PeerFail {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

fn proto(e: impl std::fmt::Display) -> PeerFail {
    PeerFail::Protocol(e.to_string())
}

/// One peer: handshakes, then asks it for metadata pieces until the fetch is done or the peer
/// cannot help.
async fn peer(s: &Shared, addr: SocketAddr) -> Result<(), PeerFail> {
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| proto("connect timed out"))??;
    let _ = stream.set_nodelay(true);
    let ours = Handshake::new(s.info_hash, s.opts.peer_id);
    let mut hs = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        stream.write_all(&ours.encode()).await?;
        stream.read_exact(&mut hs).await
    })
    .await
    .map_err(|_| proto("handshake timed out"))??;
    let theirs = Handshake::decode(&hs).map_err(proto)?;
    if theirs.info_hash != s.info_hash {
        return Err(proto("wrong info hash"));
    }
    if theirs.peer_id == s.opts.peer_id {
        return Ok(()); // ourselves
    }
    if !theirs.extended() {
        return Err(proto("no extension protocol: cannot fetch metadata from it"));
    }
    let mut out = BytesMut::new();
    let mut hello = ExtHandshake {
        client: Some(CLIENT_NAME.into()),
        listen_port: Some(s.opts.listen_port).filter(|&p| p != 0),
        ..Default::default()
    };
    hello.m.insert("ut_metadata".into(), OUR_UT_METADATA);
    hello.m.insert("ut_pex".into(), OUR_UT_PEX);
    message(HANDSHAKE_ID, hello.encode()).encode(&mut out);
    if theirs.fast() {
        Message::HaveNone.encode(&mut out);
    }
    stream.write_all(&out).await?;
    out.clear();
    let mut their_id: Option<u8> = None;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_heard = Instant::now();
    loop {
        while let Some(msg) = Message::decode(&mut buf, MAX_MESSAGE).map_err(proto)? {
            last_heard = Instant::now();
            let Message::Extended { id, payload } = msg else { continue };
            match id {
                HANDSHAKE_ID => {
                    let h = ExtHandshake::decode(&payload).map_err(proto)?;
                    tracing::debug!("metadata peer {addr} is {:?}", h.client);
                    let (Some(id), Some(size)) = (h.id_of("ut_metadata"), h.metadata_size) else {
                        return Err(proto("peer offers no metadata"));
                    };
                    if !s.fetch.lock().unwrap_or_else(|e| e.into_inner()).offer(addr, size) {
                        return Err(proto(format!("unusable metadata_size {size}")));
                    }
                    their_id = Some(id);
                }
                OUR_UT_METADATA => match MetadataMsg::decode(&payload).map_err(proto)? {
                    MetadataMsg::Request(piece) => {
                        if let Some(id) = their_id {
                            message(id, MetadataMsg::Reject(piece).encode()).encode(&mut out);
                        }
                    }
                    MetadataMsg::Reject(piece) => {
                        s.fetch.lock().unwrap_or_else(|e| e.into_inner()).on_reject(addr, piece);
                        return Err(proto("peer rejected a metadata request"));
                    }
                    MetadataMsg::Data { piece, total_size, data } => {
                        let got = s
                            .fetch
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .on_data(addr, piece, total_size, &data);
                        match got {
                            DataOutcome::Stored | DataOutcome::Ignored => {}
                            DataOutcome::Bad => return Err(proto("bad metadata piece")),
                            DataOutcome::HashMismatch(blamed) => {
                                // The other blamed connections notice at their next request.
                                tracing::warn!(
                                    "metadata from {blamed:?} does not match the info hash; retrying"
                                );
                                return Err(proto("metadata hash mismatch"));
                            }
                            DataOutcome::Done(info) => {
                                tracing::info!("metadata: {} bytes, verified", info.len());
                                s.done.send_replace(Some(info));
                                return Ok(());
                            }
                        }
                    }
                },
                OUR_UT_PEX => {
                    if let Ok(p) = Pex::decode(&payload) {
                        s.learn(p.added);
                    }
                }
                _ => {}
            }
        }
        if let Some(id) = their_id {
            let mut f = s.fetch.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_bad(&addr) || f.is_done() {
                return Ok(());
            }
            let now = Instant::now();
            while f.inflight_to(&addr) < PIPELINE {
                let Some(piece) = f.next_request(addr, now) else { break };
                message(id, MetadataMsg::Request(piece).encode()).encode(&mut out);
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if last_heard.elapsed() > IDLE {
            return Err(proto("idle"));
        }
        tokio::select! {
            _ = s.stop.wait() => return Ok(()),
            r = tokio::time::timeout(Duration::from_secs(1), stream.read_buf(&mut buf)) => match r {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => {} // time to re-check timed-out requests
            },
        }
    }
}
