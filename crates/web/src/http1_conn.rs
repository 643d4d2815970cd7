//! The HTTP/1 connection wrapper in front of hyper, shared by the web server and the proxy:
//! every byte from the client goes through the request guard ([`crate::http1_guard`]: head
//! checks and body framing) before hyper sees it, and the timers run on the connection's
//! [`Activity`] (requests in service, netkit's `ConnSlot`):
//!
//! - a request head must be complete within the header timeout of its first byte (or, for a
//!   connection's first head, of the connection's start: [`Http1Conn::first_head_by`]); a
//!   late head gets 408, a connection that sent nothing is just closed;
//! - a connection with no request in service closes after the idle timeout (counted from the
//!   end of the last request or write); no timer runs while a request is in service;
//! - with [`Http1Conn::sniff_h2`] (the proxy, which serves h2c on the same port), a connection
//!   that starts with HTTP/2's preface passes through unchecked with only the idle timer, and
//!   is first asked to shut down gracefully ([`Activity::expired`]: GOAWAY) and ends [`GRACE`]
//!   later;
//! - after an error response the close lingers (reads and discards) so the client reads the
//!   response instead of a reset.
//!
//! A rejected or late head is replaced by a harmless synthetic request and its status is queued
//! as a [`Verdict`]; the connection's service takes one verdict per request, in order, so the
//! error response is written by the normal response path, after the responses to earlier
//! pipelined requests. Nothing after a rejected head is read.

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

/// How long an idle HTTP/2 connection gets after GOAWAY before it is closed.
pub const GRACE: Duration = Duration::from_secs(2);

/// How long a closing connection keeps reading (and discarding) what the client still sends,
/// so an error response is not destroyed by a TCP reset while the client is mid-upload.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// The HTTP/2 connection preface's start: such connections have no HTTP/1 heads to time.
const H2_START: &[u8] = b"PRI * HTTP/2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

/// The wrapper around a client connection's byte stream (see the module docs).
pub struct Http1Conn<IO> {
    io: IO,
    activity: Activity,
    limits: Limits,
    sleep: Pin<Box<Sleep>>,
    proto: Proto,
    /// The first bytes, until they tell HTTP/2's preface from an HTTP/1 request.
    sniffed: Vec<u8>,
    /// Bytes read before the protocol is known.
    held: Vec<u8>,
    /// A head under way (or the first one, due from the connection's start): the entry count
    /// when it started, and when.
    head: Option<(u64, Instant)>,
    last_write: Instant,
    /// HTTP/2: when the graceful shutdown asked for at the idle timeout must be over.
    grace: Option<Instant>,
    /// End of input for hyper: a timer expired, or the client closed.
    eof: bool,
    framer: Framer,
    /// Bytes for hyper (checked by the guard for HTTP/1).
    out: BytesMut,
    inbuf: Vec<u8>,
    /// Lingering close: (FIN sent, bytes discarded so far, deadline).
    closing: Option<(bool, u64, Instant)>,
}

impl<IO> Http1Conn<IO> {
    /// Wraps an HTTP/1 connection; the guard's verdicts go to `activity` in request order, and
    /// its requests in service hold the timers.
    pub fn new(io: IO, limits: Limits, activity: Activity) -> Http1Conn<IO> {
        let now = Instant::now();
        Http1Conn {
            io,
            activity,
            limits,
            sleep: Box::pin(tokio::time::sleep_until(now + limits.idle_timeout)),
            proto: Proto::H1,
            sniffed: Vec::new(),
            held: Vec::new(),
            head: None,
            last_write: now,
            grace: None,
            eof: false,
            framer: Framer::new(limits.head()),
            out: BytesMut::new(),
            inbuf: vec![0; 16 * 1024],
            closing: None,
        }
    }

    /// Lets HTTP/2 with prior knowledge through: a connection starting with the preface is
    /// passed on unchecked, with the idle timer and a graceful end.
    pub fn sniff_h2(mut self) -> Http1Conn<IO> {
        self.proto = Proto::Unknown;
        self
    }

    /// The connection's first head must be complete by `deadline` (408 otherwise), counted
    /// from when the connection was accepted rather than from its first byte, so a client that
    /// connects and stays silent (or is slow through TLS) is cut at the header timeout too.
    pub fn first_head_by(mut self, deadline: Instant) -> Http1Conn<IO> {
        let start = deadline.checked_sub(self.limits.header_timeout).unwrap_or_else(Instant::now);
        self.head = Some((self.activity.entered(), start));
        self
    }

