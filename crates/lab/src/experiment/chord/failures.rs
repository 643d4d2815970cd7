//! Simultaneous failures (the paper's figure 11): in a converged ring a fraction p of the nodes
//! fails at once; after stabilization, random keys are read from random survivors. Without
//! replication the paper finds failed lookups ≈ p (exactly the keys lost with their nodes); with
//! each key on r nodes a key can only be lost when all r fail, and no key whose replicas did not
//! all fail may be lost.

use super::Options;
use super::paths::SIM_BITS;
use crate::experiment::plot::{Series, line_chart};
use crate::experiment::{ExperimentError, Table};
use appnet_chord::id::Id;
use appnet_chord::node::{Event, Params};
use appnet_chord::sim::{Sim, SimConfig};
use std::collections::HashMap;

/// Outcome of one failure run.
#[derive(Debug, Clone, Copy)]
pub struct FailureRun {
    /// Reads attempted.
    pub reads: usize,
    /// Reads that did not return the value.
    pub failed: usize,
    /// Sampled keys whose every replica holder failed.
    pub all_replicas_dead: usize,
    /// Failed reads of keys that still had a live replica (must be 0).
    pub lost_with_live_replica: usize,
    /// Mean RPC timeouts per read.
    pub timeouts: f64,
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// One run: `n` nodes, `keys` keys on `replicas` nodes each, fraction `p` killed at once.
pub fn failure_run(n: usize, keys: usize, reads: usize, p: f64, replicas: usize, seed: u64) -> FailureRun {
    let log2n = (n as f64).log2().ceil() as usize;
    let params = Params {
        bits: SIM_BITS,
        successors: (2 * log2n).clamp(replicas.max(3), 32),
        replicas,
        stabilize_ms: 30_000,
        fix_fingers_ms: 10_000,
        check_predecessor_ms: 30_000,
        // Garbage collection off: the published figures were measured without it.
        gc_ms: 0,
        ..Params::default()
    };
    let mut sim = Sim::new(params, SimConfig { seed, ..SimConfig::default() });
    let ids: Vec<Id> = (0..n).map(|_| sim.rng.id(SIM_BITS)).collect();
    let idx = sim.build_converged(&ids);
    let mut ring: Vec<(Id, usize)> = ids.iter().copied().zip(idx.iter().copied()).collect();
    ring.sort();
    // Place every key on its successor and the next replicas-1 nodes (the replicated state).
    let mut holders: Vec<Vec<usize>> = Vec::with_capacity(keys);
    for i in 0..keys {
        let kid = Id::hash(&key(i), SIM_BITS);
        let pos = ring.partition_point(|(id, _)| *id < kid);
        let h: Vec<usize> = (0..replicas).map(|j| ring[(pos + j) % ring.len()].1).collect();
        for &node in &h {
            sim.nodes[node].node.store_mut().insert(key(i), value(i));
        }
        holders.push(h);
    }
    // Kill p·n distinct random nodes at once.
    let mut order = idx.clone();
    for i in (1..order.len()).rev() {
        let j = sim.rng.below(i + 1);
        order.swap(i, j);
    }
    let dead = (p * n as f64).round() as usize;
    for &i in &order[..dead] {
        sim.kill(i);
    }
    // Let the ring stabilize (six mean stabilization periods), then read.
    let t = sim.now + 180_000;
    sim.run_until(t);
    let live = sim.live();
    let mut asked: HashMap<(usize, u64), usize> = HashMap::new();
    let mut run =
        FailureRun { reads: 0, failed: 0, all_replicas_dead: 0, lost_with_live_replica: 0, timeouts: 0.0 };
    let mut timeouts = 0u64;
    for _ in 0..reads {
        let k = sim.rng.below(keys);
        let from = live[sim.rng.below(live.len())];
        let op = sim.get(from, key(k));
        asked.insert((from, op), k);
    }
    // Run until every read has finished (bounded: a read gives up long before).
    for _ in 0..60 {
        if asked.is_empty() {
            break;
        }
        let t = sim.now + 5_000;
        sim.run_until(t);
        for (node, ev) in sim.take_events() {
            if let Event::GetDone { op, value: got, outcome } = ev {
                let Some(k) = asked.remove(&(node, op)) else { continue };
                run.reads += 1;
                timeouts += outcome.map(|o| o.timeouts as u64).unwrap_or(0);
                let all_dead = holders[k].iter().all(|&h| !sim.nodes[h].alive);
                run.all_replicas_dead += all_dead as usize;
                if got.as_deref() != Some(&value(k)[..]) {
                    run.failed += 1;
                    run.lost_with_live_replica += (!all_dead) as usize;
                }
            }
        }
    }
    run.failed += asked.len(); // reads that never finished count as failed
    run.reads += asked.len();
    run.timeouts = timeouts as f64 / run.reads.max(1) as f64;
    run
}

/// The failure table: p = 0.1 … 0.5, without replication and with 3 replicas.
pub fn failures(opts: &Options) -> Result<Table, ExperimentError> {
    let (n, keys, reads) = if opts.quick { (2_000, 20_000, 1_000) } else { (10_000, 100_000, 4_000) };
    let mut t = Table::new(
        &format!("Simultaneous failures: {n} nodes, {keys} keys, fraction p fails, read after stabilization"),
        &[
            "p",
            "replicas",
            "failed reads",
            "expected p^r",
            "keys with all r dead",
            "lost with a live replica",
            "timeouts/read",
        ],
    );
    let (mut none, mut three, mut theory1, mut theory3) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut violations = 0;
    for (i, p) in [0.1, 0.2, 0.3, 0.4, 0.5].into_iter().enumerate() {
        for r in [1usize, 3] {
            let run = failure_run(n, keys, reads, p, r, opts.seed ^ (i as u64 * 31 + r as u64));
            let frac = run.failed as f64 / run.reads.max(1) as f64;
            violations += run.lost_with_live_replica;
            t.rows.push(vec![
                format!("{p:.1}"),
                r.to_string(),
                format!("{frac:.4}"),
                format!("{:.4}", p.powi(r as i32)),
                format!("{:.4}", run.all_replicas_dead as f64 / run.reads.max(1) as f64),
                run.lost_with_live_replica.to_string(),
                format!("{:.2}", run.timeouts),
            ]);
            if r == 1 {
                none.push((p, frac));
                theory1.push((p, p));
            } else {
                three.push((p, frac));
                theory3.push((p, p.powi(3)));
            }
        }
    }
    let path = opts.out.join("chord-failures.svg");
    line_chart(
        &path,
        "Failed reads after simultaneous failures",
        "fraction of nodes failed (p)",
        "fraction of failed reads",
        &[
            Series::measured("no replication", none),
            Series::theory("paper: p", theory1),
            Series::measured("3 replicas", three),
            Series::theory("p^3 (all replicas dead)", theory3),
        ],
    )?;
    t.notes.push(
        "the paper (figure 11): failed lookups ≈ p without replication, i.e. only keys lost with their nodes"
            .into(),
    );
    t.notes.push(format!(
        "reads that failed although a replica was alive: {violations} ({})",
        if violations == 0 {
            "no key lost unless all of its holders failed, and no lookup failure besides"
        } else {
            "lookups failed although the key survived"
        }
    ));
    t.notes.push(format!("plot: {}", path.display()));
    Ok(t)
}
