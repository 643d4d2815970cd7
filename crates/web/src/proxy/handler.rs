//! The caching proxy's request flow, as a thin driver: setup, ACL and loop checks, then for
//! GET/HEAD the cache flow decided by the pure [planner](super::plan) (fresh hit,
//! stale-while-revalidate, revalidation, collapsed misses, only-if-cached) and performed with
//! the I/O modules: [`fetch`](super::fetch) (origin requests), [`tee`](super::tee) (storing
//! while streaming), [`serve`](super::serve) (answers from the store), [`admin`](super::admin)
//! (metrics, purge). Unsafe methods pass through and invalidate. Only this driver reads the
//! clock.

use super::collapse::{self, Collapser, LeadGuard, Turn};
use super::config::ProxyConfig;
use super::dest::{DestDenied, DestPolicy};
use super::fetch::{Target, tls_clients};
use super::metrics::{Fwd, Outcome, ProxyMetrics};
use super::origin::{self, CLIENT_CONDITIONALS, Origin, OriginClient};
use super::origin_dns::OriginResolver;
use super::plan::{self, AfterOrigin, Lookup, Step};
use super::policy::{self, PolicyOptions, strip_hop_by_hop};
use super::serve::{add_status, only_if_cached_miss, text};
use super::store::{Entry, Store, StoreConfig};
use crate::body::{self, Body};
use appnet_netkit::acl::AccessList;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// CDN push could not be set up (the secret file).
    #[error("{0}")]
    Push(String),
    /// TLS towards `https://` origins could not be set up (CA files).
    #[error("TLS to origins: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// The proxy's shared state (one per listener, shared by all connections).
pub struct Proxy {
    pub(super) cfg: ProxyConfig,
    pub(super) store: Store,
    pub(super) collapser: Arc<Collapser>,
    pub(super) metrics: ProxyMetrics,
    pub(super) client: OriginClient,
    /// One client per `https://` origin (by authority), each pinned to it.
    pub(super) tls_clients: HashMap<String, OriginClient>,
    pub(super) opts: PolicyOptions,
    pub(super) allow: AccessList,
    pub(super) purge_allow: AccessList,
    pub(super) reverse: Option<Origin>,
    pub(super) origins: HashMap<String, Origin>,
    pub(super) via: HeaderValue,
    /// Header fields added to requests to origins: Via, and Surrogate-Capability in reverse mode.
    pub(super) upstream_added: HeaderMap,
    /// Forward mode: where the proxy may connect (also for CONNECT).
    pub(super) dest: Option<Arc<DestPolicy>>,
    /// Resolves CONNECT targets (the same resolver as the origin client's).
    pub(super) resolver: OriginResolver,
    /// This proxy's token in the `Via` of requests it forwards: seeing it again in a request
    /// means a forwarding loop.
    pub(super) loop_token: String,
    /// Client header fields not forwarded upstream (host overrides, unless configured).
    pub(super) strip_upstream: Vec<header::HeaderName>,
    /// CDN push (when a secret file is configured).
    pub(super) push: Option<super::push::PushState>,
}

