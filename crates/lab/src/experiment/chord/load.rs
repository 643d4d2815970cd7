//! Load balance (the paper's figures 8 and 9): keys per node for 10^4 nodes and 10^5 … 10^6
//! keys, then the spread with 1, 2, 5, 10, 20 virtual nodes per real node. Placement is pure
//! consistent hashing (successor of SHA-1(key)), so it is computed directly.

use super::Options;
use crate::experiment::plot::{Series, line_chart};
use crate::experiment::{ExperimentError, Table, mean, quantile};
use appnet_chord::sim::Rng;
use sha1::{Digest, Sha1};

/// The top 64 bits of SHA-1(key-i): the key's position on the circle.
fn key_positions(keys: usize) -> Vec<u64> {
    (0..keys)
        .map(|i| {
            let d = Sha1::digest(format!("key-{i}").as_bytes());
            u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
        })
        .collect()
}

/// Keys per real node when each of `nodes` real nodes has `virt` random positions.
pub fn keys_per_node(nodes: usize, virt: usize, keys: &[u64], rng: &mut Rng) -> Vec<f64> {
    let mut ring: Vec<(u64, usize)> = (0..nodes * virt).map(|i| (rng.next_u64(), i / virt)).collect();
    ring.sort_unstable();
    let mut load = vec![0u64; nodes];
    for &k in keys {
        let pos = ring.partition_point(|&(id, _)| id < k);
        load[ring[pos % ring.len()].1] += 1;
    }
    let mut v: Vec<f64> = load.into_iter().map(|x| x as f64).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Both load-balance tables.
pub fn load_balance(opts: &Options) -> Result<Vec<Table>, ExperimentError> {
    let nodes = 10_000;
    let steps: Vec<usize> =
        if opts.quick { vec![100_000, 500_000] } else { (1..=10).map(|i| i * 100_000).collect() };
    let all_keys = key_positions(*steps.last().unwrap_or(&100_000));
    let mut rng = Rng::new(opts.seed ^ 0x10ad);

    let mut t1 = Table::new(
        "Keys per node, 10^4 nodes, no virtual nodes",
        &["keys", "mean", "1st pct", "99th pct", "99th / mean", "paper 99th / mean"],
    );
    let (mut m, mut p1, mut p99) = (Vec::new(), Vec::new(), Vec::new());
    for &k in &steps {
        let load = keys_per_node(nodes, 1, &all_keys[..k], &mut rng);
        let (mu, lo, hi) = (mean(&load), quantile(&load, 0.01), quantile(&load, 0.99));
        t1.rows.push(vec![
            k.to_string(),
            format!("{mu:.0}"),
            format!("{lo:.0}"),
            format!("{hi:.0}"),
            format!("{:.2}", hi / mu),
            "≈ 4.8 (ln 100 = 4.6)".into(),
        ]);
        m.push((k as f64 / 1e5, mu));
        p1.push((k as f64 / 1e5, lo));
        p99.push((k as f64 / 1e5, hi));
    }
    let path1 = opts.out.join("chord-load.svg");
    line_chart(
        &path1,
        "Keys per node, 10^4 nodes",
        "keys (×10^5)",
        "keys per node",
        &[
            Series::measured("mean", m),
            Series::measured("1st percentile", p1),
            Series::measured("99th percentile", p99),
        ],
    )?;
    t1.notes.push(
        "the paper (figure 8): the 99th percentile is about 4.8× the mean; some nodes get no keys".into(),
    );
    t1.notes.push(format!("plot: {}", path1.display()));

    let keys = if opts.quick { 200_000 } else { 1_000_000 };
    let mut t2 = Table::new(
        &format!("Virtual nodes: 10^4 real nodes, {keys} keys"),
        &["virtual per real", "1st pct / mean", "99th pct / mean", "paper 99th / mean"],
    );
    let (mut lo_s, mut hi_s) = (Vec::new(), Vec::new());
    for v in [1usize, 2, 5, 10, 20] {
        let load = keys_per_node(nodes, v, &all_keys[..keys.min(all_keys.len())], &mut rng);
        let mu = mean(&load);
        let (lo, hi) = (quantile(&load, 0.01) / mu, quantile(&load, 0.99) / mu);
        let paper = match v {
            1 => "4.8",
            20 => "1.6",
            _ => "-",
        };
        t2.rows.push(vec![v.to_string(), format!("{lo:.2}"), format!("{hi:.2}"), paper.into()]);
        lo_s.push((v as f64, lo));
        hi_s.push((v as f64, hi));
    }
    let path2 = opts.out.join("chord-virtual-nodes.svg");
    line_chart(
        &path2,
        "Load spread vs virtual nodes per real node",
        "virtual nodes per real node",
        "keys per node / mean",
        &[Series::measured("99th percentile / mean", hi_s), Series::measured("1st percentile / mean", lo_s)],
    )?;
    t2.notes
        .push("the paper (figure 9): 99th percentile 4.8× the mean with 1 id per node, 1.6× with 20".into());
    t2.notes.push(format!("plot: {}", path2.display()));
    Ok(vec![t1, t2])
}
