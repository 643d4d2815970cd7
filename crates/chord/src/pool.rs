//! Pooled RPC connections. The wire protocol allows many request/response exchanges on one TCP
//! connection (the server reads frames in a loop), so a node or client keeps a few idle
//! connections per peer and reuses them instead of paying a TCP handshake per RPC.
//!
//! A connection is checked out for exactly one exchange, then returned if the exchange went
//! well. Idle connections are bounded per peer and in total, and closed after an idle timeout
//! (kept below the server's, so the server rarely closes one under us). A pooled connection
//! whose peer died fails on write or read (or is seen closed at checkout): the RPC is then tried
//! once on a fresh connection, which to a dead peer fails at once (refused) or times out, so a
//! dead peer is still reported unreachable as quickly as without the pool.

use crate::error::ClientError;
use crate::frame::{read_frame, write_frame};
use crate::wire::{self, Request, Response, RingKey, Stamp};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How many connections a pool keeps, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Idle connections kept per peer address; 0 disables pooling (one connection per RPC).
    pub per_peer: usize,
    /// Idle connections kept in all.
    pub total: usize,
    /// An idle connection older than this is closed.
    pub idle: Duration,
}

impl Default for PoolLimits {
    fn default() -> PoolLimits {
        PoolLimits { per_peer: 2, total: 64, idle: Duration::from_secs(10) }
    }
}

/// Figures about a pool, for `Stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// TCP connections opened.
    pub opened: u64,
    /// Exchanges done on a reused (pooled) connection.
    pub reused: u64,
    /// Pooled connections found broken mid-exchange (the RPC was retried on a fresh one).
    pub stale: u64,
    /// Idle connections held now.
    pub idle: u64,
}

#[derive(Debug)]
struct Inner {
    limits: PoolLimits,
    /// The ring secret: requests are sealed with it and answers must carry a valid HMAC.
    auth: Option<Arc<RingKey>>,
    /// The address new connections are made from (a node's own listening IP, so that peers
    /// checking its claims against the connection's address see the address it announces).
    source: Option<IpAddr>,
    idle: Mutex<Idle>,
    opened: AtomicU64,
    reused: AtomicU64,
    stale: AtomicU64,
}

#[derive(Debug)]
struct Idle {
    by_peer: HashMap<SocketAddr, Vec<(TcpStream, Instant)>>,
    count: usize,
    swept: Instant,
}

