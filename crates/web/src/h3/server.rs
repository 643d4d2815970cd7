//! The HTTP/3 server driver: a quinn endpoint on the TLS listener's IP and port (UDP), feeding
//! every request to the same service as HTTP/1.1 and HTTP/2 ([`H3Service`]: the web server's
//! [`Router`], the caching proxy).
//!
//! Limits: connections in all and per client address through netkit's
//! [`ConnTable`] (a newcomer evicts the connection idle longest; only when all are busy is it
//! refused); Retry (address validation, RFC 9000 §8.1.2) for every unvalidated newcomer once
//! half the slots are taken, so a spoofed flood costs one packet each and no state; the
//! header timeout for the handshake and for a connection's first request, the idle timeout
//! between requests (and QUIC's idle timeout for silent peers); concurrent streams per
//! connection; the field-section size (h3 answers 431); the request-body cap (413).
//!
//! 0-RTT: early data is accepted, but a request that arrives before the handshake completes
//! is only run at once if its method is safe (GET, HEAD, OPTIONS); others wait for the
//! handshake, which a replaying attacker cannot complete (RFC 8470 §3, RFC 9114 §10.9).

use super::head::{self, HeadLimits, Verdict};
use super::{H3Error, quic};
use crate::body::{Body, RequestBody};
use crate::site::{ConnInfo, Router};
use crate::stats::Stats;
use appnet_netkit::Shutdown;
use appnet_netkit::conn_table::{ConnTable, Phase};
use bytes::{Buf, Bytes, BytesMut};
use h3::error::Code;
use http::{HeaderValue, Method, Response, header};
use http_body_util::BodyExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};

type ReqStream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// The limits the HTTP/3 driver enforces for a service.
#[derive(Debug, Clone, Copy)]
pub struct H3Limits {
    /// Connections in all.
    pub max_connections: usize,
    /// Connections from one client address.
    pub max_per_ip: usize,
    /// For the handshake and first request, and for each request head.
    pub header_timeout: Duration,
    /// Without requests before the connection is closed (also QUIC's idle timeout).
    pub idle_timeout: Duration,
    /// Concurrent request streams per connection.
    pub max_streams: u32,
    /// Header fields per request (more: 431).
    pub max_headers: usize,
    /// Request target length (longer: 414).
    pub max_target: usize,
    /// QPACK-decoded field-section size (larger: 431, by h3).
    pub max_field_section: u64,
    /// Request body size (larger: 413).
    pub max_body: u64,
    /// The QUIC congestion controller.
    pub congestion: quic::Congestion,
}

