//! The answering core for signed requests (TSIG, RFC 8945) and incremental transfers (IXFR from
//! the journal, RFC 1995), with the clock injected: bytes in, bytes out, checked by parsing.

use appnet_dns::acl::TransferAcl;
use appnet_dns::journal::successor;
use appnet_dns::respond::{Outcome, Policy, Transport, handle_at};
use appnet_dns::served::ServedZones;
use appnet_dns::wire::message::{Record, build_ixfr, build_query, parse};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::response::{OptOut, append_opt};
use appnet_dns::wire::rrtype::code;
use appnet_dns::wire::tsig::{self, Key, Keyring, TsigError, Verifier, sign_request, strip};
use appnet_dns::zone::Zone;
use std::net::IpAddr;
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;

fn key() -> Key {
    Key::parse_spec("xfr:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap()
}

fn zone(serial: u32, extra: &str) -> Zone {
    let mut text =
        format!("$TTL 300\n@ SOA ns1 h {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n{extra}");
    for i in 0..400 {
        text.push_str(&format!("h{i} TXT \"{}\"\n", "x".repeat(60)));
    }
    Zone::from_text("example.com", &text).unwrap()
}

fn policy(acl: &[&str]) -> Policy {
    let keys = Keyring::new([key()]);
    Policy {
        max_udp_payload: 1232,
        allow_transfer: TransferAcl::parse(acl, &keys).unwrap(),
        keys,
        ..Policy::default()
    }
}

fn run(cat: &ServedZones, policy: &Policy, packet: &[u8], peer: &str, now: u64) -> Outcome {
    let peer: IpAddr = peer.parse().unwrap();
    handle_at(cat, policy, packet, Transport::Tcp, peer, || now, Vec::new())
}

fn apex() -> Vec<u8> {
    from_text("example.com").unwrap().into()
}

#[test]
fn signed_axfr_is_signed_in_every_message() {
    let cat = ServedZones::new([Arc::new(zone(1, ""))]);
    let mut q = build_query(9, 0, &apex(), code::AXFR, false, None);
    let k = Arc::new(key());
    let mac = sign_request(&mut q, &k, NOW);
    let Outcome::Transfer(t) = run(&cat, &policy(&["127.0.0.1 key xfr"]), &q, "127.0.0.1", NOW + 5) else {
        panic!("expected a transfer")
    };
    let msgs = t.messages(4096);
    assert!(msgs.len() > 3, "a multi-message transfer");
    let mut v = Verifier::new(k, mac);
    let mut records = 0;
    for m in &msgs {
        assert!(m.len() <= 4096);
        tsig::find(m).unwrap().expect("every message carries a TSIG (RFC 8945 §5.3.1)");
        v.check(m, NOW + 6).unwrap();
        records += parse(&strip(m)).unwrap().answer.len();
    }
    v.finish().unwrap();
    assert_eq!(records, t.zone.record_count() + 1);
}

#[test]
fn keyed_allow_transfer_refuses_unsigned_and_wrong_keys() {
    let cat = ServedZones::new([Arc::new(zone(1, ""))]);
    let p = policy(&["127.0.0.1 key xfr"]);
    let q = build_query(9, 0, &apex(), code::AXFR, false, None);
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q, "127.0.0.1", NOW) else { panic!("a reply") };
    assert_eq!(parse(&bytes).unwrap().rcode, 5, "unsigned → REFUSED");

    // Unknown key → NOTAUTH with an unsigned TSIG carrying BADKEY.
    let mut q2 = q.clone();
    let other = Key::parse_spec("other:hmac-sha256:c2VjcmV0").unwrap();
    sign_request(&mut q2, &other, NOW);
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q2, "127.0.0.1", NOW) else { panic!("a reply") };
    let t = tsig::find(&bytes).unwrap().unwrap();
    assert_eq!((bytes[3] & 0x0f, t.error, t.mac.len()), (9, tsig::error::BADKEY, 0));

    // Right name, wrong secret → BADSIG.
    let mut q3 = q.clone();
    sign_request(&mut q3, &Key::parse_spec("xfr:hmac-sha256:b3RoZXI=").unwrap(), NOW);
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q3, "127.0.0.1", NOW) else { panic!("a reply") };
    assert_eq!(tsig::find(&bytes).unwrap().unwrap().error, tsig::error::BADSIG);

    // Good signature, clock 10 minutes off → BADTIME, signed, with our time in Other Data.
    let mut q4 = q.clone();
    let k = Arc::new(key());
    let mac = sign_request(&mut q4, &k, NOW);
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q4, "127.0.0.1", NOW + 600) else { panic!("a reply") };
    let t = tsig::find(&bytes).unwrap().unwrap();
    assert_eq!((t.error, t.other.len()), (tsig::error::BADTIME, 6));
    assert_eq!(Verifier::new(k, mac).check(&bytes, NOW + 600), Err(TsigError::Peer(tsig::error::BADTIME)));

    // Signed from an address outside the entry → REFUSED (and still signed).
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q4, "192.0.2.9", NOW) else { panic!("a reply") };
    assert!(tsig::find(&bytes).unwrap().is_some());
    assert_eq!(parse(&strip(&bytes)).unwrap().rcode, 5);
}

