//! The swarm core in virtual time: scripted peers for the choker, and whole simulated swarms
//! ([`super::sim`]) for rarest first, endgame, hash failures and a full download.

use super::sim::{NodeSpec, Sim, SimConfig};
use super::*;
use crate::wire::Message;
use bytes::Bytes;
use std::collections::HashSet;

const KIB: u64 = 1024;

/// One core fed by a test script, collecting what it asks for.
struct Script {
    swarm: Swarm,
    t0: Instant,
}

impl Script {
    fn new(cfg: SwarmConfig, pieces: u32, have_all: bool) -> Script {
        let t0 = Instant::now();
        let have = if have_all { Bitfield::full(pieces) } else { Bitfield::new(pieces) };
        Script { swarm: Swarm::new(cfg, [0; 20], 64 * KIB, pieces as u64 * 64 * KIB, &have, 9, t0), t0 }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    fn connect(&mut self, i: u8, fast: bool) -> PeerKey {
        let c = Connected {
            addr: SocketAddr::from(([10, 0, 0, i], 6881)),
            peer_id: [i; 20],
            outgoing: false,
            fast,
        };
        self.swarm.handle_connected(c, self.t0).expect("admitted")
    }

    fn actions(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.swarm.poll_action()).collect()
    }

    fn unchoked(&self, keys: &[PeerKey]) -> HashSet<PeerKey> {
        keys.iter().copied().filter(|k| self.swarm.am_choking(*k) == Some(false)).collect()
    }
}

fn block(index: u32, b: u32) -> Message {
    Message::Piece { index, begin: b * BLOCK, data: Bytes::from(vec![7u8; BLOCK as usize]) }
}

/// Tit-for-tat as a leecher: every 10 s the four peers that sent us the most in the rolling
/// window get the regular slots, and the ranking follows the rates when they change.
#[test]
fn choker_rounds_unchoke_the_top_uploaders_every_10_s() {
    let mut s = Script::new(SwarmConfig::default(), 400, false);
    let keys: Vec<PeerKey> = (1..=6).map(|i| s.connect(i, false)).collect();
    for &k in &keys {
        let full = Bitfield::full(400);
        s.swarm.handle_message(k, Message::Bitfield(full.as_bytes().to_vec().into()), s.t0).unwrap();
        s.swarm.handle_message(k, Message::Interested, s.t0).unwrap();
    }
    s.swarm.handle_timeout(s.t0);
    assert_eq!(s.swarm.poll_timeout(), Some(s.at(10.0)), "the next round is 10 s away");
    s.actions();
    // Peer i sends i blocks every 100 ms for 10 s.
    let mut next = 0u32;
    let mut feed = |s: &mut Script, from: f64, to: f64, rate: &dyn Fn(usize) -> usize| {
        let mut t = from;
        while t < to {
            for (i, &k) in keys.iter().enumerate() {
                for _ in 0..rate(i) {
                    s.swarm.handle_message(k, block(next / 4 % 400, next % 4), s.at(t)).unwrap();
                    next += 1;
                }
            }
            t += 0.1;
        }
    };
    feed(&mut s, 0.0, 10.0, &|i| i + 1);
    s.swarm.handle_timeout(s.at(5.0));
    assert!(
        s.actions().iter().all(|a| !matches!(a, Action::Send { msg: Message::Choke, .. })),
        "not due yet"
    );
    s.swarm.handle_timeout(s.at(10.0));
    let round = s.actions();
    let unchoked = s.unchoked(&keys);
    assert!(keys[2..].iter().all(|k| unchoked.contains(k)), "the four fastest: {unchoked:?}");
    assert_eq!(unchoked.len(), 5, "plus one optimistic unchoke");
    let opt = s.swarm.optimistic().unwrap();
    assert!(opt == keys[0] || opt == keys[1]);
    // Every change of state went out as a message.
    for a in &round {
        if let Action::Send { peer, msg: Message::Unchoke } = a {
            assert!(unchoked.contains(peer));
        }
    }
    // Now peer 1 is the fastest and peer 6 stops: the next round follows.
    feed(&mut s, 10.0, 30.0, &|i| [30, 1, 3, 4, 5, 0][i]);
    s.swarm.handle_timeout(s.at(30.0));
    let unchoked = s.unchoked(&keys);
    assert!([0, 2, 3, 4].iter().all(|&i| unchoked.contains(&keys[i])), "{unchoked:?}");
    assert_eq!(s.swarm.poll_timeout(), Some(s.at(40.0)));
}

