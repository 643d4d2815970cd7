//! The RFC 9111 policy core, sans-IO: which responses may be stored, whether a stored response
//! may answer a request (`now` is an argument), how to revalidate it, how a 304 refreshes it, and
//! which URLs an unsafe method invalidates.
//!
//! Built on `http-cache-semantics` (storability, freshness from max-age / s-maxage / Expires /
//! heuristic, request max-age / min-fresh / max-stale / no-cache, Pragma, must-revalidate,
//! proxy-revalidate, private, no-store), plus what it lacks: the RFC 9111 §4.2.3 corrected initial
//! age (apparent age and response delay), a cap on heuristic freshness, Vary variant selection,
//! `only-if-cached`, `stale-while-revalidate` and `stale-if-error` (RFC 5861), conditional
//! requests answered from the cache, 304 merging that keeps repeated header fields, and
//! invalidation after unsafe methods.

use crate::files::conditional::list_matches;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_cache_semantics::{BeforeRequest, CacheOptions, CachePolicy};
use std::time::{Duration, SystemTime};

/// Status codes a response may have to be stored with heuristic freshness (RFC 9110 §15.1).
const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Header fields that are per-connection and never stored or forwarded (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Header fields a 304 must not change in the stored response (they describe the stored body).
const KEEP_ON_304: &[&str] = &["content-length", "content-encoding", "transfer-encoding", "content-range"];

/// Tunables of the policy.
#[derive(Debug, Clone, Copy)]
pub struct PolicyOptions {
    /// Fraction of (Date − Last-Modified) used as heuristic freshness (RFC 9111 §4.2.2).
    pub heuristic_fraction: f32,
    /// Upper bound of heuristic freshness.
    pub heuristic_max: Duration,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions { heuristic_fraction: 0.1, heuristic_max: Duration::from_secs(86_400) }
    }
}

/// A parsed Cache-Control (directive names lower case, values unquoted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl(Vec<(String, Option<String>)>);

impl CacheControl {
    /// Parses every Cache-Control field in `headers`.
    pub fn parse(headers: &HeaderMap) -> CacheControl {
        let mut out = Vec::new();
        for v in headers.get_all(header::CACHE_CONTROL) {
            let Ok(s) = v.to_str() else { continue };
            for part in split_outside_quotes(s) {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                match part.split_once('=') {
                    Some((k, v)) => out
                        .push((k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_string()))),
                    None => out.push((part.to_ascii_lowercase(), None)),
                }
            }
        }
        CacheControl(out)
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The value of `name` as seconds (`None` when absent or not a number).
    pub fn secs(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref()?.parse().ok())
    }

    /// Whether there are no directives.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn split_outside_quotes(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Everything kept about one stored response besides its body.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The cache key (absolute URL).
    pub key: String,
    /// Response status.
    pub status: StatusCode,
    /// Request header fields at the time (used for Vary and by the policy).
    pub req_headers: HeaderMap,
    /// Response header fields as received, hop-by-hop fields removed, `Age` = corrected
    /// initial age.
    pub res_headers: HeaderMap,
    /// When the response was received.
    pub response_time: SystemTime,
    /// Length of the stored body.
    pub body_len: u64,
}

/// A stored response's metadata with its policy, ready to answer lookups.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The stored facts.
    pub meta: Meta,
    policy: CachePolicy,
    res_cc: CacheControl,
    /// Freshness ends here (precomputed so a plain hit needs no parsing).
    pub fresh_until: SystemTime,
    /// Age when received (seconds).
    initial_age: u64,
    vary: Vec<HeaderName>,
    vary_star: bool,
}

fn uri_of(key: &str) -> Uri {
    key.parse().unwrap_or_else(|_| Uri::from_static("/"))
}

fn policy_request(key: &str, method: &Method, headers: &HeaderMap) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri_of(key);
    *req.headers_mut() = headers.clone();
    // The policy compares Host; the key already holds the authority.
    req.headers_mut().remove(header::HOST);
    req
}