/// What serves the requests the HTTP/3 driver takes in.
pub trait H3Service: Send + Sync + 'static {
    /// The limits to enforce.
    fn limits(&self) -> H3Limits;
    /// Where connection counters go (the web server's), if anywhere.
    fn stats(&self) -> Option<&Stats>;
    /// Answers one request whose body has been read in full.
    fn serve(
        this: &Arc<Self>,
        req: http::Request<Bytes>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;
    /// The response for a request refused before it was served (414, 425, 431, 413).
    fn refuse(&self, status: u16, why: &'static str, conn: &ConnInfo) -> Response<Body>;
}

impl H3Service for Router {
    fn limits(&self) -> H3Limits {
        let cfg = self.config();
        H3Limits {
            max_connections: cfg.max_connections,
            max_per_ip: cfg.max_per_ip.unwrap_or((cfg.max_connections / 8).clamp(1, 64)),
            header_timeout: cfg.header_timeout(),
            idle_timeout: cfg.idle_timeout(),
            max_streams: cfg.h2_max_streams,
            max_headers: cfg.max_headers,
            max_target: cfg.max_request_line,
            max_field_section: cfg.max_header_bytes as u64,
            max_body: cfg.max_body,
            congestion: cfg.h3_congestion,
        }
    }

    fn stats(&self) -> Option<&Stats> {
        Some(Router::stats(self))
    }

    fn serve(
        this: &Arc<Self>,
        req: http::Request<Bytes>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send {
        let req = req.map(|b| if b.is_empty() { RequestBody::Empty } else { RequestBody::Buffered(b) });
        let this = this.clone();
        async move { this.handle(req, &conn).await }
    }

    fn refuse(&self, status: u16, why: &'static str, conn: &ConnInfo) -> Response<Body> {
        self.rejected(status, why, conn)
    }
}

/// A bound HTTP/3 endpoint, ready to [`run`](Http3Server::run).
pub struct Http3Server<S: H3Service = Router> {
    endpoint: quinn::Endpoint,
    service: Arc<S>,
}

/// Shared by the accept loop and the connections.
struct Shared<S> {
    service: Arc<S>,
    limits: H3Limits,
    table: Mutex<ConnTable<Arc<Notify>>>,
    retry_above: usize,
}

impl<S: H3Service> Shared<S> {
    fn count(&self, f: impl FnOnce(&Stats)) {
        if let Some(s) = self.service.stats() {
            f(s);
        }
    }
}

impl<S: H3Service> Http3Server<S> {
    /// Binds UDP `addr` (the TLS listener's address) with the TLS listener's certificate.
    pub fn bind(addr: SocketAddr, tls: &rustls::ServerConfig, service: Arc<S>) -> Result<Self, H3Error> {
        let config = quic::server_config(tls, &service.limits())?;
        let endpoint = quinn::Endpoint::server(config, addr)?;
        Ok(Http3Server { endpoint, service })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves until `shutdown`: then each connection sends GOAWAY and closes (H3_NO_ERROR), and
    /// the endpoint waits briefly for the peers to have been told.
    pub async fn run(self, shutdown: Shutdown) {
        let limits = self.service.limits();
        let shared = Arc::new(Shared {
            table: Mutex::new(ConnTable::new(limits.max_connections, limits.max_per_ip)),
            retry_above: (limits.max_connections / 2).max(1),
            service: self.service.clone(),
            limits,
        });
        loop {
            let incoming = tokio::select! {
                _ = shutdown.wait() => break,
                i = self.endpoint.accept() => match i { Some(i) => i, None => break },
            };
            admit(incoming, &shared, &shutdown);
        }
        self.endpoint.close(Code::H3_NO_ERROR.value().try_into().unwrap_or(0u32.into()), b"shutting down");
        let _ = tokio::time::timeout(crate::h2srv::DRAIN, self.endpoint.wait_idle()).await;
    }
}

/// Decides about one connection attempt: Retry, refuse, or accept (evicting if full).
fn admit<S: H3Service>(incoming: quinn::Incoming, shared: &Arc<Shared<S>>, shutdown: &Shutdown) {
    shared.count(|s| s.connections.inc());
    let peer = incoming.remote_address();
    let (busy, admitted) = {
        let mut table = shared.table.lock().unwrap_or_else(|p| p.into_inner());
        let busy = table.len() >= shared.retry_above;
        if busy && !incoming.remote_address_validated() && incoming.may_retry() {
            (true, None)
        } else {
            let kick = Arc::new(Notify::new());
            (busy, Some(table.admit(peer.ip(), Instant::now(), kick.clone()).map(|(id, ev)| (id, ev, kick))))
        }
    };
    let (id, evicted, kick) = match admitted {
        None => {
            tracing::debug!(%peer, busy, "asking an unvalidated address to retry");
            let _ = incoming.retry();
            return;
        }
        Some(Err(why)) => {
            shared.count(|s| s.refused.inc());
            tracing::info!(%peer, ?why, "HTTP/3 connection refused");
            incoming.refuse();
            return;
        }
        Some(Ok(x)) => x,
    };
    if let Some(victim) = evicted {
        shared.count(|s| s.evicted.inc());
        victim.notify_one();
    }
    let (shared, sd) = (shared.clone(), shutdown.clone());
    shutdown.spawn(async move {
        shared.count(|s| s.open.inc());
        match incoming.accept() {
            Ok(connecting) => connection(connecting, peer, id, &shared, kick, sd).await,
            Err(e) => tracing::debug!(%peer, "QUIC accept failed: {e}"),
        }
        shared.table.lock().unwrap_or_else(|p| p.into_inner()).release(id);
        shared.count(|s| s.open.dec());
    });
}

/// Marks the connection busy while requests are in flight (so it is never evicted then).
struct InFlight<S> {
    id: u64,
    count: AtomicUsize,
    shared: Arc<Shared<S>>,
}

impl<S: H3Service> InFlight<S> {
    fn enter(self: &Arc<Self>) -> InFlightGuard<S> {
        if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            self.shared.table.lock().unwrap_or_else(|p| p.into_inner()).set_phase(
                self.id,
                Phase::Busy,
                Instant::now(),
            );
        }
        InFlightGuard(self.clone())
    }

    fn idle(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }
}

struct InFlightGuard<S: H3Service>(Arc<InFlight<S>>);

impl<S: H3Service> Drop for InFlightGuard<S> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.shared.table.lock().unwrap_or_else(|p| p.into_inner()).set_phase(
                self.0.id,
                Phase::Idle,
                Instant::now(),
            );
        }
    }
}

