//! The validator on hand-built signed data: a small hierarchy signed with the dns crate's own
//! keygen and signer, answered by its own lookup code (DO=1 proofs included), validated
//! sans-IO with the DS/DNSKEY lookups answered from the same zones.

use super::*;
use crate::dnssec::anchors::TrustAnchors;
use crate::dnssec::{Limits, Security, ede};
use appnet_dns::answer::{Kind, Scratch, lookup};
use appnet_dns::served::ServedZones;
use appnet_dns::wire::dnssec::{
    Algorithm, SignOptions, ZoneKey, ds_rdata, generate_key, load_key, sign_zone,
};
use appnet_dns::wire::message::Record;
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::rrtype::{CLASS_IN, code, unpack_rdata};
use appnet_dns::wire::zonefile::{Includes, parse_text};
use appnet_dns::zone::Zone;
use std::sync::Arc;

const NOW: u32 = 1_800_000_000;

fn keypair(zone: &str, ksk: bool) -> ZoneKey {
    let g = generate_key(&from_text(zone).unwrap(), Algorithm::EcdsaP256Sha256, ksk, u64::from(NOW)).unwrap();
    load_key(&g.public, Some(&g.private)).unwrap()
}

fn keys_of(zone: &str, ksk: bool, zsk: bool) -> Vec<ZoneKey> {
    let mut out = Vec::new();
    if ksk {
        out.push(keypair(zone, true));
    }
    if zsk {
        out.push(keypair(zone, false));
    }
    out
}

fn sign(apex: &str, text: &str, keys: &[ZoneKey], nsec3: bool) -> Arc<Zone> {
    let a = from_text(apex).unwrap();
    let records = parse_text(text, apex, &a, &Includes::Forbidden).unwrap();
    let opts = SignOptions { nsec3, inception: NOW - 3600, expiration: NOW + 86_400 };
    let signed = if keys.is_empty() { records } else { sign_zone(&a, &records, keys, opts).unwrap() };
    Arc::new(Zone::from_records(&a, signed).unwrap())
}

const SOA: &str = "$TTL 300\n@ SOA ns admin 1 3600 600 86400 300\n@ NS ns\n";

/// root → tld → sec.tld (NSEC), n3.tld (NSEC3), unsigned.tld (no DS).
struct World {
    zones: Vec<Arc<Zone>>,
    anchors: TrustAnchors,
    sec_zsk: Vec<u8>,
}

fn world() -> World {
    let mut all: Vec<ZoneKey> = Vec::new();
    all.extend(keys_of(".", true, true));
    all.extend(keys_of("tld.", true, false));
    all.extend(keys_of("sec.tld.", true, true));
    all.extend(keys_of("n3.tld.", false, true));
    let sec_zsk = all[4].rdata.clone();
    let root =
        sign(".", &format!("{SOA}ns A 192.0.2.1\ntld. NS ns.tld.\nns.tld. A 192.0.2.2\n"), &all, false);
    let tld = sign(
        "tld.",
        &format!(
            "{SOA}ns A 192.0.2.2\nsec NS ns.sec\nns.sec A 192.0.2.3\nn3 NS ns.n3\nns.n3 A 192.0.2.4\n\
             unsigned NS ns.unsigned\nns.unsigned A 192.0.2.5\n"
        ),
        &all,
        false,
    );
    let sec = sign(
        "sec.tld.",
        &format!("{SOA}ns A 192.0.2.3\nwww A 192.0.2.10\n*.wild A 192.0.2.11\nalias CNAME www\n"),
        &all,
        false,
    );
    let n3 = sign("n3.tld.", &format!("{SOA}ns A 192.0.2.4\nwww A 192.0.2.20\n"), &all, true);
    let unsigned = sign("unsigned.tld.", &format!("{SOA}ns A 192.0.2.5\nwww A 192.0.2.30\n"), &[], false);
    let ksk = &all[0];
    let anchor =
        appnet_dns::wire::zonefile::record_text(&ksk.owner, code::DS, 3600, &ds_rdata(&ksk.owner, ksk));
    World {
        zones: vec![root, tld, sec, n3, unsigned],
        anchors: TrustAnchors::from_text(&anchor, "test anchor").unwrap(),
        sec_zsk,
    }
}

