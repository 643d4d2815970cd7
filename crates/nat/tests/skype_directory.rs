//! The supernode directory core, driven with a fake clock: names bound by their first
//! registration, password proofs, nonces, caps and expiry.

use appnet_nat::skype::auth::ClientKey;
use appnet_nat::skype::directory::{Directory, DirectoryConfig};
use appnet_nat::skype::sealing;
use appnet_nat::skype::wire::{self, Candidate, CandidateKind, Msg, Proof};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ask(d: &mut Directory, from: SocketAddr, msg: &Msg, now: Instant) -> Option<Msg> {
    let raw = d.handle(from, &wire::encode(7, msg), now)?;
    let (tid, m) = wire::decode(&raw).unwrap();
    assert_eq!(tid, 7);
    Some(m)
}

/// Hello, then Register with the password; `bind` on the first registration of the name.
fn register(d: &mut Directory, from: SocketAddr, user: &str, password: &str, now: Instant) -> Msg {
    let Some(Msg::Challenge { nonce, salt, sn_key }) = ask(d, from, &Msg::Hello { user: user.into() }, now)
    else {
        panic!("no challenge")
    };
    let (salt, bind) = match salt {
        Some(s) => (s, None),
        None => ([0x5a; 16], Some(())),
    };
    let key = ClientKey::derive(password, &salt);
    let v = key.verifier(salt);
    let bind = bind.map(|_| sealing::seal_verifier(&sn_key, user, &v).unwrap());
    let candidates = vec![Candidate { kind: CandidateKind::Host, addr: from }];
    let signed = wire::register_signed_part(user, bind.as_ref(), &candidates);
    let proof = Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
    ask(d, from, &Msg::Register { user: user.into(), proof, bind, candidates }, now).unwrap()
}

fn code(m: &Msg) -> u16 {
    match m {
        Msg::Error { code, .. } => *code,
        _ => 0,
    }
}

#[test]
fn the_first_registration_binds_the_name_and_later_ones_must_prove_the_password() {
    let now = Instant::now();
    let mut d = Directory::new(DirectoryConfig::default(), now);
    let alice = addr("10.1.0.2:5000");
    assert_eq!(register(&mut d, alice, "alice", "secret", now), Msg::Registered { lifetime: 120 });
    let found = ask(&mut d, addr("10.2.0.2:6000"), &Msg::Lookup { user: "alice".into() }, now).unwrap();
    let Msg::Found { online: true, candidates, .. } = found else { panic!("{found:?}") };
    assert_eq!(candidates[0].addr, alice);
    // Someone else cannot take the name over, with or without a fresh verifier.
    let mallory = addr("10.9.0.2:5000");
    assert_eq!(code(&register(&mut d, mallory, "alice", "guess", now)), 401);
    // Alice moves: her password re-registers her from a new address.
    let moved = addr("10.1.0.3:5001");
    assert_eq!(register(&mut d, moved, "alice", "secret", now), Msg::Registered { lifetime: 120 });
    let Some(Msg::Found { candidates, .. }) =
        ask(&mut d, mallory, &Msg::Lookup { user: "alice".into() }, now)
    else {
        panic!()
    };
    assert_eq!(candidates[0].addr, moved);
    assert_eq!(code(&ask(&mut d, mallory, &Msg::Lookup { user: "nobody".into() }, now).unwrap()), 404);
    // After the lifetime without a refresh she is offline, but the name stays hers.
    let later = now + Duration::from_secs(121);
    d.expire(later);
    let Some(Msg::Found { online, candidates, .. }) =
        ask(&mut d, mallory, &Msg::Lookup { user: "alice".into() }, later)
    else {
        panic!()
    };
    assert!(!online && candidates.is_empty());
    assert_eq!(code(&register(&mut d, mallory, "alice", "guess", later)), 401);
}

#[test]
fn rebinding_a_taken_name_is_403_and_stale_or_foreign_nonces_are_438() {
    let now = Instant::now();
    let mut d = Directory::new(DirectoryConfig::default(), now);
    let alice = addr("10.1.0.2:5000");
    register(&mut d, alice, "alice", "secret", now);
    let Some(Msg::Challenge { nonce, sn_key, .. }) =
        ask(&mut d, alice, &Msg::Hello { user: "alice".into() }, now)
    else {
        panic!()
    };
    let salt = [1u8; 16];
    let key = ClientKey::derive("mine-now", &salt);
    let v = key.verifier(salt);
    let cands = Vec::new();
    let sealed = sealing::seal_verifier(&sn_key, "alice", &v).unwrap();
    let signed = wire::register_signed_part("alice", Some(&sealed), &cands);
    let proof = Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
    let rebind = Msg::Register { user: "alice".into(), proof, bind: Some(sealed), candidates: cands };
    assert_eq!(code(&ask(&mut d, alice, &rebind, now).unwrap()), 403);
    // The same datagram from another address, or too late, has a nonce that is no good.
    assert_eq!(code(&ask(&mut d, addr("10.1.0.9:5000"), &rebind, now).unwrap()), 438);
    assert_eq!(code(&ask(&mut d, alice, &rebind, now + Duration::from_secs(31)).unwrap()), 438);
}

