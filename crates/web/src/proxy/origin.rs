//! Talking to origins: where a request goes (forward: the absolute-form target; reverse: the
//! configured origin for the Host), the pooled keep-alive hyper client, and the hop-by-hop
//! clean-up of forwarded requests.

use super::policy::strip_hop_by_hop;
use crate::body::Body;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::future::Future;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// An origin server (`http://authority`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `host:port` (port omitted when 80).
    pub authority: String,
}

impl Origin {
    /// Parses `http://host[:port][/]` (or a bare `host:port`).
    pub fn parse(url: &str) -> Result<Origin, String> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err(format!(
                "{url}: only http:// origins are supported (terminate TLS in front of the origin)"
            ));
        } else if url.contains("://") {
            return Err(format!("{url}: not an http:// URL"));
        } else {
            url
        };
        let authority = rest.split('/').next().unwrap_or("").to_ascii_lowercase();
        if authority.is_empty() || authority.parse::<http::uri::Authority>().is_err() {
            return Err(format!("{url}: no host in the origin URL"));
        }
        Ok(Origin { authority: authority.strip_suffix(":80").unwrap_or(&authority).to_string() })
    }
}

/// The origin client: pooled keep-alive HTTP/1.1 connections.
pub type OriginClient = Client<HttpConnector<OriginResolver>, Body>;

/// How origin host names become addresses: the system's resolver, or a given DNS server asked
/// recursively (an institutional cache in the lab resolves through the lab's local DNS server).
#[derive(Clone, Debug)]
pub struct OriginResolver {
    dns: Option<SocketAddr>,
    system: GaiResolver,
}

impl OriginResolver {
    /// `dns`: the recursive resolver to ask (`None`: the system's resolver).
    pub fn new(dns: Option<SocketAddr>) -> OriginResolver {
        OriginResolver { dns, system: GaiResolver::new() }
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for OriginResolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self.dns {
            Some(server) => Box::pin(async move { lookup(server, name.as_str()).await.map(Vec::into_iter) }),
            None => {
                let found = self.system.call(name);
                Box::pin(async move { Ok(found.await?.collect::<Vec<_>>().into_iter()) })
            }
        }
    }
}

/// The A and AAAA addresses of `host` from the recursive resolver `server` (port 0: the
/// connector sets the URL's port).
async fn lookup(server: SocketAddr, host: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
    use appnet_dns::client::{QueryOpts, query};
    use appnet_dns::wire::rrtype::code;
    let name = appnet_dns::wire::name::from_text(host).map_err(std::io::Error::other)?;
    let opts = QueryOpts { recursion_desired: true, ..QueryOpts::default() };
    let mut out = Vec::new();
    for qtype in [code::A, code::AAAA] {
        let Ok(answer) = query(server, &name, qtype, opts).await else { continue };
        let Ok(parsed) = appnet_dns::wire::message::parse(&answer.bytes) else { continue };
        for r in parsed.answer.iter().filter(|r| r.rtype == qtype) {
            let ip = match r.rdata.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).expect("length checked")),
                16 => IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).expect("length checked")),
                _ => continue,
            };
            out.push(SocketAddr::new(ip, 0));
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{server} has no address for {host}"),
        ));
    }
    Ok(out)
}

/// Builds the origin client; `dns` overrides the system resolver for origin names.
pub fn client(connect_timeout: Duration, per_host: usize, dns: Option<SocketAddr>) -> OriginClient {
    let mut http = HttpConnector::new_with_resolver(OriginResolver::new(dns));
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(http)
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

/// The request to send to `origin` for `path_and_query`: hop-by-hop fields removed, `added`
/// (Via, and Surrogate-Capability in reverse mode) and X-Forwarded-For appended, Host kept
/// (reverse) or set to the origin (forward).
pub fn upstream_request(
    method: http::Method,
    origin: &Origin,
    path_and_query: &str,
    headers: &HeaderMap,
    peer: IpAddr,
    added: &HeaderMap,
    body: Body,
) -> Result<Request<Body>, http::Error> {
    let uri: Uri = format!("http://{}{}", origin.authority, path_and_query).parse()?;
    let mut h = headers.clone();
    strip_hop_by_hop(&mut h);
    if !h.contains_key(header::HOST) {
        h.insert(header::HOST, HeaderValue::from_str(&origin.authority)?);
    }
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