fn records_of(refs: &[appnet_dns::wire::response::RrRef<'_>]) -> Vec<Record> {
    let mut out = Vec::new();
    for r in refs {
        for rd in unpack_rdata(r.rdata) {
            out.push(Record {
                owner: r.owner.into(),
                rtype: r.rtype,
                class: CLASS_IN,
                ttl: r.ttl,
                rdata: rd.to_vec(),
            });
        }
    }
    out
}

impl World {
    /// What an authoritative server answers with DO=1: DS from the parent side of a cut.
    fn answer(&self, qname: &[u8], qtype: u16) -> Answer {
        let lookup_name: &[u8] = if qtype == DS { parent(qname).unwrap_or(qname) } else { qname };
        let zone = self
            .zones
            .iter()
            .filter(|z| is_at_or_below(lookup_name, z.apex()))
            .max_by_key(|z| z.apex().len())
            .expect("a zone");
        let catalog = ServedZones::new([zone.clone()]);
        let mut scratch = Scratch::new();
        let mut plan = lookup(&catalog, qname, qtype, &mut scratch);
        appnet_dns::proofs::add(&catalog, &mut plan, qname);
        let outcome = match plan.kind {
            Kind::Answer => Outcome::Positive,
            Kind::NxDomain => Outcome::NxDomain,
            Kind::NoData => Outcome::NoData,
            _ => Outcome::ServFail,
        };
        let authority = records_of(plan.authority.as_slice())
            .into_iter()
            .filter(|r| outcome != Outcome::Positive || r.rtype != code::NS)
            .collect();
        Answer { outcome, records: records_of(plan.answer.as_slice()), authority }
    }

    fn validate_with(
        &self,
        qname: &str,
        qtype: u16,
        answer: &Answer,
        unix: u32,
        tamper: impl Fn(&[u8], u16, &mut Answer),
    ) -> Security {
        self.validate_in(&KeyCache::new(64), qname, qtype, answer, unix, tamper).0
    }

    /// Validates with the shared state `keys`; also returns the signature checks it made.
    fn validate_in(
        &self,
        keys: &KeyCache,
        qname: &str,
        qtype: u16,
        answer: &Answer,
        unix: u32,
        tamper: impl Fn(&[u8], u16, &mut Answer),
    ) -> (Security, usize) {
        let q = from_text(qname).unwrap();
        let limits = Limits::default();
        let mut v = Validation::new(&q, qtype, answer);
        for _ in 0..64 {
            let mut ctx = Ctx { anchors: &self.anchors, keys, limits: &limits, now: Instant::now(), unix };
            match v.poll(&mut ctx) {
                Poll::Done(s) => return (s, v.verifications()),
                Poll::Need(n, t) => {
                    let mut a = self.answer(&n, t);
                    tamper(&n, t, &mut a);
                    v.supply(&n, t, a);
                }
            }
        }
        panic!("validation did not finish");
    }

    fn validate(&self, qname: &str, qtype: u16) -> Security {
        let answer = self.answer(&from_text(qname).unwrap(), qtype);
        self.validate_with(qname, qtype, &answer, NOW, |_, _, _| {})
    }
}

fn bogus_code(s: &Security) -> Option<u16> {
    match s {
        Security::Bogus(e) => Some(e.code),
        _ => None,
    }
}

#[test]
fn a_signed_answer_under_the_anchor_is_secure() {
    let w = world();
    assert_eq!(w.validate("www.sec.tld.", code::A), Security::Secure);
    assert_eq!(w.validate("alias.sec.tld.", code::A), Security::Secure, "CNAME and target");
    assert_eq!(w.validate("tld.", code::SOA), Security::Secure);
}

#[test]
fn below_a_delegation_proven_without_ds_the_answer_is_insecure() {
    let w = world();
    assert_eq!(w.validate("www.unsigned.tld.", code::A), Security::Insecure);
}

#[test]
fn a_tampered_record_is_bogus() {
    let w = world();
    let mut answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let a = answer.records.iter_mut().find(|r| r.rtype == code::A).unwrap();
    a.rdata = vec![203, 0, 113, 66];
    let got = w.validate_with("www.sec.tld.", code::A, &answer, NOW, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::DNSSEC_BOGUS));
}

