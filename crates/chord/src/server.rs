//! The tokio driver: owns the TCP listener, the clock and the RPC tasks, and feeds the sans-IO
//! [`Node`]. Requests are answered synchronously from the node's state; the node's own RPCs run
//! in tasks whose replies (or timeouts) come back through a channel. On shutdown the node leaves
//! gracefully (keys and neighbours handed over); [`ChordServer::killer`] stops it abruptly.

use crate::config::{ChordConfig, ConfigError};
use crate::error::ClientError;
use crate::frame::{FrameBudget, read_frame_within, write_frame};
use crate::node::{Event, Node, Origin, Output, RpcFailure};
use crate::pool::Pool;
use crate::wire::{self, AuthError, ErrorCode, NodeRef, ReplayGuard, Request, Response, RingKey, Stamp};
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits, ConnSlot, default_per_ip};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::metrics::{Counter, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A shared handle on a running node's state, for tests and the lab.
pub type NodeHandle = Arc<Mutex<Node>>;

type Reply = (u64, Result<Response, RpcFailure>);

/// Connections waiting for the deferred answer to a recursive lookup, by reply token.
type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// How much longer than a plain RPC a forwarded (recursive) lookup may take: the hops after
/// the next one may each wait out a timeout of their own.
const ROUTE_TIMEOUT_FACTOR: u32 = 8;

/// The ring secret and the replay guard of a node whose ring has one.
struct Auth {
    key: Arc<RingKey>,
    guard: Mutex<ReplayGuard>,
}

impl Auth {
    /// Checks a request frame body: its message and stamp, or why it is refused.
    fn open<'a>(&self, body: &'a [u8]) -> Result<(&'a [u8], Stamp), AuthError> {
        let (message, stamp) = self.key.open_request(body)?;
        self.guard.lock().unwrap_or_else(|p| p.into_inner()).check(stamp, wire::unix_ms())?;
        Ok((message, stamp))
    }
}

/// A bound Chord node, ready to [`run`](Service::run).
pub struct ChordServer {
    listener: TcpListener,
    config: ChordConfig,
    node: NodeHandle,
    start: Instant,
    kill: Shutdown,
    stats: Stats,
    auth: Option<Arc<Auth>>,
}

#[derive(Clone)]
struct Stats {
    registry: Registry,
    requests: Counter,
    bad: Counter,
    rpc_failures: Counter,
    connections: Counter,
    refused_connections: Counter,
    unauthenticated: Counter,
    busy: Counter,
    open: Arc<AtomicU64>,
    /// The connection policy, once running (its eviction and deadline counters).
    acceptor: Arc<std::sync::OnceLock<Arc<Acceptor>>>,
}

impl Stats {
    fn new() -> Stats {
        let registry = Registry::new();
        Stats {
            requests: registry.counter("chord_requests_total", "RPC requests answered.", &[]),
            bad: registry.counter("chord_bad_requests_total", "Requests refused as malformed.", &[]),
            rpc_failures: registry.counter("chord_rpc_failures_total", "Outgoing RPCs that failed.", &[]),
            connections: registry.counter("chord_connections_total", "RPC connections accepted.", &[]),
            refused_connections: registry.counter(
                "chord_refused_connections_total",
                "Connections refused at the connection cap.",
                &[],
            ),
            unauthenticated: registry.counter(
                "chord_unauthenticated_total",
                "Requests refused for a missing, wrong, stale or replayed ring HMAC.",
                &[],
            ),
            busy: registry.counter(
                "chord_frames_over_budget_total",
                "Frames refused because the memory for frames being read was used up.",
                &[],
            ),
            open: Arc::new(AtomicU64::new(0)),
            acceptor: Arc::new(std::sync::OnceLock::new()),
            registry,
        }
    }

