//! DNSSEC additions to an answer for a DO=1 query (RFC 4035 §3.1), sans-IO: the RRSIGs of
//! every RRset sent, and the NSEC (RFC 4035 §3.1.3) or NSEC3 (RFC 5155 §7.2) records proving
//! NXDOMAIN, NODATA, wildcard expansion and the absence of DS at an insecure delegation. The
//! zone is served as signed (pre-signed files, or signed at load): nothing is signed here.

use crate::answer::{Kind, Plan};
use crate::denial::{NSEC, NSEC3};
use crate::served::ServedZones;
use crate::wire::name::{MAX_NAME, is_wildcard, label_count, lower_into, parent};
use crate::wire::response::{RrRef, rcode};
use crate::wire::rrtype::{code, embedded_name};
use crate::zone::Zone;

/// Adds signatures and denial proofs to `plan` for the question `qname`/`qtype`.
pub fn add<'a>(catalog: &'a ServedZones, plan: &mut Plan<'a>, qname: &'a [u8]) {
    let Some(apex) = plan.zone else { return };
    let Some(zone) = catalog.find(apex) else { return };
    if zone.denial().has_nsec() || zone.denial().has_nsec3() || zone_signed(zone) {
        sign_answer(catalog, plan, qname);
    } else {
        return;
    }
    let wildcard = plan.synthesized_from.filter(|w| is_wildcard(w));
    // The name the negative part is about: the end of a CNAME chain, else the question.
    let last: &'a [u8] = plan
        .answer
        .as_slice()
        .iter()
        .rev()
        .find(|r| r.rtype == code::CNAME)
        .and_then(|r| crate::wire::rrtype::unpack_rdata(r.rdata).next())
        .and_then(|rd| embedded_name(rd, 0))
        .unwrap_or(qname);
    let mut lbuf = [0u8; MAX_NAME];
    let low = lower_into(last, &mut lbuf).to_vec();
    let denial_zone = match catalog.find(&low) {
        // A DS question at a child's apex answered by its parent (RFC 4035 §3.1.4.1): the
        // parent's chain proves it.
        Some(z) if z.apex() != apex && z.apex() == &low[..] && last.eq_ignore_ascii_case(qname) => zone,
        Some(z) => z,
        None => zone,
    };
    let mut extra: Vec<RrRef<'a>> = Vec::new();
    match plan.kind {
        Kind::Referral => referral(zone, plan, &mut extra),
        _ if plan.rcode == rcode::NXDOMAIN => nxdomain(denial_zone, &low, &mut extra),
        Kind::NoData => nodata(denial_zone, &low, wildcard, &mut extra),
        _ if plan.answer.as_slice().is_empty() => {}
        _ => {
            if let Some(w) = wildcard {
                // RFC 4035 §3.1.3.3: prove the question name itself does not exist.
                expansion(zone, &low, w, &mut extra);
            }
        }
    }
    // RRSIGs for the SOA (and anything else) in authority.
    let authority: Vec<RrRef<'a>> = plan.authority.as_slice().to_vec();
    for rr in authority {
        if rr.rtype != code::RRSIG
            && let Some(z) = owner_zone(catalog, &crate::wire::name::to_lower(rr.owner), rr.rtype)
            && let Some(sig) = z.node(&crate::wire::name::to_lower(rr.owner)).and_then(|n| n.sigs(rr.rtype))
            && !(rr.rtype == code::NS && plan.kind == Kind::Referral)
        {
            // The same TTL as the set it covers (the SOA's is capped by its MINIMUM).
            let mut sig = sig.at(rr.owner);
            sig.ttl = sig.ttl.min(rr.ttl);
            plan.authority.push(sig);
        }
    }
    for rr in extra {
        if !plan
            .authority
            .as_slice()
            .iter()
            .any(|e| e.rtype == rr.rtype && e.owner == rr.owner && e.rdata == rr.rdata)
        {
            plan.authority.push(rr);
        }
    }
}

/// The zone that holds `rtype` at `owner`: the most specific one, except that a DS at a zone's
/// apex lives in its parent when this server serves that too (RFC 4035 §3.1.4.1).
fn owner_zone<'a>(catalog: &'a ServedZones, owner: &[u8], rtype: u16) -> Option<&'a std::sync::Arc<Zone>> {
    let z = catalog.find(owner)?;
    if rtype == code::DS
        && z.apex() == owner
        && let Some(up) = crate::wire::name::parent(owner).and_then(|p| catalog.find(p))
    {
        return Some(up);
    }
    Some(z)
}

