//! Promotion of peers to supernodes. In memory (an SN core on a virtual clock, made-up
//! addresses): a peer behind a NAT, one that is too young, one whose SN port does not answer
//! the probe, one with the wrong password or from another address are refused; a public peer is
//! granted, and an eavesdropper holding every datagram of the exchange (and even the user's
//! StoredKey) cannot open the grant; a forged membership is refused. On loopback: three SNs
//! under one secret, a peer with `promote` is promoted, runs the SN role in its process, joins
//! the overlay and answers lookups for every user.

mod common;

use appnet_nat::skype::auth::ClientKey;
use appnet_nat::skype::client;
use appnet_nat::skype::directory::{Directory, DirectoryConfig};
use appnet_nat::skype::node::{Node, PROBE_TIMEOUT};
use appnet_nat::skype::overlay::{self, Overlay, OverlayConfig, OverlayMsg};
use appnet_nat::skype::peer::{Command, Peer, PeerConfig, PromoteConfig};
use appnet_nat::skype::promotion::{Handoff, PromotionPolicy, probe_tag};
use appnet_nat::skype::sealing;
use appnet_nat::skype::wire::{self, Candidate, CandidateKind, Msg, Proof};
use appnet_netkit::Shutdown;
use appnet_netkit::harness;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

const SECRET: &[u8] = b"the overlay secret of the promotion test";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Feeds `msg` from `from` to the node; returns the SN-protocol datagrams it sends, decoded.
fn ask(node: &mut Node, from: SocketAddr, tid: u32, msg: &Msg, now: Instant) -> Vec<(SocketAddr, Msg)> {
    decoded(node.handle(from, &wire::encode(tid, msg), now))
}

fn decoded(out: Vec<(SocketAddr, Vec<u8>)>) -> Vec<(SocketAddr, Msg)> {
    out.into_iter().filter_map(|(to, d)| Some((to, wire::decode(&d).ok()?.1))).collect()
}

fn challenge(node: &mut Node, from: SocketAddr, user: &str, now: Instant) -> ([u8; 16], Option<[u8; 16]>) {
    let (nonce, salt, _) = challenge_key(node, from, user, now);
    (nonce, salt)
}

/// The Challenge's nonce, salt and SN key.
fn challenge_key(
    node: &mut Node,
    from: SocketAddr,
    user: &str,
    now: Instant,
) -> ([u8; 16], Option<[u8; 16]>, [u8; 32]) {
    match ask(node, from, 1, &Msg::Hello { user: user.into() }, now).as_slice() {
        [(to, Msg::Challenge { nonce, salt, sn_key })] if *to == from => (*nonce, *salt, *sn_key),
        other => panic!("{other:?}"),
    }
}

/// Binds `user` from `from` with `host` as its host candidate.
fn register(node: &mut Node, from: SocketAddr, user: &str, host: SocketAddr, now: Instant) {
    let (nonce, salt, sn_key) = challenge_key(node, from, user, now);
    let salt = salt.unwrap_or([7; 16]);
    let key = ClientKey::derive(&format!("pw-{user}"), &salt);
    let v = key.verifier(salt);
    let cands = vec![Candidate { kind: CandidateKind::Host, addr: host }];
    let bind = Some(v.clone())
        .filter(|_| node.directory().reach(user, now) == appnet_nat::skype::directory::Reach::Unknown)
        .map(|v| sealing::seal_verifier(&sn_key, user, &v).unwrap());
    let signed = wire::register_signed_part(user, bind.as_ref(), &cands);
    let proof = Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
    let msg = Msg::Register { user: user.into(), proof, bind, candidates: cands };
    assert!(matches!(ask(node, from, 2, &msg, now).as_slice(), [(_, Msg::Registered { .. })]));
}

