//! The cache flow as a pure planner (RFC 9111), so every decision the proxy makes about a
//! request can be tested in virtual time without sockets: [`plan`] turns a request and what the
//! store holds into a [`Step`]; [`on_origin_response`] and [`on_origin_failure`] decide what to
//! do with the origin's answer to a revalidation; [`storable`] whether a fetched response is
//! kept; [`answer`] how a stored response answers (304, whole, one byte range, 416);
//! [`invalidations`] what an unsafe method removes. No clock is read here: callers pass `now`.
//! The tokio driver ([`handler`](super::handler)) performs each step.

use super::metrics::{Fwd, Outcome};
use super::origin::CLIENT_CONDITIONALS;
use super::policy::{self, Decision, PolicyOptions, Stored};
use crate::files::range;
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};
use std::time::SystemTime;

/// What the store holds for a request's key (the driver looks it up; the planner only reads it).
#[derive(Clone, Copy)]
pub enum Lookup<'a> {
    /// Nothing stored under the key.
    Nothing,
    /// Variants stored under the key, none for this request's Vary selection.
    OtherVariants,
    /// The stored response selected for this request.
    Found(&'a Stored),
}

/// How a stored response answers a request (status, and which bytes of the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The client's own validators match: 304 without a body.
    NotModified,
    /// The whole stored response with its stored status.
    Whole(StatusCode),
    /// 206: `len` bytes from `start`, with this `Content-Range` value.
    Part {
        /// First byte offset.
        start: u64,
        /// Number of bytes.
        len: u64,
        /// The `Content-Range` field value.
        content_range: String,
    },
    /// 416: the range lies outside the `len` bytes stored.
    Unsatisfiable {
        /// The stored body's length (for `Content-Range: bytes */len`).
        len: u64,
    },
}

/// What to do with a request, decided from the request, the store's content and `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer from the stored response.
    ServeStored {
        /// For `X-Cache` and `Cache-Status` (a fresh hit, with its TTL).
        outcome: Outcome,
        /// Status and body slice.
        answer: Answer,
    },
    /// Answer from the stored response, stale, and revalidate it in the background
    /// (stale-while-revalidate) with these conditional fields (`None`: none are known, fetch it
    /// whole).
    ServeStaleAndRevalidate {
        /// Seconds of freshness left (negative).
        ttl: i64,
        /// Status and body slice.
        answer: Answer,
        /// The background request's validators.
        validators: Option<HeaderMap>,
    },
    /// Ask the origin with these conditional fields (instead of the client's), then see
    /// [`on_origin_response`].
    Revalidate {
        /// If-None-Match / If-Modified-Since from the stored validators.
        validators: HeaderMap,
    },
    /// Fetch the response (client conditionals removed) and store it if allowed; concurrent
    /// misses may be collapsed onto one fetch when `collapse`.
    FetchAndStore {
        /// The RFC 9211 forward reason.
        why: Fwd,
        /// Whether request collapsing applies (a plain miss, not a HEAD refreshing).
        collapse: bool,
    },
    /// Forward the client's request as it is (HEAD, Range or conditional requests for
    /// something not stored: a 206 or 304 passes through, nothing is stored).
    FetchPassThrough {
        /// The RFC 9211 forward reason.
        why: Fwd,
    },
    /// `only-if-cached` and nothing usable is stored: 504 (RFC 9111 §5.2.1.7).
    Answer504OnlyIfCached,
    /// Not a cacheable method: forward it, then remove what [`invalidations`] names.
    Pass,
}

/// Plans a request: `method` and `req` (its header fields), `lookup` what the store holds for
/// its key, at `now`.
pub fn plan(lookup: Lookup<'_>, method: &Method, req: &HeaderMap, now: SystemTime) -> Step {
    if !policy::is_cacheable_method(method) {
        return Step::Pass;
    }
    let only_cached = policy::only_if_cached(req);
    let why = match lookup {
        Lookup::Found(stored) => {
            return match stored.decide(method, req, now) {
                Decision::Fresh => Step::ServeStored {
                    outcome: Outcome::Hit { ttl: stored.ttl(now) },
                    answer: answer(stored, req),
                },
                Decision::StaleWhileRevalidate => Step::ServeStaleAndRevalidate {
                    ttl: stored.ttl(now),
                    answer: answer(stored, req),
                    validators: Some(stored.validators()).filter(|v| !v.is_empty()),
                },
                Decision::Revalidate(_) if only_cached => Step::Answer504OnlyIfCached,
                // A HEAD needing the origin goes there as HEAD (write-through).
                Decision::Revalidate(_) if *method == Method::HEAD => {
                    Step::FetchAndStore { why: Fwd::Stale, collapse: false }
                }
                Decision::Revalidate(validators) => Step::Revalidate { validators },
            };
        }
        _ if only_cached => return Step::Answer504OnlyIfCached,
        Lookup::OtherVariants => Fwd::VaryMiss,
        Lookup::Nothing => Fwd::UriMiss,
    };
    if *method == Method::HEAD
        || req.contains_key(header::RANGE)
        || CLIENT_CONDITIONALS.iter().any(|h| req.contains_key(h))
    {
        return Step::FetchPassThrough { why };
    }
    let why = if policy::CacheControl::parse(req).has("no-cache") { Fwd::Request } else { why };
    Step::FetchAndStore { why, collapse: true }
}