#[test]
fn a_signature_check_that_passed_is_not_repeated_but_a_changed_rrset_is_checked() {
    let w = world();
    let keys = KeyCache::new(64);
    let nx = w.answer(&from_text("nothere.sec.tld.").unwrap(), code::A);
    assert_eq!(nx.outcome, Outcome::NxDomain);
    let (first, checks) = w.validate_in(&keys, "nothere.sec.tld.", code::A, &nx, NOW, |_, _, _| {});
    assert_eq!(first, Security::Secure);
    assert!(checks >= 2, "the chain and the denial were checked ({checks})");
    // The same SOA and NSEC RRsets again (another name they deny): no public-key operation.
    let nx2 = w.answer(&from_text("nothere2.sec.tld.").unwrap(), code::A);
    let (again, checks) = w.validate_in(&keys, "nothere2.sec.tld.", code::A, &nx2, NOW, |_, _, _| {});
    assert_eq!((again, checks), (Security::Secure, 0));
    // Expired meanwhile: the time window is checked before the remembered pass.
    let keys_late = KeyCache::new(64);
    let _ = w.validate_in(&keys_late, "nothere2.sec.tld.", code::A, &nx2, NOW, |_, _, _| {});
    let (expired, _) =
        w.validate_in(&keys_late, "nothere2.sec.tld.", code::A, &nx2, NOW + 2 * 86_400, |_, _, _| {});
    assert!(matches!(expired, Security::Bogus(_)), "{expired:?}");
    // A changed record under the same RRSIG is checked (and fails), not taken from the cache.
    let mut forged = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let (ok, _) = w.validate_in(&keys, "www.sec.tld.", code::A, &forged, NOW, |_, _, _| {});
    assert_eq!(ok, Security::Secure);
    forged.records.iter_mut().find(|r| r.rtype == code::A).unwrap().rdata = vec![203, 0, 113, 66];
    let (got, checks) = w.validate_in(&keys, "www.sec.tld.", code::A, &forged, NOW, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::DNSSEC_BOGUS));
    assert!(checks >= 1);
}

#[test]
fn an_expired_signature_is_bogus_with_its_own_code() {
    let w = world();
    let answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let got = w.validate_with("www.sec.tld.", code::A, &answer, NOW + 2 * 86_400, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::SIGNATURE_EXPIRED));
    let got = w.validate_with("www.sec.tld.", code::A, &answer, NOW - 2 * 86_400, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::SIGNATURE_NOT_YET_VALID));
}

#[test]
fn a_missing_dnskey_is_bogus() {
    let w = world();
    let answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let sec = from_text("sec.tld.").unwrap();
    let got = w.validate_with("www.sec.tld.", code::A, &answer, NOW, |n, t, a| {
        if *n == *sec && t == DNSKEY {
            *a = Answer { outcome: Outcome::NoData, records: vec![], authority: vec![] };
        }
    });
    assert_eq!(bogus_code(&got), Some(ede::DNSKEY_MISSING));
}

#[test]
fn stripped_signatures_are_bogus_in_a_signed_zone() {
    let w = world();
    let mut answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    answer.records.retain(|r| r.rtype != RRSIG);
    let got = w.validate_with("www.sec.tld.", code::A, &answer, NOW, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::RRSIGS_MISSING));
}

#[test]
fn nsec_proves_nxdomain_and_nodata_and_their_absence_is_bogus() {
    let w = world();
    let nx = w.answer(&from_text("nope.sec.tld.").unwrap(), code::A);
    assert_eq!(nx.outcome, Outcome::NxDomain);
    assert_eq!(w.validate("nope.sec.tld.", code::A), Security::Secure);
    assert_eq!(w.validate("www.sec.tld.", code::TXT), Security::Secure, "NODATA");
    let mut stripped = nx.clone();
    stripped
        .authority
        .retain(|r| r.rtype == code::SOA || (r.rtype == RRSIG && rrsig_covers(&r.rdata) == code::SOA));
    let got = w.validate_with("nope.sec.tld.", code::A, &stripped, NOW, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::NSEC_MISSING));
}

#[test]
fn nsec3_proves_nxdomain_and_nodata() {
    let w = world();
    let nx = w.answer(&from_text("nope.n3.tld.").unwrap(), code::A);
    assert_eq!(nx.outcome, Outcome::NxDomain);
    assert!(nx.authority.iter().any(|r| r.rtype == appnet_dns::wire::dnssec::NSEC3));
    assert_eq!(w.validate("nope.n3.tld.", code::A), Security::Secure);
    assert_eq!(w.validate("www.n3.tld.", code::MX), Security::Secure, "NODATA");
    assert_eq!(w.validate("www.n3.tld.", code::A), Security::Secure);
}

