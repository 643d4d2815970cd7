//! The server on 127.0.0.1:0 with real sockets: UDP and TCP, framing, truncation and TCP retry,
//! connection limits, transfers, reload, NOTIFY, secondaries, and rate limiting.

use appnet_dns::client::{self, ClientError, QueryOpts, read_framed, write_framed};
use appnet_dns::config::{SecondaryZone, ZoneSource};
use appnet_dns::wire::message::{build_query, parse};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::code;
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{Running, TempDir, any_loopback, start, wait_until};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn zone_text(serial: u32, www: &str) -> String {
    let mut z = format!(
        "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster {serial} 1 1 5 60\n@ NS ns1\nns1 A 127.0.0.1\nwww A {www}\n"
    );
    for i in 0..30 {
        z.push_str(&format!("big TXT \"{i:02}{}\"\n", "x".repeat(90)));
    }
    z
}

/// A scratch directory for test `tag`, removed when dropped (also when the test fails).
fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("dns-test-{tag}"))
}

fn write_zone(dir: &Path, serial: u32, www: &str) -> PathBuf {
    let file = dir.join("example.com.zone");
    std::fs::write(&file, zone_text(serial, www)).unwrap();
    file
}

fn config(zone: Option<PathBuf>) -> DnsConfig {
    let mut c = DnsConfig { listen: any_loopback(), udp_workers: 2, ..Default::default() };
    if let Some(file) = zone {
        c.zones.push(ZoneSource { name: None, file });
    }
    c.allow_transfer = vec!["127.0.0.1".into()];
    c
}

async fn start_server(c: DnsConfig) -> (Running, appnet_dns::Control) {
    let server = DnsServer::bind(c).await.expect("server starts");
    let control = server.control();
    (start(server), control)
}

async fn a_record(server: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let opts = QueryOpts { timeout: Duration::from_secs(2), ..Default::default() };
    let ans = client::query(server, &from_text(name).unwrap(), code::A, opts).await.ok()?;
    let p = parse(&ans.bytes).ok()?;
    p.answer.into_iter().find(|r| r.rtype == code::A).map(|r| r.rdata)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_tcp_answers_with_truncation_retry() {
    let dir = temp_dir("basic");
    let (running, _) = start_server(config(Some(write_zone(&dir, 1, "192.0.2.80")))).await;
    let addr = running.addr();
    assert_eq!(a_record(addr, "www.example.com").await.unwrap(), vec![192, 0, 2, 80]);

    // A large RRset: truncated over UDP, complete after the TCP retry.
    let big = from_text("big.example.com").unwrap();
    let opts = QueryOpts { edns: None, tcp_on_truncation: false, ..Default::default() };
    let ans = client::query(addr, &big, code::TXT, opts).await.unwrap();
    let p = parse(&ans.bytes).unwrap();
    assert!(p.tc && p.answer.is_empty());
    let ans =
        client::query(addr, &big, code::TXT, QueryOpts { edns: None, ..Default::default() }).await.unwrap();
    assert!(ans.retried_over_tcp);
    assert_eq!(parse(&ans.bytes).unwrap().answer.len(), 30);

    // Several queries on one TCP connection, sent back to back.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let www = from_text("www.example.com").unwrap();
    for id in 1..=3u16 {
        write_framed(&mut tcp, &build_query(id, 0, &www, code::A, false, None)).await.unwrap();
    }
    for id in 1..=3u16 {
        let reply = parse(&read_framed(&mut tcp).await.unwrap()).unwrap();
        assert_eq!((reply.id, reply.answer.len()), (id, 1));
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_and_connection_cap() {
    let dir = temp_dir("limits");
    let mut c = config(Some(write_zone(&dir, 1, "192.0.2.80")));
    c.tcp_idle_timeout_secs = 1;
    c.max_tcp_connections = 2;
    let (running, _) = start_server(c).await;
    let addr = running.addr();
    let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Make sure both are accepted before the third.
    let www = from_text("www.example.com").unwrap();
    write_framed(&mut a, &build_query(1, 0, &www, code::A, false, None)).await.unwrap();
    read_framed(&mut a).await.unwrap();
    let mut c3 = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = write_framed(&mut c3, &build_query(2, 0, &www, code::A, false, None)).await;
    let third = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut c3)).await.unwrap();
    assert!(third.is_err(), "the third connection is closed at the cap");
    // The idle connection is closed by the server within a few seconds.
    let idle = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut a)).await.unwrap();
    assert!(idle.is_err());
    running.stop().await.unwrap();
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: &str, server: SocketAddr) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    sock.connect(server).await.unwrap()
}

