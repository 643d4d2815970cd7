//! `appnet experiment search`: locating content before and with DHTs (deck 004). On simulated
//! overlays of 10^3–10^5 peers — the real Gnutella routing core of appnet-overlay in virtual
//! time, a Napster directory model, and appnet-chord's node core — it measures the messages one
//! search costs and the fraction of searches that find a file held by r peers, for the Napster
//! directory, Gnutella flooding at TTL 1..7, the two-tier ultrapeer overlay and Chord, prints
//! them next to the deck's claims and plots messages against success.

use super::plot::{Series, line_chart};
use super::{ExperimentError, Table};
use appnet_overlay::sim::{self, GnutellaSim, Outcome, Workload};
use std::path::PathBuf;

/// How big and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// Directory for the SVG plots (created if missing).
    pub out: PathBuf,
    /// 10^3 and 10^4 peers and fewer searches: under two minutes.
    pub quick: bool,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Average degree of the flat Gnutella overlay (the deck: "typically 4–8 neighbours").
pub const DEGREE: usize = 6;
/// Peers per ultrapeer in the two-tier overlay (one ultrapeer per 20 peers).
pub const PEERS_PER_ULTRAPEER: usize = 20;
/// Average degree of the ultrapeer mesh.
pub const UP_DEGREE: usize = 8;
/// Ultrapeers each leaf connects to.
pub const LEAF_LINKS: usize = 2;
/// Replication levels measured.
pub const REPLICAS: [usize; 3] = [1, 5, 25];
/// Distinct files shared.
pub const FILES: usize = 200;
/// Largest Chord ring simulated (finger tables of 10^5 nodes would need ~1 GB).
pub const CHORD_MAX: usize = 16_384;

/// One measured configuration.
#[derive(Debug, Clone)]
pub struct Point {
    /// Napster, flooding, ultrapeers or Chord.
    pub system: &'static str,
    /// Peers.
    pub n: usize,
    /// Replicas of each file.
    pub r: usize,
    /// TTL (Gnutella designs).
    pub ttl: Option<u8>,
    /// What happened.
    pub outcome: Outcome,
}

fn sizes(quick: bool) -> Vec<usize> {
    if quick { vec![1_000, 10_000] } else { vec![1_000, 10_000, 100_000] }
}

fn searches(quick: bool, n: usize) -> usize {
    match (quick, n) {
        (true, n) if n <= 1_000 => 200,
        (true, _) => 60,
        (false, n) if n <= 1_000 => 400,
        (false, n) if n <= 10_000 => 200,
        (false, _) => 30,
    }
}

/// Runs every configuration; `progress` hears about each step.
pub fn measure(opts: &Options, mut progress: impl FnMut(&str)) -> Vec<Point> {
    let mut points = Vec::new();
    for n in sizes(opts.quick) {
        let q = searches(opts.quick, n);
        for r in REPLICAS {
            let w = Workload { files: FILES, replicas: r, seed: opts.seed ^ ((n as u64) << 8) ^ r as u64 };
            progress(&format!("N = {n}, r = {r}: flooding, TTL 1..7"));
            let mut flat = GnutellaSim::flat(n, DEGREE, &w);
            for ttl in 1..=7u8 {
                let outcome = flat.run(q, ttl);
                points.push(Point { system: "flooding", n, r, ttl: Some(ttl), outcome });
            }
            drop(flat);
            progress(&format!("N = {n}, r = {r}: ultrapeers, TTL 1..7"));
            let bits = if n > 20_000 { 10 } else { 12 };
            let mut tiered =
                GnutellaSim::two_tier(n, n / PEERS_PER_ULTRAPEER, UP_DEGREE, LEAF_LINKS, bits, &w);
            for ttl in 1..=7u8 {
                let outcome = tiered.run(q, ttl);
                points.push(Point { system: "ultrapeers", n, r, ttl: Some(ttl), outcome });
            }
            drop(tiered);
            let (_, up) = sim::napster(n, &w, q, true);
            points.push(Point { system: "napster", n, r, ttl: None, outcome: up });
            let (_, down) = sim::napster(n, &w, q, false);
            points.push(Point { system: "napster, server down", n, r, ttl: None, outcome: down });
            if n <= CHORD_MAX {
                progress(&format!("N = {n}, r = {r}: Chord"));
                let outcome = sim::chord(n, &w, q);
                points.push(Point { system: "chord", n, r, ttl: None, outcome });
            }
        }
    }
    points
}