fn zone_signed(zone: &Zone) -> bool {
    zone.node(zone.apex()).is_some_and(|n| n.get(crate::wire::dnssec::DNSKEY).is_some())
}

/// RRSIGs for every RRset in the answer (wildcard answers: the wildcard's signatures, owned by
/// the question name, whose label count tells the resolver it was expanded).
fn sign_answer<'a>(catalog: &'a ServedZones, plan: &mut Plan<'a>, qname: &'a [u8]) {
    let answer: Vec<RrRef<'a>> = plan.answer.as_slice().to_vec();
    for rr in answer {
        if rr.rtype == code::RRSIG {
            continue;
        }
        let mut buf = [0u8; MAX_NAME];
        let low = lower_into(rr.owner, &mut buf);
        let Some(zone) = owner_zone(catalog, low, rr.rtype) else { continue };
        let node = match zone.node(low) {
            Some(n) => Some(n),
            None if rr.owner.eq_ignore_ascii_case(qname) => plan.synthesized_from.and_then(|w| zone.node(w)),
            None => None,
        };
        if let Some(sig) = node.and_then(|n| n.sigs(rr.rtype)) {
            plan.answer.push(sig.at(rr.owner));
        }
    }
}

/// The NSEC/NSEC3 record at `owner` (an owner name stored in `zone`) and its RRSIG.
fn chain_rr<'a>(zone: &'a Zone, owner: &[u8], rtype: u16, out: &mut Vec<RrRef<'a>>) {
    if let Some((name, node)) = zone.node_entry(owner)
        && let Some(set) = node.get(rtype)
    {
        out.push(set.at(name));
        if let Some(sig) = node.sigs(rtype) {
            out.push(sig.at(name));
        }
    }
}

fn nsec_for<'a>(zone: &'a Zone, name: &[u8], out: &mut Vec<RrRef<'a>>) {
    if let Some(owner) = zone.denial().nsec_for(name) {
        chain_rr(zone, owner, NSEC, out);
    }
}

fn nsec3_for<'a>(zone: &'a Zone, name: &[u8], out: &mut Vec<RrRef<'a>>) -> bool {
    match zone.denial().nsec3_for(name) {
        Some((owner, matches)) => {
            chain_rr(zone, owner, NSEC3, out);
            matches
        }
        None => false,
    }
}

/// The closest encloser of `name` in `zone` (the longest existing ancestor) and the next
/// closer name (one label longer, on the way to `name`).
fn closest_encloser<'n>(zone: &'n Zone, name: &'n [u8]) -> (&'n [u8], &'n [u8]) {
    let mut next_closer = name;
    let mut cur = parent(name);
    while let Some(p) = cur {
        if zone.node(p).is_some() || p.len() <= zone.apex().len() {
            return (p, next_closer);
        }
        next_closer = p;
        cur = parent(p);
    }
    (zone.apex(), next_closer)
}

fn wildcard_of(name: &[u8]) -> Vec<u8> {
    let mut w = vec![1, b'*'];
    w.extend_from_slice(name);
    w
}

fn nxdomain<'a>(zone: &'a Zone, name: &[u8], out: &mut Vec<RrRef<'a>>) {
    let (ce, next_closer) = closest_encloser(zone, name);
    if zone.denial().has_nsec() {
        nsec_for(zone, name, out);
        if label_count(ce) < label_count(name) {
            nsec_for(zone, &wildcard_of(ce), out);
        }
    } else if zone.denial().has_nsec3() {
        nsec3_for(zone, ce, out);
        nsec3_for(zone, next_closer, out);
        nsec3_for(zone, &wildcard_of(ce), out);
    }
}

