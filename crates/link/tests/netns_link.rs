//! The emulator between two real namespaces (root only, as CI runs): a TCP handshake and an
//! echo across the link take the configured round trips, settings change on a running link,
//! and nothing is left behind; the namespaces report the TCP congestion control they inherited.

use appnet_link::emulator::{ADDR_A, ADDR_B};
use appnet_link::{Link, LinkSpec, netns};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn ours(name: &str) -> usize {
    netns::list().iter().filter(|n| n.starts_with(&format!("{name}-"))).count()
}

#[test]
fn tcp_across_the_link_takes_the_configured_rtt_and_nothing_is_left() {
    if !netns::is_root() {
        eprintln!("skipped: needs root (network namespaces); interop/link.sh covers it in CI");
        return;
    }
    let name = format!("aplt{}", std::process::id());
    let link = Link::up(&name, &LinkSpec::parse("rtt=30ms").unwrap(), 1).unwrap();
    assert_eq!(ours(&name), 2);
    // New namespaces take the host's TCP congestion control.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").unwrap();
    assert_eq!(link.tcp_congestion().unwrap(), host.trim());
    assert!(netns::sysctl_get(&link.ns_b(), "net/ipv4/no_such_key").is_err());
    let listener = netns::in_netns(&link.ns_b(), || TcpListener::bind((ADDR_B, 0))).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
    });
    let echo = move || {
        let started = Instant::now();
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(ADDR_B.into(), port), Duration::from_secs(5))
            .unwrap();
        assert_eq!(s.local_addr().unwrap().ip(), std::net::IpAddr::V4(ADDR_A));
        s.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        started.elapsed()
    };
    // Handshake (1 RTT) plus request/response (1 RTT).
    let took = netns::in_netns(&link.ns_a(), echo).unwrap();
    assert!(took >= Duration::from_millis(60) && took < Duration::from_millis(75), "{took:?}");
    link.set(&LinkSpec::parse("rtt=10ms").unwrap()).unwrap();
    // The emulator thread takes new settings when it next wakes (at least every 50 ms); nothing
    // shows when it has, so give a busy machine a few of its rounds.
    std::thread::sleep(Duration::from_millis(250));
    let took = netns::in_netns(&link.ns_a(), echo).unwrap();
    assert!(took >= Duration::from_millis(20) && took < Duration::from_millis(35), "{took:?}");
    server.join().unwrap();
    let stats = link.down();
    assert!(stats.a2b.released >= 6 && stats.b2a.released >= 6, "{stats:?}");
    assert_eq!(ours(&name), 0);
}
