//! The proxy's client-connection I/O wrapper under hyper: HTTP/1 bytes go through the shared
//! request guard ([`crate::http1_guard`], the same head and framing checks as the web server:
//! smuggling shapes, bad versions, oversized heads, Host and Expect), and the timers run: a
//! connection with no request in progress closes after the idle timeout (HTTP/1 keep-alive
//! and HTTP/2 alike), and an HTTP/1 request head must be complete within the header timeout
//! of its first byte (slowloris). A refused head reaches hyper as a harmless synthetic request
//! whose verdict the service takes with [`Activity::next_verdict`] and answers. (hyper's own
//! header timer starts as soon as it waits for the next request, so alone it would close every
//! idle keep-alive connection at the header timeout.) The request accounting is the one the
//! web server uses too ([`crate::conn_activity`]).
//!
//! A request counts as in progress from the service call until its response body is dropped
//! (hyper drops it once written), or for CONNECT until the tunnel ends; no timer runs meanwhile
//! (the origin and body timeouts bound that time). An idle HTTP/1 connection simply ends; an
//! idle HTTP/2 connection is first told to shut down gracefully ([`Activity::expired`]: the
//! driver sends GOAWAY) and ends [`GRACE`] later if the client has not closed it by then.

pub use crate::conn_activity::{Activity, InService};
use crate::http1_guard::{Framer, HeadLimits};
use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long an idle HTTP/2 connection gets after GOAWAY before it is closed.
pub const GRACE: Duration = Duration::from_secs(2);

/// What a client whose request head took longer than the header timeout is told before the
/// connection closes (hyper has seen only part of the head, so it cannot answer itself).
const HEAD_TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\n\
Content-Length: 34\r\nConnection: close\r\n\r\nrequest head not received in time\n";

/// The HTTP/2 connection preface's start: such connections have no HTTP/1 heads to time.
const H2_START: &[u8] = b"PRI * HTTP/2";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    H1,
    H2,
}

/// The I/O wrapper: reads end (EOF) when a timer expires.
pub struct Timed<IO> {
    io: IO,
    activity: Activity,
    idle: Duration,
    header: Duration,
    sleep: Pin<Box<Sleep>>,
    proto: Proto,
    /// The first bytes, until they tell HTTP/2's preface from an HTTP/1 request.
    sniffed: Vec<u8>,
    /// An HTTP/1 head under way: the entry count when its first byte came, and when.
    head: Option<(u64, Instant)>,
    last_write: Instant,
    /// HTTP/2: when the graceful shutdown asked for at the idle timeout must be over.
    grace: Option<Instant>,
    expired: bool,
    /// The HTTP/1 request guard.
    framer: Framer,
    /// Bytes read before the protocol is known.
    held: Vec<u8>,
    /// Bytes for hyper (checked by the guard for HTTP/1).
    out: BytesMut,
    inbuf: Vec<u8>,
}

/// The head limits of a [`Timed`] made with [`Timed::new`] (those of hyper's defaults: an
/// 8 KiB request line, 64 KiB of head, 100 fields).
pub const DEFAULT_HEAD_LIMITS: HeadLimits =
    HeadLimits { max_request_line: 8 * 1024, max_header_bytes: 64 * 1024, max_headers: 100 };

impl<IO> Timed<IO> {
    /// Wraps `io`: idle connections close after `idle`, HTTP/1 heads must take at most `header`.
    pub fn new(io: IO, activity: Activity, idle: Duration, header: Duration) -> Timed<IO> {
        let now = Instant::now();
        Timed {
            io,
            activity,
            idle,
            header,
            sleep: Box::pin(tokio::time::sleep_until(now + idle)),
            proto: Proto::Unknown,
            sniffed: Vec::new(),
            head: None,
            last_write: now,
            grace: None,
            expired: false,
            framer: Framer::new(DEFAULT_HEAD_LIMITS),
            held: Vec::new(),
            out: BytesMut::new(),
            inbuf: vec![0; 16 * 1024],
        }
    }

    /// Checks HTTP/1 heads against `limits` instead of [`DEFAULT_HEAD_LIMITS`].
    pub fn head_limits(mut self, limits: HeadLimits) -> Timed<IO> {
        self.framer = Framer::new(limits);
        self
    }

