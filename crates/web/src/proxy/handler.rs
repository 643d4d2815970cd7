//! The caching proxy's request flow: ACL, purge, metrics, pass-through of unsafe methods (with
//! invalidation), and for GET/HEAD the cache: lookup, fresh hit, stale-while-revalidate,
//! revalidation with a conditional GET, collapsed misses, storing while streaming, and
//! stale-if-error / 502 / 504 when the origin fails.

use super::collapse::{self, Collapser, LeadGuard, Turn};
use super::config::ProxyConfig;
use super::dest::{DestDenied, DestPolicy, Refusal};
use super::metrics::{Fwd, Outcome, ProxyMetrics};
use super::origin::{self, CLIENT_CONDITIONALS, Origin, OriginClient, OriginResolver};
use super::policy::{self, Decision, PolicyOptions, Stored, strip_hop_by_hop};
use super::store::{BodyRef, Entry, Inflight, Store, StoreConfig, Writer};
use crate::body::{self, Body};
use crate::files::range;
use appnet_dns::respond::AccessList;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Errors building a proxy from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An origin URL is unusable.
    #[error("origin: {0}")]
    Origin(String),
    /// An ACL entry is not an address or prefix.
    #[error("access list: {0}")]
    Acl(String),
    /// The cache directory could not be opened.
    #[error("cache directory: {0}")]
    Store(#[from] io::Error),
    /// TLS towards `https://` origins could not be set up (CA files).
    #[error("TLS to origins: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The proxy's shared state (one per listener, shared by all connections).
pub struct Proxy {
    cfg: ProxyConfig,
    store: Store,
    collapser: Arc<Collapser>,
    metrics: ProxyMetrics,
    client: OriginClient,
    /// One client per `https://` origin (by authority), each pinned to it.
    tls_clients: HashMap<String, OriginClient>,
    opts: PolicyOptions,
    allow: AccessList,
    purge_allow: AccessList,
    reverse: Option<Origin>,
    origins: HashMap<String, Origin>,
    via: HeaderValue,
    /// Header fields added to requests to origins: Via, and Surrogate-Capability in reverse mode.
    upstream_added: HeaderMap,
    /// Forward mode: where the proxy may connect (also for CONNECT).
    dest: Option<Arc<DestPolicy>>,
    /// Resolves CONNECT targets (the same resolver as the origin client's).
    resolver: OriginResolver,
    /// This proxy's token in the `Via` of requests it forwards: seeing it again in a request
    /// means a forwarding loop.
    loop_token: String,
    /// Client header fields not forwarded upstream (host overrides, unless configured).
    strip_upstream: Vec<header::HeaderName>,
}

/// Client header fields that name another host and are not part of the cache key (an origin
/// reflecting one would let a client poison the cache); not forwarded unless
/// `forward_host_overrides`.
pub const HOST_OVERRIDES: [&str; 5] =
    ["x-forwarded-host", "x-host", "x-forwarded-server", "x-original-url", "x-rewrite-url"];

/// Where a request goes and under which cache key.
struct Target {
    origin: Origin,
    key: String,
    /// The `Host` sent upstream: always the authority inside `key`, so what is fetched is what
    /// is stored under it.
    host: String,
    path_and_query: String,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = Response::new(body::full(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Chunks queued between an origin body and its client (kept short: back-pressure).
const QUEUE_CHUNKS: usize = 2;

/// The client's end of the queue from [`Proxy::store_body`]: counts what it takes out of the
/// in-flight gauge, and what it never took when dropped.
struct Queued {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    inflight: Arc<Inflight>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            if let Ok(b) = item {
                self.inflight.dequeue(b.len() as u64);
            }
        }
    }
}

enum FetchError {
    Timeout,
    Failed(String),
    /// The destination is refused by the forward proxy's policy.
    Denied(Refusal),
}

impl Proxy {
    /// Builds the proxy: origins, ACLs, the store (loading a cache directory) and the client.
    pub fn new(cfg: ProxyConfig) -> Result<Proxy, SetupError> {
        let reverse = cfg.reverse.as_deref().map(Origin::parse).transpose().map_err(SetupError::Origin)?;
        let mut origins = HashMap::new();
        for (host, url) in &cfg.origins {
            origins.insert(host.to_ascii_lowercase(), Origin::parse(url).map_err(SetupError::Origin)?);
        }
        let client_opts = origin::ClientOpts {
            connect_timeout: ProxyConfig::secs(cfg.connect_timeout_secs),
            per_host: cfg.pool_per_host,
            dns: cfg.dns,
        };
        let tls_clients = tls_clients(&cfg, reverse.iter().chain(origins.values()), &client_opts)?;
        let opts = PolicyOptions {
            heuristic_fraction: cfg.heuristic_fraction,
            heuristic_max: Duration::from_secs(cfg.heuristic_max_secs),
        };
        let store = Store::open(
            StoreConfig {
                capacity: if cfg.cache_dir.is_some() { cfg.disk_size } else { cfg.memory_size },
                max_object: cfg.max_object_size,
                max_variants: cfg.max_variants,
                dir: cfg.cache_dir.clone(),
                max_inflight: cfg.max_inflight_bytes,
            },
            &opts,
        )?;
        let via = HeaderValue::from_str(&format!("1.1 {}", cfg.name))
            .map_err(|_| SetupError::Origin("bad name".into()))?;
        let loop_token = format!("appnet-{:016x}", {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id() as u64);
            h.write_u128(
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
            );
            h.finish()
        });
        let mut upstream_added = HeaderMap::new();
        upstream_added.insert(
            header::VIA,
            HeaderValue::from_str(&format!("1.1 {} ({loop_token})", cfg.name))
                .map_err(|_| SetupError::Origin("bad name".into()))?,
        );
        if cfg.is_reverse()
            && let Ok(v) = HeaderValue::from_str(&format!("{}=\"Surrogate/1.0\"", cfg.name))
        {
            upstream_added.insert("surrogate-capability", v);
        }
        let dest = match cfg.is_reverse() {
            true => None,
            false => Some(Arc::new(DestPolicy::new(
                AccessList::parse(&cfg.allow_dest)
                    .map_err(|e| SetupError::Acl(format!("allow_dest: {e}")))?,
                cfg.listen,
            ))),
        };
        let client = match &dest {
            Some(policy) => origin::guarded_client(&client_opts, policy.clone()),
            None => origin::client(&client_opts),
        };
        let strip_upstream = match cfg.forward_host_overrides {
            true => Vec::new(),
            false => HOST_OVERRIDES.iter().map(|n| header::HeaderName::from_static(n)).collect(),
        };
        Ok(Proxy {
            allow: AccessList::parse(&cfg.allow).map_err(SetupError::Acl)?,
            purge_allow: AccessList::parse(&cfg.purge_allow).map_err(SetupError::Acl)?,
            client,
            dest,
            resolver: OriginResolver::new(cfg.dns),
            loop_token,
            strip_upstream,
            tls_clients,
            store,
            collapser: Arc::new(Collapser::default()),
            metrics: ProxyMetrics::new(),
            opts,
            reverse,
            origins,
            via,
            upstream_added,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// The counters.
    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether `peer` may use the proxy at all.
    pub fn allowed(&self, peer: SocketAddr) -> bool {
        self.allow.is_empty() || self.allow.contains(peer.ip())
    }

    /// Whether `peer` may purge and read metrics.
    pub fn admin(&self, peer: SocketAddr) -> bool {
        self.purge_allow.contains(peer.ip())
    }

    /// Renders the metrics (with store usage).
    pub fn render_metrics(&self) -> String {
        let (objects, bytes) = self.store.usage();
        self.metrics.objects.set(objects as i64);
        self.metrics.stored_bytes.set(bytes as i64);
        let inflight = self.store.inflight();
        self.metrics.inflight_bytes.set(inflight.current() as i64);
        self.metrics.inflight_peak.set(inflight.peak() as i64);
        self.metrics.inflight_refused.set(inflight.refused() as i64);
        self.metrics.render()
    }

    fn target(&self, req: &Request<hyper::body::Incoming>) -> Result<Target, Box<Response<Body>>> {
        let uri = req.uri();
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        if self.cfg.is_reverse() {
            // An absolute-form target (or HTTP/2's :authority) wins over Host (RFC 9112
            // §3.2.2).
            let host = uri
                .authority()
                .map(|a| a.to_string())
                .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string))
                .unwrap_or_default()
                .to_ascii_lowercase();
            let bare = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
            let origin = self.origins.get(bare).or(self.reverse.as_ref()).cloned().ok_or_else(|| {
                Box::new(text(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!("no origin is configured for host {bare:?}"),
                ))
            })?;
            let host = if host.is_empty() { origin.authority.clone() } else { host };
            let scheme = if self.cfg.is_tls() { "https" } else { "http" };
            return Ok(Target { key: format!("{scheme}://{host}{pq}"), host, origin, path_and_query: pq });
        }
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(auth)) => {
                // Host and port only: userinfo is neither part of the key nor a Host.
                let a = match auth.port() {
                    Some(p) => format!("{}:{}", auth.host(), p.as_str()),
                    None => auth.host().to_string(),
                }
                .to_ascii_lowercase();
                let a = a.strip_suffix(":80").unwrap_or(&a).to_string();
                Ok(Target {
                    key: format!("http://{a}{pq}"),
                    host: a.clone(),
                    origin: Origin::http(a),
                    path_and_query: pq,
                })
            }
            (Some(s), Some(_)) => Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                format!("this proxy fetches http:// URLs; use CONNECT for {s}:// (curl does this with -x)"),
            ))),
            _ => Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                "this is a forward proxy: send absolute-form requests (configure it as your HTTP proxy, e.g. curl -x)",
            ))),
        }
    }

    /// Handles one request (not CONNECT, which the server driver tunnels).
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        self.metrics.requests.inc();
        if !self.allowed(peer) {
            self.metrics.denied.inc();
            return text(StatusCode::FORBIDDEN, format!("{} is not allowed to use this proxy", peer.ip()));
        }
        if let Some(resp) = self.precheck(&req) {
            return resp;
        }
        let origin_form = req.uri().authority().is_none();
        if !self.cfg.metrics_path.is_empty()
            && req.method() == Method::GET
            && req.uri().path() == self.cfg.metrics_path
            && ((origin_form && !self.cfg.is_reverse()) || (self.cfg.is_reverse() && self.admin(peer)))
        {
            if !self.admin(peer) {
                return text(StatusCode::FORBIDDEN, "metrics are for purge_allow clients");
            }
            let mut r = text(StatusCode::OK, self.render_metrics());
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            return r;
        }
        let target = match self.target(&req) {
            Ok(t) => t,
            Err(resp) => return *resp,
        };
        if req.method().as_str() == "PURGE" {
            return self.purge(&target, peer);
        }
        let resp = if policy::is_cacheable_method(req.method()) {
            self.cached(req, target, peer).await
        } else {
            self.pass(req, target, peer).await
        };
        let mut resp = resp;
        resp.headers_mut().append(header::VIA, self.via.clone());
        resp
    }

    /// Refuses malformed heads (Host, Expect: see [`reqcheck`](super::reqcheck)) and
    /// requests that already passed through this proxy (a forwarding loop).
    pub fn precheck<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        if let Err((status, why)) = super::reqcheck::check(req.version(), req.headers()) {
            return Some(text(status, why));
        }
        let looped = req
            .headers()
            .get_all(header::VIA)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&self.loop_token)));
        if looped {
            self.metrics.denied.inc();
            return Some(text(
                StatusCode::FORBIDDEN,
                "forwarding loop detected (this request already passed this proxy)",
            ));
        }
        None
    }

    /// Forward mode: the addresses CONNECT may reach for `host:port` (resolved, checked
    /// against the destination policy), or the response refusing it.
    pub async fn connect_addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Box<Response<Body>>> {
        let Some(policy) = &self.dest else {
            return Err(Box::new(text(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is for forward proxies")));
        };
        match super::connector::allowed_addrs(&self.resolver, policy, host, port).await {
            Ok(a) => Ok(a),
            Err(e) => match e.downcast_ref::<DestDenied>() {
                Some(DestDenied(r)) => {
                    self.metrics.denied.inc();
                    Err(Box::new(text(StatusCode::FORBIDDEN, format!("CONNECT to {r} is not allowed"))))
                }
                None => {
                    tracing::debug!("CONNECT {host}:{port}: {e}");
                    self.metrics.origin_errors.inc();
                    Err(Box::new(text(
                        StatusCode::BAD_GATEWAY,
                        format!("502 bad gateway: cannot resolve {host}"),
                    )))
                }
            },
        }
    }

    fn purge(&self, target: &Target, peer: SocketAddr) -> Response<Body> {
        if !self.admin(peer) {
            return text(StatusCode::FORBIDDEN, format!("{} may not purge", peer.ip()));
        }
        let n = self.store.remove(&target.key);
        self.metrics.purged.add(n as u64);
        if n == 0 {
            text(StatusCode::NOT_FOUND, format!("{} is not in the cache", target.key))
        } else {
            text(StatusCode::OK, format!("purged {} ({n} variant(s))", target.key))
        }
    }

    /// The request to the origin for `target` (see [`origin::upstream_request`]); a 400 when
    /// the client's request cannot be forwarded.
    fn upstream(
        &self,
        method: Method,
        target: &Target,
        headers: &HeaderMap,
        peer: SocketAddr,
        body: Body,
    ) -> Result<Request<Body>, Box<Response<Body>>> {
        origin::upstream_request(
            method,
            &target.origin,
            &target.host,
            &target.path_and_query,
            headers,
            peer.ip(),
            &self.upstream_added,
            &self.strip_upstream,
            body,
        )
        .map_err(|e| Box::new(text(StatusCode::BAD_REQUEST, format!("cannot forward this request: {e}"))))
    }

    async fn fetch(
        &self,
        origin: &Origin,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, FetchError> {
        self.metrics.origin_requests.inc();
        let limit = ProxyConfig::secs(self.cfg.origin_timeout_secs);
        let client = match origin.https {
            false => &self.client,
            true => match self.tls_clients.get(&origin.authority) {
                Some(c) => c,
                None => {
                    self.metrics.origin_errors.inc();
                    return Err(FetchError::Failed("no TLS client for this origin".into()));
                }
            },
        };
        match tokio::time::timeout(limit, client.request(req)).await {
            Err(_) => {
                self.metrics.origin_errors.inc();
                Err(FetchError::Timeout)
            }
            Ok(Err(e)) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    if let Some(DestDenied(r)) = s.downcast_ref::<DestDenied>() {
                        self.metrics.denied.inc();
                        return Err(FetchError::Denied(*r));
                    }
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                self.metrics.origin_errors.inc();
                if msg.contains("invalid peer certificate") {
                    msg.push_str(" (is the origin's CA trusted? add it with --origin-ca FILE)");
                }
                Err(FetchError::Failed(msg))
            }
            Ok(Ok(r)) => Ok(r),
        }
    }

    fn origin_failure(&self, target: &Target, err: FetchError) -> Response<Body> {
        match err {
            FetchError::Timeout => text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "504 gateway timeout: the origin {} did not answer within {} s",
                    target.origin.authority,
                    self.cfg.origin_timeout_secs.max(1)
                ),
            ),
            FetchError::Failed(why) => {
                // The details (OS error text) go to the log only: in a body they would tell a
                // client which ports of the origin's host are open.
                match self.cfg.is_reverse() {
                    true => tracing::info!(origin = %target.origin.authority, "origin failed: {why}"),
                    // Forward mode: any client can name any origin; keep it out of the default log.
                    false => tracing::debug!(origin = %target.origin.authority, "origin failed: {why}"),
                }
                let hint = if why.contains("invalid peer certificate") {
                    " (its certificate is not trusted: see --origin-ca)"
                } else {
                    ""
                };
                text(
                    StatusCode::BAD_GATEWAY,
                    format!("502 bad gateway: cannot reach the origin {}{hint}", target.origin.authority),
                )
            }
            FetchError::Denied(r) => text(
                StatusCode::FORBIDDEN,
                format!("403 forbidden: {} is {r}; this proxy does not go there", target.origin.authority),
            ),
        }
    }

    /// Unsafe and other uncacheable methods: forward, stream back, invalidate on success.
    async fn pass(
        &self,
        req: Request<hyper::body::Incoming>,
        target: Target,
        peer: SocketAddr,
    ) -> Response<Body> {
        self.metrics.passes.inc();
        let (parts, incoming) = req.into_parts();
        let body = incoming.map_err(io::Error::other).boxed();
        let up = match self.upstream(parts.method.clone(), &target, &parts.headers, peer, body) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let resp = match self.fetch(&target.origin, up).await {
            Ok(r) => r,
            Err(e) => return self.origin_failure(&target, e),
        };
        if policy::is_unsafe(&parts.method) {
            for url in policy::invalidation_targets(&target.key, resp.status(), resp.headers()) {
                let n = self.store.remove(&url);
                self.metrics.purged.add(n as u64);
            }
        }
        let (mut rp, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut rp.headers);
        add_status(&mut rp.headers, Outcome::Pass, &self.cfg.name);
        let metrics = self.metrics.clone();
        let body = incoming
            .map_frame(move |f| {
                if let Some(d) = f.data_ref() {
                    metrics.bytes_fetched.add(d.len() as u64);
                }
                f
            })
            .map_err(io::Error::other)
            .boxed();
        Response::from_parts(rp, body)
    }

    /// GET and HEAD through the cache.
    async fn cached(
        self: &Arc<Self>,
        req: Request<hyper::body::Incoming>,
        target: Target,
        peer: SocketAddr,
    ) -> Response<Body> {
        let (parts, _body) = req.into_parts();
        let method = parts.method.clone();
        let headers = parts.headers;
        let only_cached = policy::only_if_cached(&headers);
        let mut why = Fwd::UriMiss;
        for round in 0..3 {
            let now = SystemTime::now();
            if let Some(entry) = self.store.lookup(&target.key, &headers) {
                match entry.stored.decide(&method, &headers, now) {
                    Decision::Fresh => {
                        self.metrics.hits.inc();
                        let ttl = entry.stored.ttl(now);
                        return self.serve(&entry, &method, &headers, Outcome::Hit { ttl }).await;
                    }
                    Decision::StaleWhileRevalidate => {
                        self.metrics.stale.inc();
                        self.background_revalidate(entry.clone(), &target, &headers, peer);
                        let ttl = entry.stored.ttl(now);
                        return self.serve(&entry, &method, &headers, Outcome::Stale { ttl }).await;
                    }
                    Decision::Revalidate(_) if only_cached => return only_if_cached_miss(),
                    Decision::Revalidate(_) if method == Method::HEAD => {
                        // A HEAD needing the origin goes there as HEAD (write-through).
                        return self.miss(&method, &headers, &target, peer, None, Fwd::Stale, None).await;
                    }
                    Decision::Revalidate(validators) => {
                        return self.revalidate(entry, validators, &method, &headers, &target, peer).await;
                    }
                }
            }
            if only_cached {
                return only_if_cached_miss();
            }
            if self.store.lookup_any(&target.key) {
                why = Fwd::VaryMiss;
            }
            // HEAD, range and conditional requests for something not stored go to the origin as
            // they are (a 206 or 304 passes through); no lock, since they are not stored.
            if method == Method::HEAD
                || headers.contains_key(header::RANGE)
                || CLIENT_CONDITIONALS.iter().any(|h| headers.contains_key(h))
            {
                return self.miss(&method, &headers, &target, peer, None, why, Some(HeaderMap::new())).await;
            }
            if policy::CacheControl::parse(&headers).has("no-cache") {
                why = Fwd::Request;
            }
            if !self.cfg.collapse || round == 2 {
                break;
            }
            match self.collapser.turn(&target.key, Instant::now()) {
                Turn::Lead(guard) => {
                    return self.miss(&method, &headers, &target, peer, Some(guard), why, None).await;
                }
                Turn::Bypass => break,
                Turn::Wait(rx) => {
                    self.metrics.collapsed.inc();
                    collapse::wait(rx, ProxyConfig::secs(self.cfg.origin_timeout_secs)).await;
                }
            }
        }
        self.miss(&method, &headers, &target, peer, None, why, None).await
    }

    /// Conditional GET to the origin for a stale (or client-refreshed) stored response.
    async fn revalidate(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        validators: HeaderMap,
        method: &Method,
        headers: &HeaderMap,
        target: &Target,
        peer: SocketAddr,
    ) -> Response<Body> {
        let mut h = headers.clone();
        for name in &CLIENT_CONDITIONALS {
            h.remove(name);
        }
        h.extend(validators);
        let request_time = SystemTime::now();
        let up = match self.upstream(Method::GET, target, &h, peer, body::empty()) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let resp = match self.fetch(&target.origin, up).await {
            Ok(r) => r,
            Err(e) => {
                let now = SystemTime::now();
                if entry.stored.stale_if_error_ok(headers, now) || entry.stored.stale_if_disconnected_ok() {
                    self.metrics.stale.inc();
                    let ttl = entry.stored.ttl(SystemTime::now());
                    return self.serve(&entry, method, headers, Outcome::Stale { ttl }).await;
                }
                return self.origin_failure(target, e);
            }
        };
        let response_time = SystemTime::now();
        if resp.status() == StatusCode::NOT_MODIFIED
            && let Some(fresh) =
                entry.stored.refreshed(resp.headers(), request_time, response_time, &self.opts)
        {
            self.metrics.revalidations.inc();
            let entry = self.store.refresh(&entry, fresh).await;
            let ttl = entry.stored.ttl(response_time);
            return self.serve(&entry, method, headers, Outcome::Revalidated { ttl }).await;
        }
        if resp.status().is_server_error() && entry.stored.stale_if_error_ok(headers, response_time) {
            self.metrics.stale.inc();
            let ttl = entry.stored.ttl(response_time);
            return self.serve(&entry, method, headers, Outcome::Stale { ttl }).await;
        }
        if resp.status() == StatusCode::NOT_MODIFIED {
            // A 304 for another representation: fetch it whole.
            return self.miss(method, headers, target, peer, None, Fwd::Stale, None).await;
        }
        self.metrics.misses.inc();
        self.respond_from_origin(resp, method, headers, target, None, Fwd::Stale, request_time)
    }

    fn background_revalidate(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        target: &Target,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) {
        let Turn::Lead(guard) = self.collapser.turn(&target.key, Instant::now()) else { return };
        let me = self.clone();
        let target = Target {
            origin: target.origin.clone(),
            key: target.key.clone(),
            host: target.host.clone(),
            path_and_query: target.path_and_query.clone(),
        };
        let headers = headers.clone();
        tokio::spawn(async move {
            let _ = me
                .miss(
                    &Method::GET,
                    &headers,
                    &target,
                    peer,
                    Some(guard),
                    Fwd::Stale,
                    Some(entry.stored.validators()).filter(|v| !v.is_empty()),
                )
                .await;
        });
    }

    /// Fetches from the origin (optionally conditional on `validators` of a stored entry) and
    /// answers, storing what may be stored.
    #[allow(clippy::too_many_arguments)]
    async fn miss(
        self: &Arc<Self>,
        method: &Method,
        headers: &HeaderMap,
        target: &Target,
        peer: SocketAddr,
        guard: Option<LeadGuard>,
        why: Fwd,
        validators: Option<HeaderMap>,
    ) -> Response<Body> {
        let mut h = headers.clone();
        // `validators`: None = a plain fetch to store (client conditionals removed, answered
        // from the result); Some(empty) = forward the client's request as is; Some(v) = our
        // own revalidation.
        let conditional = validators.as_ref().is_some_and(|v| !v.is_empty());
        match validators {
            None => {
                for name in &CLIENT_CONDITIONALS {
                    h.remove(name);
                }
            }
            Some(v) if !v.is_empty() => {
                for name in &CLIENT_CONDITIONALS {
                    h.remove(name);
                }
                h.extend(v);
            }
            Some(_) => {}
        }
        let request_time = SystemTime::now();
        let up = match self.upstream(method.clone(), target, &h, peer, body::empty()) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let resp = match self.fetch(&target.origin, up).await {
            Ok(r) => r,
            Err(e) => return self.origin_failure(target, e),
        };
        if conditional && resp.status() == StatusCode::NOT_MODIFIED {
            // Background revalidation of a stale-while-revalidate entry.
            if let Some(entry) = self.store.lookup(&target.key, headers)
                && let Some(fresh) =
                    entry.stored.refreshed(resp.headers(), request_time, SystemTime::now(), &self.opts)
            {
                self.metrics.revalidations.inc();
                self.store.refresh(&entry, fresh).await;
            }
            drop(guard);
            return text(StatusCode::NOT_MODIFIED, "");
        }
        self.metrics.misses.inc();
        self.respond_from_origin(resp, method, headers, target, guard, why, request_time)
    }

    /// Streams an origin response to the client, storing it on the way when allowed.
    #[allow(clippy::too_many_arguments)]
    fn respond_from_origin(
        self: &Arc<Self>,
        resp: Response<hyper::body::Incoming>,
        method: &Method,
        req_headers: &HeaderMap,
        target: &Target,
        guard: Option<LeadGuard>,
        why: Fwd,
        request_time: SystemTime,
    ) -> Response<Body> {
        let response_time = SystemTime::now();
        let (mut rp, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut rp.headers);
        let surrogate = rp.headers.remove(policy::SURROGATE_CONTROL);
        let storable = if *method == Method::GET
            && !policy::request_no_store(req_headers)
            && rp.status != StatusCode::PARTIAL_CONTENT
        {
            let mut stored_headers = rp.headers.clone();
            if let Some(sc) = surrogate {
                stored_headers.insert(policy::SURROGATE_CONTROL, sc);
            }
            Stored::from_response(
                &target.key,
                method,
                req_headers,
                rp.status,
                &stored_headers,
                request_time,
                response_time,
                &self.opts,
            )
            .ok()
        } else {
            None
        };
        let Some(stored) = storable else {
            if let Some(g) = guard {
                g.uncacheable();
            }
            add_status(&mut rp.headers, Outcome::Miss { stored: false, why }, &self.cfg.name);
            let metrics = self.metrics.clone();
            let body = incoming
                .map_frame(move |f| {
                    if let Some(d) = f.data_ref() {
                        metrics.bytes_fetched.add(d.len() as u64);
                    }
                    f
                })
                .map_err(io::Error::other)
                .boxed();
            return Response::from_parts(rp, body);
        };
        let expected =
            rp.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        add_status(&mut rp.headers, Outcome::Miss { stored: true, why }, &self.cfg.name);
        // The client may answer itself from what is being stored (its own conditionals).
        let client_304 = stored.client_not_modified(req_headers);
        // A short queue: the origin is read only as fast as the client takes the body.
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(QUEUE_CHUNKS);
        let me = self.clone();
        tokio::spawn(async move {
            me.store_body(incoming, stored, expected, tx, guard).await;
        });
        if client_304 {
            rp.status = StatusCode::NOT_MODIFIED;
            strip_body_fields(&mut rp.headers);
            return Response::from_parts(rp, body::empty());
        }
        let queue = Queued { rx, inflight: self.store.inflight().clone() };
        let stream = futures_util::stream::unfold(queue, |mut q| async move {
            let item = q.rx.recv().await?;
            if let Ok(b) = &item {
                q.inflight.dequeue(b.len() as u64);
            }
            Some((item.map(hyper::body::Frame::data), q))
        });
        Response::from_parts(rp, http_body_util::StreamBody::new(stream).boxed())
    }

    /// Reads the origin body, feeding the client (while it listens) and the store; commits
    /// only a complete body.
    async fn store_body(
        self: Arc<Self>,
        mut incoming: hyper::body::Incoming,
        stored: Stored,
        expected: Option<u64>,
        tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
        mut guard: Option<LeadGuard>,
    ) {
        let mut writer: Option<Writer> = self.store.writer(expected).await;
        let inflight = self.store.inflight().clone();
        let idle = ProxyConfig::secs(self.cfg.body_idle_timeout_secs);
        let mut client_gone = false;
        let mut complete = false;
        loop {
            let frame = match tokio::time::timeout(idle, incoming.frame()).await {
                Err(_) => {
                    let _ =
                        tx.send(Err(io::Error::new(io::ErrorKind::TimedOut, "origin body stalled"))).await;
                    break;
                }
                Ok(None) => {
                    complete = true;
                    break;
                }
                Ok(Some(Err(e))) => {
                    let _ = tx.send(Err(io::Error::other(e))).await;
                    break;
                }
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            self.metrics.bytes_fetched.add(data.len() as u64);
            if let Some(w) = writer.as_mut() {
                w.write(&data).await;
                if w.failed()
                    && let Some(g) = guard.take()
                {
                    // Too large, or the in-flight budget is exhausted: waiters fetch for
                    // themselves now rather than after this (maybe slow) transfer.
                    g.uncacheable();
                }
            }
            if !client_gone {
                let n = data.len() as u64;
                inflight.queue(n);
                if tx.send(Ok(data)).await.is_err() {
                    inflight.dequeue(n);
                    client_gone = true;
                }
            }
            if client_gone && writer.as_ref().is_none_or(|w| w.failed()) {
                break;
            }
        }
        drop(tx);
        let Some(w) = writer else {
            if let Some(g) = guard {
                g.uncacheable();
            }
            return;
        };
        if !complete || expected.is_some_and(|e| e != w.written()) {
            w.abort().await;
            return;
        }
        if let Err(e) = self.store.commit(w, stored).await {
            tracing::debug!("not stored: {e}");
            if let Some(g) = guard {
                g.uncacheable();
            }
        }
    }

    /// Answers from a stored entry.
    async fn serve(
        &self,
        entry: &Arc<Entry>,
        method: &Method,
        req: &HeaderMap,
        outcome: Outcome,
    ) -> Response<Body> {
        let now = SystemTime::now();
        let mut h = entry.stored.response_headers(now);
        add_status(&mut h, outcome, &self.cfg.name);
        let len = entry.stored.meta.body_len;
        if entry.stored.client_not_modified(req) {
            strip_body_fields(&mut h);
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = h;
            return r;
        }
        // A single byte range of a stored complete 200 (If-Range permitting); several ranges
        // get the whole representation, which RFC 9110 allows.
        let mut status = entry.stored.meta.status;
        let mut slice = (0, len);
        if status == StatusCode::OK
            && let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok())
            && if_range_allows(req, &entry.stored.meta.res_headers)
        {
            match range::parse(range, len) {
                range::RangeRequest::Partial(ranges) if ranges.len() == 1 => {
                    let r = &ranges[0];
                    status = StatusCode::PARTIAL_CONTENT;
                    slice = (r.start, r.len());
                    if let Ok(v) = HeaderValue::from_str(&r.content_range(len)) {
                        h.insert(header::CONTENT_RANGE, v);
                    }
                }
                range::RangeRequest::Unsatisfiable => {
                    let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return r;
                }
                _ => {}
            }
        }
        let (offset, count) = slice;
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        let body = if *method == Method::HEAD {
            body::empty()
        } else {
            self.metrics.bytes_saved.add(count);
            match &entry.body {
                BodyRef::Memory(b) => {
                    let mut parts = b.slices(offset, count);
                    match parts.len() {
                        0 => body::empty(),
                        1 => body::full(parts.remove(0)),
                        _ => {
                            let frames = parts.into_iter().map(|p| Ok(hyper::body::Frame::data(p)));
                            http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
                        }
                    }
                }
                BodyRef::Disk(path) => match open_at(path, offset).await {
                    Ok(f) => file_body(f, count),
                    Err(e) => {
                        tracing::warn!("cache directory: {} unreadable: {e}", path.display());
                        self.store.remove(&entry.stored.meta.key);
                        return text(StatusCode::SERVICE_UNAVAILABLE, "cached object vanished; retry");
                    }
                },
            }
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = h;
        r
    }
}

/// The clients of the `https://` origins among `origins`, sharing one rustls config that trusts
/// the system's roots, the lab CA and the configured CA files (as configured).
fn tls_clients<'a>(
    cfg: &ProxyConfig,
    origins: impl Iterator<Item = &'a Origin>,
    opts: &origin::ClientOpts,
) -> Result<HashMap<String, OriginClient>, SetupError> {
    let https: Vec<&Origin> = origins.filter(|o| o.https).collect();
    let mut out = HashMap::new();
    if https.is_empty() {
        return Ok(out);
    }
    let trust = crate::tls_client::Trust {
        system: cfg.origin_system_roots,
        lab_ca_dir: cfg
            .origin_lab_ca
            .then(|| cfg.ca_dir.clone().unwrap_or_else(crate::tls::LabCa::default_dir)),
        extra: cfg.origin_ca.clone(),
    };
    let alpn: &[&[u8]] = if cfg.origin_h2 { &[b"h2", b"http/1.1"] } else { &[b"http/1.1"] };
    let tls = crate::tls_client::client_config(&trust, alpn)?;
    for o in https {
        if !out.contains_key(&o.authority) {
            let client = origin::tls_client(o, tls.clone(), opts).map_err(SetupError::Origin)?;
            out.insert(o.authority.clone(), client);
        }
    }
    Ok(out)
}

