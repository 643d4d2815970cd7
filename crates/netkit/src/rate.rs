//! Token-bucket rate limiting: a sans-IO bucket driven by an injected clock, a cloneable async
//! [`Limiter`] that several connections can share, and [`Limited`], an AsyncRead/AsyncWrite
//! wrapper that shapes a stream to the limiter's rate (BitTorrent peers, experiments).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A token bucket: `rate` tokens (bytes) per second, holding at most `burst` tokens.
/// Pure: every call takes `now`, so tests drive it with a fake clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` is tokens per second (> 0); `burst` is the capacity (>= 1).
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        let burst = burst.max(1) as f64;
        TokenBucket { rate: rate.max(1) as f64, burst, tokens: burst, last: now }
    }

    /// Tokens per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// Capacity in tokens.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.tokens.max(0.0) as u64
    }

    /// Takes exactly `n` tokens if they are all there; otherwise takes none.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// Takes as many tokens as are available, up to `n`, and returns how many it took.
    pub fn take_up_to(&mut self, n: u64, now: Instant) -> u64 {
        self.refill(now);
        let granted = (self.tokens.max(0.0) as u64).min(n);
        self.tokens -= granted as f64;
        granted
    }

    /// Returns unused tokens (for example when a write accepted fewer bytes than granted).
    pub fn give_back(&mut self, n: u64) {
        self.tokens = (self.tokens + n as f64).min(self.burst);
    }

    /// How long from `now` until `n` tokens (capped at the burst) are available.
    pub fn wait_time(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let want = (n as f64).min(self.burst);
        if self.tokens >= want {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((want - self.tokens) / self.rate)
        }
    }
}

/// A shareable limiter: clones draw from the same bucket. `Limiter::unlimited()` never waits.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    bucket: Option<Arc<Mutex<TokenBucket>>>,
}

/// The smallest grant a waiting stream asks for, so a tiny rate still moves useful chunks.
const MIN_CHUNK: u64 = 1024;

impl Limiter {
    /// `bytes_per_sec` with a burst of `burst` bytes.
    pub fn new(bytes_per_sec: u64, burst: u64) -> Self {
        let bucket = TokenBucket::new(bytes_per_sec, burst, now());
        Limiter { bucket: Some(Arc::new(Mutex::new(bucket))) }
    }

    /// A limiter that never limits.
    pub fn unlimited() -> Self {
        Limiter { bucket: None }
    }

    /// `Some(rate)` limits to that many bytes per second with a burst of 1/10 s (at least 16 KiB);
    /// `None` is unlimited. The usual way to turn a CLI flag into a limiter.
    pub fn from_rate(bytes_per_sec: Option<u64>) -> Self {
        match bytes_per_sec {
            Some(r) => Limiter::new(r, (r / 10).max(16 * 1024)),
            None => Limiter::unlimited(),
        }
    }

    /// Whether this limiter limits at all.
    pub fn is_limited(&self) -> bool {
        self.bucket.is_some()
    }