    /// One of the connection policy's counters (0 before the node runs).
    fn conn_stat(&self, which: impl Fn(&appnet_netkit::accept::ConnStats) -> &AtomicU64) -> u64 {
        self.acceptor.get().map(|a| which(a.stats()).load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The driver's figures, appended to the core's in a `Stats` answer.
    fn list(&self, pool: &Pool) -> Vec<(String, u64)> {
        let p = pool.stats();
        [
            ("bad_requests", self.bad.get()),
            ("connections_in_total", self.connections.get()),
            ("connections_in_open", self.open.load(Ordering::Relaxed)),
            ("connections_in_refused", self.refused_connections.get()),
            ("connections_in_evicted", self.conn_stat(|c| &c.evicted)),
            ("connections_in_timed_out", self.conn_stat(|c| &c.timed_out)),
            ("requests_unauthenticated", self.unauthenticated.get()),
            ("frames_over_budget", self.busy.get()),
            ("connections_out_opened", p.opened),
            ("connections_out_reused", p.reused),
            ("connections_out_stale", p.stale),
            ("connections_out_pooled", p.idle),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

fn invalid(e: ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

impl ChordServer {
    /// Binds the listener and creates the node (its id: configured, or SHA-1 of the address).
    pub async fn bind(config: ChordConfig) -> io::Result<ChordServer> {
        let params = config.params().map_err(invalid)?;
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        let addr = listener.local_addr()?;
        let id = config.node_id(addr).map_err(invalid)?;
        let node = Node::new(params, NodeRef { id, addr }, 0);
        let auth = config.ring_key().map_err(invalid)?.map(|key| {
            let window = config.auth_window_secs.max(1).saturating_mul(1000);
            Arc::new(Auth {
                key: Arc::new(key),
                guard: Mutex::new(ReplayGuard::new(window, config.max_replay_entries)),
            })
        });
        Ok(ChordServer {
            listener,
            config,
            node: Arc::new(Mutex::new(node)),
            start: Instant::now(),
            kill: Shutdown::new(),
            stats: Stats::new(),
            auth,
        })
    }

    /// This node's id and address.
    pub fn node_ref(&self) -> NodeRef {
        lock(&self.node).me()
    }

    /// The node's state, shared with the running server.
    pub fn handle(&self) -> NodeHandle {
        self.node.clone()
    }

    /// A handle that stops the node abruptly (no hand-over), as if its process were killed.
    pub fn killer(&self) -> Shutdown {
        self.kill.clone()
    }

    /// The node's counters in Prometheus text format.
    pub fn metrics(&self) -> Registry {
        self.stats.registry.clone()
    }
}

fn lock(node: &NodeHandle) -> std::sync::MutexGuard<'_, Node> {
    node.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Carries out a node's outputs: one task per RPC, replies into the channel.
#[derive(Clone)]
struct Dispatcher {
    tx: mpsc::UnboundedSender<Reply>,
    bits: u8,
    timeout: Duration,
    kill: Shutdown,
    stats: Stats,
    waiters: Waiters,
    next_reply: Arc<AtomicU64>,
    pool: Pool,
    auth: Option<Arc<Auth>>,
    budget: FrameBudget,
    /// Longest an answer may take to write (a peer that stops reading is cut off).
    write_timeout: Duration,
}

impl Dispatcher {
    fn dispatch(&self, node: &mut Node) {
        while let Some(Output::Send { token, to, req }) = node.poll_output() {
            let this = self.clone();
            tokio::spawn(async move {
                let timeout = match req {
                    Request::Route { .. } => this.timeout * ROUTE_TIMEOUT_FACTOR,
                    _ => this.timeout,
                };
                let result = tokio::select! {
                    _ = this.kill.wait() => return,
                    r = this.pool.rpc(to, this.bits, &req, timeout) => r,
                };
                let reply = match result {
                    Ok((_, resp @ Response::Error { .. })) => {
                        tracing::debug!(%to, ?resp, "peer refused a request");
                        Ok(resp)
                    }
                    Ok((_, resp)) => Ok(resp),
                    Err(ClientError::Wire(..))
                    | Err(ClientError::Unexpected(_))
                    | Err(ClientError::Auth(..)) => Err(RpcFailure::Refused),
                    Err(e) => {
                        tracing::debug!("rpc failed: {e}");
                        this.stats.rpc_failures.inc();
                        Err(RpcFailure::Unreachable)
                    }
                };
                let _ = this.tx.send((token, reply));
            });
        }
    }
}

fn log_events(node: &mut Node, waiters: &Waiters) -> bool {
    let mut left = false;
    while let Some(ev) = node.poll_event() {
        match ev {
            Event::Reply { reply_to, response } => {
                let waiter = waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(&reply_to);
                if let Some(tx) = waiter {
                    let _ = tx.send(response);
                }
            }
            Event::Joined => tracing::info!(node = ?node.me().addr, "joined the ring"),
            Event::JoinFailed(why) => tracing::warn!("join failed, will retry: {why}"),
            Event::Left => left = true,
            other => tracing::debug!(?other, "node event"),
        }
    }
    left
}

impl Service for ChordServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let ChordServer { listener, config, node, start, kill, stats, auth } = self;
        let now = move || start.elapsed().as_millis() as u64;
        let (tx, mut rx) = mpsc::unbounded_channel::<Reply>();
        let bits = lock(&node).params().bits;
        let dispatcher = Dispatcher {
            tx,
            bits,
            timeout: config.rpc_timeout(),
            kill: kill.clone(),
            stats: stats.clone(),
            waiters: Arc::new(Mutex::new(HashMap::new())),
            next_reply: Arc::new(AtomicU64::new(1)),
            pool: Pool::for_node(
                config.pool_limits(),
                auth.as_ref().map(|a| a.key.clone()),
                Some(lock(&node).me().addr.ip()),
            ),
            auth,
            budget: FrameBudget::new(config.max_frame_buffer_bytes.max(wire::MAX_FRAME / 4)),
            write_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
        };
        if let Some(bootstrap) = config.join {
            let mut n = lock(&node);
            n.join(now(), bootstrap);
            dispatcher.dispatch(&mut n);
        }
        let conns = Shutdown::new();
        let accept = {
            let (node, dispatcher, kill, conns, stats) =
                (node.clone(), dispatcher.clone(), kill.clone(), conns.clone(), stats.clone());
            let max = config.max_connections.max(1);
            let per_ip = match config.max_connections_per_ip {
                0 => default_per_ip(max),
                n => n,
            };
            let limits = ConnLimits {
                max_connections: max,
                max_per_ip: per_ip,
                request_timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
                idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
            };
            let acceptor = Arc::new(Acceptor::with_limits(listener, limits));
            let _ = stats.acceptor.set(acceptor.clone());
            tokio::spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        _ = kill.wait() => break,
                        a = acceptor.next(&conns) => a,
                    };
                    let (stream, peer, slot) = match accepted {
                        None => break,
                        Some(Accepted::Conn(stream, peer, slot)) => (stream, peer, slot),
                        Some(Accepted::OverCap(stream, peer)) => {
                            stats.refused_connections.inc();
                            tracing::info!(%peer, "connection cap reached; refusing");
                            let frame = wire::encode_response(
                                dispatcher.bits,
                                &Response::Error {
                                    code: ErrorCode::Unavailable,
                                    message: "too many connections; try again later".into(),
                                },
                            );
                            tokio::spawn(async move {
                                let mut stream = stream;
                                let _ = tokio::time::timeout(
                                    Duration::from_secs(1),
                                    write_frame(&mut stream, &frame),
                                )
                                .await;
                            });
                            continue;
                        }
                    };
                    let (node, dispatcher, kill, stats) =
                        (node.clone(), dispatcher.clone(), kill.clone(), stats.clone());
                    stats.connections.inc();
                    let stop = conns.clone();
                    conns.spawn(async move {
                        stats.open.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            _ = kill.wait() => {}
                            r = serve_connection(stream, peer, &slot, &node, &dispatcher, &stats, &stop, now) => {
                                if let Err(e) = r {
                                    tracing::debug!(%peer, "connection ended: {e}");
                                }
                            }
                        }
                        stats.open.fetch_sub(1, Ordering::Relaxed);
                        drop(slot);
                    });
                }
            })
        };

