//! The answering core end to end but without sockets: request bytes in, response bytes out,
//! checked by parsing the response.

use appnet_dns::acl::TransferAcl;
use appnet_dns::respond::{Outcome, Policy, Transport, handle};
use appnet_dns::served::ServedZones;
use appnet_dns::wire::message::{Parsed, build_query, parse};
use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::rrtype::{code, type_from_text};
use appnet_dns::wire::tsig::Keyring;
use appnet_dns::zone::Zone;
use std::net::IpAddr;
use std::sync::Arc;

fn zone_text() -> String {
    let mut z = String::from(
        "$ORIGIN example.com.\n$TTL 3600\n\
         @ SOA ns1 hostmaster 2024010101 7200 3600 1209600 300\n\
         @ NS ns1\n@ NS ns2.example.net.\n@ MX 10 mail\n\
         ns1 A 192.0.2.1\nns1 AAAA 2001:db8::1\nmail A 192.0.2.25\nwww A 192.0.2.80\n\
         alias CNAME www\nchain1 CNAME chain2\nchain2 CNAME alias\n\
         loop1 CNAME loop2\nloop2 CNAME loop1\next CNAME www.example.net.\n\
         *.wild A 192.0.2.99\n*.wild TXT \"wildcard\"\nwc CNAME x.wild\n\
         sub NS ns.sub\nsub NS ns.elsewhere.org.\nns.sub A 192.0.2.53\n\
         _sip._tcp SRV 0 5 5060 sip\nsip A 192.0.2.60\ndeep.a.b A 192.0.2.7\n",
    );
    for i in 0..20 {
        z.push_str(&format!("big TXT \"{i:02}{}\"\n", "x".repeat(100)));
        if i < 6 {
            z.push_str(&format!("mid TXT \"{i:02}{}\"\n", "x".repeat(100)));
        }
    }
    z
}

fn catalog() -> ServedZones {
    let zone = Zone::from_text("example.com", &zone_text()).expect("test zone loads");
    let other = Zone::from_text(
        "example.net",
        "@ 60 SOA ns1.example.com. h 1 2 3 4 5\n@ 60 NS ns1.example.com.\nwww 60 A 198.51.100.1\n",
    )
    .unwrap();
    ServedZones::new([Arc::new(zone), Arc::new(other)])
}

fn policy() -> Policy {
    Policy {
        max_udp_payload: 1232,
        allow_transfer: TransferAcl::parse(&["127.0.0.0/8"], &Keyring::default()).unwrap(),
        keys: Keyring::default(),
        ..Policy::default()
    }
}