/// The optimistic unchoke is kept for 30 s (three 10 s rounds) and then drawn again, so every
/// choked peer gets its turn over time.
#[test]
fn optimistic_unchoke_rotates_every_30_s() {
    let mut s = Script::new(SwarmConfig::default(), 8, true);
    let keys: Vec<PeerKey> = (1..=8).map(|i| s.connect(i, true)).collect();
    for &k in &keys {
        s.swarm.handle_message(k, Message::HaveNone, s.t0).unwrap();
        s.swarm.handle_message(k, Message::Interested, s.t0).unwrap();
    }
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    let mut last = None;
    for round in 0..60u64 {
        let now = s.at(round as f64 * 10.0);
        // Seeding ranks by upload rate: peers 1-4 get ours.
        for &k in &keys[..4] {
            s.swarm.handle_uploaded(k, 100 * KIB, now);
        }
        s.swarm.handle_timeout(now);
        let acts = s.actions();
        let opt = s.swarm.optimistic().unwrap();
        assert!(keys[4..].contains(&opt), "the optimistic slot goes to a choked peer");
        assert!(keys[..4].iter().all(|k| s.swarm.am_choking(*k) == Some(false)));
        if last != Some(opt) {
            changes.push(round);
            assert!(
                acts.contains(&Action::Send { peer: opt, msg: Message::Unchoke }),
                "the new optimistic peer is unchoked"
            );
            if let Some(old) = last {
                assert!(acts.contains(&Action::Send { peer: old, msg: Message::Choke }));
            }
        }
        seen.insert(opt);
        last = Some(opt);
    }
    assert!(changes.iter().all(|r| r % 3 == 0), "changes only every third round: {changes:?}");
    assert_eq!(seen.len(), 4, "every choked peer had a turn");
}

/// Rarest first: once past the first piece, the first blocks asked of each peer belong to the
/// pieces fewest connected peers have.
#[test]
fn rarest_pieces_are_requested_first() {
    let cfg = SimConfig::default(); // 16 pieces of 64 KiB
    let partial = |upto: u32| NodeSpec { have: (0..=upto).collect(), ..NodeSpec::leecher(1 << 20) };
    let leecher = NodeSpec { have: vec![0], ..NodeSpec::leecher(1 << 20) };
    let mut sim =
        Sim::new(cfg.clone(), vec![leecher, NodeSpec::seeder(&cfg, 1 << 20), partial(8), partial(4)]);
    for p in 1..=3 {
        assert!(sim.connect(0, p));
    }
    assert!(sim.run_until(Duration::from_secs(60), 200_000, |s| s.completed_at(0).is_some()));
    let first_requests = |to: usize| -> Vec<u32> {
        sim.log
            .iter()
            .filter_map(|m| match m.msg {
                Message::Request(r) if m.from == 0 && m.to == to => Some(r.index),
                _ => None,
            })
            .take(8)
            .collect()
    };
    // Availability seen by node 0: pieces 1-4 on three peers, 5-8 on two, 9-15 on the seeder only.
    let s = first_requests(1);
    assert_eq!(s.len(), 8);
    assert!(s.iter().all(|i| (9..=15).contains(i)), "seeder: {s:?}");
    let p2 = first_requests(2);
    assert!(p2.iter().take(4).all(|i| (5..=8).contains(i)), "peer with 0-8: {p2:?}");
    let p3 = first_requests(3);
    assert!(p3.iter().all(|i| (1..=4).contains(i)), "peer with 0-4: {p3:?}");
}

