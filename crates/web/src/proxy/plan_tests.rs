//! The cache flow in virtual time: one test per decision of the planner.

use super::*;
use http::header::{HeaderName, HeaderValue};
use std::time::{Duration, UNIX_EPOCH};

const KEY: &str = "http://origin.test/page";

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

/// A 200 of `len` bytes received at t(0) with these fields (and a Date).
fn stored(res: &[(&str, &str)], len: u64) -> Stored {
    let d = httpdate::fmt_http_date(t(0));
    let mut all = vec![("date", d.as_str())];
    all.extend_from_slice(res);
    let mut s =
        storable(KEY, &Method::GET, &HeaderMap::new(), StatusCode::OK, &hm(&all), t(0), t(0), &opts())
            .expect("storable");
    s.meta.body_len = len;
    s
}

fn opts() -> PolicyOptions {
    PolicyOptions::default()
}

fn get(s: &Stored, req: &[(&str, &str)], at: u64) -> Step {
    plan(Lookup::Found(s), &Method::GET, &hm(req), t(at))
}

#[test]
fn fresh_hit_is_served_with_its_ttl() {
    let s = stored(&[("cache-control", "max-age=60")], 10);
    assert_eq!(
        get(&s, &[], 20),
        Step::ServeStored { outcome: Outcome::Hit { ttl: 40 }, answer: Answer::Whole(StatusCode::OK) }
    );
}

