//! Relaying one proxied TCP connection: bytes copied each way with a per-direction buffer,
//! half-close forwarded (a FIN read on one side becomes `shutdown(Write)` on the other, and the
//! other direction keeps flowing), and an idle timeout over both directions together.

use appnet_netkit::metrics::Counter;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How a relayed connection ended.
#[derive(Debug)]
pub enum RelayEnd {
    /// Both sides closed their sending halves.
    Closed {
        /// Bytes client → backend.
        up: u64,
        /// Bytes backend → client.
        down: u64,
    },
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A read or write failed (a reset, usually).
    Failed(io::Error),
}

/// Relays between `client` and `backend` until both directions are closed, one fails, or the
/// connection idles for `idle`.
pub async fn relay(
    client: &mut TcpStream,
    backend: &mut TcpStream,
    buffer: usize,
    idle: Duration,
    to_backend: &Counter,
    to_client: &Counter,
) -> RelayEnd {
    let base = Instant::now();
    let last = AtomicU64::new(0);
    let (mut cr, mut cw) = client.split();
    let (mut br, mut bw) = backend.split();
    let up = pump(&mut cr, &mut bw, buffer, &last, base, to_backend);
    let down = pump(&mut br, &mut cw, buffer, &last, base, to_client);
    tokio::select! {
        r = async { tokio::try_join!(up, down) } => match r {
            Ok((up, down)) => RelayEnd::Closed { up, down },
            Err(e) => RelayEnd::Failed(e),
        },
        _ = watchdog(&last, base, idle) => RelayEnd::Idle,
    }
}

/// Copies `r` to `w` until EOF, then shuts `w`'s sending half; returns the bytes copied.
async fn pump<R, W>(
    r: &mut R,
    w: &mut W,
    buffer: usize,
    last: &AtomicU64,
    base: Instant,
    bytes: &Counter,
) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; buffer.max(512)];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            // Half-close: the peer sent FIN; pass it on and let the other direction finish.
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        total += n as u64;
        bytes.add(n as u64);
        last.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Resolves once nothing has moved for `idle` (re-arming on activity, without a timer per read).
async fn watchdog(last: &AtomicU64, base: Instant, idle: Duration) {
    loop {
        let deadline = base + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn half_close_is_forwarded_and_the_other_direction_keeps_flowing() {
        let (mut client, mut lb_client) = pair().await;
        let (mut lb_backend, mut backend) = pair().await;
        let (up, down) = (Counter::default(), Counter::default());
        let relay = tokio::spawn(async move {
            relay(&mut lb_client, &mut lb_backend, 1024, Duration::from_secs(10), &up, &down).await
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap(); // half-close: we are done sending
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap(); // sees our bytes, then EOF
        assert_eq!(got, b"request");
        // The backend can still answer after the client's FIN.
        backend.write_all(&vec![7u8; 100_000]).await.unwrap();
        backend.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.len(), 100_000);
        match relay.await.unwrap() {
            RelayEnd::Closed { up, down } => assert_eq!((up, down), (7, 100_000)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_cut() {
        let (_client, mut lb_client) = pair().await;
        let (mut lb_backend, _backend) = pair().await;
        let (up, down) = (Counter::default(), Counter::default());
        let start = Instant::now();
        let end = relay(&mut lb_client, &mut lb_backend, 1024, Duration::from_secs(30), &up, &down).await;
        assert!(matches!(end, RelayEnd::Idle));
        assert!(start.elapsed() >= Duration::from_secs(30));
    }
}