fn nodata<'a>(zone: &'a Zone, name: &[u8], wildcard: Option<&[u8]>, out: &mut Vec<RrRef<'a>>) {
    if zone.denial().has_nsec() {
        // The NSEC at the name (or, for an empty non-terminal, the one covering it).
        nsec_for(zone, name, out);
        if let Some(w) = wildcard {
            nsec_for(zone, w, out);
        }
    } else if zone.denial().has_nsec3() {
        if let Some(w) = wildcard {
            // RFC 5155 §7.2.5: closest encloser, next closer covered, the wildcard's NSEC3.
            let (ce, next_closer) = closest_encloser(zone, name);
            nsec3_for(zone, ce, out);
            nsec3_for(zone, next_closer, out);
            nsec3_for(zone, w, out);
        } else if !nsec3_for(zone, name, out) {
            // An empty non-terminal under opt-out, or a DS question: closest encloser proof.
            let (ce, next_closer) = closest_encloser(zone, name);
            nsec3_for(zone, ce, out);
            nsec3_for(zone, next_closer, out);
        }
    }
}

fn expansion<'a>(zone: &'a Zone, name: &[u8], wildcard: &[u8], out: &mut Vec<RrRef<'a>>) {
    if zone.denial().has_nsec() {
        nsec_for(zone, name, out);
    } else if zone.denial().has_nsec3() {
        // RFC 5155 §7.2.6: the NSEC3 covering the next closer name.
        let ce = &wildcard[2..];
        let mut next_closer = name;
        while let Some(p) = parent(next_closer) {
            if p == ce {
                break;
            }
            next_closer = p;
        }
        nsec3_for(zone, next_closer, out);
    }
}

