//! The whole lab in one process: every server starts on its 127.x address, the resolvers walk
//! the hierarchy, and the tour's scenes hold (caching, negative caching, failover, transfer).

use appnet_dns::wire::rrtype::code;
use appnet_lab::tour::ask_from;
use appnet_lab::{Lab, Topology};
use std::net::IpAddr;

/// A port free on the lab's first address (the lab binds every server to the same port).
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.1.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    drop(s);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_resolves_through_its_hierarchy_and_the_tour_passes() {
    let dir = std::env::temp_dir().join(format!("appnet-lab-test-{}", std::process::id()));
    let topology = Topology { dns_port: free_port(), ..Topology::default() };
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

    let mut printed = Vec::new();
    let result = appnet_lab::tour::run(&mut lab, &mut |line| printed.push(line)).await;
    let text = printed.join("\n");
    result.unwrap_or_else(|e| panic!("tour failed: {e}\n{text}"));
    assert!(text.contains("referral: ask the edu. servers"), "{text}");
    assert!(text.contains("TIMEOUT") || text.contains("127.0.3.2"), "{text}");
    lab.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
