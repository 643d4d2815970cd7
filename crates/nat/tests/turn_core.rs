//! The sans-IO TURN core, driven with a fake clock.

use appnet_nat::stun::attr::code;
use appnet_nat::stun::message::method;
use appnet_nat::stun::{Attr, Class, Message, long_term_key};
use appnet_nat::turn::{Action, Core, CoreConfig, Origin};
use appnet_netkit::acl::AccessList;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn config(allow: &[&str]) -> CoreConfig {
    CoreConfig {
        realm: "r".into(),
        users: vec![("alice".into(), "pw".into()), ("bob".into(), "pw2".into())],
        relay_ip: "127.0.0.1".parse().unwrap(),
        ports: (50000, 50009),
        allow_peer: AccessList::parse(allow).unwrap(),
        user_quota: 2,
        ip_quota: 2,
        max_allocations: 100,
        nonce_lifetime: Duration::from_secs(60),
        max_lifetime: 3600,
        other_address: None,
        primary_address: None,
        unauth_rate: 0,
    }
}

struct Client {
    addr: SocketAddr,
    user: &'static str,
    pass: &'static str,
    nonce: String,
}

fn one_reply(actions: &[Action]) -> Message {
    match actions.first() {
        Some(Action::ToClient { data, .. }) => Message::decode(data).unwrap(),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn error_code(m: &Message) -> Option<u16> {
    match m.get(code::ERROR_CODE) {
        Some(Attr::ErrorCode(c, _)) => Some(*c),
        _ => None,
    }
}

impl Client {
    fn new(core: &mut Core, addr: &str, user: &'static str, pass: &'static str, now: Instant) -> Client {
        let addr = addr.parse().unwrap();
        let mut req = Message::new(Class::Request, method::ALLOCATE);
        req.attrs.push(Attr::RequestedTransport(17));
        let r = one_reply(&core.from_client(addr, &req.encode(None, true), now, &mut |_| true));
        assert_eq!(error_code(&r), Some(401));
        let Some(Attr::Nonce(nonce)) = r.get(code::NONCE) else { panic!("no nonce") };
        Client { addr, user, pass, nonce: nonce.clone() }
    }

    fn request(
        &self,
        core: &mut Core,
        method: u16,
        attrs: Vec<Attr>,
        now: Instant,
    ) -> (Message, Vec<Action>) {
        let mut req = Message::new(Class::Request, method);
        req.attrs = attrs;
        req.attrs.push(Attr::Username(self.user.into()));
        req.attrs.push(Attr::Realm("r".into()));
        req.attrs.push(Attr::Nonce(self.nonce.clone()));
        let key = long_term_key(self.user, "r", self.pass);
        let raw = req.encode(Some((&key, false)), true);
        let actions = core.from_client(self.addr, &raw, now, &mut |_| true);
        let reply = one_reply(&actions);
        assert_eq!(reply.tid, req.tid);
        (reply, actions)
    }
}

#[test]
fn binding_request_gets_the_xor_mapped_address() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let from: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let req = Message::new(Class::Request, method::BINDING);
    let r = one_reply(&core.from_client(from, &req.encode(None, true), now, &mut |_| true));
    assert_eq!(r.class, Class::Success);
    assert_eq!(r.get(code::XOR_MAPPED_ADDRESS), Some(&Attr::XorMappedAddress(from)));
}

#[test]
fn allocate_permission_send_data_and_channels() {
    let now = Instant::now();
    let mut core = Core::new(config(&["127.0.0.0/8"]), now);
    let c = Client::new(&mut core, "127.0.0.1:4000", "alice", "pw", now);
    let (r, _) = c.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    assert_eq!(r.class, Class::Success, "{r:?}");
    let Some(Attr::XorRelayedAddress(relayed)) = r.get(code::XOR_RELAYED_ADDRESS) else { panic!() };
    assert_eq!(relayed.port(), 50000);
    // A second Allocate (new transaction) on the same 5-tuple is 437.
    let (r, _) = c.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    assert_eq!(error_code(&r), Some(437));
    let peer: SocketAddr = "127.0.0.2:7000".parse().unwrap();
    // Without permission, nothing goes through either way.
    assert_eq!(core.from_peer(50000, peer, b"hi", now), None);
    let (r, _) = c.request(&mut core, method::CREATE_PERMISSION, vec![Attr::XorPeerAddress(peer)], now);
    assert_eq!(r.class, Class::Success);
    let mut send = Message::new(Class::Indication, method::SEND);
    send.attrs = vec![Attr::XorPeerAddress(peer), Attr::Data(b"ping".to_vec())];
    let out = core.from_client(c.addr, &send.encode(None, false), now, &mut |_| true);
    assert_eq!(out, vec![Action::ToPeer { port: 50000, peer, data: b"ping".to_vec() }]);
    let Some(Action::ToClient { data, .. }) = core.from_peer(50000, peer, b"pong", now) else { panic!() };
    let ind = Message::decode(&data).unwrap();
    assert_eq!((ind.class, ind.method), (Class::Indication, method::DATA));
    assert_eq!(ind.get(code::DATA), Some(&Attr::Data(b"pong".to_vec())));
    // Channel: peer data comes back as ChannelData, and ChannelData goes out.
    let (r, _) = c.request(
        &mut core,
        method::CHANNEL_BIND,
        vec![Attr::ChannelNumber(0x4001), Attr::XorPeerAddress(peer)],
        now,
    );
    assert_eq!(r.class, Class::Success);
    let Some(Action::ToClient { data, .. }) = core.from_peer(50000, peer, b"xy", now) else { panic!() };
    assert_eq!(data, vec![0x40, 0x01, 0, 2, b'x', b'y']);
    let out = core.from_client(c.addr, &[0x40, 0x01, 0, 3, 1, 2, 3, 0], now, &mut |_| true);
    assert_eq!(out, vec![Action::ToPeer { port: 50000, peer, data: vec![1, 2, 3] }]);
    // A bound channel cannot move to another peer; a bad number is 400.
    let other: SocketAddr = "127.0.0.3:1".parse().unwrap();
    let (r, _) = c.request(
        &mut core,
        method::CHANNEL_BIND,
        vec![Attr::ChannelNumber(0x4001), Attr::XorPeerAddress(other)],
        now,
    );
    assert_eq!(error_code(&r), Some(400));
    let (r, _) = c.request(
        &mut core,
        method::CHANNEL_BIND,
        vec![Attr::ChannelNumber(0x3000), Attr::XorPeerAddress(other)],
        now,
    );
    assert_eq!(error_code(&r), Some(400));
    // Permissions end after 300 s unless refreshed; the allocation lives on (600 s).
    let later = now + Duration::from_secs(301);
    assert_eq!(core.from_peer(50000, "127.0.0.2:9".parse().unwrap(), b"x", later), None);
    // Refresh with lifetime 0 deletes the allocation and closes its port.
    let (r, actions) = c.request(&mut core, method::REFRESH, vec![Attr::Lifetime(0)], now);
    assert_eq!(r.class, Class::Success);
    assert!(actions.contains(&Action::CloseRelay { port: 50000 }));
    assert_eq!(core.allocations(), 0);
}

#[test]
fn restricted_peers_are_refused_with_403() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let c = Client::new(&mut core, "192.0.2.9:4000", "alice", "pw", now);
    c.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    for peer in ["127.0.0.1:1", "10.0.0.1:1", "192.168.0.1:1", "169.254.0.1:1"] {
        let (r, _) = c.request(
            &mut core,
            method::CREATE_PERMISSION,
            vec![Attr::XorPeerAddress(peer.parse().unwrap())],
            now,
        );
        assert_eq!(error_code(&r), Some(403), "{peer}");
    }
    let (r, _) = c.request(
        &mut core,
        method::CREATE_PERMISSION,
        vec![Attr::XorPeerAddress("8.8.8.8:53".parse().unwrap())],
        now,
    );
    assert_eq!(r.class, Class::Success);
}