    /// Whether part of a request head has arrived (a late one gets 408, not a quiet close).
    fn head_bytes(&self) -> bool {
        self.framer.head_under_way() || !self.held.is_empty()
    }

    /// When the connection must close if nothing changes; `None` while a request is in service.
    fn deadline(&mut self) -> Option<Instant> {
        let activity = &self.activity;
        if activity.in_service() > 0 {
            self.head = None;
            return None;
        }
        if let Some(grace) = self.grace {
            return Some(grace);
        }
        if let Some((entered, t)) = self.head {
            if entered == activity.entered() && self.proto != Proto::H2 && self.framer.awaiting_head() {
                return Some(t + self.limits.header_timeout);
            }
            self.head = None;
        }
        let done = activity.last_done();
        // HTTP/1 counts the end of a slow flush too; HTTP/2 writes include keep-alive PINGs,
        // which must not keep an idle connection open.
        let since = if self.proto == Proto::H2 { done } else { done.max(self.last_write) };
        Some(since + self.limits.idle_timeout)
    }

    /// Routes bytes from the client: held until HTTP/2's preface is told from HTTP/1, then
    /// straight through (HTTP/2) or through the guard (HTTP/1); starts a head's timer.
    fn route(&mut self, data: &[u8]) {
        let was_unknown = self.proto == Proto::Unknown;
        if was_unknown {
            let want = H2_START.len() - self.sniffed.len();
            self.sniffed.extend_from_slice(&data[..data.len().min(want)]);
            if !H2_START.starts_with(&self.sniffed) {
                self.proto = Proto::H1;
            } else if self.sniffed.len() == H2_START.len() {
                self.proto = Proto::H2;
                self.head = None;
            }
        }
        if self.proto != Proto::H2 && self.head.is_none() && self.activity.in_service() == 0 {
            self.head = Some((self.activity.entered(), Instant::now()));
        }
        let held;
        let data = match (was_unknown, self.proto) {
            (_, Proto::Unknown) => {
                self.held.extend_from_slice(data);
                return;
            }
            (true, _) => {
                self.held.extend_from_slice(data);
                held = std::mem::take(&mut self.held);
                &held[..]
            }
            (false, _) => data,
        };
        if self.proto == Proto::H2 {
            self.out.extend_from_slice(data);
        } else {
            let heads = self.framer.heads();
            let activity = &self.activity;
            self.framer.feed(data, &mut self.out, &mut |v| activity.push_verdict(v));
            if self.framer.heads() != heads {
                // A head passed (hyper will enter it) or was refused: its timer is done; the
                // next bytes from the client start the next one's.
                self.head = None;
            }
        }
    }