/// Client header fields that name another host and are not part of the cache key (an origin
/// reflecting one would let a client poison the cache); not forwarded unless
/// `forward_host_overrides`.
pub const HOST_OVERRIDES: [&str; 5] =
    ["x-forwarded-host", "x-host", "x-forwarded-server", "x-original-url", "x-rewrite-url"];

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
        let push = match &cfg.push_secret_file {
            None => None,
            Some(f) => Some(
                super::push::PushState::new(
                    f,
                    Duration::from_secs(cfg.push_window_secs.max(1)),
                    cfg.push_max_remembered,
                    cfg.push_concurrency,
                )
                .map_err(SetupError::Push)?,
            ),
        };
        Ok(Proxy {
            push,
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

    /// Where a request goes (origin, cache key, upstream Host), or the answer refusing it.
    pub(super) fn target<B>(&self, req: &Request<B>) -> Result<Target, Box<Response<Body>>> {
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
    pub async fn handle(self: &Arc<Self>, req: Request<Body>, peer: SocketAddr) -> Response<Body> {
        self.metrics.requests.inc();
        if !self.allowed(peer) {
            self.metrics.denied.inc();
            return text(StatusCode::FORBIDDEN, format!("{} is not allowed to use this proxy", peer.ip()));
        }
        if let Some(resp) = self.precheck(&req) {
            return resp;
        }
        if let Some(resp) = self.metrics_page(&req, peer) {
            return resp;
        }
        if self.is_push(&req) {
            return self.push(req, peer).await;
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

    /// Unsafe and other uncacheable methods: forward, stream back, invalidate on success.
    async fn pass(&self, req: Request<Body>, target: Target, peer: SocketAddr) -> Response<Body> {
        self.metrics.passes.inc();
        let (parts, body) = req.into_parts();
        let up = match self.upstream(parts.method.clone(), &target, &parts.headers, peer, body) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let resp = match self.fetch(&target.origin, up).await {
            Ok(r) => r,
            Err(e) => return self.origin_failure(&target, e),
        };
        for url in plan::invalidations(&parts.method, &target.key, resp.status(), resp.headers()) {
            let n = self.store.remove(&url);
            self.metrics.purged.add(n as u64);
        }
        let (mut rp, incoming) = resp.into_parts();
        strip_hop_by_hop(&mut rp.headers);
        add_status(&mut rp.headers, Outcome::Pass, &self.cfg.name);
        Response::from_parts(rp, self.counted(incoming))
    }

    /// An origin body passed to the client as it comes, counted in `bytes_fetched`.
    fn counted(&self, incoming: hyper::body::Incoming) -> Body {
        let metrics = self.metrics.clone();
        incoming
            .map_frame(move |f| {
                if let Some(d) = f.data_ref() {
                    metrics.bytes_fetched.add(d.len() as u64);
                }
                f
            })
            .map_err(io::Error::other)
            .boxed()
    }

    /// GET and HEAD through the cache: asks the [planner](plan::plan) what to do with the
    /// request and what the store holds, and does it. A collapsed miss waits for its leader
    /// and plans again (at most three rounds).
    async fn cached(
        self: &Arc<Self>,
        req: Request<Body>,
        target: Target,
        peer: SocketAddr,
    ) -> Response<Body> {
        let (parts, _body) = req.into_parts();
        let method = parts.method;
        let headers = parts.headers;
        let mut why = Fwd::UriMiss;
        for round in 0..3 {
            let now = SystemTime::now();
            let entry = self.store.lookup(&target.key, &headers);
            let lookup = match &entry {
                Some(e) => Lookup::Found(&e.stored),
                None if self.store.lookup_any(&target.key) => Lookup::OtherVariants,
                None => Lookup::Nothing,
            };
            let step = plan::plan(lookup, &method, &headers, now);
            match (step, entry) {
                (Step::ServeStored { outcome, answer }, Some(entry)) => {
                    self.metrics.hits.inc();
                    return self.serve(&entry, &method, answer, outcome, now).await;
                }
                (Step::ServeStaleAndRevalidate { ttl, answer, validators }, Some(entry)) => {
                    self.metrics.stale.inc();
                    self.background_revalidate(validators, &target, &headers, peer);
                    return self.serve(&entry, &method, answer, Outcome::Stale { ttl }, now).await;
                }
                (Step::Revalidate { validators }, Some(entry)) => {
                    return self.revalidate(entry, validators, &method, &headers, &target, peer).await;
                }
                (Step::Answer504OnlyIfCached, _) => return only_if_cached_miss(),
                (Step::FetchPassThrough { why }, _) => {
                    let as_is = Some(HeaderMap::new());
                    return self.miss(&method, &headers, &target, peer, None, why, as_is).await;
                }
                (Step::FetchAndStore { why: w, collapse }, _) => {
                    why = w;
                    if !collapse || !self.cfg.collapse || round == 2 {
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
                // Steps on a stored entry come only with one, and `Pass` only for methods
                // `handle` does not send here; a plain fetch is the safe answer regardless.
                (step, _) => {
                    tracing::debug!(?step, "unexpected cache step; fetching");
                    break;
                }
            }
        }
        self.miss(&method, &headers, &target, peer, None, why, None).await
    }

    /// Conditional GET to the origin for a stale (or client-refreshed) stored response; the
    /// planner's [`on_origin_response`](plan::on_origin_response) says what its answer means.
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
                if plan::on_origin_failure(&entry.stored, headers, now) {
                    self.metrics.stale.inc();
                    let outcome = Outcome::Stale { ttl: entry.stored.ttl(now) };
                    return self
                        .serve(&entry, method, plan::answer(&entry.stored, headers), outcome, now)
                        .await;
                }
                return self.origin_failure(target, e);
            }
        };
        let now = SystemTime::now();
        let after = plan::on_origin_response(
            &entry.stored,
            headers,
            resp.status(),
            resp.headers(),
            request_time,
            now,
            &self.opts,
        );
        match after {
            AfterOrigin::Freshen(fresh) => {
                self.metrics.revalidations.inc();
                let entry = self.store.refresh(&entry, *fresh).await;
                let outcome = Outcome::Revalidated { ttl: entry.stored.ttl(now) };
                self.serve(&entry, method, plan::answer(&entry.stored, headers), outcome, now).await
            }
            AfterOrigin::ServeStale => {
                self.metrics.stale.inc();
                let outcome = Outcome::Stale { ttl: entry.stored.ttl(now) };
                self.serve(&entry, method, plan::answer(&entry.stored, headers), outcome, now).await
            }
            // A 304 for another representation: fetch it whole.
            AfterOrigin::Refetch => self.miss(method, headers, target, peer, None, Fwd::Stale, None).await,
            AfterOrigin::Forward => {
                self.metrics.misses.inc();
                self.respond_from_origin(resp, method, headers, target, None, Fwd::Stale, request_time)
            }
        }
    }

    /// Stale-while-revalidate: refreshes the stored response in the background (one request
    /// per key at a time), conditional on `validators` when there are any.
    fn background_revalidate(
        self: &Arc<Self>,
        validators: Option<HeaderMap>,
        target: &Target,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) {
        let Turn::Lead(guard) = self.collapser.turn(&target.key, Instant::now()) else { return };
        let me = self.clone();
        let target = target.clone();
        let headers = headers.clone();
        tokio::spawn(async move {
            let _ = me.miss(&Method::GET, &headers, &target, peer, Some(guard), Fwd::Stale, validators).await;
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
                && let AfterOrigin::Freshen(fresh) = plan::on_origin_response(
                    &entry.stored,
                    headers,
                    StatusCode::NOT_MODIFIED,
                    resp.headers(),
                    request_time,
                    SystemTime::now(),
                    &self.opts,
                )
            {
                self.metrics.revalidations.inc();
                self.store.refresh(&entry, *fresh).await;
            }
            drop(guard);
            return text(StatusCode::NOT_MODIFIED, "");
        }
        self.metrics.misses.inc();
        self.respond_from_origin(resp, method, headers, target, guard, why, request_time)
    }

    /// Streams an origin response to the client, through the [store tee](super::tee) when
    /// the planner says it may be [stored](plan::storable).
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
        let stored =
            self.storable_response(&target.key, method, req_headers, &mut rp, request_time, response_time);
        let Some(stored) = stored else {
            if let Some(g) = guard {
                g.uncacheable(Instant::now());
            }
            add_status(&mut rp.headers, Outcome::Miss { stored: false, why }, &self.cfg.name);
            return Response::from_parts(rp, self.counted(incoming));
        };
        add_status(&mut rp.headers, Outcome::Miss { stored: true, why }, &self.cfg.name);
        self.tee(rp, incoming, stored, req_headers, guard)
    }

    /// The policy to store an origin response under `key` (see [`plan::storable`]), or `None`
    /// when it may not be stored. Surrogate-Control is for this proxy: it sets the stored
    /// freshness, and is removed from `rp` (not forwarded).
    pub(super) fn storable_response(
        &self,
        key: &str,
        method: &Method,
        req_headers: &HeaderMap,
        rp: &mut http::response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Option<policy::Stored> {
        let opts = &self.opts;
        match rp.headers.remove(policy::SURROGATE_CONTROL) {
            Some(sc) => {
                let mut with_sc = rp.headers.clone();
                with_sc.insert(policy::SURROGATE_CONTROL, sc);
                plan::storable(
                    key,
                    method,
                    req_headers,
                    rp.status,
                    &with_sc,
                    request_time,
                    response_time,
                    opts,
                )
            }
            None => plan::storable(
                key,
                method,
                req_headers,
                rp.status,
                &rp.headers,
                request_time,
                response_time,
                opts,
            ),
        }
    }
}
