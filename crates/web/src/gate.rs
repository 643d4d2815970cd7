//! The HTTP/1 gate: an I/O wrapper in front of hyper that checks every request head before hyper
//! sees it, for the things hyper does not answer the way RFC 9112 (or the textbook) wants:
//! 505 for unsupported versions, 414 for long request lines, 431 for too many or too large
//! header fields, 400 for request smuggling shapes (Content-Length with Transfer-Encoding,
//! duplicate or malformed Content-Length, obs-fold, Transfer-Encoding in HTTP/1.0), 501 for
//! unknown transfer codings, 400 for HTTP/1.1 without exactly one Host, 408 for heads that
//! arrive too slowly (slowloris), and closing of idle keep-alive connections.
//!
//! A rejected head is replaced by a harmless synthetic request and its status is queued as a
//! [`Verdict`]; the connection's service takes one verdict per request, in order, so the error
//! response is written by the normal response path, after the responses to earlier pipelined
//! requests. Nothing after a rejected head is read.

use bytes::{Buf, BytesMut};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Limits the gate enforces on request heads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request line in bytes (414 beyond).
    pub max_request_line: usize,
    /// Largest head in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Time allowed from the first byte of a head to its end (408 beyond).
    pub header_timeout: Duration,
    /// Time a connection may see no traffic in either direction before it is closed.
    pub idle_timeout: Duration,
}

/// The gate's decision about one request head.
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

/// What the gate and the connection's service share: the verdict queue, and how many requests
/// the service is working on (no idle timeout while one is).
#[derive(Debug, Default)]
pub struct Shared {
    queue: Mutex<VecDeque<Verdict>>,
    in_service: AtomicUsize,
    linger: AtomicBool,
}

/// Asks for a lingering close: the connection is closing after an error response, possibly
/// while the client is still sending, so the gate reads and discards for a while before the
/// socket closes (a reset would destroy the response).
pub fn request_linger(v: &Verdicts) {
    v.linger.store(true, Ordering::SeqCst);
}

/// The per-connection shared state.
pub type Verdicts = Arc<Shared>;

/// Takes the verdict for the next request (Pass if the gate had none, e.g. for HTTP/2).
pub fn next_verdict(v: &Verdicts) -> Verdict {
    v.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(Verdict::Pass)
}

/// Marks a request as being served until dropped (the idle timer waits meanwhile).
pub struct InService(Verdicts);