/// One TCP query and its answer's A record, within `limit`.
async fn tcp_a(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let www = from_text("www.example.com").unwrap();
    write_framed(stream, &build_query(9, 0, &www, code::A, false, None)).await.ok()?;
    let bytes = tokio::time::timeout(limit, read_framed(stream)).await.ok()?.ok()?;
    parse(&bytes).ok()?.answer.into_iter().find(|r| r.rtype == code::A).map(|r| r.rdata)
}

/// Issue 22: one client holding idle connections up to the cap made everyone else's TCP
/// queries fail. Now one address gets at most its share, and at the global cap a newcomer
/// takes the place of the longest-idle connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_hoarders_do_not_lock_out_other_clients() {
    let dir = temp_dir("hoard");
    let mut c = config(Some(write_zone(&dir, 1, "192.0.2.80")));
    c.max_tcp_connections = 8;
    c.max_tcp_per_ip = 4;
    c.tcp_idle_timeout_secs = 30;
    let (running, control) = start_server(c).await;
    let addr = running.addr();
    let metric = |name: &str| -> u64 {
        let text = control.metrics();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    // 127.0.0.1 opens twice its share of idle connections: the extra ones are refused.
    let mut hoard = Vec::new();
    for _ in 0..8 {
        hoard.push(connect_from("127.0.0.1", addr).await);
    }
    let refused = wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
        metric("dns_tcp_refused_total") >= 4
    })
    .await;
    assert!(refused && metric("dns_tcp_refused_total") == 4, "{}", control.metrics());
    // Another client is still answered.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(tcp_a(&mut other, Duration::from_secs(5)).await, Some(vec![192, 0, 2, 80]));
    drop(other);
    // Fill the global cap with idle connections from a second address ...
    for _ in 0..4 {
        hoard.push(connect_from("127.0.0.3", addr).await);
    }
    let full = wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
        metric("dns_tcp_connections") >= 8
    })
    .await;
    assert!(full, "{}", control.metrics());
    // ... and a third client still gets its answer: the longest-idle connection makes room.
    let mut late = connect_from("127.0.0.4", addr).await;
    assert_eq!(tcp_a(&mut late, Duration::from_secs(5)).await, Some(vec![192, 0, 2, 80]));
    let evicted = wait_until(Duration::from_secs(5), Duration::from_millis(20), || async {
        metric("dns_tcp_evicted_total") >= 1
    })
    .await;
    assert!(evicted, "{}", control.metrics());
    drop(hoard);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_is_allowed_only_to_the_allow_list() {
    let dir = temp_dir("axfr");
    let file = write_zone(&dir, 7, "192.0.2.80");
    let (running, _) = start_server(config(Some(file.clone()))).await;
    let apex = from_text("example.com").unwrap();
    let recs = client::axfr(running.addr(), &apex, Duration::from_secs(5), None).await.unwrap();
    assert_eq!(recs.len(), 34);
    assert_eq!(recs[0].rtype, code::SOA);
    running.stop().await.unwrap();

    let mut c = config(Some(file));
    c.allow_transfer.clear();
    let (running, _) = start_server(c).await;
    let err = client::axfr(running.addr(), &apex, Duration::from_secs(5), None).await.unwrap_err();
    assert!(matches!(err, ClientError::Rcode { ref rcode, .. } if rcode == "REFUSED"), "{err}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_good_files_keeps_old_data_on_broken_ones_and_notifies() {
    let dir = temp_dir("reload");
    let file = write_zone(&dir, 1, "192.0.2.1");
    // A fake secondary that records the NOTIFY it gets and acknowledges it.
    let fake = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(Some(file.clone()));
    c.notify = vec![fake.local_addr().unwrap()];
    let (running, control) = start_server(c).await;
    let addr = running.addr();
    // Asked several times (from fresh ports, so every UDP worker likely sees it): each worker
    // keeps the finished answer, and a reload must make it forget it.
    for _ in 0..6 {
        assert_eq!(a_record(addr, "www.example.com").await.unwrap(), vec![192, 0, 2, 1]);
    }

    std::fs::write(&file, zone_text(2, "192.0.2.2")).unwrap();
    let report = control.reload().await;
    assert_eq!(report.changed.len(), 1);
    for _ in 0..6 {
        assert_eq!(a_record(addr, "www.example.com").await.unwrap(), vec![192, 0, 2, 2]);
    }
    let mut buf = vec![0u8; 512];
    let (n, from) =
        tokio::time::timeout(Duration::from_secs(5), fake.recv_from(&mut buf)).await.unwrap().unwrap();
    let notify = parse(&buf[..n]).unwrap();
    assert_eq!((notify.opcode, notify.question.as_ref().unwrap().1), (4, code::SOA));
    let mut ack = buf[..n].to_vec();
    ack[2] |= 0x80;
    fake.send_to(&ack, from).await.unwrap();

    std::fs::write(&file, "$ORIGIN example.com.\n@ 300 SOA ns1 h 3 1 1 5 60\nwww A not-an-address\n")
        .unwrap();
    let report = control.reload().await;
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains(":3:"), "file:line in {}", report.failed[0].1);
    assert_eq!(a_record(addr, "www.example.com").await.unwrap(), vec![192, 0, 2, 2], "old data kept");
    assert_eq!(control.serial("example.com"), Some(2));
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_transfers_follows_notify_and_survives_restart() {
    let dir = temp_dir("secondary");
    let file = write_zone(&dir, 10, "192.0.2.10");
    let (primary, pcontrol) = start_server(config(Some(file.clone()))).await;
    let state = dir.join("state");
    let mut sc = config(None);
    sc.secondaries = vec![SecondaryZone { name: "example.com".into(), primary: primary.addr() }];
    sc.state_dir = Some(state.clone());
    let (secondary, scontrol) = start_server(sc.clone()).await;
    let saddr = secondary.addr();
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(50), || async {
        scontrol.serial("example.com") == Some(10)
    })
    .await;
    assert!(got, "secondary transferred the zone");
    assert_eq!(a_record(saddr, "www.example.com").await.unwrap(), vec![192, 0, 2, 10]);
    assert!(state.join("example.com.zone").exists(), "stored on disk");

    // A new serial on the primary, then a NOTIFY (from 127.0.0.1, the primary's address).
    std::fs::write(&file, zone_text(11, "192.0.2.11")).unwrap();
    pcontrol.reload().await;
    client::notify(saddr, &from_text("example.com").unwrap(), Duration::from_secs(3), None).await.unwrap();
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(50), || async {
        scontrol.serial("example.com") == Some(11)
    })
    .await;
    assert!(got, "secondary followed the NOTIFY");
    assert_eq!(a_record(saddr, "www.example.com").await.unwrap(), vec![192, 0, 2, 11]);

    // NOTIFY for a zone we are not secondary for: NOTAUTH.
    let err = client::notify(saddr, &from_text("example.org").unwrap(), Duration::from_secs(3), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NOTAUTH"), "{err}");

    // Primary gone, secondary restarted: it serves the stored copy.
    primary.stop().await.unwrap();
    secondary.stop().await.unwrap();
    let (secondary, scontrol) = start_server(sc).await;
    assert_eq!(scontrol.serial("example.com"), Some(11));
    assert_eq!(a_record(secondary.addr(), "www.example.com").await.unwrap(), vec![192, 0, 2, 11]);
    secondary.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_secondary_zone_answers_servfail() {
    // The zone's SOA says refresh 1 s, retry 1 s, expire 5 s.
    let dir = temp_dir("expiry");
    let (primary, _) = start_server(config(Some(write_zone(&dir, 7, "192.0.2.7")))).await;
    let mut sc = config(None);
    sc.secondaries = vec![SecondaryZone { name: "example.com".into(), primary: primary.addr() }];
    let (secondary, scontrol) = start_server(sc).await;
    let got = wait_until(Duration::from_secs(10), Duration::from_millis(50), || async {
        scontrol.serial("example.com") == Some(7)
    })
    .await;
    assert!(got, "secondary transferred the zone");
    // The primary goes away: served until SOA expire, then SERVFAIL (not another answer).
    primary.stop().await.unwrap();
    assert_eq!(a_record(secondary.addr(), "www.example.com").await.unwrap(), vec![192, 0, 2, 7]);
    let www = from_text("www.example.com").unwrap();
    let opts = QueryOpts { timeout: Duration::from_secs(2), ..Default::default() };
    let servfail = wait_until(Duration::from_secs(20), Duration::from_millis(200), || async {
        let ans = client::query(secondary.addr(), &www, code::A, opts).await;
        ans.ok().and_then(|a| parse(&a.bytes).ok()).is_some_and(|p| p.rcode == 2)
    })
    .await;
    assert!(servfail, "expired zone answered SERVFAIL");
    assert_eq!(scontrol.serial("example.com"), None, "no longer served");
    secondary.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_drops_and_slips() {
    let dir = temp_dir("rrl");
    let mut c = config(Some(write_zone(&dir, 1, "192.0.2.80")));
    c.udp_workers = 1;
    c.rrl.exempt_loopback = false;
    c.rrl.responses_per_second = 5;
    c.rrl.slip = 2;
    let (running, control) = start_server(c).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let www = from_text("www.example.com").unwrap();
    for id in 0..40u16 {
        sock.send_to(&build_query(id, 0, &www, code::A, false, None), running.addr()).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 512];
    // Every answer there will be comes soon after the burst; the count ends after 2 s of quiet
    // (nothing more is asked, so a longer look adds no answers, only room for a slow worker).
    while let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        let p = parse(&buf[..n]).unwrap();
        if p.tc { slipped += 1 } else { full += 1 }
    }
    assert!((5..=7).contains(&full), "about the rate answered in full: {full}");
    assert!(slipped >= 10 && full + slipped < 40, "half the rest slipped, the others dropped: {slipped}");
    assert!(control.metrics().contains("dns_rrl_dropped_total"));
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsig_secondary_follows_by_ixfr_and_unsigned_peers_are_refused() {
    const KEY: &str = "xfr:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    let dir = temp_dir("tsig");
    let file = write_zone(&dir, 20, "192.0.2.20");
    let mut pc = config(Some(file.clone()));
    pc.tsig_keys = vec![KEY.into()];
    pc.allow_transfer = vec!["127.0.0.1 key xfr".into()];
    let (primary, pcontrol) = start_server(pc).await;
    let apex = from_text("example.com").unwrap();
    // Unsigned: refused. Signed with the key: the whole zone.
    let err = client::axfr(primary.addr(), &apex, Duration::from_secs(5), None).await.unwrap_err();
    assert!(err.to_string().contains("REFUSED"), "{err}");
    let key = std::sync::Arc::new(appnet_dns::wire::tsig::Key::parse_spec(KEY).unwrap());
    let recs = client::axfr(primary.addr(), &apex, Duration::from_secs(5), Some(&key)).await.unwrap();
    assert_eq!(recs.len(), 34);

    let mut sc = config(None);
    sc.tsig_keys = vec![KEY.into()];
    sc.server_keys = vec![format!("{} key xfr", primary.addr())];
    sc.secondaries = vec![SecondaryZone { name: "example.com".into(), primary: primary.addr() }];
    sc.state_dir = Some(dir.join("state"));
    let (secondary, scontrol) = start_server(sc.clone()).await;
    let serial_is = |n| {
        let scontrol = scontrol.clone();
        async move { scontrol.serial("example.com") == Some(n) }
    };
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || serial_is(20)).await);

    // A change on the primary: the secondary's IXFR carries just it (the journal step).
    std::fs::write(&file, zone_text(21, "192.0.2.21")).unwrap();
    pcontrol.reload().await;
    let pz = pcontrol.catalog().zone(&appnet_dns::wire::name::to_lower(&apex)).cloned().unwrap();
    let step = pz.journal().since(20).expect("the primary kept the change");
    assert_eq!((step.deleted.len(), step.added.len()), (1, 1));
    // An unsigned NOTIFY is refused (the primary has a key); a signed one is taken.
    let err = client::notify(secondary.addr(), &apex, Duration::from_secs(3), None).await.unwrap_err();
    assert!(err.to_string().contains("REFUSED"), "{err}");
    client::notify(secondary.addr(), &apex, Duration::from_secs(3), Some(&key)).await.unwrap();
    assert!(wait_until(Duration::from_secs(10), Duration::from_millis(50), || serial_is(21)).await);
    assert_eq!(a_record(secondary.addr(), "www.example.com").await.unwrap(), vec![192, 0, 2, 21]);
    let sz = scontrol.catalog().zone(&appnet_dns::wire::name::to_lower(&apex)).cloned().unwrap();
    assert_eq!(sz.journal().len(), 1, "the secondary keeps the step too, for its own secondaries");
    // Restarted from its state dir, it still has the step (the journal is kept on disk).
    secondary.stop().await.unwrap();
    primary.stop().await.unwrap();
    let (secondary, scontrol) = start_server(sc).await;
    let sz = scontrol.catalog().zone(&appnet_dns::wire::name::to_lower(&apex)).cloned().unwrap();
    assert_eq!((sz.soa().serial, sz.journal().len()), (21, 1));
    secondary.stop().await.unwrap();
}

