//! The proxy's tokio driver: accepts connections (capped), optionally does TLS (ALPN h2 and
//! http/1.1, the web server's certificate set-up), serves HTTP/1.1 and HTTP/2 (h2c in
//! cleartext) with hyper-util's auto builder, and tunnels CONNECT (never cached) in forward
//! mode.

use super::config::ProxyConfig;
use super::handler::{Proxy, SetupError};
use super::idle::{Activity, Guarded, InService};
use crate::body::{self, Body};
use crate::http1_conn::{self, Http1Conn};
use crate::http1_guard::Verdict;
use appnet_netkit::accept::{Accepted, Acceptor, CloseReason, ConnLimits, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::{BoxError, Service, Shutdown};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long open connections get to finish after shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// A bound caching proxy (forward or reverse), ready to [`run`](Service::run).
pub struct ProxyServer {
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_note: Option<String>,
    h3: Option<crate::h3::server::Http3Server<Proxy>>,
}

impl ProxyServer {
    /// Binds the listener and opens the store (loading `cache_dir` if set).
    pub async fn bind(mut config: ProxyConfig) -> io::Result<ProxyServer> {
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        // The bound address (port 0 resolved): the forward proxy refuses to connect to it.
        config.listen = listener.local_addr()?;
        let (tls, tls_note) = if config.is_tls() {
            let (cfg, note) = crate::tls::listener_config(
                config.cert.as_deref(),
                config.key.as_deref(),
                config.ca_dir.as_deref(),
                listener.local_addr()?,
                &config.tls_names,
            )
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            (Some(cfg), note)
        } else {
            (None, None)
        };
        if config.http3 && tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "HTTP/3 needs TLS: add --tls (or --cert/--key)",
            ));
        }
        let proxy = Proxy::new(config).map_err(|e| match e {
            SetupError::Store(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        })?;
        let proxy = Arc::new(proxy);
        // HTTP/3 on the same IP and port over UDP, with the same certificate.
        let h3 = match (&tls, proxy.config().http3) {
            (Some(cfg), true) => {
                let addr = listener.local_addr()?;
                Some(
                    crate::h3::server::Http3Server::bind(addr, cfg, proxy.clone())
                        .map_err(|e| io::Error::other(format!("HTTP/3 on udp {addr}: {e}")))?,
                )
            }
            _ => None,
        };
        let tls = tls.map(tokio_rustls::TlsAcceptor::from);
        Ok(ProxyServer { listener, proxy, tls, tls_note, h3 })
    }

    /// For a lab-CA certificate on the listener: how clients trust it (a `curl --cacert` line).
    pub fn tls_note(&self) -> Option<&str> {
        self.tls_note.as_deref()
    }

    /// The UDP address HTTP/3 is served on (with `http3`).
    pub fn http3_addr(&self) -> Option<SocketAddr> {
        self.h3.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The shared proxy state (counters, store).
    pub fn proxy(&self) -> Arc<Proxy> {
        self.proxy.clone()
    }
}

impl Service for ProxyServer {
    fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.proxy.config().listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        if let Some(h3) = self.h3 {
            shutdown.spawn(h3.run(shutdown.clone()));
        }
        let acceptor = Acceptor::with_limits(self.listener, conn_limits(self.proxy.config()));
        while let Some(accepted) = acceptor.next(&shutdown).await {
            let (stream, peer, slot) = match accepted {
                Accepted::Conn(stream, peer, slot) => (stream, peer, Arc::new(slot)),
                Accepted::OverCap(mut stream, _) => {
                    let plain = self.tls.is_none();
                    shutdown.spawn(async move {
                        if !plain {
                            return;
                        }
                        let msg = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";
                        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(msg)).await;
                    });
                    continue;
                }
            };
            let (proxy, sd, tls) = (self.proxy.clone(), shutdown.clone(), self.tls.clone());
            shutdown.spawn(async move {
                let _ = stream.set_nodelay(true);
                match tls {
                    None => connection(stream, peer, proxy, sd, slot).await,
                    Some(acceptor) => {
                        let limit = ProxyConfig::secs(proxy.config().header_timeout_secs);
                        let handshake = tokio::select! {
                            _ = sd.wait() => return,
                            _ = slot.closed() => return,
                            h = tokio::time::timeout(limit, acceptor.accept(stream)) => h,
                        };
                        match handshake {
                            Ok(Ok(tls_stream)) => connection(tls_stream, peer, proxy, sd, slot).await,
                            _ => tracing::debug!(%peer, "TLS handshake failed or timed out"),
                        }
                    }
                }
            });
        }
        drop(acceptor);
        if !shutdown.drain(DRAIN_DEADLINE).await {
            tracing::warn!("some proxy connections were still open after {DRAIN_DEADLINE:?}");
        }
        Ok(())
    }
}

