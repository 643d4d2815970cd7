//! The HTTP/3 server's request-head checks (`appnet_web::h3::head::check`, RFC 9114 §4.2/§4.3)
//! over arbitrary field sections: lines `name: value` ("\n"-separated) become the pseudo-header
//! fields and header map h3 hands the server after QPACK (QPACK itself is h3's). Must never
//! panic, and a head it passes has a scheme and an authority.
#![no_main]

use appnet_web::h3::head::{HeadLimits, Verdict, check};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().skip(1).position(|b| *b == b':').map(|i| i + 1) else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        match name {
            b":method" => method = Method::from_bytes(value).ok(),
            b":scheme" => scheme = Some(value.to_vec()),
            b":authority" => authority = Some(value.to_vec()),
            b":path" => path = Some(value.to_vec()),
            _ => {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                    headers.append(n, v);
                }
            }
        }
    }
    let mut uri = Uri::builder();
    if let Some(s) = &scheme {
        uri = uri.scheme(s.as_slice());
    }
    if let Some(a) = &authority {
        uri = uri.authority(a.as_slice());
    }
    uri = uri.path_and_query(path.as_deref().unwrap_or(b"/"));
    let Ok(uri) = uri.build() else { return };
    let method = method.unwrap_or(Method::GET);
    let limits = HeadLimits { max_headers: 16, max_target: 256 };
    if check(&method, &uri, &headers, &limits) == Verdict::Pass && method != Method::CONNECT {
        assert!(matches!(uri.scheme_str(), Some("http") | Some("https")));
        assert!(uri.authority().is_some() || headers.contains_key(http::header::HOST));
        assert!(!headers.contains_key(http::header::CONNECTION));
    }
});