/// Endgame: when every missing block is requested, the last ones are asked of a second peer
/// too, and the copy still on its way is cancelled when the first arrives.
#[test]
fn endgame_requests_the_last_blocks_twice_and_cancels() {
    let cfg = SimConfig { total: 2 * 64 * KIB, ..SimConfig::default() }; // 8 blocks
    let nodes =
        vec![NodeSpec::leecher(1 << 20), NodeSpec::seeder(&cfg, 64 * KIB), NodeSpec::seeder(&cfg, 64 * KIB)];
    let mut sim = Sim::new(cfg.clone(), nodes);
    assert!(sim.connect(0, 1) && sim.connect(0, 2));
    assert!(sim.run_until(Duration::from_secs(60), 100_000, |s| s.completed_at(0).is_some()));
    let asked = |to: usize| -> HashSet<BlockRef> {
        sim.log
            .iter()
            .filter_map(|m| match m.msg {
                Message::Request(r) if m.from == 0 && m.to == to => Some(r),
                _ => None,
            })
            .collect()
    };
    let both: HashSet<_> = asked(1).intersection(&asked(2)).copied().collect();
    assert!(!both.is_empty(), "some blocks were requested from both seeders");
    let cancels: Vec<BlockRef> = sim
        .log
        .iter()
        .filter_map(|m| match m.msg {
            Message::Cancel(r) if m.from == 0 => Some(r),
            _ => None,
        })
        .collect();
    assert!(!cancels.is_empty(), "duplicates were cancelled");
    assert!(cancels.iter().all(|r| both.contains(r)), "only blocks asked twice are cancelled");
    // Every block was counted once, and no piece was verified twice.
    let stats = sim.swarm(0).stats(Instant::now());
    assert_eq!(stats.downloaded, cfg.total);
    assert_eq!(sim.verifications.len(), 2);
}

/// Hash failures: a piece that fails is requested again; a peer whose pieces fail
/// `max_hash_failures` times is banned and disconnected, and cannot come back; the download
/// then completes from an honest peer.
#[test]
fn corrupt_pieces_are_requested_again_and_their_sender_banned() {
    let cfg = SimConfig { total: 8 * 64 * KIB, ..SimConfig::default() };
    let corrupt = NodeSpec { corrupt: true, ..NodeSpec::seeder(&cfg, 1 << 20) };
    let nodes = vec![NodeSpec::leecher(1 << 20), corrupt, NodeSpec::seeder(&cfg, 1 << 20)];
    let mut sim = Sim::new(cfg.clone(), nodes);
    assert!(sim.connect(0, 1));
    assert!(sim.run_until(Duration::from_secs(60), 100_000, |s| !s.disconnects.is_empty()));
    let failed: Vec<u32> = sim.verifications.iter().filter(|v| !v.3).map(|v| v.2).collect();
    assert_eq!(failed.len(), 3, "banned at the third failure (max_hash_failures = 3)");
    assert_eq!(sim.disconnects[0].1..=sim.disconnects[0].2, 0..=1);
    assert_eq!(sim.disconnects[0].3, "banned after repeated corrupt pieces");
    // After its first failure, a piece's blocks are asked for again.
    let first_fail = sim.verifications.iter().find(|v| !v.3).unwrap();
    assert!(sim.log.iter().any(|m| m.at > first_fail.0
        && matches!(m.msg, Message::Request(r) if m.from == 0 && r.index == first_fail.2)));
    assert!(!sim.connect(0, 1), "a banned peer is refused");
    assert!(sim.connect(0, 2));
    assert!(sim.run_until(Duration::from_secs(120), 100_000, |s| s.completed_at(0).is_some()));
    assert_eq!(sim.swarm(0).stats(Instant::now()).hash_failures, 3);
    assert!(sim.verifications.iter().filter(|v| v.3).count() == 8);
}

/// A seeder and three leechers on a full mesh: everyone completes, the leechers trade with
/// each other (the seeder sends less than three copies), every hash check passes, and when
/// the run ends nothing is left in flight (every request, upload and verification finished).
#[test]
fn seeder_and_three_leechers_complete_in_the_simulator() {
    let cfg = SimConfig { total: 64 * 64 * KIB - 1000, seed: 4, ..SimConfig::default() }; // 4 MiB
    let mut nodes = vec![NodeSpec::seeder(&cfg, 512 * KIB)];
    nodes.extend((0..3).map(|_| NodeSpec::leecher(512 * KIB)));
    let mut sim = Sim::new(cfg.clone(), nodes);
    for a in 0..4 {
        for b in a + 1..4 {
            assert!(sim.connect(b, a));
        }
    }
    let all = |s: &Sim| (0..4).all(|i| s.completed_at(i).is_some());
    assert!(sim.run_until(Duration::from_secs(600), 2_000_000, all), "stuck at {:?}", sim.elapsed());
    assert!(sim.run_until(Duration::from_secs(900), 100_000, Sim::is_quiet), "actions left in flight");
    let took = (1..4).filter_map(|i| sim.completed_at(i)).max().unwrap();
    // Three copies from one 512 KiB/s seeder alone would take 24 s; trading makes it faster.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let seeded = sim.swarm(0).stats(Instant::now()).uploaded;
    assert!(seeded < 3 * cfg.total, "the seeder sent {seeded} bytes");
    for i in 1..4 {
        let st = sim.swarm(i).stats(Instant::now());
        assert_eq!((st.have, st.left, st.hash_failures), (64, 0, 0));
        assert!(st.uploaded > 0, "leecher {i} uploaded to the others");
    }
    assert_eq!(sim.verifications.len(), 3 * 64);
    assert!(sim.verifications.iter().all(|v| v.3));
}