/// The shared connection policy with the proxy's settings: `max_connections` in all,
/// `max_connections_per_ip` per client address. Its deadlines back up [`Http1Conn`]'s (which
/// answer a late head with 408 and close idle HTTP/2 with GOAWAY first): a silent new
/// connection goes a second after the header timeout, an idle one a header timeout after the
/// idle timeout.
fn conn_limits(cfg: &ProxyConfig) -> ConnLimits {
    let header = ProxyConfig::secs(cfg.header_timeout_secs);
    ConnLimits {
        max_connections: cfg.max_connections.max(1),
        max_per_ip: cfg.max_connections_per_ip.unwrap_or(cfg.max_connections / 8).max(1),
        request_timeout: header + Duration::from_secs(1),
        idle_timeout: ProxyConfig::secs(cfg.idle_timeout_secs) + header,
    }
}

async fn connection<IO>(
    stream: IO,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    slot: Arc<ConnSlot>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = proxy.config();
    let activity = Activity::new(Some(slot.clone()));
    let limits = http1_conn::Limits {
        max_request_line: cfg.max_request_line,
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
        header_timeout: ProxyConfig::secs(cfg.header_timeout_secs),
        idle_timeout: ProxyConfig::secs(cfg.idle_timeout_secs),
    };
    // The web server's HTTP/1 wrapper (guard and timers), letting h2c through.
    let stream = Http1Conn::new(stream, limits, activity.clone()).sniff_h2();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `Http1Conn` keeps the header timeout from a head's first byte, and the idle timeout.
        .header_read_timeout(None)
        .keep_alive(true)
        // The guard enforces the head limits with the right status codes; hyper's are looser.
        .max_headers(cfg.max_headers + 8)
        .max_buf_size((cfg.max_header_bytes * 2).max(64 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(ProxyConfig::secs(cfg.idle_timeout_secs)));
    let (svc_proxy, svc_activity) = (proxy.clone(), activity.clone());
    let alt_svc = (cfg.http3 && cfg.is_tls()).then(|| crate::h3::server::alt_svc(cfg.listen.port()));
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let proxy = svc_proxy.clone();
        let busy = svc_activity.enter();
        // Taken here, in the order hyper calls the service: one verdict per HTTP/1 head.
        let verdict = svc_activity.next_verdict();
        let alt_svc = alt_svc.clone();
        async move {
            let (mut resp, busy) = if let Verdict::Reject { status, why } = verdict {
                (refused(&proxy, status, why, peer), Some(busy))
            } else if req.method() == Method::CONNECT {
                (connect(&proxy, req, peer, busy).await, None)
            } else {
                (proxy.handle(req.map(|b| b.map_err(io::Error::other).boxed()), peer).await, Some(busy))
            };
            if let Some(v) = alt_svc {
                resp.headers_mut().insert(http::header::ALT_SVC, v);
            }
            if proxy.config().access_log {
                println!("{} {}", peer.ip(), resp.status().as_u16());
            }
            Ok::<_, Infallible>(resp.map(|body| Guarded::new(body, busy)))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, "proxy connection ended: {e}");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
        _ = activity.expired() => {
            // Idle HTTP/2: GOAWAY, then `Http1Conn` ends the I/O after its grace period.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        reason = slot.closed() => {
            // Evicted for a newcomer, or past the policy's deadline, with no request in
            // progress: HTTP/2 gets a GOAWAY and a moment; HTTP/1 just closes.
            tracing::debug!(%peer, ?reason, "proxy connection closed by the connection policy");
            if reason == CloseReason::Evicted {
                proxy.metrics().evicted.inc();
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn).await;
        }
    }
}