    /// The head under way ran out of time: hyper gets the synthetic request, the service a 408.
    fn head_too_late(&mut self) {
        if self.proto == Proto::Unknown {
            self.proto = Proto::H1;
            self.held.clear();
        }
        let activity = &self.activity;
        let why = "request head not received in time";
        self.framer
            .reject(Verdict::Reject { status: 408, why }, &mut self.out, &mut |v| activity.push_verdict(v));
        self.head = None;
        // The error response still has to go out: the idle clock starts again now.
        self.last_write = Instant::now();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Http1Conn<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
            // After a refused head nothing more is read; hyper answers it and closes.
            if this.framer.is_closed() {
                break;
            }
            let mut rb = ReadBuf::new(&mut this.inbuf);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                        return Poll::Ready(Ok(()));
                    }
                    let data = std::mem::take(&mut this.inbuf);
                    this.route(&data[..n]);
                    this.inbuf = data;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        // Nothing to read: arm the timer, or act when it has expired. While a request is in
        // service, look again after the idle timeout (its end wakes nobody). The timer is only
        // moved earlier, or re-armed once it fired: a later deadline is found when an earlier
        // wake-up looks again, so a busy connection does not touch the timer wheel on every
        // request.
        loop {
            let now = Instant::now();
            let armed = this.sleep.deadline();
            match this.deadline() {
                Some(d) if d <= now && this.proto == Proto::H2 && this.grace.is_none() => {
                    this.grace = Some(now + GRACE);
                    this.activity.expire();
                    continue;
                }
                Some(d) if d <= now => {
                    if this.head.is_some() && this.head_bytes() && !this.framer.is_closed() {
                        this.head_too_late();
                        let n = this.out.len().min(buf.remaining());
                        buf.put_slice(&this.out[..n]);
                        this.out.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    // Idle, or silent since it connected: end the connection quietly (a
                    // client's unused spare connection is not handed a response to a request
                    // it never made).
                    tracing::debug!("client connection timed out");
                    this.eof = true;
                    return Poll::Ready(Ok(()));
                }
                Some(d) if d < armed || armed <= now => this.sleep.as_mut().reset(d),
                None if armed <= now => this.sleep.as_mut().reset(now + this.limits.idle_timeout),
                _ => {}
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Http1Conn<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_write = Instant::now();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.last_write = Instant::now();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
                    if this.sleep.deadline() != deadline {
                        this.sleep.as_mut().reset(deadline);
                    }
                    ready!(this.sleep.as_mut().poll(cx));
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

/// The proxy's set-up of the wrapper, for its tests: 60 s idle, 10 s header timeout, h2c.
#[cfg(test)]
mod proxy_tests {
    use super::*;
    use crate::http1_guard::SYNTHETIC;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    type Timed = Http1Conn<tokio::io::DuplexStream>;

    fn timed(io: tokio::io::DuplexStream, activity: Activity) -> Timed {
        let limits = Limits {
            max_request_line: 8192,
            max_header_bytes: 65536,
            max_headers: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        Http1Conn::new(io, limits, activity).sniff_h2()
    }

    async fn read_outcome(t: &mut Timed) -> (usize, Duration) {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = t.read(&mut buf).await.unwrap();
        (n, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_after_the_idle_timeout_not_the_header_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut t = timed(server, Activity::default());
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        assert!(took >= Duration::from_secs(60) && took < Duration::from_secs(61), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_finish_within_the_header_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        client.write_all(b"GET / HT").await.unwrap();
        // The guard holds a partial head back from hyper; at the header timeout hyper gets the
        // synthetic request and the service a 408 to answer.
        let started = Instant::now();
        let mut got = vec![0u8; SYNTHETIC.len()];
        t.read_exact(&mut got).await.unwrap();
        assert_eq!(got, SYNTHETIC);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 408, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn http1_heads_go_through_the_guard_and_http2_bytes_do_not() {
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        let good = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(good).await.unwrap();
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        let mut got = vec![0u8; good.len() + SYNTHETIC.len()];
        t.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..good.len()], good);
        assert_eq!(&got[good.len()..], SYNTHETIC);
        assert_eq!(activity.next_verdict(), Verdict::Pass);
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 400, .. }));
        // HTTP/2: the preface (which the guard would refuse as a version) passes unchanged.
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for b in preface {
            client.write_all(&[*b]).await.unwrap();
        }
        let mut got = [0u8; 24];
        t.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, preface);
        assert_eq!(activity.next_verdict(), Verdict::Pass, "no verdicts queued for HTTP/2");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_closes_without_a_408() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut t = timed(server, Activity::default());
        assert_eq!(read_outcome(&mut t).await.0, 0);
        drop(t);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert!(reply.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_byte_by_byte_is_timed_even_when_it_starts_like_the_http2_preface() {
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        client.write_all(b"P").await.unwrap();
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, SYNTHETIC.len());
        assert_eq!(took, Duration::from_secs(10));
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 408, .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn no_timer_runs_while_a_request_is_in_service_and_idle_counts_from_its_end() {
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        read_outcome(&mut t).await;
        let busy = activity.enter();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(300)).await;
            drop(busy);
        });
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        // 300 s in service, then 60 s idle (checked at most one idle period late).
        assert!(took >= Duration::from_secs(360) && took <= Duration::from_secs(420), "{took:?}");
        release.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_only_have_the_idle_timer_and_a_graceful_end() {
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let mut t = timed(server, activity.clone());
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        read_outcome(&mut t).await;
        // Server writes (PINGs) do not count as activity for HTTP/2.
        tokio::time::sleep(Duration::from_secs(30)).await;
        t.write_all(b"ping").await.unwrap();
        let started = Instant::now();
        let signalled = tokio::spawn(async move {
            activity.expired().await;
            Instant::now()
        });
        let (n, _) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        let asked = signalled.await.unwrap();
        assert!(asked - started <= Duration::from_secs(31), "GOAWAY asked after {:?}", asked - started);
        assert_eq!(Instant::now() - asked, GRACE);
    }
}