fn find<'a>(points: &'a [Point], system: &str, n: usize, r: usize, ttl: Option<u8>) -> Option<&'a Outcome> {
    points.iter().find(|p| p.system == system && p.n == n && p.r == r && p.ttl == ttl).map(|p| &p.outcome)
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// Query messages of a flood with TTL t in a d-regular tree: the origin sends d, every later
/// peer forwards to d − 1: d · Σ (d−1)^k for k < t. A random graph of mean degree d can exceed
/// it before the flood saturates (a neighbour's expected degree is above the mean), and falls
/// below it once messages meet peers that have already seen the query.
pub fn flood_bound(d: usize, ttl: u8) -> f64 {
    let d = d as f64;
    (0..ttl as i32).map(|k| d * (d - 1.0).powi(k)).sum()
}

/// The tables and the plots from measured points.
pub fn report(opts: &Options, points: &[Point]) -> Result<Vec<Table>, ExperimentError> {
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| ExperimentError::Write { path: opts.out.clone(), message: e.to_string() })?;
    let mut tables = Vec::new();
    let ns = sizes(opts.quick);
    for &n in &ns {
        for system in ["flooding", "ultrapeers"] {
            let title = if system == "flooding" {
                format!("Gnutella flooding, N = {n} peers, average degree {DEGREE}: per search")
            } else {
                format!(
                    "Two-tier (ultrapeers, KaZaA-style), N = {n}: {} ultrapeers (mesh degree {UP_DEGREE}), leaves on {LEAF_LINKS} each, QRP: per search",
                    n / PEERS_PER_ULTRAPEER
                )
            };
            let mut t = Table::new(
                &title,
                &[
                    "TTL",
                    "query msgs",
                    "+ hit msgs",
                    "found r=1",
                    "found r=5",
                    "found r=25",
                    "tree d·Σ(d−1)^k",
                ],
            );
            for ttl in 1..=7u8 {
                let Some(o1) = find(points, system, n, 1, Some(ttl)) else { continue };
                let f =
                    |r| find(points, system, n, r, Some(ttl)).map(|o| pct(o.success())).unwrap_or_default();
                let bound = if system == "flooding" {
                    format!("{:.0}", flood_bound(DEGREE, ttl))
                } else {
                    "-".into()
                };
                t.rows.push(vec![
                    ttl.to_string(),
                    format!("{:.0}", o1.query_msgs_per_query()),
                    format!("{:.1}", o1.hit_msgs as f64 / o1.queries.max(1) as f64),
                    f(1),
                    f(5),
                    f(25),
                    bound,
                ]);
            }
            tables.push(t);
        }
    }
    let mut t = Table::new(
        "Napster directory and Chord DHT: per search (r = 1: every file has a single copy)",
        &["N", "Napster msgs", "found", "server down", "Chord msgs", "found", "log2 N"],
    );
    for &n in &ns {
        let nap = find(points, "napster", n, 1, None);
        let down = find(points, "napster, server down", n, 1, None);
        let ch = find(points, "chord", n, 1, None);
        t.rows.push(vec![
            n.to_string(),
            nap.map(|o| format!("{:.0}", o.messages_per_query())).unwrap_or_default(),
            nap.map(|o| pct(o.success())).unwrap_or_default(),
            down.map(|o| pct(o.success())).unwrap_or_default(),
            ch.map(|o| format!("{:.1}", o.messages_per_query())).unwrap_or("not run".into()),
            ch.map(|o| pct(o.success())).unwrap_or_default(),
            format!("{:.1}", (n as f64).log2()),
        ]);
    }
    t.notes.push(format!(
        "Chord: appnet-chord's node core in its simulator, converged ring, iterative lookups; each RPC request and answer is a message; rings above {CHORD_MAX} nodes are not simulated."
    ));
    tables.push(t);
    tables.push(claims(&ns, points));
    let plot_n = *ns.last().expect("sizes");
    let mut series = Vec::new();
    for (system, label) in [("flooding", "flooding"), ("ultrapeers", "ultrapeers")] {
        for r in [1, 25] {
            let pts: Vec<(f64, f64)> = (1..=7u8)
                .filter_map(|ttl| find(points, system, plot_n, r, Some(ttl)))
                .map(|o| (o.messages_per_query().max(1.0).log10(), o.success()))
                .collect();
            series.push(Series::measured(&format!("{label} r={r} (TTL 1..7)"), pts));
        }
    }
    if let Some(o) = find(points, "napster", plot_n, 1, None) {
        series.push(Series::measured("Napster r=1", vec![(o.messages_per_query().log10(), o.success())]));
    }
    let chord_n = if plot_n <= CHORD_MAX {
        plot_n
    } else {
        ns.iter().copied().filter(|&n| n <= CHORD_MAX).max().unwrap_or(0)
    };
    if let Some(o) = find(points, "chord", chord_n, 1, None) {
        series.push(Series::measured(
            &format!("Chord r=1 (N={chord_n})"),
            vec![(o.messages_per_query().log10(), o.success())],
        ));
    }
    let p1 = opts.out.join("search-messages-vs-success.svg");
    line_chart(
        &p1,
        &format!("Search: messages vs success, N = {plot_n}"),
        "log10(messages per search)",
        "fraction of searches that find the file",
        &series,
    )?;
    let mut growth = Vec::new();
    for (system, ttl, label) in [
        ("flooding", Some(7), "flooding TTL 7"),
        ("ultrapeers", Some(3), "ultrapeers TTL 3"),
        ("napster", None, "Napster"),
        ("chord", None, "Chord"),
    ] {
        let pts: Vec<(f64, f64)> = ns
            .iter()
            .filter_map(|&n| {
                find(points, system, n, 1, ttl)
                    .map(|o| ((n as f64).log10(), o.messages_per_query().max(1.0).log10()))
            })
            .collect();
        growth.push(Series::measured(label, pts));
    }
    let p2 = opts.out.join("search-messages-vs-n.svg");
    line_chart(
        &p2,
        "Search cost vs network size (r = 1)",
        "log10(N peers)",
        "log10(messages per search)",
        &growth,
    )?;
    if let Some(last) = tables.last_mut() {
        last.notes.push(format!("plots: {} and {}", p1.display(), p2.display()));
    }
    Ok(tables)
}

