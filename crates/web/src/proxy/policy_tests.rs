//! One test per RFC 9111 rule the proxy implements, on the pure policy.

use super::*;
use std::time::UNIX_EPOCH;

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

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(t(secs))
}

fn store_at(req: &[(&str, &str)], status: u16, res: &[(&str, &str)], at: u64) -> Result<Stored, NotStored> {
    Stored::from_response(
        KEY,
        &Method::GET,
        &hm(req),
        StatusCode::from_u16(status).unwrap(),
        &hm(res),
        t(at),
        t(at),
        &PolicyOptions::default(),
    )
}

fn store(res: &[(&str, &str)]) -> Stored {
    let d = date(0);
    let mut all: Vec<(&str, &str)> = vec![("date", &d)];
    all.extend_from_slice(res);
    store_at(&[], 200, &all, 0).expect("storable")
}

fn get(s: &Stored, req: &[(&str, &str)], at: u64) -> Decision {
    s.decide(&Method::GET, &hm(req), t(at))
}

#[test]
fn max_age_gives_freshness() {
    let s = store(&[("cache-control", "max-age=60")]);
    assert_eq!(get(&s, &[], 59), Decision::Fresh);
    assert!(matches!(get(&s, &[], 61), Decision::Revalidate(_)));
    assert_eq!(s.ttl(t(10)), 50);
}

#[test]
fn s_maxage_overrides_max_age_for_a_shared_cache() {
    let s = store(&[("cache-control", "max-age=10, s-maxage=100")]);
    assert_eq!(get(&s, &[], 50), Decision::Fresh);
    assert!(matches!(get(&s, &[], 101), Decision::Revalidate(_)));
}

#[test]
fn expires_gives_freshness_relative_to_date() {
    let e = date(30);
    let s = store(&[("expires", &e)]);
    assert_eq!(get(&s, &[], 29), Decision::Fresh);
    assert!(matches!(get(&s, &[], 31), Decision::Revalidate(_)));
    // An invalid Expires means already expired.
    let s = store_at(&[], 200, &[("date", &date(0)), ("expires", "0")], 0).unwrap();
    assert!(matches!(get(&s, &[], 0), Decision::Revalidate(_)));
}

#[test]
fn heuristic_is_ten_percent_of_last_modified_age_and_capped() {
    let lm = httpdate::fmt_http_date(t(0) - Duration::from_secs(1000));
    let s = store(&[("last-modified", &lm)]);
    assert_eq!(get(&s, &[], 99), Decision::Fresh);
    assert!(matches!(get(&s, &[], 101), Decision::Revalidate(_)));
    // Modified a year ago: 10% would be 36 days; the cap is one day.
    let lm = httpdate::fmt_http_date(t(0) - Duration::from_secs(365 * 86_400));
    let s = store(&[("last-modified", &lm)]);
    assert_eq!(get(&s, &[], 86_399), Decision::Fresh);
    assert!(matches!(get(&s, &[], 86_401), Decision::Revalidate(_)));
}

#[test]
fn no_store_private_and_authorization_are_not_stored() {
    let d = date(0);
    assert!(store_at(&[], 200, &[("date", &d), ("cache-control", "no-store, max-age=60")], 0).is_err());
    assert!(store_at(&[], 200, &[("date", &d), ("cache-control", "private, max-age=60")], 0).is_err());
    assert!(
        store_at(
            &[("authorization", "Basic eDp5")],
            200,
            &[("date", &d), ("cache-control", "max-age=60")],
            0
        )
        .is_err()
    );
    // ... unless the origin says a shared cache may (public / s-maxage / must-revalidate).
    assert!(
        store_at(
            &[("authorization", "Basic eDp5")],
            200,
            &[("date", &d), ("cache-control", "public, max-age=60")],
            0
        )
        .is_ok()
    );
    // Request no-store.
    assert!(request_no_store(&hm(&[("cache-control", "no-store")])));
    // Statuses that are neither understood nor heuristically cacheable are not stored.
    assert!(store_at(&[], 206, &[("date", &d), ("cache-control", "max-age=60")], 0).is_err());
    assert!(store_at(&[], 500, &[("date", &d)], 0).is_err());
}

#[test]
fn no_cache_response_is_stored_but_always_revalidated() {
    let s = store(&[("cache-control", "no-cache, max-age=600"), ("etag", "\"v1\"")]);
    match get(&s, &[], 1) {
        Decision::Revalidate(v) => assert_eq!(v.get("if-none-match").unwrap(), "\"v1\""),
        other => panic!("expected revalidation, got {other:?}"),
    }
}

#[test]
fn must_revalidate_forbids_stale_even_when_the_client_accepts_it() {
    let s = store(&[("cache-control", "max-age=10, must-revalidate")]);
    assert!(matches!(get(&s, &[("cache-control", "max-stale=1000")], 20), Decision::Revalidate(_)));
    let s = store(&[("cache-control", "max-age=10")]);
    assert_eq!(get(&s, &[("cache-control", "max-stale=1000")], 20), Decision::Fresh);
}