#[test]
fn stale_revalidates_with_the_stored_etag_and_date() {
    let s = stored(
        &[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ],
        10,
    );
    let Step::Revalidate { validators } = get(&s, &[], 61) else { panic!("stale should revalidate") };
    assert_eq!(validators.get(header::IF_NONE_MATCH).unwrap(), "\"v1\"");
    assert_eq!(validators.get(header::IF_MODIFIED_SINCE).unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
    // The client's own conditionals are not what the origin is asked with.
    let Step::Revalidate { validators } = get(&s, &[("if-none-match", "\"other\"")], 61) else { panic!() };
    assert_eq!(validators.get(header::IF_NONE_MATCH).unwrap(), "\"v1\"");
}

#[test]
fn a_304_freshens_the_stored_response_and_keeps_its_body() {
    let s = stored(&[("cache-control", "max-age=60"), ("etag", "\"v1\""), ("x-old", "1")], 10);
    let d = httpdate::fmt_http_date(t(100));
    let res = hm(&[("date", &d), ("cache-control", "max-age=120"), ("etag", "\"v1\""), ("x-old", "2")]);
    let after =
        on_origin_response(&s, &HeaderMap::new(), StatusCode::NOT_MODIFIED, &res, t(100), t(100), &opts());
    let AfterOrigin::Freshen(fresh) = after else { panic!("a 304 should freshen: {after:?}") };
    assert_eq!(fresh.meta.body_len, 10);
    assert_eq!(fresh.meta.res_headers.get("x-old").unwrap(), "2");
    assert_eq!(fresh.ttl(t(100)), 120);
    // Then the next request is a fresh hit again.
    assert!(matches!(get(&fresh, &[], 200), Step::ServeStored { outcome: Outcome::Hit { ttl: 20 }, .. }));
    // A 304 naming another strong ETag cannot refresh this one: fetch it whole.
    let other = hm(&[("etag", "\"v2\"")]);
    assert!(matches!(
        on_origin_response(&s, &HeaderMap::new(), StatusCode::NOT_MODIFIED, &other, t(100), t(100), &opts()),
        AfterOrigin::Refetch
    ));
    // A 200 replaces it.
    assert!(matches!(
        on_origin_response(&s, &HeaderMap::new(), StatusCode::OK, &res, t(100), t(100), &opts()),
        AfterOrigin::Forward
    ));
}

#[test]
fn no_store_in_the_response_or_the_request_is_not_stored() {
    let d = httpdate::fmt_http_date(t(0));
    let res = hm(&[("date", &d), ("cache-control", "no-store")]);
    assert!(
        storable(KEY, &Method::GET, &HeaderMap::new(), StatusCode::OK, &res, t(0), t(0), &opts()).is_none()
    );
    let res = hm(&[("date", &d), ("cache-control", "max-age=60")]);
    let req = hm(&[("cache-control", "no-store")]);
    assert!(storable(KEY, &Method::GET, &req, StatusCode::OK, &res, t(0), t(0), &opts()).is_none());
    // The same response without them is stored; a 206 or a HEAD never is.
    assert!(
        storable(KEY, &Method::GET, &HeaderMap::new(), StatusCode::OK, &res, t(0), t(0), &opts()).is_some()
    );
    assert!(
        storable(
            KEY,
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::PARTIAL_CONTENT,
            &res,
            t(0),
            t(0),
            &opts()
        )
        .is_none()
    );
    assert!(
        storable(KEY, &Method::HEAD, &HeaderMap::new(), StatusCode::OK, &res, t(0), t(0), &opts()).is_none()
    );
}

#[test]
fn private_and_authorization_are_not_stored_by_a_shared_cache() {
    let d = httpdate::fmt_http_date(t(0));
    let private = hm(&[("date", &d), ("cache-control", "private, max-age=60")]);
    assert!(
        storable(KEY, &Method::GET, &HeaderMap::new(), StatusCode::OK, &private, t(0), t(0), &opts())
            .is_none()
    );
    let auth = hm(&[("authorization", "Basic dTpw")]);
    let plain = hm(&[("date", &d), ("cache-control", "max-age=60")]);
    assert!(storable(KEY, &Method::GET, &auth, StatusCode::OK, &plain, t(0), t(0), &opts()).is_none());
    // Unless the origin says public (RFC 9111 §3.5).
    let public = hm(&[("date", &d), ("cache-control", "public, max-age=60")]);
    assert!(storable(KEY, &Method::GET, &auth, StatusCode::OK, &public, t(0), t(0), &opts()).is_some());
}

#[test]
fn only_if_cached_without_a_usable_response_is_a_504() {
    let req = hm(&[("cache-control", "only-if-cached")]);
    assert_eq!(plan(Lookup::Nothing, &Method::GET, &req, t(0)), Step::Answer504OnlyIfCached);
    assert_eq!(plan(Lookup::OtherVariants, &Method::GET, &req, t(0)), Step::Answer504OnlyIfCached);
    let s = stored(&[("cache-control", "max-age=60")], 10);
    assert_eq!(get(&s, &[("cache-control", "only-if-cached")], 61), Step::Answer504OnlyIfCached);
    // A fresh one answers.
    assert!(matches!(get(&s, &[("cache-control", "only-if-cached")], 30), Step::ServeStored { .. }));
}

#[test]
fn request_max_age_0_and_no_cache_go_to_the_origin() {
    let s = stored(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")], 10);
    assert!(matches!(get(&s, &[("cache-control", "max-age=0")], 5), Step::Revalidate { .. }));
    assert!(matches!(get(&s, &[("cache-control", "no-cache")], 5), Step::Revalidate { .. }));
    assert!(matches!(get(&s, &[("pragma", "no-cache")], 5), Step::Revalidate { .. }));
    // Nothing stored: a miss the client asked for (Cache-Status fwd=request).
    assert_eq!(
        plan(Lookup::Nothing, &Method::GET, &hm(&[("cache-control", "no-cache")]), t(0)),
        Step::FetchAndStore { why: Fwd::Request, collapse: true }
    );
}

#[test]
fn misses_store_collapse_or_pass_through() {
    let none = HeaderMap::new();
    assert_eq!(
        plan(Lookup::Nothing, &Method::GET, &none, t(0)),
        Step::FetchAndStore { why: Fwd::UriMiss, collapse: true }
    );
    assert_eq!(
        plan(Lookup::OtherVariants, &Method::GET, &none, t(0)),
        Step::FetchAndStore { why: Fwd::VaryMiss, collapse: true }
    );
    // HEAD, Range and conditional requests for what is not stored go through as they are.
    assert_eq!(
        plan(Lookup::Nothing, &Method::HEAD, &none, t(0)),
        Step::FetchPassThrough { why: Fwd::UriMiss }
    );
    for req in [hm(&[("range", "bytes=0-1")]), hm(&[("if-none-match", "\"x\"")])] {
        assert_eq!(
            plan(Lookup::Nothing, &Method::GET, &req, t(0)),
            Step::FetchPassThrough { why: Fwd::UriMiss }
        );
    }
    // A stale HEAD refreshes as HEAD, uncollapsed.
    let s = stored(&[("cache-control", "max-age=60")], 10);
    assert_eq!(
        plan(Lookup::Found(&s), &Method::HEAD, &none, t(61)),
        Step::FetchAndStore { why: Fwd::Stale, collapse: false }
    );
}

#[test]
fn range_on_a_stored_200_honours_if_range() {
    let s = stored(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")], 100);
    let part = Answer::Part { start: 10, len: 10, content_range: "bytes 10-19/100".into() };
    let serve = |req: &[(&str, &str)]| match get(&s, req, 1) {
        Step::ServeStored { answer, .. } => answer,
        other => panic!("expected a hit: {other:?}"),
    };
    assert_eq!(serve(&[("range", "bytes=10-19")]), part);
    assert_eq!(serve(&[("range", "bytes=10-19"), ("if-range", "\"v1\"")]), part);
    // If-Range names another representation: the whole response.
    assert_eq!(serve(&[("range", "bytes=10-19"), ("if-range", "\"v0\"")]), Answer::Whole(StatusCode::OK));
    // Outside the body: 416; several ranges: the whole response.
    assert_eq!(serve(&[("range", "bytes=200-")]), Answer::Unsatisfiable { len: 100 });
    assert_eq!(serve(&[("range", "bytes=0-1,50-60")]), Answer::Whole(StatusCode::OK));
    // The client's own matching validator: 304.
    assert_eq!(serve(&[("if-none-match", "\"v1\"")]), Answer::NotModified);
}

#[test]
fn unsafe_methods_pass_and_invalidate_on_success() {
    let none = HeaderMap::new();
    assert_eq!(plan(Lookup::Nothing, &Method::POST, &none, t(0)), Step::Pass);
    let res = hm(&[("location", "/other"), ("content-location", "http://elsewhere.test/x")]);
    assert_eq!(
        invalidations(&Method::POST, KEY, StatusCode::CREATED, &res),
        vec![KEY.to_string(), "http://origin.test/other".to_string()]
    );
    assert!(invalidations(&Method::DELETE, KEY, StatusCode::INTERNAL_SERVER_ERROR, &res).is_empty());
    // Safe methods invalidate nothing.
    assert_eq!(plan(Lookup::Nothing, &Method::OPTIONS, &none, t(0)), Step::Pass);
    assert!(invalidations(&Method::OPTIONS, KEY, StatusCode::OK, &res).is_empty());
}

#[test]
fn stale_if_error_serves_the_stored_response_when_the_origin_fails() {
    let s = stored(&[("cache-control", "max-age=60, stale-if-error=100")], 10);
    let res = hm(&[]);
    // Within the window: stale on a 5xx and on a failed connection.
    assert!(matches!(
        on_origin_response(&s, &HeaderMap::new(), StatusCode::BAD_GATEWAY, &res, t(100), t(100), &opts()),
        AfterOrigin::ServeStale
    ));
    assert!(on_origin_failure(&s, &HeaderMap::new(), t(100)));
    // Past it, the 5xx is forwarded.
    assert!(matches!(
        on_origin_response(&s, &HeaderMap::new(), StatusCode::BAD_GATEWAY, &res, t(200), t(200), &opts()),
        AfterOrigin::Forward
    ));
    // must-revalidate forbids stale use when the origin is unreachable.
    let strict = stored(&[("cache-control", "max-age=60, must-revalidate")], 10);
    assert!(!on_origin_failure(&strict, &HeaderMap::new(), t(100)));
}

#[test]
fn stale_while_revalidate_serves_stale_and_revalidates_in_the_background() {
    let s = stored(&[("cache-control", "max-age=60, stale-while-revalidate=30"), ("etag", "\"v1\"")], 10);
    let Step::ServeStaleAndRevalidate { ttl, answer, validators } = get(&s, &[], 70) else {
        panic!("within stale-while-revalidate")
    };
    assert_eq!((ttl, answer), (-10, Answer::Whole(StatusCode::OK)));
    assert_eq!(validators.unwrap().get(header::IF_NONE_MATCH).unwrap(), "\"v1\"");
    // Past the window: a plain revalidation.
    assert!(matches!(get(&s, &[], 95), Step::Revalidate { .. }));
}