impl InService {
    /// Starts serving one request on the connection.
    pub fn enter(v: &Verdicts) -> InService {
        v.in_service.fetch_add(1, Ordering::SeqCst);
        InService(v.clone())
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        self.0.in_service.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The pure head check: `Ok(Some((head_len, framing)))` for a complete acceptable head,
/// `Ok(None)` when more bytes are needed, `Err(verdict)` to reject.
pub fn check_head(buf: &[u8], limits: &Limits) -> Result<Option<(usize, Framing)>, Verdict> {
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
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
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
    let framing = if !te.is_empty() {
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
    Ok(Some((len, framing)))
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
    port.len() <= 5 && port.iter().all(u8::is_ascii_digit) && reg_name(host)
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
}

/// The synthetic head handed to hyper in place of a rejected one.
const SYNTHETIC: &[u8] = b"GET / HTTP/1.1\r\nhost: rejected.invalid\r\n\r\n";

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    Chunked(Chunk),
    /// After a rejection: everything further is dropped and hyper sees end of input.
    Closed,
    /// Malformed chunked framing: bytes pass unchecked; hyper fails the body and closes.
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

/// The gate around a connection's byte stream (see the module docs).
pub struct Gate<IO> {
    io: IO,
    limits: Limits,
    verdicts: Verdicts,
    state: State,
    head: BytesMut,
    out: BytesMut,
    inbuf: Vec<u8>,
    head_started: Option<Instant>,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
    eof: bool,
    /// Lingering close: (FIN sent, bytes discarded so far, deadline).
    closing: Option<(bool, u64, Instant)>,
}

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so an error response is not destroyed by a TCP reset while the client is mid-upload.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;

impl<IO> Gate<IO> {
    /// Wraps `io`; verdicts go to `verdicts` in request order.
    pub fn new(io: IO, limits: Limits, verdicts: Verdicts) -> Gate<IO> {
        let now = Instant::now();
        Gate {
            io,
            limits,
            verdicts,
            state: State::Head,
            head: BytesMut::new(),
            out: BytesMut::new(),
            inbuf: vec![0; 16 * 1024],
            head_started: None,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            eof: false,
            closing: None,
        }
    }

    /// The connection's first head must be complete by `deadline` (408 otherwise), counted
    /// from when the connection was accepted rather than from its first byte, so a client that
    /// connects and stays silent (or is slow through TLS) is cut at the header timeout too.
    pub fn first_head_by(mut self, deadline: Instant) -> Gate<IO> {
        let start = deadline.checked_sub(self.limits.header_timeout).unwrap_or_else(Instant::now);
        self.head_started = Some(start);
        self
    }

    fn push_verdict(&self, v: Verdict) {
        self.verdicts.queue.lock().unwrap_or_else(|e| e.into_inner()).push_back(v);
    }

    /// Feeds bytes read from the client through the state machine into `out`.
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Closed => return,
                State::PassThrough => {
                    self.out.extend_from_slice(data);
                    return;
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    self.out.extend_from_slice(&data[..take]);
                    *n -= take as u64;
                    if *n == 0 {
                        self.state = State::Head;
                    }
                    data = &data[take..];
                }
                State::Chunked(_) => {
                    let used = self.feed_chunked(data);
                    self.out.extend_from_slice(&data[..used]);
                    data = &data[used..];
                }
                State::Head => {
                    if self.head.is_empty() && self.head_started.is_none() {
                        self.head_started = Some(Instant::now());
                    }
                    self.head.extend_from_slice(data);
                    data = &[];
                    match check_head(&self.head, &self.limits) {
                        Ok(None) => {}
                        Ok(Some((len, framing))) => {
                            self.push_verdict(Verdict::Pass);
                            let head = self.head.split_to(len);
                            self.out.extend_from_slice(&head);
                            self.head_started = None;
                            self.state = match framing {
                                Framing::None => State::Head,
                                Framing::Length(n) => State::Body(n),
                                Framing::Chunked => {
                                    State::Chunked(Chunk::Size { size: 0, ext: false, digits: 0 })
                                }
                            };
                            // The rest of what we buffered belongs to the body or the next head.
                            let rest = std::mem::take(&mut self.head);
                            self.feed(&rest);
                        }
                        Err(v) => self.reject(v),
                    }
                }
            }
        }
    }

    fn reject(&mut self, v: Verdict) {
        self.push_verdict(v);
        self.out.extend_from_slice(SYNTHETIC);
        self.head.clear();
        self.head_started = None;
        self.state = State::Closed;
        // The error response still has to go out: the idle clock starts again now.
        self.last_activity = Instant::now();
    }