    /// Routes bytes from the client: held until HTTP/2's preface is told from HTTP/1, then
    /// straight through (HTTP/2) or through the guard (HTTP/1).
    fn route(&mut self, data: &[u8]) {
        let was_unknown = self.proto == Proto::Unknown;
        self.saw_bytes(data);
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
            let activity = &self.activity;
            self.framer.feed(data, &mut self.out, &mut |v| activity.push_verdict(v));
        }
    }

    /// When the connection must close if nothing changes; `None` while a request is in progress.
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
            if entered == activity.entered() {
                return Some(t + self.header);
            }
            self.head = None;
        }
        let done = activity.last_done();
        // HTTP/1 counts the end of a slow flush too; HTTP/2 writes include keep-alive PINGs,
        // which must not keep an idle connection open.
        let since = if self.proto == Proto::H2 { done } else { done.max(self.last_write) };
        Some(since + self.idle)
    }

    fn saw_bytes(&mut self, data: &[u8]) {
        if self.proto == Proto::Unknown {
            let want = H2_START.len() - self.sniffed.len();
            self.sniffed.extend_from_slice(&data[..data.len().min(want)]);
            if !H2_START.starts_with(&self.sniffed) {
                self.proto = Proto::H1;
            } else if self.sniffed.len() == H2_START.len() {
                self.proto = Proto::H2;
                self.head = None;
                return;
            }
        }
        let activity = &self.activity;
        // Until the first bytes are told apart, they are timed as an HTTP/1 head.
        if self.proto != Proto::H2 && self.head.is_none() && activity.in_service() == 0 {
            self.head = Some((activity.entered(), Instant::now()));
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Timed<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.expired {
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
        // Nothing to read: arm the timer, or end the connection when it has expired. While a
        // request is in progress, look again after `idle` (its end wakes nobody). The timer is
        // only moved earlier, or re-armed once it fired: a later deadline is found when an
        // earlier wake-up looks again, so a busy connection does not touch the timer wheel on
        // every request.
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
                    this.expired = true;
                    tracing::debug!("proxy client connection timed out");
                    if this.head.is_some() {
                        // A head under way ran out of time: 408, best effort (the connection
                        // closes whether or not the socket takes it now).
                        let _ = Pin::new(&mut this.io).poll_write(cx, HEAD_TIMEOUT_RESPONSE);
                        let _ = Pin::new(&mut this.io).poll_flush(cx);
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(d) if d < armed || armed <= now => this.sleep.as_mut().reset(d),
                None if armed <= now => this.sleep.as_mut().reset(now + this.idle),
                _ => {}
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
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
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// A response body that keeps its request [`InService`] until hyper has written and dropped it.
pub struct Guarded<B> {
    body: B,
    _busy: Option<InService>,
}

impl<B> Guarded<B> {
    /// Ties `busy` (if any: a CONNECT tunnel keeps its own) to `body`.
    pub fn new(body: B, busy: Option<InService>) -> Guarded<B> {
        Guarded { body, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1_guard::Verdict;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn read_outcome(t: &mut Timed<tokio::io::DuplexStream>) -> (usize, Duration) {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = t.read(&mut buf).await.unwrap();
        (n, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_after_the_idle_timeout_not_the_header_timeout() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut t = Timed::new(server, Activity::default(), Duration::from_secs(60), Duration::from_secs(10));
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        assert!(took >= Duration::from_secs(60) && took < Duration::from_secs(61), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_head_must_finish_within_the_header_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut t = Timed::new(server, Activity::default(), Duration::from_secs(60), Duration::from_secs(10));
        client.write_all(b"GET / HT").await.unwrap();
        // The guard holds a partial head back from hyper: the next read is the end.
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        assert!(took <= Duration::from_secs(10), "{took:?}");
        // The client is told why.
        drop(t);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, HEAD_TIMEOUT_RESPONSE);
        let text = String::from_utf8(reply).unwrap();
        assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn http1_heads_go_through_the_guard_and_http2_bytes_do_not() {
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = Activity::default();
        let mut t = Timed::new(server, activity.clone(), Duration::from_secs(60), Duration::from_secs(10));
        let good = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        client.write_all(good).await.unwrap();
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            .await
            .unwrap();
        let mut got = vec![0u8; good.len() + crate::http1_guard::SYNTHETIC.len()];
        t.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..good.len()], good);
        assert_eq!(&got[good.len()..], crate::http1_guard::SYNTHETIC);
        assert_eq!(activity.next_verdict(), Verdict::Pass);
        assert!(matches!(activity.next_verdict(), Verdict::Reject { status: 400, .. }));
        // HTTP/2: the preface (which the guard would refuse as a version) passes unchanged.
        let (mut client, server) = tokio::io::duplex(4096);
        let activity = Activity::default();
        let mut t = Timed::new(server, activity.clone(), Duration::from_secs(60), Duration::from_secs(10));
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
        let mut t = Timed::new(server, Activity::default(), Duration::from_secs(60), Duration::from_secs(10));
        assert_eq!(read_outcome(&mut t).await.0, 0);
        drop(t);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert!(reply.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_sent_byte_by_byte_is_timed_even_when_it_starts_like_the_http2_preface() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut t = Timed::new(server, Activity::default(), Duration::from_secs(60), Duration::from_secs(10));
        client.write_all(b"P").await.unwrap();
        let (n, took) = read_outcome(&mut t).await;
        assert_eq!(n, 0);
        assert!(took <= Duration::from_secs(10), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_timer_runs_while_a_request_is_in_service_and_idle_counts_from_its_end() {
        let (mut client, server) = tokio::io::duplex(1024);
        let activity = Activity::default();
        let mut t = Timed::new(server, activity.clone(), Duration::from_secs(60), Duration::from_secs(10));
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
        let mut t = Timed::new(server, activity.clone(), Duration::from_secs(60), Duration::from_secs(10));
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
