//! Three supernode cores in memory with a virtual clock: membership, an entry replicated on its
//! two owners with its credentials, the first binding holding across SNs, and the survivor
//! re-replicating when an owner dies.

use appnet_nat::skype::auth::{self, ClientKey};
use appnet_nat::skype::directory::{Directory, DirectoryConfig};
use appnet_nat::skype::node::Node;
use appnet_nat::skype::overlay::{Overlay, OverlayConfig};
use appnet_nat::skype::placement::Placement;
use appnet_nat::skype::sealing;
use appnet_nat::skype::wire::{self, Candidate, CandidateKind, Msg, Proof};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SECRET: &[u8] = b"the overlay secret of this test";

fn sn(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 33100 + i))
}

struct Net {
    nodes: HashMap<SocketAddr, Node>,
    /// Datagrams that reached peers: (peer, bytes, the SN that sent them).
    to_peers: Vec<(SocketAddr, Vec<u8>, SocketAddr)>,
    /// Every datagram sent, as an eavesdropper on every link records it.
    tap: Vec<Vec<u8>>,
}

impl Net {
    /// SNs 0, 1 and 2 (1 and 2 joining through 0) after three gossip rounds, and the time now.
    fn three_sns() -> (Net, Instant) {
        let t0 = Instant::now();
        let mk = |i: u16, seeds: Vec<SocketAddr>| {
            let ov = Overlay::new(OverlayConfig::default(), sn(i), Some(SECRET), seeds, t0, 1_000_000);
            (sn(i), Node::new(Directory::new(DirectoryConfig::default(), t0), ov))
        };
        let mut net = Net {
            nodes: [mk(0, vec![]), mk(1, vec![sn(0)]), mk(2, vec![sn(0)])].into(),
            to_peers: Vec::new(),
            tap: Vec::new(),
        };
        let mut now = t0;
        for _ in 0..3 {
            net.tick(now);
            now += Duration::from_secs(2);
        }
        (net, now)
    }

    fn deliver(&mut self, mut queue: Vec<(SocketAddr, SocketAddr, Vec<u8>)>, now: Instant) {
        for _ in 0..10_000 {
            let Some((from, to, d)) = queue.pop() else { return };
            self.tap.push(d.clone());
            match self.nodes.get_mut(&to) {
                Some(n) => queue.extend(n.handle(from, &d, now).into_iter().map(|(t, d)| (to, t, d))),
                None if to.port() >= 40000 => self.to_peers.push((to, d, from)),
                None => {} // a dead SN
            }
        }
        panic!("datagrams kept flowing");
    }

    fn tick(&mut self, now: Instant) {
        let mut queue = Vec::new();
        for (a, n) in self.nodes.iter_mut() {
            queue.extend(n.tick(now).into_iter().map(|(t, d)| (*a, t, d)));
        }
        self.deliver(queue, now);
    }

    /// Sends a peer datagram to `at` and returns the answer that came back to the peer.
    fn ask(&mut self, peer: SocketAddr, at: SocketAddr, msg: &Msg, now: Instant) -> Option<Msg> {
        self.to_peers.clear();
        self.deliver(vec![(peer, at, wire::encode(9, msg))], now);
        let i = self
            .to_peers
            .iter()
            .position(|(p, d, _)| *p == peer && wire::decode(d).is_ok_and(|(t, _)| t == 9))?;
        let (_, d, via) = self.to_peers.remove(i);
        assert_eq!(via, at, "answers come from the SN the peer asked");
        Some(wire::decode(&d).unwrap().1)
    }

