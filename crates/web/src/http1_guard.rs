//! The HTTP/1 request guard: one pure (sans-IO) checker of request heads and body framing,
//! shared by the web server and the caching proxy, for the things hyper does not answer the way
//! RFC 9112 (or the textbook) wants: 505 for unsupported versions, 414 for long request lines,
//! 431 for too many or too large header fields, 400 for request smuggling shapes
//! (Content-Length with Transfer-Encoding, duplicate or malformed Content-Length, obs-fold,
//! bare CR/LF in a head, Transfer-Encoding in HTTP/1.0, chunked applied twice), 501 for unknown
//! transfer codings, 400 for HTTP/1.1 without exactly one valid Host and 417 for expectations
//! other than `100-continue`.
//!
//! [`check_head`] judges one head; [`Framer`] walks a connection's byte stream (heads, then
//! `Content-Length` or chunked bodies, then the next pipelined head) and passes it on. A
//! rejected head is replaced by a harmless synthetic request ([`SYNTHETIC`]) and its status is
//! reported as a [`Verdict`]; the connection's service takes one verdict per request, in order,
//! so the error response goes out by the normal response path after the responses to earlier
//! pipelined requests. Nothing after a rejected head is passed on. The I/O and the timers
//! live in [`crate::http1_conn::Http1Conn`], which the server and the proxy both use.

use bytes::BytesMut;

/// The size limits on request heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request line in bytes (414 beyond).
    pub max_request_line: usize,
    /// Largest head in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
}

/// The guard's decision about one request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The head is fine; hyper has it verbatim.
    Pass,
    /// Answer with this status and close; `why` is for the log.
    Reject {
        /// The status code to send.
        status: u16,
        /// A short reason for the log and the error page.
        why: &'static str,
    },
}

/// The pure head check: `Ok(Some((head_len, framing)))` for a complete acceptable head,
/// `Ok(None)` when more bytes are needed, `Err(verdict)` to reject.
pub fn check_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<(usize, Framing)>, Verdict> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    Ok(parse_head(buf, limits, &mut headers)?.map(|(len, framing, _)| (len, framing)))
}

/// [`check_head`] that also hands back the parsed head, for the HTTP/1 fast path
/// ([`crate::http1_fast`]), which serves it without parsing it twice. `headers` must hold at
/// least `limits.max_headers` entries (only that many are used, so the 431 limit is the same).
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    limits: &HeadLimits,
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<(usize, Framing, httparse::Request<'h, 'b>)>, Verdict> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    let leading = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    match line_end {
        None if buf.len() - leading > limits.max_request_line => {
            return Err(reject(414, "request line too long"));
        }
        Some(end) if end > leading && end - leading > limits.max_request_line => {
            return Err(reject(414, "request line too long"));
        }
        _ => {}
    }
    let n = limits.max_headers.min(headers.len());
    let mut req = httparse::Request::new(&mut headers[..n]);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::Version) => return Err(reject(505, "HTTP version not supported")),
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many header fields")),
        Err(_) => return Err(reject(400, "malformed request head")),
    };
    let len = match status {
        httparse::Status::Partial => {
            if buf.len() > limits.max_header_bytes {
                return Err(reject(431, "request head too large"));
            }
            return Ok(None);
        }
        httparse::Status::Complete(len) => len,
    };
    if len > limits.max_header_bytes {
        return Err(reject(431, "request head too large"));
    }
    let version = req.version.unwrap_or(1);
    let connect = req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
    let mut content_length: Option<u64> = None;
    let mut te: Vec<String> = Vec::new();
    let mut hosts = 0;
    let mut expectation = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value).unwrap_or("").trim();
            if content_length.is_some() {
                return Err(reject(400, "duplicate Content-Length"));
            }
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(reject(400, "malformed Content-Length"));
            }
            content_length = v.parse().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            te.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        } else if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
            if !valid_host(h.value) {
                return Err(reject(400, "invalid Host"));
            }
        } else if h.name.eq_ignore_ascii_case("expect") && !expect_ok(h.value) {
            expectation = true;
        }
    }
    if version == 1 && hosts != 1 {
        return Err(reject(
            400,
            if hosts == 0 { "HTTP/1.1 request without Host" } else { "more than one Host" },
        ));
    }
    if hosts > 1 {
        return Err(reject(400, "more than one Host"));
    }
    if expectation {
        return Err(reject(417, "the only expectation supported is 100-continue"));
    }
    let framing = if connect {
        // A CONNECT request has no content (RFC 9110 §9.3.6); what follows is the tunnel's.
        if !te.is_empty() || content_length.is_some_and(|n| n > 0) {
            return Err(reject(400, "CONNECT with content"));
        }
        Framing::Tunnel
    } else if !te.is_empty() {
        if content_length.is_some() {
            return Err(reject(400, "both Content-Length and Transfer-Encoding"));
        }
        if version == 0 {
            return Err(reject(400, "Transfer-Encoding in HTTP/1.0"));
        }
        if te.iter().any(|c| c != "chunked") {
            return Err(reject(501, "unsupported transfer coding"));
        }
        if te.len() != 1 {
            return Err(reject(400, "chunked applied more than once"));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(n) if n > 0 => Framing::Length(n),
            _ => Framing::None,
        }
    };
    Ok(Some((len, framing, req)))
}

