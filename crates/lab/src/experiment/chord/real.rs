//! Path length on real nodes: rings of 2^3 … 2^k `ChordServer`s on 127.0.0.1 (one process, real
//! TCP), lookups from random nodes through the client, next to the simulator's figure; and the
//! lookup rate of such a ring with pooled connections against one connection per RPC.

use super::Options;
use crate::experiment::{ExperimentError, Table, mean, quantile};
use appnet_chord::client::Client;
use appnet_chord::config::ChordConfig;
use appnet_chord::id::Id;
use appnet_chord::pool::{Pool, PoolLimits};
use appnet_chord::server::{ChordServer, NodeHandle};
use appnet_chord::sim::{Rng, successor_in};
use appnet_chord::wire::NodeRef;
use appnet_netkit::harness::{self, Running, any_loopback};
use std::time::Duration;

/// Whether every node's successor and every finger it has set are the true ones.
fn converged(nodes: &[(NodeRef, NodeHandle)], ring: &[NodeRef]) -> bool {
    nodes.iter().all(|(me, h)| {
        let node = h.lock().unwrap_or_else(|p| p.into_inner());
        let rt = node.routing();
        let succ_ok =
            rt.succs.first().map(|s| s.id) == Some(successor_in(ring, &me.id.add_pow2(0, rt.bits)).id);
        let fingers_ok = rt.fingers.iter().enumerate().all(|(k, f)| match f {
            Some(f) => f.id == successor_in(ring, &rt.finger_start(k as u8)).id,
            None => false,
        });
        succ_ok && fingers_ok
    })
}

/// A ring of real nodes in this process.
struct RealRing {
    running: Vec<Running>,
    nodes: Vec<(NodeRef, NodeHandle)>,
}

impl RealRing {
    /// Starts `n` nodes (each joining through a random earlier one), keeping up to `pool` idle
    /// connections per peer (0 = a connection per RPC); `None` if the ring did not converge
    /// within 120 s.
    async fn start(n: usize, pool: usize, rng: &mut Rng) -> Result<(RealRing, bool), ExperimentError> {
        let io =
            |e: std::io::Error| ExperimentError::Write { path: "127.0.0.1".into(), message: e.to_string() };
        let config = |join| ChordConfig {
            listen: any_loopback(),
            join,
            bits: 32,
            stabilize_ms: 300,
            fix_fingers_ms: 60,
            check_predecessor_ms: 1000,
            rpc_timeout_ms: 2000,
            pool_per_peer: pool,
            // 256 nodes in one process: both ends of every pooled connection count against
            // the process's file descriptors.
            pool_max_idle: 16,
            // Every node and the client share one address.
            max_connections_per_ip: 512,
            ..ChordConfig::default()
        };
        let mut running: Vec<Running> = Vec::new();
        let mut nodes: Vec<(NodeRef, NodeHandle)> = Vec::new();
        for i in 0..n {
            let join = (i > 0).then(|| nodes[rng.below(nodes.len())].0.addr);
            let server = ChordServer::bind(config(join)).await.map_err(io)?;
            nodes.push((server.node_ref(), server.handle()));
            running.push(harness::start(server));
        }
        let mut ring: Vec<NodeRef> = nodes.iter().map(|(n, _)| *n).collect();
        ring.sort_by_key(|n| n.id);
        let ok = harness::wait_until(Duration::from_secs(120), Duration::from_millis(200), || async {
            converged(&nodes, &ring)
        })
        .await;
        Ok((RealRing { running, nodes }, ok))
    }

    async fn stop(self) {
        for r in self.running {
            let _ = r.stop().await;
        }
    }
}

/// Hops of `lookups` random lookups on a ring of `n` real nodes (None if it did not converge).
async fn real_ring(n: usize, lookups: usize, rng: &mut Rng) -> Result<Option<Vec<f64>>, ExperimentError> {
    let (ring, ok) = RealRing::start(n, PoolLimits::default().per_peer, rng).await?;
    let nodes = &ring.nodes;
    let mut hops = Vec::with_capacity(lookups);
    if ok {
        for _ in 0..lookups {
            let entry = nodes[rng.below(nodes.len())].0.addr;
            let client = Client::connect(entry, Duration::from_secs(5)).await;
            let Ok(client) = client else { continue };
            let target = Id::from_u64(rng.next_u64() & 0xffff_ffff);
            if let Ok(o) = client.lookup(target).await {
                // The client's first answer is the entry node's own routing step, which a node
                // makes locally (without a message) in the simulator: do not count it.
                hops.push(o.hops.saturating_sub(1) as f64);
            }
        }
    }
    ring.stop().await;
    Ok(ok.then_some(hops))
}