#[test]
fn wrong_password_is_401_and_stale_nonce_is_438() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let bad = Client::new(&mut core, "192.0.2.9:4000", "alice", "wrong", now);
    let (r, _) = bad.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    assert_eq!(error_code(&r), Some(401));
    let nobody = Client::new(&mut core, "192.0.2.9:4001", "mallory", "pw", now);
    let (r, _) = nobody.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    assert_eq!(error_code(&r), Some(401));
    let c = Client::new(&mut core, "192.0.2.9:4002", "alice", "pw", now);
    let (r, _) = c.request(
        &mut core,
        method::ALLOCATE,
        vec![Attr::RequestedTransport(17)],
        now + Duration::from_secs(61),
    );
    assert_eq!(error_code(&r), Some(438));
    assert!(r.get(code::NONCE).is_some());
    let mut forged = Client::new(&mut core, "192.0.2.9:4003", "alice", "pw", now);
    forged.nonce = "0000000000000000aaaaaaaaaaaaaaaaaaaaaaaa".into();
    let (r, _) = forged.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
    assert_eq!(error_code(&r), Some(438));
}

#[test]
fn quotas_per_user_and_per_address() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    for (i, want) in [(1, None), (2, None), (3, Some(486))] {
        let c = Client::new(&mut core, &format!("192.0.2.{i}:4000"), "alice", "pw", now);
        let (r, _) = c.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
        assert_eq!(error_code(&r), want, "alice #{i}");
    }
    for (port, want) in [(1, None), (2, Some(486))] {
        let c = Client::new(&mut core, &format!("192.0.2.1:{port}"), "bob", "pw2", now);
        let (r, _) = c.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17)], now);
        assert_eq!(error_code(&r), want, "bob from port {port}");
    }
}