/// A referral: the DS RRset (signed delegation) or the proof there is none (insecure).
fn referral<'a>(zone: &'a Zone, plan: &Plan<'a>, out: &mut Vec<RrRef<'a>>) {
    let Some(ns) = plan.authority.as_slice().iter().find(|r| r.rtype == code::NS) else { return };
    let mut buf = [0u8; MAX_NAME];
    let cut = lower_into(ns.owner, &mut buf);
    let Some((owner, node)) = zone.node_entry(cut) else { return };
    if let Some(ds) = node.get(code::DS) {
        out.push(ds.at(owner));
        if let Some(sig) = node.sigs(code::DS) {
            out.push(sig.at(owner));
        }
    } else if zone.denial().has_nsec() {
        chain_rr(zone, owner, NSEC, out);
    } else if zone.denial().has_nsec3() && !nsec3_for(zone, owner, out) {
        // Opt-out: the closest provable encloser and the covering NSEC3 of the next closer.
        let (ce, next_closer) = closest_encloser(zone, owner);
        nsec3_for(zone, ce, out);
        nsec3_for(zone, next_closer, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{Scratch, lookup};
    use crate::wire::dnssec::{Algorithm, SignOptions, generate_key, load_key, sign_zone};
    use crate::wire::name::from_text;
    use crate::wire::zonefile::{Includes, parse_text};
    use std::sync::Arc;

    const ZONE: &str = "$ORIGIN example.\n$TTL 3600\n@ SOA ns1 host 1 7200 3600 1209600 300\n@ NS ns1\n\
ns1 A 192.0.2.1\nwww A 192.0.2.2\n*.wild TXT \"w\"\nsigned NS ns.signed\nns.signed A 192.0.2.3\n\
plain NS ns.elsewhere.net.\nsigned DS 1 13 2 0000000000000000000000000000000000000000000000000000000000000000\n";

    fn catalog(nsec3: bool) -> ServedZones {
        let apex = from_text("example.").unwrap();
        let g = generate_key(&apex, Algorithm::Ed25519, true, 0).unwrap();
        let keys = vec![load_key(&g.public, Some(&g.private)).unwrap()];
        let recs = parse_text(ZONE, "t", &apex, &Includes::Forbidden).unwrap();
        let signed =
            sign_zone(&apex, &recs, &keys, SignOptions { nsec3, inception: 1, expiration: 2_000_000_000 })
                .unwrap();
        ServedZones::new([Arc::new(Zone::from_records(&apex, signed).unwrap())])
    }

    /// (answer types, authority types) after adding the proofs for `qname`/`qtype`.
    fn sections(cat: &ServedZones, qname: &str, qtype: u16) -> (Vec<u16>, Vec<u16>, u16) {
        let q = from_text(qname).unwrap();
        let mut scratch = Scratch::new();
        let mut plan = lookup(cat, &q, qtype, &mut scratch);
        add(cat, &mut plan, &q);
        let t = |s: &[RrRef<'_>]| s.iter().map(|r| r.rtype).collect::<Vec<_>>();
        (t(plan.answer.as_slice()), t(plan.authority.as_slice()), plan.rcode)
    }

    #[test]
    fn ds_at_a_served_child_apex_is_signed_and_denied_by_the_parent() {
        let parent = catalog(false);
        let mut zones: Vec<Arc<Zone>> = Vec::new();
        for child in ["signed.example.", "plain.example."] {
            let text = "@ 3600 SOA ns host 1 2 3 4 5\n@ NS ns\nns A 192.0.2.9\n";
            let z = Zone::from_text(child, &format!("$ORIGIN {child}\n{text}")).unwrap();
            zones.push(Arc::new(z));
        }
        zones.push(parent.find(&from_text("example.").unwrap()).unwrap().clone());
        let both = ServedZones::new(zones);
        assert_eq!(
            sections(&both, "signed.example.", code::DS),
            (vec![code::DS, code::RRSIG], vec![], rcode::NOERROR),
            "the parent's DS with the parent's signature"
        );
        let (ans, auth, rc) = sections(&both, "plain.example.", code::DS);
        assert_eq!((ans, rc), (vec![], rcode::NOERROR));
        assert_eq!(auth, vec![code::SOA, code::RRSIG, NSEC, code::RRSIG], "the parent's SOA and NSEC");
    }

    #[test]
    fn nsec_proofs() {
        let cat = catalog(false);
        assert_eq!(
            sections(&cat, "www.example.", code::A),
            (vec![code::A, code::RRSIG], vec![], rcode::NOERROR)
        );
        let (_, auth, rc) = sections(&cat, "zzz.example.", code::A);
        assert_eq!(rc, rcode::NXDOMAIN);
        assert_eq!(auth.iter().filter(|&&t| t == NSEC).count(), 2, "covering NSEC + wildcard NSEC: {auth:?}");
        assert_eq!(auth.iter().filter(|&&t| t == code::RRSIG).count(), 3, "{auth:?}");
        let (_, auth, _) = sections(&cat, "www.example.", code::MX);
        assert_eq!(auth, vec![code::SOA, code::RRSIG, NSEC, code::RRSIG]);
        let (ans, auth, _) = sections(&cat, "x.wild.example.", code::TXT);
        assert_eq!(ans, vec![code::TXT, code::RRSIG]);
        assert_eq!(auth, vec![NSEC, code::RRSIG], "the expanded name's non-existence");
        let (_, auth, _) = sections(&cat, "a.signed.example.", code::A);
        assert_eq!(auth, vec![code::NS, code::DS, code::RRSIG]);
        let (_, auth, _) = sections(&cat, "a.plain.example.", code::A);
        assert_eq!(auth, vec![code::NS, NSEC, code::RRSIG], "no DS: insecure delegation proven");
    }

    #[test]
    fn nsec3_proofs() {
        let cat = catalog(true);
        let (_, auth, rc) = sections(&cat, "a.b.nope.example.", code::A);
        assert_eq!(rc, rcode::NXDOMAIN);
        let n3 = auth.iter().filter(|&&t| t == NSEC3).count();
        assert!((2..=3).contains(&n3), "closest encloser, next closer, wildcard (may coincide): {auth:?}");
        let (_, auth, _) = sections(&cat, "www.example.", code::MX);
        assert_eq!(auth, vec![code::SOA, code::RRSIG, NSEC3, code::RRSIG]);
        let (_, auth, _) = sections(&cat, "x.wild.example.", code::TXT);
        assert_eq!(auth, vec![NSEC3, code::RRSIG]);
        let (_, auth, _) = sections(&cat, "a.plain.example.", code::A);
        assert_eq!(auth, vec![code::NS, NSEC3, code::RRSIG]);
    }

    #[test]
    fn unsigned_zone_gets_nothing_added() {
        let apex = from_text("example.").unwrap();
        let recs = parse_text(ZONE, "t", &apex, &Includes::Forbidden).unwrap();
        let cat = ServedZones::new([Arc::new(Zone::from_records(&apex, recs).unwrap())]);
        assert_eq!(sections(&cat, "nope.example.", code::A).1, vec![code::SOA]);
    }
}