#[test]
fn proxy_revalidate_is_fresh_while_fresh_then_never_stale() {
    let s = store(&[("cache-control", "max-age=10, proxy-revalidate, stale-while-revalidate=100")]);
    assert_eq!(get(&s, &[], 5), Decision::Fresh);
    assert!(matches!(get(&s, &[], 20), Decision::Revalidate(_)));
    assert!(!s.stale_if_error_ok(&hm(&[("cache-control", "stale-if-error=100")]), t(20)));
}

#[test]
fn pragma_no_cache_from_http10_clients_forces_revalidation() {
    let s = store(&[("cache-control", "max-age=600")]);
    assert!(matches!(get(&s, &[("pragma", "no-cache")], 1), Decision::Revalidate(_)));
    // Pragma in a response without Cache-Control means no-cache.
    let s = store_at(&[], 200, &[("date", &date(0)), ("pragma", "no-cache"), ("expires", &date(600))], 0)
        .unwrap();
    assert!(matches!(get(&s, &[], 1), Decision::Revalidate(_)));
}

#[test]
fn age_counts_upstream_age_delay_and_residence() {
    // Origin says Age: 20; the response took 2 s to arrive.
    let s = Stored::from_response(
        KEY,
        &Method::GET,
        &HeaderMap::new(),
        StatusCode::OK,
        &hm(&[("date", &date(0)), ("age", "20"), ("cache-control", "max-age=60")]),
        t(0),
        t(2),
        &PolicyOptions::default(),
    )
    .unwrap();
    assert_eq!(s.age(t(2)), 22);
    assert_eq!(s.age(t(12)), 32);
    assert_eq!(s.response_headers(t(12)).get("age").unwrap(), "32");
    // Fresh until age 60.
    assert_eq!(get(&s, &[], 39), Decision::Fresh);
    assert!(matches!(get(&s, &[], 41), Decision::Revalidate(_)));
    // Apparent age from an old Date wins over a small Age.
    let s = store_at(&[], 200, &[("date", &date(0)), ("cache-control", "max-age=60")], 30).unwrap();
    assert_eq!(s.age(t(30)), 30);
}

