//! The HTTP/1.1 fast path's head handling over arbitrary bytes: it serves a head only when the
//! guard passes it (with the same length and no body), and the response head it encodes for any
//! field set is one well-formed head. Must never panic.
#![no_main]

use appnet_web::http1_guard::{Framing, HeadLimits, check_head};
use appnet_web::http1_head::{self, BodyLen, Parsed};
use bytes::BytesMut;
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HeadLimits { max_request_line: 256, max_header_bytes: 1024, max_headers: 16 };
    let guard = check_head(data, &limits);
    // A probe that knows every key: a hit is a head the guard passes, of the same length.
    if let Parsed::Hit { len, entry } = http1_head::parse(data, &limits, true, &mut |_| Some(3)) {
        assert_eq!((guard, entry), (Ok(Some((len, Framing::None))), 3));
    }
    match http1_head::parse(data, &limits, true, &mut |_| None) {
        Parsed::Ready(fast) => {
            assert_eq!(guard, Ok(Some((fast.len, Framing::None))));
            let (version, method) = (fast.req.version(), fast.req.method().clone());
            // The request's fields as a response's, under a status from the input.
            let mut resp = http::Response::new(()).into_parts().0;
            resp.status = StatusCode::from_u16(100 + (data.len() % 500) as u16).unwrap_or(StatusCode::OK);
            resp.headers = fast.req.into_parts().0.headers;
            let body = match data.len() % 3 {
                0 => BodyLen::Empty,
                1 => BodyLen::Known(data.len() as u64),
                _ => BodyLen::Unknown,
            };
            let mut dst = BytesMut::new();
            http1_head::with_date(|date| {
                http1_head::encode_head(&mut resp, version, &method, fast.keep_alive, body, date, &mut dst)
            });
            // One head: a status line, fields, and the only empty line at the end.
            assert!(dst.starts_with(b"HTTP/1.") && dst.ends_with(b"\r\n\r\n"));
            assert_eq!(dst.windows(4).position(|w| w == b"\r\n\r\n"), Some(dst.len() - 4));
        }
        Parsed::Partial => assert_eq!(guard, Ok(None)),
        Parsed::HandOff => {}
        Parsed::Hit { .. } => unreachable!("the probe knows no key"),
    }
});
