//! The sans-IO TURN client against the sans-IO TURN server core, with a fake clock: the 401
//! challenge, the allocation, a permission, data both ways, a stale nonce, refresh and release.

use appnet_nat::turn::client::{Event, TurnClient};
use appnet_nat::turn::{Action, Core, CoreConfig};
use appnet_netkit::acl::AccessList;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn core(now: Instant) -> Core {
    let cfg = CoreConfig {
        realm: "lab".into(),
        users: vec![("alice".into(), "secret".into())],
        relay_ip: "198.51.100.1".parse().unwrap(),
        ports: (50000, 50009),
        allow_peer: AccessList::parse(&[] as &[&str]).unwrap(),
        user_quota: 2,
        ip_quota: 2,
        max_allocations: 10,
        nonce_lifetime: Duration::from_secs(60),
        max_lifetime: 3600,
        other_address: None,
        primary_address: None,
        unauth_rate: 0,
    };
    Core::new(cfg, now)
}

const ME: &str = "203.0.113.5:4000";

/// Feeds the client's transmissions to the server and the server's replies back until quiet;
/// returns the client's other events and the server's datagrams for peers.
fn exchange(
    client: &mut TurnClient,
    server: &mut Core,
    mut events: Vec<Event>,
    now: Instant,
) -> (Vec<Event>, Vec<Action>) {
    let me: SocketAddr = ME.parse().unwrap();
    let (mut seen, mut to_peers) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let mut next = Vec::new();
        for e in events {
            match e {
                Event::Transmit(raw) => {
                    for a in server.from_client(me, &raw, now, &mut |_| true) {
                        match a {
                            Action::ToClient { data, .. } => next.extend(client.receive(&data, now)),
                            other => to_peers.push(other),
                        }
                    }
                }
                other => seen.push(other),
            }
        }
        if next.is_empty() {
            return (seen, to_peers);
        }
        events = next;
    }
    panic!("the exchange did not settle")
}

#[test]
fn allocate_permit_and_relay_both_ways() {
    let now = Instant::now();
    let mut server = core(now);
    let mut client = TurnClient::new("alice", "secret");
    let start = client.start(now);
    let (seen, _) = exchange(&mut client, &mut server, start, now);
    let [Event::Allocated { relayed, mapped }] = seen.as_slice() else { panic!("{seen:?}") };
    assert_eq!((relayed.to_string().as_str(), mapped.to_string().as_str()), ("198.51.100.1:50000", ME));
    let peer: SocketAddr = "192.0.2.77:9000".parse().unwrap();
    let permit = client.permit(peer.ip(), now);
    let (seen, _) = exchange(&mut client, &mut server, permit, now);
    assert!(seen.is_empty(), "{seen:?}");
    // Out: a Send indication becomes a datagram from the relayed port to the peer.
    let me: SocketAddr = ME.parse().unwrap();
    let out = server.from_client(me, &client.send_to(peer, b"hello bob"), now, &mut |_| true);
    assert_eq!(out, vec![Action::ToPeer { port: 50000, peer, data: b"hello bob".to_vec() }]);
    // In: the peer's datagram comes back as a Data indication.
    let Some(Action::ToClient { data, .. }) = server.from_peer(50000, peer, b"hi alice", now) else {
        panic!()
    };
    assert_eq!(client.receive(&data, now), vec![Event::Data { peer, data: b"hi alice".to_vec() }]);
}

#[test]
fn a_stale_nonce_is_followed_and_the_allocation_refreshed_then_released() {
    let now = Instant::now();
    let mut server = core(now);
    let mut client = TurnClient::new("alice", "secret");
    let start = client.start(now);
    exchange(&mut client, &mut server, start, now);
    assert!(client.relayed().is_some());
    // Half the lifetime later, past the 60 s nonce: Refresh gets 438, then succeeds.
    let later = now + Duration::from_secs(301);
    let polled = client.poll(later);
    assert_eq!(polled.len(), 1);
    let (seen, _) = exchange(&mut client, &mut server, polled, later);
    assert!(seen.is_empty(), "{seen:?}");
    assert!(client.poll(later + Duration::from_secs(10)).is_empty(), "refreshed: nothing due");
    let close = client.close(later);
    let (_, closed) = exchange(&mut client, &mut server, close, later);
    assert_eq!(closed, vec![Action::CloseRelay { port: 50000 }]);
    assert_eq!(server.allocations(), 0);
}

#[test]
fn a_wrong_password_fails_after_the_challenge_and_silence_fails_after_retransmissions() {
    let now = Instant::now();
    let mut server = core(now);
    let mut client = TurnClient::new("alice", "guess");
    let start = client.start(now);
    let (seen, _) = exchange(&mut client, &mut server, start, now);
    assert!(matches!(seen.as_slice(), [Event::Failed(_)]), "{seen:?}");
    let mut lonely = TurnClient::new("alice", "secret");
    let mut sent = lonely.start(now).len();
    let mut failed = false;
    for s in 1..200 {
        for e in lonely.poll(now + Duration::from_millis(500 * s)) {
            match e {
                Event::Transmit(_) => sent += 1,
                Event::Failed(_) => failed = true,
                _ => {}
            }
        }
    }
    assert!(failed && sent == 7, "sent {sent}, failed {failed}");
}
