//! The tour's BitTorrent scene on real sessions: Alice announces, gets the peer list, receives
//! bitfields, picks rarest first after her first piece, is unchoked and unchokes in rounds,
//! uploads while downloading, and finishes.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_joins_the_torrent_picks_rarest_first_and_uploads_while_downloading() {
    let dir = appnet_netkit::harness::TempDir::new("lab-torrent");
    let mut topology = common::topology();
    topology.chord = None;
    let swarm = topology.swarm.as_mut().expect("the lab has a swarm");
    // Free ports, so parallel tests do not collide.
    swarm.port = 0;
    swarm.tracker_port = 0;
    let lab = Lab::start(topology, &dir).await.expect("lab starts");

    let mut printed = Vec::new();
    let result = appnet_lab::torrent_scene::run(&lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    lab.stop().await;
    let facts = result.unwrap_or_else(|e| panic!("torrent scene failed: {e}\n{text}"));
    println!("{text}");

    assert!(facts.complete, "{text}");
    // The tracker listed the seeder and both peers.
    let mut listed = facts.listed.clone();
    listed.sort();
    assert_eq!(listed, vec!["peer1", "peer2", "seeder"], "{text}");
    // Alice got a bitfield (or HAVE ALL) from everyone; the seeder's is full.
    assert_eq!(facts.bitfields.len(), 3, "{text}");
    assert!(facts.bitfields.contains(&("seeder".to_string(), 24)), "{text}");
    // Random first pieces, then, once she has one, the rarest: most picks hold the fewest copies.
    assert!(facts.random_picks > 0, "{text}");
    let later = &facts.first_picks;
    assert!(!later.is_empty(), "{text}");
    let rarest = later.iter().filter(|(_, held, fewest)| held == fewest).count();
    assert!(rarest * 2 >= later.len(), "{text}");
    // Alice unchoked peers, and uploaded while she was still downloading.
    assert!(!facts.unchokes.is_empty(), "{text}");
    assert!(facts.uploaded > 0 && facts.uploaded_while_downloading > 0, "{text}");
}