#[test]
fn names_per_address_and_unauthenticated_answers_are_capped() {
    let now = Instant::now();
    let cfg = DirectoryConfig { names_per_ip: 2, requests_per_sec: 10, ..DirectoryConfig::default() };
    let mut d = Directory::new(cfg, now);
    let from = addr("10.1.0.2:5000");
    assert_eq!(register(&mut d, from, "a", "pw", now), Msg::Registered { lifetime: 120 });
    assert_eq!(register(&mut d, from, "b", "pw", now), Msg::Registered { lifetime: 120 });
    assert_eq!(code(&register(&mut d, from, "c", "pw", now)), 429);
    // Lookups: a burst of twice the rate, then silence until the bucket refills.
    let flood = addr("10.7.0.2:1");
    let lookup = Msg::Lookup { user: "a".into() };
    let answered = (0..100).filter(|_| ask(&mut d, flood, &lookup, now).is_some()).count();
    assert_eq!(answered, 20);
    assert!(ask(&mut d, flood, &lookup, now + Duration::from_secs(1)).is_some());
    // Junk and answers sent to an SN get nothing back.
    assert!(d.handle(flood, b"SK\x01\x03junk", now).is_none());
    assert!(d.handle(flood, &wire::encode(1, &Msg::Registered { lifetime: 1 }), now).is_none());
}

#[tokio::test]
async fn a_peer_registers_over_udp_and_another_finds_it() {
    use appnet_nat::config::SupernodeConfig;
    use appnet_nat::skype::{Supernode, client};
    use appnet_netkit::harness;
    let config = SupernodeConfig { listen: addr("127.0.0.1:0"), ..SupernodeConfig::default() };
    let running = harness::start(Supernode::bind(config).await.unwrap());
    let sn = running.addr();
    let t = Duration::from_secs(5);
    let alice = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host = Candidate { kind: CandidateKind::Host, addr: alice.local_addr().unwrap() };
    assert_eq!(client::register(&alice, sn, "alice", "secret", vec![host], t).await.unwrap(), 120);
    // Again: the name is bound now, and the password proves it.
    assert_eq!(client::register(&alice, sn, "alice", "secret", vec![host], t).await.unwrap(), 120);
    let bob = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let found = client::lookup(&bob, sn, "alice", t).await.unwrap();
    assert_eq!(found, client::Found { online: true, candidates: vec![host] });
    match client::register(&bob, sn, "alice", "guess", Vec::new(), t).await {
        Err(client::SnError::Refused(401, _)) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(client::lookup(&bob, sn, "carol", t).await, Err(client::SnError::Refused(404, _))));
}

#[test]
fn offers_are_forwarded_only_from_the_registered_address_to_an_online_callee() {
    let now = Instant::now();
    let mut d = Directory::new(DirectoryConfig::default(), now);
    let (alice, bob) = (addr("10.1.0.2:5000"), addr("10.2.0.2:6000"));
    register(&mut d, alice, "alice", "pw-a", now);
    register(&mut d, bob, "bob", "pw-b", now);
    let offer = Msg::Forward { from: "alice".into(), to: "bob".into(), payload: b"offer".to_vec() };
    let out = d.handle_all(alice, &wire::encode(3, &offer), now);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].0, wire::decode(&out[0].1).unwrap()), (alice, (3, Msg::Forwarded)));
    assert_eq!(out[1].0, bob);
    assert_eq!(
        wire::decode(&out[1].1).unwrap().1,
        Msg::Deliver { from: "alice".into(), payload: b"offer".to_vec() }
    );
    // Claiming to be alice from elsewhere, calling nobody, or an offline callee: refused.
    let mallory = addr("10.9.0.2:5000");
    assert_eq!(code(&ask(&mut d, mallory, &offer, now).unwrap()), 403);
    let nobody = Msg::Forward { from: "alice".into(), to: "carol".into(), payload: Vec::new() };
    assert_eq!(code(&ask(&mut d, alice, &nobody, now).unwrap()), 404);
    let later = now + Duration::from_secs(100);
    register(&mut d, alice, "alice", "pw-a", later);
    let after = later + Duration::from_secs(30);
    d.expire(after);
    assert_eq!(code(&ask(&mut d, alice, &offer, after).unwrap()), 480);
}
