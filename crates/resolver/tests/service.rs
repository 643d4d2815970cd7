//! The resolver service on real sockets: access control, junk answered locally with no
//! upstream traffic, TC → TCP fallback on both sides, and forged replies on the wire.

use appnet_dns::client::{self, QueryOpts};
use appnet_dns::wire::message::{self, Parsed};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::response::rcode;
use appnet_dns::wire::rrtype::code;
use appnet_dns::zone::Zone;
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{self, Running, TempDir};
use appnet_resolver::{ResolverConfig, ResolverServer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A root hints file naming `root`, in a scratch directory removed when dropped.
fn hints_file(tag: &str, root: SocketAddr) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new(&format!("resolver-{tag}"));
    let path = dir.join("root.hints");
    std::fs::write(&path, format!(". 3600 NS root.test-lab.\nroot.test-lab. 3600 A {}\n", root.ip()))
        .unwrap();
    (dir, path)
}

async fn resolver(
    root: Option<SocketAddr>,
    tag: &str,
    tweak: impl FnOnce(&mut ResolverConfig),
) -> (Running, Arc<appnet_resolver::respond::Frontend<appnet_resolver::transport::NetTransport>>) {
    let mut config = ResolverConfig { listen: harness::any_loopback(), ..ResolverConfig::default() };
    // The hints are read at bind; their scratch directory goes once the server is bound.
    let mut _hints_dir = None;
    if let Some(root) = root {
        let (dir, path) = hints_file(tag, root);
        config.root_hints = Some(path);
        config.upstream_port = root.port();
        _hints_dir = Some(dir);
    }
    tweak(&mut config);
    let server = ResolverServer::bind(config).await.unwrap();
    let frontend = server.frontend();
    (harness::start(server), frontend)
}

async fn ask(server: SocketAddr, name: &str, qtype: u16, opts: QueryOpts) -> (Parsed, client::Answer) {
    let opts = QueryOpts { recursion_desired: true, ..opts };
    let answer = client::query(server, &from_text(name).unwrap(), qtype, opts).await.unwrap();
    (message::parse(&answer.bytes).unwrap(), answer)
}

/// A root server on 127.0.0.1:0 that is also authoritative for `big.example.` (a large TXT set).
async fn root_server() -> Running {
    let root = Zone::from_text(
        ".",
        "$TTL 3600\n@ SOA root.test-lab. admin.test-lab. 1 3600 600 86400 60\n@ NS root.test-lab.\n\
         root.test-lab. A 127.0.0.1\nwww.test-lab. A 192.0.2.1\n",
    )
    .unwrap();
    let mut big = String::from(
        "$TTL 3600\n@ SOA root.test-lab. admin.test-lab. 1 3600 600 86400 60\n@ NS root.test-lab.\n",
    );
    for i in 0..40 {
        big.push_str(&format!("txt TXT \"record number {i} with enough text to make the answer large\"\n"));
    }
    let big = Zone::from_text("big.example.", &big).unwrap();
    let config = DnsConfig { listen: harness::any_loopback(), udp_workers: 1, ..DnsConfig::default() };
    let server = DnsServer::bind_with_zones(config, vec![Arc::new(root), Arc::new(big)]).await.unwrap();
    harness::start(server)
}

