//! Talking to origins: where a request goes (forward: the absolute-form target; reverse: the
//! configured `http://` or `https://` origin for the Host), the pooled keep-alive hyper
//! clients (see [`connector`](super::connector) for TLS), and the hop-by-hop clean-up of
//! forwarded requests.

use super::connector::OriginConnector;
use super::dest::DestPolicy;
use super::origin_dns::OriginResolver;
use super::policy::strip_hop_by_hop;
use crate::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// An origin server (`http://authority` or `https://authority`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `host:port` (port omitted when it is the scheme's default).
    pub authority: String,
    /// Whether the origin speaks TLS (`https://`).
    pub https: bool,
}

impl Origin {
    /// A cleartext origin at `authority` (forward-proxy targets).
    pub fn http(authority: String) -> Origin {
        Origin { authority, https: false }
    }

    /// Parses `http://host[:port][/]`, `https://host[:port][/]` or a bare `host:port`.
    pub fn parse(url: &str) -> Result<Origin, String> {
        let (rest, https) = if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("https://") {
            (r, true)
        } else if url.contains("://") {
            return Err(format!("{url}: not an http:// or https:// URL"));
        } else {
            (url, false)
        };
        let authority = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        if authority.is_empty()
            || authority.contains('@')
            || authority.parse::<http::uri::Authority>().is_err()
        {
            return Err(format!("{url}: no host in the origin URL"));
        }
        let default = if https { ":443" } else { ":80" };
        Ok(Origin { authority: authority.strip_suffix(default).unwrap_or(&authority).to_string(), https })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.https { "https" } else { "http" }
    }

    /// The host (brackets kept for IPv6) and port to connect to.
    pub fn host_port(&self) -> (String, u16) {
        let default = if self.https { 443 } else { 80 };
        match self.authority.parse::<http::uri::Authority>() {
            Ok(a) => (a.host().to_string(), a.port_u16().unwrap_or(default)),
            Err(_) => (self.authority.clone(), default),
        }
    }
}

/// The origin client: pooled keep-alive connections (HTTP/1.1, or HTTP/2 when a TLS origin
/// picks it by ALPN).
pub type OriginClient = Client<OriginConnector, Body>;

/// How origin clients are built: timeouts, pool size, and the resolver.
#[derive(Debug, Clone, Copy)]
pub struct ClientOpts {
    /// Time to connect (TCP, and again for a TLS handshake).
    pub connect_timeout: Duration,
    /// Most idle pooled connections per origin.
    pub per_host: usize,
    /// The recursive resolver for origin names (`None`: the system's).
    pub dns: Option<SocketAddr>,
}

fn tcp_connector(opts: &ClientOpts) -> HttpConnector<OriginResolver> {
    let mut http = HttpConnector::new_with_resolver(OriginResolver::new(opts.dns));
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(true);
    http
}

/// The origin client's HTTP/1 read buffer limit (response heads must fit it too).
const ORIGIN_READ_BUF: usize = 128 * 1024;

fn build(connector: OriginConnector, opts: &ClientOpts) -> OriginClient {
    Client::builder(TokioExecutor::new())
        // Origin bodies arrive in pieces of at most this size, so what waits for a slow
        // client (a short queue of pieces) stays small.
        .http1_max_buf_size(ORIGIN_READ_BUF)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(opts.per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// The client for `http://` origins (the request URI says where to connect).
pub fn client(opts: &ClientOpts) -> OriginClient {
    build(OriginConnector::plain(tcp_connector(opts)), opts)
}

/// The client of a forward proxy: every destination is resolved, checked against `policy`
/// and connected to by address.
pub fn guarded_client(opts: &ClientOpts, policy: Arc<DestPolicy>) -> OriginClient {
    let connector = OriginConnector::guarded(tcp_connector(opts), OriginResolver::new(opts.dns), policy);
    build(connector, opts)
}

/// The client for one `https://` origin, trusting what `tls` trusts.
pub fn tls_client(
    origin: &Origin,
    tls: Arc<rustls::ClientConfig>,
    opts: &ClientOpts,
) -> Result<OriginClient, String> {
    let (host, port) = origin.host_port();
    let connector = OriginConnector::pinned_tls(tcp_connector(opts), tls, &host, port, opts.connect_timeout)?;
    Ok(build(connector, opts))
}

/// Header fields a cache sends instead of the client's own conditionals when it wants a full
/// response to store.
pub const CLIENT_CONDITIONALS: [header::HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// The request to send to `origin` for `path_and_query`: hop-by-hop fields and `strip`
/// removed, `added` (Via, and Surrogate-Capability in reverse mode) and X-Forwarded-For
/// appended, and Host set to `host` — the authority of the cache key, whatever the client
/// sent (RFC 9112 §3.2.2), so the stored response is the one for the key.
#[allow(clippy::too_many_arguments)]
pub fn upstream_request(
    method: http::Method,
    origin: &Origin,
    host: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    peer: IpAddr,
    added: &HeaderMap,
    strip: &[header::HeaderName],
    body: Body,
) -> Result<Request<Body>, http::Error> {
    let mut h = headers.clone();
    strip_hop_by_hop(&mut h);
    for name in strip {
        h.remove(name);
    }
    let host = if host.is_empty() { origin.authority.as_str() } else { host };
    // A TLS origin's connector is pinned, so the URI names the authority to present: the Host
    // being forwarded (`:authority` over HTTP/2 must agree with it).
    let presented = match origin.https && host.parse::<http::uri::Authority>().is_ok() {
        true => host,
        false => origin.authority.as_str(),
    };
    let uri: Uri = format!("{}://{}{}", origin.scheme(), presented, path_and_query).parse()?;
    h.insert(header::HOST, HeaderValue::from_str(host)?);
    for (name, value) in added {
        h.append(name.clone(), value.clone());
    }
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    h.insert("x-forwarded-for", HeaderValue::from_str(&xff)?);
    let mut req = Request::builder().method(method).uri(uri).body(body)?;
    *req.headers_mut() = h;
    Ok(req)
}