async fn connection<S: H3Service>(
    connecting: quinn::Connecting,
    peer: SocketAddr,
    id: u64,
    shared: &Arc<Shared<S>>,
    kick: Arc<Notify>,
    shutdown: Shutdown,
) {
    let first_deadline = tokio::time::Instant::now() + shared.limits.header_timeout;
    // The server side of into_0rtt always succeeds: the connection is usable (0.5-RTT) and
    // `confirmed` resolves when the handshake completes.
    let (conn, confirmed) = match connecting.into_0rtt() {
        Ok(x) => x,
        Err(connecting) => match tokio::time::timeout_at(first_deadline, connecting).await {
            Ok(Ok(conn)) => {
                let (tx, rx) = watch::channel(true);
                drop(tx);
                return serve(conn, peer, id, shared, kick, shutdown, rx, first_deadline).await;
            }
            _ => {
                tracing::debug!(%peer, "QUIC handshake failed or timed out");
                return;
            }
        },
    };
    let (tx, rx) = watch::channel(false);
    let conn2 = conn.clone();
    tokio::spawn(async move {
        // Resolves when the handshake completes (or the connection dies).
        let _ = confirmed.await;
        if conn2.close_reason().is_none() {
            let _ = tx.send(true);
        }
    });
    serve(conn, peer, id, shared, kick, shutdown, rx, first_deadline).await
}

