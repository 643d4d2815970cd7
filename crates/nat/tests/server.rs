//! The UDP driver: STUN Binding and one relayed round trip over real loopback sockets.

use appnet_nat::stun::attr::code;
use appnet_nat::stun::message::method;
use appnet_nat::stun::{Attr, Class, Message, long_term_key};
use appnet_nat::{TurnConfig, TurnServer, client};
use appnet_netkit::harness::{self, TempDir};
use std::time::Duration;
use tokio::net::UdpSocket;

async fn ask(sock: &UdpSocket, to: std::net::SocketAddr, req: &[u8]) -> Message {
    sock.send_to(req, to).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    Message::decode(&buf[..n]).unwrap()
}

#[tokio::test]
async fn binding_and_a_relayed_round_trip() {
    let dir = TempDir::new("nat-server");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:pw\n").unwrap();
    let config = TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        realm: "r".into(),
        users: Some(users),
        ports: "51000-51099".into(),
        allow_peer: vec!["127.0.0.0/8".into()],
        ..TurnConfig::default()
    };
    let server = TurnServer::bind(config).await.unwrap();
    let running = harness::start(server);
    let addr = running.addr();

    let r = client::binding(addr, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.mapped.port(), r.local.port());

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut req = Message::new(Class::Request, method::ALLOCATE);
    req.attrs.push(Attr::RequestedTransport(17));
    let challenge = ask(&sock, addr, &req.encode(None, true)).await;
    let Some(Attr::Nonce(nonce)) = challenge.get(code::NONCE) else { panic!("{challenge:?}") };
    let key = long_term_key("alice", "r", "pw");
    let signed = |method: u16, attrs: Vec<Attr>| {
        let mut m = Message::new(Class::Request, method);
        m.attrs = attrs;
        m.attrs.extend([Attr::Username("alice".into()), Attr::Realm("r".into()), Attr::Nonce(nonce.clone())]);
        m.encode(Some((&key, true)), true)
    };
    let raw = signed(method::ALLOCATE, vec![Attr::RequestedTransport(17)]);
    let ok = ask(&sock, addr, &raw).await;
    assert_eq!(ok.class, Class::Success, "{ok:?}");
    let Some(Attr::XorRelayedAddress(relayed)) = ok.get(code::XOR_RELAYED_ADDRESS) else { panic!("{ok:?}") };

    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let bound = ask(
        &sock,
        addr,
        &signed(method::CHANNEL_BIND, vec![Attr::ChannelNumber(0x4000), Attr::XorPeerAddress(peer_addr)]),
    )
    .await;
    assert_eq!(bound.class, Class::Success, "{bound:?}");

    sock.send_to(&[0x40, 0x00, 0x00, 0x03, b'a', b'b', b'c', 0], addr).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) =
        tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!((&buf[..n], from), (&b"abc"[..], *relayed));
    peer.send_to(b"xyz", *relayed).await.unwrap();
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], &[0x40, 0x00, 0x00, 0x03, b'x', b'y', b'z']);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn rfc5780_discovery_on_loopback_sees_no_nat() {
    let dir = TempDir::new("nat-discovery");
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:pw\n").unwrap();
    let config = TurnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        alt_listen: Some("127.0.0.2:0".parse().unwrap()),
        users: Some(users),
        ..TurnConfig::default()
    };
    let server = TurnServer::bind(config).await.unwrap();
    let other = server.alt_addr().unwrap();
    let running = harness::start(server);
    let addr = running.addr();
    assert_eq!(other.ip().to_string(), "127.0.0.2");
    let b =
        appnet_nat::discovery::discover(addr, Duration::from_secs(5), Duration::from_secs(2)).await.unwrap();
    assert_eq!(b.first.other, Some(other));
    assert!(!b.nat);
    use appnet_nat::discovery::{Filtering, Mapping};
    assert_eq!(b.mapping, Some(Mapping::EndpointIndependent));
    assert_eq!(b.filtering, Some(Filtering::EndpointIndependent));
}
