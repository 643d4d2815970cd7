//! The web server's tokio driver: accepts TCP connections (capped), does TLS with ALPN or
//! sniffs the h2c preface, and hands each connection to HTTP/1 (hyper behind the
//! [`gate`](crate::gate)) or HTTP/2 ([`h2srv`](crate::h2srv)). All request logic is in
//! [`Handler`].

use crate::body::RequestBody;
use crate::config::WebConfig;
use crate::gate::{self, Gate, Verdict, Verdicts};
use crate::prefixed::Prefixed;
use crate::site::{CloseAfter, ConnInfo, Handler};
use crate::stats::Stats;
use crate::{h2srv, tls};
use appnet_netkit::accept::{Accepted, Acceptor};
use appnet_netkit::listen::{ListenOpts, bind_tcp};
use appnet_netkit::{BoxError, Service, Shutdown};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, header};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
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
    handler: Arc<Handler>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tls_note: Option<String>,
}

impl WebServer {
    /// Binds the listener, checks the site directories and sets up TLS.
    pub async fn bind(config: WebConfig) -> io::Result<WebServer> {
        let listener = bind_tcp(config.listen, &ListenOpts::default())?;
        let addr = listener.local_addr()?;
        let (tls, tls_note) = if config.tls || config.cert.is_some() {
            let (cfg, note) = tls_config(&config, addr).map_err(|e| io::Error::other(e.to_string()))?;
            (Some(tokio_rustls::TlsAcceptor::from(cfg)), note)
        } else {
            (None, None)
        };
        let handler = Arc::new(Handler::new(config, Stats::new())?);
        Ok(WebServer { listener, handler, tls, tls_note })
    }

    /// For a lab-CA certificate: how clients trust it (a `curl --cacert` line).
    pub fn tls_note(&self) -> Option<&str> {
        self.tls_note.as_deref()
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
        let acceptor = Acceptor::new(self.listener, self.handler.config().max_connections);
        let stats = self.handler.stats().clone();
        while let Some(accepted) = acceptor.next(&shutdown).await {
            stats.connections.inc();
            let (stream, peer, permit) = match accepted {
                Accepted::Conn(stream, peer, permit) => (stream, peer, permit),
                Accepted::OverCap(stream, peer) => {
                    stats.refused.inc();
                    tracing::info!(%peer, "connection cap reached; refusing");
                    let plain = self.tls.is_none();
                    shutdown.spawn(refuse_busy(stream, plain));
                    continue;
                }
            };
            let (handler, tls, sd, stats) =
                (self.handler.clone(), self.tls.clone(), shutdown.clone(), stats.clone());
            shutdown.spawn(async move {
                stats.open.inc();
                let _ = stream.set_nodelay(true);
                connection(stream, peer, handler, tls, sd).await;
                stats.open.dec();
                drop(permit);
            });
        }
        drop(acceptor);
        if !shutdown.drain(DRAIN_DEADLINE).await {
            tracing::warn!("some connections were still open after {DRAIN_DEADLINE:?}");
        }
        Ok(())
    }
}

async fn refuse_busy(mut stream: TcpStream, plain: bool) {
    if plain {
        let msg = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(msg)).await;
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: Shutdown,
) {
    let header_timeout = handler.config().header_timeout();
    if let Some(acceptor) = tls {
        let handshake = tokio::select! {
            _ = shutdown.wait() => return,
            h = tokio::time::timeout(header_timeout, acceptor.accept(stream)) => h,
        };
        let Ok(Ok(tls_stream)) = handshake else {
            tracing::debug!(%peer, "TLS handshake failed or timed out");
            return;
        };
        let h2 = tls_stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let conn = ConnInfo { peer, secure: true };
        if h2 {
            h2srv::serve(tls_stream, handler, conn, shutdown).await;
        } else {
            serve_h1(tls_stream, handler, conn, shutdown).await;
        }
        return;
    }
    // Cleartext: HTTP/2 with prior knowledge starts with the preface; anything else is HTTP/1.
    let mut first = BytesMut::with_capacity(4096);
    loop {
        let read = tokio::select! {
            _ = shutdown.wait() => return,
            r = tokio::time::timeout(handler.config().idle_timeout(), stream.read_buf(&mut first)) => r,
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
    let io = Prefixed::new(Bytes::from(first), stream);
    let conn = ConnInfo { peer, secure: false };
    if is_h2 {
        h2srv::serve(io, handler, conn, shutdown).await;
    } else {
        serve_h1(io, handler, conn, shutdown).await;
    }
}

async fn serve_h1<IO>(io: IO, handler: Arc<Handler>, conn: ConnInfo, shutdown: Shutdown)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = handler.config();
    let limits = gate::Limits {
        max_request_line: cfg.max_request_line,
        max_header_bytes: cfg.max_header_bytes,
        max_headers: cfg.max_headers,
        header_timeout: cfg.header_timeout(),
        idle_timeout: cfg.idle_timeout(),
    };
    let verdicts = Verdicts::default();
    let gated = Gate::new(io, limits, verdicts.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .half_close(false)
        // No pipeline_flush: it switches hyper to its "flatten" write strategy, which copies
        // every body (1 MB files included) into its own buffer before writing. With the default
        // queue strategy a body goes out by writev straight from the file cache's bytes.
        // Pipelined responses are still written in order, only not coalesced.
        .header_read_timeout(None)
        // The gate enforces the real limits with the right status codes; hyper's are looser.
        .max_headers(cfg.max_headers + 8)
        .max_buf_size((cfg.max_header_bytes * 2).max(64 * 1024));
    let svc_handler = handler.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let handler = svc_handler.clone();
        let verdicts = verdicts.clone();
        async move {
            let _busy = gate::InService::enter(&verdicts);
            let mut resp = match gate::next_verdict(&verdicts) {
                Verdict::Reject { status, why } => handler.rejected(status, why, &conn),
                Verdict::Pass => handler.handle(req.map(RequestBody::H1), &conn).await,
            };
            if resp.extensions().get::<CloseAfter>().is_some() {
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                gate::request_linger(&verdicts);
            }
            Ok::<_, Infallible>(resp)
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
