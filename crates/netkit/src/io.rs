//! Generic I/O wrappers the protocol drivers share: [`Rewind`] (replay sniffed bytes) and
//! [`WriteCombine`] (gather small writes until a flush).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `io` with bytes already read from it put back in front: replays what protocol sniffing
/// consumed at connection start (TLS vs HTTP, h2c preface vs HTTP/1), then reads `io` again.
/// hyper-util calls the same idea `Rewind`.
pub struct Rewind<IO> {
    prefix: Vec<u8>,
    /// How much of `prefix` is replayed.
    pos: usize,
    io: IO,
}

impl<IO> Rewind<IO> {
    /// Replays `prefix`, then reads `io`.
    pub fn new(prefix: impl Into<Vec<u8>>, io: IO) -> Rewind<IO> {
        Rewind { prefix: prefix.into(), pos: 0, io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() && buf.remaining() > 0 {
            let rest = &this.prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Writes of at most this many bytes are gathered; larger ones go out at once.
const GATHER_BELOW: usize = 4096;
/// The most bytes held before they are written out even without a flush.
const CAPACITY: usize = 64 * 1024;
/// The most caller slices passed on in one writev (beyond the buffered bytes).
const MAX_SLICES: usize = 32;

/// Write combining (e.g. under an HTTP/2 connection): small writes are gathered in a buffer and go
/// out together at the next flush; a large write goes out at once, in the same writev as
/// whatever is buffered.
///
/// Why: the h2 crate copies a DATA payload into its own buffer only below a threshold that
/// depends on whether the transport says it can do vectored writes (256 bytes if so, 1024 if
/// not); a larger payload is written on its own, and h2 flushes before the next frame. Told
/// "vectored", h2 writes a 16 KiB frame in one writev but also gives every 612-byte response a
/// syscall of its own (measured: 0.55-0.75x the small-file rate). Told "not vectored", h2
/// batches small responses but writes each big frame as head, then payload: two syscalls.
/// This layer says "not vectored" and joins the head it gathered with the payload that
/// follows into one writev: big frames cost one syscall and small responses stay batched.
pub struct WriteCombine<IO> {
    io: IO,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    pos: usize,
}

impl<IO> WriteCombine<IO> {
    /// Wraps `io`.
    pub fn new(io: IO) -> WriteCombine<IO> {
        WriteCombine { io, buf: Vec::with_capacity(CAPACITY), pos: 0 }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Records that `n` buffered bytes were written.
    fn consumed(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }
}

impl<IO: AsyncWrite + Unpin> WriteCombine<IO> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consumed(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteCombine<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteCombine<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        if total <= GATHER_BELOW && this.buf.len() + total <= CAPACITY {
            for b in bufs {
                this.buf.extend_from_slice(b);
            }
            return Poll::Ready(Ok(total));
        }
        if !this.io.is_write_vectored() {
            // Without writev, the buffered bytes go first, then the caller's.
            ready!(this.poll_drain(cx))?;
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        loop {
            let buffered = this.pending().len();
            if buffered == 0 {
                return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
            }
            let mut slices = [IoSlice::new(&[]); 1 + MAX_SLICES];
            slices[0] = IoSlice::new(&this.buf[this.pos..]);
            let count = bufs.len().min(MAX_SLICES);
            slices[1..=count].copy_from_slice(&bufs[..count]);
            let n = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, &slices[..=count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n <= buffered {
                // Only (some of) our own bytes went: none of the caller's yet; go on writing.
                this.consumed(n);
                continue;
            }
            this.consumed(buffered);
            return Poll::Ready(Ok(n - buffered));
        }
    }

    /// Deliberately false, whatever the transport can do: h2 then copies DATA payloads under
    /// 1 KiB into its own buffer (small responses leave in batches), and hands a big frame over
    /// as two writes (head, payload) that the gathering above joins into one writev.
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A transport that records each write call and accepts at most `limit` bytes per call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
        limit: usize,
        vectored: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.limit);
            self.calls.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut call = Vec::new();
            for b in bufs {
                call.extend_from_slice(b);
            }
            call.truncate(self.limit);
            let n = call.len();
            self.calls.push(call);
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            self.vectored
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn combine(limit: usize, vectored: bool) -> WriteCombine<Recorder> {
        WriteCombine::new(Recorder { calls: Vec::new(), limit, vectored })
    }

    #[tokio::test]
    async fn small_writes_go_out_together_at_flush() {
        let mut w = combine(usize::MAX, true);
        for i in 0..10u8 {
            w.write_all(&[i; 612]).await.unwrap();
        }
        assert!(w.io.calls.is_empty(), "nothing written before the flush");
        w.flush().await.unwrap();
        assert_eq!(w.io.calls.len(), 1);
        assert_eq!(w.io.calls[0].len(), 6120);
    }

    #[tokio::test]
    async fn a_large_write_carries_the_buffered_bytes_in_one_writev() {
        let mut w = combine(usize::MAX, true);
        w.write_all(b"head").await.unwrap();
        let payload = vec![7u8; 16384];
        let n = w.write_vectored(&[IoSlice::new(b"frame-header"), IoSlice::new(&payload)]).await.unwrap();
        assert_eq!(n, 12 + 16384);
        assert_eq!(w.io.calls.len(), 1);
        assert!(w.io.calls[0].starts_with(b"headframe-header"));
        w.flush().await.unwrap();
        assert_eq!(w.io.calls.len(), 1, "nothing left to flush");
    }

    #[tokio::test]
    async fn a_big_frame_written_as_head_then_payload_costs_one_syscall() {
        // What h2 does for a 16 KiB DATA frame on a transport that is not vectored: the head
        // with the first 1015 payload bytes, then the rest of the payload.
        let mut w = combine(usize::MAX, true);
        let frame = vec![3u8; 9 + 16384];
        w.write_all(&frame[..1024]).await.unwrap();
        w.write_all(&frame[1024..]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(w.io.calls, vec![frame]);
    }

    #[tokio::test]
    async fn partial_writes_keep_the_byte_order() {
        for vectored in [true, false] {
            let mut w = combine(1000, vectored);
            let mut want = Vec::new();
            for i in 0..50u32 {
                let chunk: Vec<u8> = (0..(i * 397 % 9000)).map(|j| (i + j) as u8).collect();
                w.write_all(&chunk).await.unwrap();
                want.extend_from_slice(&chunk);
            }
            w.shutdown().await.unwrap();
            let got: Vec<u8> = w.io.calls.concat();
            assert_eq!(got, want, "vectored={vectored}");
        }
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_reads_the_stream() {
        use tokio::io::AsyncReadExt;
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut io = Rewind::new(b"hello".to_vec(), server);
        // Small reads split the prefix; nothing is lost or repeated.
        let mut first = [0u8; 3];
        io.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"hel");
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"lo world");
        let mut empty = Rewind::new(Vec::new(), &b"x"[..]);
        let mut got = Vec::new();
        empty.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"x");
    }
}
