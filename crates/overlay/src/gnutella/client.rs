//! `gnutella search|get`'s side of the overlay: a short-lived servent that connects to a node
//! (as a leaf of an ultrapeer, or a plain peer of a plain node), sends one Query, collects the
//! QueryHits that come back along the reverse path, and fetches files over HTTP from the
//! hits' addresses (every source with the same SHA-1 at once). A hit from a firewalled
//! servent (the QueryHit's Push flag) is fetched the Gnutella way: a Push descriptor routed
//! back along the QueryHit's path asks it to connect to us, it says `GIV`, and the HTTP
//! requests then go over that connection.

use super::conn::{ConnError, initiate};
use super::handshake::Capabilities;
use super::wire::{
    DEFAULT_MAX_PAYLOAD, Descriptor, Extension, Framer, Guid, Payload, Pong, Push, Query, qhd_flag,
};
use crate::http::download::{DownloadOptions, Downloaded, download_pushed};
use crate::http::{DownloadError, Source, download};
use crate::napster::wire::Sha1;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Most hits kept from one search.
const MAX_HITS: usize = 1000;
/// Longest `GIV` head accepted from a pushed connection.
const MAX_GIV: usize = 4096;

/// One file a QueryHit offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Content hash, if the hit carried `urn:sha1:`.
    pub sha1: Option<Sha1>,
    /// The responding servent's HTTP address (from the QueryHit, not a TCP source).
    pub addr: SocketAddr,
    /// File index for `GET /get/<index>/<name>`.
    pub index: u32,
    /// The responder's servent GUID.
    pub servent: Guid,
    /// Hops the QueryHit travelled back to us.
    pub hops: u8,
    /// The responder set the Push flag: it cannot accept connections, so ask it by Push.
    pub firewalled: bool,
}

impl SearchHit {
    /// How to fetch it: by hash when known, else by index and name.
    pub fn source(&self) -> Source {
        match &self.sha1 {
            Some(h) => Source::by_urn(self.addr, h),
            None => Source::by_index(self.addr, self.index, &self.name),
        }
    }
}

/// Why a search or download failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("node {0}: {1}")]
    Node(SocketAddr, io::Error),
    /// The handshake failed or was refused.
    #[error("node {0}: {1}")]
    Handshake(SocketAddr, ConnError),
    /// Nothing matched within the wait.
    #[error("no hit for {0:?}")]
    NotFound(String),
    /// The transfer failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// A firewalled servent did not answer our Push with a matching `GIV`.
    #[error("push to {0}: {1}")]
    Push(SocketAddr, String),
}

/// A fresh random GUID marked as a 0.6 servent's (std's per-process random hash keys mixed
/// with the time and a counter: unique, not secret).
pub fn random_guid() -> Guid {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 16];
    for half in b.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    Guid::modern(b)
}

/// The Query for `what`: keywords, or a `urn:sha1:` (sent as a HUGE URN extension with the
/// conventional `\` criteria).
pub fn query_for(what: &str) -> Query {
    if crate::gnutella::base32::parse_sha1_urn(what.trim()).is_some() {
        Query { flags: 0, criteria: "\\".into(), ext: vec![Extension::Urn(what.trim().to_string())] }
    } else {
        // An empty `urn:` asks responders to put URNs in their hits.
        Query { flags: 0, criteria: what.trim().to_string(), ext: vec![Extension::Urn("urn:".into())] }
    }
}

/// Searches through the node at `node` with `ttl`, collecting QueryHits for `wait`.
pub async fn search(
    node: SocketAddr,
    what: &str,
    ttl: u8,
    wait: Duration,
) -> Result<Vec<SearchHit>, ClientError> {
    Ok(search_conn(node, what, ttl, wait).await?.1)
}

