//! The resolver service: UDP and TCP on one address for clients, a task per question so a slow
//! resolution never blocks others, bounded in-flight work, graceful shutdown.

use crate::admission::Gate;
use crate::cache::CacheLimits;
use crate::clients::Clients;
use crate::config::ResolverConfig;
use crate::driver::Resolver;
use crate::hints;
use crate::iterate::{Mode, Settings};
use crate::local::LocalZones;
use crate::respond::{Frontend, Immediate, ServiceCounters, Via};
use crate::transport::NetTransport;
use appnet_netkit::accept::{Accepted, Acceptor, ConnLimits, ConnSlot};
use appnet_netkit::batch::{RecvBatch, SendBatch};
use appnet_netkit::listen::{ListenOpts, bind_udp_group_and_tcp};
use appnet_netkit::{BoxError, Service, Shutdown};
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

/// The shared state of a running resolver (counters and cache are readable from outside).
pub type SharedFrontend = Arc<Frontend<NetTransport>>;

/// A bound resolver service.
pub struct ResolverServer {
    /// One socket per worker thread on the same port (SO_REUSEPORT spreads clients over them).
    udp: Vec<Arc<UdpSocket>>,
    tcp: TcpListener,
    frontend: SharedFrontend,
    config: ResolverConfig,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Builds the resolution settings from the config (root hints loaded here).
pub fn settings_from(config: &ResolverConfig) -> io::Result<Settings> {
    let mode = match config.forward {
        Some(upstream) => Mode::Forward { upstream },
        None => {
            let roots = match &config.root_hints {
                Some(path) => hints::load(path).map_err(invalid)?,
                None => hints::built_in(),
            };
            Mode::Iterative { roots }
        }
    };
    Ok(Settings {
        mode,
        upstream_port: config.upstream_port,
        use_0x20: config.use_0x20,
        cache: CacheLimits {
            max_bytes: config.cache_size,
            max_ttl: config.max_ttl,
            max_negative_ttl: config.max_negative_ttl,
            servfail_ttl: config.servfail_ttl,
        },
        max_in_flight_per_zone: config.max_in_flight_per_zone,
        max_queries: config.max_queries_per_question,
        dnssec: config.dnssec,
    })
}

impl ResolverServer {
    /// Binds UDP and TCP on the configured address and prepares the resolver.
    pub async fn bind(config: ResolverConfig) -> io::Result<ResolverServer> {
        let settings = settings_from(&config)?;
        let clients = Clients::new(&config.allow, config.rate_limit_qps, config.rate_limit_loopback)
            .map_err(invalid)?;
        let local = LocalZones::new(&config.extra_local_zones).map_err(invalid)?;
        let anchors =
            crate::dnssec::TrustAnchors::load(&config.trust_anchors).map_err(|e| invalid(e.to_string()))?;
        let opts = ListenOpts::default();
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (udp, tcp) = bind_udp_group_and_tcp(config.listen, workers, &opts, &opts)?;
        let addr = udp[0].local_addr()?;
        let frontend = Arc::new(Frontend {
            resolver: Resolver::new(
                settings,
                NetTransport { source: Some(addr.ip()).filter(|ip| !ip.is_unspecified()) },
            )
            .with_trust_anchors(anchors),
            local,
            clients,
            counters: ServiceCounters::default(),
            per_client: Gate::new(config.max_in_flight_per_client),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        });
        Ok(ResolverServer { udp: udp.into_iter().map(Arc::new).collect(), tcp, frontend, config })
    }

