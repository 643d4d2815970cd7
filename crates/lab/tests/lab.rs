//! The whole lab in one process: every server starts on its 127.x address, the resolvers walk
//! the hierarchy, and the tour's scenes hold (caching, negative caching, failover, transfer).

mod common;

use appnet_dns::wire::rrtype::code;
use appnet_lab::Lab;
use appnet_lab::tour::ask_from;
use std::net::IpAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_resolves_through_its_hierarchy_and_the_tour_passes() {
    let dir = appnet_netkit::harness::TempDir::new("lab-test");
    let mut topology = common::topology();
    // The ring and the swarm pick free ports on their addresses.
    topology.chord.as_mut().expect("a ring").port = 0;
    let swarm = topology.swarm.as_mut().expect("a swarm");
    swarm.port = 0;
    swarm.tracker_port = 0;
    let mut lab = Lab::start(topology, &dir).await.expect("lab starts");
    let directory = lab.directory();
    for name in [
        "a.root-servers.net",
        "a.edu-servers.net",
        "dns.cs.umass.edu",
        "dns.poly.edu",
        "dns2.networkutopia.com",
    ] {
        assert!(directory.contains(name), "{name} missing from\n{directory}");
    }

    let host: IpAddr = "127.0.10.4".parse().unwrap();
    let resolver = lab.addr_of("dns.poly.edu").unwrap();
    // The textbook's other names resolve too: a CNAME across the ibm.com zone, three replicas.
    let (ibm, _) = ask_from(host, resolver, "www.ibm.com", code::A).await.unwrap();
    assert_eq!(ibm.answer.first().map(|r| r.rtype), Some(code::CNAME));
    assert_eq!(ibm.answer.last().map(|r| r.rdata.clone()), Some(vec![127, 0, 10, 11]));
    let (bbc, _) = ask_from(host, resolver, "www.bbc.co.uk", code::A).await.unwrap();
    assert_eq!(bbc.answer.len(), 3);
    let (mx, _) = ask_from(host, resolver, "hamburger.edu", code::MX).await.unwrap();
    assert_eq!(mx.answer.len(), 1);
    assert!(mx.ra, "recursion available");

    // The textbook's page and its images over HTTP from www.someschool.edu.
    let web = lab.addr_of("www.someschool.edu").unwrap();
    let page = http_get(web, "www.someschool.edu", "/someDepartment/home.index").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert_eq!(page.matches("<img ").count(), 10);
    let pic = http_get(web, "www.someschool.edu", "/someDepartment/pic3.jpg").await;
    assert!(pic.contains("image/jpeg"), "{}", &pic[..200.min(pic.len())]);

    let mut printed = Vec::new();
    let result = appnet_lab::tour::run(&mut lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    result.unwrap_or_else(|e| panic!("tour failed: {e}\n{text}"));
    assert!(text.contains("referral: ask the edu. servers"), "{text}");
    assert!(text.contains("TIMEOUT") || text.contains("127.0.3.2"), "{text}");
    // The institutional cache: miss, revalidated by a 304, hit (the scene checks each step).
    assert!(text.contains("X-Cache: REVALIDATED"), "{text}");
    // The CDN scene: the two networks got different replicas, each a miss then a hit.
    assert!(text.contains("(cdn-us-east)") && text.contains("(cdn-europe)"), "{text}");
    assert_eq!(text.matches("X-Cache: MISS").count(), 3, "{text}");
    // ... and CDN push (8b): the pushed page is a HIT on its first request at all three replicas.
    assert_eq!(text.matches("X-Cache: HIT").count(), 6, "{text}");
    assert_eq!(text.matches("first request at cdn-").count(), 3, "{text}");
    assert_eq!(text.matches(": stored — 200 OK").count(), 3, "{text}");
    // The torrent and Chord scenes ran to their ends (their facts are tested on their own).
    assert!(text.contains("alice has the whole file"), "{text}");
    assert!(text.contains("key 14 lies in (12, 15]"), "{text}");
    // DNSSEC: the registrar's updates were accepted and the forgery was rejected as bogus.
    assert!(text.contains("add (dns1.networkutopia.com., 127.0.3.6, A)"), "{text}");
    assert!(text.contains("bogus: SERVFAIL"), "{text}");
    // The FTP scene: one control connection, a data connection for the listing and each file.
    assert!(text.contains("4 data connections, one per"), "{text}");
    // The load balancer: a connection per machine of www.stanford.edu; one machine dies, only its
    // connection breaks, the other two keep their machine.
    assert_eq!(text.matches(": still served by 127.0.10.2").count(), 2, "{text}");
    assert!(text.contains(": broken (its machine is gone)"), "{text}");
    lab.stop().await;
}

/// One HTTP/1.1 request with Connection: close; the whole response as (lossy) text.
async fn http_get(addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
