//! The CDN DNS server's tokio driver: UDP and TCP on one port, health checks in the
//! background, answers from [`respond::answer`](super::respond::answer).

use super::config::CdnConfig;
use super::health::{self, SharedHealth};
use super::policy::{Health, Table};
use super::respond::{self, Answered, CdnZone};
use appnet_dns::wire::tcp::{MAX_MESSAGE, read_message, write_message};
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp, bind_udp};
use appnet_netkit::metrics::{Counter, Registry};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Most TCP connections at once.
const MAX_TCP: usize = 256;
/// Idle limit of a TCP connection.
const TCP_IDLE: Duration = Duration::from_secs(10);

struct Shared {
    cfg: Arc<CdnConfig>,
    zone: CdnZone,
    table: Table,
    health: SharedHealth,
    counters: CdnCounters,
}

/// The CDN DNS server's counters.
#[derive(Clone)]
pub struct CdnCounters {
    registry: Registry,
    /// Replica answers per replica (same order as the configuration).
    pub handed_out: Vec<Counter>,
    /// SERVFAIL because every candidate was down.
    pub no_replica: Counter,
    /// All other replies.
    pub other: Counter,
}

impl CdnCounters {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        self.registry.render()
    }
}

/// A bound CDN DNS server, ready to [`run`](Service::run).
pub struct CdnDnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    shared: Arc<Shared>,
}

impl CdnDnsServer {
    /// Binds UDP and TCP on one port and validates the configuration (zone names, network
    /// table). All replicas count as up until their first checks.
    pub async fn bind(config: CdnConfig) -> io::Result<CdnDnsServer> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let zone = CdnZone::new(&config).map_err(|e| invalid(e.to_string()))?;
        let table = Table::new(&config).map_err(|e| invalid(e.to_string()))?;
        let (udp, tcp) = bind_pair(config.listen)?;
        let registry = Registry::new();
        let counters = CdnCounters {
            handed_out: config
                .replicas
                .iter()
                .map(|r| registry.counter("cdn_answers_total", "Replica answers", &[("replica", &r.name)]))
                .collect(),
            no_replica: registry.counter("cdn_no_replica_total", "SERVFAIL: every replica down", &[]),
            other: registry.counter("cdn_other_replies_total", "Other replies", &[]),
            registry,
        };
        let health = Arc::new(RwLock::new(vec![Health::default(); config.replicas.len()]));
        let shared = Shared { cfg: Arc::new(config), zone, table, health, counters };
        Ok(CdnDnsServer { udp, tcp, shared: Arc::new(shared) })
    }

    /// The replicas' health (for tests, the lab and status pages).
    pub fn health(&self) -> SharedHealth {
        self.shared.health.clone()
    }

    /// The counters.
    pub fn counters(&self) -> CdnCounters {
        self.shared.counters.clone()
    }
}

fn bind_pair(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut last = None;
    for _ in 0..20 {
        let udp = bind_udp(addr, &ListenOpts::default())?;
        let port = udp.local_addr()?.port();
        match bind_tcp(SocketAddr::new(addr.ip(), port), &ListenOpts::default()) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port for UDP and TCP")))
}

impl Shared {
    fn answer(&self, packet: &[u8], peer: SocketAddr, tcp: bool) -> Option<Vec<u8>> {
        let health: Vec<Health> = self.health.read().unwrap_or_else(|e| e.into_inner()).clone();
        let (bytes, what) = respond::answer(&self.zone, &self.table, &health, packet, peer.ip(), tcp)?;
        match what {
            Answered::Replica(i) => {
                if let Some(c) = self.counters.handed_out.get(i) {
                    c.inc();
                }
                tracing::debug!(%peer, replica = %self.cfg.replicas[i].name, "CDN answer");
            }
            Answered::NoReplica => self.counters.no_replica.inc(),
            Answered::Other => self.counters.other.inc(),
        }
        Some(bytes)
    }
}

impl Service for CdnDnsServer {
    fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or(self.shared.cfg.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let shared = self.shared.clone();
        shutdown.spawn(health::run(shared.cfg.clone(), shared.health.clone(), shutdown.clone()));
        let tcp_shared = shared.clone();
        let tcp_sd = shutdown.clone();
        let tcp_task = shutdown.spawn(serve_tcp(self.tcp, tcp_shared, tcp_sd));
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, peer) = tokio::select! {
                _ = shutdown.wait() => break,
                r = self.udp.recv_from(&mut buf) => match r {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!("CDN DNS: UDP receive failed: {e}");
                        continue;
                    }
                },
            };
            if let Some(reply) = shared.answer(&buf[..n], peer, false) {
                let _ = self.udp.send_to(&reply, peer).await;
            }
        }
        let _ = tcp_task.await;
        shutdown.drain(Duration::from_secs(2)).await;
        Ok(())
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, shutdown: Shutdown) {
    // netkit's policy: per-address caps, eviction of the longest-waiting connection when
    // full, and a deadline for each whole query (RFC 7766 §6.2.3 idle timeout).
    let limits = ConnLimits { request_timeout: TCP_IDLE, idle_timeout: TCP_IDLE, ..ConnLimits::new(MAX_TCP) };
    let acceptor = Acceptor::with_limits(listener, limits);
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let Accepted::Conn(stream, peer, slot) = accepted else { continue };
        let (shared, sd) = (shared.clone(), shutdown.clone());
        shutdown.spawn(async move {
            tokio::select! {
                _ = tcp_connection(stream, peer, &shared, &slot) => {}
                _ = slot.closed() => {}
                _ = sd.wait() => {}
            }
        });
    }
}

/// Answers length-prefixed queries (RFC 1035 §4.2.2) until the client closes; the caller's
/// `slot.closed()` cuts a query that does not arrive whole in time.
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    slot: &ConnSlot,
) -> io::Result<()> {
    for _ in 0..100 {
        let Some(msg) = read_message(&mut stream, MAX_MESSAGE).await? else { return Ok(()) };
        slot.busy();
        let Some(reply) = shared.answer(&msg, peer, true) else { return Ok(()) };
        tokio::time::timeout(TCP_IDLE, write_message(&mut stream, &reply))
            .await
            .map_err(|_| io::ErrorKind::TimedOut)??;
        slot.idle();
    }
    Ok(())
}
