//! Request sanity checks the proxy applies before anything else, so malformed requests get
//! the protocol's own error instead of being forwarded (or keyed) as they are: a `Host` that
//! is missing (HTTP/1.1), repeated or not a valid `uri-host[:port]` gets 400 (RFC 9112 §3.2,
//! RFC 9110 §7.2, RFC 3986 §3.2.2), and an `Expect` other than `100-continue` gets 417
//! (RFC 9110 §10.1.1). Pure functions of the request head, on the same rules as the HTTP/1
//! guard ([`crate::http1_guard`]), which refuses such HTTP/1 heads before hyper parses them;
//! these checks cover HTTP/2 requests too.

use http::header::{self, HeaderMap};
use http::{StatusCode, Version};

/// Why a request head is refused: the status and a short explanation for the body.
pub type Refused = (StatusCode, &'static str);

/// Checks `Host` and `Expect` of a request head.
pub fn check(version: Version, headers: &HeaderMap) -> Result<(), Refused> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return Err((StatusCode::BAD_REQUEST, "an HTTP/1.1 request needs a Host header field"));
        }
        (Some(_), Some(_)) => return Err((StatusCode::BAD_REQUEST, "more than one Host header field")),
        (Some(h), None) if !valid_host(h.as_bytes()) => {
            return Err((StatusCode::BAD_REQUEST, "the Host header field is not a valid host[:port]"));
        }
        _ => {}
    }
    for e in headers.get_all(header::EXPECT) {
        if !crate::http1_guard::expect_ok(e.as_bytes()) {
            return Err((StatusCode::EXPECTATION_FAILED, "only Expect: 100-continue is supported"));
        }
    }
    Ok(())
}

/// Whether `v` is `uri-host [ ":" port ]` (an empty value is allowed: RFC 9112 §3.2 for
/// targets without an authority): the shared guard's check, so the proxy and the web server
/// agree on every Host.
pub fn valid_host(v: &[u8]) -> bool {
    crate::http1_guard::valid_host(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:80",
            "[::1]:3128",
            "[2001:db8::1]",
            "a_b.test",
            "x%41y",
            "",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "a b",
            "a/b",
            "a@b",
            "example.com:80x",
            "example.com:123456",
            "[::1",
            "[zz]:80",
            ":80",
            "a\"b",
            "x%4",
            "x%zz",
            "a:b:c",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn bad_host_missing_host_and_repeated_host_get_400() {
        let v11 = Version::HTTP_11;
        assert_eq!(check(v11, &head(&[("host", "a b")])).unwrap_err().0, StatusCode::BAD_REQUEST);
        assert_eq!(check(v11, &head(&[])).unwrap_err().0, StatusCode::BAD_REQUEST);
        assert!(check(Version::HTTP_10, &head(&[])).is_ok());
        assert!(check(Version::HTTP_2, &head(&[])).is_ok());
        let two = head(&[("host", "a.test"), ("host", "b.test")]);
        assert_eq!(check(v11, &two).unwrap_err().0, StatusCode::BAD_REQUEST);
        assert!(check(v11, &head(&[("host", "a.test")])).is_ok());
    }

    #[test]
    fn expect_other_than_100_continue_gets_417() {
        let v11 = Version::HTTP_11;
        assert!(check(v11, &head(&[("host", "a"), ("expect", "100-Continue")])).is_ok());
        let e = check(v11, &head(&[("host", "a"), ("expect", "200-ok")])).unwrap_err();
        assert_eq!(e.0, StatusCode::EXPECTATION_FAILED);
    }
}