#[test]
fn even_port_reservation_token_and_expiry() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let a = Client::new(&mut core, "192.0.2.1:1", "alice", "pw", now);
    let (r, _) =
        a.request(&mut core, method::ALLOCATE, vec![Attr::RequestedTransport(17), Attr::EvenPort(true)], now);
    let Some(Attr::XorRelayedAddress(relayed)) = r.get(code::XOR_RELAYED_ADDRESS) else { panic!("{r:?}") };
    assert_eq!(relayed.port() % 2, 0);
    let Some(Attr::ReservationToken(token)) = r.get(code::RESERVATION_TOKEN) else { panic!() };
    assert!(core.port_used(relayed.port() + 1));
    let b = Client::new(&mut core, "192.0.2.2:1", "bob", "pw2", now);
    let (r, _) = b.request(
        &mut core,
        method::ALLOCATE,
        vec![Attr::RequestedTransport(17), Attr::ReservationToken(*token)],
        now,
    );
    assert_eq!(
        r.get(code::XOR_RELAYED_ADDRESS),
        Some(&Attr::XorRelayedAddress(
            "127.0.0.1:0"
                .parse::<SocketAddr>()
                .map(|mut s| {
                    s.set_port(relayed.port() + 1);
                    s
                })
                .unwrap()
        ))
    );
    // Lifetimes: 600 s by default; then the allocation goes and its port closes.
    let actions = core.expire(now + Duration::from_secs(601));
    assert!(actions.contains(&Action::CloseRelay { port: relayed.port() }));
    assert_eq!(core.allocations(), 0);
}

#[test]
fn junk_datagrams_are_ignored() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    for seed in 0u32..3000 {
        let junk: Vec<u8> = (0..(seed % 120))
            .map(|i| (seed.wrapping_mul(2654435761) ^ i.wrapping_mul(40503)) as u8)
            .collect();
        let _ = core.from_client("192.0.2.1:1".parse().unwrap(), &junk, now, &mut |_| true);
    }
    assert_eq!(core.allocations(), 0);
}

#[test]
fn a_retransmitted_allocate_gets_the_same_success() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let c = Client::new(&mut core, "192.0.2.1:1", "alice", "pw", now);
    let mut req = Message::new(Class::Request, method::ALLOCATE);
    req.attrs = vec![
        Attr::RequestedTransport(17),
        Attr::Username("alice".into()),
        Attr::Realm("r".into()),
        Attr::Nonce(c.nonce.clone()),
    ];
    let raw = req.encode(Some((&long_term_key("alice", "r", "pw"), false)), true);
    let first = one_reply(&core.from_client(c.addr, &raw, now, &mut |_| true));
    let again = one_reply(&core.from_client(c.addr, &raw, now, &mut |_| true));
    assert_eq!(first.class, Class::Success);
    assert_eq!(again.get(code::XOR_RELAYED_ADDRESS), first.get(code::XOR_RELAYED_ADDRESS));
    assert_eq!(core.allocations(), 1);
}

fn binding_with(attrs: Vec<Attr>) -> Message {
    let mut req = Message::new(Class::Request, method::BINDING);
    req.attrs = attrs;
    req
}

