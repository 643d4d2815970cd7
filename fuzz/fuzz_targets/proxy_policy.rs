//! The caching proxy's RFC 9111 core over arbitrary origin and client header fields: parsing
//! Cache-Control, building a stored response (Age, dates, Vary, heuristic), lookups, 304
//! merging, invalidation targets, and the disk metadata decoder. Must never panic.
#![no_main]

use appnet_web::proxy::policy::{self, CacheControl, PolicyOptions, Stored};
use appnet_web::proxy::store::disk;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fn headers(block: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in block.split(|&b| b == b'\n').take(32) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..])) {
            h.append(n, v);
        }
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let _ = disk::decode(data);
    let mut parts = data.splitn(4, |&b| b == 0);
    let (req, res, req2, rest) =
        (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let (req, res, req2, extra) = (headers(req), headers(res), headers(req2), headers(rest));
    let _ = CacheControl::parse(&res);
    let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let status = StatusCode::from_u16(200 + (data.len() % 400) as u16).unwrap_or(StatusCode::OK);
    let opts = PolicyOptions::default();
    let _ = policy::invalidation_targets("http://a.test/x/y", status, &res);
    if let Ok(s) = Stored::from_response("http://a.test/x", &Method::GET, &req, status, &res, t0, t0, &opts) {
        for secs in [0u64, 1, 100, 1 << 40] {
            let now = t0 + Duration::from_secs(secs);
            let _ = s.decide(&Method::GET, &req2, now);
            let _ = s.decide(&Method::HEAD, &req2, now);
            let _ = s.stale_if_error_ok(&req2, now);
            let _ = s.response_headers(now);
            let _ = s.ttl(now);
        }
        let _ = s.vary_matches(&req2);
        let _ = s.client_not_modified(&req2);
        let _ = s.refreshed(&extra, t0, t0, &opts);
        let _ = disk::decode(&disk::encode(&s.meta));
    }
});
