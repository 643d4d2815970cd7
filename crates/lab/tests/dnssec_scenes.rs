//! The signed lab: every zone signed with DS in its parent (the secondary serving what it
//! transferred), scene 17 (the registrar inserting networkutopia.com into com with TSIG-signed
//! updates) and scene 18 (a forged answer rejected by the validating resolver, the chain of trust
//! of gaia.cs.umass.edu printed), each run alone and leaving the lab as it found it.

mod common;

use appnet_dns::wire::rrtype::code;
use appnet_lab::Lab;
use appnet_lab::tour::ask_from;
use std::net::{IpAddr, SocketAddr};

/// The DNS part of the lab: no ring, swarm, overlay, cache, FTP, mail or load balancer (they
/// play no part here).
async fn dns_lab(dir: &std::path::Path) -> Lab {
    let mut topology = common::topology();
    topology.chord = None;
    topology.swarm = None;
    topology.overlay = None;
    topology.caches.clear();
    topology.ftps.clear();
    topology.mails.clear();
    topology.lbs.clear();
    Lab::start(topology, dir).await.expect("lab starts")
}

/// Every event emitted since the last call.
fn drain(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<appnet_lab::events::Event>>,
) -> Vec<std::sync::Arc<appnet_lab::events::Event>> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn host() -> IpAddr {
    "127.0.10.4".parse().unwrap()
}

