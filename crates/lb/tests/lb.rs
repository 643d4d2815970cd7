//! The balancer end to end on loopback: small in-process replicas that say who they are,
//! clients that check which replica answers, and the failure cases (a replica killed
//! mid-connection, a reload, the caps, descriptor churn).

use appnet_lb::proxy_protocol::{self, Version};
use appnet_lb::{Event, HealthCheck, LbConfig, LbServer, Policy};
use appnet_netkit::harness::{self, Running};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);

/// A TCP replica: answers each line with "NAME LINE", and "bye NAME" after the client's FIN.
/// With `proxy` it first reads a PROXY header and answers "from ADDR" before anything else.
struct Replica {
    addr: SocketAddr,
    kill: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill.cancel();
    }
}

async fn replica(name: &str, addr: SocketAddr, proxy: bool) -> Replica {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kill = CancellationToken::new();
    let (name, k) = (name.to_string(), kill.clone());
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let (stream, _) = tokio::select! {
                _ = k.cancelled() => break,
                r = listener.accept() => match r { Ok(p) => p, Err(_) => continue },
            };
            let (name, k) = (name.clone(), k.clone());
            conns.spawn(async move {
                tokio::select! {
                    _ = k.cancelled() => {}
                    _ = serve_replica(stream, &name, proxy) => {}
                }
            });
        }
        // Killed: the listener and every connection close now.
        conns.shutdown().await;
    });
    Replica { addr, kill }
}

async fn serve_replica(mut stream: TcpStream, name: &str, proxy: bool) {
    let mut reader = if proxy {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        let (header, _) = loop {
            if let Ok(Some(h)) = proxy_protocol::parse(&buf) {
                break h;
            }
            if buf.len() > 300 || stream.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            buf.push(byte[0]);
        };
        let from = header.addrs.map(|(src, _)| src.to_string()).unwrap_or_default();
        let v = if header.version == Version::V1 { "v1" } else { "v2" };
        if stream.write_all(format!("from {v} {from}\n").as_bytes()).await.is_err() {
            return;
        }
        BufReader::new(stream)
    } else {
        BufReader::new(stream)
    };
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let answer = format!("{name} {}", line);
                if reader.get_mut().write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = reader.get_mut().write_all(format!("bye {name}\n").as_bytes()).await;
}

fn loopback() -> SocketAddr {
    harness::any_loopback()
}

fn config(backends: &[&Replica]) -> LbConfig {
    LbConfig {
        listen: loopback(),
        backends: backends.iter().map(|r| r.addr).collect(),
        health_interval_ms: 100,
        health_timeout_ms: 500,
        rise: 2,
        fall: 2,
        slow_start_secs: 0,
        ..LbConfig::default()
    }
}

async fn start(config: LbConfig) -> (Running, appnet_lb::LbHandle) {
    let server = LbServer::bind(config).await.unwrap();
    let handle = server.handle();
    (harness::start(server), handle)
}

