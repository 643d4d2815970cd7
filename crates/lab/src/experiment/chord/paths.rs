//! Path length vs network size (the paper's figure 10): N = 2^k nodes, lookups of random keys
//! from random nodes, hops counted by the node core. The paper finds mean ≈ ½·log2 N.

use super::Options;
use crate::experiment::plot::{Series, line_chart};
use crate::experiment::{ExperimentError, Table, mean, quantile};
use appnet_chord::node::{Event, Params};
use appnet_chord::sim::{Sim, SimConfig};

/// Identifier width used in the simulator: wide enough that ids never collide, narrow enough to
/// keep 16 384 finger tables small.
pub(super) const SIM_BITS: u8 = 64;

/// Hops of `lookups` random lookups in a converged ring of `n` nodes.
pub fn measure_paths(n: usize, lookups: usize, seed: u64) -> Vec<f64> {
    let params = Params {
        bits: SIM_BITS,
        successors: 3,
        replicas: 1,
        // Maintenance is irrelevant in a converged ring; keep it out of the way.
        stabilize_ms: 600_000,
        fix_fingers_ms: 600_000,
        check_predecessor_ms: 600_000,
        // Garbage collection off: the published figures were measured without it.
        gc_ms: 0,
        ..Params::default()
    };
    let mut sim = Sim::new(params, SimConfig { seed, ..SimConfig::default() });
    let ids: Vec<_> = (0..n).map(|_| sim.rng.id(SIM_BITS)).collect();
    let nodes = sim.build_converged(&ids);
    let mut hops = Vec::with_capacity(lookups);
    let batch = 1000;
    let mut left = lookups;
    while left > 0 {
        let now = left.min(batch);
        for _ in 0..now {
            let from = nodes[sim.rng.below(nodes.len())];
            let target = sim.rng.id(SIM_BITS);
            sim.lookup(from, target);
        }
        left -= now;
        let t = sim.now + 60_000;
        sim.run_until(t);
        for (_, ev) in sim.take_events() {
            if let Event::LookupDone { outcome: Some(o), .. } = ev {
                hops.push(o.hops as f64);
            }
        }
    }
    hops
}

/// The path-length experiment over N = 2^3 … 2^14 (2^3 … 2^12 when quick).
pub fn path_length(opts: &Options) -> Result<Table, ExperimentError> {
    let max_k = if opts.quick { 12 } else { 14 };
    let lookups = if opts.quick { 1000 } else { 4000 };
    let mut t = Table::new(
        "Path length vs network size (simulator, converged ring, random keys from random nodes)",
        &["N", "lookups", "mean hops", "1st pct", "99th pct", "paper: ½·log2 N", "mean / paper"],
    );
    let (mut m, mut p1, mut p99, mut theory) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut worst, mut worst_large): (f64, f64) = (0.0, 0.0);
    for k in 3..=max_k {
        let n = 1usize << k;
        let mut hops = measure_paths(n, lookups, opts.seed ^ k as u64);
        hops.sort_by(f64::total_cmp);
        let (mu, lo, hi) = (mean(&hops), quantile(&hops, 0.01), quantile(&hops, 0.99));
        let half = 0.5 * k as f64;
        worst = worst.max((mu / half - 1.0).abs());
        if k >= 6 {
            worst_large = worst_large.max((mu / half - 1.0).abs());
        }
        t.rows.push(vec![
            format!("2^{k}"),
            hops.len().to_string(),
            format!("{mu:.2}"),
            format!("{lo:.0}"),
            format!("{hi:.0}"),
            format!("{half:.1}"),
            format!("{:.2}", mu / half),
        ]);
        m.push((k as f64, mu));
        p1.push((k as f64, lo));
        p99.push((k as f64, hi));
        theory.push((k as f64, half));
    }
    let path = opts.out.join("chord-path-length.svg");
    line_chart(
        &path,
        "Chord path length vs number of nodes",
        "log2 N",
        "hops",
        &[
            Series::measured("mean", m),
            Series::measured("1st percentile", p1),
            Series::measured("99th percentile", p99),
            Series::theory("paper: ½·log2 N", theory),
        ],
    )?;
    t.notes.push(format!(
        "mean vs ½·log2 N: within {:.0}% for N ≥ 64, {:.0}% over all N (the paper's figure 10: about ½·log2 N)",
        worst_large * 100.0,
        worst * 100.0
    ));
    t.notes.push(
        "hops = FindSuccessor answers until the key's predecessor names the successor; reaching the successor itself is not counted".into(),
    );
    t.notes.push(format!("plot: {}", path.display()));
    Ok(t)
}