/// The deck's claims next to the numbers measured.
fn claims(ns: &[usize], points: &[Point]) -> Table {
    let n = *ns.last().expect("sizes");
    let mut t =
        Table::new(&format!("The deck's claims, measured (N = {n} unless noted)"), &["claim", "measured"]);
    if let (Some(nap), Some(down)) =
        (find(points, "napster", n, 1, None), find(points, "napster, server down", n, 1, None))
    {
        t.rows.push(vec![
            "Napster: a search is one request to the directory".into(),
            format!(
                "{:.0} messages (request + answer), found {}",
                nap.messages_per_query(),
                pct(nap.success())
            ),
        ]);
        t.rows.push(vec![
            "Napster: the directory is a single point of failure".into(),
            format!("server down: found {}", pct(down.success())),
        ]);
    }
    if let (Some(f7), Some(f3)) =
        (find(points, "flooding", n, 1, Some(7)), find(points, "flooding", n, 1, Some(3)))
    {
        t.rows.push(vec![
            "Flooding is expensive".into(),
            format!(
                "TTL 7: {:.0} messages per search ({:.1} per peer); TTL 3: {:.0}",
                f7.messages_per_query(),
                f7.messages_per_query() / n as f64,
                f3.messages_per_query()
            ),
        ]);
        t.rows.push(vec![
            "Limited-scope flooding gives no guarantee".into(),
            format!("r = 1: found {} at TTL 3, {} at TTL 7", pct(f3.success()), pct(f7.success())),
        ]);
    }
    // The fair comparison: the cheapest TTL at which each design finds a single copy 90% of
    // the time.
    let cheapest = |system: &str| {
        (1..=7u8)
            .filter_map(|ttl| find(points, system, n, 1, Some(ttl)).map(|o| (ttl, o)))
            .find(|(_, o)| o.success() >= 0.9)
    };
    let flood7 = find(points, "flooding", n, 1, Some(7));
    let text = match (cheapest("ultrapeers"), cheapest("flooding"), flood7) {
        (Some((tu, u)), Some((tf, f)), _) => Some(format!(
            "to find a single copy ≥ 90% of the time: {:.0} messages (TTL {tu}) vs {:.0} flooding (TTL {tf}), {:.1}x fewer",
            u.messages_per_query(),
            f.messages_per_query(),
            f.messages_per_query() / u.messages_per_query().max(1.0),
        )),
        (Some((tu, u)), None, Some(f)) => Some(format!(
            "a single copy is found ≥ 90% of the time with {:.0} messages (TTL {tu}); flooding never gets there: TTL 7 costs {:.0} and finds {}",
            u.messages_per_query(),
            f.messages_per_query(),
            pct(f.success()),
        )),
        _ => None,
    };
    if let Some(text) = text {
        t.rows.push(vec!["Group leaders (ultrapeers) cut the flood to the top tier".into(), text]);
    }
    let chord: Vec<(usize, &Outcome)> =
        ns.iter().filter_map(|&n| find(points, "chord", n, 1, None).map(|o| (n, o))).collect();
    if !chord.is_empty() {
        let s = chord
            .iter()
            .map(|(n, o)| {
                format!(
                    "N={n}: {:.1} msgs ({:.2}·log2 N), found {}",
                    o.messages_per_query(),
                    o.messages_per_query() / (*n as f64).log2(),
                    pct(o.success())
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        t.rows.push(vec!["The DHT finds any key in O(log N) messages".into(), s]);
    }
    t
}

/// Measures and reports.
pub fn run(opts: &Options, progress: impl FnMut(&str)) -> Result<Vec<Table>, ExperimentError> {
    let points = measure(opts, progress);
    report(opts, &points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_and_report_from_points() {
        assert_eq!(flood_bound(4, 1), 4.0);
        assert_eq!(flood_bound(4, 2), 16.0);
        let dir = appnet_netkit::harness::TempDir::new("search-experiment");
        let opts = Options { out: dir.path().to_path_buf(), quick: true, seed: 1 };
        // A small real measurement fed to the report.
        let w = Workload { files: 20, replicas: 1, seed: 3 };
        let mut points = Vec::new();
        let mut flat = GnutellaSim::flat(200, DEGREE, &w);
        let mut tiered = GnutellaSim::two_tier(200, 10, UP_DEGREE, LEAF_LINKS, 10, &w);
        for ttl in 1..=7u8 {
            points.push(Point {
                system: "flooding",
                n: 10_000,
                r: 1,
                ttl: Some(ttl),
                outcome: flat.run(20, ttl),
            });
            points.push(Point {
                system: "ultrapeers",
                n: 10_000,
                r: 1,
                ttl: Some(ttl),
                outcome: tiered.run(20, ttl),
            });
        }
        points.push(Point {
            system: "napster",
            n: 10_000,
            r: 1,
            ttl: None,
            outcome: sim::napster(200, &w, 20, true).1,
        });
        points.push(Point {
            system: "napster, server down",
            n: 10_000,
            r: 1,
            ttl: None,
            outcome: sim::napster(200, &w, 20, false).1,
        });
        points.push(Point { system: "chord", n: 10_000, r: 1, ttl: None, outcome: sim::chord(64, &w, 20) });
        let tables = report(&opts, &points).unwrap();
        let text: String = tables.iter().map(|t| t.to_string()).collect();
        assert!(text.contains("single point of failure"), "{text}");
        assert!(text.contains("O(log N)"));
        assert!(text.contains("Group leaders"), "the ultrapeer comparison row: {text}");
        assert!(std::fs::metadata(dir.path().join("search-messages-vs-success.svg")).unwrap().len() > 1000);
        assert!(std::fs::metadata(dir.path().join("search-messages-vs-n.svg")).unwrap().len() > 1000);
    }
}