#[test]
fn signed_queries_get_signed_answers_over_udp() {
    let cat = ServedZones::new([Arc::new(zone(1, ""))]);
    let mut q = build_query(3, 0, &from_text("ns1.example.com").unwrap(), code::A, false, Some((512, 0)));
    let k = Arc::new(key());
    let mac = sign_request(&mut q, &k, NOW);
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let Outcome::Reply { bytes, .. } =
        handle_at(&cat, &policy(&[]), &q, Transport::Udp, peer, || NOW, Vec::new())
    else {
        panic!("a reply")
    };
    Verifier::new(k, mac).check(&bytes, NOW).unwrap();
    assert_eq!(parse(&strip(&bytes)).unwrap().answer.len(), 1);
}

#[test]
fn badvers_answers_to_signed_queries_are_signed() {
    let cat = ServedZones::new([Arc::new(zone(1, ""))]);
    let www = from_text("ns1.example.com").unwrap();
    let k = Arc::new(key());
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    for transport in [Transport::Udp, Transport::Tcp] {
        // EDNS version 1, signed: BADVERS (RFC 6891), carrying a TSIG that verifies (RFC 8945 §5.3).
        let mut q = build_query(5, 0, &www, code::A, false, Some((1232, 1)));
        let mac = sign_request(&mut q, &k, NOW);
        let Outcome::Reply { bytes, .. } =
            handle_at(&cat, &policy(&[]), &q, transport, peer, || NOW, Vec::new())
        else {
            panic!("a reply")
        };
        let t = tsig::find(&bytes).unwrap().expect("the BADVERS answer is signed");
        assert_eq!(t.error, 0);
        Verifier::new(k.clone(), mac).check(&bytes, NOW).unwrap();
        let p = parse(&strip(&bytes)).unwrap();
        assert_eq!((p.rcode, p.answer.len()), (16, 0), "BADVERS, no answer");
    }
    // A bad signature on such a query: the TSIG error wins (NOTAUTH/BADSIG), as for any request.
    let mut q = build_query(6, 0, &www, code::A, false, Some((1232, 1)));
    sign_request(&mut q, &Key::parse_spec("xfr:hmac-sha256:b3RoZXI=").unwrap(), NOW);
    let Outcome::Reply { bytes, .. } =
        handle_at(&cat, &policy(&[]), &q, Transport::Udp, peer, || NOW, Vec::new())
    else {
        panic!("a reply")
    };
    assert_eq!((bytes[3] & 0x0f, tsig::find(&bytes).unwrap().unwrap().error), (9, tsig::error::BADSIG));
    // Unsigned: BADVERS without a TSIG, as before.
    let q = build_query(7, 0, &www, code::A, false, Some((1232, 1)));
    let Outcome::Reply { bytes, .. } =
        handle_at(&cat, &policy(&[]), &q, Transport::Udp, peer, || NOW, Vec::new())
    else {
        panic!("a reply")
    };
    assert!(tsig::find(&bytes).unwrap().is_none());
    assert_eq!(parse(&bytes).unwrap().rcode, 16);
}

