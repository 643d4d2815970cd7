//! The search experiment on real nodes: tens of Gnutella nodes (appnet-overlay's node driver,
//! each a TCP listener of its own on 127.0.61.x, all tasks of this process), a flat overlay and
//! a two-tier one, searched through the normal client with TTL 1..5. Messages are counted from
//! the nodes' own traces (every Query and QueryHit a node sends).

use super::search::Options;
use super::{ExperimentError, Table};
use appnet_netkit::harness::{self, Running, TempDir};
use appnet_overlay::gnutella::client::search;
use appnet_overlay::gnutella::node::{Node, TraceEvent};
use appnet_overlay::gnutella::node_config::NodeConfig;
use appnet_overlay::sim::{SimRng, file_name};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Distinct files shared on the real overlays.
const FILES: usize = 20;
/// Copies of each.
const REPLICAS: usize = 2;
/// How long a search collects QueryHits (loopback floods finish in milliseconds).
const WAIT: Duration = Duration::from_millis(400);

fn err(e: impl std::fmt::Display) -> ExperimentError {
    ExperimentError::Write { path: "real nodes".into(), message: e.to_string() }
}

struct Overlay {
    running: Vec<Running>,
    addrs: Vec<SocketAddr>,
    holders: Vec<Vec<usize>>,
    messages: Arc<AtomicU64>,
    _dirs: Vec<TempDir>,
}