/// [`search`], keeping the connection to the node open: a Push for one of the hits must go
/// out over it, since the node routes Pushes along the path its QueryHits took.
async fn search_conn(
    node: SocketAddr,
    what: &str,
    ttl: u8,
    wait: Duration,
) -> Result<(TcpStream, Vec<SearchHit>), ClientError> {
    let ours = Capabilities {
        user_agent: format!("appnet-search/{}", env!("CARGO_PKG_VERSION")),
        ultrapeer: false,
        query_routing: false,
        pong_caching: false,
        listen: None,
    };
    let mut stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(node))
        .await
        .map_err(|_| ClientError::Node(node, io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
        .map_err(|e| ClientError::Node(node, e))?;
    let (_theirs, rest) = initiate(&mut stream, &ours, Duration::from_secs(10))
        .await
        .map_err(|e| ClientError::Handshake(node, e))?;
    let guid = random_guid();
    let query = Descriptor::new(guid, ttl.clamp(1, 7), Payload::Query(query_for(what)));
    stream.write_all(&query.encode()).await.map_err(|e| ClientError::Node(node, e))?;
    let mut framer = Framer::new(DEFAULT_MAX_PAYLOAD);
    framer.push(&rest);
    let mut hits = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; 16 * 1024];
    'outer: loop {
        loop {
            match framer.next_descriptor() {
                Ok(Some(d)) => match d.payload {
                    Payload::QueryHit(qh) if d.guid == guid => {
                        let addr = SocketAddr::V4(SocketAddrV4::new(qh.ip, qh.port));
                        let firewalled =
                            qh.qhd.as_ref().and_then(|q| q.flag(qhd_flag::PUSH)).unwrap_or(false);
                        for r in &qh.results {
                            if hits.len() < MAX_HITS {
                                hits.push(SearchHit {
                                    name: r.name.clone(),
                                    size: u64::from(r.size),
                                    sha1: r.sha1(),
                                    addr,
                                    index: r.index,
                                    servent: qh.servent,
                                    hops: d.hops,
                                    firewalled,
                                });
                            }
                        }
                    }
                    Payload::Ping(_) => {
                        // Keep-alive from the node: a Pong with no address of our own.
                        let pong = Pong {
                            port: 0,
                            ip: std::net::Ipv4Addr::UNSPECIFIED,
                            files: 0,
                            kbytes: 0,
                            ext: vec![],
                        };
                        let mut reply = Descriptor::new(d.guid, 1, Payload::Pong(pong));
                        reply.hops = 0;
                        let _ = stream.write_all(&reply.encode()).await;
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("node sent a bad descriptor: {e}");
                    break 'outer;
                }
            }
        }
        let n = tokio::select! {
            n = stream.read(&mut buf) => n.map_err(|e| ClientError::Node(node, e))?,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        if n == 0 {
            break;
        }
        framer.push(&buf[..n]);
    }
    Ok((stream, hits))
}

/// The hits for the file to fetch: `what` itself if it is a URN, else the first hit's
/// content; every hit with that SHA-1 (and size) becomes a source.
pub fn pick<'a>(hits: &'a [SearchHit], what: &str) -> Option<(&'a SearchHit, Vec<Source>)> {
    let wanted = crate::gnutella::base32::parse_sha1_urn(what.trim());
    let first = match wanted {
        Some(h) => hits.iter().find(|x| x.sha1 == Some(h))?,
        None => hits.first()?,
    };
    let mut sources = Vec::new();
    for h in same_file(hits, first).filter(|h| !h.firewalled) {
        let s = h.source();
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    if sources.is_empty() && !first.firewalled {
        sources.push(first.source());
    }
    Some((first, sources))
}

/// The hits offering the same content as `first` (same SHA-1 and size).
fn same_file<'a>(hits: &'a [SearchHit], first: &'a SearchHit) -> impl Iterator<Item = &'a SearchHit> {
    hits.iter().filter(move |h| h.sha1.is_some() && h.sha1 == first.sha1 && h.size == first.size)
}

/// Searches and downloads the result into `out_dir`, verified by SHA-1.
pub async fn get(
    node: SocketAddr,
    what: &str,
    ttl: u8,
    wait: Duration,
    out_dir: &Path,
    opts: DownloadOptions,
) -> Result<(SearchHit, Downloaded), ClientError> {
    let (mut stream, hits) = search_conn(node, what, ttl, wait).await?;
    let (hit, sources) = pick(&hits, what).ok_or_else(|| ClientError::NotFound(what.to_string()))?;
    let sha1 =
        hit.sha1.ok_or_else(|| ClientError::NotFound(format!("{what} (the hit carries no urn:sha1)")))?;
    // Servents that accept connections first (in parallel); firewalled ones by Push, one by one.
    let mut failed = None;
    if !sources.is_empty() {
        match download(&sources, &hit.name, hit.size, sha1, out_dir, opts).await {
            Ok(done) => return Ok((hit.clone(), done)),
            Err(e) => failed = Some(ClientError::Download(e)),
        }
    }
    for h in same_file(&hits, hit).filter(|h| h.firewalled) {
        match fetch_by_push(&mut stream, h, sha1, out_dir, opts).await {
            Ok(done) => return Ok((h.clone(), done)),
            Err(e) => {
                tracing::info!(servent = %h.servent, "download by Push failed: {e}");
                failed = Some(e);
            }
        }
    }
    Err(failed.unwrap_or_else(|| ClientError::NotFound(what.to_string())))
}

/// Sends a Push for `hit` over the search connection, waits for the firewalled servent to
/// connect to a listener of ours and introduce itself with `GIV <index>:<servent>/<name>`
/// (checked against the hit), then downloads over that connection.
async fn fetch_by_push(
    stream: &mut TcpStream,
    hit: &SearchHit,
    sha1: Sha1,
    out_dir: &Path,
    opts: DownloadOptions,
) -> Result<Downloaded, ClientError> {
    let fail = |e: String| ClientError::Push(hit.addr, e);
    let IpAddr::V4(ip) = stream.local_addr().map_err(|e| fail(e.to_string()))?.ip() else {
        return Err(fail("Push needs an IPv4 address of ours".into()));
    };
    let listener = TcpListener::bind((ip, 0)).await.map_err(|e| fail(e.to_string()))?;
    let port = listener.local_addr().map_err(|e| fail(e.to_string()))?.port();
    let push = Push { servent: hit.servent, index: hit.index, ip, port, ext: Vec::new() };
    let d = Descriptor::new(random_guid(), 7, Payload::Push(push));
    stream.write_all(&d.encode()).await.map_err(|e| fail(e.to_string()))?;
    let (mut conn, from) = tokio::time::timeout(opts.io_timeout, listener.accept())
        .await
        .map_err(|_| fail("no GIV connection came".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let head = read_giv(&mut conn, opts.io_timeout).await.map_err(|e| fail(e.to_string()))?;
    let (index, servent) = parse_giv(&head).ok_or_else(|| fail(format!("bad GIV line {head:?}")))?;
    if index != hit.index || !servent.eq_ignore_ascii_case(&hit.servent.to_string()) {
        return Err(fail(format!("{from} answered with {head:?}, not the file asked for")));
    }
    let mut source = hit.source();
    source.addr = from;
    Ok(download_pushed(source, conn, &hit.name, hit.size, sha1, out_dir, opts).await?)
}

/// Reads the `GIV` head up to its blank line, byte by byte (what follows belongs to HTTP).
async fn read_giv(conn: &mut TcpStream, t: Duration) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\n\n") && !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_GIV {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "GIV head too long"));
        }
        let n = tokio::time::timeout(t, conn.read(&mut byte))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "GIV timed out"))??;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before GIV"));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).trim().to_string())
}

/// `GIV <index>:<servent GUID hex>/<name>` → (index, GUID hex).
pub fn parse_giv(line: &str) -> Option<(u32, &str)> {
    let rest = line.strip_prefix("GIV ")?;
    let (index, rest) = rest.split_once(':')?;
    let (servent, _name) = rest.split_once('/')?;
    (servent.len() == 32 && servent.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((index.trim().parse().ok()?, servent))
}
