//! The pure half of the HTTP/1.1 fast path ([`crate::http1_fast`]): which request heads it
//! serves itself, the [`Request`] it builds for the [`Router`](crate::site::Router), and the
//! response head it writes, byte for byte the head hyper's HTTP/1 server writes for the same
//! response (status line, the router's fields in order, `content-length`, the `connection`
//! values hyper adds for keep-alive, `date` last), so a client cannot tell the paths apart.
//!
//! The fast path takes GET and HEAD without a body, `Upgrade` or `Expect`; every head passes
//! through the guard's own check ([`parse_head`]) first. Anything else, including a head the
//! guard refuses, is [`Parsed::HandOff`]: hyper behind the guard answers it as before.

use crate::body::RequestBody;
use crate::http1_guard::{Framing, HeadLimits, parse_head};
use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Header fields parsed into a stack array when `max_headers` is at most this.
const STACK_HEADERS: usize = 128;

/// The longest request target hyper accepts (its `MAX_URI_LEN`); longer ones are handed off.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// What the fast path does with the bytes at the front of its buffer.
// Returned once per request and matched at once: boxing the request would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// The next head is not complete yet (and not refused either).
    Partial,
    /// Not for the fast path: hyper behind the guard serves the connection from this head on.
    HandOff,
    /// A GET or HEAD the fast path serves.
    Ready(FastRequest),
    /// A GET or HEAD the probe recognised: `entry` is what the probe returned.
    Hit {
        /// Bytes of the head.
        len: usize,
        /// The probe's answer.
        entry: usize,
    },
}

/// A request head the fast path serves.
pub struct FastRequest {
    /// Bytes of the head (the request has no body).
    pub len: usize,
    /// The request for the router, with an empty body.
    pub req: Request<RequestBody>,
    /// Whether the connection may stay open after the response (as hyper decides it).
    pub keep_alive: bool,
    /// With `caching`, for a request whose answer depends only on its method, version,
    /// keep-alive, Host and target (no preconditions, no ranges): those, as one key.
    pub key: Option<Vec<u8>>,
}

/// The parts of a request that alone decide a static file's response (see
/// [`FastRequest::key`]), for a cache probe.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// Method, version and keep-alive as bits.
    pub flags: u8,
    /// The Host field's value (empty when absent).
    pub host: &'a [u8],
    /// The request target as sent.
    pub target: &'a [u8],
}

impl KeyParts<'_> {
    /// Whether `key` (from [`KeyParts::to_key`]) is this one.
    pub fn matches(&self, key: &[u8]) -> bool {
        key.len() == 2 + self.host.len() + self.target.len()
            && key[0] == self.flags
            && key[1..1 + self.host.len()] == *self.host
            && key[1 + self.host.len()] == b' '
            && key[2 + self.host.len()..] == *self.target
    }

    /// The key as bytes.
    pub fn to_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(2 + self.host.len() + self.target.len());
        k.push(self.flags);
        k.extend_from_slice(self.host);
        k.push(b' ');
        k.extend_from_slice(self.target);
        k
    }
}

/// Parses the head at the front of `buf` through the guard (see [`Parsed`]). With `caching`,
/// a request whose answer depends only on its [`KeyParts`] is first shown to `probe`: when it
/// returns `Some`, the head is [`Parsed::Hit`] and no request is built.
pub fn parse(
    buf: &[u8],
    limits: &HeadLimits,
    caching: bool,
    probe: &mut dyn FnMut(&KeyParts<'_>) -> Option<usize>,
) -> Parsed {
    if limits.max_headers <= STACK_HEADERS {
        let mut headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
        parse_with(buf, limits, &mut headers, caching, probe)
    } else {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        parse_with(buf, limits, &mut headers, caching, probe)
    }
}

/// Request fields after which a file's response depends on more than the [`KeyParts`].
const UNCACHED_FIELDS: [HeaderName; 6] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

/// `http`'s rule for field values (`HeaderValue::from_bytes`), without building one.
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
    headers: &mut [httparse::Header<'b>],
    caching: bool,
    probe: &mut dyn FnMut(&KeyParts<'_>) -> Option<usize>,
) -> Parsed {
    let (len, framing, req) = match parse_head(buf, limits, headers) {
        Ok(Some(h)) => h,
        Ok(None) => return Parsed::Partial,
        // The guard refuses it: hyper's path replays the same check and answers it.
        Err(_) => return Parsed::HandOff,
    };
    if framing != Framing::None {
        return Parsed::HandOff;
    }
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parsed::HandOff,
    };
    let version = if req.version == Some(1) { Version::HTTP_11 } else { Version::HTTP_10 };
    let Some(path) = req.path.filter(|p| p.len() <= MAX_URI_LEN) else { return Parsed::HandOff };
    // hyper's rule: 1.1 stays open unless a Connection field says close; 1.0 closes unless
    // one says keep-alive (and a close anywhere wins).
    let mut keep_alive = version == Version::HTTP_11;
    let mut saw_close = false;
    let mut cacheable = caching;
    let mut host: &[u8] = b"";
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else { return Parsed::HandOff };
        if !valid_value(h.value) {
            return Parsed::HandOff;
        }
        if name == header::CONNECTION {
            let value = HeaderValue::from_bytes(h.value).unwrap_or(HeaderValue::from_static(""));
            if saw_close || connection_has(&value, "close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = connection_has(&value, "keep-alive");
            }
        } else if name == header::UPGRADE || name == header::EXPECT {
            return Parsed::HandOff;
        } else if name == header::HOST {
            host = h.value;
        } else if cacheable && UNCACHED_FIELDS.contains(&name) {
            cacheable = false;
        }
    }
    let Ok(uri) = http::Uri::try_from(path) else { return Parsed::HandOff };
    let parts = KeyParts {
        flags: u8::from(method == Method::HEAD)
            | u8::from(version == Version::HTTP_11) << 1
            | u8::from(keep_alive) << 2,
        host,
        target: path.as_bytes(),
    };
    if cacheable && let Some(entry) = probe(&parts) {
        return Parsed::Hit { len, entry };
    }
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_bytes(h.value))
        else {
            return Parsed::HandOff;
        };
        map.append(name, value);
    }
    let mut r = Request::new(RequestBody::Empty);
    *r.method_mut() = method;
    *r.uri_mut() = uri;
    *r.version_mut() = version;
    *r.headers_mut() = map;
    let key = cacheable.then(|| parts.to_key());
    Parsed::Ready(FastRequest { len, req: r, keep_alive, key })
}

