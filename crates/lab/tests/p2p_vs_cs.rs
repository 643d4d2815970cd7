//! `appnet experiment p2p-vs-cs` at a small scale: real swarms on loopback, every measured
//! time at or above its textbook bound, and the plot written by the shared chart code.

use appnet_lab::experiment::p2p_vs_cs::{Options, run};
use appnet_netkit::harness::TempDir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_swarms_meet_their_bounds_and_the_plot_is_written() {
    let out = TempDir::new("p2p-vs-cs");
    let opts = Options {
        file_size: 256 << 10,
        u: 2 << 20,
        ns: vec![1, 3],
        out: out.path().to_path_buf(),
        ..Options::default()
    };
    let report = tokio::time::timeout(std::time::Duration::from_secs(120), run(opts, |_| {}))
        .await
        .expect("the experiment finishes")
        .expect("the experiment runs");
    assert_eq!(report.rows.iter().map(|r| r.n).collect::<Vec<_>>(), vec![1, 3]);
    for r in &report.rows {
        // Nothing beats the bound (a little slack for timer granularity).
        assert!(r.cs >= r.cs_bound * 0.95, "client-server {} under its bound {}", r.cs, r.cs_bound);
        assert!(r.p2p >= r.p2p_bound * 0.95, "P2P {} under its bound {}", r.p2p, r.p2p_bound);
    }
    let svg = std::fs::read_to_string(&report.svg).expect("the plot exists");
    assert!(svg.contains("<svg") && svg.contains("P2P measured"), "an SVG with the series legend");
}
