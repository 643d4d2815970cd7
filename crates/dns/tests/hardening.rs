//! Regression tests for issue 22 ("what a hostile tester broke"), answering-core side: DNAME
//! (RFC 6672), minimal ANY over UDP (RFC 8482), meta-types in the question (RFC 6895), and the
//! rate-limit classes of synthesised and negative answers.

use appnet_dns::respond::{Outcome, Policy, Transport, handle};
use appnet_dns::served::ServedZones;
use appnet_dns::wire::message::{Parsed, build_query, parse};
use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::rrtype::{code, type_from_text};
use appnet_dns::zone::Zone;
use std::sync::Arc;

const ZONE: &str = "$ORIGIN t.test.\n$TTL 300\n\
    @ SOA ns1 hostmaster 1 3600 600 86400 60\n@ NS ns1\n@ MX 10 @\n\
    ns1 A 127.0.0.1\nwww A 192.0.2.1\nwww AAAA 2001:db8::1\nwww TXT \"hi\"\n\
    *.wild A 192.0.2.9\n*.wild TXT \"w\"\n\
    dn 600 DNAME other.test.\ndn2 DNAME www\nc1 CNAME x.dn\nself DNAME self\n\
    long DNAME aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.t.test.\n\
    sub NS ns.sub\nns.sub A 192.0.2.53\n";

fn catalog() -> ServedZones {
    let zone = Zone::from_text("t.test", ZONE).expect("test zone loads");
    let other = Zone::from_text(
        "other.test",
        "@ 60 SOA ns1.t.test. h 1 2 3 4 5\n@ 60 NS ns1.t.test.\nx 60 A 198.51.100.1\n",
    )
    .unwrap();
    ServedZones::new([Arc::new(zone), Arc::new(other)])
}