    fn register(&mut self, peer: SocketAddr, at: SocketAddr, user: &str, pw: &str, now: Instant) -> Msg {
        let Some(Msg::Challenge { nonce, salt, sn_key }) =
            self.ask(peer, at, &Msg::Hello { user: user.into() }, now)
        else {
            panic!("no challenge")
        };
        let (salt, bind) = match salt {
            Some(s) => (s, false),
            None => ([0x33; 16], true),
        };
        let key = ClientKey::derive(pw, &salt);
        let v = key.verifier(salt);
        let bind = bind.then(|| sealing::seal_verifier(&sn_key, user, &v).unwrap());
        let candidates = vec![Candidate { kind: CandidateKind::Host, addr: peer }];
        let signed = wire::register_signed_part(user, bind.as_ref(), &candidates);
        let proof = Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
        self.ask(peer, at, &Msg::Register { user: user.into(), proof, bind, candidates }, now).unwrap()
    }
}

fn code(m: Option<Msg>) -> u16 {
    match m {
        Some(Msg::Error { code, .. }) => code,
        other => panic!("{other:?}"),
    }
}

#[test]
fn entries_live_on_their_two_owners_and_survive_one() {
    let (mut net, mut now) = Net::three_sns();
    assert!(net.nodes.values().all(|n| n.members() == vec![sn(0), sn(1), sn(2)]));

    let ring = Placement::new([sn(0), sn(1), sn(2)]);
    let users: Vec<String> = (0..12).map(|i| format!("user{i}")).collect();
    for (i, u) in users.iter().enumerate() {
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000 + i as u16));
        let at = sn(i as u16 % 3);
        assert_eq!(net.register(peer, at, u, "pw", now), Msg::Registered { lifetime: 120 });
        let owners = ring.owners(u);
        for (a, n) in &net.nodes {
            assert_eq!(n.replica(u, now).is_some(), owners.contains(a), "{u} at {a}, owners {owners:?}");
        }
        // The same credentials on both owners.
        assert_eq!(
            net.nodes[&owners[0]].replica(u, now).unwrap().verifier,
            net.nodes[&owners[1]].replica(u, now).unwrap().verifier
        );
    }
    // The name stays bound across SNs: another password at any SN is refused.
    let mallory = SocketAddr::from(([127, 0, 0, 1], 45000));
    for i in 0..3 {
        assert_eq!(code(Some(net.register(mallory, sn(i), "user0", "guess", now))), 401);
    }
    // Any SN answers a lookup for any user.
    for i in 0..3 {
        let found = net.ask(mallory, sn(i), &Msg::Lookup { user: "user5".into() }, now);
        assert!(matches!(found, Some(Msg::Found { online: true, .. })), "{found:?}");
    }
    // An offer from user1 (on SN 1) to user2 (on SN 2) reaches user2 from SN 2.
    let (p1, p2) = (SocketAddr::from(([127, 0, 0, 1], 40001)), SocketAddr::from(([127, 0, 0, 1], 40002)));
    let offer = Msg::Forward { from: "user1".into(), to: "user2".into(), payload: b"o".to_vec() };
    assert_eq!(net.ask(p1, sn(1), &offer, now), Some(Msg::Forwarded));
    let got = net.to_peers.iter().find(|(p, _, _)| *p == p2).expect("delivered");
    assert_eq!(got.2, sn(2));
    assert_eq!(code(net.ask(mallory, sn(0), &offer, now)), 403);

    // SN 2 dies: after dead_after the survivors hold every entry on both new owners.
    net.nodes.remove(&sn(2));
    for _ in 0..6 {
        net.tick(now);
        now += Duration::from_secs(2);
    }
    assert!(net.nodes.values().all(|n| n.members() == vec![sn(0), sn(1)]));
    for u in &users {
        assert!(net.nodes.values().all(|n| n.replica(u, now).is_some()), "{u} lost a copy");
        assert!(matches!(
            net.ask(mallory, sn(0), &Msg::Lookup { user: u.clone() }, now),
            Some(Msg::Found { .. })
        ));
    }
}