/// Sends `qname qtype` with DO=1 (no recursion) to `server`; the reply's records by type.
async fn types_at(server: SocketAddr, qname: &str, qtype: u16) -> Vec<u16> {
    let name = appnet_dns::wire::name::from_text(qname).unwrap();
    let mut q = appnet_dns::wire::message::build_query(7, 0, &name, qtype, false, Some((1232, 0)));
    let n = q.len();
    q[n - 4] |= 0x80;
    let t = appnet_resolver::transport::NetTransport { source: Some(host()) };
    use appnet_resolver::transport::Transport;
    let raw = t.exchange(server, &q, true, std::time::Duration::from_secs(4)).await.unwrap();
    let p = appnet_dns::wire::message::parse(&raw).unwrap();
    p.answer.iter().map(|r| r.rtype).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_is_signed_the_registrar_inserts_networkutopia_and_validation_rejects_a_forgery() {
    let dir = appnet_netkit::harness::TempDir::new("lab-dnssec");
    let mut lab = dns_lab(&dir).await;
    let anchor = std::fs::read_to_string(dir.join("root.anchor")).unwrap();
    assert!(anchor.contains("IN DS"), "{anchor}");
    assert!(lab.directory().contains("root trust anchor"), "{}", lab.directory());
    let port = lab.topology.dns_port;
    let at = |a: &str| SocketAddr::new(a.parse().unwrap(), port);
    // The root signs its DNSKEY set and publishes edu's DS; com has networkutopia.com's DS.
    let root = types_at(at("127.0.1.1"), ".", 48).await;
    assert!(root.contains(&48) && root.contains(&code::RRSIG), "{root:?}");
    let ds = types_at(at("127.0.1.1"), "edu", code::DS).await;
    assert!(ds.contains(&code::DS) && ds.contains(&code::RRSIG), "{ds:?}");
    let ds = types_at(at("127.0.2.1"), "networkutopia.com", code::DS).await;
    assert!(ds.contains(&code::DS), "{ds:?}");
    // The CDN's zone is unsigned: no DS in net.
    assert!(!types_at(at("127.0.2.1"), "akamai.net", code::DS).await.contains(&code::DS));
    // The secondary serves the signed zone it transferred.
    let dns2 = lab.addr_of("dns2.networkutopia.com").unwrap();
    let ready = appnet_netkit::harness::wait_until(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_millis(50),
        || async { types_at(dns2, "www.networkutopia.com", code::A).await.contains(&code::RRSIG) },
    )
    .await;
    assert!(ready, "dns2 serves www.networkutopia.com with its RRSIG");

    // The page's view: every message of the scenes is an event (one bus per process).
    let mut rx = appnet_lab::events::bus().subscribe();
    let mut printed = Vec::new();
    let result = appnet_lab::registrar_scene::run(&mut lab, &mut |l| printed.push(l)).await;
    let text = printed.join("\n");
    result.unwrap_or_else(|e| panic!("scene 17 failed: {e}\n{text}"));
    println!("{text}");
    assert!(text.contains("add (networkutopia.com., dns1.networkutopia.com., NS)"), "{text}");
    assert!(text.contains("add (dns1.networkutopia.com., 127.0.3.6, A)"), "{text}");
    assert!(text.contains("IN DS"), "{text}");
    assert!(text.contains("NXDOMAIN"), "{text}");
    assert_eq!(text.matches(": NOERROR (").count(), 3, "three updates accepted\n{text}");
    let events = drain(&mut rx);
    let updates = events
        .iter()
        .filter(|e| e.from.host == "registrar.networksolutions.com" && e.summary.starts_with("UPDATE"))
        .collect::<Vec<_>>();
    assert_eq!(updates.len(), 3, "three UPDATE events");
    assert!(updates.iter().all(|e| e.to.host == "a.gtld-servers.net" && !e.bytes.is_empty()));
    let replies = events.iter().filter(|e| e.summary == "UPDATE NOERROR" && !e.bytes.is_empty()).count();
    assert_eq!(replies, 3, "three signed replies");
    assert!(events.iter().any(|e| e.from.host == "dns.poly.edu" && e.summary.contains("NXDOMAIN")));
    // The lab ends as it started: both servers delegated (with glue), DS in com, and the name
    // resolves for a host whose resolver had cached the NXDOMAIN.
    let ns = types_at(at("127.0.2.1"), "networkutopia.com", code::NS).await;
    assert!(ns.is_empty(), "a referral, not an answer: {ns:?}");
    let resolver = lab.addr_of("dns.poly.edu").unwrap();
    let (www, _) = ask_from(host(), resolver, "www.networkutopia.com", code::A).await.unwrap();
    assert_eq!(www.answer.last().map(|r| r.rdata.clone()), Some(vec![127, 0, 10, 5]));
    // Scene 5 still holds: the secondary answers from its transfer.
    let mut printed = Vec::new();
    appnet_lab::tour::run_scene(&mut lab, 5, &mut |l| printed.push(l)).await.unwrap();
    assert!(printed.join("\n").contains("AA=true"), "{}", printed.join("\n"));
    // Run again, the scene still holds (the start state was restored).
    let mut again = Vec::new();
    let result = appnet_lab::registrar_scene::run(&mut lab, &mut |l| again.push(l)).await;
    result.unwrap_or_else(|e| panic!("scene 17, second run: {e}\n{}", again.join("\n")));

    // Scene 18 on the same lab (one lab per test binary: the lab's fixed ports are shared).
    let mut printed = Vec::new();
    let result = appnet_lab::dnssec_scene::run(&mut lab, &mut |l| printed.push(l)).await;
    let text = printed.join("\n");
    result.unwrap_or_else(|e| panic!("scene 18 failed: {e}\n{text}"));
    println!("{text}");
    let events = drain(&mut rx);
    let from_to = |from: &str, to: &str, what: &str| {
        events.iter().any(|e| {
            e.from.host == from && e.to.host == to && e.summary.contains(what) && !e.bytes.is_empty()
        })
    };
    assert!(from_to("dns.novalidation.net", "cis.poly.edu", "127.0.20.66"), "the forged answer is drawn");
    assert!(from_to("dns.someschool.edu", "dns.poly.edu", "127.0.20.66"), "the resolver's step, with bytes");
    assert!(from_to("dns.poly.edu", "cis.poly.edu", "SERVFAIL"), "the rejection is drawn");
    assert!(from_to("dns.cs.umass.edu", "cis.poly.edu", "gaia.cs.umass.edu"), "the chain's last link");
    assert!(
        text.contains("www.someschool.edu. 3600 IN A 127.0.20.66"),
        "the plain resolver passed it on\n{text}"
    );
    assert!(text.contains("SERVFAIL"), "{text}");
    assert!(text.contains("[EDE "), "an Extended DNS Error\n{text}");
    assert!(text.contains(". DNSKEY KSK (SEP bit), algorithm 13 (ECDSAP256SHA256)"), "{text}");
    assert!(text.contains("  ← matches the DS above"), "{text}");
    assert!(text.contains("edu. → DS umass.edu."), "{text}");
    assert!(text.contains("RRSIG over gaia.cs.umass.edu. A by key tag"), "{text}");
    assert!(text.contains("[AD: validated]"), "{text}");
    // The real server is back: the validating resolver finds the genuine address, secure.
    let resolver = lab.addr_of("dns.poly.edu").unwrap();
    let (www, _) = ask_from(host(), resolver, "www.someschool.edu", code::A).await.unwrap();
    assert_eq!(www.answer.last().map(|r| r.rdata.clone()), Some(vec![127, 0, 10, 14]));
    // dnssec-failed.org is broken on purpose: its server answers, validators refuse.
    let failed = lab.addr_of("ns.dnssec-failed.org").unwrap();
    assert!(types_at(failed, "www.dnssec-failed.org", code::A).await.contains(&code::RRSIG));
    let (bogus, _) = ask_from(host(), resolver, "www.dnssec-failed.org", code::A).await.unwrap();
    assert_eq!((bogus.rcode, bogus.answer.len()), (2, 0), "SERVFAIL, no data");
    lab.stop().await;

    // --no-dnssec: nothing signed, nothing validated (dnssec-failed.org resolves), both scenes
    // say they are skipped.
    let plain_dir = appnet_netkit::harness::TempDir::new("lab-no-dnssec");
    let mut topology = common::topology();
    topology.dnssec = false;
    topology.chord = None;
    topology.swarm = None;
    topology.overlay = None;
    topology.caches.clear();
    topology.ftps.clear();
    topology.mails.clear();
    topology.lbs.clear();
    let mut plain = Lab::start(topology, &plain_dir).await.expect("the plain lab starts");
    assert!(!plain_dir.join("keys").exists() && !plain_dir.join("root.anchor").exists());
    let root = SocketAddr::new("127.0.1.1".parse().unwrap(), plain.topology.dns_port);
    assert!(!types_at(root, ".", 48).await.contains(&48), "no DNSKEY at the root");
    let resolver = plain.addr_of("dns.poly.edu").unwrap();
    let (www, _) = ask_from(host(), resolver, "www.dnssec-failed.org", code::A).await.unwrap();
    assert_eq!(www.answer.last().map(|r| r.rdata.clone()), Some(vec![127, 0, 10, 30]));
    let mut printed = Vec::new();
    for n in [17, 18] {
        appnet_lab::tour::run_scene(&mut plain, n, &mut |l| printed.push(l)).await.unwrap();
    }
    assert_eq!(printed.iter().filter(|l| l.contains("(skipped:")).count(), 2, "{printed:?}");
    plain.stop().await;
}
