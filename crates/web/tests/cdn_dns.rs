//! The CDN end to end on loopback: an origin, two appnet reverse-proxy replicas, and the CDN's
//! DNS server. Resolvers at two different addresses get different replicas for
//! a128.g.akamai.net; a replica that dies stops being handed out; the replica pulls from the
//! origin on a miss and serves hits after.

mod proxy_support;

use appnet_dns::wire::message;
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::query::opcode;
use appnet_dns::wire::rrtype::code;
use appnet_netkit::Service;
use appnet_netkit::harness::{start, wait_until};
use appnet_web::cdn::config::{Network, Replica};
use appnet_web::cdn::{CdnConfig, CdnDnsServer};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use proxy_support::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Asks `server` for the A record of `name` from source address `from` (UDP, 5 s limit).
async fn resolve(server: SocketAddr, from: &str, name: &str) -> (u16, Vec<IpAddr>, u32) {
    let sock = tokio::net::UdpSocket::bind(format!("{from}:0")).await.unwrap();
    let q = message::build_query(42, opcode::QUERY, &from_text(name).unwrap(), code::A, false, None);
    sock.send_to(&q, server).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.unwrap().unwrap();
    let p = message::parse(&buf[..n]).unwrap();
    let addrs = p
        .answer
        .iter()
        .filter(|r| r.rtype == code::A)
        .map(|r| IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).unwrap()))
        .collect();
    (p.rcode, addrs, p.answer.first().map(|r| r.ttl).unwrap_or(0))
}

#[tokio::test]
async fn resolvers_in_different_networks_get_different_healthy_replicas() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("popular image {n}"), &[("cache-control", "max-age=600")]))
            .await;
    let replica = |ip: &str| ProxyConfig {
        listen: format!("{ip}:0").parse().unwrap(),
        reverse: Some(origin.url()),
        ..Default::default()
    };
    let east = start(ProxyServer::bind(replica("127.0.20.1")).await.unwrap());
    let west = start(ProxyServer::bind(replica("127.0.20.2")).await.unwrap());
    let cfg = CdnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        replicas: vec![
            Replica { name: "east".into(), addr: "127.0.20.1".parse().unwrap(), check: Some(east.addr()) },
            Replica { name: "west".into(), addr: "127.0.20.2".parse().unwrap(), check: Some(west.addr()) },
        ],
        networks: vec![
            Network { prefix: "127.0.4.1/32".into(), replicas: vec!["east".into(), "west".into()] },
            Network { prefix: "127.0.4.2/32".into(), replicas: vec!["west".into(), "east".into()] },
        ],
        check_interval_ms: 50,
        check_timeout_ms: 200,
        fall: 1,
        rise: 1,
        ..CdnConfig::default()
    };
    let server = CdnDnsServer::bind(cfg).await.unwrap();
    let health = server.health();
    let dns = start(server);
    let addr = dns.addr();

    let (rc, a, ttl) = resolve(addr, "127.0.4.1", "a128.g.akamai.net").await;
    assert_eq!((rc, a.clone()), (0, vec!["127.0.20.1".parse::<IpAddr>().unwrap()]));
    assert!(ttl > 0 && ttl <= 60, "short TTL, got {ttl}");
    let (_, b, _) = resolve(addr, "127.0.4.2", "a128.g.akamai.net").await;
    assert_eq!(b, vec!["127.0.20.2".parse::<IpAddr>().unwrap()]);

    // The handed-out replica pulls from the origin on a miss, then serves hits.
    let target = SocketAddr::new(a[0], east.addr().port());
    let miss = send(target, "GET", "/popular-image.jpg", &[("host", "a128.g.akamai.net")]).await;
    assert_eq!(miss.x_cache(), "MISS");
    let hit = send(target, "GET", "/popular-image.jpg", &[("host", "a128.g.akamai.net")]).await;
    assert_eq!((hit.x_cache(), &hit.body), ("HIT", &miss.body));

    // East dies: after a failed check, resolver 1 is sent west.
    east.stop().await.unwrap();
    let h = health.clone();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let h = h.clone();
            async move { !h.read().unwrap()[0].up }
        })
        .await
    );
    let (_, a, _) = resolve(addr, "127.0.4.1", "a128.g.akamai.net").await;
    assert_eq!(a, vec!["127.0.20.2".parse::<IpAddr>().unwrap()]);
    // Both dead: SERVFAIL rather than a dead address.
    west.stop().await.unwrap();
    let h = health.clone();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            let h = h.clone();
            async move { !h.read().unwrap()[1].up }
        })
        .await
    );
    assert_eq!(resolve(addr, "127.0.4.1", "a128.g.akamai.net").await.0, 2);
    dns.stop().await.unwrap();
}

#[tokio::test]
async fn answers_over_tcp_too() {
    let cfg = CdnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        replicas: vec![Replica { name: "only".into(), addr: "127.0.20.9".parse().unwrap(), check: None }],
        check_interval_ms: 0,
        ..CdnConfig::default()
    };
    let server = CdnDnsServer::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let dns = start(server);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let q = message::build_query(
        9,
        opcode::QUERY,
        &from_text("a128.g.akamai.net").unwrap(),
        code::A,
        false,
        None,
    );
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    let p = message::parse(&buf).unwrap();
    assert_eq!(p.answer[0].rdata, vec![127, 0, 20, 9]);
    assert!(p.aa);
    dns.stop().await.unwrap();
}

/// One query over TCP from source address `from`; the A record's address.
async fn tcp_query(addr: SocketAddr, from: [u8; 4]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let q = message::build_query(
        7,
        opcode::QUERY,
        &from_text("a128.g.akamai.net").unwrap(),
        code::A,
        false,
        None,
    );
    s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    message::parse(&buf).unwrap().answer[0].rdata.clone()
}

#[tokio::test]
async fn silent_tcp_connections_cannot_lock_out_other_clients() {
    let cfg = CdnConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        replicas: vec![Replica { name: "only".into(), addr: "127.0.20.9".parse().unwrap(), check: None }],
        check_interval_ms: 0,
        ..CdnConfig::default()
    };
    let server = CdnDnsServer::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let dns = start(server);
    // More silent connections than the server's 256 slots, from nine addresses (each within
    // its per-address share): the server makes room by closing the longest-waiting ones.
    let mut silent = Vec::new();
    for i in 0..288u32 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 7, (i / 32 + 1) as u8], 0).into()).unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    let answer = tokio::time::timeout(Duration::from_secs(5), tcp_query(addr, [127, 0, 8, 1])).await;
    assert_eq!(
        answer.expect("a newcomer is answered while silent connections fill the server"),
        vec![127, 0, 20, 9]
    );
    drop(silent);
    dns.stop().await.unwrap();
}
