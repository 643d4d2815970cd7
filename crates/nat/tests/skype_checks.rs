//! ICE-style checks between two agents behind simulated NATs, with a fake clock: two
//! endpoint-independent-mapping NATs with address-and-port-dependent filtering (what Linux
//! masquerade does) are punched through by the simultaneous checks; behind a symmetric NAT the
//! direct pairs fail and a relayed pair is selected.

use appnet_nat::skype::checks::{Checks, Credentials, Output, Role};
use appnet_nat::skype::wire::{Candidate, CandidateKind};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A NAT: endpoint-independent or address-and-port-dependent (symmetric) mapping, always
/// address-and-port-dependent filtering.
struct Nat {
    public: IpAddr,
    symmetric: bool,
    next_port: u16,
    map: HashMap<(SocketAddr, Option<SocketAddr>), u16>,
    inside: HashMap<u16, SocketAddr>,
    allowed: HashSet<(u16, SocketAddr)>,
}

impl Nat {
    fn new(public: &str, symmetric: bool) -> Nat {
        Nat {
            public: public.parse().unwrap(),
            symmetric,
            next_port: 40000,
            map: HashMap::new(),
            inside: HashMap::new(),
            allowed: HashSet::new(),
        }
    }

    fn out(&mut self, from: SocketAddr, to: SocketAddr) -> SocketAddr {
        let key = (from, self.symmetric.then_some(to));
        let port = match self.map.get(&key) {
            Some(p) => *p,
            None => {
                self.next_port += 7;
                self.map.insert(key, self.next_port);
                self.inside.insert(self.next_port, from);
                self.next_port
            }
        };
        self.allowed.insert((port, to));
        SocketAddr::new(self.public, port)
    }

    fn inbound(&self, to: SocketAddr, from: SocketAddr) -> Option<SocketAddr> {
        if to.ip() != self.public || !self.allowed.contains(&(to.port(), from)) {
            return None;
        }
        self.inside.get(&to.port()).copied()
    }
}

struct Side {
    host: Candidate,
    relayed: Candidate,
    nat: Nat,
    checks: Option<Checks>,
    selected: Option<(Candidate, SocketAddr)>,
}

const STUN: &str = "100.64.0.1:3478";

fn side(host: &str, public: &str, relayed: &str, symmetric: bool) -> Side {
    Side {
        host: Candidate { kind: CandidateKind::Host, addr: addr(host) },
        relayed: Candidate { kind: CandidateKind::Relayed, addr: addr(relayed) },
        nat: Nat::new(public, symmetric),
        checks: None,
        selected: None,
    }
}

impl Side {
    /// Host, server-reflexive (the NAT's mapping towards the STUN server) and relayed.
    fn candidates(&mut self) -> Vec<Candidate> {
        let srflx = self.nat.out(self.host.addr, addr(STUN));
        vec![self.host, Candidate { kind: CandidateKind::ServerReflexive, addr: srflx }, self.relayed]
    }
}

