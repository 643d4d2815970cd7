//! The textbook's Chord examples, run through the real node core in the simulator: rings are
//! built by joins and stabilization (not installed), then asked who is responsible for a key.

use appnet_chord::Id;
use appnet_chord::node::{Event, Params};
use appnet_chord::sim::{Sim, SimConfig};

fn params(bits: u8, r: usize) -> Params {
    Params {
        bits,
        successors: r,
        replicas: r.min(3),
        stabilize_ms: 100,
        fix_fingers_ms: 20,
        check_predecessor_ms: 100,
        ..Params::default()
    }
}

/// Builds the ring by having each node join through the first, then lets it stabilize.
fn ring(ids: &[u64], bits: u8, r: usize) -> Sim {
    let mut sim = Sim::new(
        params(bits, r),
        SimConfig { mean_latency_ms: 5.0, max_latency_ms: 20, ..SimConfig::default() },
    );
    sim.add_node(Id::from_u64(ids[0]));
    for &id in &ids[1..] {
        sim.join(Id::from_u64(id), 0);
        let t = sim.now + 300;
        sim.run_until(t);
    }
    let t = sim.now + 20_000;
    sim.run_until(t);
    sim
}

/// Asks every node of the ring who is responsible for `key`, iteratively and recursively.
fn responsible(sim: &mut Sim, key: u64) -> Vec<u64> {
    let n = sim.nodes.len();
    for i in 0..n {
        if sim.nodes[i].alive {
            sim.lookup(i, Id::from_u64(key));
            sim.lookup_recursive(i, Id::from_u64(key));
        }
    }
    let t = sim.now + 5_000;
    sim.run_until(t);
    let mut answers = Vec::new();
    for (_, ev) in sim.take_events() {
        if let Event::LookupDone { outcome, .. } = ev {
            answers.push(outcome.expect("lookup finished").succs[0].id.low_u64());
        }
    }
    answers
}

fn successors_of(sim: &Sim, id: u64) -> Vec<u64> {
    let n = sim.nodes.iter().find(|n| n.node.me().id == Id::from_u64(id)).expect("node");
    n.node.routing().succs.iter().map(|s| s.id.low_u64()).collect()
}

#[test]
fn four_bit_ring_key_1110_is_at_15() {
    let mut sim = ring(&[1, 3, 4, 5, 8, 10, 12, 15], 4, 2);
    let answers = responsible(&mut sim, 0b1110);
    assert_eq!(answers.len(), 16);
    assert!(answers.iter().all(|&a| a == 15), "{answers:?}");
    // Each peer knows its two successors.
    assert_eq!(successors_of(&sim, 4), vec![5, 8]);
    assert_eq!(successors_of(&sim, 15), vec![1, 3]);
}

#[test]
fn lecture_ring_keys_13_and_15() {
    let mut sim = ring(&[1, 3, 4, 5, 8, 10, 12, 14], 4, 2);
    assert!(responsible(&mut sim, 13).iter().all(|&a| a == 14));
    assert!(responsible(&mut sim, 15).iter().all(|&a| a == 1));
}

#[test]
fn six_bit_ring() {
    let mut sim = ring(&[1, 12, 13, 25, 32, 40, 48, 60], 6, 3);
    assert!(responsible(&mut sim, 51).iter().all(|&a| a == 60));
    assert!(responsible(&mut sim, 60).iter().all(|&a| a == 60));
    assert!(responsible(&mut sim, 61).iter().all(|&a| a == 1));
    // Node 1's fingers: successors of 2, 3, 5, 9, 17, 33.
    let n1 = sim.nodes.iter().find(|n| n.node.me().id == Id::from_u64(1)).unwrap();
    let fingers: Vec<u64> = n1.node.routing().fingers.iter().map(|f| f.unwrap().id.low_u64()).collect();
    assert_eq!(fingers, vec![12, 12, 12, 12, 25, 40]);
}

#[test]
fn peer_5_leaves_abruptly_and_4_repairs() {
    let mut sim = ring(&[1, 3, 4, 5, 8, 10, 12, 15], 4, 2);
    let five = sim.nodes.iter().position(|n| n.node.me().id == Id::from_u64(5)).unwrap();
    sim.kill(five);
    let t = sim.now + 5_000;
    sim.run_until(t);
    // 4 made 8 its first successor and asked 8 for its successor to refill the list.
    assert_eq!(successors_of(&sim, 4), vec![8, 10]);
    // Keys 5 was responsible for now go to 8.
    assert!(responsible(&mut sim, 5).iter().all(|&a| a == 8));
}