/// Whether a Host field value (or HTTP/2 `:authority`) is `uri-host [ ":" port ]` (RFC 9110
/// §7.2, RFC 3986 §3.2.2): a reg-name of unreserved, pct-encoded and sub-delims characters, an
/// IPv4 address (a reg-name too), or an IP literal in brackets; the port is digits. An empty
/// value is allowed (RFC 9112 §3.2: a target without an authority). Anything else gets 400,
/// so a name with spaces or userinfo never reaches virtual-host selection or the logs.
pub fn valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else { return false };
        if !ip_literal(&rest[..end]) {
            return false;
        }
        match &rest[end + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(i) => (&value[..i], &value[i + 1..]),
            None => (value, &[][..]),
        }
    };
    // A port needs a host in front of it (RFC 9110 §4.2.1: no empty host in an http URI).
    let port_without_host = host.is_empty() && !value.is_empty() && value[0] != b'[';
    port.len() <= 5 && port.iter().all(u8::is_ascii_digit) && reg_name(host) && !port_without_host
}

fn unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b)
}

fn reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !(i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if unreserved_or_sub_delim(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `IPv6address / IPvFuture` (RFC 3986 §3.2.2), the inside of the brackets.
fn ip_literal(s: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = s {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else { return false };
        return dot > 0
            && rest[..dot].iter().all(u8::is_ascii_hexdigit)
            && rest.len() > dot + 1
            && rest[dot + 1..].iter().all(|&b| b == b':' || unreserved_or_sub_delim(b));
    }
    std::str::from_utf8(s).is_ok_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
}

/// Whether an Expect field value asks only for `100-continue` (which hyper answers); any
/// other expectation gets 417 (RFC 9110 §10.1.1). An empty list expects nothing.
pub fn expect_ok(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(|m| m.trim_ascii())
        .filter(|m| !m.is_empty())
        .all(|m| m.eq_ignore_ascii_case(b"100-continue"))
}

fn reject(status: u16, why: &'static str) -> Verdict {
    Verdict::Reject { status, why }
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// A CONNECT request: what follows the head are the tunnel's bytes, not HTTP/1.
    Tunnel,
}

/// The synthetic head handed to hyper in place of a rejected one.
pub const SYNTHETIC: &[u8] = b"GET / HTTP/1.1\r\nhost: rejected.invalid\r\n\r\n";

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    /// After a rejection: everything further is dropped and hyper sees end of input.
    Closed,
    /// Malformed chunked framing (hyper fails the body and closes), or a CONNECT tunnel: bytes
    /// pass unchecked.
    PassThrough,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading the size line; `size` so far, whether in an extension, line length so far.
    Size { size: u64, ext: bool, digits: usize },
    /// Saw CR after the size line.
    SizeLf { size: u64 },
    /// Chunk data with this many bytes left.
    Data(u64),
    /// Expecting CR after data.
    DataCr,
    /// Expecting LF after data.
    DataLf,
    /// In the trailer section: bytes on the current line.
    Trailer { line: usize, total: usize },
}

/// The sans-IO framing walker over one connection's request bytes (see the module docs).
#[derive(Debug)]
pub struct Framer {
    limits: HeadLimits,
    state: State,
    /// A head being gathered.
    head: BytesMut,
    /// Heads passed or rejected so far.
    heads: u64,
}

impl Framer {
    /// A connection's walker, expecting a request head first.
    pub fn new(limits: HeadLimits) -> Framer {
        Framer { limits, state: State::Head, head: BytesMut::new(), heads: 0 }
    }

    /// Whether part of a head has arrived and the rest has not (the header timeout runs).
    pub fn head_under_way(&self) -> bool {
        matches!(self.state, State::Head) && !self.head.is_empty()
    }

    /// Whether the walker waits for a head (none under way, or one partly here).
    pub fn awaiting_head(&self) -> bool {
        matches!(self.state, State::Head)
    }

    /// Whether a head was rejected: nothing more is passed on.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// How many heads were passed or rejected so far.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Walks `data` (the next bytes from the client): what hyper should read goes to `out`, one
    /// verdict per head to `verdict`, in order.
    pub fn feed(&mut self, mut data: &[u8], out: &mut BytesMut, verdict: &mut impl FnMut(Verdict)) {
        while !data.is_empty() {
            match &mut self.state {
                State::Closed => return,
                State::PassThrough => {
                    out.extend_from_slice(data);
                    return;
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    out.extend_from_slice(&data[..take]);
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Head;
                    }
                    data = &data[take..];
                }
                State::Chunked(_) => {
                    let used = self.walk_chunked(data);
                    out.extend_from_slice(&data[..used]);
                    data = &data[used..];
                }
                State::Head => {
                    self.head.extend_from_slice(data);
                    data = &[];
                    match check_head(&self.head, &self.limits) {
                        Ok(None) => {}
                        Ok(Some((len, framing))) => {
                            self.heads += 1;
                            verdict(Verdict::Pass);
                            out.extend_from_slice(&self.head.split_to(len));
                            self.state = match framing {
                                Framing::None => State::Head,
                                Framing::Length(n) => State::Body(n),
                                Framing::Chunked => {
                                    State::Chunked(Chunk::Size { size: 0, ext: false, digits: 0 })
                                }
                                Framing::Tunnel => State::PassThrough,
                            };
                            // The rest of what was buffered belongs to the body or the next head.
                            let rest = std::mem::take(&mut self.head);
                            self.feed(&rest, out, verdict);
                        }
                        Err(v) => self.reject(v, out, verdict),
                    }
                }
            }
        }
    }

    /// Refuses the head under way (or the next one) with `v`, e.g. 408 from the driver's
    /// header timer: the synthetic head goes to `out`, and nothing more is passed on.
    pub fn reject(&mut self, v: Verdict, out: &mut BytesMut, verdict: &mut impl FnMut(Verdict)) {
        self.heads += 1;
        verdict(v);
        out.extend_from_slice(SYNTHETIC);
        self.head.clear();
        self.state = State::Closed;
    }

    /// Walks chunked framing; returns how many bytes of `data` belong to this body.
    fn walk_chunked(&mut self, data: &[u8]) -> usize {
        const MAX_LINE: usize = 4096;
        const MAX_TRAILERS: usize = 16 * 1024;
        let State::Chunked(mut c) = self.state else { return 0 };
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            c = match c {
                Chunk::Size { size, ext, digits } => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b'\n' => {
                        if size == 0 {
                            Chunk::Trailer { line: 0, total: 0 }
                        } else {
                            Chunk::Data(size)
                        }
                    }
                    _ if digits > MAX_LINE => {
                        self.state = State::PassThrough;
                        return i;
                    }
                    _ if ext => Chunk::Size { size, ext, digits: digits + 1 },
                    b';' | b' ' | b'\t' => Chunk::Size { size, ext: true, digits: digits + 1 },
                    _ => match (b as char).to_digit(16) {
                        Some(d) if size >> 60 == 0 => {
                            Chunk::Size { size: size << 4 | u64::from(d), ext, digits: digits + 1 }
                        }
                        _ => {
                            self.state = State::PassThrough;
                            return i;
                        }
                    },
                },
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        self.state = State::PassThrough;
                        return i;
                    }
                    if size == 0 { Chunk::Trailer { line: 0, total: 0 } } else { Chunk::Data(size) }
                }
                Chunk::Data(n) => {
                    let take = n.min((data.len() - i) as u64);
                    i += take as usize;
                    let left = n - take;
                    c = if left == 0 { Chunk::DataCr } else { Chunk::Data(left) };
                    continue;
                }
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size { size: 0, ext: false, digits: 0 },
                    _ => {
                        self.state = State::PassThrough;
                        return i;
                    }
                },
                Chunk::DataLf => {
                    if b != b'\n' {
                        self.state = State::PassThrough;
                        return i;
                    }
                    Chunk::Size { size: 0, ext: false, digits: 0 }
                }
                Chunk::Trailer { line, total } => {
                    if total > MAX_TRAILERS {
                        self.state = State::PassThrough;
                        return i;
                    }
                    match b {
                        b'\n' if line == 0 => {
                            self.state = State::Head;
                            return i + 1;
                        }
                        b'\n' => Chunk::Trailer { line: 0, total: total + 1 },
                        b'\r' => Chunk::Trailer { line, total: total + 1 },
                        _ => Chunk::Trailer { line: line + 1, total: total + 1 },
                    }
                }
            };
            i += 1;
        }
        self.state = State::Chunked(c);
        data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HeadLimits {
        HeadLimits { max_request_line: 100, max_header_bytes: 400, max_headers: 10 }
    }

    fn status(head: &str) -> u16 {
        match check_head(head.as_bytes(), &limits()) {
            Ok(Some(_)) => 200,
            Ok(None) => 0,
            Err(Verdict::Reject { status, .. }) => status,
            Err(Verdict::Pass) => unreachable!(),
        }
    }

    #[test]
    fn good_heads_pass_with_their_framing() {
        let l = limits();
        assert_eq!(check_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &l), Ok(Some((27, Framing::None))));
        assert_eq!(
            check_head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", &l),
            Ok(Some((47, Framing::Length(5))))
        );
        assert!(matches!(
            check_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &l),
            Ok(Some((_, Framing::Chunked)))
        ));
        assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200, "1.0 needs no Host");
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n"), 0, "incomplete");
    }

    #[test]
    fn bad_heads_get_their_status() {
        assert_eq!(status("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(&format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(200))), 414);
        assert_eq!(status(&format!("GET /{}", "a".repeat(200))), 414, "before the line ends");
        let many: String = (0..20).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n")), 431);
        assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "b".repeat(500))), 431);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n  folded\r\n\r\n"), 400, "obs-fold");
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"),
            400
        );
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 400);
        assert_eq!(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(status("GET\x01 / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn host_values_must_be_uri_hosts() {
        for good in [
            "a",
            "www.example.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%20b",
            "example.com.",
            "",
            "host:",
        ] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n")), 200, "{good:?}");
        }
        for bad in [
            "a b",
            "a\tb",
            "user@host",
            "a/b",
            "a:b:c",
            "a:80x",
            "a:123456",
            "[::1",
            "[::g]",
            "[::1]x",
            "[::1]:a",
            "a%2",
            "a%zz",
            "\"quoted\"",
            "a<b>",
            "caf\u{e9}",
        ] {
            assert_eq!(status(&format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n")), 400, "{bad:?}");
        }
        assert_eq!(status("GET / HTTP/1.0\r\nHost: a b\r\n\r\n"), 400, "HTTP/1.0 too");
    }

    #[test]
    fn expectations_other_than_100_continue_get_417() {
        let req = |e: &str| status(&format!("POST / HTTP/1.1\r\nHost: a\r\nExpect: {e}\r\n\r\n"));
        assert_eq!(req("100-continue"), 200);
        assert_eq!(req("100-Continue"), 200, "case-insensitive");
        assert_eq!(req("foo"), 417);
        assert_eq!(req("100-continue, foo"), 417);
        assert_eq!(req("200-ok"), 417);
    }

    fn walk(input: &[u8], read_size: usize) -> (Vec<u8>, Vec<Verdict>) {
        let mut framer = Framer::new(limits());
        let (mut out, mut verdicts) = (BytesMut::new(), Vec::new());
        for piece in input.chunks(read_size) {
            framer.feed(piece, &mut out, &mut |v| verdicts.push(v));
        }
        (out.to_vec(), verdicts)
    }

    #[test]
    fn pipelined_requests_with_bodies_pass_and_a_bad_one_stops_the_stream() {
        let input: &[u8] =
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n\
GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
GET /c HTTP/9.9\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        // The same outcome however the bytes are split into reads.
        for read_size in [1, 3, 7, input.len()] {
            let (out, v) = walk(input, read_size);
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with("POST /a"));
            assert!(text.contains("0\r\nT: 1\r\n\r\nGET /b"));
            assert!(text.ends_with("hiGET / HTTP/1.1\r\nhost: rejected.invalid\r\n\r\n"), "{read_size}");
            assert!(!text.contains("/d"));
            assert_eq!(v.len(), 3);
            assert_eq!(v[..2], [Verdict::Pass, Verdict::Pass]);
            assert!(matches!(v[2], Verdict::Reject { status: 505, .. }));
        }
    }

    #[test]
    fn smuggling_shapes_are_refused_and_nothing_after_them_is_passed_on() {
        let smuggled = "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
        for (shape, want) in [
            ("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", 400),
            ("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", 400),
            ("Content-Length: 4\r\nContent-Length: 5\r\n", 400),
            ("Content-Length: 4, 4\r\n", 400),
            ("Content-Length: -1\r\n", 400),
            ("Transfer-Encoding: chunked, identity\r\n", 501),
            ("Transfer-Encoding: identity\r\n", 501),
            ("Transfer-Encoding: xchunked\r\n", 501),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400),
            ("X: y\r\n chunked\r\n", 400),
            ("X: y\rContent-Length: 4\r\n", 400),
            ("Transfer-Encoding : chunked\r\n", 400),
        ] {
            let input = format!("POST / HTTP/1.1\r\nHost: x\r\n{shape}\r\n0\r\n\r\n{smuggled}");
            let (out, v) = walk(input.as_bytes(), 5);
            assert_eq!(out, SYNTHETIC, "{shape:?}");
            assert!(matches!(v[..], [Verdict::Reject { status, .. }] if status == want), "{shape:?}: {v:?}");
        }
        // A bare CR is refused. (A bare LF ends a line for the guard and for hyper alike, as RFC
        // 9112 §2.2 allows, so both see the same fields and the same framing.)
        assert_eq!(status("GET / HTTP/1.1\rHost: a\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
    }

    #[test]
    fn a_connect_head_hands_the_rest_to_the_tunnel_unchecked() {
        let input =
            b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01 not http at all\r\n\r\n";
        let (out, v) = walk(input, 4);
        assert_eq!(out, input);
        assert_eq!(v, [Verdict::Pass]);
        assert_eq!(
            status("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\nContent-Length: 3\r\n\r\n"),
            400
        );
    }

    #[test]
    fn the_framer_reports_heads_under_way_and_rejects_on_request() {
        let mut framer = Framer::new(limits());
        let (mut out, mut v) = (BytesMut::new(), Vec::new());
        assert!(framer.awaiting_head() && !framer.head_under_way());
        framer.feed(b"GET / HTTP/1.1\r\nHo", &mut out, &mut |x| v.push(x));
        assert!(framer.head_under_way() && out.is_empty());
        framer.reject(Verdict::Reject { status: 408, why: "slow" }, &mut out, &mut |x| v.push(x));
        assert!(framer.is_closed());
        assert_eq!(&out[..], SYNTHETIC);
        framer.feed(b"st: a\r\n\r\n", &mut out, &mut |x| v.push(x));
        assert_eq!(&out[..], SYNTHETIC, "nothing after a rejection");
        assert_eq!(v, [Verdict::Reject { status: 408, why: "slow" }]);
        assert_eq!(framer.heads(), 1);
    }

    #[test]
    fn a_port_needs_a_host() {
        assert!(!valid_host(b":80"));
        assert!(!valid_host(b":"));
        assert!(valid_host(b"a:"));
        assert!(valid_host(b""));
    }
}