/// Issue 19: an eavesdropper holding every byte of a first registration (peer to SN, the relay
/// to the owner, the copy to the other owner) and of a later login finds no StoredKey to turn
/// a proof into ClientKey, so it cannot forge a login; the old clear-text bind is refused.
#[test]
fn an_eavesdropper_on_every_link_cannot_recover_the_client_key() {
    let (mut net, now) = Net::three_sns();
    // Attach alice to the SN that does not own her entry: Relay, Reply and Store all happen.
    let ring = Placement::new([sn(0), sn(1), sn(2)]);
    let owners = ring.owners("alice");
    let at = (0..3).map(sn).find(|a| !owners.contains(a)).unwrap();
    let alice = SocketAddr::from(([127, 0, 0, 1], 41000));
    net.tap.clear();
    assert_eq!(net.register(alice, at, "alice", "pw-alice", now), Msg::Registered { lifetime: 120 });
    assert!(owners.iter().all(|o| net.nodes[o].replica("alice", now).is_some()), "stored on both owners");
    let stored = net.nodes[&owners[0]].replica("alice", now).unwrap().verifier;
    // A later login, tapped too.
    assert_eq!(net.register(alice, at, "alice", "pw-alice", now), Msg::Registered { lifetime: 120 });
    let logins: Vec<(Proof, Vec<u8>)> = net
        .tap
        .iter()
        .filter_map(|d| match wire::decode(d) {
            Ok((_, Msg::Register { user, proof, bind, candidates })) => {
                Some((proof, wire::register_signed_part(&user, bind.as_ref(), &candidates)))
            }
            _ => None,
        })
        .collect();
    assert_eq!(logins.len(), 2, "the bind and the login went by");
    // With the StoredKey, a proof gives ClientKey away (what the old clear bind allowed)...
    assert!(logins.iter().all(|(p, signed)| auth::check(&stored.stored_key, &p.nonce, signed, &p.proof)));
    // ...but no 32 bytes anywhere on the wire are it, nor any key that opens a proof.
    for d in &net.tap {
        for w in d.windows(32) {
            let w: [u8; 32] = w.try_into().unwrap();
            assert_ne!(w, stored.stored_key, "the StoredKey crossed the wire in the clear");
            for (p, signed) in &logins {
                assert!(!auth::check(&w, &p.nonce, signed, &p.proof));
            }
        }
    }

    // The old form, the verifier in the clear (flag 1), is refused: the name is not bound.
    let bob = SocketAddr::from(([127, 0, 0, 1], 41001));
    let bob_at = ring.owners("bob")[0];
    let Some(Msg::Challenge { nonce, salt: None, sn_key }) =
        net.ask(bob, bob_at, &Msg::Hello { user: "bob".into() }, now)
    else {
        panic!("no challenge for a new name")
    };
    let v = ClientKey::derive("pw-bob", &[1; 16]).verifier([1; 16]);
    let mut clear = wire::encode(
        9,
        &Msg::Register {
            user: "bob".into(),
            proof: Proof { nonce, proof: [0; 32] },
            bind: None,
            candidates: Vec::new(),
        },
    );
    let flag = 8 + 4 + 48;
    assert_eq!(clear[flag], 0);
    clear.truncate(flag);
    clear.push(1);
    clear.extend_from_slice(&v.salt);
    clear.extend_from_slice(&v.stored_key);
    clear.push(0);
    net.to_peers.clear();
    net.deliver(vec![(bob, bob_at, clear)], now);
    assert!(net.to_peers.is_empty(), "undecodable: no answer");
    assert!(net.nodes.values().all(|n| n.replica("bob", now).is_none()));
    // A verifier sealed to another key than the SN's is refused (400), and binds nothing.
    let other = sealing::SnKey::generate().unwrap().public();
    assert_ne!(other, sn_key);
    let key = ClientKey::derive("pw-bob", &[1; 16]);
    let sealed = sealing::seal_verifier(&other, "bob", &v).unwrap();
    let signed = wire::register_signed_part("bob", Some(&sealed), &[]);
    let proof = Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
    let reg = Msg::Register { user: "bob".into(), proof, bind: Some(sealed), candidates: Vec::new() };
    assert_eq!(code(net.ask(bob, bob_at, &reg, now)), 400);
    assert!(net.nodes.values().all(|n| n.replica("bob", now).is_none()));
}