#[test]
fn vary_selects_variants() {
    let d = date(0);
    let fr = store_at(
        &[("accept-language", "fr")],
        200,
        &[("date", &d), ("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        0,
    )
    .unwrap();
    assert!(fr.vary_matches(&hm(&[("accept-language", "fr")])));
    assert!(!fr.vary_matches(&hm(&[("accept-language", "en")])));
    assert!(!fr.vary_matches(&HeaderMap::new()));
    let en = store_at(
        &[("accept-language", "en")],
        200,
        &[("date", &d), ("cache-control", "max-age=60"), ("vary", "accept-language")],
        0,
    )
    .unwrap();
    assert!(!fr.same_variant(&en));
    // Vary: * is never stored.
    assert_eq!(
        store_at(&[], 200, &[("date", &d), ("cache-control", "max-age=60"), ("vary", "*")], 0).unwrap_err(),
        NotStored::VaryStar
    );
}

#[test]
fn request_cache_control_max_age_no_cache_min_fresh_and_only_if_cached() {
    let s = store(&[("cache-control", "max-age=600")]);
    assert!(matches!(get(&s, &[("cache-control", "max-age=0")], 1), Decision::Revalidate(_)));
    assert_eq!(get(&s, &[("cache-control", "max-age=100")], 50), Decision::Fresh);
    assert!(matches!(get(&s, &[("cache-control", "no-cache")], 1), Decision::Revalidate(_)));
    assert!(matches!(get(&s, &[("cache-control", "min-fresh=590")], 20), Decision::Revalidate(_)));
    assert!(only_if_cached(&hm(&[("cache-control", "only-if-cached")])));
    assert!(!only_if_cached(&hm(&[("cache-control", "max-age=0")])));
}

#[test]
fn revalidation_uses_the_validators_and_a_304_refreshes() {
    let lm = date(0);
    let s =
        store(&[("cache-control", "max-age=10"), ("etag", "\"v1\""), ("last-modified", &lm), ("x-a", "1")]);
    let Decision::Revalidate(v) = get(&s, &[], 20) else { panic!("stale") };
    assert_eq!(v.get("if-none-match").unwrap(), "\"v1\"");
    assert_eq!(v.get("if-modified-since").unwrap(), lm.as_str());
    let d = date(20);
    let fresh = s
        .refreshed(
            &hm(&[("date", &d), ("cache-control", "max-age=100"), ("x-a", "2"), ("content-length", "0")]),
            t(20),
            t(20),
            &PolicyOptions::default(),
        )
        .expect("same representation");
    assert_eq!(get(&fresh, &[], 110), Decision::Fresh);
    assert_eq!(fresh.meta.res_headers.get("x-a").unwrap(), "2");
    assert_eq!(fresh.meta.res_headers.get("etag").unwrap(), "\"v1\"");
    assert!(fresh.meta.res_headers.get("content-length").is_none(), "304 must not change body fields");
    // A 304 naming another strong ETag does not refresh.
    assert!(s.refreshed(&hm(&[("etag", "\"v2\"")]), t(20), t(20), &PolicyOptions::default()).is_none());
}

#[test]
fn stale_while_revalidate_window() {
    let s = store(&[("cache-control", "max-age=10, stale-while-revalidate=30")]);
    assert_eq!(get(&s, &[], 5), Decision::Fresh);
    assert_eq!(get(&s, &[], 20), Decision::StaleWhileRevalidate);
    assert!(matches!(get(&s, &[], 45), Decision::Revalidate(_)));
    // The client asking for a fresh copy overrides it.
    assert!(matches!(get(&s, &[("cache-control", "no-cache")], 20), Decision::Revalidate(_)));
}

#[test]
fn stale_if_error_window_from_response_or_request() {
    let s = store(&[("cache-control", "max-age=10, stale-if-error=60")]);
    assert!(s.stale_if_error_ok(&HeaderMap::new(), t(50)));
    assert!(!s.stale_if_error_ok(&HeaderMap::new(), t(80)));
    let s = store(&[("cache-control", "max-age=10")]);
    assert!(!s.stale_if_error_ok(&HeaderMap::new(), t(20)));
    assert!(s.stale_if_error_ok(&hm(&[("cache-control", "stale-if-error=30")]), t(20)));
}

#[test]
fn unsafe_methods_invalidate_target_location_and_content_location() {
    assert!(is_unsafe(&Method::POST) && is_unsafe(&Method::PUT) && is_unsafe(&Method::DELETE));
    assert!(!is_unsafe(&Method::GET) && !is_unsafe(&Method::HEAD));
    let got = invalidation_targets(
        KEY,
        StatusCode::CREATED,
        &hm(&[("location", "/items/7"), ("content-location", "http://other.test/x")]),
    );
    assert_eq!(got, vec![KEY.to_string(), "http://origin.test/items/7".to_string()]);
    let got = invalidation_targets(KEY, StatusCode::OK, &hm(&[("content-location", "sibling")]));
    assert_eq!(got, vec![KEY.to_string(), "http://origin.test/sibling".to_string()]);
    assert!(invalidation_targets(KEY, StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new()).is_empty());
}

#[test]
fn head_is_answered_from_a_stored_get() {
    let s = store(&[("cache-control", "max-age=60")]);
    assert_eq!(s.decide(&Method::HEAD, &HeaderMap::new(), t(1)), Decision::Fresh);
    assert_eq!(s.decide(&Method::HEAD, &hm(&[("cache-control", "max-age=30")]), t(1)), Decision::Fresh);
    assert!(is_cacheable_method(&Method::HEAD));
}

#[test]
fn client_conditionals_are_answered_from_the_stored_validators() {
    let lm = date(0);
    let s = store(&[("cache-control", "max-age=60"), ("etag", "W/\"v1\""), ("last-modified", &lm)]);
    assert!(s.client_not_modified(&hm(&[("if-none-match", "\"v1\"")])));
    assert!(!s.client_not_modified(&hm(&[("if-none-match", "\"v2\"")])));
    assert!(s.client_not_modified(&hm(&[("if-modified-since", &date(5))])));
    assert!(!s.client_not_modified(&hm(&[("if-modified-since", &date(0).replace("2023", "2001"))])));
}

#[test]
fn hop_by_hop_fields_are_not_stored() {
    let s = store(&[
        ("cache-control", "max-age=60"),
        ("connection", "x-private"),
        ("x-private", "1"),
        ("keep-alive", "5"),
    ]);
    assert!(s.meta.res_headers.get("x-private").is_none());
    assert!(s.meta.res_headers.get("keep-alive").is_none());
}

#[test]
fn cache_control_parsing_handles_quotes_and_case() {
    let cc = CacheControl::parse(&hm(&[
        ("cache-control", "Max-Age=5, private=\"a, b\""),
        ("cache-control", "no-cache"),
    ]));
    assert_eq!(cc.secs("max-age"), Some(5));
    assert!(cc.has("private") && cc.has("no-cache"));
}

#[test]
fn surrogate_control_overrides_cache_control_for_this_reverse_proxy() {
    let d = date(0);
    let s = store_at(
        &[],
        200,
        &[("date", &d), ("cache-control", "no-store"), ("surrogate-control", "max-age=60")],
        0,
    )
    .expect("Surrogate-Control wins");
    assert_eq!(get(&s, &[], 30), Decision::Fresh);
    assert!(s.response_headers(t(1)).get("surrogate-control").is_none(), "consumed, not forwarded");
    assert!(
        store_at(
            &[],
            200,
            &[("date", &d), ("cache-control", "max-age=60"), ("surrogate-control", "no-store")],
            0
        )
        .is_err()
    );
    // Directives targeted at another surrogate are ignored.
    let s = store_at(
        &[],
        200,
        &[("date", &d), ("cache-control", "max-age=1"), ("surrogate-control", "max-age=600;other")],
        0,
    )
    .unwrap();
    assert!(matches!(get(&s, &[], 30), Decision::Revalidate(_)));
}