#[tokio::test]
async fn clients_outside_the_allow_list_are_refused() {
    let (svc, f) = resolver(None, "acl", |c| c.allow = vec!["10.0.0.0/8".into()]).await;
    let (reply, _) = ask(svc.addr(), "www.example.com", code::A, QueryOpts::default()).await;
    assert_eq!(reply.rcode, rcode::REFUSED);
    assert!(reply.ra);
    assert_eq!(f.resolver.counters().upstream_queries.load(Ordering::Relaxed), 0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn junk_is_answered_locally_without_upstream_traffic() {
    // No reachable root at all: anything that went upstream would fail.
    let (svc, f) = resolver(None, "junk", |_| {}).await;
    let cases = [
        ("localhost", code::A, rcode::NOERROR),
        ("printer.invalid", code::A, rcode::NXDOMAIN),
        ("x.test", code::AAAA, rcode::NXDOMAIN),
        ("abcdefgh.onion", code::A, rcode::NXDOMAIN),
        ("nas.home.arpa", code::A, rcode::NXDOMAIN),
        ("1.1.168.192.in-addr.arpa", code::PTR, rcode::NXDOMAIN),
        ("5.0.16.172.in-addr.arpa", code::PTR, rcode::NXDOMAIN),
        ("192.168.1.1", code::A, rcode::NXDOMAIN),
        ("fileserver.corp", code::A, rcode::NXDOMAIN),
        ("router.lan", code::A, rcode::NXDOMAIN),
        ("mac.local", code::A, rcode::NXDOMAIN),
    ];
    for (name, qtype, want) in cases {
        let (reply, _) = ask(svc.addr(), name, qtype, QueryOpts::default()).await;
        assert_eq!(reply.rcode, want, "{name}");
        if want == rcode::NXDOMAIN {
            assert_eq!(reply.authority.len(), 1, "{name}: an SOA so clients cache the negative answer");
        }
    }
    assert_eq!(f.resolver.counters().upstream_queries.load(Ordering::Relaxed), 0);
    assert_eq!(f.counters.local_answers.load(Ordering::Relaxed), cases.len() as u64);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn truncation_falls_back_to_tcp_upstream_and_for_clients() {
    let root = root_server().await;
    let (svc, f) = resolver(Some(root.addr()), "tc", |_| {}).await;
    // Upstream: the 40-record TXT set does not fit 1232 bytes; the resolver retries over TCP.
    let (reply, answer) = ask(svc.addr(), "txt.big.example", code::TXT, QueryOpts::default()).await;
    assert_eq!(reply.answer.len(), 40);
    assert!(answer.retried_over_tcp, "our answer to the client did not fit UDP either");
    // Client side without EDNS: 512 bytes, TC set, and the full answer over TCP.
    let plain = QueryOpts { edns: None, tcp_on_truncation: false, ..QueryOpts::default() };
    let (truncated, _) = ask(svc.addr(), "txt.big.example", code::TXT, plain).await;
    assert!(truncated.tc);
    let tcp = QueryOpts { tcp: true, ..QueryOpts::default() };
    let (full, _) = ask(svc.addr(), "txt.big.example", code::TXT, tcp).await;
    assert_eq!(full.answer.len(), 40);
    assert!(f.resolver.counters().served_from_cache.load(Ordering::Relaxed) >= 2);
    svc.stop().await.unwrap();
    root.stop().await.unwrap();
}

/// A hostile "root": for every query it first sprays forged replies (wrong IDs, and one with the
/// right ID from another address), then sends the real answer a moment later.
async fn spoofing_root() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let real = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let addr = real.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..10 {
            let Ok((n, peer)) = real.recv_from(&mut buf).await else { return };
            let q = appnet_dns::wire::query::parse(&buf[..n]).unwrap();
            let reply_with = |id: u16, ip: [u8; 4]| {
                let mut rdata = Vec::new();
                appnet_dns::wire::rrtype::pack_rdata(&mut rdata, &ip);
                let rr = [appnet_dns::wire::response::RrRef {
                    owner: q.qname,
                    rtype: code::A,
                    ttl: 3600,
                    rdata: &rdata,
                }];
                let reply = appnet_dns::wire::response::Reply { aa: true, answer: &rr, ..Default::default() };
                let mut header = q.header();
                header.id = id;
                let question =
                    appnet_dns::wire::response::Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
                appnet_dns::wire::response::write(header, Some(question), None, &reply, 512, Vec::new())
            };
            for wrong in 1..=20u16 {
                let _ = real.send_to(&reply_with(q.id.wrapping_add(wrong), [6, 6, 6, 6]), peer).await;
            }
            let _ = other.send_to(&reply_with(q.id, [6, 6, 6, 6]), peer).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = real.send_to(&reply_with(q.id, [192, 0, 2, 7]), peer).await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn forged_replies_with_wrong_ids_or_sources_are_ignored() {
    let (root, task) = spoofing_root().await;
    let (svc, _) = resolver(Some(root), "spoof", |_| {}).await;
    let (reply, _) = ask(svc.addr(), "www.victim.example", code::A, QueryOpts::default()).await;
    assert_eq!(reply.answer.len(), 1);
    assert_eq!(reply.answer[0].rdata, vec![192, 0, 2, 7], "only the genuine reply was accepted");
    // And it is what got cached.
    let (again, _) = ask(svc.addr(), "www.victim.example", code::A, QueryOpts::default()).await;
    assert_eq!(again.answer[0].rdata, vec![192, 0, 2, 7]);
    svc.stop().await.unwrap();
    task.abort();
}

/// A root on 127.0.0.1:P authoritative for `test-lab.` names (one with the largest TTL there
/// is), delegating `blackhole.example.` to 127.0.0.2:P, where a socket swallows every query.
async fn root_with_black_hole() -> (Running, tokio::net::UdpSocket) {
    for _ in 0..20 {
        let root = Zone::from_text(
            ".",
            "$TTL 3600\n@ SOA root.test-lab. admin.test-lab. 1 3600 600 86400 60\n@ NS root.test-lab.\n\
             root.test-lab. A 127.0.0.1\nwww.test-lab. A 192.0.2.1\nhuge.test-lab. 2147483647 A 192.0.2.2\n\
             blackhole.example. NS ns.blackhole.example.\nns.blackhole.example. A 127.0.0.2\n",
        )
        .unwrap();
        let config = DnsConfig { listen: harness::any_loopback(), udp_workers: 1, ..DnsConfig::default() };
        let server = DnsServer::bind_with_zones(config, vec![Arc::new(root)]).await.unwrap();
        let running = harness::start(server);
        match tokio::net::UdpSocket::bind(("127.0.0.2", running.addr().port())).await {
            Ok(hole) => return (running, hole),
            Err(_) => running.stop().await.unwrap(),
        }
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

#[tokio::test]
async fn one_clients_flood_of_a_dead_zone_does_not_starve_another_client() {
    let (root, _hole) = root_with_black_hole().await;
    // A small global cap, so a flood that is not stopped per client fills it.
    let (svc, f) = resolver(Some(root.addr()), "flood", |c| c.max_in_flight = 64).await;
    // Client A (127.0.0.5) fires 150 random names of the dead zone without waiting.
    let flooder = tokio::net::UdpSocket::bind("127.0.0.5:0").await.unwrap();
    for i in 0..150u16 {
        let name = from_text(&format!("r{i}x{}.blackhole.example.", rand_label(i))).unwrap();
        let q = message::build_query(i, appnet_dns::wire::query::opcode::QUERY, &name, code::A, true, None);
        flooder.send_to(&q, svc.addr()).await.unwrap();
    }
    // Client B (127.0.0.1) asks for a name in another zone and gets it promptly: it must not
    // wait for A's questions to time out upstream (each holds its slot for over a second).
    let started = std::time::Instant::now();
    let quick = QueryOpts { timeout: Duration::from_millis(900), ..QueryOpts::default() };
    let (reply, _) = ask(svc.addr(), "www.test-lab", code::A, quick).await;
    assert_eq!(reply.rcode, rcode::NOERROR);
    assert_eq!(reply.answer[0].rdata, vec![192, 0, 2, 1]);
    assert!(started.elapsed() < Duration::from_millis(900));
    // A's excess was answered SERVFAIL at once rather than queued or dropped.
    let mut buf = [0u8; 1500];
    let mut servfails = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while servfails < 118 {
        match tokio::time::timeout_at(deadline, flooder.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if message::parse(&buf[..n]).is_ok_and(|p| p.rcode == rcode::SERVFAIL) {
                    servfails += 1;
                }
            }
            _ => break,
        }
    }
    assert!(servfails >= 118, "only {servfails} quick SERVFAILs");
    assert!(f.counters.client_limited.load(Ordering::Relaxed) >= 118);
    svc.stop().await.unwrap();
    root.stop().await.unwrap();
}

/// A label that differs per query, like a random-subdomain attack's.
fn rand_label(i: u16) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761)
}

#[tokio::test]
async fn clients_never_see_an_upstream_ttl_above_max_ttl() {
    let (root, _hole) = root_with_black_hole().await;
    let (svc, f) = resolver(Some(root.addr()), "ttl", |c| c.max_ttl = 3_000).await;
    for _ in 0..2 {
        // Fresh, then from the cache.
        let (reply, _) = ask(svc.addr(), "huge.test-lab", code::A, QueryOpts::default()).await;
        assert_eq!(reply.answer.len(), 1);
        assert!(reply.answer[0].ttl <= 3_000 && reply.answer[0].ttl >= 2_990, "{}", reply.answer[0].ttl);
    }
    // The cache's memory is on the metrics page, within its budget.
    let metrics = appnet_resolver::server::metrics_text(&f);
    let bytes: usize = metrics
        .lines()
        .find_map(|l| l.strip_prefix("resolver_cache_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("a resolver_cache_bytes gauge");
    assert!(bytes > 0 && bytes <= ResolverConfig::default().cache_size, "{bytes}");
    svc.stop().await.unwrap();
    root.stop().await.unwrap();
}

#[tokio::test]
async fn silent_tcp_connections_make_room_for_a_real_client() {
    // Four slots, all taken by connections from other addresses that never send a query.
    let (svc, _) = resolver(None, "tcp-evict", |c| c.max_tcp_connections = 4).await;
    let mut silent = Vec::new();
    for i in 10..14u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, i], 0))).unwrap();
        silent.push(socket.connect(svc.addr()).await.unwrap());
    }
    // A real client still gets its answer over TCP: the longest-waiting silent one goes.
    let tcp = QueryOpts { tcp: true, timeout: Duration::from_secs(3), ..QueryOpts::default() };
    let (reply, _) = ask(svc.addr(), "localhost", code::A, tcp).await;
    assert_eq!(reply.rcode, rcode::NOERROR);
    assert_eq!(reply.answer[0].rdata, vec![127, 0, 0, 1]);
    // The evicted connection was closed by the server: reading it ends (bounded wait).
    let mut buf = [0u8; 16];
    let n =
        tokio::time::timeout(Duration::from_secs(3), tokio::io::AsyncReadExt::read(&mut silent[0], &mut buf))
            .await
            .expect("the oldest silent connection was closed")
            .unwrap_or(0);
    assert_eq!(n, 0);
    svc.stop().await.unwrap();
}

#[tokio::test]
async fn a_tcp_query_trickled_byte_by_byte_is_cut_off_at_the_deadline() {
    // One deadline for the whole query: 1 s from the connection, however the bytes trickle
    // (per-read timeouts would let the length take 0.9 s and the body another 1 s).
    let (svc, _) = resolver(None, "tcp-trickle", |c| c.tcp_idle_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(svc.addr()).await.unwrap();
    let started = std::time::Instant::now();
    let query = message::build_query(7, 0, &from_text("localhost.").unwrap(), code::A, true, None);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let mut closed = false;
    for (i, b) in framed.into_iter().enumerate() {
        if tokio::io::AsyncWriteExt::write_all(&mut stream, &[b]).await.is_err() {
            closed = true;
            break;
        }
        let pause = if i == 0 { 900 } else { 150 };
        let mut buf = [0u8; 16];
        let read = tokio::io::AsyncReadExt::read(&mut stream, &mut buf);
        match tokio::time::timeout(Duration::from_millis(pause), read).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("an answer to an incomplete query"),
            Err(_) => {}
        }
    }
    assert!(closed, "the server never closed the trickling connection");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1_600),
        "closed after {took:?}"
    );
    svc.stop().await.unwrap();
}
