//! The web server's tokio driver: accepts TCP connections (capped), does TLS with ALPN or
//! sniffs the h2c preface, and hands each connection to HTTP/1 (the fast path,
//! [`http1_fast`], then hyper behind the [`http1_conn`](crate::http1_conn)) or HTTP/2 ([`h2srv`](crate::h2srv)). All request logic is in
//! [`Router`].

use crate::body::RequestBody;
use crate::config::WebConfig;
use crate::conn_activity::{Activity, InService};
use crate::http1_conn::{Http1Conn, Verdict};
use crate::site::{CloseAfter, ConnInfo, Router};
use crate::stats::Stats;
use crate::{h2srv, http1_fast, tls};
use appnet_netkit::accept::{Accepted, Acceptor, CloseReason, ConnLimits, SharedPolicy};
use appnet_netkit::io::Rewind;
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::{BoxError, Service, Shutdown};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, header};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long open connections get to finish after shutdown is triggered.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The HTTP/2 connection preface a client sends first (h2c with prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A bound web server, ready to [`run`](Service::run).
pub struct WebServer {
    listener: TcpListener,
    /// Worker threads (0: the caller's runtime), see [`WebConfig::workers`].
    workers: usize,
    handler: Arc<Router>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_note: Option<String>,
    h3: Option<crate::h3::server::Http3Server>,
}

impl WebServer {
    /// Binds the listener, checks the site directories and sets up TLS.
    pub async fn bind(config: WebConfig) -> io::Result<WebServer> {
        let workers = config.workers;
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        if let Some(cc) = &config.tcp_congestion {
            appnet_netkit::listen::set_tcp_congestion(&listener, cc)?;
        }
        let addr = listener.local_addr()?;
        let (tls_cfg, tls_note) = if config.tls || config.cert.is_some() {
            let (cfg, note) = tls_config(&config, addr).map_err(|e| io::Error::other(e.to_string()))?;
            (Some(cfg), note)
        } else {
            (None, None)
        };
        let http3 = config.http3;
        let mut router = Router::new(config, Stats::new())?;
        let h3_tls = match (&tls_cfg, http3) {
            (Some(cfg), true) => Some(cfg.clone()),
            (None, true) => return Err(io::Error::other("HTTP/3 needs TLS: add --tls (or --cert/--key)")),
            _ => None,
        };
        if h3_tls.is_some() {
            router.advertise_h3(addr.port());
        }
        let handler = Arc::new(router);
        // HTTP/3 on the same IP and port over UDP, with the same certificate.
        let h3 = match h3_tls {
            Some(cfg) => Some(
                crate::h3::server::Http3Server::bind(addr, &cfg, handler.clone())
                    .map_err(|e| io::Error::other(format!("HTTP/3 on udp {addr}: {e}")))?,
            ),
            None => None,
        };
        let tls = tls_cfg.map(tokio_rustls::TlsAcceptor::from);
        Ok(WebServer { listener, workers, handler, tls, tls_note, h3 })
    }

    /// For a lab-CA certificate: how clients trust it (a `curl --cacert` line).
    pub fn tls_note(&self) -> Option<&str> {
        self.tls_note.as_deref()
    }

    /// The UDP address HTTP/3 is served on (with `http3`).
    pub fn http3_addr(&self) -> Option<SocketAddr> {
        self.h3.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.handler.stats().clone()
    }
}

fn tls_config(
    config: &WebConfig,
    addr: SocketAddr,
) -> Result<(Arc<rustls::ServerConfig>, Option<String>), tls::TlsError> {
    let names: Vec<String> = config.vhosts.keys().cloned().collect();
    tls::listener_config(
        config.cert.as_deref(),
        config.key.as_deref(),
        config.ca_dir.as_deref(),
        addr,
        &names,
    )
}

impl Service for WebServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.handler.config().listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        if let Some(h3) = self.h3 {
            shutdown.spawn(h3.run(shutdown.clone()));
        }
        let policy = SharedPolicy::new(conn_limits(self.handler.config()));
        if self.workers == 0 {
            let acceptor = Acceptor::with_policy(self.listener, &policy);
            accept_loop(acceptor, self.handler, self.tls, &shutdown, None).await;
        } else {
            let listener = self.listener.into_std()?;
            let result = run_workers(self.workers, listener, policy, self.handler, self.tls, &shutdown).await;
            if let Err(e) = result {
                shutdown.trigger();
                let _ = shutdown.drain(DRAIN_DEADLINE).await;
                return Err(e);
            }
        }
        if !shutdown.drain(DRAIN_DEADLINE).await {
            tracing::warn!("some connections were still open after {DRAIN_DEADLINE:?}");
        }
        Ok(())
    }
}