        let mut leaving_deadline: Option<Instant> = None;
        loop {
            let wake = {
                let n = lock(&node);
                n.poll_timeout().map(|t| start + Duration::from_millis(t))
            };
            let wake =
                wake.or(leaving_deadline).unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = kill.wait() => break,
                _ = shutdown.wait(), if leaving_deadline.is_none() => {
                    let mut n = lock(&node);
                    n.leave(now());
                    dispatcher.dispatch(&mut n);
                    if log_events(&mut n, &dispatcher.waiters) { break; }
                    // Room for every successor to be tried in turn before the items are given up.
                    let tries = config.successors as u32 + 1;
                    leaving_deadline = Some(Instant::now() + config.rpc_timeout() * tries);
                }
                _ = tokio::time::sleep_until(wake) => {
                    if leaving_deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::warn!("leave hand-over did not finish in time");
                        break;
                    }
                    let mut n = lock(&node);
                    n.handle_timeout(now());
                    dispatcher.dispatch(&mut n);
                    if log_events(&mut n, &dispatcher.waiters) { break; }
                }
                Some((token, reply)) = rx.recv() => {
                    let mut n = lock(&node);
                    n.handle_reply(now(), token, reply);
                    dispatcher.dispatch(&mut n);
                    if log_events(&mut n, &dispatcher.waiters) { break; }
                }
            }
        }
        dispatcher.pool.clear();
        conns.trigger();
        let _ = accept.await;
        conns.drain(Duration::from_secs(2)).await;
        Ok(())
    }
}

