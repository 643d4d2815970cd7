//! The tokio driver of the TCP balancer: accepts clients under the connection caps, picks a
//! backend through the pool (retrying others when a connect fails, which also feeds passive
//! ejection), writes the PROXY header if configured, and relays until both sides are done.
//! Also starts the health checkers, the slow-start ticker and the metrics endpoint, for TCP
//! and UDP alike.

use crate::checker::{self, Probe};
use crate::config::{ConfigError, HashBy, LbConfig};
use crate::maglev::hash64;
use crate::metrics::{self, LbMetrics};
use crate::pool::{Event, Pool};
use crate::proxy_protocol;
use crate::relay::{RelayEnd, relay};
use crate::udp;
use appnet_netkit::accept::{Accepted, Acceptor, ConnSlot};
use appnet_netkit::listen::{ListenOpts, bind_tcp, bind_udp};
use appnet_netkit::metrics::Registry;
use appnet_netkit::{BoxError, Service, Shutdown};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::broadcast;

/// Why the balancer could not start.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The reason.
        source: io::Error,
    },
}

enum Listener {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A bound, not yet running load balancer.
pub struct LbServer {
    config: LbConfig,
    listener: Listener,
    local: SocketAddr,
    metrics_listener: Option<TcpListener>,
    pool: Arc<Pool>,
    metrics: LbMetrics,
}

/// Controls a running balancer from outside: reloads, events, counters.
#[derive(Clone)]
pub struct LbHandle {
    pool: Arc<Pool>,
    registry: Registry,
}

impl LbHandle {
    /// Replaces the backend set (SIGHUP): removed backends drain, new ones join.
    pub fn reload(&self, backends: &[SocketAddr]) -> Event {
        self.pool.reload(backends, Instant::now())
    }

    /// Backend downs, ups and reloads as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.pool.subscribe()
    }

    /// The backends now: (address, up, open connections).
    pub fn backends(&self) -> Vec<(SocketAddr, bool, usize)> {
        self.pool.backends().iter().map(|b| (b.addr, b.is_up(), b.active())).collect()
    }

    /// The counters, in Prometheus text format via `render()`.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }
}

impl LbServer {
    /// Validates `config` and binds its listening socket (and the metrics one).
    pub async fn bind(config: LbConfig) -> Result<LbServer, LbError> {
        config.validate()?;
        let opts = ListenOpts { backlog: 4096, ..ListenOpts::default() };
        let bind_err = |addr| move |source| LbError::Bind { addr, source };
        let (listener, local) = if config.udp {
            let udp = bind_udp(config.listen, &opts).map_err(bind_err(config.listen))?;
            let local = udp.local_addr().map_err(bind_err(config.listen))?;
            (Listener::Udp(udp), local)
        } else {
            let tcp = bind_tcp(config.listen, &opts).map_err(bind_err(config.listen))?;
            let local = tcp.local_addr().map_err(bind_err(config.listen))?;
            (Listener::Tcp(tcp), local)
        };
        let metrics_listener = match config.metrics {
            Some(addr) => Some(bind_tcp(addr, &ListenOpts::default()).map_err(bind_err(addr))?),
            None => None,
        };
        let metrics = LbMetrics::new();
        let pool = Pool::new(&config, metrics.clone());
        Ok(LbServer { config, listener, local, metrics_listener, pool, metrics })
    }

    /// A handle for reloads, events and counters.
    pub fn handle(&self) -> LbHandle {
        LbHandle { pool: self.pool.clone(), registry: self.metrics.registry.clone() }
    }

    /// Where the metrics endpoint listens, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }
}

impl Service for LbServer {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let LbServer { config, listener, local, metrics_listener, pool, metrics } = self;
        let background = shutdown.child();
        if let Some(l) = metrics_listener {
            tokio::spawn(metrics::serve(l, metrics.registry.clone(), background.clone()));
        }
        tokio::spawn(supervise(pool.clone(), probe(&config), background.clone()));
        let config = Arc::new(config);
        match listener {
            Listener::Tcp(l) => serve_tcp(l, local, config.clone(), pool, metrics, &shutdown).await,
            Listener::Udp(s) => udp::serve(s, config.clone(), pool, metrics, &shutdown).await?,
        }
        background.trigger();
        let deadline = Duration::from_secs(config.drain_secs);
        if !shutdown.drain(deadline).await {
            tracing::warn!("connections still open after {deadline:?}; closing them");
        }
        Ok(())
    }
}

fn probe(config: &LbConfig) -> Probe {
    Probe {
        check: config.health.clone(),
        interval: Duration::from_millis(config.health_interval_ms.max(1)),
        timeout: Duration::from_millis(config.health_timeout_ms.max(1)),
        proxy_protocol: if config.udp { None } else { config.proxy_protocol },
    }
}

/// Runs a health checker for every backend (and for each one a reload adds) and the ticker
/// that re-admits ejected backends and steps slow start.
async fn supervise(pool: Arc<Pool>, probe: Probe, shutdown: Shutdown) {
    let mut events = pool.subscribe();
    let mut checked = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        for b in pool.backends() {
            if checked.insert(b.id) {
                tokio::spawn(checker::run(pool.clone(), b, probe.clone(), shutdown.clone()));
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = events.recv() => {}
            _ = tick.tick() => pool.tick(Instant::now()),
        }
    }
}

