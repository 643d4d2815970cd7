//! The tour's "Hey Jude" scene on the lab's peers: Napster's three steps, flooding that reaches
//! all 12 peers with Bob's QueryHit coming back along the reverse path, the two-tier overlay
//! finding the same file with fewer Query messages, and a parallel download from two peers.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hey_jude_is_found_by_the_directory_by_flooding_and_by_ultrapeers() {
    let dir = appnet_netkit::harness::TempDir::new("lab-overlay");
    let mut topology = common::topology();
    // Only what the scene needs (other services' fixed ports could clash with other tests).
    topology.chord = None;
    topology.swarm = None;
    topology.cdn = None;
    topology.caches.clear();
    topology.ftps.clear();
    topology.mails.clear();
    topology.lbs.clear();
    let spec = topology.overlay.as_mut().expect("the default lab has an overlay");
    (spec.napster_port, spec.share_port, spec.gnutella_port, spec.flat_port) = (0, 0, 0, 0);
    let lab = Lab::start(topology, &dir).await.expect("lab starts");
    let directory = lab.directory();
    assert!(
        directory.contains("Napster directory") && directory.contains("Gnutella ultrapeer"),
        "{directory}"
    );

    let mut printed = Vec::new();
    let result = appnet_lab::overlay_scene::run(&lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    let facts = result.unwrap_or_else(|e| panic!("overlay scene failed: {e}\n{text}"));
    let run = lab.overlay.clone().unwrap();
    lab.stop().await;

    assert_eq!(facts.napster_hits.len(), 2, "Bob and Carol\n{text}");
    assert_eq!(facts.flat_reached.len(), 12, "{text}");
    assert_eq!(facts.flat_reached[&run.flat[11]], 0, "Alice's own servent got it first\n{text}");
    assert!(facts.reverse_path.len() >= 2 && facts.reverse_path[0] == run.flat[7], "{text}");
    assert!(facts.tiered_hits.contains(&run.tiered[7]), "{text}");
    assert!(facts.tiered_queries < facts.flat_queries, "ultrapeers save messages\n{text}");
    assert_eq!(facts.download_from.len(), 2, "ranges from Bob and Carol\n{text}");
    println!("{text}");
}