    /// Waits until `n` tokens have been taken (in chunks no larger than the burst).
    pub async fn acquire(&self, mut n: u64) {
        let Some(bucket) = &self.bucket else { return };
        while n > 0 {
            let wait = {
                let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
                let got = b.take_up_to(n, now());
                n -= got;
                if n == 0 {
                    return;
                }
                b.wait_time(n.min(MIN_CHUNK), now())
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// Grants up to `want` tokens now, or says how long to wait for some.
    fn grant(&self, want: u64) -> Result<u64, Duration> {
        let Some(bucket) = &self.bucket else { return Ok(want) };
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let got = b.take_up_to(want, now());
        if got > 0 {
            Ok(got)
        } else {
            Err(b.wait_time(want.min(MIN_CHUNK), now()).max(Duration::from_millis(1)))
        }
    }

    fn refund(&self, n: u64) {
        if let (Some(bucket), true) = (&self.bucket, n > 0) {
            bucket.lock().unwrap_or_else(|e| e.into_inner()).give_back(n);
        }
    }
}

fn now() -> Instant {
    // tokio's clock, so paused-time tests shape streams deterministically.
    tokio::time::Instant::now().into_std()
}

/// A stream whose reads and writes are shaped by two limiters (either may be unlimited).
pub struct Limited<S> {
    inner: S,
    read: Limiter,
    write: Limiter,
    read_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    write_sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Limited<S> {
    /// Wraps `inner`; reads draw from `read`, writes from `write`.
    pub fn new(inner: S, read: Limiter, write: Limiter) -> Self {
        Limited { inner, read, write, read_sleep: None, write_sleep: None }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Polls a pending limiter sleep; returns the grant or Pending.
fn poll_grant(
    limiter: &Limiter,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    want: u64,
    cx: &mut Context<'_>,
) -> Poll<u64> {
    loop {
        if let Some(s) = sleep.as_mut() {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            *sleep = None;
        }
        match limiter.grant(want) {
            Ok(n) => return Poll::Ready(n),
            Err(wait) => *sleep = Some(Box::pin(tokio::time::sleep(wait))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let granted = match poll_grant(&this.read, &mut this.read_sleep, buf.remaining() as u64, cx) {
            Poll::Ready(n) => n as usize,
            Poll::Pending => return Poll::Pending,
        };
        let mut limited = buf.take(granted);
        let res = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
        let filled = limited.filled().len();
        this.read.refund((granted - filled) as u64);
        if let Poll::Ready(Ok(())) = res {
            advance_after_take(buf, filled);
        }
        res
    }
}

/// Marks `n` bytes written through a `take()` sub-buffer as filled in the parent buffer.
fn advance_after_take(buf: &mut ReadBuf<'_>, n: usize) {
    // SAFETY: `take` returned a view of this buffer's unfilled memory and the inner reader
    // filled (so initialised) its first `n` bytes.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let granted = match poll_grant(&this.write, &mut this.write_sleep, data.len() as u64, cx) {
            Poll::Ready(n) => n as usize,
            Poll::Pending => return Poll::Pending,
        };
        let res = Pin::new(&mut this.inner).poll_write(cx, &data[..granted]);
        let used = match &res {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        this.write.refund((granted - used) as u64);
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn starts_full_and_refills_at_rate() {
        let start = t0();
        let mut b = TokenBucket::new(1000, 500, start);
        assert_eq!(b.available(start), 500);
        assert!(b.try_take(500, start));
        assert!(!b.try_take(1, start));
        assert_eq!(b.available(start + Duration::from_millis(100)), 100);
        // Never beyond the burst.
        assert_eq!(b.available(start + Duration::from_secs(10)), 500);
    }

    #[test]
    fn take_up_to_grants_partially_and_wait_time_is_exact() {
        let start = t0();
        let mut b = TokenBucket::new(1000, 1000, start);
        assert_eq!(b.take_up_to(1500, start), 1000);
        assert_eq!(b.wait_time(250, start), Duration::from_millis(250));
        // Asking for more than the burst waits only for a full bucket.
        assert_eq!(b.wait_time(5000, start), Duration::from_secs(1));
        b.give_back(100);
        assert_eq!(b.available(start), 100);
    }

    #[test]
    fn long_run_average_matches_rate() {
        let start = t0();
        let mut b = TokenBucket::new(10_000, 1_000, start);
        let mut taken = 0;
        for ms in 0..=2000u64 {
            taken += b.take_up_to(u64::MAX, start + Duration::from_millis(ms));
        }
        // 1000 burst + 2 s * 10k/s
        assert!((20_900..=21_000).contains(&taken), "took {taken}");
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_in_virtual_time() {
        let lim = Limiter::new(1000, 100);
        let begin = tokio::time::Instant::now();
        lim.acquire(1100).await;
        let took = begin.elapsed();
        assert!(took >= Duration::from_millis(999) && took < Duration::from_millis(1100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn limited_stream_is_shaped() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Limited::new(a, Limiter::unlimited(), Limiter::new(10_000, 1_000));
        let begin = tokio::time::Instant::now();
        let writer = tokio::spawn(async move {
            w.write_all(&vec![7u8; 21_000]).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), 21_000);
        let took = begin.elapsed().as_secs_f64();
        // 1000 burst, then 20 000 bytes at 10 000 B/s = 2 s.
        assert!((1.9..2.2).contains(&took), "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn limited_reads_are_shaped() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let mut r = Limited::new(b, Limiter::new(5_000, 500), Limiter::unlimited());
        a.write_all(&vec![1u8; 5_500]).await.unwrap();
        drop(a);
        let begin = tokio::time::Instant::now();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 5_500);
        let took = begin.elapsed().as_secs_f64();
        assert!((0.95..1.2).contains(&took), "took {took}");
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_bucket() {
        let lim = Limiter::new(1000, 1000);
        let other = lim.clone();
        lim.acquire(1000).await;
        let begin = tokio::time::Instant::now();
        other.acquire(500).await;
        assert!(begin.elapsed() >= Duration::from_millis(499));
    }
}