/// A Promote for `user` (password `password`) asking to serve at `sn`.
fn promote(
    node: &mut Node,
    from: SocketAddr,
    user: &str,
    password: &str,
    sn: SocketAddr,
    now: Instant,
) -> (Handoff, Vec<(SocketAddr, Msg)>) {
    let (nonce, salt) = challenge(node, from, user, now);
    let salt = salt.expect("bound");
    let key = ClientKey::derive(password, &salt);
    let stored = key.verifier(salt).stored_key;
    let h = Handoff::new().unwrap();
    let public_key = h.public_key();
    let signed = wire::promote_signed_part(user, sn, &public_key);
    let proof = Proof { nonce, proof: key.prove(&stored, &nonce, &signed) };
    let out = ask(node, from, 9, &Msg::Promote { user: user.into(), sn, public_key, proof }, now);
    (h, out)
}

fn refused(out: &[(SocketAddr, Msg)]) -> Option<(u16, String)> {
    match out {
        [(_, Msg::Error { code, reason })] => Some((*code, reason.clone())),
        _ => None,
    }
}

#[test]
fn the_sn_promotes_only_public_reachable_long_lived_peers_and_the_grant_stays_secret() {
    let t0 = Instant::now();
    let me = addr("198.51.100.1:33033");
    let ov = Overlay::new(OverlayConfig::default(), me, Some(SECRET), Vec::new(), t0, 5_000_000);
    // The overlay wants two SNs: this one and one promoted peer.
    let policy = PromotionPolicy { min_uptime: Duration::from_secs(60), target_supernodes: 2 };
    let mut node = Node::new(Directory::new(DirectoryConfig::default(), t0), ov).with_policy(Some(policy));

    // nat: registers from 203.0.113.5:40000 but its host candidate is 10.0.0.2:5000.
    let nat = addr("203.0.113.5:40000");
    register(&mut node, nat, "nat", addr("10.0.0.2:5000"), t0);
    // pub: its host candidate is the address the SN sees.
    let public = addr("192.0.2.20:5000");
    let pub_sn = addr("192.0.2.20:5001");
    register(&mut node, public, "pub", public, t0);

    let later = t0 + Duration::from_secs(61);
    let (_, out) = promote(&mut node, nat, "nat", "pw-nat", addr("203.0.113.5:40001"), later);
    assert_eq!(refused(&out), Some((403, "Not A Public Address".into())));
    // Too young.
    let (_, out) = promote(&mut node, public, "pub", "pw-pub", pub_sn, t0 + Duration::from_secs(30));
    assert_eq!(refused(&out), Some((403, "Uptime Too Short".into())));
    // Claiming it without the password, or from another address than registered.
    let (_, out) = promote(&mut node, public, "pub", "guess", pub_sn, later);
    assert_eq!(refused(&out), Some((401, "Unauthorized".into())));
    let other = addr("192.0.2.21:5000");
    let (_, out) = promote(&mut node, other, "pub", "pw-pub", addr("192.0.2.21:5001"), later);
    assert_eq!(refused(&out), Some((403, "Register From This Address First".into())));
    // An SN port that does not answer the probe: refused once the probe times out.
    let (_, out) = promote(&mut node, public, "pub", "pw-pub", pub_sn, later);
    let [(to, Msg::Probe { .. })] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(*to, pub_sn);
    let out = decoded(node.tick(later + PROBE_TIMEOUT + Duration::from_secs(1)));
    assert!(
        out.iter().any(|(to, m)| *to == public
            && matches!(m, Msg::Error { code: 403, reason } if reason.starts_with("Not Reachable"))),
        "{out:?}"
    );

    // Now it answers: the grant comes back sealed. A ProbeAck from elsewhere changes nothing.
    let now = later + Duration::from_secs(5);
    let (handoff, out) = promote(&mut node, public, "pub", "pw-pub", pub_sn, now);
    let [(_, Msg::Probe { nonce })] = out.as_slice() else { panic!("{out:?}") };
    let mut wire_log: Vec<Vec<u8>> = Vec::new();
    let salt = challenge(&mut node, public, "pub", now).1.unwrap();
    let stored = ClientKey::derive("pw-pub", &salt).verifier(salt).stored_key;
    let tag = probe_tag(&stored, nonce);
    // From elsewhere, or from the SN port but not tagged with pub's StoredKey (another SN
    // listening there, say): nothing.
    assert!(
        ask(&mut node, addr("192.0.2.99:5001"), 3, &Msg::ProbeAck { nonce: *nonce, tag }, now).is_empty()
    );
    let wrong = probe_tag(&[0; 32], nonce);
    assert!(ask(&mut node, pub_sn, 3, &Msg::ProbeAck { nonce: *nonce, tag: wrong }, now).is_empty());
    let ack = wire::encode(3, &Msg::ProbeAck { nonce: *nonce, tag });
    wire_log.push(ack.clone());
    let out = node.handle(pub_sn, &ack, now);
    wire_log.extend(out.iter().map(|(_, d)| d.clone()));
    let out = decoded(out);
    let [(to, Msg::Promoted { public_key, sealed })] = out.as_slice() else { panic!("{out:?}") };
    let (public_key, sealed) = (*public_key, sealed.clone());
    assert_eq!(*to, public);
    // An eavesdropper who knows everything on the wire, and even the StoredKey (the first
    // registration carries it), but not the peer's ephemeral private key: nothing.
    let eve = Handoff::new().unwrap();
    assert!(eve.open(&public_key, &stored, "pub", &sealed).is_err());
    let grant = handoff.open(&public_key, &stored, "pub", &sealed).unwrap();
    assert_eq!(grant.keys.len(), 2);
    for (_, k) in &grant.keys {
        assert!(
            !wire_log.iter().any(|d| d.windows(32).any(|w| w == k)),
            "a key crossed the wire in the clear"
        );
    }
    assert!(grant.members.contains(&me));
    // The grant's keys are the overlay's: a datagram the promoted SN seals opens at the SN.
    let mut promoted =
        Overlay::new(OverlayConfig::default(), pub_sn, None, vec![me], now, 5_000_000 + 66_000);
    promoted.grant(grant.keys.clone());
    let hello = promoted.seal(&OverlayMsg::Members { sns: vec![pub_sn] }, now).unwrap();
    node.handle(pub_sn, &hello, now);
    assert!(node.members().contains(&pub_sn));
    // Renewal: pub asks again as a member (the overlay has its two SNs now); same checks,
    // probe included, and the same epochs' keys come back.
    let (handoff, out) = promote(&mut node, public, "pub", "pw-pub", pub_sn, now);
    let [(_, Msg::Probe { nonce })] = out.as_slice() else { panic!("{out:?}") };
    let tag = probe_tag(&stored, nonce);
    let out = ask(&mut node, pub_sn, 4, &Msg::ProbeAck { nonce: *nonce, tag }, now);
    let [(_, Msg::Promoted { public_key, sealed })] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(handoff.open(public_key, &stored, "pub", sealed).unwrap().keys, grant.keys);
    // Another public peer now: the overlay has enough SNs.
    let other_pub = addr("192.0.2.30:5000");
    register(&mut node, other_pub, "opub", other_pub, t0);
    let (_, out) = promote(&mut node, other_pub, "opub", "pw-opub", addr("192.0.2.30:5001"), now);
    assert_eq!(refused(&out), Some((409, "Enough Supernodes".into())));
    // A forged membership (a made-up key; the raw secret of another overlay) is refused.
    let ts = 5_000_000 + 66_000;
    let forged = overlay::seal(
        &overlay::key(b"not the overlay's epoch key!!!!"),
        ts,
        1,
        &OverlayMsg::Members { sns: vec![] },
    );
    assert!(node.handle(addr("192.0.2.50:5001"), &forged, now).is_empty());
    assert!(!node.members().contains(&addr("192.0.2.50:5001")));

    // pub goes offline: the grant is withdrawn (Revoke to the members and to pub's SN).
    let gone = now + Duration::from_secs(200);
    let out = node.tick(gone);
    assert!(out.iter().any(|(to, _)| *to == pub_sn), "the revocation reaches the promoted SN");
    assert!(!node.members().contains(&pub_sn));
    let again = promoted.seal(&OverlayMsg::Members { sns: vec![] }, gone).unwrap();
    assert!(node.handle(pub_sn, &again, gone).is_empty());
    assert!(!node.members().contains(&pub_sn), "a withdrawn SN is refused");
}

