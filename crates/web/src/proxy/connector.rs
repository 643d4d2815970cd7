//! How the origin client opens connections: TCP through the [`OriginResolver`], and for an
//! `https://` origin TLS on top (rustls, SNI and certificate check against the origin's host,
//! ALPN h2 and http/1.1). A TLS connector is pinned to its origin: whatever authority the
//! request URI carries (the Host the client asked for, which becomes `:authority` over HTTP/2),
//! the connection goes to the configured origin.

use super::dest::{DestDenied, DestPolicy};
use super::origin_dns::OriginResolver;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The origin client's connector (a tower service from URI to connection).
#[derive(Clone)]
pub struct OriginConnector {
    http: HttpConnector<OriginResolver>,
    tls: Option<Pinned>,
    /// Forward mode: resolve here, check each address against the policy, and connect only
    /// to an allowed one (by address, so what was checked is what is reached).
    guard: Option<Guard>,
}

/// The destination check of a forward proxy's connector.
#[derive(Clone)]
struct Guard {
    policy: Arc<DestPolicy>,
    resolver: OriginResolver,
}

/// The TLS side of a connector pinned to one `https://` origin.
#[derive(Clone)]
struct Pinned {
    connector: tokio_rustls::TlsConnector,
    /// `http://host:port` of the origin, for the TCP connect.
    tcp: Uri,
    name: ServerName<'static>,
    handshake_timeout: Duration,
}

impl OriginConnector {
    /// A cleartext connector: connects to the host of each request's URI.
    pub fn plain(http: HttpConnector<OriginResolver>) -> OriginConnector {
        OriginConnector { http, tls: None, guard: None }
    }

    /// A cleartext connector for a forward proxy: every destination is resolved with
    /// `resolver` and checked against `policy` before connecting.
    pub fn guarded(
        http: HttpConnector<OriginResolver>,
        resolver: OriginResolver,
        policy: Arc<DestPolicy>,
    ) -> OriginConnector {
        OriginConnector { http, tls: None, guard: Some(Guard { policy, resolver }) }
    }

    /// A TLS connector for the origin `host:port`, whatever the request URIs say.
    pub fn pinned_tls(
        http: HttpConnector<OriginResolver>,
        config: Arc<rustls::ClientConfig>,
        host: &str,
        port: u16,
        handshake_timeout: Duration,
    ) -> Result<OriginConnector, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| format!("{host} is not a host name or address for TLS"))?;
        let tcp: Uri = format!("http://{host}:{port}/").parse().map_err(|e| format!("{host}: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = Some(Pinned { connector, tcp, name, handshake_timeout });
        Ok(OriginConnector { http, tls, guard: None })
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for OriginConnector {
    type Response = OriginStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<OriginStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        if let (None, Some(guard)) = (&self.tls, self.guard.clone()) {
            let mut http = self.http.clone();
            return Box::pin(async move {
                let host = dst.host().unwrap_or("");
                let port = dst.port_u16().unwrap_or(80);
                let addrs = allowed_addrs(&guard.resolver, &guard.policy, host, port).await?;
                let mut last: Option<BoxError> = None;
                for addr in addrs {
                    let uri: Uri = match format!("http://{addr}/").parse() {
                        Ok(u) => u,
                        Err(e) => {
                            last = Some(Box::new(e));
                            continue;
                        }
                    };
                    match http.call(uri).await {
                        Ok(tcp) => return Ok(OriginStream::Plain(tcp)),
                        Err(e) => last = Some(e.into()),
                    }
                }
                Err(last.unwrap_or_else(|| "no address to connect to".into()))
            });
        }
        let Some(pinned) = self.tls.clone() else {
            let tcp = self.http.call(dst);
            return Box::pin(async move { Ok(OriginStream::Plain(tcp.await?)) });
        };
        let tcp = self.http.call(pinned.tcp.clone());
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let handshake = pinned.connector.connect(pinned.name.clone(), tcp);
            let tls = tokio::time::timeout(pinned.handshake_timeout, handshake).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake not done within {:?}", pinned.handshake_timeout),
                )
            })??;
            Ok(OriginStream::Tls(Box::new(TokioIo::new(tls))))
        })
    }
}

/// Most resolved addresses tried for one destination.
const MAX_ADDRS: usize = 4;

/// The addresses of `host` (a name or an address literal, IPv6 in brackets or not) with
/// `port` that `policy` allows, in resolver order; [`DestDenied`] when there were addresses
/// but none was allowed.
pub async fn allowed_addrs(
    resolver: &OriginResolver,
    policy: &DestPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, BoxError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => resolver.resolve(bare).await?.into_iter().map(|a| SocketAddr::new(a.ip(), port)).collect(),
    };
    let mut refusal = None;
    let mut ok = Vec::new();
    for addr in found {
        match policy.check_here(addr) {
            Ok(()) if ok.len() < MAX_ADDRS => ok.push(addr),
            Ok(()) => {}
            Err(r) => refusal = refusal.or(Some(r)),
        }
    }
    match (ok.is_empty(), refusal) {
        (true, Some(r)) => Err(Box::new(DestDenied(r))),
        (true, None) => Err(format!("{host} has no address").into()),
        (false, _) => Ok(ok),
    }
}

/// A connection to an origin: cleartext or TLS.
pub enum OriginStream {
    /// `http://`.
    Plain(TokioIo<TcpStream>),
    /// `https://`.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for OriginStream {
    fn connected(&self) -> Connected {
        match self {
            OriginStream::Plain(s) => s.connected(),
            OriginStream::Tls(s) => {
                let (tcp, session) = s.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") { connected.negotiated_h2() } else { connected }
            }
        }
    }
}

impl hyper::rt::Read for OriginStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for OriginStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_flush(cx),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            OriginStream::Plain(s) => s.is_write_vectored(),
            OriginStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            OriginStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            OriginStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}