    /// Walks chunked framing; returns how many bytes of `data` belong to this body.
    fn feed_chunked(&mut self, data: &[u8]) -> usize {
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

    /// The deadline that applies now: header timeout while a head is arriving, else idle.
    fn deadline(&self) -> Instant {
        match (&self.state, self.head_started) {
            (State::Head, Some(start)) => start + self.limits.header_timeout,
            _ => self.last_activity + self.limits.idle_timeout,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Gate<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.inbuf);
            // After a rejection nothing more is read; only the idle timer can end the wait
            // (hyper closes the connection itself once the error response is out).
            let polled = if matches!(this.state, State::Closed) {
                Poll::Pending
            } else {
                Pin::new(&mut this.io).poll_read(cx, &mut rb)
            };
            match polled {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                    this.last_activity = Instant::now();
                    let data = std::mem::take(&mut this.inbuf);
                    this.feed(&data[..n]);
                    this.inbuf = data;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    // Timers: the sleep may be early (activity moved the deadline); re-arm then.
                    loop {
                        let deadline = this.deadline();
                        if this.timer.deadline() != deadline {
                            this.timer.as_mut().reset(deadline);
                        }
                        ready!(this.timer.as_mut().poll(cx));
                        if Instant::now() < this.deadline() {
                            continue;
                        }
                        if this.verdicts.in_service.load(Ordering::SeqCst) > 0 {
                            // The service is still working on a request: not idle.
                            this.last_activity = Instant::now();
                            continue;
                        }
                        // A started head gets 408; a connection that sent nothing is just
                        // closed (as when idle), so a client's unused spare connection is not
                        // handed a response to a request it never made.
                        if this.head_started.is_some()
                            && matches!(this.state, State::Head)
                            && !this.head.is_empty()
                        {
                            this.reject(reject(408, "request head not received in time"));
                            break;
                        }
                        // Idle: end the connection quietly.
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Gate<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, data))?;
        self.last_activity = Instant::now();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.last_activity = Instant::now();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let (fin_sent, mut drained, deadline) =
            *this.closing.get_or_insert((false, 0, Instant::now() + LINGER));
        if !fin_sent {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.closing = Some((true, drained, deadline));
        }
        if this.eof || !this.verdicts.linger.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        // Lingering close: discard what the client still sends until it closes too.
        loop {
            let mut rb = ReadBuf::new(&mut this.inbuf);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    drained += rb.filled().len() as u64;
                    this.closing = Some((true, drained, deadline));
                    if drained > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    if this.timer.deadline() != deadline {
                        this.timer.as_mut().reset(deadline);
                    }
                    ready!(this.timer.as_mut().poll(cx));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_request_line: 100,
            max_header_bytes: 400,
            max_headers: 10,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
        }
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

    fn drain(input: &'static [u8], limits: Limits, verdicts: Verdicts) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut gate = Gate::new(input, limits, verdicts);
            let mut out = Vec::new();
            gate.read_to_end(&mut out).await.unwrap();
            out
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_at_the_connections_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ms = Duration::from_millis;
        // Silent: a quiet end of input at the deadline (not after the 5 s idle timeout).
        let (_client, server) = tokio::io::duplex(1024);
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut gate = Gate::new(server, limits(), Verdicts::default()).first_head_by(deadline);
        let mut out = Vec::new();
        gate.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        assert!(Instant::now() >= deadline && Instant::now() < deadline + ms(100));
        // A head whose first byte comes late is still due at the connection's deadline: 408.
        let (mut client, server) = tokio::io::duplex(1024);
        let verdicts = Verdicts::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut gate = Gate::new(server, limits(), verdicts.clone()).first_head_by(deadline);
        tokio::time::sleep(ms(900)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = gate.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], SYNTHETIC);
        assert!(Instant::now() < deadline + ms(100), "not a whole header timeout after the first byte");
        assert!(matches!(next_verdict(&verdicts), Verdict::Reject { status: 408, .. }));
    }

    #[test]
    fn pipelined_requests_with_bodies_pass_and_a_bad_one_stops_the_stream() {
        let input: &[u8] =
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n\
GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
GET /c HTTP/9.9\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        let verdicts = Verdicts::default();
        let quick = Limits { idle_timeout: Duration::from_millis(100), ..limits() };
        let out = drain(input, quick, verdicts.clone());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /a"));
        assert!(text.contains("0\r\nT: 1\r\n\r\nGET /b"));
        assert!(text.ends_with("hiGET / HTTP/1.1\r\nhost: rejected.invalid\r\n\r\n"));
        assert!(!text.contains("/d"));
        let v: Vec<_> = verdicts.queue.lock().unwrap().iter().copied().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], Verdict::Pass);
        assert_eq!(v[1], Verdict::Pass);
        assert!(matches!(v[2], Verdict::Reject { status: 505, .. }));
    }
}