/// The Maglev key of a client: its address and port, or its address alone.
pub fn flow_key(peer: SocketAddr, by: HashBy) -> u64 {
    let mut bytes = [0u8; 18];
    let n = match peer.ip() {
        IpAddr::V4(a) => {
            bytes[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            bytes[..16].copy_from_slice(&a.octets());
            16
        }
    };
    match by {
        HashBy::ClientIp => hash64(&bytes[..n], 0),
        HashBy::Flow => {
            bytes[n..n + 2].copy_from_slice(&peer.port().to_be_bytes());
            hash64(&bytes[..n + 2], 0)
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    local: SocketAddr,
    config: Arc<LbConfig>,
    pool: Arc<Pool>,
    metrics: LbMetrics,
    shutdown: &Shutdown,
) {
    let acceptor = Acceptor::with_limits(listener, config.conn_limits());
    while let Some(accepted) = acceptor.next(shutdown).await {
        match accepted {
            Accepted::OverCap(stream, peer) => {
                // A layer-4 balancer has no "busy" message to send: the client sees the close.
                metrics.refused.inc();
                tracing::debug!(%peer, "connection cap reached; closing");
                drop(stream);
            }
            Accepted::Conn(stream, peer, slot) => {
                let (config, pool, metrics) = (config.clone(), pool.clone(), metrics.clone());
                shutdown.spawn(async move {
                    metrics.active.inc();
                    proxy_connection(stream, peer, local, slot, &config, &pool, &metrics).await;
                    metrics.active.dec();
                });
            }
        }
    }
}

/// Serves one client connection end to end.
async fn proxy_connection(
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    slot: ConnSlot,
    config: &LbConfig,
    pool: &Pool,
    metrics: &LbMetrics,
) {
    let key = flow_key(peer, config.hash_by);
    let mut tried = Vec::new();
    let connected = loop {
        if tried.len() > config.retries as usize {
            break None;
        }
        let Some(lease) = pool.pick(key, &tried) else { break None };
        let backend = &lease.backend;
        let attempt = tokio::select! {
            r = tokio::time::timeout(config.connect_timeout(), TcpStream::connect(backend.addr)) => r,
            _ = slot.closed() => return,
        };
        match attempt {
            Ok(Ok(stream)) => {
                pool.connect_ok(backend);
                break Some((lease, stream));
            }
            Ok(Err(e)) => tracing::debug!(backend = %backend.addr, "connect failed: {e}"),
            Err(_) => tracing::debug!(backend = %backend.addr, "connect timed out"),
        }
        pool.connect_failed(backend, Instant::now());
        tried.push(backend.id);
    };
    let Some((lease, mut upstream)) = connected else {
        metrics.no_backend.inc();
        tracing::info!(%peer, "no backend reachable; closing the client connection");
        return;
    };
    let _ = upstream.set_nodelay(true);
    if let Some(version) = config.proxy_protocol {
        let header = proxy_protocol::encode(version, peer, local);
        if let Err(e) = upstream.write_all(&header).await {
            tracing::debug!(backend = %lease.backend.addr, "PROXY header not sent: {e}");
            return;
        }
    }
    // Until either side says something the connection may be evicted for a newcomer when the
    // balancer is full (silent connections cannot hold every slot), and is closed after the
    // idle timeout. The first byte from either side (a server-first protocol like SMTP
    // counts) makes it busy: never evicted, cut only by the relay's idle timeout.
    slot.idle_for(config.idle_timeout());
    let (mut first, mut first2) = ([0u8; 1], [0u8; 1]);
    tokio::select! {
        _ = client.peek(&mut first) => {}
        _ = upstream.peek(&mut first2) => {}
        reason = slot.closed() => {
            tracing::debug!(%peer, "closed before a first byte: {reason:?}");
            metrics.idle_closed.inc();
            return;
        }
    }
    slot.busy();
    let m = &lease.backend.metrics;
    let end = relay(
        &mut client,
        &mut upstream,
        config.buffer_size,
        config.idle_timeout(),
        &m.bytes_to_backend,
        &m.bytes_to_client,
    )
    .await;
    match end {
        RelayEnd::Closed { .. } => {}
        RelayEnd::Idle => {
            metrics.idle_closed.inc();
            tracing::debug!(%peer, "idle timeout; closing");
        }
        RelayEnd::Failed(e) => tracing::debug!(%peer, backend = %lease.backend.addr, "relay ended: {e}"),
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_keys_follow_the_hash_setting() {
        let a: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:1001".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:1000".parse().unwrap();
        assert_ne!(flow_key(a, HashBy::Flow), flow_key(b, HashBy::Flow));
        assert_eq!(flow_key(a, HashBy::ClientIp), flow_key(b, HashBy::ClientIp));
        assert_eq!(flow_key(a, HashBy::Flow), flow_key(a, HashBy::Flow));
        assert_ne!(flow_key(v6, HashBy::Flow), flow_key(a, HashBy::Flow));
    }
}
