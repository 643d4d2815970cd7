//! The tokio driver of the UDP balancer. Each client flow (its address and port) is pinned to
//! one backend in the [`FlowTable`] and gets its own connected upstream socket, so replies come
//! back on a socket that knows which client they belong to; a task per flow relays replies.
//! Flows expire when idle, are capped in all and per client, and are dropped when their
//! backend goes down (their next datagram picks again: only that backend's flows move). An
//! ICMP port-unreachable on a flow's socket counts as a failed connect for passive ejection.

use crate::config::LbConfig;
use crate::flows::FlowTable;
use crate::metrics::LbMetrics;
use crate::pool::{Lease, Pool};
use crate::server::flow_key;
use appnet_netkit::Shutdown;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// What the driver keeps per flow; dropping it stops the flow's reply task.
struct FlowHandle {
    socket: Arc<UdpSocket>,
    stop: CancellationToken,
    lease: Lease,
}

impl Drop for FlowHandle {
    fn drop(&mut self) {
        self.stop.cancel();
        self.lease.backend.metrics.udp_flows.dec();
    }
}

type Table = Arc<Mutex<FlowTable<FlowHandle>>>;

fn lock(table: &Table) -> MutexGuard<'_, FlowTable<FlowHandle>> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

/// Relays datagrams on `socket` until shutdown.
pub async fn serve(
    socket: UdpSocket,
    config: Arc<LbConfig>,
    pool: Arc<Pool>,
    metrics: LbMetrics,
    shutdown: &Shutdown,
) -> io::Result<()> {
    let socket = Arc::new(socket);
    let table: Table = Arc::new(Mutex::new(FlowTable::new(config.flow_limits())));
    let background = shutdown.child();
    tokio::spawn(expire_flows(
        table.clone(),
        pool.clone(),
        metrics.clone(),
        config.flow_limits().idle,
        background.clone(),
    ));
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = tokio::select! {
            _ = shutdown.wait() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!("udp receive failed: {e}");
                    continue;
                }
            },
        };
        let now = Instant::now();
        let existing =
            lock(&table).touch(client, now).map(|f| (f.value.socket.clone(), f.value.lease.backend.clone()));
        let (upstream, backend) = match existing {
            Some(pair) => pair,
            None => match open_flow(client, &socket, &table, &config, &pool, &metrics, now).await {
                Some(pair) => pair,
                None => continue,
            },
        };
        backend.metrics.bytes_to_backend.add(n as u64);
        if let Err(e) = upstream.send(&buf[..n]).await {
            tracing::debug!(%client, backend = %backend.addr, "udp send failed: {e}");
        }
    }
    background.trigger();
    // Dropping the flows stops their reply tasks.
    let flows = lock(&table).remove_where(|_| true);
    drop(flows);
    metrics.udp_flows.set(0);
    Ok(())
}

/// Pins a new flow: checks the caps, picks a backend, opens the upstream socket and starts
/// the reply task.
async fn open_flow(
    client: SocketAddr,
    socket: &Arc<UdpSocket>,
    table: &Table,
    config: &LbConfig,
    pool: &Arc<Pool>,
    metrics: &LbMetrics,
    now: Instant,
) -> Option<(Arc<UdpSocket>, Arc<crate::pool::Backend>)> {
    if let Err(e) = lock(table).admits(client) {
        metrics.udp_refused.inc();
        tracing::debug!(%client, "udp flow refused: {e}");
        return None;
    }
    let Some(lease) = pool.pick(flow_key(client, config.hash_by), &[]) else {
        metrics.no_backend.inc();
        return None;
    };
    // The lease counted a connection as active; a UDP flow is counted in udp_flows instead.
    let backend = lease.backend.clone();
    let unspecified = match backend.addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let upstream = match UdpSocket::bind(SocketAddr::new(unspecified, 0)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot open an upstream udp socket: {e}");
            return None;
        }
    };
    if let Err(e) = upstream.connect(backend.addr).await {
        tracing::debug!(backend = %backend.addr, "udp connect failed: {e}");
        pool.connect_failed(&backend, now);
        return None;
    }
    let upstream = Arc::new(upstream);
    let stop = CancellationToken::new();
    backend.metrics.udp_flows.inc();
    let handle = FlowHandle { socket: upstream.clone(), stop: stop.clone(), lease };
    let inserted = lock(table).insert(client, backend.id, handle, now);
    match inserted {
        Ok(_) => {}
        Err(_) => {
            metrics.udp_refused.inc();
            return None;
        }
    }
    metrics.udp_flows.set(lock(table).len() as i64);
    tokio::spawn(replies(
        client,
        socket.clone(),
        upstream.clone(),
        table.clone(),
        pool.clone(),
        backend.clone(),
        stop,
    ));
    Some((upstream, backend))
}

/// Relays the backend's replies of one flow to its client until the flow is dropped.
async fn replies(
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    table: Table,
    pool: Arc<Pool>,
    backend: Arc<crate::pool::Backend>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut answered = false;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = upstream.recv(&mut buf) => r,
        };
        match r {
            Ok(n) => {
                if !answered {
                    answered = true;
                    pool.connect_ok(&backend);
                }
                lock(&table).touch(client, Instant::now());
                backend.metrics.bytes_to_client.add(n as u64);
                if let Err(e) = socket.send_to(&buf[..n], client).await {
                    tracing::debug!(%client, "udp reply not sent: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // ICMP port unreachable: nothing listens there. Count it, and let the flow's
                // next datagram pick again.
                tracing::debug!(backend = %backend.addr, "udp backend refused");
                pool.connect_failed(&backend, Instant::now());
                let mut t = lock(&table);
                if t.get(&client).is_some_and(|f| Arc::ptr_eq(&f.value.socket, &upstream)) {
                    let gone = t.remove(&client);
                    drop(t);
                    drop(gone);
                }
                return;
            }
            Err(e) => {
                tracing::debug!(%client, "udp upstream receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Forgets idle flows and flows whose backend left or went down.
async fn expire_flows(table: Table, pool: Arc<Pool>, metrics: LbMetrics, idle: Duration, shutdown: Shutdown) {
    let mut events = pool.subscribe();
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
            _ = events.recv() => {}
        }
        let now = Instant::now();
        let (expired, moved, len) = {
            let mut t = lock(&table);
            let expired = t.expire(now);
            let moved =
                t.remove_where(|f| !f.value.lease.backend.is_up() || f.value.lease.backend.is_removed());
            (expired, moved, t.len())
        };
        if !moved.is_empty() {
            tracing::info!(flows = moved.len(), "udp flows of a down or removed backend released");
        }
        drop(expired);
        drop(moved);
        metrics.udp_flows.set(len as i64);
    }
}