/// Whether a comma-separated field value holds `token` (hyper's `connection_has`).
fn connection_has(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|s| s.split(',').any(|v| v.trim().eq_ignore_ascii_case(token)))
}

/// What is known of a response body's length before it is sent (as hyper's dispatcher sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// The body is already at its end.
    Empty,
    /// Exactly this many bytes.
    Known(u64),
    /// Streamed, length unknown.
    Unknown,
}

/// How the body goes on the wire after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOut {
    /// No body bytes at all (HEAD, 204, 304, or empty).
    Nothing,
    /// The body's bytes as they are (delimited by Content-Length).
    Plain,
    /// Chunked transfer coding.
    Chunked,
    /// The body's bytes, then the connection closes (HTTP/1.0 without a length).
    UntilClose,
}

/// The encoded head's consequences for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// How the body follows.
    pub body: BodyOut,
    /// Whether the connection closes after this response.
    pub close: bool,
}

/// Writes the head of `resp` (the router's response) into `dst` as
/// hyper's HTTP/1 server would for a request of `req_version` and `method` whose keep-alive
/// wish is `keep_alive`, with the current `date` (29 bytes, IMF-fixdate).
pub fn encode_head(
    resp: &mut http::response::Parts,
    req_version: Version,
    method: &Method,
    keep_alive: bool,
    body: BodyLen,
    date: &[u8],
    dst: &mut BytesMut,
) -> Encoded {
    let is_head = *method == Method::HEAD;
    let status = resp.status;
    let headers = &mut resp.headers;
    // hyper's enforce_version / fix_keep_alive (the router answers in HTTP/1.1).
    if req_version == Version::HTTP_10 {
        let outgoing_ka = headers.get_all(header::CONNECTION).iter().any(|v| connection_has(v, "keep-alive"));
        if !outgoing_ka && keep_alive {
            headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        }
    } else if !keep_alive && !headers.get_all(header::CONNECTION).iter().any(|v| connection_has(v, "close")) {
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let mut close = !keep_alive;
    if req_version == Version::HTTP_11 && status == StatusCode::OK {
        dst.put_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.put_slice(if req_version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
        dst.put_slice(status.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        dst.put_slice(b"\r\n");
    }
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut out = BodyOut::Plain;
    // Fields hyper joins on one line: the name, and whether a value of it is on the line.
    let mut open_line: Option<&HeaderName> = None;
    let mut prev: Option<&HeaderName> = None;
    for (name, value) in headers.iter() {
        let same = prev == Some(name);
        if !same && open_line.take().is_some() {
            dst.put_slice(b"\r\n");
        }
        prev = Some(name);
        if *name == header::CONTENT_LENGTH {
            match body {
                BodyLen::Known(_) | BodyLen::Unknown => {
                    if !same {
                        dst.put_slice(b"content-length: ");
                        dst.put_slice(value.as_bytes());
                        open_line = Some(name);
                        wrote_len = true;
                    }
                    continue;
                }
                // No body: the field is written as it is for HEAD, dropped otherwise (an
                // implicit `content-length: 0` follows the other fields instead).
                BodyLen::Empty if !is_head => continue,
                BodyLen::Empty => wrote_len = true,
            }
        } else if *name == header::CONNECTION || *name == header::TRAILER {
            if *name == header::CONNECTION && connection_has(value, "close") {
                close = true;
            }
            if *name == header::TRAILER && (req_version == Version::HTTP_10 || !can_chunk(method, status)) {
                continue;
            }
            if open_line.is_some() {
                dst.put_slice(b", ");
            } else {
                dst.put_slice(name.as_str().as_bytes());
                dst.put_slice(b": ");
                open_line = Some(name);
            }
            dst.put_slice(value.as_bytes());
            continue;
        } else if *name == header::DATE {
            wrote_date = true;
        }
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
    if open_line.is_some() {
        dst.put_slice(b"\r\n");
    }
    let length_allowed = !status.is_informational() && !matches!(status.as_u16(), 204 | 304);
    if !wrote_len {
        match body {
            BodyLen::Unknown if req_version == Version::HTTP_10 || !can_chunk(method, status) => {
                out = BodyOut::UntilClose;
            }
            BodyLen::Unknown => {
                dst.put_slice(b"transfer-encoding: chunked\r\n");
                out = BodyOut::Chunked;
            }
            BodyLen::Empty | BodyLen::Known(0) => {
                if length_allowed && !is_head {
                    dst.put_slice(b"content-length: 0\r\n");
                }
            }
            BodyLen::Known(n) if length_allowed => {
                dst.put_slice(b"content-length: ");
                dst.put_slice(itoa(n).as_bytes());
                dst.put_slice(b"\r\n");
            }
            BodyLen::Known(_) => out = BodyOut::Nothing,
        }
    }
    if !can_chunk(method, status) || body == BodyLen::Empty {
        out = BodyOut::Nothing;
    }
    if out == BodyOut::UntilClose {
        close = true;
    }
    if !wrote_date {
        dst.put_slice(b"date: ");
        dst.put_slice(date);
        dst.put_slice(b"\r\n");
    }
    dst.put_slice(b"\r\n");
    Encoded { body: out, close }
}

/// hyper's `can_chunked`: whether the response may have a body at all.
fn can_chunk(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD && !status.is_informational() && !matches!(status.as_u16(), 204 | 304)
}

fn itoa(n: u64) -> String {
    n.to_string()
}

/// The `Date` value for now, formatted once per second per thread (as hyper caches it).
pub fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs)));
        }
        f(d.1.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits { max_request_line: 8192, max_header_bytes: 16384, max_headers: 100 }
    }

    fn ready(input: &str) -> FastRequest {
        match parse(input.as_bytes(), &limits(), true, &mut |_| None) {
            Parsed::Ready(r) => r,
            Parsed::Partial => panic!("{input:?}: partial"),
            Parsed::HandOff => panic!("{input:?}: handed off"),
            Parsed::Hit { .. } => panic!("{input:?}: hit"),
        }
    }

    fn handed_off(input: &str) -> bool {
        matches!(parse(input.as_bytes(), &limits(), true, &mut |_| Some(0)), Parsed::HandOff)
    }

    #[test]
    fn plain_gets_and_heads_are_served_and_everything_else_is_handed_off() {
        let r = ready("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nGET /next");
        assert_eq!(r.len, 45);
        assert_eq!(r.req.uri(), "/a?b=1");
        assert_eq!(r.req.headers()["accept"], "*/*");
        assert!(r.keep_alive);
        assert_eq!(ready("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").req.method(), Method::HEAD);
        assert!(!ready("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ready("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ready("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!ready("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n", &limits(), true, &mut |_| None),
            Parsed::Partial
        ));
        assert!(handed_off("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"));
        assert!(handed_off("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"));
        assert!(handed_off("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(handed_off("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(handed_off("get / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(handed_off("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n"));
        assert!(handed_off("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"));
        assert!(handed_off("GET / HTTP/1.1\r\n\r\n"), "the guard's 400 (no Host)");
        assert!(handed_off("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), "the guard's 505");
    }

    #[test]
    fn only_requests_without_preconditions_or_ranges_have_a_key() {
        assert_eq!(ready("GET /a HTTP/1.1\r\nHost: x\r\n\r\n").key.unwrap(), b"\x06x /a");
        assert!(ready("GET /a HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n").key.is_none());
        assert!(ready("GET /a HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n\r\n").key.is_none());
        assert!(ready("GET /a HTTP/1.1\r\nHost: x\r\nif-modified-since: x\r\n\r\n").key.is_none());
        let off = parse(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &limits(), false, &mut |_| Some(1));
        assert!(matches!(off, Parsed::Ready(FastRequest { key: None, .. })), "no caching, no probe");
        let hit =
            parse(b"HEAD /a HTTP/1.0\r\n\r\n", &limits(), true, &mut |p| p.matches(b"\x01 /a").then_some(7));
        assert!(matches!(hit, Parsed::Hit { len: 20, entry: 7 }));
        let miss =
            parse(b"HEAD /a HTTP/1.0\r\n\r\n", &limits(), true, &mut |p| p.matches(b"\x01 /b").then_some(7));
        assert!(matches!(miss, Parsed::Ready(_)));
    }

    fn head(
        status: u16,
        fields: &[(&str, &str)],
        v: Version,
        m: Method,
        ka: bool,
        body: BodyLen,
    ) -> (String, Encoded) {
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = StatusCode::from_u16(status).unwrap();
        for (n, val) in fields {
            parts
                .headers
                .append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(val).unwrap());
        }
        let mut dst = BytesMut::new();
        let e = encode_head(&mut parts, v, &m, ka, body, b"D", &mut dst);
        (String::from_utf8(dst.to_vec()).unwrap(), e)
    }

    #[test]
    fn heads_are_what_hyper_writes() {
        let (h, e) = head(
            200,
            &[("content-type", "text/html"), ("content-length", "612"), ("server", "appnet")],
            Version::HTTP_11,
            Method::GET,
            true,
            BodyLen::Known(612),
        );
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 612\r\nserver: appnet\r\ndate: D\r\n\r\n"
        );
        assert_eq!(e, Encoded { body: BodyOut::Plain, close: false });
        let (h, e) =
            head(404, &[("content-length", "5")], Version::HTTP_11, Method::GET, false, BodyLen::Known(5));
        assert_eq!(h, "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nconnection: close\r\ndate: D\r\n\r\n");
        assert!(e.close);
        let (h, e) =
            head(200, &[("content-length", "5")], Version::HTTP_10, Method::GET, true, BodyLen::Known(5));
        assert_eq!(h, "HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\ndate: D\r\n\r\n");
        assert!(!e.close);
        let (h, e) =
            head(200, &[("content-length", "5")], Version::HTTP_10, Method::GET, false, BodyLen::Known(5));
        assert_eq!(h, "HTTP/1.0 200 OK\r\ncontent-length: 5\r\ndate: D\r\n\r\n");
        assert!(e.close);
        // HEAD keeps the length of what GET would send; no body follows.
        let (h, e) = head(
            200,
            &[("content-length", "5"), ("etag", "\"a\"")],
            Version::HTTP_11,
            Method::HEAD,
            true,
            BodyLen::Empty,
        );
        assert_eq!(h, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\netag: \"a\"\r\ndate: D\r\n\r\n");
        assert_eq!(e.body, BodyOut::Nothing);
        // 304: no length at all.
        let (h, _) = head(304, &[("etag", "\"a\"")], Version::HTTP_11, Method::GET, true, BodyLen::Empty);
        assert_eq!(h, "HTTP/1.1 304 Not Modified\r\netag: \"a\"\r\ndate: D\r\n\r\n");
        // An empty GET body: the field moves to after the others, as 0.
        let (h, _) = head(
            200,
            &[("content-length", "0"), ("etag", "\"a\"")],
            Version::HTTP_11,
            Method::GET,
            true,
            BodyLen::Empty,
        );
        assert_eq!(h, "HTTP/1.1 200 OK\r\netag: \"a\"\r\ncontent-length: 0\r\ndate: D\r\n\r\n");
        // A router close joins hyper's keep-alive on one line, and closes.
        let (h, e) = head(
            400,
            &[("connection", "close"), ("content-length", "1")],
            Version::HTTP_10,
            Method::GET,
            true,
            BodyLen::Known(1),
        );
        assert_eq!(
            h,
            "HTTP/1.0 400 Bad Request\r\nconnection: close, keep-alive\r\ncontent-length: 1\r\ndate: D\r\n\r\n"
        );
        assert!(e.close);
        // Streamed without a length: chunked in 1.1, until close in 1.0.
        let (h, e) = head(200, &[], Version::HTTP_11, Method::GET, true, BodyLen::Unknown);
        assert_eq!(h, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n");
        assert_eq!(e.body, BodyOut::Chunked);
        let (_, e) = head(200, &[], Version::HTTP_10, Method::GET, true, BodyLen::Unknown);
        assert_eq!(e, Encoded { body: BodyOut::UntilClose, close: true });
        // Repeated fields stay on their own lines.
        let (h, _) =
            head(200, &[("vary", "a"), ("vary", "b")], Version::HTTP_11, Method::GET, true, BodyLen::Empty);
        assert_eq!(h, "HTTP/1.1 200 OK\r\nvary: a\r\nvary: b\r\ncontent-length: 0\r\ndate: D\r\n\r\n");
    }

    #[test]
    fn the_date_is_an_imf_fixdate() {
        with_date(|d| assert_eq!(d.len(), 29));
    }
}
