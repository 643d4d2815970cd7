//! The validator on arbitrary upstream answers: the fuzz data is a DNS message taken as the
//! answer to its own question, and as the answer to every DS/DNSKEY lookup the validator asks
//! for; every DNSKEY in it is trusted as a root anchor so signature checks, DS matching and the
//! NSEC/NSEC3 proofs are all reached. Must never panic, and must end within its lookup budget.
#![no_main]

use appnet_dns::wire::dnssec::DNSKEY;
use appnet_dns::wire::message;
use appnet_dns::wire::name;
use appnet_resolver::cache::{Answer, Outcome};
use appnet_resolver::dnssec::anchors::Anchor;
use appnet_resolver::dnssec::{Ctx, KeyCache, Limits, Poll, TrustAnchors, Validation};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = message::parse(data) else { return };
    let Some((qname, qtype, _)) = p.question.clone() else { return };
    let outcome = match p.rcode {
        3 => Outcome::NxDomain,
        0 if p.answer.is_empty() => Outcome::NoData,
        0 => Outcome::Positive,
        _ => Outcome::ServFail,
    };
    let answer = Answer { outcome, records: p.answer.clone(), authority: p.authority.clone() };
    let dnskeys = p.answer.iter().chain(&p.additional).filter(|r| r.rtype == DNSKEY).map(|r| r.rdata.clone());
    let anchors =
        TrustAnchors::new(vec![Anchor { zone: name::ROOT.into(), ds: vec![], dnskeys: dnskeys.collect() }]);
    let limits = Limits::default();
    let mut keys = KeyCache::new(64);
    let mut v = Validation::new(&qname, qtype, &answer);
    for _ in 0..limits.max_lookups {
        let mut ctx = Ctx {
            anchors: &anchors,
            keys: &mut keys,
            limits: &limits,
            now: Instant::now(),
            unix: 1_800_000_000,
        };
        match v.poll(&mut ctx) {
            Poll::Done(_) => break,
            Poll::Need(n, t) => v.supply(&n, t, answer.clone()),
        }
    }
    assert!(v.verifications() <= limits.max_verifications);
});