/// The value of a header as one string (repeated fields joined with ", ").
pub fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(s.trim());
            }
            None => out = Some(s.trim().to_string()),
        }
    }
    out
}

fn date_header(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    headers.get(name)?.to_str().ok().and_then(|s| httpdate::parse_http_date(s.trim()).ok())
}

/// Removes hop-by-hop fields and the fields named by Connection.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Whether a request method may be answered from the cache.
pub fn is_cacheable_method(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Whether a method is unsafe and so invalidates what the cache holds for the URL (RFC 9111 §4.4).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
        && method.as_str() != "PURGE"
}

/// The URLs an unsafe request invalidates once the origin answered it with a non-error status:
/// the target and the same-origin Location and Content-Location.
pub fn invalidation_targets(key: &str, status: StatusCode, res_headers: &HeaderMap) -> Vec<String> {
    if !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut out = vec![key.to_string()];
    let base = uri_of(key);
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(v) = res_headers.get(name).and_then(|v| v.to_str().ok()) else { continue };
        if let Some(url) = resolve(&base, v.trim())
            && !out.contains(&url)
        {
            out.push(url);
        }
    }
    out
}

/// Resolves `reference` against `base`, keeping only same-origin results.
fn resolve(base: &Uri, reference: &str) -> Option<String> {
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str().to_ascii_lowercase();
    if reference.starts_with("http://") || reference.starts_with("https://") {
        let u: Uri = reference.parse().ok()?;
        if u.scheme_str()? != scheme || u.authority()?.as_str().to_ascii_lowercase() != authority {
            return None;
        }
        let pq = u.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return Some(format!("{scheme}://{authority}{pq}"));
    }
    if reference.starts_with('/') {
        return Some(format!("{scheme}://{authority}{reference}"));
    }
    let path = base.path();
    let dir = &path[..path.rfind('/').map(|i| i + 1).unwrap_or(0)];
    Some(format!("{scheme}://{authority}{dir}{reference}"))
}

/// What a lookup decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve the stored response as is.
    Fresh,
    /// Serve it stale and revalidate in the background (stale-while-revalidate).
    StaleWhileRevalidate,
    /// Ask the origin with these conditional header fields first.
    Revalidate(HeaderMap),
}

/// Why a response is not stored (for logs and Cache-Status `detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// RFC 9111 forbids it (no-store, private, Authorization, status, method...).
    Forbidden,
    /// Vary: * can never be matched.
    VaryStar,
}

impl Stored {
    /// Builds the policy for a response just received: `request_time` is when the request
    /// was sent, `response_time` when the response head arrived. Returns why not when the
    /// response may not be stored.
    #[allow(clippy::too_many_arguments)]
    pub fn from_response(
        key: &str,
        method: &Method,
        req_headers: &HeaderMap,
        status: StatusCode,
        res_headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        opts: &PolicyOptions,
    ) -> Result<Stored, NotStored> {
        if method != Method::GET {
            return Err(NotStored::Forbidden);
        }
        let mut res = res_headers.clone();
        strip_hop_by_hop(&mut res);
        // RFC 9111 §4.2.3: corrected initial age.
        let age_value = parse_age(&res);
        let apparent = date_header(&res, header::DATE)
            .and_then(|d| response_time.duration_since(d).ok())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let delay = response_time.duration_since(request_time).map(|d| d.as_secs()).unwrap_or(0);
        let initial_age = apparent.max(age_value.saturating_add(delay));
        if initial_age > 0 {
            res.insert(header::AGE, HeaderValue::from(initial_age));
        } else {
            res.remove(header::AGE);
        }
        let meta = Meta {
            key: key.to_string(),
            status,
            req_headers: req_headers.clone(),
            res_headers: res,
            response_time,
            body_len: 0,
        };
        if surrogate_control(&meta.res_headers).has("no-store") {
            return Err(NotStored::Forbidden);
        }
        let stored = Stored::from_meta(meta, opts);
        if !stored.policy.is_storable() {
            return Err(NotStored::Forbidden);
        }
        if stored.vary_star {
            return Err(NotStored::VaryStar);
        }
        Ok(stored)
    }