impl Overlay {
    /// Starts `n` nodes; `ultrapeers` of them (the first ones) are ultrapeers, meshed; every
    /// other node joins through 2 random earlier nodes (flat) or 2 random ultrapeers (leaves).
    async fn start(n: usize, ultrapeers: usize, seed: u64, subnet: u8) -> Result<Overlay, ExperimentError> {
        let mut rng = SimRng::new(seed);
        let (per_peer, holders) = appnet_overlay::sim::place(
            n,
            &appnet_overlay::sim::Workload { files: FILES, replicas: REPLICAS, seed },
            &mut rng,
        );
        let messages = Arc::new(AtomicU64::new(0));
        let mut running = Vec::new();
        let mut addrs: Vec<SocketAddr> = Vec::new();
        let mut dirs = Vec::new();
        for (i, files) in per_peer.iter().enumerate() {
            let dir = TempDir::new(&format!("search-real-{subnet}-{i}"));
            for &f in files {
                let body = format!("appnet search experiment, file {f}\n").repeat(64);
                std::fs::write(dir.path().join(file_name(f as usize)), body).map_err(err)?;
            }
            let connect: Vec<SocketAddr> = if ultrapeers > 0 {
                if i < ultrapeers {
                    addrs[..i].to_vec()
                } else {
                    rng.distinct(ultrapeers, 2).into_iter().map(|j| addrs[j]).collect()
                }
            } else if i == 0 {
                Vec::new()
            } else {
                rng.distinct(i, 2).into_iter().map(|j| addrs[j]).collect()
            };
            let mut config = NodeConfig {
                ultrapeer: i < ultrapeers,
                connect,
                max_peers: 32,
                want_peers: if i < ultrapeers { ultrapeers } else { 2 },
                dial_interval_secs: 1,
                ..NodeConfig::default()
            };
            config.upload.listen = SocketAddr::from(([127, 0, subnet, (i + 1) as u8], 0));
            // Every node dials from 127.0.0.1 and the searches come from there too: the
            // per-address cap is for strangers, not for this one-machine overlay.
            config.upload.max_per_ip = 1000;
            let counter = messages.clone();
            let node = Node::bind(config, dir.path()).await.map_err(err)?.with_trace(Arc::new(
                move |ev: TraceEvent| {
                    if !ev.received && (ev.kind == "Query" || ev.kind == "QueryHit") {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                },
            ));
            let r = harness::start(node);
            addrs.push(r.addr());
            running.push(r);
            dirs.push(dir);
        }
        Ok(Overlay { running, addrs, holders, messages, _dirs: dirs })
    }

    fn origin(&self, rng: &mut SimRng, f: usize) -> usize {
        loop {
            let o = rng.below(self.addrs.len());
            if !self.holders[f].contains(&o) {
                return o;
            }
        }
    }

    /// Waits until TTL-7 searches from random nodes find every copy of a few files.
    async fn wait_joined(&self, seed: u64) -> bool {
        harness::wait_until(Duration::from_secs(60), Duration::from_millis(500), || async {
            let mut rng = SimRng::new(seed);
            for _ in 0..4 {
                let f = rng.below(FILES);
                let o = self.origin(&mut rng, f);
                let key = file_name(f).trim_end_matches(".mp3").to_string();
                let hits = search(self.addrs[o], &key, 7, WAIT).await.unwrap_or_default();
                if hits.len() < self.holders[f].len() {
                    return false;
                }
            }
            true
        })
        .await
    }

    async fn stop(self) {
        for r in self.running {
            let _ = r.stop().await;
        }
    }
}

/// Flat and two-tier overlays of `n` real nodes: per TTL, messages per search and the fraction
/// of searches that found a file with 2 copies.
pub async fn real_nodes(opts: &Options, n: usize) -> Result<Table, ExperimentError> {
    run(opts, n, if opts.quick { 8 } else { 20 }).await
}

async fn run(opts: &Options, n: usize, searches: usize) -> Result<Table, ExperimentError> {
    let n = n.clamp(8, 200);
    let ups = (n / 8).max(2);
    let mut t = Table::new(
        &format!(
            "Real nodes on 127/8: {n} Gnutella nodes (flat: each joins through 2 earlier; two-tier: {ups} ultrapeers, leaves on 2), {FILES} files x {REPLICAS} copies, {searches} searches per TTL"
        ),
        &["TTL", "flat msgs", "flat found", "two-tier msgs", "two-tier found"],
    );
    let mut cols: Vec<Vec<(f64, f64)>> = Vec::new();
    for (k, ultrapeers) in [0usize, ups].into_iter().enumerate() {
        let overlay = Overlay::start(n, ultrapeers, opts.seed ^ 0x5EA7C4, 61 + k as u8).await?;
        if !overlay.wait_joined(opts.seed).await {
            overlay.stop().await;
            return Err(err("the real overlay did not form within 60 s"));
        }
        let mut rng = SimRng::new(opts.seed ^ 0xFEED);
        let mut col = Vec::new();
        for ttl in 1..=5u8 {
            let (mut found, mut msgs) = (0usize, 0u64);
            for _ in 0..searches {
                let f = rng.below(FILES);
                let o = overlay.origin(&mut rng, f);
                let key = file_name(f).trim_end_matches(".mp3").to_string();
                let before = overlay.messages.load(Ordering::Relaxed);
                let hits = search(overlay.addrs[o], &key, ttl, WAIT).await.unwrap_or_default();
                // +1: the searching client's own Query to its node.
                msgs += overlay.messages.load(Ordering::Relaxed) - before + 1;
                if !hits.is_empty() {
                    found += 1;
                }
            }
            col.push((msgs as f64 / searches as f64, found as f64 / searches as f64));
        }
        overlay.stop().await;
        cols.push(col);
    }
    for (i, (flat, tiered)) in cols[0].iter().zip(&cols[1]).enumerate() {
        t.rows.push(vec![
            (i + 1).to_string(),
            format!("{:.1}", flat.0),
            format!("{:.0}%", 100.0 * flat.1),
            format!("{:.1}", tiered.0),
            format!("{:.0}%", 100.0 * tiered.1),
        ]);
    }
    t.notes.push(
        "TTL is the searching client's: its node receives the Query with that TTL (one hop more than in the simulator's tables)."
            .into(),
    );
    t.notes.push(
        "Messages: every Query and QueryHit a node sent (from the nodes' traces), plus the client's Query."
            .into(),
    );
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn real_overlays_find_files_and_count_messages() {
        let dir = TempDir::new("search-real-out");
        let opts = Options { out: dir.path().to_path_buf(), quick: true, seed: 3 };
        let t = run(&opts, 10, 3).await.unwrap();
        assert_eq!(t.rows.len(), 5);
        let num = |row: usize, col: usize| t.rows[row][col].trim_end_matches('%').parse::<f64>().unwrap();
        // TTL 1 from the client reaches only its node: 1 Query, plus a hit at most.
        assert!(num(0, 1) <= 2.0, "{t}");
        // TTL 5 floods the flat overlay of 10: more messages, and the file is found.
        assert!(num(4, 1) > num(0, 1), "{t}");
        assert_eq!(num(4, 2), 100.0, "{t}");
        assert_eq!(num(4, 4), 100.0, "{t}");
    }
}