/// A shared pool of idle RPC connections (cheap to clone; clones share the connections).
#[derive(Debug, Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// Whether an idle connection is still open: nothing to read and no end of stream.
fn looks_alive(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// One request/response exchange on an open connection: `frame` is sent as is, or sealed
/// under the ring secret with a fresh request id (whose answer must carry it).
async fn exchange(
    stream: &mut TcpStream,
    addr: SocketAddr,
    frame: &[u8],
    auth: Option<&RingKey>,
) -> Result<(u8, Response), ClientError> {
    let request_id = wire::fresh_request_id();
    let sealed;
    let frame = match auth {
        None => frame,
        Some(key) => {
            sealed = key.seal_request(frame.to_vec(), Stamp { unix_ms: wire::unix_ms(), request_id });
            sealed.as_slice()
        }
    };
    write_frame(stream, frame).await.map_err(|e| ClientError::Io(addr, e))?;
    let body = match read_frame(stream).await.map_err(|e| ClientError::Io(addr, e))? {
        None => return Err(ClientError::Io(addr, io::ErrorKind::UnexpectedEof.into())),
        Some(Err(e)) => return Err(ClientError::Wire(addr, e)),
        Some(Ok(body)) => body,
    };
    let message = match auth {
        None => body.as_slice(),
        Some(key) => match key.open_response(&body, request_id) {
            Ok(message) => message,
            Err(e) => {
                let text = match wire::decode_response(&body) {
                    Ok((_, Response::Error { message, .. })) => Some(message),
                    _ => None,
                };
                return Err(ClientError::Auth(addr, e, text));
            }
        },
    };
    wire::decode_response(message).map_err(|e| ClientError::Wire(addr, e))
}

impl Pool {
    /// An empty pool with these limits.
    pub fn new(limits: PoolLimits) -> Pool {
        Pool::with_auth(limits, None)
    }

    /// An empty pool whose RPCs are authenticated with the ring secret `auth`, if any.
    pub fn with_auth(limits: PoolLimits, auth: Option<Arc<RingKey>>) -> Pool {
        Pool::for_node(limits, auth, None)
    }

    /// Like [`with_auth`](Self::with_auth), connecting from `source` (a node's listening IP;
    /// ignored when unspecified or of the other family than a peer's).
    pub fn for_node(limits: PoolLimits, auth: Option<Arc<RingKey>>, source: Option<IpAddr>) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                limits,
                auth,
                source: source.filter(|ip| !ip.is_unspecified()),
                idle: Mutex::new(Idle { by_peer: HashMap::new(), count: 0, swept: Instant::now() }),
                opened: AtomicU64::new(0),
                reused: AtomicU64::new(0),
                stale: AtomicU64::new(0),
            }),
        }
    }

    /// A pool that keeps nothing: every RPC opens its own connection.
    pub fn disabled() -> Pool {
        Pool::new(PoolLimits { per_peer: 0, total: 0, idle: Duration::ZERO })
    }

    /// The ring secret its RPCs are authenticated with, if any.
    pub fn auth(&self) -> Option<&Arc<RingKey>> {
        self.inner.auth.as_ref()
    }

    /// The pool's limits.
    pub fn limits(&self) -> PoolLimits {
        self.inner.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters and the number of idle connections.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            opened: self.inner.opened.load(Ordering::Relaxed),
            reused: self.inner.reused.load(Ordering::Relaxed),
            stale: self.inner.stale.load(Ordering::Relaxed),
            idle: self.lock().count as u64,
        }
    }

    /// Closes every idle connection.
    pub fn clear(&self) {
        let mut idle = self.lock();
        idle.by_peer.clear();
        idle.count = 0;
    }

    /// The most recently used live idle connection to `addr`, if any.
    fn checkout(&self, addr: SocketAddr) -> Option<TcpStream> {
        let max_age = self.inner.limits.idle;
        let mut idle = self.lock();
        let list = idle.by_peer.get_mut(&addr)?;
        let mut found = None;
        let mut taken = 0;
        while let Some((stream, since)) = list.pop() {
            taken += 1;
            if since.elapsed() < max_age && looks_alive(&stream) {
                found = Some(stream);
                break;
            }
        }
        if list.is_empty() {
            idle.by_peer.remove(&addr);
        }
        idle.count -= taken;
        found
    }

    /// Returns a connection after a good exchange, if the limits leave room for it.
    fn checkin(&self, addr: SocketAddr, stream: TcpStream) {
        let limits = self.inner.limits;
        if limits.per_peer == 0 {
            return;
        }
        let mut idle = self.lock();
        if idle.swept.elapsed() >= Duration::from_secs(1) {
            idle.swept = Instant::now();
            let mut count = 0;
            idle.by_peer.retain(|_, list| {
                list.retain(|(_, since)| since.elapsed() < limits.idle);
                count += list.len();
                !list.is_empty()
            });
            idle.count = count;
        }
        if idle.count >= limits.total {
            return;
        }
        let list = idle.by_peer.entry(addr).or_default();
        if list.len() < limits.per_peer {
            list.push((stream, Instant::now()));
            idle.count += 1;
        }
    }

    /// One exchange with `addr` within `timeout`: on a pooled connection if one is idle (and
    /// again on a fresh one if that turns out broken), else on a new connection, which is kept
    /// for reuse afterwards. Returns the answering node's m and its response (an `Error`
    /// response is returned as `Ok`; its connection is not reused).
    pub async fn rpc(
        &self,
        addr: SocketAddr,
        bits: u8,
        req: &Request,
        timeout: Duration,
    ) -> Result<(u8, Response), ClientError> {
        let frame = wire::encode_request(bits, req);
        let run = async {
            if let Some(mut stream) = self.checkout(addr) {
                match exchange(&mut stream, addr, &frame, self.inner.auth.as_deref()).await {
                    Ok(answer) => {
                        self.inner.reused.fetch_add(1, Ordering::Relaxed);
                        self.finish(addr, stream, &answer);
                        return Ok(answer);
                    }
                    // Closed or reset under us: the peer restarted, died, or timed us out.
                    Err(ClientError::Io(..)) => {
                        self.inner.stale.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut stream = self.connect(addr).await.map_err(|e| ClientError::Io(addr, e))?;
            self.inner.opened.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let answer = exchange(&mut stream, addr, &frame, self.inner.auth.as_deref()).await?;
            self.finish(addr, stream, &answer);
            Ok(answer)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(addr, timeout)),
        }
    }

    /// A new connection to `addr`, from the pool's source address if it has one.
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        match self.inner.source {
            Some(ip) if ip.is_ipv4() == addr.is_ipv4() => {
                let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
            _ => TcpStream::connect(addr).await,
        }
    }

    fn finish(&self, addr: SocketAddr, stream: TcpStream, answer: &(u8, Response)) {
        // A refusal may come with the server closing (connection cap, oversized frame).
        if !matches!(answer.1, Response::Error { .. }) {
            self.checkin(addr, stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server answering every frame with Ok, on as many exchanges per connection as asked.
    async fn ok_server(delay: Duration) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            // Connections live in this task's set: aborting the task closes them too.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                conns.spawn(async move {
                    while let Ok(Some(Ok(_))) = read_frame(&mut s).await {
                        tokio::time::sleep(delay).await;
                        if write_frame(&mut s, &wire::encode_response(8, &Response::Ok)).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn reuses_connections_and_fails_fast_once_the_peer_is_gone() {
        let (addr, server) = ok_server(Duration::ZERO).await;
        let pool = Pool::new(PoolLimits::default());
        let t = Duration::from_secs(2);
        for _ in 0..5 {
            assert_eq!(pool.rpc(addr, 8, &Request::Ping, t).await.unwrap().1, Response::Ok);
        }
        let s = pool.stats();
        assert_eq!((s.opened, s.reused, s.idle), (1, 4, 1), "{s:?}");
        // The server goes away (listener and connections): the pooled connection is found
        // dead, the fresh connection is refused, and the failure comes at once (well within `t`).
        server.abort();
        let _ = server.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let err = pool.rpc(addr, 8, &Request::Ping, t).await.unwrap_err();
        assert!(matches!(err, ClientError::Io(..)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!(pool.stats().idle, 0);
    }

    #[tokio::test]
    async fn a_disabled_pool_opens_one_connection_per_rpc_and_limits_hold() {
        let (addr, server) = ok_server(Duration::from_millis(50)).await;
        let t = Duration::from_secs(2);
        let off = Pool::disabled();
        for _ in 0..3 {
            off.rpc(addr, 8, &Request::Ping, t).await.unwrap();
        }
        assert_eq!((off.stats().opened, off.stats().reused, off.stats().idle), (3, 0, 0));
        // Four exchanges at once need four connections; only per_peer of them are kept.
        let pool = Pool::new(PoolLimits { per_peer: 2, total: 3, idle: Duration::from_secs(10) });
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let pool = pool.clone();
            calls.spawn(async move { pool.rpc(addr, 8, &Request::Ping, t).await });
        }
        while let Some(r) = calls.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!((pool.stats().opened, pool.stats().idle), (4, 2));
        // Expired idle connections are not reused.
        let short = Pool::new(PoolLimits { per_peer: 2, total: 3, idle: Duration::from_millis(20) });
        short.rpc(addr, 8, &Request::Ping, t).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        short.rpc(addr, 8, &Request::Ping, t).await.unwrap();
        assert_eq!((short.stats().opened, short.stats().reused), (2, 0));
        server.abort();
    }
}