fn soa_of(z: &Zone) -> Record {
    appnet_dns::journal::soa_record(z).unwrap()
}

#[test]
fn ixfr_from_the_journal_and_full_fallback() {
    let v1 = zone(1, "www A 192.0.2.10\n");
    let v2 = successor(Some(&v1), zone(2, "www A 192.0.2.11\n"), 1 << 20);
    let v3 = successor(Some(&v2), zone(3, "www A 192.0.2.11\nnew A 192.0.2.12\n"), 1 << 20);
    let cat = ServedZones::new([Arc::new(v3.clone())]);
    let p = policy(&["127.0.0.1"]);
    let ask = |from: &Zone| {
        let soa = soa_of(from);
        let q = build_ixfr(4, &apex(), soa.ttl, &soa.rdata);
        let Outcome::Transfer(t) = run(&cat, &p, &q, "127.0.0.1", NOW) else { panic!("a transfer") };
        t.messages(16384).iter().flat_map(|m| parse(m).unwrap().answer).collect::<Vec<_>>()
    };
    // From serial 1: condensed (1 → 3): SOA3, SOA1, -www .10, SOA3, +www .11, +new, SOA3.
    let recs = ask(&v1);
    let kinds: Vec<u16> = recs.iter().map(|r| r.rtype).collect();
    assert_eq!(kinds, [code::SOA, code::SOA, code::A, code::SOA, code::A, code::A, code::SOA], "{recs:?}");
    assert_eq!(recs[1].rdata, soa_of(&v1).rdata);
    assert_eq!(recs[2].rdata, [192, 0, 2, 10]);
    // From serial 2: just the last step.
    assert_eq!(ask(&v2).len(), 5);
    // From an unknown serial: the whole zone (AXFR form).
    let v0 = zone(0, "");
    assert_eq!(ask(&v0).len(), v3.record_count() + 1);
    // Up to date: the SOA alone.
    let soa = soa_of(&v3);
    let q = build_ixfr(4, &apex(), soa.ttl, &soa.rdata);
    let Outcome::Reply { bytes, .. } = run(&cat, &p, &q, "127.0.0.1", NOW) else { panic!("a reply") };
    assert_eq!(parse(&bytes).unwrap().answer.len(), 1);
}

/// An IXFR request from `from`'s serial, with an OPT record of `payload` when given.
fn ixfr_query(from: &Zone, payload: Option<u16>) -> Vec<u8> {
    let soa = soa_of(from);
    let mut q = build_ixfr(4, &apex(), soa.ttl, &soa.rdata);
    if let Some(payload) = payload {
        append_opt(&mut q, OptOut { payload });
    }
    q
}

fn udp(cat: &ServedZones, policy: &Policy, packet: &[u8]) -> Vec<u8> {
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    match handle_at(cat, policy, packet, Transport::Udp, peer, || NOW, Vec::new()) {
        Outcome::Reply { bytes, .. } => bytes,
        other => panic!("a reply, not {other:?}"),
    }
}

/// Serial of a SOA record's (uncompressed) rdata: after MNAME and RNAME.
fn serial(rdata: &[u8]) -> u32 {
    let skip_name = |mut at: usize| {
        while rdata[at] != 0 {
            at += 1 + rdata[at] as usize;
        }
        at + 1
    };
    let at = skip_name(skip_name(0));
    u32::from_be_bytes(rdata[at..at + 4].try_into().unwrap())
}