#[test]
fn change_request_moves_the_answer_to_the_other_ip_and_port() {
    let now = Instant::now();
    let primary: SocketAddr = "192.0.2.1:3478".parse().unwrap();
    let other: SocketAddr = "192.0.2.2:3479".parse().unwrap();
    let cfg = CoreConfig { other_address: Some(other), primary_address: Some(primary), ..config(&[]) };
    let mut core = Core::new(cfg, now);
    let from: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let cases = [
        (false, false, Origin::PRIMARY, primary),
        (true, true, Origin { alt_ip: true, alt_port: true }, other),
        (false, true, Origin { alt_ip: false, alt_port: true }, "192.0.2.1:3479".parse().unwrap()),
        (true, false, Origin { alt_ip: true, alt_port: false }, "192.0.2.2:3478".parse().unwrap()),
    ];
    for (ip, port, want_origin, want_addr) in cases {
        let req = binding_with(vec![Attr::ChangeRequest { ip, port }]);
        let action = core.binding(Origin::PRIMARY, from, &req, now).unwrap();
        let (origin, to, data) = match action {
            Action::ToClient { to, data } => (Origin::PRIMARY, to, data),
            Action::FromOrigin { origin, to, data } => (origin, to, data),
            other => panic!("{other:?}"),
        };
        assert_eq!((origin, to), (want_origin, from));
        let r = Message::decode(&data).unwrap();
        assert_eq!(r.get(code::XOR_MAPPED_ADDRESS), Some(&Attr::XorMappedAddress(from)));
        assert_eq!(r.get(code::RESPONSE_ORIGIN), Some(&Attr::ResponseOrigin(want_addr)));
        assert_eq!(r.get(code::OTHER_ADDRESS), Some(&Attr::OtherAddress(other)));
    }
    // A request that arrived on the alternate address names the primary one as the other.
    let alt = Origin { alt_ip: true, alt_port: true };
    let Some(Action::FromOrigin { origin, data, .. }) = core.binding(alt, from, &binding_with(vec![]), now)
    else {
        panic!("answer from the alternate address expected")
    };
    assert_eq!(origin, alt);
    let r = Message::decode(&data).unwrap();
    assert_eq!(r.get(code::OTHER_ADDRESS), Some(&Attr::OtherAddress(primary)));
    // TURN requests are not Binding: the extra addresses do not answer them.
    assert!(core.binding(alt, from, &Message::new(Class::Request, method::ALLOCATE), now).is_none());
}

#[test]
fn change_request_without_a_second_address_is_420() {
    let now = Instant::now();
    let mut core = Core::new(config(&[]), now);
    let from: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let req = binding_with(vec![Attr::ChangeRequest { ip: true, port: true }]);
    let r = one_reply(&core.from_client(from, &req.encode(None, true), now, &mut |_| true));
    assert_eq!(error_code(&r), Some(420));
    assert_eq!(r.get(code::UNKNOWN_ATTRIBUTES), Some(&Attr::UnknownAttributes(vec![code::CHANGE_REQUEST])));
}

#[test]
fn unauthenticated_error_replies_are_rate_limited_per_source() {
    let now = Instant::now();
    let mut core = Core::new(CoreConfig { unauth_rate: 5, ..config(&[]) }, now);
    let mut req = Message::new(Class::Request, method::ALLOCATE);
    req.attrs.push(Attr::RequestedTransport(17));
    let raw = req.encode(None, true);
    let spoofed: SocketAddr = "203.0.113.9:9".parse().unwrap();
    let answered =
        (0..100).filter(|_| !core.from_client(spoofed, &raw, now, &mut |_| true).is_empty()).count();
    assert_eq!(answered, 10, "burst is twice the rate");
    // Another source still gets its 401 and the first one's budget refills with time.
    let other: SocketAddr = "203.0.113.10:9".parse().unwrap();
    assert_eq!(error_code(&one_reply(&core.from_client(other, &raw, now, &mut |_| true))), Some(401));
    let later = now + Duration::from_secs(1);
    let answered =
        (0..100).filter(|_| !core.from_client(spoofed, &raw, later, &mut |_| true).is_empty()).count();
    assert_eq!(answered, 5);
    // Binding answers are not error replies and stay unlimited.
    let b = Message::new(Class::Request, method::BINDING).encode(None, true);
    assert!((0..50).all(|_| !core.from_client(spoofed, &b, later, &mut |_| true).is_empty()));
}