    /// Rebuilds the policy from stored facts (after a restart, or a 304 refresh).
    pub fn from_meta(meta: Meta, opts: &PolicyOptions) -> Stored {
        let res_cc = CacheControl::parse(&meta.res_headers);
        let mut policy_res = meta.res_headers.clone();
        // The library reads proxy-revalidate as "never fresh"; RFC 9111 §5.2.2.8 only forbids
        // serving it stale, which `stale_forbidden` handles. And heuristic freshness gets a cap:
        // the library is given the explicit max-age it would have computed, bounded.
        let mut directives: Vec<String> = res_cc
            .0
            .iter()
            .filter(|(k, _)| k != "proxy-revalidate")
            .map(|(k, v)| match v {
                Some(v) if v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => format!("{k}={v}"),
                Some(v) => format!("{k}=\"{v}\""),
                None => k.clone(),
            })
            .collect();
        let explicit =
            res_cc.has("max-age") || res_cc.has("s-maxage") || policy_res.contains_key(header::EXPIRES);
        if !explicit && HEURISTIC_STATUSES.contains(&meta.status.as_u16()) {
            let date = date_header(&meta.res_headers, header::DATE).unwrap_or(meta.response_time);
            if let Some(lm) = date_header(&meta.res_headers, header::LAST_MODIFIED)
                && let Ok(since) = date.duration_since(lm)
            {
                let secs = (since.as_secs_f64() * f64::from(opts.heuristic_fraction)) as u64;
                directives.push(format!("max-age={}", secs.min(opts.heuristic_max.as_secs())));
            }
        }
        // Surrogate-Control (Edge Architecture 1.0) is addressed to reverse proxies and takes
        // precedence over Cache-Control for them.
        let sc = surrogate_control(&meta.res_headers);
        if let Some(secs) = sc.secs("max-age") {
            directives = vec![format!("max-age={secs}")];
            policy_res.remove(header::EXPIRES);
            policy_res.remove(header::PRAGMA);
        }
        policy_res.remove(header::CACHE_CONTROL);
        if !directives.is_empty()
            && let Ok(v) = HeaderValue::from_str(&directives.join(", "))
        {
            policy_res.insert(header::CACHE_CONTROL, v);
        }
        // The library reads only IMF-fixdate; RFC 9110 §5.6.7 also allows RFC 850 and asctime.
        for name in [header::DATE, header::EXPIRES, header::LAST_MODIFIED] {
            if let Some(t) = date_header(&policy_res, name.clone())
                && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t))
            {
                policy_res.insert(name, v);
            }
        }
        let mut resp = http::Response::new(());
        *resp.status_mut() = meta.status;
        *resp.headers_mut() = policy_res;
        let req = policy_request(&meta.key, &Method::GET, &meta.req_headers);
        let options =
            CacheOptions { shared: true, cache_heuristic: opts.heuristic_fraction, ..Default::default() };
        let policy = CachePolicy::new_options(&req, &resp, meta.response_time, options);
        let fresh_until = meta.response_time + policy.time_to_live(meta.response_time);
        let initial_age = meta
            .res_headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut vary = Vec::new();
        let mut vary_star = false;
        for v in meta.res_headers.get_all(header::VARY) {
            for name in v.to_str().unwrap_or("*").split(',') {
                let name = name.trim();
                if name == "*" {
                    vary_star = true;
                } else if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    vary.push(n);
                }
            }
        }
        Stored { meta, policy, res_cc, fresh_until, initial_age, vary, vary_star }
    }

    /// The current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> u64 {
        self.initial_age + now.duration_since(self.meta.response_time).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// Seconds of freshness left (negative when stale).
    pub fn ttl(&self, now: SystemTime) -> i64 {
        match self.fresh_until.duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    /// Whether this variant was stored for a request that matches `req` on the Vary fields.
    pub fn vary_matches(&self, req: &HeaderMap) -> bool {
        !self.vary_star
            && self.vary.iter().all(|name| {
                joined(req, name.as_str()).map(|s| normalise(&s))
                    == joined(&self.meta.req_headers, name.as_str()).map(|s| normalise(&s))
            })
    }

    /// Whether two stored variants answer the same Vary selection (the newer replaces the older).
    pub fn same_variant(&self, other: &Stored) -> bool {
        self.vary == other.vary && self.vary_matches(&other.meta.req_headers)
    }

    /// Whether the origin forbids serving this stale (must-revalidate, proxy-revalidate,
    /// no-cache, s-maxage implies proxy-revalidate for shared caches).
    fn stale_forbidden(&self) -> bool {
        self.res_cc.has("must-revalidate")
            || self.res_cc.has("proxy-revalidate")
            || self.res_cc.has("no-cache")
            || self.res_cc.has("s-maxage")
    }

    /// Decides how to use this stored response for request `req` at `now`.
    pub fn decide(&self, method: &Method, req: &HeaderMap, now: SystemTime) -> Decision {
        let plain = !req.contains_key(header::CACHE_CONTROL) && !req.contains_key(header::PRAGMA);
        let fresh = if plain {
            now < self.fresh_until
        } else {
            // HEAD is answered from the stored GET (RFC 9110 §9.3.2).
            let m = if *method == Method::HEAD { &Method::GET } else { method };
            let r = policy_request(&self.meta.key, m, req);
            matches!(self.policy.before_request(&r, now), BeforeRequest::Fresh(_))
        };
        if fresh {
            return Decision::Fresh;
        }
        let req_cc = CacheControl::parse(req);
        let client_wants_origin = req_cc.has("no-cache")
            || req_cc.secs("max-age").is_some()
            || req_cc.has("min-fresh")
            || (!req.contains_key(header::CACHE_CONTROL)
                && joined(req, "pragma").is_some_and(|p| p.to_ascii_lowercase().contains("no-cache")));
        if !client_wants_origin
            && !self.stale_forbidden()
            && now >= self.fresh_until
            && let Some(swr) = self.res_cc.secs("stale-while-revalidate")
        {
            let stale_for = now.duration_since(self.fresh_until).map(|d| d.as_secs()).unwrap_or(0);
            if stale_for < swr {
                return Decision::StaleWhileRevalidate;
            }
        }
        Decision::Revalidate(self.validators())
    }

    /// Whether the stored response may be served stale because the origin cannot be reached
    /// at all (RFC 9111 §4.2.4 "disconnected"), unless the origin forbade stale use.
    pub fn stale_if_disconnected_ok(&self) -> bool {
        !self.stale_forbidden()
    }

    /// The conditional header fields that revalidate this response.
    pub fn validators(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(etag) = self.meta.res_headers.get(header::ETAG) {
            h.insert(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = self.meta.res_headers.get(header::LAST_MODIFIED) {
            h.insert(header::IF_MODIFIED_SINCE, lm.clone());
        }
        h
    }

    /// Whether the stored response may be served stale because the origin failed
    /// (stale-if-error in the response or the request, RFC 5861 §4).
    pub fn stale_if_error_ok(&self, req: &HeaderMap, now: SystemTime) -> bool {
        if self.stale_forbidden() && !self.res_cc.has("stale-if-error") {
            return false;
        }
        let window = self.res_cc.secs("stale-if-error").max(CacheControl::parse(req).secs("stale-if-error"));
        let Some(window) = window else { return false };
        let stale_for = now.duration_since(self.fresh_until).map(|d| d.as_secs()).unwrap_or(0);
        stale_for <= window
    }

    /// The stored response refreshed by a 304 from the origin (RFC 9111 §4.3.4): the 304's
    /// header fields replace the stored ones (all values of each), except those describing the
    /// body. Returns `None` when the 304's strong ETag names another representation.
    pub fn refreshed(
        &self,
        not_modified: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        opts: &PolicyOptions,
    ) -> Option<Stored> {
        if let Some(new) = not_modified.get(header::ETAG).and_then(|v| v.to_str().ok()) {
            let old = self.meta.res_headers.get(header::ETAG).and_then(|v| v.to_str().ok());
            let weakly = |s: &str| s.trim().trim_start_matches("W/").to_string();
            if let Some(old) = old
                && weakly(old) != weakly(new)
            {
                return None;
            }
        }
        let mut res = self.meta.res_headers.clone();
        res.remove(header::AGE);
        let mut incoming = not_modified.clone();
        strip_hop_by_hop(&mut incoming);
        for name in incoming.keys() {
            if KEEP_ON_304.contains(&name.as_str()) {
                continue;
            }
            res.remove(name);
            for v in incoming.get_all(name) {
                res.append(name.clone(), v.clone());
            }
        }
        let mut fresh = Stored::from_response(
            &self.meta.key,
            &Method::GET,
            &self.meta.req_headers,
            self.meta.status,
            &res,
            request_time,
            response_time,
            opts,
        )
        .ok()?;
        fresh.meta.body_len = self.meta.body_len;
        Some(fresh)
    }

    /// The response header fields to send for this stored response at `now` (Age updated,
    /// Surrogate-Control consumed).
    pub fn response_headers(&self, now: SystemTime) -> HeaderMap {
        let mut h = self.meta.res_headers.clone();
        h.remove(SURROGATE_CONTROL);
        h.insert(header::AGE, HeaderValue::from(self.age(now)));
        h
    }

    /// Whether the client's own conditional request (If-None-Match / If-Modified-Since) is
    /// satisfied by this stored response, so a 304 answers it.
    pub fn client_not_modified(&self, req: &HeaderMap) -> bool {
        if !self.meta.status.is_success() {
            return false;
        }
        if let Some(inm) = joined(req, "if-none-match") {
            return self
                .meta
                .res_headers
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|etag| list_matches(&inm, etag, false));
        }
        match (
            date_header(req, header::IF_MODIFIED_SINCE),
            date_header(&self.meta.res_headers, header::LAST_MODIFIED),
        ) {
            (Some(ims), Some(lm)) => lm <= ims,
            _ => false,
        }
    }
}

/// The Age value: the leading digits of the first field (`7200.5`, `7200;x=1` → 7200); a
/// field without digits counts as very old, so the response is stale rather than wrongly fresh.
fn parse_age(res: &HeaderMap) -> u64 {
    let Some(v) = res.get(header::AGE) else { return 0 };
    let s = String::from_utf8_lossy(v.as_bytes());
    let digits: String = s.trim().chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return u32::MAX as u64;
    }
    digits.parse().unwrap_or(u32::MAX as u64)
}

/// The Surrogate-Control field name.
pub const SURROGATE_CONTROL: &str = "surrogate-control";

/// The Surrogate-Control directives meant for every surrogate (targeted ones, `;name`, are
/// for other surrogates and ignored), parsed like Cache-Control.
pub fn surrogate_control(headers: &HeaderMap) -> CacheControl {
    let mut h = HeaderMap::new();
    for v in headers.get_all(SURROGATE_CONTROL) {
        let Ok(s) = v.to_str() else { continue };
        let untargeted: Vec<&str> =
            split_outside_quotes(s).into_iter().filter(|d| !d.contains(';')).collect();
        if let Ok(v) = HeaderValue::from_str(&untargeted.join(",")) {
            h.append(header::CACHE_CONTROL, v);
        }
    }
    CacheControl::parse(&h)
}

fn normalise(s: &str) -> String {
    s.split(',').map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join(",")
}

/// Whether the request forbids storing its response (request `no-store`).
pub fn request_no_store(req: &HeaderMap) -> bool {
    CacheControl::parse(req).has("no-store")
}

/// Whether the client asked to be answered only from the cache (504 otherwise).
pub fn only_if_cached(req: &HeaderMap) -> bool {
    CacheControl::parse(req).has("only-if-cached")
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
