//! The uppercase server: a thin tokio driver around [`crate::transform::upper`].
//!
//! TCP: each line ("\n" or "\r\n") gets its upper-cased line back; a line over `max_line`
//! gets `ERR ...` and the connection is closed (its bytes are never buffered). netkit's
//! connection policy caps connections per address, gives each whole line a deadline (the first
//! `request_timeout`, later ones `idle_timeout`; trickled bytes do not extend it) and, when the
//! server is full, closes the longest-waiting connection for a newcomer. UDP: each datagram gets
//! one datagram back, at most `udp_max_amplification` times its size.

use crate::config::UpperConfig;
use crate::transform::upper;
use appnet_netkit::accept::{Accepted, Acceptor, CloseReason, ConnSlot};
use appnet_netkit::lines::{Line, discard_input, read_line_bounded};
use appnet_netkit::listen::{ListenOpts, bind_tcp, bind_udp};
use appnet_netkit::metrics::{Counter, Gauge, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// How long in-flight connections get to finish after shutdown is triggered.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// After an over-long line, how much more input is read and dropped (and for how long) so the
/// error reply reaches the client instead of being lost to a connection reset.
const LINGER_BYTES: u64 = 32 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A bound uppercase server (TCP or UDP), ready to [`run`](Service::run).
pub struct UpperServer {
    socket: Socket,
    config: UpperConfig,
    stats: Stats,
}

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Counters the server keeps (exported in Prometheus text through [`UpperServer::metrics`]).
#[derive(Clone)]
struct Stats {
    registry: Registry,
    answered: Counter,
    too_long: Counter,
    busy: Counter,
    evicted: Counter,
    timed_out: Counter,
    not_sent: Counter,
    open: Gauge,
}

impl Stats {
    fn new(proto: &str) -> Stats {
        let registry = Registry::new();
        let l = [("proto", proto)];
        Stats {
            answered: registry.counter("upper_answers_total", "Requests answered.", &l),
            too_long: registry.counter("upper_too_long_total", "Requests over max_line.", &l),
            busy: registry.counter("upper_busy_total", "Connections refused at the cap.", &l),
            evicted: registry.counter(
                "upper_evicted_total",
                "Waiting connections closed for a newcomer.",
                &l,
            ),
            timed_out: registry.counter(
                "upper_timed_out_total",
                "Connections whose line missed its deadline.",
                &l,
            ),
            not_sent: registry.counter(
                "upper_udp_not_sent_total",
                "UDP replies over the amplification limit.",
                &l,
            ),
            open: registry.gauge("upper_open_connections", "TCP connections open now.", &l),
            registry,
        }
    }
}

impl UpperServer {
    /// Binds the configured TCP listener or UDP socket.
    pub async fn bind(config: UpperConfig) -> io::Result<UpperServer> {
        let opts = ListenOpts::default();
        let (socket, proto) = if config.udp {
            (Socket::Udp(bind_udp(config.listen, &opts)?), "udp")
        } else {
            (Socket::Tcp(bind_tcp(config.listen, &opts)?), "tcp")
        };
        Ok(UpperServer { socket, config, stats: Stats::new(proto) })
    }

    /// The server's counters in Prometheus text format.
    pub fn metrics(&self) -> Registry {
        self.stats.registry.clone()
    }
}

impl Service for UpperServer {
    fn local_addr(&self) -> SocketAddr {
        let addr = match &self.socket {
            Socket::Tcp(l) => l.local_addr(),
            Socket::Udp(s) => s.local_addr(),
        };
        addr.unwrap_or(self.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        match self.socket {
            Socket::Tcp(listener) => serve_tcp(listener, self.config, self.stats, shutdown).await,
            Socket::Udp(socket) => serve_udp(socket, self.config, self.stats, shutdown).await,
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    config: UpperConfig,
    stats: Stats,
    shutdown: Shutdown,
) -> Result<(), BoxError> {
    let acceptor = Acceptor::with_limits(listener, config.conn_limits());
    let config = Arc::new(config);
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let (stream, peer, slot) = match accepted {
            Accepted::Conn(stream, peer, slot) => (stream, peer, slot),
            Accepted::OverCap(stream, peer) => {
                stats.busy.inc();
                tracing::info!(%peer, "connection cap reached; refusing");
                shutdown.spawn(refuse_busy(stream));
                continue;
            }
        };
        let (config, stats, sd) = (config.clone(), stats.clone(), shutdown.clone());
        shutdown.spawn(async move {
            stats.open.inc();
            if let Err(e) = serve_connection(stream, &slot, &config, &stats, &sd).await {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
            stats.open.dec();
            drop(slot);
        });
    }
    drop(acceptor);
    if !shutdown.drain(DRAIN_DEADLINE).await {
        tracing::warn!("some connections were still open after {DRAIN_DEADLINE:?}");
    }
    Ok(())
}

async fn refuse_busy(mut stream: TcpStream) {
    let _ =
        tokio::time::timeout(Duration::from_secs(1), stream.write_all(b"ERR server busy, try later\n")).await;
}

async fn serve_connection(
    stream: TcpStream,
    slot: &ConnSlot,
    config: &UpperConfig,
    stats: &Stats,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(8 * 1024, read);
    let mut line = Vec::with_capacity(256);
    loop {
        let outcome = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            reason = slot.closed() => {
                let msg: &[u8] = match reason {
                    CloseReason::TimedOut => {
                        stats.timed_out.inc();
                        b"ERR idle timeout, closing\n"
                    }
                    CloseReason::Evicted => {
                        stats.evicted.inc();
                        b"ERR server busy, closing\n"
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(msg)).await;
                return Ok(());
            }
            next = read_line_bounded(&mut reader, &mut line, config.max_line) => next?,
        };
        match outcome {
            Line::Complete => {
                slot.busy();
                let mut answer = upper(&line);
                answer.push(b'\n');
                // A client that does not read its answers gets the same deadline as one that
                // does not send: it cannot hold a slot by leaving replies unread.
                match tokio::time::timeout(config.idle_timeout(), write.write_all(&answer)).await {
                    Ok(written) => written?,
                    Err(_) => {
                        stats.timed_out.inc();
                        return Ok(());
                    }
                }
                stats.answered.inc();
                slot.idle();
            }
            Line::Eof => {
                // A last line without a newline (e.g. `printf hi | nc -N`) still gets its answer.
                if !line.is_empty() {
                    write.write_all(&upper(&line)).await?;
                    stats.answered.inc();
                }
                return write.shutdown().await;
            }
            Line::TooLong => {
                stats.too_long.inc();
                let msg = format!("ERR line longer than {} bytes, closing\n", config.max_line);
                write.write_all(msg.as_bytes()).await?;
                write.shutdown().await?;
                discard_input(&mut reader, LINGER_BYTES, LINGER_TIME).await;
                return Ok(());
            }
        }
    }
}

async fn serve_udp(
    socket: UdpSocket,
    config: UpperConfig,
    stats: Stats,
    shutdown: Shutdown,
) -> Result<(), BoxError> {
    // One byte more than the limit tells an over-long datagram from one exactly at it.
    let mut buf = vec![0u8; config.max_line.min(65_535) + 1];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            got = socket.recv_from(&mut buf) => match got {
                Ok(pair) => pair,
                Err(e) => {
                    // ICMP port-unreachable from an earlier reply shows up here on Linux.
                    tracing::debug!("udp receive error: {e}");
                    continue;
                }
            },
        };
        let reply = if n > config.max_line {
            stats.too_long.inc();
            format!("ERR datagram longer than {} bytes", config.max_line).into_bytes()
        } else {
            let mut msg = &buf[..n];
            if let Some(stripped) = msg.strip_suffix(b"\n") {
                msg = stripped.strip_suffix(b"\r").unwrap_or(stripped);
            }
            upper(msg)
        };
        if !udp_reply_allowed(n, reply.len(), config.udp_max_amplification) {
            stats.not_sent.inc();
            tracing::debug!(%peer, request = n, reply = reply.len(), "UDP reply over the amplification limit; not sent");
            continue;
        }
        if n <= config.max_line {
            stats.answered.inc();
        }
        if let Err(e) = socket.send_to(&reply, peer).await {
            tracing::debug!(%peer, "udp send failed: {e}");
        }
    }
}

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// Whether a `reply`-byte answer to a `request`-byte datagram may be sent: at most
/// `max_amplification` times the request (at least 1×) and within one datagram, so the
/// service cannot be used to reflect more traffic at a forged source than it was sent.
pub fn udp_reply_allowed(request: usize, reply: usize, max_amplification: usize) -> bool {
    reply <= request.saturating_mul(max_amplification.max(1)) && reply <= MAX_DATAGRAM
}

#[cfg(test)]
mod tests {
    use super::udp_reply_allowed;
    use crate::transform::upper;

    #[test]
    fn the_unicode_worst_case_fits_the_default_and_not_a_stricter_limit() {
        let request = "\u{390}".repeat(100);
        let reply = upper(request.as_bytes());
        assert_eq!(reply.len(), 3 * request.len(), "U+0390 is the 3x worst case");
        assert!(udp_reply_allowed(request.len(), reply.len(), 3));
        assert!(!udp_reply_allowed(request.len(), reply.len(), 2));
        assert!(udp_reply_allowed(5, 5, 1));
        assert!(!udp_reply_allowed(30_000, 90_000, 3), "never more than one datagram");
    }
}