/// IXFR from `serial` (our SOA at that serial given as `soa`): what the server sent.
async fn ixfr_from(server: SocketAddr, soa: &appnet_dns::wire::message::Record) -> client::Transferred {
    let apex = from_text("example.com").unwrap();
    client::transfer(server, &apex, Some(soa), Duration::from_secs(5), None).await.expect("IXFR answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_journal_survives_a_restart_and_a_bad_one_is_ignored() {
    let dir = temp_dir("primary-journal");
    let file = write_zone(&dir, 30, "192.0.2.30");
    let mut c = config(Some(file.clone()));
    c.state_dir = Some(dir.join("state"));
    let (running, control) = start_server(c.clone()).await;
    let apex = appnet_dns::wire::name::to_lower(&from_text("example.com").unwrap());
    let v30 = control.catalog().zone(&apex).cloned().unwrap();
    let soa30 = appnet_dns::journal::soa_record(&v30).unwrap();
    std::fs::write(&file, zone_text(31, "192.0.2.31")).unwrap();
    assert_eq!(control.reload().await.changed.len(), 1);
    let journal = dir.join("state").join("example.com.zone.journal");
    assert!(journal.exists(), "the journal is stored after the reload");
    running.stop().await.unwrap();

    // Restarted: a secondary at serial 30 still gets just the change.
    let (running, control) = start_server(c.clone()).await;
    assert_eq!(control.serial("example.com"), Some(31));
    match ixfr_from(running.addr(), &soa30).await {
        client::Transferred::Incremental(steps) => {
            assert_eq!(steps.len(), 1);
            let s = &steps[0];
            assert_eq!((s.from_serial(), s.to_serial()), (30, 31));
            assert_eq!((s.deleted.len(), s.added.len()), (1, 1));
            assert_eq!(
                (s.deleted[0].rdata.clone(), s.added[0].rdata.clone()),
                (vec![192, 0, 2, 30], vec![192, 0, 2, 31])
            );
        }
        other => panic!("expected an incremental answer, got {other:?}"),
    }
    // One more reload after the restart: the journal goes on (30 → 32 condensed).
    std::fs::write(&file, zone_text(32, "192.0.2.32")).unwrap();
    control.reload().await;
    running.stop().await.unwrap();
    let (running, control) = start_server(c.clone()).await;
    assert_eq!(control.catalog().zone(&apex).unwrap().journal().len(), 2);
    assert!(matches!(ixfr_from(running.addr(), &soa30).await, client::Transferred::Incremental(_)));
    running.stop().await.unwrap();

    // A truncated journal, then one of garbage: the server starts with an empty journal and
    // answers IXFR with the whole zone.
    let good = std::fs::read(&journal).unwrap();
    for bad in [&good[..good.len() / 2], &b"\x00\xffnot a journal"[..]] {
        std::fs::write(&journal, bad).unwrap();
        let (running, control) = start_server(c.clone()).await;
        assert_eq!(control.serial("example.com"), Some(32));
        assert!(control.catalog().zone(&apex).unwrap().journal().is_empty());
        assert!(
            matches!(ixfr_from(running.addr(), &soa30).await, client::Transferred::Full(r) if r.len() == 34)
        );
        assert_eq!(a_record(running.addr(), "www.example.com").await.unwrap(), vec![192, 0, 2, 32]);
        running.stop().await.unwrap();
    }

    // The zone file changed while the server was down: the journal no longer leads to it.
    std::fs::write(&journal, &good).unwrap();
    std::fs::write(&file, zone_text(33, "192.0.2.33")).unwrap();
    let (running, control) = start_server(c).await;
    assert_eq!(control.serial("example.com"), Some(33));
    assert!(control.catalog().zone(&apex).unwrap().journal().is_empty());
    assert!(matches!(ixfr_from(running.addr(), &soa30).await, client::Transferred::Full(_)));
    running.stop().await.unwrap();
}