#[allow(clippy::too_many_arguments)]
async fn serve<S: H3Service>(
    conn: quinn::Connection,
    peer: SocketAddr,
    id: u64,
    shared: &Arc<Shared<S>>,
    kick: Arc<Notify>,
    shutdown: Shutdown,
    confirmed: watch::Receiver<bool>,
    first_deadline: tokio::time::Instant,
) {
    let limits = shared.limits;
    let mut builder = h3::server::builder();
    builder.max_field_section_size(limits.max_field_section).send_grease(true);
    let built = tokio::time::timeout_at(
        first_deadline,
        builder.build::<_, Bytes>(h3_quinn::Connection::new(conn.clone())),
    );
    let mut h3conn = match built.await {
        Ok(Ok(c)) => c,
        _ => {
            tracing::debug!(%peer, "HTTP/3 setup failed or timed out");
            conn.close(Code::H3_NO_ERROR.value().try_into().unwrap_or(0u32.into()), b"");
            return;
        }
    };
    let in_flight = Arc::new(InFlight { id, count: AtomicUsize::new(0), shared: shared.clone() });
    let mut deadline = first_deadline;
    loop {
        let accepted = tokio::select! {
            a = h3conn.accept() => a,
            _ = tokio::time::sleep_until(deadline) => {
                if !in_flight.idle() {
                    deadline = tokio::time::Instant::now() + limits.idle_timeout;
                    continue;
                }
                shared.count(|s| s.timed_out.inc());
                tracing::debug!(%peer, "no request in time; closing");
                break;
            }
            _ = kick.notified() => {
                tracing::debug!(%peer, "closed to make room for a newcomer");
                break;
            }
            _ = shutdown.wait() => {
                let _ = h3conn.shutdown(0).await;
                break;
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                deadline = tokio::time::Instant::now() + limits.idle_timeout;
                let guard = in_flight.enter();
                let service = shared.service.clone();
                let confirmed = confirmed.clone();
                // Follows the client's current address (it changes with migration).
                let info = ConnInfo { peer: conn.remote_address(), secure: true };
                tokio::spawn(async move {
                    match tokio::time::timeout(limits.header_timeout, resolver.resolve_request()).await {
                        Ok(Ok((req, stream))) => {
                            request(req, stream, &service, &limits, info, confirmed).await
                        }
                        Ok(Err(e)) => tracing::debug!(peer = %info.peer, "HTTP/3 request refused: {e}"),
                        Err(_) => tracing::debug!(peer = %info.peer, "HTTP/3 request head timed out"),
                    }
                    drop(guard);
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(%peer, "HTTP/3 connection ended: {e}");
                break;
            }
        }
    }
    conn.close(Code::H3_NO_ERROR.value().try_into().unwrap_or(0u32.into()), b"");
}

/// Whether a method is safe to run from early data (RFC 9110 §9.2.1).
fn safe(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD || *m == Method::OPTIONS
}

async fn request<S: H3Service>(
    req: http::Request<()>,
    mut stream: ReqStream,
    service: &Arc<S>,
    limits: &H3Limits,
    info: ConnInfo,
    mut confirmed: watch::Receiver<bool>,
) {
    let info = &info;
    let head_limits = HeadLimits { max_headers: limits.max_headers, max_target: limits.max_target };
    match head::check(req.method(), req.uri(), req.headers(), &head_limits) {
        Verdict::Pass => {}
        Verdict::Malformed(why) => {
            // RFC 9114 §4.1.2: a stream error; the connection and its other streams go on.
            tracing::debug!(peer = %info.peer, "malformed HTTP/3 request: {why}");
            stream.stop_sending(Code::H3_MESSAGE_ERROR);
            stream.stop_stream(Code::H3_MESSAGE_ERROR);
            return;
        }
        Verdict::Refuse(status, why) => {
            let resp = service.refuse(status, why, info);
            send(stream, resp, info).await;
            return;
        }
    }
    if !safe(req.method()) && !*confirmed.borrow() {
        // Possibly replayed early data: run it only once the handshake proves the client live.
        let wait = tokio::time::timeout(limits.header_timeout, confirmed.wait_for(|c| *c));
        if !matches!(wait.await, Ok(Ok(_))) {
            let resp = service.refuse(425, "early data not confirmed", info);
            send(stream, resp, info).await;
            return;
        }
    }
    let body = match read_body(&mut stream, limits.max_body, limits.idle_timeout).await {
        Ok(b) => b,
        Err(BodyTrouble::TooLarge) => {
            let resp = service.refuse(413, "request body too large", info);
            stream.stop_sending(Code::H3_REQUEST_REJECTED);
            send(stream, resp, info).await;
            return;
        }
        Err(BodyTrouble::Broken) => return,
    };
    let resp = S::serve(service, req.map(|()| body), *info).await;
    send(stream, resp, info).await;
}

enum BodyTrouble {
    TooLarge,
    Broken,
}

async fn read_body(
    stream: &mut ReqStream,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyTrouble> {
    let mut out = BytesMut::new();
    let read = async {
        while let Some(mut chunk) = stream.recv_data().await.map_err(|_| BodyTrouble::Broken)? {
            if (out.len() + chunk.remaining()) as u64 > limit {
                return Err(BodyTrouble::TooLarge);
            }
            while chunk.has_remaining() {
                let piece = chunk.chunk();
                let n = piece.len();
                out.extend_from_slice(piece);
                chunk.advance(n);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(())) => Ok(out.freeze()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(BodyTrouble::Broken),
    }
}

/// Header fields HTTP/3 responses must not carry (RFC 9114 §4.2).
const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HeaderName::from_static("keep-alive"),
];

async fn send(mut stream: ReqStream, resp: Response<crate::body::Body>, info: &ConnInfo) {
    let (mut parts, mut body) = resp.into_parts();
    for name in &HOP_BY_HOP {
        parts.headers.remove(name);
    }
    parts.extensions = http::Extensions::new();
    let sent = async {
        stream.send_response(Response::from_parts(parts, ())).await?;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                stream.stop_stream(Code::H3_INTERNAL_ERROR);
                return Ok(());
            };
            if let Ok(data) = frame.into_data() {
                stream.send_data(data).await?;
            }
        }
        stream.finish().await
    };
    if let Err(e) = sent.await {
        tracing::debug!(peer = %info.peer, "HTTP/3 response not delivered: {e}");
    }
}

/// The `Alt-Svc` value advertising HTTP/3 on `port` (RFC 7838), for HTTP/1.1 and HTTP/2
/// responses.
pub fn alt_svc(port: u16) -> HeaderValue {
    HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).unwrap_or(HeaderValue::from_static("clear"))
}
