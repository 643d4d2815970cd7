//! The balancer's counters (netkit's Prometheus registry) and the small HTTP endpoint that
//! serves them on `--metrics ADDR`.

use appnet_netkit::accept::{Accepted, Acceptor};
use appnet_netkit::metrics::{Counter, Gauge, Registry};
use appnet_netkit::{Shutdown, lines};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Counters of one backend, labelled `backend="ADDR"`.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// Connections (or UDP flows) sent to it.
    pub connections: Counter,
    /// Connections open through it now.
    pub active: Gauge,
    /// 1 when up, 0 when down or removed.
    pub up: Gauge,
    /// Its current weight (100 = full; lower during slow start).
    pub weight: Gauge,
    /// Bytes (TCP) or datagram bytes (UDP) from clients to it.
    pub bytes_to_backend: Counter,
    /// Bytes from it to clients.
    pub bytes_to_client: Counter,
    /// Connects that failed or timed out.
    pub connect_failures: Counter,
    /// Times it was taken out.
    pub downs: Counter,
    /// UDP flows pinned to it now.
    pub udp_flows: Gauge,
}

/// The balancer-wide counters.
#[derive(Debug, Clone)]
pub struct LbMetrics {
    /// The registry all of them live in.
    pub registry: Registry,
    /// Client connections open now.
    pub active: Gauge,
    /// Clients refused because their address (or the balancer) was at its cap.
    pub refused: Counter,
    /// Clients closed because no backend was up or every connect failed.
    pub no_backend: Counter,
    /// Connections closed after the idle timeout.
    pub idle_closed: Counter,
    /// UDP datagrams dropped because the flow table (or the client's share) was full.
    pub udp_refused: Counter,
    /// UDP flows held now.
    pub udp_flows: Gauge,
}

impl LbMetrics {
    /// A fresh set in a new registry.
    pub fn new() -> LbMetrics {
        let r = Registry::new();
        LbMetrics {
            active: r.gauge("lb_active_connections", "Client connections open now.", &[]),
            refused: r.counter("lb_refused_total", "Clients refused at the connection caps.", &[]),
            no_backend: r.counter(
                "lb_no_backend_total",
                "Clients closed because no backend could be reached.",
                &[],
            ),
            idle_closed: r.counter(
                "lb_idle_closed_total",
                "Connections closed idle, or evicted while idle for a newcomer.",
                &[],
            ),
            udp_refused: r.counter("lb_udp_refused_total", "UDP datagrams dropped at the flow caps.", &[]),
            udp_flows: r.gauge("lb_udp_flows", "UDP flows held now.", &[]),
            registry: r,
        }
    }

    /// The counters of backend `addr` (the same ones again if it was seen before).
    pub fn backend(&self, addr: SocketAddr) -> BackendMetrics {
        let r = &self.registry;
        let a = addr.to_string();
        let l = [("backend", a.as_str())];
        let to_b = [("backend", a.as_str()), ("direction", "to_backend")];
        let to_c = [("backend", a.as_str()), ("direction", "to_client")];
        BackendMetrics {
            connections: r.counter(
                "lb_backend_connections_total",
                "Connections or flows sent to the backend.",
                &l,
            ),
            active: r.gauge("lb_backend_active_connections", "Connections open through the backend now.", &l),
            up: r.gauge("lb_backend_up", "1 when the backend takes new connections.", &l),
            weight: r.gauge(
                "lb_backend_weight",
                "The backend's weight (100 = full, less in slow start).",
                &l,
            ),
            bytes_to_backend: r.counter("lb_backend_bytes_total", "Bytes relayed.", &to_b),
            bytes_to_client: r.counter("lb_backend_bytes_total", "Bytes relayed.", &to_c),
            connect_failures: r.counter(
                "lb_backend_connect_failures_total",
                "Failed or timed-out connects to the backend.",
                &l,
            ),
            downs: r.counter("lb_backend_downs_total", "Times the backend was taken out.", &l),
            udp_flows: r.gauge("lb_backend_udp_flows", "UDP flows pinned to the backend now.", &l),
        }
    }
}

impl Default for LbMetrics {
    fn default() -> Self {
        LbMetrics::new()
    }
}

/// Longest request head the metrics endpoint reads.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `registry` as `text/plain; version=0.0.4` to any GET on `listener` until shutdown.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: Shutdown) {
    let acceptor = Acceptor::new(listener, 32);
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let Accepted::Conn(stream, peer, slot) = accepted else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let head = async {
                // Read the request line and headers up to the blank line.
                let mut first: Option<Vec<u8>> = None;
                let mut line = Vec::new();
                for _ in 0..100 {
                    match lines::read_line_bounded(&mut reader, &mut line, MAX_HEAD).await {
                        Ok(lines::Line::Complete) if line.is_empty() => break,
                        Ok(lines::Line::Complete) => {
                            if first.is_none() {
                                first = Some(std::mem::take(&mut line));
                            }
                        }
                        _ => return None,
                    }
                }
                first
            };
            let line = tokio::select! {
                line = head => line,
                _ = slot.closed() => None,
                _ = tokio::time::sleep(Duration::from_secs(10)) => None,
            };
            let Some(line) = line else { return };
            let reply = if line.starts_with(b"GET ") || line.starts_with(b"HEAD ") {
                let body = registry.render();
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if line.starts_with(b"GET ") {
                    r.push_str(&body);
                }
                r
            } else {
                "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            };
            if let Err(e) = write.write_all(reply.as_bytes()).await {
                tracing::debug!(%peer, "metrics reply failed: {e}");
            }
            let _ = write.shutdown().await;
        });
    }
}