fn ask_with(cat: &ServedZones, packet: &[u8], transport: Transport, peer: &str) -> Parsed {
    let peer: IpAddr = peer.parse().unwrap();
    match handle(cat, &policy(), packet, transport, peer, Vec::new()) {
        Outcome::Reply { bytes, .. } => parse(&bytes).expect("response parses"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask(cat: &ServedZones, name: &str, qtype: &str) -> Parsed {
    let q =
        build_query(42, 0, &from_text(name).unwrap(), type_from_text(qtype).unwrap(), false, Some((1232, 0)));
    ask_with(cat, &q, Transport::Udp, "192.0.2.200")
}

fn names(recs: &[appnet_dns::wire::message::Record]) -> Vec<String> {
    recs.iter().map(|r| to_text(&r.owner).to_lowercase()).collect()
}

#[test]
fn exact_answer_is_authoritative_and_minimal() {
    let r = ask(&catalog(), "www.example.com", "A");
    assert_eq!((r.rcode, r.aa, r.id), (0, true, 42));
    assert_eq!(r.answer.len(), 1);
    assert_eq!(r.answer[0].rdata, vec![192, 0, 2, 80]);
    assert!(r.authority.is_empty());
    assert!(r.edns.is_some());
}

#[test]
fn query_case_is_preserved_and_ignored() {
    let r = ask(&catalog(), "WwW.ExAmPlE.cOm", "A");
    assert_eq!(r.answer.len(), 1);
    assert_eq!(to_text(&r.answer[0].owner), "WwW.ExAmPlE.cOm.");
}

#[test]
fn cname_chains_are_followed_inside_our_zones() {
    let cat = catalog();
    let r = ask(&cat, "chain1.example.com", "A");
    assert_eq!(
        names(&r.answer),
        ["chain1.example.com.", "chain2.example.com.", "alias.example.com.", "www.example.com."]
    );
    assert_eq!(r.answer[3].rtype, code::A);
    // Into another of our zones.
    let r = ask(&cat, "ext.example.com", "A");
    assert_eq!(names(&r.answer), ["ext.example.com.", "www.example.net."]);
    // A loop stops.
    let r = ask(&cat, "loop1.example.com", "A");
    assert_eq!(r.rcode, 0);
    assert!(r.answer.len() <= 9 && r.answer.iter().all(|a| a.rtype == code::CNAME));
    // Asking for the CNAME itself does not follow it.
    let r = ask(&cat, "alias.example.com", "CNAME");
    assert_eq!(r.answer.len(), 1);
    // A CNAME into a wildcard.
    let r = ask(&cat, "wc.example.com", "A");
    assert_eq!(names(&r.answer), ["wc.example.com.", "x.wild.example.com."]);
}

#[test]
fn wildcards_synthesize_the_query_name() {
    let cat = catalog();
    let r = ask(&cat, "anything.wild.example.com", "A");
    assert_eq!((r.rcode, r.aa), (0, true));
    assert_eq!(names(&r.answer), ["anything.wild.example.com."]);
    assert_eq!(r.answer[0].rdata, vec![192, 0, 2, 99]);
    let r = ask(&cat, "anything.wild.example.com", "MX");
    assert_eq!((r.rcode, r.answer.len()), (0, 0));
    assert_eq!(r.authority[0].rtype, code::SOA);
}

#[test]
fn negative_answers_carry_the_soa_with_the_negative_ttl() {
    let cat = catalog();
    let r = ask(&cat, "nope.example.com", "A");
    assert_eq!((r.rcode, r.aa), (3, true));
    assert_eq!(r.authority.len(), 1);
    assert_eq!((r.authority[0].rtype, r.authority[0].ttl), (code::SOA, 300));
    let r = ask(&cat, "www.example.com", "MX");
    assert_eq!((r.rcode, r.answer.len()), (0, 0));
    assert_eq!((r.authority[0].rtype, r.authority[0].ttl), (code::SOA, 300));
    // An empty non-terminal exists: NODATA, not NXDOMAIN.
    let r = ask(&cat, "a.b.example.com", "A");
    assert_eq!((r.rcode, r.answer.len()), (0, 0));
}

#[test]
fn referrals_at_zone_cuts_carry_glue() {
    let cat = catalog();
    let r = ask(&cat, "host.sub.example.com", "A");
    assert_eq!((r.rcode, r.aa), (0, false));
    assert!(r.answer.is_empty());
    assert_eq!(r.authority.len(), 2);
    assert!(r.authority.iter().all(|a| a.rtype == code::NS));
    assert_eq!(names(&r.additional), ["ns.sub.example.com."]);
    // DS is answered by the parent side of the cut.
    let r = ask(&cat, "sub.example.com", "DS");
    assert_eq!((r.rcode, r.aa, r.answer.len()), (0, true, 0));
    assert_eq!(r.authority[0].rtype, code::SOA);
}

#[test]
fn additional_addresses_for_ns_mx_srv() {
    let cat = catalog();
    let r = ask(&cat, "example.com", "NS");
    assert_eq!(r.answer.len(), 2);
    let mut add: Vec<(String, u16)> = r.additional.iter().map(|a| (to_text(&a.owner), a.rtype)).collect();
    add.sort();
    assert_eq!(
        add,
        [("ns1.example.com.".to_string(), code::A), ("ns1.example.com.".to_string(), code::AAAA)]
    );
    let r = ask(&cat, "example.com", "MX");
    assert_eq!(names(&r.additional), ["mail.example.com."]);
    let r = ask(&cat, "_sip._tcp.example.com", "SRV");
    assert_eq!(names(&r.additional), ["sip.example.com."]);
}

#[test]
fn refused_outside_our_zones() {
    let r = ask(&catalog(), "www.example.org", "A");
    assert_eq!((r.rcode, r.aa), (5, false));
}

#[test]
fn malformed_and_unknown_requests_get_protocol_errors() {
    let cat = catalog();
    let mut q = build_query(7, 0, &from_text("www.example.com").unwrap(), code::A, false, None);
    q[5] = 2; // qdcount 2 but only one question
    let r = ask_with(&cat, &q, Transport::Udp, "192.0.2.1");
    assert_eq!((r.id, r.rcode), (7, 1));
    let q = build_query(8, 2, &from_text("www.example.com").unwrap(), code::A, false, None);
    assert_eq!(ask_with(&cat, &q, Transport::Udp, "192.0.2.1").rcode, 4, "opcode STATUS → NOTIMP");
    // Too short to answer, or a response: ignored.
    let peer = "192.0.2.1".parse().unwrap();
    assert!(matches!(handle(&cat, &policy(), &[1, 2, 3], Transport::Udp, peer, Vec::new()), Outcome::Ignore));
}

#[test]
fn unknown_edns_version_gets_badvers() {
    let q = build_query(9, 0, &from_text("www.example.com").unwrap(), code::A, false, Some((1232, 1)));
    let r = ask_with(&catalog(), &q, Transport::Udp, "192.0.2.1");
    assert_eq!(r.rcode, 16);
    assert_eq!(r.edns.unwrap().version, 0);
}

#[test]
fn large_answers_truncate_over_udp_and_fit_over_tcp() {
    let cat = catalog();
    let name = from_text("big.example.com").unwrap();
    let plain = build_query(1, 0, &name, code::TXT, false, None);
    let r = ask_with(&cat, &plain, Transport::Udp, "192.0.2.1");
    assert!(r.tc);
    assert!(r.answer.is_empty(), "no partial RRset");
    // Our cap (1232) wins over the client's 4096.
    let edns = build_query(1, 0, &name, code::TXT, false, Some((4096, 0)));
    assert!(ask_with(&cat, &edns, Transport::Udp, "192.0.2.1").tc);
    // The client's payload size is honoured: ~720 bytes fit with EDNS, not in plain 512.
    let mid = from_text("mid.example.com").unwrap();
    let r = ask_with(&cat, &build_query(1, 0, &mid, code::TXT, false, None), Transport::Udp, "192.0.2.1");
    assert!(r.tc && r.answer.is_empty());
    let r = ask_with(
        &cat,
        &build_query(1, 0, &mid, code::TXT, false, Some((1232, 0))),
        Transport::Udp,
        "192.0.2.1",
    );
    assert!(!r.tc);
    assert_eq!(r.answer.len(), 6);
    let r = ask_with(&cat, &plain, Transport::Tcp, "192.0.2.1");
    assert!(!r.tc);
    assert_eq!(r.answer.len(), 20);
}

#[test]
fn axfr_only_to_allowed_peers_over_tcp() {
    let cat = catalog();
    let q = build_query(5, 0, &from_text("example.com").unwrap(), code::AXFR, false, None);
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let Outcome::Transfer(t) = handle(&cat, &policy(), &q, Transport::Tcp, peer, Vec::new()) else {
        panic!("expected a transfer")
    };
    let msgs = t.messages(16384);
    let mut records = Vec::new();
    for m in &msgs {
        records.extend(parse(m).unwrap().answer);
    }
    assert_eq!(records.first().unwrap().rtype, code::SOA);
    assert_eq!(records.last().unwrap().rtype, code::SOA);
    assert_eq!(records.len(), t.zone.record_count() + 1);
    let r = ask_with(&cat, &q, Transport::Tcp, "192.0.2.1");
    assert_eq!(r.rcode, 5, "not in allow-transfer → REFUSED");
}