/// Runs `workers` OS threads, each a `current_thread` runtime with its own accept loop on a
/// clone of `listener`, sharing the router and one connection policy; returns once every
/// worker has stopped accepting and drained its connections.
///
/// How the workers share the port was chosen by measurement (docs/web-server.md, "Workers"):
/// SO_REUSEPORT's hash and a plain race on one socket (the thread awake first takes a whole
/// burst of connections) both left one thread with up to twice the other's connections, so
/// the workers race on one socket but a worker holding more than the least loaded one (plus
/// [`BALANCE_SLACK`]) leaves newcomers to the others.
async fn run_workers(
    workers: usize,
    listener: std::net::TcpListener,
    policy: SharedPolicy,
    handler: Arc<Router>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: &Shutdown,
) -> Result<(), BoxError> {
    let mut threads = tokio::task::JoinSet::new();
    let load = Arc::new(WorkerLoad((0..workers).map(|_| AtomicUsize::new(0)).collect()));
    let mut failed: Option<BoxError> = None;
    for i in 0..workers {
        let balance = Some((load.clone(), i));
        let started = listener.try_clone().and_then(|l| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(yield_before_parking)
                .build()?;
            Ok((l, rt))
        });
        let (listener, runtime) = match started {
            Ok(pair) => pair,
            Err(e) => {
                // The workers already running stop too (joined below).
                shutdown.trigger();
                failed = Some(e.into());
                break;
            }
        };
        let (policy, handler, tls) = (policy.clone(), handler.clone(), tls.clone());
        // Each worker drains its own connections on its own runtime, under a child handle
        // that the caller's shutdown triggers.
        let sd = shutdown.child();
        let spawned = std::thread::Builder::new().name(format!("web-worker-{i}")).spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                accept_loop(Acceptor::with_policy(listener, &policy), handler, tls, &sd, balance).await;
                if !sd.drain(DRAIN_DEADLINE).await {
                    tracing::warn!(worker = i, "some connections were still open after {DRAIN_DEADLINE:?}");
                }
                io::Result::Ok(())
            })
        });
        match spawned {
            Ok(thread) => drop(threads.spawn_blocking(move || thread.join())),
            Err(e) => {
                shutdown.trigger();
                failed = Some(e.into());
                break;
            }
        }
    }
    drop(listener);
    while let Some(joined) = threads.join_next().await {
        let outcome = match joined {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) => BoxError::from(e),
            Ok(Err(_)) | Err(_) => BoxError::from("a web worker thread panicked"),
        };
        tracing::error!("web worker stopped: {outcome}");
        // One worker down: stop the others rather than serve on a fraction of the threads.
        shutdown.trigger();
        failed.get_or_insert(outcome);
    }
    failed.map_or(Ok(()), Err)
}

/// Runs before a worker sleeps in `epoll_wait` for lack of work: lets a runnable thread on
/// this CPU (on a small machine, often the very clients being served) go first, so that the
/// wait usually finds new requests ready instead of costing a sleep and a wake-up per few
/// requests (the same as the DNS server's UDP workers do before `recvmmsg`). On an idle CPU it
/// returns at once.
fn yield_before_parking() {
    // SAFETY: sched_yield takes no arguments and only reschedules the calling thread.
    unsafe {
        libc::sched_yield();
    }
}