#[test]
fn ixfr_over_udp_is_incremental_when_it_fits_one_message() {
    let v1 = zone(1, "www A 192.0.2.10\n");
    let v2 = successor(Some(&v1), zone(2, "www A 192.0.2.11\n"), 1 << 20);
    let cat = ServedZones::new([Arc::new(v2.clone())]);
    let p = policy(&["127.0.0.1"]);
    for payload in [None, Some(1232)] {
        let bytes = udp(&cat, &p, &ixfr_query(&v1, payload));
        assert!(bytes.len() <= 512);
        let m = parse(&bytes).unwrap();
        assert!(m.aa && !m.tc && m.rcode == 0, "{m:?}");
        // RFC 1995 §4: new SOA, old SOA, deletions, new SOA, additions, new SOA.
        let seq: Vec<(u16, u32)> = m
            .answer
            .iter()
            .map(|r| (r.rtype, if r.rtype == code::SOA { serial(&r.rdata) } else { 0 }))
            .collect();
        let soa = |s| (code::SOA, s);
        assert_eq!(seq, [soa(2), soa(1), (code::A, 0), soa(2), (code::A, 0), soa(2)], "{m:?}");
        assert_eq!(
            (m.answer[2].rdata.as_slice(), m.answer[4].rdata.as_slice()),
            (&[192, 0, 2, 10][..], &[192, 0, 2, 11][..])
        );
        // RFC 6891 §7: an EDNS request gets an OPT record back, with our payload size.
        assert_eq!(m.edns.map(|e| (e.payload, e.version)), payload.map(|_| (1232, 0)));
        assert!(m.additional.is_empty());
    }
    // Up to date: still the SOA alone.
    let m = parse(&udp(&cat, &p, &ixfr_query(&v2, Some(1232)))).unwrap();
    assert_eq!((m.answer.len(), m.answer[0].rtype), (1, code::SOA));
}

#[test]
fn ixfr_over_udp_too_big_for_the_message_gets_the_soa_alone() {
    let v1 = zone(1, "");
    // Twelve new 60-byte TXT records: ~900 bytes, over 512 but within 1232.
    let extra: String = (0..12).map(|i| format!("n{i} TXT \"{}\"\n", "y".repeat(60))).collect();
    let v2 = successor(Some(&v1), zone(2, &extra), 1 << 20);
    let cat = ServedZones::new([Arc::new(v2)]);
    let p = policy(&["127.0.0.1"]);
    let m = parse(&udp(&cat, &p, &ixfr_query(&v1, None))).unwrap();
    assert_eq!((m.answer.len(), m.answer[0].rtype, serial(&m.answer[0].rdata)), (1, code::SOA, 2), "{m:?}");
    assert!(!m.tc);
    // With EDNS and 1232 bytes it fits: SOA 2, SOA 1, SOA 2, twelve TXT, SOA 2.
    let bytes = udp(&cat, &p, &ixfr_query(&v1, Some(1232)));
    assert!(bytes.len() > 512 && bytes.len() <= 1232, "{}", bytes.len());
    let m = parse(&bytes).unwrap();
    assert_eq!(m.answer.len(), 16);
    assert_eq!(m.answer.iter().filter(|r| r.rtype == code::TXT).count(), 12);
    assert!(m.edns.is_some());
    // AXFR over UDP stays FORMERR.
    let q = build_query(9, 0, &apex(), code::AXFR, false, None);
    assert_eq!(parse(&udp(&cat, &p, &q)).unwrap().rcode, 1);
}

#[test]
fn signed_ixfr_over_udp_gets_a_signed_incremental_answer() {
    let v1 = zone(1, "www A 192.0.2.10\n");
    let v2 = successor(Some(&v1), zone(2, "www A 192.0.2.11\n"), 1 << 20);
    let cat = ServedZones::new([Arc::new(v2)]);
    let p = policy(&["127.0.0.1 key xfr"]);
    let k = Arc::new(key());
    for payload in [None, Some(1232)] {
        let mut q = ixfr_query(&v1, payload);
        let mac = sign_request(&mut q, &k, NOW);
        let bytes = udp(&cat, &p, &q);
        assert!(bytes.len() <= 512);
        Verifier::new(k.clone(), mac).check(&bytes, NOW).unwrap();
        let m = parse(&strip(&bytes)).unwrap();
        let kinds: Vec<u16> = m.answer.iter().map(|r| r.rtype).collect();
        assert_eq!(kinds, [code::SOA, code::SOA, code::A, code::SOA, code::A, code::SOA], "{m:?}");
        assert_eq!(m.edns.is_some(), payload.is_some());
    }
}