/// The answer to a head the guard refused (a smuggling shape, a bad version, an oversized or
/// late head...): its status, and the connection closes (nothing after the head was read).
/// The answer to a request refused before the proxy saw it (HTTP/1 guard, HTTP/3 limits), counted.
pub(crate) fn refused(proxy: &Proxy, status: u16, why: &'static str, peer: SocketAddr) -> Response<Body> {
    proxy.metrics().requests.inc();
    tracing::debug!(%peer, status, "request refused: {why}");
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = plain(status, format!("{} {why}", status.as_u16()));
    resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    resp
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(body::full(msg + "\n"));
    *r.status_mut() = status;
    r
}

/// CONNECT host:port: checks the ACL and port, connects, answers 200 and splices bytes both
/// ways (nothing is cached or inspected).
async fn connect(
    proxy: &Arc<Proxy>,
    mut req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    busy: InService,
) -> Response<Body> {
    let cfg = proxy.config();
    proxy.metrics().requests.inc();
    if cfg.is_reverse() {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is for forward proxies".into());
    }
    if !proxy.allowed(peer) {
        proxy.metrics().denied.inc();
        return plain(StatusCode::FORBIDDEN, format!("{} is not allowed to use this proxy", peer.ip()));
    }
    if let Some(resp) = proxy.precheck(&req) {
        return resp;
    }
    let Some(auth) = req.uri().authority().cloned() else {
        return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
    };
    let Some(port) = auth.port_u16() else {
        return plain(StatusCode::BAD_REQUEST, "CONNECT needs host:port".into());
    };
    if !cfg.connect_ports.contains(&port) {
        return plain(
            StatusCode::FORBIDDEN,
            format!("CONNECT to port {port} is not allowed (allowed: {:?})", cfg.connect_ports),
        );
    }
    let limit = ProxyConfig::secs(cfg.connect_timeout_secs);
    let addrs = match tokio::time::timeout(limit, proxy.connect_addrs(auth.host(), port)).await {
        Ok(Ok(a)) => a,
        Ok(Err(resp)) => return *resp,
        Err(_) => {
            proxy.metrics().origin_errors.inc();
            return plain(StatusCode::GATEWAY_TIMEOUT, format!("504 gateway timeout: cannot resolve {auth}"));
        }
    };
    let mut upstream = None;
    for addr in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                upstream = Some(s);
                break;
            }
            // The OS error goes to the log only (in a body it would map open and closed ports).
            Ok(Err(e)) => tracing::debug!("CONNECT {auth} via {addr}: {e}"),
            Err(_) => tracing::debug!("CONNECT {auth} via {addr}: no answer within {limit:?}"),
        }
    }
    let Some(upstream) = upstream else {
        proxy.metrics().origin_errors.inc();
        return plain(StatusCode::BAD_GATEWAY, format!("502 bad gateway: cannot connect to {auth}"));
    };
    proxy.metrics().tunnels.inc();
    proxy.metrics().passes.inc();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let idle = ProxyConfig::secs(cfg.idle_timeout_secs);
    tokio::spawn(async move {
        // The client connection's timers wait while the tunnel is open.
        let _busy = busy;
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut client = TokioIo::new(upgraded);
        let mut upstream = upstream;
        let _ = upstream.set_nodelay(true);
        // A generous overall cap; idle tunnels end with the peers' own timeouts.
        let cap = idle * 60;
        let _ = tokio::time::timeout(cap, tokio::io::copy_bidirectional(&mut client, &mut upstream)).await;
    });
    Response::new(body::empty())
}