/// Lookups per second on a ring of `n` real nodes, one after the other from random entry
/// nodes: iterative (the client asks each hop) and recursive (the nodes forward the query),
/// with pooled connections (the default) and with a new TCP connection per RPC (pooling off in
/// the nodes and the client), each on a fresh ring.
pub async fn real_pooling(opts: &Options, n: usize) -> Result<Table, ExperimentError> {
    let lookups = if opts.quick { 300 } else { 2000 };
    let mut t = Table::new(
        &format!(
            "Connection pooling on {n} real nodes (TCP on 127.0.0.1, one process, {lookups} lookups each)"
        ),
        &[
            "connections",
            "iterative lookups/s",
            "ms per RPC",
            "recursive lookups/s",
            "client connections opened",
        ],
    );
    let mut rates = Vec::new();
    for pool in [0, PoolLimits::default().per_peer] {
        let mut rng = Rng::new(opts.seed ^ 0x9001);
        let (ring, ok) = RealRing::start(n, pool, &mut rng).await?;
        let label = if pool == 0 { "one per RPC".to_string() } else { format!("pooled ({pool} per peer)") };
        if !ok {
            t.rows.push(vec![label, "ring did not converge in 120 s".into()]);
            ring.stop().await;
            continue;
        }
        let shared = if pool == 0 { Pool::disabled() } else { Pool::new(PoolLimits::default()) };
        let mut clients = Vec::new();
        for (node, _) in &ring.nodes {
            let client = Client::connect_with(node.addr, Duration::from_secs(5), shared.clone()).await;
            clients.push(client.map_err(|e| ExperimentError::Write {
                path: node.addr.to_string().into(),
                message: e.to_string(),
            })?);
        }
        let mut row = vec![label];
        for recursive in [false, true] {
            let started = std::time::Instant::now();
            let (mut done, mut rpcs) = (0u32, 0u64);
            for _ in 0..lookups {
                let client = clients[rng.below(clients.len())].clone().recursive(recursive);
                if let Ok(o) = client.lookup(Id::from_u64(rng.next_u64() & 0xffff_ffff)).await {
                    done += 1;
                    rpcs += if recursive { 1 } else { u64::from(o.hops + o.timeouts) };
                }
            }
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs;
            rates.push(rate);
            row.push(format!("{rate:.0}"));
            if !recursive {
                row.push(format!("{:.3}", 1000.0 * secs / rpcs.max(1) as f64));
            }
        }
        row.push(shared.stats().opened.to_string());
        t.rows.push(row);
        ring.stop().await;
    }
    if let [it0, rec0, it1, rec1] = rates[..] {
        t.notes.push(format!(
            "pooled vs one connection per RPC: {:.2}× iterative, {:.2}× recursive lookups per second",
            it1 / it0,
            rec1 / rec0
        ));
    }
    Ok(t)
}

/// Path length on rings of real nodes, N = 2^3 … `max_nodes`.
pub async fn real_path_length(opts: &Options, max_nodes: usize) -> Result<Table, ExperimentError> {
    let mut rng = Rng::new(opts.seed ^ 0x7ea1);
    let mut t = Table::new(
        "Path length on real nodes (TCP on 127.0.0.1, one process, 32-bit ids)",
        &["N", "lookups", "mean hops", "1st pct", "99th pct", "paper: ½·log2 N", "simulator mean"],
    );
    let mut n = 8;
    while n <= max_nodes.min(256) {
        let k = n.trailing_zeros();
        let lookups = 300;
        match real_ring(n, lookups, &mut rng).await? {
            Some(mut hops) => {
                hops.sort_by(f64::total_cmp);
                let sim = mean(&super::paths::measure_paths(n, 2000, opts.seed ^ k as u64));
                t.rows.push(vec![
                    format!("2^{k}"),
                    hops.len().to_string(),
                    format!("{:.2}", mean(&hops)),
                    format!("{:.0}", quantile(&hops, 0.01)),
                    format!("{:.0}", quantile(&hops, 0.99)),
                    format!("{:.1}", 0.5 * k as f64),
                    format!("{sim:.2}"),
                ]);
            }
            None => t.rows.push(vec![format!("2^{k}"), "ring did not converge in 120 s".into()]),
        }
        n *= 2;
    }
    t.notes.push(
        "lookups through the client; the entry node's own routing step is not counted, as in the simulator"
            .into(),
    );
    Ok(t)
}