mod properties {
    use super::*;
    use appnet_dns::journal::{Journal, apply, diff};
    use proptest::prelude::*;

    /// Zone text from (name index, type choice, value) triples: a few names, A/TXT/MX, some TTLs.
    fn zone_from(serial: u32, recs: &[(u8, u8, u8)]) -> Zone {
        let mut text =
            format!("$TTL 300\n@ SOA ns1 h {serial} 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.1\n");
        for &(n, t, v) in recs {
            let owner = ["a", "b", "c.b", "d", "*.w"][n as usize % 5];
            let ttl = [300, 600][(v % 2) as usize];
            match t % 3 {
                0 => text.push_str(&format!("{owner} {ttl} A 10.0.0.{v}\n")),
                1 => text.push_str(&format!("{owner} {ttl} TXT \"t{v}\"\n")),
                _ => text.push_str(&format!("{owner} {ttl} MX {v} mx{}.example.net.\n", v % 3)),
            }
        }
        Zone::from_text("example.com", &text).unwrap()
    }

    fn lines(z: &Zone) -> Vec<String> {
        let mut l: Vec<String> = z.to_text().lines().map(String::from).collect();
        l.sort();
        l
    }

    proptest! {
        #[test]
        fn any_changed_byte_breaks_the_signature(
            label in "[a-z]{1,20}",
            qtype in 1u16..300,
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let k = key();
            let keys = Keyring::new([k.clone()]);
            let mut q = build_query(77, 0, &from_text(&format!("{label}.example.com")).unwrap(), qtype, false, Some((1232, 0)));
            sign_request(&mut q, &k, NOW);
            prop_assert!(tsig::verify_request(&keys, &q, NOW).unwrap().is_some());
            // The signed bytes (all but the id, which TSIG carries as Original ID) and the MAC.
            let t = tsig::find(&q).unwrap().unwrap();
            let mac_at = t.mac.as_ptr() as usize - q.as_ptr() as usize;
            let covered: Vec<usize> = (2..t.start).chain(mac_at..mac_at + t.mac.len()).collect();
            let mut bad = q.clone();
            bad[covered[at.index(covered.len())]] ^= flip;
            // Whatever byte changed: not accepted (parse error, FORMERR, BADKEY, BADSIG).
            prop_assert!(!matches!(tsig::verify_request(&keys, &bad, NOW), Ok(Some(_))));
        }

        #[test]
        fn diff_then_apply_gives_the_new_version(
            a in prop::collection::vec((0u8..5, 0u8..3, 0u8..8), 0..20),
            b in prop::collection::vec((0u8..5, 0u8..3, 0u8..8), 0..20),
            c in prop::collection::vec((0u8..5, 0u8..3, 0u8..8), 0..20),
        ) {
            let (v1, v2, v3) = (zone_from(1, &a), zone_from(2, &b), zone_from(3, &c));
            let (d12, d23) = (diff(&v1, &v2).unwrap(), diff(&v2, &v3).unwrap());
            prop_assert_eq!(lines(&apply(&v1, std::slice::from_ref(&d12), 1 << 20).unwrap()), lines(&v2));
            // Two steps, applied in turn or condensed from the journal, end at v3.
            prop_assert_eq!(lines(&apply(&v1, &[d12.clone(), d23.clone()], 1 << 20).unwrap()), lines(&v3));
            let journal = Journal::default().push(d12, 1 << 20).push(d23, 1 << 20);
            let condensed = journal.since(1).unwrap();
            prop_assert_eq!(lines(&apply(&v1, &[condensed], 1 << 20).unwrap()), lines(&v3));
        }
    }
}