/// Runs both agents for up to 10 simulated seconds; returns both selections.
fn call(mut a: Side, mut b: Side) -> [Option<(Candidate, SocketAddr)>; 2] {
    let now0 = Instant::now();
    let (ca, cb) = (a.candidates(), b.candidates());
    let cred = |u: &str| Credentials { ufrag: u.into(), pwd: format!("{u}-password-0123456789") };
    a.checks = Some(Checks::new(Role::Controlling, cred("alic"), cred("bobb"), &ca, &cb, now0));
    b.checks = Some(Checks::new(Role::Controlled, cred("bobb"), cred("alic"), &cb, &ca, now0));
    let mut sides = [a, b];
    // (sender index, base, destination, data)
    let mut queue: VecDeque<(usize, Candidate, SocketAddr, Vec<u8>)> = VecDeque::new();
    for step in 0..2000u32 {
        let now = now0 + Duration::from_millis(5 * step as u64);
        for (i, s) in sides.iter_mut().enumerate() {
            for o in s.checks.as_mut().unwrap().poll(now) {
                match o {
                    Output::Transmit { local, to, data } => queue.push_back((i, local, to, data)),
                    Output::Selected { local, remote } => s.selected = Some((local, remote)),
                    Output::Failed => {}
                }
            }
        }
        let mut budget = 1000;
        while let Some((i, local, to, data)) = queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "packet storm");
            // Out through the sender's NAT, or from its relayed address on the relay.
            let src = if local.kind == CandidateKind::Relayed {
                local.addr
            } else {
                sides[i].nat.out(local.addr, to)
            };
            // In: the relay hands a datagram for a relayed address to its owner; a NAT lets in
            // only what its filter allows.
            let target = (0..2).find_map(|j| {
                if sides[j].relayed.addr == to {
                    Some((j, sides[j].relayed))
                } else {
                    sides[j].nat.inbound(to, src).map(|_| (j, sides[j].host))
                }
            });
            let Some((j, base)) = target else { continue };
            let s = &mut sides[j];
            for o in s.checks.as_mut().unwrap().receive(base, src, &data, now) {
                match o {
                    Output::Transmit { local, to, data } => queue.push_back((j, local, to, data)),
                    Output::Selected { local, remote } => s.selected = Some((local, remote)),
                    Output::Failed => {}
                }
            }
        }
        if sides.iter().all(|s| s.selected.is_some()) {
            break;
        }
    }
    [sides[0].selected, sides[1].selected]
}

#[test]
fn two_endpoint_independent_nats_are_punched_through_without_the_relay() {
    let alice = side("10.1.0.2:5000", "100.64.0.11", "100.64.0.1:50001", false);
    let bob = side("10.2.0.2:6000", "100.64.0.12", "100.64.0.1:50002", false);
    let [a, b] = call(alice, bob);
    let (a, b) = (a.expect("alice selected a pair"), b.expect("bob selected a pair"));
    assert_eq!(a.0.kind, CandidateKind::Host);
    assert_eq!(b.0.kind, CandidateKind::Host);
    assert_eq!(a.1.ip().to_string(), "100.64.0.12", "alice talks to bob's NAT directly");
    assert_eq!(b.1.ip().to_string(), "100.64.0.11", "bob talks to alice's NAT directly");
}

#[test]
fn behind_a_symmetric_nat_the_direct_pairs_fail_and_a_relay_is_selected() {
    let alice = side("10.1.0.2:5000", "100.64.0.11", "100.64.0.1:50001", false);
    let bob = side("10.2.0.2:6000", "100.64.0.12", "100.64.0.1:50002", true);
    let [a, b] = call(alice, bob);
    let (a, b) = (a.expect("alice selected a pair"), b.expect("bob selected a pair"));
    let relayed = |(l, r): (Candidate, SocketAddr)| {
        l.kind == CandidateKind::Relayed || r.ip().to_string() == "100.64.0.1"
    };
    assert!(relayed(a), "alice: {a:?}");
    assert!(relayed(b), "bob: {b:?}");
}

#[test]
fn checks_without_the_right_password_are_ignored() {
    let now = Instant::now();
    let host = Candidate { kind: CandidateKind::Host, addr: addr("10.1.0.2:5000") };
    let peer = Candidate { kind: CandidateKind::Host, addr: addr("10.1.0.3:5000") };
    let cred = |u: &str, p: &str| Credentials { ufrag: u.into(), pwd: p.into() };
    let mut bob = Checks::new(
        Role::Controlled,
        cred("bobb", "right-password-0123"),
        cred("alic", "a"),
        &[peer],
        &[host],
        now,
    );
    let mut mallory = Checks::new(
        Role::Controlling,
        cred("alic", "a"),
        cred("bobb", "wrong-password-0123"),
        &[host],
        &[peer],
        now,
    );
    let sent = mallory.poll(now);
    let Some(Output::Transmit { data, .. }) = sent.first() else { panic!("{sent:?}") };
    assert!(bob.receive(peer, host.addr, data, now).is_empty());
    assert!(bob.receive(peer, host.addr, b"\x00\x01junk", now).is_empty());
}
