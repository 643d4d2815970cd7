//! Path length on real nodes: rings of 2^3 … 2^k `ChordServer`s on 127.0.0.1 (one process, real
//! TCP), lookups from random nodes through the client, next to the simulator's figure.

use super::{ExperimentError, Options, Table, mean, quantile};
use crate::client::Client;
use crate::config::ChordConfig;
use crate::id::Id;
use crate::server::{ChordServer, NodeHandle};
use crate::sim::{Rng, successor_in};
use crate::wire::NodeRef;
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

/// Hops of `lookups` random lookups on a ring of `n` real nodes (None if it did not converge).
async fn real_ring(n: usize, lookups: usize, rng: &mut Rng) -> Result<Option<Vec<f64>>, ExperimentError> {
    let io = |e: std::io::Error| ExperimentError::Write { path: "127.0.0.1".into(), message: e.to_string() };
    let config = |join| ChordConfig {
        listen: any_loopback(),
        join,
        bits: 32,
        stabilize_ms: 300,
        fix_fingers_ms: 60,
        check_predecessor_ms: 1000,
        rpc_timeout_ms: 2000,
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
    for r in running {
        let _ = r.stop().await;
    }
    Ok(ok.then_some(hops))
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
