//! Lookups during churn (the paper's figure 13): a 500-node ring stabilizing every 15–45 s
//! while nodes join and fail as Poisson processes; one read per second from a random node.
//! A lookup fails when it does not end at the key's current successor (or gives up); a read
//! fails when no replica returns the value.

use super::Options;
use super::paths::SIM_BITS;
use crate::experiment::plot::{Series, line_chart};
use crate::experiment::{ExperimentError, Table};
use appnet_chord::id::Id;
use appnet_chord::node::{Event, Params};
use appnet_chord::sim::{Sim, SimConfig, successor_in};
use std::collections::HashMap;

/// Outcome of one churn run.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChurnRun {
    /// Lookups (reads) issued.
    pub lookups: usize,
    /// Lookups that did not end at the key's current successor.
    pub failed_lookups: usize,
    /// Reads that returned no value.
    pub failed_reads: usize,
    /// RPC timeouts per lookup.
    pub timeouts: f64,
    /// Joins and failures that happened.
    pub joins: usize,
    /// Failures that happened.
    pub failures: usize,
}

const STABILIZE_MS: u64 = 30_000;

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

/// One run at `per_period` joins and `per_period` failures per mean stabilization period.
pub fn churn_run(n: usize, keys: usize, seconds: u64, per_period: f64, seed: u64) -> ChurnRun {
    let params = Params {
        bits: SIM_BITS,
        successors: 2 * (n as f64).log2().ceil() as usize,
        replicas: 3,
        stabilize_ms: STABILIZE_MS,
        fix_fingers_ms: 3_000,
        check_predecessor_ms: STABILIZE_MS,
        // Garbage collection off: the published figures were measured without it.
        gc_ms: 0,
        ..Params::default()
    };
    let mut sim = Sim::new(params, SimConfig { seed, ..SimConfig::default() });
    let ids: Vec<Id> = (0..n).map(|_| sim.rng.id(SIM_BITS)).collect();
    let idx = sim.build_converged(&ids);
    let mut ring: Vec<(Id, usize)> = ids.iter().copied().zip(idx.iter().copied()).collect();
    ring.sort();
    for i in 0..keys {
        let kid = Id::hash(&key(i), SIM_BITS);
        let pos = ring.partition_point(|(id, _)| *id < kid);
        for j in 0..3 {
            sim.nodes[ring[(pos + j) % ring.len()].1].node.store_mut().insert(key(i), b"v".to_vec());
        }
    }
    let rate = per_period / (STABILIZE_MS as f64 / 1000.0); // events per second, each kind
    let mut next_join = sim.rng.exp(1.0 / rate);
    let mut next_fail = sim.rng.exp(1.0 / rate);
    let mut run = ChurnRun::default();
    let mut asked: HashMap<(usize, u64), usize> = HashMap::new();
    let mut timeouts = 0u64;
    for sec in 1..=seconds {
        let now_s = sec as f64;
        while next_join <= now_s {
            let live = sim.live();
            let via = live[sim.rng.below(live.len())];
            let id = sim.rng.id(SIM_BITS);
            sim.join(id, via);
            run.joins += 1;
            next_join += sim.rng.exp(1.0 / rate);
        }
        while next_fail <= now_s {
            let live = sim.live();
            if live.len() > 8 {
                let victim = live[sim.rng.below(live.len())];
                sim.kill(victim);
                run.failures += 1;
            }
            next_fail += sim.rng.exp(1.0 / rate);
        }
        let live = sim.live();
        let from = live[sim.rng.below(live.len())];
        let k = sim.rng.below(keys);
        let op = sim.get(from, key(k));
        asked.insert((from, op), k);
        sim.run_until(sec * 1000);
        let mut oracle: Option<Vec<appnet_chord::wire::NodeRef>> = None;
        for (node, ev) in sim.take_events() {
            if let Event::GetDone { op, value, outcome } = ev {
                let Some(k) = asked.remove(&(node, op)) else { continue };
                run.lookups += 1;
                let ring = oracle.get_or_insert_with(|| sim.live_ring());
                let want = successor_in(ring, &Id::hash(&key(k), SIM_BITS)).id;
                match outcome {
                    Some(o) => {
                        timeouts += o.timeouts as u64;
                        if o.succs.first().map(|s| s.id) != Some(want) {
                            run.failed_lookups += 1;
                        }
                    }
                    None => run.failed_lookups += 1,
                }
                if value.is_none() {
                    run.failed_reads += 1;
                }
            }
        }
    }
    run.timeouts = timeouts as f64 / run.lookups.max(1) as f64;
    run
}

/// The churn table over rates from one join and one failure per 3 stabilization periods to 3
/// of each per period.
pub fn churn(opts: &Options) -> Result<Table, ExperimentError> {
    let (n, keys, seconds) = if opts.quick { (200, 2_000, 1_200) } else { (500, 5_000, 3_600) };
    let mut t = Table::new(
        &format!(
            "Churn: {n} nodes, stabilize every 15-45 s, one read per second for {seconds} s, 3 replicas"
        ),
        &[
            "k per period",
            "joins",
            "failures",
            "lookups",
            "failed lookups",
            "band k/100",
            "failed reads",
            "timeouts/lookup",
        ],
    );
    let (mut lk, mut rd, mut band) = (Vec::new(), Vec::new(), Vec::new());
    for (i, k) in [1.0 / 3.0, 0.5, 1.0, 2.0, 3.0].into_iter().enumerate() {
        let run = churn_run(n, keys, seconds, k, opts.seed ^ (0xc4 + i as u64));
        let fl = run.failed_lookups as f64 / run.lookups.max(1) as f64;
        let fr = run.failed_reads as f64 / run.lookups.max(1) as f64;
        t.rows.push(vec![
            format!("{k:.2}"),
            run.joins.to_string(),
            run.failures.to_string(),
            run.lookups.to_string(),
            format!("{fl:.4}"),
            format!("{:.4}", k / 100.0),
            format!("{fr:.4}"),
            format!("{:.3}", run.timeouts),
        ]);
        lk.push((k, fl));
        rd.push((k, fr));
        band.push((k, k / 100.0));
    }
    let path = opts.out.join("chord-churn.svg");
    line_chart(
        &path,
        "Lookups during churn",
        "joins and failures per stabilization period (k)",
        "fraction",
        &[
            Series::measured("failed lookups", lk),
            Series::measured("failed reads", rd),
            Series::theory("k/100", band),
        ],
    )?;
    t.notes.push("k = joins (and, separately, failures) per mean stabilization period of 30 s; the paper's figure 13 reports failed lookups of the order of k/100".into());
    t.notes.push(format!("plot: {}", path.display()));
    Ok(t)
}