/// Protocol violations end the connection and give its requests back; refused requests are
/// rejected with the fast extension; a duplicate connection keeps the lower id's.
#[test]
fn violations_refusals_and_duplicates() {
    let mut s = Script::new(SwarmConfig::default(), 4, false);
    let a = s.connect(1, false);
    let full = Bitfield::full(4);
    s.swarm.handle_message(a, Message::Bitfield(full.as_bytes().to_vec().into()), s.t0).unwrap();
    s.swarm.handle_message(a, Message::Unchoke, s.t0).unwrap();
    assert_eq!(s.swarm.pending_requests(a), 8);
    let err = s.swarm.handle_message(a, Message::HaveAll, s.t0).unwrap_err();
    assert!(matches!(err, SwarmError::Protocol(_)));
    assert_eq!(s.swarm.handle_message(a, Message::KeepAlive, s.t0), Err(SwarmError::UnknownPeer));
    // Its blocks are free again: a new peer gets them.
    let b = s.connect(2, true);
    s.actions();
    s.swarm.handle_message(b, Message::HaveAll, s.t0).unwrap();
    s.swarm.handle_message(b, Message::Unchoke, s.t0).unwrap();
    assert_eq!(s.swarm.pending_requests(b), 8);
    // We choke b: its request is rejected (fast extension), and a bad index is a violation.
    let r = BlockRef { index: 0, begin: 0, length: BLOCK };
    s.actions();
    s.swarm.handle_message(b, Message::Request(r), s.t0).unwrap();
    assert_eq!(s.actions(), vec![Action::Send { peer: b, msg: Message::Reject(r) }]);
    let bad = BlockRef { index: 99, ..r };
    assert!(s.swarm.handle_message(b, Message::Request(bad), s.t0).is_err());
    // Peer 3 connects twice; we ([0; 20]) have the lower id, so our outgoing one wins.
    let c = Connected {
        addr: SocketAddr::from(([10, 0, 0, 3], 6881)),
        peer_id: [3; 20],
        outgoing: false,
        fast: false,
    };
    let first = s.swarm.handle_connected(c, s.t0).unwrap();
    let second = s.swarm.handle_connected(Connected { outgoing: true, ..c }, s.t0).unwrap();
    assert_ne!(first, second);
    assert!(
        s.actions()
            .contains(&Action::Disconnect { peer: first, reason: "replaced by a connection the other way" })
    );
    assert_eq!(s.swarm.handle_connected(c, s.t0), None, "and the incoming one is refused");
}

/// Dialling: a peer being dialled or connected is not dialled twice, and the per-address cap
/// counts dials in progress; a selfish client (`no_upload`) has no choker timer and refuses
/// every request.
#[test]
fn dials_and_no_upload() {
    let cfg =
        SwarmConfig { limits: admission::Limits { max_peers: 50, max_per_ip: 2 }, ..SwarmConfig::default() };
    let mut s = Script::new(cfg, 4, true);
    let a = SocketAddr::from(([10, 0, 0, 1], 1000));
    assert!(s.swarm.start_dial(a));
    assert!(!s.swarm.start_dial(a), "already being dialled");
    assert!(s.swarm.start_dial(SocketAddr::from(([10, 0, 0, 1], 1001))));
    assert!(!s.swarm.start_dial(SocketAddr::from(([10, 0, 0, 1], 1002))), "two per address");
    s.swarm.dial_finished(a);
    assert!(s.swarm.start_dial(a));

    let mut s = Script::new(SwarmConfig { no_upload: true, ..SwarmConfig::default() }, 4, true);
    assert_eq!(s.swarm.poll_timeout(), None);
    let k = s.connect(1, true);
    s.actions();
    s.swarm.handle_message(k, Message::Interested, s.t0).unwrap();
    let r = BlockRef { index: 0, begin: 0, length: BLOCK };
    s.swarm.handle_message(k, Message::Request(r), s.t0).unwrap();
    assert_eq!(
        s.actions(),
        vec![Action::Send { peer: k, msg: Message::Reject(r) }],
        "never unchoked, rejected"
    );
}