/// Whether every user is found online through `at`.
async fn all_found(asker: &UdpSocket, at: SocketAddr, users: &[String]) -> bool {
    for u in users {
        match client::lookup(asker, at, u, Duration::from_millis(800)).await {
            Ok(f) if f.online => {}
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn a_public_peer_is_promoted_joins_the_overlay_and_answers_lookups() {
    let (_dir, [a, b, c]) = common::three_sns("skype-promotion", |c| c.promote_min_uptime_secs = 1).await;
    let cfg = PeerConfig {
        user: "pat".into(),
        password: "pat-password".into(),
        supernode: a.addr(),
        fallback: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stun: None,
        turn: None,
        promote: Some(PromoteConfig {
            after: Duration::from_millis(1500),
            listen: "127.0.0.1:0".parse().unwrap(),
        }),
    };
    let pat = Peer::start(cfg).await.unwrap();
    let sn_port = pat.sn_port().unwrap();
    let mut promoted = pat.promoted();
    let shutdown = Shutdown::new();
    let (cmd, rx) = mpsc::channel::<(Command, oneshot::Sender<String>)>(4);
    let (lines, mut lines_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(pat.run(rx, lines, shutdown.clone()));

    // Users registered at the three SNs.
    let mut users = Vec::new();
    let mut sockets = Vec::new();
    for (i, at) in [a.addr(), b.addr(), c.addr()].into_iter().cycle().take(9).enumerate() {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let host = Candidate { kind: CandidateKind::Host, addr: s.local_addr().unwrap() };
        let user = format!("user{i}");
        client::register(&s, at, &user, "pw", vec![host], Duration::from_secs(5)).await.unwrap();
        users.push(user);
        sockets.push(s);
    }
    users.push("pat".into());

    let got = tokio::time::timeout(Duration::from_secs(30), promoted.wait_for(|p| p.is_some()))
        .await
        .map(|r| r.map(|p| *p));
    let Ok(Ok(at)) = got else { panic!("pat was not promoted within 30 s") };
    assert_eq!(at, Some(sn_port));
    let line = tokio::time::timeout(Duration::from_secs(5), lines_rx.recv()).await.unwrap().unwrap();
    assert_eq!(line, format!("appnet skype: promoted: supernode on udp {sn_port}"));

    // The new SN joins: every SN, the promoted one included, answers for every user (entries
    // move to their new owners on the ring, and stay on two SNs).
    let asker = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for at in [sn_port, a.addr(), b.addr(), c.addr()] {
        let users = users.clone();
        let asker = &asker;
        assert!(
            harness::wait_until(Duration::from_secs(20), Duration::from_millis(300), || {
                let users = users.clone();
                async move { all_found(asker, at, &users).await }
            })
            .await,
            "every user found through {at}"
        );
    }
    // A peer registers through the promoted SN.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let host = Candidate { kind: CandidateKind::Host, addr: s.local_addr().unwrap() };
    client::register(&s, sn_port, "newcomer", "pw", vec![host], Duration::from_secs(5)).await.unwrap();
    // The owner answers the registration, then copies it to the other owner: b may ask that one
    // first, so the entry is found through b once the copy has arrived.
    let newcomer = vec!["newcomer".to_string()];
    let b_addr = b.addr();
    assert!(
        harness::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            let newcomer = newcomer.clone();
            let asker = &asker;
            async move { all_found(asker, b_addr, &newcomer).await }
        })
        .await,
        "newcomer found through b"
    );

    drop(cmd);
    shutdown.trigger();
    task.await.unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    c.stop().await.unwrap();
}
