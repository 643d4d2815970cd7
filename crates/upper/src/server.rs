//! The uppercase server: a thin tokio driver around [`crate::transform::upper`].
//!
//! TCP: each line ("\n" or "\r\n") gets its upper-cased line back; a line over `max_line`
//! gets `ERR ...` and the connection is closed (its bytes are never buffered); a silent
//! connection is closed after `idle_timeout`. UDP: each datagram gets one datagram back.

use crate::config::UpperConfig;
use crate::transform::upper;
use appnet_netkit::accept::{Accepted, Acceptor};
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
    let acceptor = Acceptor::new(listener, config.max_connections);
    let config = Arc::new(config);
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let (stream, peer, permit) = match accepted {
            Accepted::Conn(stream, peer, permit) => (stream, peer, permit),
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
            if let Err(e) = serve_connection(stream, &config, &stats, &sd).await {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
            stats.open.dec();
            drop(permit);
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
    config: &UpperConfig,
    stats: &Stats,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(8 * 1024, read);
    let mut line = Vec::with_capacity(256);
    loop {
        let next = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            next = tokio::time::timeout(config.idle_timeout(),
                read_line_bounded(&mut reader, &mut line, config.max_line)) => next,
        };
        let outcome = match next {
            Err(_elapsed) => {
                let _ = write.write_all(b"ERR idle timeout, closing\n").await;
                return Ok(());
            }
            Ok(result) => result?,
        };
        match outcome {
            Line::Complete => {
                let mut answer = upper(&line);
                answer.push(b'\n');
                write.write_all(&answer).await?;
                stats.answered.inc();
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
            stats.answered.inc();
            let mut msg = &buf[..n];
            if let Some(stripped) = msg.strip_suffix(b"\n") {
                msg = stripped.strip_suffix(b"\r").unwrap_or(stripped);
            }
            upper(msg)
        };
        if let Err(e) = socket.send_to(&reply, peer).await {
            tracing::debug!(%peer, "udp send failed: {e}");
        }
    }
}