    /// The resolver's shared state: counters, cache statistics, flush.
    pub fn frontend(&self) -> SharedFrontend {
        self.frontend.clone()
    }
}

/// The service counters in Prometheus text format.
pub fn metrics_text(f: &Frontend<NetTransport>) -> String {
    let mut out = String::new();
    let c: &ServiceCounters = &f.counters;
    let r = f.resolver.counters();
    let cache = f.resolver.cache_stats();
    let rows = [
        ("resolver_queries_total", c.queries.load(Ordering::Relaxed)),
        ("resolver_refused_total", c.refused.load(Ordering::Relaxed)),
        ("resolver_rate_limited_total", c.rate_limited.load(Ordering::Relaxed)),
        ("resolver_local_answers_total", c.local_answers.load(Ordering::Relaxed)),
        ("resolver_servfail_total", c.servfail.load(Ordering::Relaxed)),
        ("resolver_client_limited_total", c.client_limited.load(Ordering::Relaxed)),
        ("resolver_busy_total", c.busy.load(Ordering::Relaxed)),
        ("resolver_zone_limited_total", r.zone_limited.load(Ordering::Relaxed)),
        ("resolver_served_from_cache_total", r.served_from_cache.load(Ordering::Relaxed)),
        ("resolver_upstream_queries_total", r.upstream_queries.load(Ordering::Relaxed)),
        ("resolver_upstream_timeouts_total", r.timeouts.load(Ordering::Relaxed)),
        ("resolver_rejected_replies_total", r.rejected_replies.load(Ordering::Relaxed)),
        ("resolver_cache_hits_total", cache.hits),
        ("resolver_cache_misses_total", cache.misses),
        ("resolver_cache_evictions_total", cache.evictions),
    ];
    for (name, value) in rows {
        let _ = writeln!(out, "# TYPE {name} counter\n{name} {value}");
    }
    let bytes = f.resolver.cache_bytes();
    let _ = writeln!(out, "# TYPE resolver_cache_bytes gauge\nresolver_cache_bytes {bytes}");
    out
}

impl Service for ResolverServer {
    fn local_addr(&self) -> SocketAddr {
        self.udp[0].local_addr().unwrap_or(self.config.listen)
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let mut loops = Vec::new();
        for socket in self.udp {
            let (frontend, sd) = (self.frontend.clone(), shutdown.clone());
            loops.push(shutdown.spawn(serve_udp(socket, frontend, sd)));
        }
        loops.push(shutdown.spawn(serve_tcp(self.tcp, self.frontend, self.config, shutdown.clone())));
        shutdown.wait().await;
        for l in loops {
            let _ = l.await;
        }
        if !shutdown.drain(Duration::from_secs(5)).await {
            tracing::warn!("some resolutions were still running at shutdown");
        }
        Ok(())
    }
}

/// Datagrams taken off the socket (and replies sent) per system call.
const UDP_BATCH: usize = 32;
/// Largest query accepted over UDP (longer ones are truncated and fail to parse).
const UDP_MAX_QUERY: usize = 4096;

async fn serve_udp(socket: Arc<UdpSocket>, frontend: SharedFrontend, shutdown: Shutdown) {
    // Many datagrams per system call: on cache hits the two calls per query dominate the cost.
    let mut rx = RecvBatch::new(UDP_BATCH, UDP_MAX_QUERY);
    let mut tx = SendBatch::new(UDP_BATCH);
    while let Some(n) = rx.recv_next(&socket, &shutdown, || {}).await {
        for i in 0..n {
            let (packet, peer) = rx.get(i);
            let (packet, admitted) = match frontend.answer_now(packet, peer.ip(), Via::Udp) {
                Immediate::Reply(Some(reply)) => {
                    tx.push(reply, peer);
                    continue;
                }
                Immediate::Reply(None) => continue,
                Immediate::Resolve(admitted) => (packet.to_vec(), admitted),
            };
            let (socket, frontend) = (socket.clone(), frontend.clone());
            shutdown.spawn(async move {
                if let Some(reply) = frontend.answer_resolving(&packet, Via::Udp).await
                    && let Err(e) = socket.send_to(&reply, peer).await
                {
                    tracing::debug!(%peer, "udp send failed: {e}");
                }
                drop(admitted);
            });
        }
        if !tx.is_empty()
            && let Err(e) = tx.send(&socket).await
        {
            tracing::debug!("udp send failed: {e}");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    frontend: SharedFrontend,
    config: ResolverConfig,
    shutdown: Shutdown,
) {
    let acceptor = Acceptor::with_limits(listener, tcp_limits(&config));
    while let Some(accepted) = acceptor.next(&shutdown).await {
        let (stream, peer, slot) = match accepted {
            Accepted::Conn(stream, peer, slot) => (stream, peer, slot),
            Accepted::OverCap(_, peer) => {
                tracing::info!(%peer, "TCP connection refused (address cap, or every connection busy)");
                continue;
            }
        };
        let (frontend, sd) = (frontend.clone(), shutdown.clone());
        shutdown.spawn(async move {
            if let Err(e) = serve_connection(stream, peer, &frontend, &slot, &sd).await {
                tracing::debug!(%peer, "tcp connection ended: {e}");
            }
        });
    }
}

/// The shared TCP connection policy with the resolver's settings: a whole query within the
/// idle timeout (the first one too), per-address cap as configured (0 = netkit's default).
fn tcp_limits(config: &ResolverConfig) -> ConnLimits {
    let idle = Duration::from_secs(config.tcp_idle_timeout_secs.max(1));
    let mut limits = ConnLimits::new(config.max_tcp_connections);
    if config.max_tcp_per_ip > 0 {
        limits.max_per_ip = config.max_tcp_per_ip;
    }
    limits.request_timeout = idle;
    limits.idle_timeout = idle;
    limits
}

/// Reads one length-prefixed query (RFC 1035 §4.2.2); `None` at a clean end of stream.
async fn read_query(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut packet = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut packet).await?;
    Ok(Some(packet))
}

/// Serves one client connection: each query must arrive whole before the slot's deadline (a
/// silent or byte-trickling client is closed, and an idle one may be evicted for a newcomer);
/// while a query is being answered the connection is busy and keeps its slot.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    frontend: &SharedFrontend,
    slot: &ConnSlot,
    shutdown: &Shutdown,
) -> io::Result<()> {
    loop {
        let packet = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            reason = slot.closed() => {
                tracing::debug!(%peer, "tcp connection closed: {reason:?}");
                return Ok(());
            }
            read = read_query(&mut stream) => match read? {
                Some(packet) => packet,
                None => return Ok(()),
            },
        };
        slot.busy();
        if let Some(reply) = frontend.answer(&packet, peer.ip(), Via::Tcp).await {
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            framed.extend_from_slice(&reply);
            // The write gets the idle deadline too: a client that does not read is dropped.
            slot.idle();
            tokio::select! {
                reason = slot.closed() => {
                    tracing::debug!(%peer, "tcp connection closed while writing: {reason:?}");
                    return Ok(());
                }
                written = stream.write_all(&framed) => written?,
            }
        }
        slot.idle();
    }
}
