//! The request-head checks HTTP/3 adds to h3's own (pseudo-header order and presence, QPACK,
//! the field-section size): RFC 9114 §4.2 (connection-specific fields, `TE`), §4.3.1 (a request
//! to an http(s) URI names its authority, and `Host` agrees with it), and the server's limits on
//! field count and target length. Pure, so it is fuzzed and unit-tested.

use http::header::{self, HeaderMap};
use http::{Method, Uri};

/// The limits a request head must fit.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Most header fields.
    pub max_headers: usize,
    /// Longest request target (path and query), in bytes.
    pub max_target: usize,
}

/// What the server does with a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Route it.
    Pass,
    /// Malformed (RFC 9114 §4.1.2): reset this stream with H3_MESSAGE_ERROR; the connection
    /// and its other streams go on.
    Malformed(&'static str),
    /// Well-formed but over a limit: answer with this status (414, 431).
    Refuse(u16, &'static str),
}

/// Header fields that only mean something to one HTTP/1.1 connection (RFC 9114 §4.2).
const CONNECTION_SPECIFIC: [&str; 5] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

/// Checks one request head.
pub fn check(method: &Method, uri: &Uri, headers: &HeaderMap, limits: &HeadLimits) -> Verdict {
    for name in CONNECTION_SPECIFIC {
        if headers.contains_key(name) {
            return Verdict::Malformed("connection-specific header field");
        }
    }
    for te in headers.get_all(header::TE) {
        if !te.as_bytes().eq_ignore_ascii_case(b"trailers") {
            return Verdict::Malformed("TE other than \"trailers\"");
        }
    }
    if *method != Method::CONNECT {
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            Some(_) => return Verdict::Malformed("unsupported :scheme"),
            None => return Verdict::Malformed("missing :scheme"),
        }
        let host = headers.get(header::HOST);
        match (uri.authority(), host) {
            (None, None) => return Verdict::Malformed("neither :authority nor Host"),
            (Some(a), Some(h)) if !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) => {
                return Verdict::Malformed(":authority and Host differ");
            }
            _ => {}
        }
        if headers.get_all(header::HOST).iter().count() > 1 {
            return Verdict::Malformed("more than one Host");
        }
    }
    if headers.len() > limits.max_headers {
        return Verdict::Refuse(431, "too many header fields");
    }
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_target {
        return Verdict::Refuse(414, "request target too long");
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const LIMITS: HeadLimits = HeadLimits { max_headers: 4, max_target: 32 };

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn a_plain_get_passes() {
        let h = HeaderMap::new();
        assert_eq!(check(&Method::GET, &uri("https://example.com/x"), &h, &LIMITS), Verdict::Pass);
    }

    #[test]
    fn connection_specific_fields_and_te_are_malformed() {
        for (name, value) in [("connection", "close"), ("transfer-encoding", "chunked"), ("te", "gzip")] {
            let mut h = HeaderMap::new();
            h.insert(header::HeaderName::from_static(name), HeaderValue::from_static(value));
            assert!(
                matches!(check(&Method::GET, &uri("https://a/"), &h, &LIMITS), Verdict::Malformed(_)),
                "{name}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        assert_eq!(check(&Method::GET, &uri("https://a/"), &h, &LIMITS), Verdict::Pass);
    }

    #[test]
    fn authority_is_required_and_host_must_agree() {
        let h = HeaderMap::new();
        assert!(matches!(check(&Method::GET, &uri("/x"), &h, &LIMITS), Verdict::Malformed(_)));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("other"));
        assert!(matches!(check(&Method::GET, &uri("https://a/"), &h, &LIMITS), Verdict::Malformed(_)));
        h.insert(header::HOST, HeaderValue::from_static("A"));
        assert_eq!(check(&Method::GET, &uri("https://a/"), &h, &LIMITS), Verdict::Pass);
    }

    #[test]
    fn limits_get_their_status() {
        let mut h = HeaderMap::new();
        for i in 0..5 {
            h.insert(
                header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        assert_eq!(
            check(&Method::GET, &uri("https://a/"), &h, &LIMITS),
            Verdict::Refuse(431, "too many header fields")
        );
        let long = format!("https://a/{}", "x".repeat(40));
        assert!(matches!(
            check(&Method::GET, &uri(&long), &HeaderMap::new(), &LIMITS),
            Verdict::Refuse(414, _)
        ));
    }
}
