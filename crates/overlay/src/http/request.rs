//! The HTTP/1.1 request heads a servent's upload side understands (pure, fuzzed through
//! `overlay_handshake`'s sibling tests): `GET /get/<index>/<name>`,
//! `GET /uri-res/N2R?urn:sha1:<base32>`, one byte range, and keep-alive.

use crate::napster::wire::Sha1;

/// Most header lines one request may carry.
const MAX_HEADERS: usize = 32;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/get/<index>/<name>`: the file at that index, whose name must match.
    ByIndex { index: u32, name: String },
    /// `/uri-res/N2R?urn:sha1:<base32>` (RFC 2169 name-to-resource).
    ByUrn(Sha1),
    /// Anything else (answered 404).
    Unknown,
}

/// The request methods served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Send the file.
    Get,
    /// Send only the headers.
    Head,
    /// Anything else (answered 501).
    Other,
}

/// A `Range: bytes=...` request for one range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive).
    FromTo(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The requested resource.
    pub target: Target,
    /// The one range asked for, if any (several ranges are served as the whole file).
    pub range: Option<ByteRange>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `X-Listen`/`Listen-IP` header: the requester's own sharing address, if it says.
    pub listen: Option<std::net::SocketAddr>,
}

/// Why a request head is refused (answered 400 or 431).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not HTTP/1.x.
    #[error("malformed request")]
    Malformed,
    /// More than [`MAX_HEADERS`] header lines.
    #[error("too many header lines")]
    TooManyHeaders,
}

/// Parses a request head from the start of `buf`: `Ok(None)` while incomplete, else the head
/// and its length in bytes.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed),
    };
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let version = req.version.ok_or(HeadError::Malformed)?;
    let target = parse_target(req.path.ok_or(HeadError::Malformed)?);
    let mut keep_alive = version >= 1;
    let mut range = None;
    let mut listen = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        } else if h.name.eq_ignore_ascii_case("range") {
            range = parse_range(value);
        } else if h.name.eq_ignore_ascii_case("x-listen") || h.name.eq_ignore_ascii_case("listen-ip") {
            listen = value.parse().ok();
        }
    }
    Ok(Some((RequestHead { method, target, range, keep_alive, listen }, len)))
}

/// Maps a request target to what it names.
pub fn parse_target(path: &str) -> Target {
    if let Some(rest) = path.strip_prefix("/get/") {
        let Some((index, name)) = rest.split_once('/') else { return Target::Unknown };
        let (Ok(index), Some(name)) = (index.parse(), percent_decode(name)) else { return Target::Unknown };
        return Target::ByIndex { index, name };
    }
    if let Some(query) = path.strip_prefix("/uri-res/N2R?") {
        let urn = percent_decode(query).unwrap_or_default();
        return crate::gnutella::base32::parse_sha1_urn(&urn).map_or(Target::Unknown, Target::ByUrn);
    }
    Target::Unknown
}

/// Decodes `%XX` escapes (and nothing else); `None` if the result is not UTF-8 or an escape
/// is broken.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Escapes a file name for a request target: everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `bytes=a-b`, `bytes=a-`, `bytes=-n`; `None` for anything else (including several
/// ranges), which is served as the whole file.
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    match (a.trim(), b.trim()) {
        ("", n) => n.parse().ok().map(ByteRange::Suffix),
        (a, "") => a.parse().ok().map(ByteRange::From),
        (a, b) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some(ByteRange::FromTo(a, b))
        }
    }
}

/// The inclusive byte span a range selects in a file of `size` bytes; `None` if it selects
/// nothing (answered 416).
pub fn resolve_range(range: ByteRange, size: u64) -> Option<(u64, u64)> {
    if size == 0 {
        return None;
    }
    match range {
        ByteRange::FromTo(a, b) if a < size => Some((a, b.min(size - 1))),
        ByteRange::From(a) if a < size => Some((a, size - 1)),
        ByteRange::Suffix(n) if n > 0 => Some((size - n.min(size), size - 1)),
        _ => None,
    }
}

/// Fuzz entry point: a request head parse of arbitrary bytes never panics, and any range it
/// finds resolves inside the file.
pub fn fuzz_request(data: &[u8]) {
    if let Ok(Some((head, len))) = parse_head(data) {
        assert!(len <= data.len());
        if let Some(r) = head.range {
            for size in [0, 1, 1000] {
                if let Some((a, b)) = resolve_range(r, size) {
                    assert!(a <= b && b < size);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnutella_targets() {
        assert_eq!(
            parse_target("/get/7/Hey%20Jude.mp3"),
            Target::ByIndex { index: 7, name: "Hey Jude.mp3".into() }
        );
        let urn = crate::gnutella::base32::sha1_urn(&[9; 20]);
        assert_eq!(parse_target(&format!("/uri-res/N2R?{urn}")), Target::ByUrn([9; 20]));
        for bad in ["/", "/get/x/y", "/get/1", "/get/1/%zz", "/uri-res/N2R?urn:sha1:short", "/etc/passwd"] {
            assert_eq!(parse_target(bad), Target::Unknown, "{bad}");
        }
        assert_eq!(percent_decode(&percent_encode("a b/ü%")), Some("a b/ü%".into()));
    }

    #[test]
    fn heads_ranges_and_keep_alive() {
        let raw = b"GET /get/1/a HTTP/1.1\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\nrest";
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(len, raw.len() - 4);
        assert_eq!(head.range, Some(ByteRange::FromTo(10, 19)));
        assert!(!head.keep_alive);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse_head(b"\x16\x03\x01junk\r\n\r\n"), Err(HeadError::Malformed));
        let (h10, _) = parse_head(b"HEAD /x HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!((h10.method, h10.keep_alive), (Method::Head, false));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(parse_head(many.as_bytes()), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn ranges_resolve_inside_the_file() {
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(parse_range("bytes=5-"), Some(ByteRange::From(5)));
        assert_eq!(parse_range("bytes=5-1"), None);
        assert_eq!(parse_range("bytes=0-1,3-4"), None);
        assert_eq!(resolve_range(ByteRange::FromTo(5, 500), 100), Some((5, 99)));
        assert_eq!(resolve_range(ByteRange::Suffix(500), 100), Some((0, 99)));
        assert_eq!(resolve_range(ByteRange::From(100), 100), None);
        assert_eq!(resolve_range(ByteRange::Suffix(0), 100), None);
        assert_eq!(resolve_range(ByteRange::From(0), 0), None);
        for junk in
            [&b"GET /get/1/a HTTP/1.1\r\nRange: bytes=99999999999999999999-\r\n\r\n"[..], b"\0\0\0", b"G"]
        {
            fuzz_request(junk);
        }
    }
}