#[test]
fn a_wildcard_expansion_needs_its_nsec() {
    let w = world();
    let answer = w.answer(&from_text("x.wild.sec.tld.").unwrap(), code::A);
    assert_eq!(answer.outcome, Outcome::Positive);
    assert_eq!(w.validate("x.wild.sec.tld.", code::A), Security::Secure);
    let mut stripped = answer.clone();
    stripped.authority.clear();
    let got = w.validate_with("x.wild.sec.tld.", code::A, &stripped, NOW, |_, _, _| {});
    assert_eq!(bogus_code(&got), Some(ede::NSEC_MISSING));
}

#[test]
fn a_wrong_trust_anchor_makes_everything_bogus() {
    let mut w = world();
    w.anchors = TrustAnchors::from_text(
        ". 3600 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n",
        "wrong",
    )
    .unwrap();
    assert_eq!(bogus_code(&w.validate("www.sec.tld.", code::A)), Some(ede::DNSKEY_MISSING));
}

/// Variants of DNSKEY rdata with the same key tag (RFC 4034 Appendix B is a plain checksum:
/// +1 on one even-offset byte and −1 on another keeps it) but a different, invalid key.
fn colliding(key: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 4;
    while out.len() < n && i + 2 < key.len() {
        let mut k = key.to_vec();
        if k[i] < 255 && k[i + 2] > 0 {
            k[i] += 1;
            k[i + 2] -= 1;
            assert_eq!(appnet_dns::wire::dnssec::key_tag(&k), appnet_dns::wire::dnssec::key_tag(key));
            out.push(k);
        }
        i += 2;
    }
    out
}

#[test]
fn keys_sharing_a_tag_are_tried_only_up_to_the_limit() {
    let w = world();
    let answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let set: Vec<Record> = answer.records.iter().filter(|r| r.rtype == code::A).cloned().collect();
    let sigs: Vec<&Record> = answer.records.iter().filter(|r| r.rtype == RRSIG).collect();
    let zone = from_text("sec.tld.").unwrap();
    let real = w.sec_zsk.clone();
    let limits = Limits::default();
    let keys = KeyCache::new(16);
    let ctx = Ctx { anchors: &w.anchors, keys: &keys, limits: &limits, now: Instant::now(), unix: NOW };
    // The real key last, behind ten forged keys with its tag: never reached.
    let mut flood = colliding(&real, 10);
    assert_eq!(flood.len(), 10);
    flood.push(real.clone());
    let mut v = Validation::new(&from_text("www.sec.tld.").unwrap(), code::A, &answer);
    assert!(v.verify(&ctx, &set, &sigs, &zone, &flood).is_err());
    assert_eq!(v.verifications(), limits.max_keys_per_tag, "tries stop at the per-tag cap");
    // The real key among the first few verifies.
    let mut v = Validation::new(&from_text("www.sec.tld.").unwrap(), code::A, &answer);
    let mut few = colliding(&real, 2);
    few.push(real);
    assert!(v.verify(&ctx, &set, &sigs, &zone, &few).is_ok());
}

#[test]
fn the_failure_budget_stops_a_question() {
    let w = world();
    let answer = w.answer(&from_text("www.sec.tld.").unwrap(), code::A);
    let set: Vec<Record> = answer.records.iter().filter(|r| r.rtype == code::A).cloned().collect();
    let sigs: Vec<&Record> = answer.records.iter().filter(|r| r.rtype == RRSIG).collect();
    let zone = from_text("sec.tld.").unwrap();
    let forged = colliding(&w.sec_zsk, 4);
    let limits = Limits::default();
    let keys = KeyCache::new(16);
    let ctx = Ctx { anchors: &w.anchors, keys: &keys, limits: &limits, now: Instant::now(), unix: NOW };
    let mut v = Validation::new(&from_text("www.sec.tld.").unwrap(), code::A, &answer);
    for _ in 0..10 {
        let _ = v.verify(&ctx, &set, &sigs, &zone, &forged);
    }
    assert!(v.verifications() <= limits.max_failures);
}

#[test]
fn nsec3_above_the_iteration_limit_is_insecure_not_bogus() {
    let w = world();
    let mut answer = w.answer(&from_text("nope.n3.tld.").unwrap(), code::A);
    // Claim 150 iterations in every NSEC3 (the RRSIGs then fail, so check the proof alone).
    for r in answer.authority.iter_mut().filter(|r| r.rtype == appnet_dns::wire::dnssec::NSEC3) {
        r.rdata[2..4].copy_from_slice(&150u16.to_be_bytes());
    }
    let d = crate::dnssec::denial::Denials::new(&answer.authority, 100);
    assert_eq!(d.nxdomain(&from_text("nope.n3.tld.").unwrap()), crate::dnssec::denial::Proof::Insecure);
}