/// Open connections per worker, so that workers sharing one listening socket take turns.
struct WorkerLoad(Vec<AtomicUsize>);

/// How many connections more than the least loaded worker a worker may hold and still accept.
const BALANCE_SLACK: usize = 1;

/// How often a worker that leaves newcomers to the others looks again.
const BALANCE_RECHECK: Duration = Duration::from_millis(1);

impl WorkerLoad {
    /// Whether worker `me` holds more than its share: the least loaded other worker has room.
    fn over_share(&self, me: usize) -> bool {
        let mine = self.0.get(me).map_or(0, |n| n.load(Ordering::Relaxed));
        let least = (self.0.iter().enumerate())
            .filter(|&(i, _)| i != me)
            .map(|(_, n)| n.load(Ordering::Relaxed))
            .min()
            .unwrap_or(usize::MAX);
        mine > least.saturating_add(BALANCE_SLACK)
    }
}

/// One connection counted against its worker while it lives.
struct LoadGuard(Option<(Arc<WorkerLoad>, usize)>);

impl LoadGuard {
    fn new(balance: &Option<(Arc<WorkerLoad>, usize)>) -> LoadGuard {
        if let Some((load, me)) = balance
            && let Some(n) = load.0.get(*me)
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        LoadGuard(balance.clone())
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if let Some((load, me)) = &self.0
            && let Some(n) = load.0.get(*me)
        {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Accepts connections until `shutdown` and serves each on a task `shutdown` tracks (on the
/// current runtime). With `balance` (the workers' loads and this worker's index), a worker
/// holding more than its share stops accepting until it no longer does.
async fn accept_loop(
    acceptor: Acceptor,
    handler: Arc<Router>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: &Shutdown,
    balance: Option<(Arc<WorkerLoad>, usize)>,
) {
    let stats = handler.stats().clone();
    loop {
        if let Some((load, me)) = &balance {
            // Bounded by shutdown; the least loaded worker never waits here.
            while load.over_share(*me) && !shutdown.is_triggered() {
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = tokio::time::sleep(BALANCE_RECHECK) => {}
                }
            }
        }
        let Some(accepted) = acceptor.next(shutdown).await else { break };
        stats.connections.inc();
        let (stream, peer, slot) = match accepted {
            Accepted::Conn(stream, peer, slot) => (stream, peer, slot),
            Accepted::OverCap(stream, peer) => {
                stats.refused.inc();
                tracing::info!(%peer, "connection cap reached; refusing");
                let plain = tls.is_none();
                shutdown.spawn(refuse_busy(stream, plain));
                continue;
            }
        };
        let (handler, tls, sd, stats) = (handler.clone(), tls.clone(), shutdown.clone(), stats.clone());
        let load = LoadGuard::new(&balance);
        shutdown.spawn(async move {
            let _load = load;
            stats.open.inc();
            let _ = stream.set_nodelay(true);
            let slot = Arc::new(slot);
            let activity = Activity::new(Some(slot.clone()));
            // The slot closes the connection when it is evicted for a newcomer or misses its
            // deadline; it only can while no request is being served.
            tokio::select! {
                _ = connection(stream, peer, handler, tls, sd, activity.clone()) => {}
                why = slot.closed() => match why {
                    CloseReason::Evicted => {
                        stats.evicted.inc();
                        tracing::debug!(%peer, "closed to make room for a newcomer");
                    }
                    CloseReason::TimedOut => {
                        stats.timed_out.inc();
                        tracing::debug!(%peer, "no complete request in time; closed");
                    }
                },
            }
            stats.open.dec();
        });
    }
}

/// The connection policy from the config: the global and per-address caps, the header
/// timeout for a fresh connection's whole first request, the idle timeout between requests.
pub fn conn_limits(cfg: &WebConfig) -> ConnLimits {
    let mut limits = ConnLimits::new(cfg.max_connections);
    if let Some(n) = cfg.max_per_ip {
        limits.max_per_ip = n.max(1);
    }
    // The drivers cut a fresh connection at the header timeout themselves (HTTP/1 with a 408
    // for a started head); the slot's deadline is the backstop, a moment later.
    limits.request_timeout = cfg.header_timeout() + REQUEST_GRACE;
    limits.idle_timeout = cfg.idle_timeout();
    limits
}

/// How much later than the header timeout the connection slot closes a connection that has
/// not delivered its first request, if the protocol driver has not already.
const REQUEST_GRACE: Duration = Duration::from_secs(1);

/// A response body that keeps its request [`InService`] until hyper has sent and dropped it.
struct Tracked {
    body: crate::body::Body,
    _busy: InService,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// How long a refused connection's request is read and discarded after the 503, so closing
/// with unread bytes does not reset the connection before the client reads the answer.
const REFUSE_LINGER: Duration = Duration::from_millis(250);

async fn refuse_busy(mut stream: TcpStream, plain: bool) {
    if plain {
        let msg = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";
        let answered = async {
            stream.write_all(msg).await?;
            stream.shutdown().await?;
            let mut sink = [0u8; 4096];
            for _ in 0..4 {
                if stream.read(&mut sink).await? == 0 {
                    break;
                }
            }
            io::Result::Ok(())
        };
        let _ = tokio::time::timeout(REFUSE_LINGER, answered).await;
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Router>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: Shutdown,
    activity: Activity,
) {
    // A fresh connection has the header timeout for its whole first request head, whatever
    // comes before it (TLS handshake, protocol sniffing).
    let first_deadline = tokio::time::Instant::now() + handler.config().header_timeout();
    if let Some(acceptor) = tls {
        let handshake = tokio::select! {
            _ = shutdown.wait() => return,
            h = tokio::time::timeout_at(first_deadline, acceptor.accept(stream)) => h,
        };
        let Ok(Ok(tls_stream)) = handshake else {
            tracing::debug!(%peer, "TLS handshake failed or timed out");
            return;
        };
        let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let conn = ConnInfo { peer, secure: true };
        if h2 {
            let _ = appnet_netkit::listen::set_notsent_lowat(
                tls_stream.get_ref().0,
                crate::h2serve::NOTSENT_LOWAT,
            );
            serve_h2(tls_stream, handler, conn, shutdown, activity).await;
        } else {
            serve_http1(tls_stream, BytesMut::new(), handler, conn, shutdown, activity, first_deadline).await;
        }
        return;
    }
    // Cleartext: HTTP/2 with prior knowledge starts with the preface; anything else is HTTP/1.
    let mut first = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout_at(first_deadline, stream.read_buf(&mut first)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let n = first.len().min(H2_PREFACE.len());
        if first[..n] != H2_PREFACE[..n] || first.len() >= H2_PREFACE.len() {
            break;
        }
    }
    let is_h2 = first.starts_with(H2_PREFACE);
    let conn = ConnInfo { peer, secure: false };
    if is_h2 {
        let _ = appnet_netkit::listen::set_notsent_lowat(&stream, crate::h2serve::NOTSENT_LOWAT);
        serve_h2(Rewind::new(first, stream), handler, conn, shutdown, activity).await;
    } else {
        serve_http1(stream, first, handler, conn, shutdown, activity, first_deadline).await;
    }
}

/// HTTP/1: the fast path ([`http1_fast`]) for as long as it can serve the connection, then
/// hyper behind the guard with the bytes read so far (or hyper from the start when the fast
/// path is off).
async fn serve_http1<IO>(
    io: IO,
    first: BytesMut,
    handler: Arc<Router>,
    conn: ConnInfo,
    shutdown: Shutdown,
    activity: Activity,
    first_deadline: tokio::time::Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !handler.config().http1_fast_path {
        return serve_h1(Rewind::new(first, io), handler, conn, shutdown, activity, first_deadline).await;
    }
    let handed = http1_fast::serve(
        io,
        first,
        handler.clone(),
        conn,
        shutdown.clone(),
        activity.clone(),
        first_deadline,
    )
    .await;
    if let Some(h) = handed {
        serve_h1(Rewind::new(h.buf, h.io), handler, conn, shutdown, activity, h.head_due).await;
    }
}

/// HTTP/2 on the engine the config names.
async fn serve_h2<IO>(io: IO, handler: Arc<Router>, conn: ConnInfo, shutdown: Shutdown, activity: Activity)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match handler.config().h2_engine {
        crate::config::H2Engine::Own => crate::h2serve::serve(io, handler, conn, shutdown, activity).await,
        crate::config::H2Engine::H2Crate => h2srv::serve(io, handler, conn, shutdown, activity).await,
    }
}

async fn serve_h1<IO>(
    io: IO,
    handler: Arc<Router>,
    conn: ConnInfo,
    shutdown: Shutdown,
    activity: Activity,
    first_deadline: tokio::time::Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = handler.config();
    let limits = http1_fast::limits(cfg);
    let gated = Http1Conn::new(io, limits, activity.clone()).first_head_by(first_deadline);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .half_close(false)
        // No pipeline_flush: it switches hyper to its "flatten" write strategy, which copies
        // every body (1 MB files included) into its own buffer before writing. With the default
        // queue strategy a body goes out by writev straight from the file cache's bytes.
        // Pipelined responses are still written in order, only not coalesced.
        .header_read_timeout(None)
        // The guard enforces the real limits with the right status codes; hyper's are looser.
        .max_headers(cfg.max_headers + 8)
        .max_buf_size((cfg.max_header_bytes * 2).max(64 * 1024));
    let svc_handler = handler.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let handler = svc_handler.clone();
        let activity = activity.clone();
        // hyper calls the service once a request head is complete: busy until its body is out.
        let busy = activity.enter();
        // Taken here, in the order hyper calls the service: one verdict per head.
        let verdict = activity.next_verdict();
        async move {
            let mut resp = match verdict {
                Verdict::Reject { status, why } => handler.rejected(status, why, &conn),
                Verdict::Pass => handler.handle(req.map(RequestBody::H1), &conn).await,
            };
            if resp.extensions().get::<CloseAfter>().is_some() {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                activity.request_linger();
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
        }
    });
    let conn_fut = builder.serve_connection(TokioIo::new(gated), service);
    tokio::pin!(conn_fut);
    tokio::select! {
        res = conn_fut.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(peer = %conn.peer, "HTTP/1 connection ended: {e}");
            }
        }
        _ = shutdown.wait() => {
            conn_fut.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(h2srv::DRAIN, conn_fut).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_ahead_of_the_least_loaded_leaves_newcomers_to_it() {
        let load = Arc::new(WorkerLoad((0..3).map(|_| AtomicUsize::new(0)).collect()));
        let balance = |i| Some((load.clone(), i));
        let first = LoadGuard::new(&balance(0));
        assert!(!load.over_share(0), "within the slack of the others");
        let second = LoadGuard::new(&balance(0));
        assert!(load.over_share(0));
        assert!(!load.over_share(1) && !load.over_share(2));
        let _one = LoadGuard::new(&balance(1));
        assert!(load.over_share(0), "worker 2 still holds none");
        let _two = LoadGuard::new(&balance(2));
        assert!(!load.over_share(0));
        drop((first, second));
        assert_eq!(load.0[0].load(Ordering::Relaxed), 0, "a closed connection is uncounted");
        assert!(!load.over_share(1) && !load.over_share(0));
        // A single worker never waits for itself.
        let alone = WorkerLoad(vec![AtomicUsize::new(100)]);
        assert!(!alone.over_share(0));
    }
}