/// A client connection through the balancer that asks lines and reads answers.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client { reader: BufReader::new(TcpStream::connect(addr).await.unwrap()) }
    }

    /// Sends `text` and returns the replica name that answered, or None if the connection died.
    async fn ask(&mut self, text: &str) -> Option<String> {
        self.reader.get_mut().write_all(format!("{text}\n").as_bytes()).await.ok()?;
        let mut line = String::new();
        let n = tokio::time::timeout(LIMIT, self.reader.read_line(&mut line)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        let (name, rest) = line.trim_end().split_once(' ')?;
        assert_eq!(rest, text);
        Some(name.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_stick_to_one_replica_and_spread_over_all() {
    let r: Vec<Replica> = futures_join(["a", "b", "c"]).await;
    for policy in [Policy::Maglev, Policy::RoundRobin, Policy::LeastConn] {
        let (lb, _h) = start(LbConfig { balance: policy, ..config(&r.iter().collect::<Vec<_>>()) }).await;
        let mut seen = std::collections::HashSet::new();
        let mut clients = Vec::new();
        for _ in 0..24 {
            clients.push(Client::connect(lb.addr()).await);
        }
        for c in clients.iter_mut() {
            let first = c.ask("hello").await.unwrap();
            for i in 0..5 {
                assert_eq!(
                    c.ask(&format!("line {i}")).await.unwrap(),
                    first,
                    "{policy}: a connection changed replica"
                );
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "{policy}: every replica gets connections");
        drop(clients);
        lb.stop().await.unwrap();
    }
}

async fn futures_join<const N: usize>(names: [&str; N]) -> Vec<Replica> {
    let mut out = Vec::new();
    for n in names {
        out.push(replica(n, loopback(), false).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_replica_and_its_answer_comes_back() {
    let r = replica("a", loopback(), false).await;
    let (lb, _h) = start(config(&[&r])).await;
    let mut s = TcpStream::connect(lb.addr()).await.unwrap();
    s.write_all(b"one\ntwo\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut all = String::new();
    tokio::time::timeout(LIMIT, s.read_to_string(&mut all)).await.unwrap().unwrap();
    assert_eq!(all, "a one\na two\nbye a\n");
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_affects_only_its_connections_is_ejected_and_returns() {
    let mut r = futures_join(["a", "b", "c"]).await;
    let (lb, h) = start(config(&r.iter().collect::<Vec<_>>())).await;
    let mut events = h.subscribe();
    let mut clients = Vec::new();
    for _ in 0..30 {
        let mut c = Client::connect(lb.addr()).await;
        let name = c.ask("hi").await.unwrap();
        clients.push((c, name));
    }
    assert!(clients.iter().any(|(_, n)| n == "b"));
    let b_addr = r[1].addr;
    r.remove(1); // kill b: its listener and connections close
    for (c, name) in clients.iter_mut() {
        let answer = c.ask("again").await;
        if name == "b" {
            assert_eq!(answer, None, "b's connections end");
        } else {
            assert_eq!(answer.as_deref(), Some(name.as_str()), "other connections are untouched");
        }
    }
    // Ejected by the checks (or by failed connects): an event says how much moved.
    let down = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(Event::Down { backend, moved, .. }) = events.recv().await {
                break (backend, moved);
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(down.0, b_addr);
    assert!(down.1 > 0.2 && down.1 < 0.5, "moved {}", down.1);
    // New connections all succeed, on a or c.
    for _ in 0..20 {
        let mut c = Client::connect(lb.addr()).await;
        assert_ne!(c.ask("x").await.as_deref(), Some("b"));
    }
    // b comes back on the same address: the checks bring it up and it gets connections again.
    let back = replica("b", b_addr, false).await;
    assert!(
        harness::wait_until(LIMIT, Duration::from_millis(50), || {
            let h = h.clone();
            async move { h.backends().iter().any(|(a, up, _)| *a == b_addr && *up) }
        })
        .await
    );
    let mut names = std::collections::HashSet::new();
    for _ in 0..30 {
        let mut c = Client::connect(lb.addr()).await;
        names.insert(c.ask("y").await.unwrap());
    }
    assert!(names.contains("b"));
    drop(back);
    drop(clients);
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_to_a_dead_backend_are_retried_elsewhere() {
    // One backend is not listening at all: every client still gets through, and passive
    // ejection takes the dead one out without active checks.
    let dead = TcpListener::bind(loopback()).await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let r = replica("a", loopback(), false).await;
    let mut c = config(&[&r]);
    c.backends.push(dead_addr);
    c.health = HealthCheck::None;
    c.balance = Policy::RoundRobin;
    let (lb, h) = start(c).await;
    for _ in 0..10 {
        let mut client = Client::connect(lb.addr()).await;
        assert_eq!(client.ask("hi").await.as_deref(), Some("a"));
    }
    assert!(h.backends().iter().any(|(a, up, _)| *a == dead_addr && !up));
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_headers_carry_the_client_address() {
    let r = replica("a", loopback(), true).await;
    for (version, tag) in [(Version::V1, "v1"), (Version::V2, "v2")] {
        let mut c = config(&[&r]);
        c.proxy_protocol = Some(version);
        let (lb, _h) = start(c).await;
        let s = TcpStream::connect(lb.addr()).await.unwrap();
        let me = s.local_addr().unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        tokio::time::timeout(LIMIT, reader.read_line(&mut line)).await.unwrap().unwrap();
        assert_eq!(line, format!("from {tag} {me}\n"));
        drop(reader);
        lb.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_drains_a_removed_replica_and_sends_new_connections_elsewhere() {
    let r = futures_join(["a", "b"]).await;
    let (lb, h) = start(LbConfig { balance: Policy::RoundRobin, ..config(&[&r[0], &r[1]]) }).await;
    let mut on_a = None;
    for _ in 0..4 {
        let mut c = Client::connect(lb.addr()).await;
        if c.ask("hi").await.as_deref() == Some("a") {
            on_a = Some(c);
        }
    }
    let mut on_a = on_a.expect("round robin reaches a");
    let Event::Reloaded { removed, .. } = h.reload(&[r[1].addr]) else { panic!("not a reload") };
    assert_eq!(removed, vec![r[0].addr]);
    // The existing connection to a keeps working (drain) ...
    assert_eq!(on_a.ask("still").await.as_deref(), Some("a"));
    // ... while every new one goes to b.
    for _ in 0..10 {
        let mut c = Client::connect(lb.addr()).await;
        assert_eq!(c.ask("new").await.as_deref(), Some("b"));
    }
    drop(on_a);
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_cap_and_no_descriptor_leak_under_churn() {
    let r = replica("a", loopback(), false).await;
    let (lb, h) = start(LbConfig { max_per_client: 2, metrics: Some(loopback()), ..config(&[&r]) }).await;
    let mut a = Client::connect(lb.addr()).await;
    let mut b = Client::connect(lb.addr()).await;
    assert!(a.ask("1").await.is_some() && b.ask("2").await.is_some());
    let mut third = Client::connect(lb.addr()).await;
    assert_eq!(third.ask("3").await, None, "the third connection from one address is closed");
    drop((a, b, third));
    // Churn: many short connections, then the descriptor count returns to where it was.
    let fds = || std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    assert!(
        harness::wait_until(LIMIT, Duration::from_millis(20), || {
            let h = h.clone();
            async move { h.backends()[0].2 == 0 }
        })
        .await
    );
    let before = fds();
    let idle = || {
        let h = h.clone();
        async move { h.backends()[0].2 == 0 }
    };
    for round in 0..10 {
        let mut batch = Vec::new();
        for _ in 0..2 {
            batch.push(Client::connect(lb.addr()).await);
        }
        for c in batch.iter_mut() {
            assert_eq!(c.ask(&format!("r{round}")).await.as_deref(), Some("a"));
        }
        drop(batch);
        // The two slots free up once the balancer has seen both connections close.
        assert!(harness::wait_until(LIMIT, Duration::from_millis(5), idle).await);
    }
    for _ in 0..200 {
        let mut s = TcpStream::connect(lb.addr()).await.unwrap();
        s.write_all(b"x\n").await.unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
        drop(s);
        assert!(harness::wait_until(LIMIT, Duration::from_millis(1), idle).await);
    }
    let settled = harness::wait_until(LIMIT, Duration::from_millis(20), || {
        let h = h.clone();
        async move { h.backends()[0].2 == 0 && fds() <= before + 2 }
    })
    .await;
    assert!(settled, "descriptors: {before} before, {} after", fds());
    let text = h.registry().render();
    assert!(text.contains("lb_refused_total 1"), "{text}");
    assert!(text.contains(&format!("lb_backend_up{{backend=\"{}\"}} 1", r.addr)), "{text}");
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_http() {
    let r = replica("a", loopback(), false).await;
    let server = LbServer::bind(LbConfig { metrics: Some(loopback()), ..config(&[&r]) }).await.unwrap();
    let maddr = server.metrics_addr().unwrap();
    let lb = harness::start(server);
    let mut c = Client::connect(lb.addr()).await;
    c.ask("hi").await.unwrap();
    let mut s = TcpStream::connect(maddr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(LIMIT, s.read_to_string(&mut text)).await.unwrap().unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains(&format!("lb_backend_connections_total{{backend=\"{}\"}} 1", r.addr)), "{text}");
    assert!(text.contains("lb_active_connections 1"), "{text}");
    drop(c);
    lb.stop().await.unwrap();
}

/// A UDP replica answering every datagram with "NAME"; dropping it closes the socket.
async fn udp_replica(name: &'static str, addr: SocketAddr) -> (SocketAddr, CancellationToken) {
    let socket = UdpSocket::bind(addr).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = s.cancelled() => return,
                r = socket.recv_from(&mut buf) => if let Ok((_, from)) = r {
                    let _ = socket.send_to(name.as_bytes(), from).await;
                },
            }
        }
    });
    (addr, stop)
}

async fn udp_ask(s: &UdpSocket, lb: SocketAddr) -> Option<String> {
    for _ in 0..3 {
        s.send_to(b"who", lb).await.unwrap();
        let mut buf = [0u8; 64];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf)).await {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_stick_and_only_the_dead_replicas_flows_move() {
    let a = udp_replica("a", loopback()).await;
    let b = udp_replica("b", loopback()).await;
    let c = udp_replica("c", loopback()).await;
    let config = LbConfig {
        listen: loopback(),
        udp: true,
        backends: vec![a.0, b.0, c.0],
        health: HealthCheck::None,
        eject_after: 1,
        eject_secs: 3600,
        ..LbConfig::default()
    };
    let (lb, h) = start(config).await;
    let mut clients = Vec::new();
    for _ in 0..30 {
        let s = UdpSocket::bind(loopback()).await.unwrap();
        let first = udp_ask(&s, lb.addr()).await.unwrap();
        assert_eq!(udp_ask(&s, lb.addr()).await.unwrap(), first, "a flow stays on its replica");
        clients.push((s, first));
    }
    assert!(clients.iter().any(|(_, n)| n == "b"));
    let text = h.registry().render();
    assert!(text.contains("lb_udp_flows 30"), "{text}");
    b.1.cancel(); // b's socket closes: the kernel answers port unreachable
    // Each of b's flows is refused once, ejecting b, then moves; the others never move.
    for (s, name) in &clients {
        let mut answer = udp_ask(s, lb.addr()).await.unwrap();
        if name == "b" {
            for _ in 0..5 {
                if answer != "b" {
                    break;
                }
                answer = udp_ask(s, lb.addr()).await.unwrap();
            }
            assert_ne!(answer, "b");
        } else {
            assert_eq!(&answer, name);
        }
    }
    assert!(h.backends().iter().any(|(addr, up, _)| *addr == b.0 && !up));
    drop((a.1, c.1));
    lb.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_make_room_for_a_newcomer_when_full() {
    let r = replica("a", loopback(), false).await;
    let (lb, h) = start(LbConfig { max_conns: 2, ..config(&[&r]) }).await;
    let mut silent = TcpStream::connect(lb.addr()).await.unwrap();
    let mut silent2 = TcpStream::connect(lb.addr()).await.unwrap();
    // Both are connected through (the replica counts them) before the newcomer arrives.
    assert!(
        harness::wait_until(LIMIT, Duration::from_millis(10), || {
            let h = h.clone();
            async move { h.backends()[0].2 == 2 }
        })
        .await
    );
    let mut newcomer = Client::connect(lb.addr()).await;
    let got = newcomer.ask("hello").await;
    assert_eq!(got.as_deref(), Some("a"), "{}", h.registry().render());
    // One silent connection was closed to make room.
    let (mut b1, mut b2) = ([0u8; 16], [0u8; 16]);
    let closed = tokio::time::timeout(LIMIT, async {
        tokio::select! {
            r = silent.read(&mut b1) => r.unwrap_or(0),
            r = silent2.read(&mut b2) => r.unwrap_or(0),
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, 0);
    drop((newcomer, silent, silent2));
    lb.stop().await.unwrap();
}