async fn open_at(path: &std::path::Path, offset: u64) -> io::Result<tokio::fs::File> {
    use tokio::io::AsyncSeekExt;
    let mut f = tokio::fs::File::open(path).await?;
    if offset > 0 {
        f.seek(io::SeekFrom::Start(offset)).await?;
    }
    Ok(f)
}

/// If-Range (RFC 9110 §13.1.5): a strong ETag equal to the stored one, or exactly its
/// Last-Modified date; absent means yes.
fn if_range_allows(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(v) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else { return true };
    let v = v.trim();
    if v.starts_with('"') {
        return stored.get(header::ETAG).and_then(|e| e.to_str().ok()).is_some_and(|e| e.trim() == v);
    }
    stored.get(header::LAST_MODIFIED).and_then(|l| l.to_str().ok()).is_some_and(|l| l.trim() == v)
}

fn only_if_cached_miss() -> Response<Body> {
    text(StatusCode::GATEWAY_TIMEOUT, "504 gateway timeout: only-if-cached, and no usable stored response")
}

fn strip_body_fields(h: &mut HeaderMap) {
    for name in
        [header::CONTENT_LENGTH, header::CONTENT_TYPE, header::CONTENT_RANGE, header::CONTENT_ENCODING]
    {
        h.remove(name);
    }
}

fn add_status(h: &mut HeaderMap, outcome: Outcome, name: &str) {
    h.insert("x-cache", outcome.x_cache());
    if let Ok(v) = HeaderValue::from_str(&outcome.cache_status(name)) {
        h.append("cache-status", v);
    }
}

/// Streams `len` bytes of an open file (opened before answering, so eviction cannot pull it
/// away mid-response).
fn file_body(file: tokio::fs::File, len: u64) -> Body {
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let want = left.min(256 * 1024) as usize;
        let mut buf = vec![0u8; want];
        match file.read_exact(&mut buf).await {
            Ok(_) => Some((Ok(hyper::body::Frame::data(Bytes::from(buf))), (file, left - want as u64))),
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    http_body_util::StreamBody::new(stream).boxed()
}