/// Serves the frames of one connection until the peer closes it, the node stops, or the
/// connection's slot says it must go (no whole frame within the deadline, or evicted for a
/// newcomer while idle).
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: &ConnSlot,
    node: &NodeHandle,
    dispatcher: &Dispatcher,
    stats: &Stats,
    stop: &Shutdown,
    now: impl Fn() -> u64,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut read, mut write) = stream.into_split();
    let bits = dispatcher.bits;
    let refuse =
        |code: ErrorCode, message: String| wire::encode_response(bits, &Response::Error { code, message });
    loop {
        // Between exchanges the connection may sit idle in a peer's pool: it ends when its
        // slot's deadline passes (a whole frame each time), or at once when the node stops.
        let frame = tokio::select! {
            _ = stop.wait() => return Ok(()),
            reason = slot.closed() => {
                tracing::debug!(%peer, ?reason, "closing connection");
                return Ok(());
            }
            r = read_frame_within(&mut read, &dispatcher.budget) => r?,
        };
        let body = match frame {
            None => return Ok(()),
            Some(Ok(body)) => body,
            Some(Err(e)) => {
                // An oversized frame, or no memory left for it: answer and close, we cannot
                // resynchronise.
                if e == wire::WireError::Busy {
                    stats.busy.inc();
                }
                stats.bad.inc();
                write_within(&mut write, dispatcher.write_timeout, &refuse(e.code(), e.to_string())).await?;
                return Ok(());
            }
        };
        slot.busy();
        let (message, request_id, origin) = match &dispatcher.auth {
            None => (body.as_slice(), None, Origin::Peer(peer.ip())),
            Some(auth) => match auth.open(&body) {
                Ok((message, stamp)) => (message, Some(stamp.request_id), Origin::Trusted),
                Err(e) => {
                    stats.unauthenticated.inc();
                    tracing::debug!(%peer, "refused a request: {e}");
                    write_within(&mut write, dispatcher.write_timeout, &refuse(e.code(), e.to_string()))
                        .await?;
                    return Ok(());
                }
            },
        };
        let resp = match wire::decode_request(message) {
            Err(e) => {
                stats.bad.inc();
                tracing::debug!("bad request: {e}");
                Response::Error { code: e.code(), message: e.to_string() }
            }
            Ok((bits, _)) if bits != 0 && bits != dispatcher.bits => {
                stats.bad.inc();
                Response::Error {
                    code: ErrorCode::WrongRing,
                    message: format!(
                        "this ring uses {}-bit ids, the request {bits}-bit ids",
                        dispatcher.bits
                    ),
                }
            }
            Ok((_, req)) => {
                stats.requests.inc();
                match answer(req, origin, node, dispatcher, &now).await {
                    Response::Stats { mut counters } => {
                        counters.extend(stats.list(&dispatcher.pool));
                        Response::Stats { counters }
                    }
                    other => other,
                }
            }
        };
        let mut frame = wire::encode_response(dispatcher.bits, &resp);
        if let (Some(auth), Some(id)) = (&dispatcher.auth, request_id) {
            frame = auth.key.seal_response(frame, wire::unix_ms(), id);
        }
        write_within(&mut write, dispatcher.write_timeout, &frame).await?;
        slot.idle();
    }
}

/// Writes a whole frame within `limit`: a peer that does not read its answers cannot hold
/// the connection (whose slot is busy meanwhile) for ever.
async fn write_within<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    limit: Duration,
    frame: &[u8],
) -> io::Result<()> {
    match tokio::time::timeout(limit, write_frame(w, frame)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the peer did not read its answer in time")),
    }
}

/// Answers one request: at once, or (a recursive lookup this node forwarded) when the answer
/// comes back, within the forwarding timeout.
async fn answer(
    req: Request,
    origin: Origin,
    node: &NodeHandle,
    dispatcher: &Dispatcher,
    now: &impl Fn() -> u64,
) -> Response {
    let token = dispatcher.next_reply.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    let waiters = || dispatcher.waiters.lock().unwrap_or_else(|p| p.into_inner());
    waiters().insert(token, tx);
    let now_answer = {
        let mut n = lock(node);
        let resp = n.handle_request_deferred(now(), origin, req, token);
        dispatcher.dispatch(&mut n);
        resp
    };
    if let Some(resp) = now_answer {
        waiters().remove(&token);
        return resp;
    }
    match tokio::time::timeout(dispatcher.timeout * ROUTE_TIMEOUT_FACTOR, rx).await {
        Ok(Ok(resp)) => resp,
        _ => {
            waiters().remove(&token);
            Response::Error {
                code: ErrorCode::Unavailable,
                message: "the recursive lookup got no answer in time".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_the_peer_does_not_read_is_given_up_after_the_limit() {
        let (_reader, mut writer) = tokio::io::duplex(64);
        let started = std::time::Instant::now();
        let r = write_within(&mut writer, Duration::from_millis(100), &[0u8; 4096]).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        let (mut reader, mut writer) = tokio::io::duplex(8192);
        write_within(&mut writer, Duration::from_millis(100), &[7u8; 4096]).await.unwrap();
        let mut back = [0u8; 4096];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut back).await.unwrap();
        assert_eq!(back, [7u8; 4096]);
    }
}
