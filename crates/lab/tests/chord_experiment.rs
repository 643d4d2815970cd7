//! The Chord experiments' runs at scale on appnet-chord's simulator: no key is lost while a
//! replica lives, lookups stay correct under churn, and paths grow like ½·log2 N.

use appnet_lab::experiment::chord::{churn_run, failure_run, measure_paths};

#[test]
fn no_key_is_lost_while_a_replica_lives() {
    let r = failure_run(400, 4000, 400, 0.3, 3, 11);
    assert_eq!(r.lost_with_live_replica, 0, "{r:?}");
    assert_eq!(r.failed, r.all_replicas_dead, "{r:?}");
    // Without replication, exactly the keys whose single holder died are lost.
    let r = failure_run(400, 4000, 400, 0.3, 1, 12);
    assert_eq!(r.lost_with_live_replica, 0, "{r:?}");
    let lost = r.failed as f64 / r.reads as f64;
    assert!((0.2..0.4).contains(&lost), "lost {lost} with p = 0.3: {r:?}");
}

#[test]
fn lookups_stay_correct_under_moderate_churn() {
    let r = churn_run(100, 500, 600, 1.0, 5);
    assert!(r.joins > 5 && r.failures > 5, "{r:?}");
    assert!(r.failed_lookups * 20 <= r.lookups, "more than 5% failed lookups: {r:?}");
    assert!(r.failed_reads * 50 <= r.lookups, "more than 2% failed reads: {r:?}");
}

#[test]
fn path_length_grows_like_half_log2_n() {
    let mut hops = measure_paths(1024, 500, 3);
    hops.sort_by(f64::total_cmp);
    let mean = hops.iter().sum::<f64>() / hops.len() as f64;
    assert!((3.5..6.0).contains(&mean), "mean {mean} hops for 1024 nodes (½·log2 N = 5)");
}