fn reply(cat: &ServedZones, name: &str, qtype: u16, transport: Transport) -> (Vec<u8>, u64) {
    let q = build_query(7, 0, &from_text(name).unwrap(), qtype, false, Some((1232, 0)));
    match handle(cat, &Policy::default(), &q, transport, "192.0.2.200".parse().unwrap(), Vec::new()) {
        Outcome::Reply { bytes, key, .. } => (bytes, key),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ask(cat: &ServedZones, name: &str, qtype: &str, transport: Transport) -> Parsed {
    parse(&reply(cat, name, type_from_text(qtype).unwrap(), transport).0).expect("response parses")
}

fn owners_types(p: &Parsed) -> Vec<(String, u16)> {
    p.answer.iter().map(|r| (to_text(&r.owner).to_lowercase(), r.rtype)).collect()
}

#[test]
fn qtype_zero_and_meta_types_get_formerr() {
    let cat = catalog();
    for qtype in [0u16, code::OPT, 249, 250] {
        for transport in [Transport::Udp, Transport::Tcp] {
            let (bytes, _) = reply(&cat, "www.t.test", qtype, transport);
            let p = parse(&bytes).unwrap();
            assert_eq!(p.rcode, 1, "qtype {qtype} over {transport:?} must be FORMERR");
            assert!(p.answer.is_empty() && p.authority.is_empty());
        }
    }
    // Ordinary unknown types are still answered (NODATA).
    let p = ask(&cat, "www.t.test", "TYPE128", Transport::Udp);
    assert_eq!((p.rcode, p.aa), (0, true));
}

#[test]
fn any_over_udp_is_one_rrset_over_tcp_everything() {
    let cat = catalog();
    let udp = ask(&cat, "www.t.test", "ANY", Transport::Udp);
    assert_eq!(owners_types(&udp), [("www.t.test.".to_string(), code::A)]);
    let tcp = ask(&cat, "www.t.test", "ANY", Transport::Tcp);
    assert_eq!(tcp.answer.iter().map(|r| r.rtype).collect::<Vec<_>>(), [code::A, code::TXT, code::AAAA]);
    // At the apex the SOA is the one RRset (as NSD picks).
    let apex = ask(&cat, "t.test", "ANY", Transport::Udp);
    assert_eq!(apex.answer.iter().map(|r| r.rtype).collect::<Vec<_>>(), [code::SOA]);
    // A wildcard: one synthesised RRset.
    let wild = ask(&cat, "q.wild.t.test", "ANY", Transport::Udp);
    assert_eq!(owners_types(&wild), [("q.wild.t.test.".to_string(), code::A)]);
}

#[test]
fn dname_synthesises_a_cname_and_follows_it() {
    let cat = catalog();
    // Into another of our zones: DNAME, CNAME x.dn → x.other.test (DNAME's TTL), then the A.
    let p = ask(&cat, "x.dn.t.test", "A", Transport::Udp);
    assert_eq!((p.rcode, p.aa), (0, true));
    assert_eq!(
        owners_types(&p),
        [
            ("dn.t.test.".to_string(), code::DNAME),
            ("x.dn.t.test.".to_string(), code::CNAME),
            ("x.other.test.".to_string(), code::A)
        ]
    );
    assert_eq!(p.answer[1].ttl, 600);
    assert_eq!(to_text(&p.answer[1].rdata).to_lowercase(), "x.other.test.");
    // Inside the zone, to a name that does not exist: NXDOMAIN after the synthesis (as NSD).
    let p = ask(&cat, "y.dn2.t.test", "A", Transport::Udp);
    assert_eq!(p.rcode, 3);
    assert_eq!(owners_types(&p).len(), 2);
    assert_eq!(p.authority[0].rtype, code::SOA);
    // A CNAME into a DNAME.
    let p = ask(&cat, "c1.t.test", "A", Transport::Udp);
    assert_eq!(
        p.answer.iter().map(|r| r.rtype).collect::<Vec<_>>(),
        [code::CNAME, code::DNAME, code::CNAME, code::A]
    );
    // The DNAME owner itself is an ordinary name.
    let p = ask(&cat, "dn.t.test", "A", Transport::Udp);
    assert_eq!((p.rcode, p.answer.len()), (0, 0));
    let p = ask(&cat, "dn.t.test", "DNAME", Transport::Udp);
    assert_eq!(owners_types(&p), [("dn.t.test.".to_string(), code::DNAME)]);
    // Asking for the CNAME or DNAME type below the owner still synthesises.
    let p = ask(&cat, "x.dn.t.test", "CNAME", Transport::Udp);
    assert_eq!(p.answer.iter().map(|r| r.rtype).collect::<Vec<_>>(), [code::DNAME, code::CNAME]);
    // A DNAME to itself: a bounded answer, no loop.
    let p = ask(&cat, "a.self.t.test", "A", Transport::Udp);
    assert_eq!(p.rcode, 0);
    assert!(p.answer.len() <= 20);
    // RFC 6672 §2.2: too long after substitution → YXDOMAIN with the DNAME.
    let long_q = format!("{}.{}.long.t.test", "b".repeat(60), "c".repeat(60));
    let p = ask(&cat, &long_q, "A", Transport::Udp);
    assert_eq!(p.rcode, 6);
    assert_eq!(p.answer.iter().map(|r| r.rtype).collect::<Vec<_>>(), [code::DNAME]);
}

#[test]
fn a_dname_at_the_apex_redirects_everything_below_it() {
    let zone = Zone::from_text(
        "old.test",
        "@ 60 SOA ns.new.test. h 1 2 3 4 5\n@ 60 NS ns.new.test.\n@ 120 DNAME new.test.\n",
    )
    .unwrap();
    let cat = ServedZones::new([Arc::new(zone)]);
    let p = ask(&cat, "www.old.test", "A", Transport::Udp);
    assert_eq!((p.rcode, p.aa), (0, true));
    assert_eq!(
        owners_types(&p),
        [("old.test.".to_string(), code::DNAME), ("www.old.test.".to_string(), code::CNAME)]
    );
    assert_eq!(to_text(&p.answer[1].rdata), "www.new.test.");
    // The apex itself answers as usual.
    let p = ask(&cat, "old.test", "SOA", Transport::Udp);
    assert_eq!(owners_types(&p), [("old.test.".to_string(), code::SOA)]);
}

#[test]
fn rrl_accounts_synthesised_and_negative_answers_to_their_source() {
    let cat = catalog();
    let key = |name: &str, qtype: u16| reply(&cat, name, qtype, Transport::Udp).1;
    // Random names under a wildcard share the wildcard's bucket ...
    assert_eq!(key("r1.wild.t.test", code::A), key("r2.wild.t.test", code::A));
    assert_eq!(key("r1.wild.t.test", code::A), key("deep.r3.wild.t.test", code::A));
    // ... and random names under a DNAME the DNAME's.
    assert_eq!(key("r1.dn.t.test", code::A), key("r2.dn.t.test", code::A));
    // Names that exist keep their own.
    assert_ne!(key("www.t.test", code::A), key("ns1.t.test", code::A));
    // NXDOMAIN and NODATA: one bucket per zone whatever the name.
    assert_eq!(key("nx1.t.test", code::A), key("nx2.t.test", code::A));
    assert_eq!(key("www.t.test", code::MX), key("ns1.t.test", code::MX));
    assert_ne!(key("www.t.test", code::MX), key("nx1.t.test", code::A));
}

proptest::proptest! {
    /// Any question about names around wildcards, DNAMEs (chained, self-referencing, too
    /// long), CNAMEs and cuts, over either transport: a well-formed reply within its size limit.
    #[test]
    fn any_question_gets_a_bounded_well_formed_reply(
        labels in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::strategy::Just("x".to_string()),
                proptest::strategy::Just("a".repeat(63)),
                "[a-z0-9]{1,20}",
            ],
            0..4,
        ),
        base in proptest::sample::select(vec!["dn", "dn2", "self", "long", "wild", "c1", "www", "sub", "nx", ""]),
        qtype in proptest::sample::select(vec![1u16, 5, 6, 15, 16, 28, 39, 43, 255, 0, 250, 65535]),
        tcp in proptest::bool::ANY,
    ) {
        let cat = catalog();
        let mut name: Vec<String> = labels;
        if !base.is_empty() {
            name.push(base.to_string());
        }
        name.push("t.test".to_string());
        let text = name.join(".");
        let Ok(qname) = from_text(&text) else { return Ok(()) };
        let q = build_query(1, 0, &qname, qtype, false, None);
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        if let Outcome::Reply { bytes, .. } =
            handle(&cat, &Policy::default(), &q, transport, "192.0.2.1".parse().unwrap(), Vec::new())
        {
            let limit = if tcp { 65535 } else { 512 };
            proptest::prop_assert!(bytes.len() <= limit, "{} bytes", bytes.len());
            let p = parse(&bytes).expect("our reply parses");
            proptest::prop_assert!(p.answer.len() <= 2 * appnet_dns::answer::MAX_CNAME_CHAIN + 3);
        }
    }
}