/// How `stored` answers request fields `req`: a 304 when the client's validators match; one
/// byte range of a stored complete 200 (If-Range permitting; several ranges get the whole
/// representation, which RFC 9110 allows); else the whole response.
pub fn answer(stored: &Stored, req: &HeaderMap) -> Answer {
    if stored.client_not_modified(req) {
        return Answer::NotModified;
    }
    let status = stored.meta.status;
    let len = stored.meta.body_len;
    if status == StatusCode::OK
        && let Some(value) = req.get(header::RANGE).and_then(|v| v.to_str().ok())
        && if_range_allows(req, &stored.meta.res_headers)
    {
        match range::parse(value, len) {
            range::RangeRequest::Partial(ranges) if ranges.len() == 1 => {
                let r = &ranges[0];
                return Answer::Part { start: r.start, len: r.len(), content_range: r.content_range(len) };
            }
            range::RangeRequest::Unsatisfiable => return Answer::Unsatisfiable { len },
            _ => {}
        }
    }
    Answer::Whole(status)
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

/// What to do with the origin's answer to a [`Step::Revalidate`].
#[derive(Debug, Clone)]
pub enum AfterOrigin {
    /// 304 for the stored representation: replace it by this refreshed one and serve it.
    Freshen(Box<Stored>),
    /// A 5xx, and stale-if-error allows the stored response: serve it stale.
    ServeStale,
    /// A 304 naming another representation: fetch it whole.
    Refetch,
    /// A new response: forward it (and store it if [`storable`]).
    Forward,
}

/// The origin's response head (`status`, `res` fields) to a revalidation of `stored` for a
/// client request with fields `req`; `request_time` when the request left, `response_time`
/// when the head arrived (RFC 9111 §4.3.3, §4.3.4; RFC 5861 §4).
pub fn on_origin_response(
    stored: &Stored,
    req: &HeaderMap,
    status: StatusCode,
    res: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    opts: &PolicyOptions,
) -> AfterOrigin {
    if status == StatusCode::NOT_MODIFIED {
        return match stored.refreshed(res, request_time, response_time, opts) {
            Some(fresh) => AfterOrigin::Freshen(Box::new(fresh)),
            None => AfterOrigin::Refetch,
        };
    }
    if status.is_server_error() && stored.stale_if_error_ok(req, response_time) {
        return AfterOrigin::ServeStale;
    }
    AfterOrigin::Forward
}

/// Whether `stored` may answer when the origin could not be reached at `now` (stale-if-error,
/// or disconnected operation unless the origin forbade stale use).
pub fn on_origin_failure(stored: &Stored, req: &HeaderMap, now: SystemTime) -> bool {
    stored.stale_if_error_ok(req, now) || stored.stale_if_disconnected_ok()
}

/// The policy for a fetched response, when it may be stored: a GET without request
/// `no-store`, not a 206, and storable by RFC 9111 §3 (`res` with Surrogate-Control if any).
#[allow(clippy::too_many_arguments)]
pub fn storable(
    key: &str,
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    res: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    opts: &PolicyOptions,
) -> Option<Stored> {
    if *method != Method::GET || policy::request_no_store(req) || status == StatusCode::PARTIAL_CONTENT {
        return None;
    }
    Stored::from_response(key, method, req, status, res, request_time, response_time, opts).ok()
}

/// The keys an answered request removes from the store: for unsafe methods with a non-error
/// status, the target and its same-origin Location / Content-Location (RFC 9111 §4.4).
pub fn invalidations(method: &Method, key: &str, status: StatusCode, res: &HeaderMap) -> Vec<String> {
    if !policy::is_unsafe(method) {
        return Vec::new();
    }
    policy::invalidation_targets(key, status, res)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
