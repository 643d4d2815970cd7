//! The web server's HTTP/1 connection wrapper in front of hyper. Every byte from the client
//! goes through the shared request guard ([`crate::http1_guard`]: head checks and body
//! framing) before hyper sees it; the wrapper adds the timers: 408 for heads that arrive too
//! slowly (slowloris), closing of idle keep-alive connections, and a lingering close after an
//! error response.
//!
//! A rejected head is replaced by a harmless synthetic request and its status is queued as a
//! [`Verdict`]; the connection's service takes one verdict per request, in order, so the error
//! response is written by the normal response path, after the responses to earlier pipelined
//! requests. Nothing after a rejected head is read.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Limits the wrapper enforces on request heads, and its timers.
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

impl Limits {
    /// The size limits, for the guard.
    pub fn head(&self) -> HeadLimits {
        HeadLimits {
            max_request_line: self.max_request_line,
            max_header_bytes: self.max_header_bytes,
            max_headers: self.max_headers,
        }
    }
}

pub use crate::conn_activity::{Activity, InService};
use crate::http1_guard::{Framer, HeadLimits};
pub use crate::http1_guard::{Framing, Verdict, check_head, expect_ok, valid_host};

/// The wrapper around an HTTP/1 connection's byte stream (see the module docs).
pub struct Http1Conn<IO> {
    io: IO,
    limits: Limits,
    activity: Activity,
    framer: Framer,
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

impl<IO> Http1Conn<IO> {
    /// Wraps `io`; the guard's verdicts go to `activity` in request order, and its requests in
    /// service hold the idle timer.
    pub fn new(io: IO, limits: Limits, activity: Activity) -> Http1Conn<IO> {
        let now = Instant::now();
        Http1Conn {
            io,
            limits,
            activity,
            framer: Framer::new(limits.head()),
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
    pub fn first_head_by(mut self, deadline: Instant) -> Http1Conn<IO> {
        let start = deadline.checked_sub(self.limits.header_timeout).unwrap_or_else(Instant::now);
        self.head_started = Some(start);
        self
    }

    /// Feeds bytes read from the client through the guard into `out`, timing heads.
    fn feed(&mut self, data: &[u8]) {
        let heads = self.framer.heads();
        let activity = &self.activity;
        self.framer.feed(data, &mut self.out, &mut |v| activity.push_verdict(v));
        if self.framer.heads() != heads {
            self.head_started = None;
        }
        if self.framer.head_under_way() && self.head_started.is_none() {
            self.head_started = Some(Instant::now());
        }
        if self.framer.is_closed() {
            // The error response still has to go out: the idle clock starts again now.
            self.last_activity = Instant::now();
        }
    }

    fn reject(&mut self, v: Verdict) {
        let activity = &self.activity;
        self.framer.reject(v, &mut self.out, &mut |v| activity.push_verdict(v));
        self.head_started = None;
        self.last_activity = Instant::now();
    }

    /// The deadline that applies now: header timeout while a head is arriving, else idle.
    fn deadline(&self) -> Instant {
        match (self.framer.awaiting_head(), self.head_started) {
            (true, Some(start)) => start + self.limits.header_timeout,
            _ => self.last_activity + self.limits.idle_timeout,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Http1Conn<IO> {
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
            let polled = if this.framer.is_closed() {
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
                        if this.activity.in_service() > 0 {
                            // The service is still working on a request: not idle.
                            this.last_activity = Instant::now();
                            continue;
                        }
                        // A started head gets 408; a connection that sent nothing is just
                        // closed (as when idle), so a client's unused spare connection is not
                        // handed a response to a request it never made.
                        if this.head_started.is_some() && this.framer.head_under_way() {
                            let why = "request head not received in time";
                            this.reject(Verdict::Reject { status: 408, why });
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

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Http1Conn<IO> {
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
        if this.eof || !this.activity.linger_requested() {
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

    fn drain(input: &'static [u8], limits: Limits, activity: Activity) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut gate = Http1Conn::new(input, limits, activity);
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
        let mut gate = Http1Conn::new(server, limits(), Activity::default()).first_head_by(deadline);
        let mut out = Vec::new();
        gate.read_to_end(&mut out).await.unwrap();
        assert!(out.is_empty());
        assert!(Instant::now() >= deadline && Instant::now() < deadline + ms(100));
        // A head whose first byte comes late is still due at the connection's deadline: 408.
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut gate = Http1Conn::new(server, limits(), activity.clone()).first_head_by(deadline);
        tokio::time::sleep(ms(900)).await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = gate.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], crate::http1_guard::SYNTHETIC);
        assert!(Instant::now() < deadline + ms(100), "not a whole header timeout after the first byte");
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 408, .. }));
    }

    #[test]
    fn pipelined_requests_through_the_gate_stop_at_a_bad_one() {
        let input: &[u8] = b"GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\
GET /c HTTP/9.9\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        let activity = Activity::default();
        let quick = Limits { idle_timeout: Duration::from_millis(100), ..limits() };
        let out = drain(input, quick, activity.clone());
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("hiGET / HTTP/1.1\r\nhost: rejected.invalid\r\n\r\n"));
        assert!(!text.contains("/d"));
        assert_eq!(activity.next_verdict(), Verdict::Pass);
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 505, .. }));
    }
}
