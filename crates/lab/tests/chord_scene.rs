//! The tour's Chord scene on the lab's real 4-bit ring: key 1110 answered hop by hop with and
//! without fingers, peer 5 killed and repaired around, peer 13 joining.

mod common;

use appnet_lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chord_scene_answers_key_14_survives_peer_5_and_takes_in_peer_13() {
    let dir = appnet_netkit::harness::TempDir::new("lab-chord");
    let mut topology = common::topology();
    // Each node picks a free port on its own address, so parallel tests do not collide.
    topology.chord.as_mut().expect("the lab has a ring").port = 0;
    let mut lab = Lab::start(topology, &dir).await.expect("lab starts");
    assert!(lab.directory().contains("chord-peer-12"), "{}", lab.directory());

    let mut printed = Vec::new();
    let result = appnet_lab::chord_scene::run(&mut lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    let facts = result.unwrap_or_else(|e| panic!("chord scene failed: {e}\n{text}"));
    lab.stop().await;

    assert_eq!(facts.asker, 3);
    // Successor pointers only: 3, 4, 5, 8, 10, 12 each pass it on; 12's successor 15 owns it.
    assert_eq!(facts.successor_path, vec![3, 4, 5, 8, 10, 12], "{text}");
    // With fingers the query skips ahead and reaches 12 (which knows 14's successor) sooner;
    // with ideal fingers 3 jumps straight to its finger 12 (successor of 3 + 8 = 11).
    assert_eq!(facts.finger_path.first(), Some(&3), "{text}");
    assert_eq!(facts.finger_path.last(), Some(&12), "{text}");
    assert!(facts.finger_path.len() < facts.successor_path.len(), "{text}");
    assert!(facts.fingers_ideal, "every finger is the successor of n + 2^k once the ring settles\n{text}");
    assert_eq!(facts.finger_path, vec![3, 12], "{text}");
    assert_eq!(facts.owner, vec![15, 15], "{text}");
    // Peer 4 made 8 its successor and took 8's successor 10 as its second.
    assert_eq!(facts.killed, 5);
    assert_eq!(facts.repaired_succs, vec![8, 10], "{text}");
    // After 13 joins, 14 still belongs to 15 and 13 to 13.
    assert_eq!(facts.joined, 13);
    assert_eq!(facts.owners_after_join, vec![(14, 15), (13, 13)], "{text}");
    assert!(text.contains("key 14 lies in (12, 15]"), "{text}");
    println!("{text}");
}
