//! RFC 2136 dynamic updates, sans-IO: parse an UPDATE message, check its prerequisites against
//! the served zone, and compute the zone's new records (serial bumped). The driver swaps the
//! result in (journal, NOTIFY, re-signing); nothing here touches the served zone.

use crate::online::{with_serial, zone_records};
use crate::serial::Serial;
use crate::wire::name::is_at_or_below;
use crate::wire::response::rcode;
use crate::wire::rrtype::{CLASS_ANY, CLASS_IN, code};
pub use crate::wire::update::{MAX_UPDATE_RECORDS, UpdateRequest, UpdateRr, parse};
use crate::wire::zonefile::{Location, ZoneRecord};
use crate::zone::Zone;

/// RFC 2136 §1.2 class NONE.
pub const CLASS_NONE: u16 = 254;
/// RFC 2136 rcodes.
pub const YXDOMAIN: u16 = 6;
pub const YXRRSET: u16 = 7;
pub const NXRRSET: u16 = 8;
pub const NOTAUTH: u16 = 9;
pub const NOTZONE: u16 = 10;

fn is_meta(rtype: u16) -> bool {
    matches!(rtype, code::ANY | code::AXFR | code::IXFR | 253 | 254 | code::OPT) || rtype == 250
}

/// DNSSEC records a signer owns: updates may not touch them (they are recomputed).
fn is_dnssec(rtype: u16) -> bool {
    matches!(rtype, code::RRSIG | 47 | 48 | 50 | 51)
}

/// Checks the prerequisites (RFC 2136 §3.2) and applies the updates (§3.4) to `zone`; returns
/// the new records with the serial bumped, `Ok(None)` when nothing changed, or the rcode.
pub fn apply(zone: &Zone, req: &UpdateRequest) -> Result<Option<Vec<ZoneRecord>>, u16> {
    let apex = zone.apex();
    let mut records = zone_records(zone);
    let exists_name = |recs: &[ZoneRecord], n: &[u8]| recs.iter().any(|r| r.owner.as_ref() == n);
    let exists_set =
        |recs: &[ZoneRecord], n: &[u8], t: u16| recs.iter().any(|r| r.owner.as_ref() == n && r.rtype == t);
    // §3.2 prerequisites.
    let mut value_sets: Vec<&UpdateRr> = Vec::new();
    for p in &req.prereqs {
        if p.ttl != 0 {
            return Err(rcode::FORMERR);
        }
        if !is_at_or_below(&p.name, apex) {
            return Err(NOTZONE);
        }
        match (p.class, p.rtype) {
            (CLASS_ANY, code::ANY) if p.rdata.is_empty() => {
                if !exists_name(&records, &p.name) {
                    return Err(rcode::NXDOMAIN);
                }
            }
            (CLASS_ANY, t) if p.rdata.is_empty() => {
                if !exists_set(&records, &p.name, t) {
                    return Err(NXRRSET);
                }
            }
            (CLASS_NONE, code::ANY) if p.rdata.is_empty() => {
                if exists_name(&records, &p.name) {
                    return Err(YXDOMAIN);
                }
            }
            (CLASS_NONE, t) if p.rdata.is_empty() => {
                if exists_set(&records, &p.name, t) {
                    return Err(YXRRSET);
                }
            }
            (CLASS_IN, _) => value_sets.push(p),
            _ => return Err(rcode::FORMERR),
        }
    }
    // Value-dependent: each (name, type) given must equal the zone's RRset exactly.
    for p in &value_sets {
        let mut want: Vec<&[u8]> = value_sets
            .iter()
            .filter(|q| q.name == p.name && q.rtype == p.rtype)
            .map(|q| &q.rdata[..])
            .collect();
        let mut have: Vec<&[u8]> = records
            .iter()
            .filter(|r| r.owner == p.name && r.rtype == p.rtype)
            .map(|r| &r.rdata[..])
            .collect();
        want.sort();
        want.dedup();
        have.sort();
        if want != have {
            return Err(NXRRSET);
        }
    }
    // §3.4.1 prescan.
    for u in &req.updates {
        if !is_at_or_below(&u.name, apex) {
            return Err(NOTZONE);
        }
        match u.class {
            CLASS_IN if is_meta(u.rtype) => return Err(rcode::FORMERR),
            CLASS_ANY if u.ttl != 0 || !u.rdata.is_empty() || (is_meta(u.rtype) && u.rtype != code::ANY) => {
                return Err(rcode::FORMERR);
            }
            CLASS_NONE if u.ttl != 0 || is_meta(u.rtype) => return Err(rcode::FORMERR),
            CLASS_IN | CLASS_ANY | CLASS_NONE => {}
            _ => return Err(rcode::FORMERR),
        }
        if is_dnssec(u.rtype) {
            return Err(rcode::REFUSED);
        }
    }
    // §3.4.2 updates, in order.
    let before = records.clone();
    let old_serial = zone.soa().serial;
    for u in &req.updates {
        let at_apex = u.name.as_ref() == apex;
        match u.class {
            CLASS_IN => {
                if u.rtype == code::SOA {
                    // Only at the apex, only a newer serial replaces the SOA.
                    if at_apex
                        && let Some(new) = crate::soa::SoaInfo::from_rdata(&u.rdata)
                        && Serial(new.serial).is_newer_than(Serial(old_serial))
                    {
                        records.retain(|r| !(r.owner.as_ref() == apex && r.rtype == code::SOA));
                        records.push(zr(u));
                    }
                    continue;
                }
                let has_cname = exists_set(&records, &u.name, code::CNAME);
                if u.rtype == code::CNAME
                    && records.iter().any(|r| r.owner == u.name && r.rtype != code::CNAME)
                {
                    continue;
                }
                if u.rtype != code::CNAME && has_cname {
                    continue;
                }
                if u.rtype == code::CNAME {
                    records.retain(|r| !(r.owner == u.name && r.rtype == code::CNAME));
                }
                if let Some(same) =
                    records.iter_mut().find(|r| r.owner == u.name && r.rtype == u.rtype && r.rdata == u.rdata)
                {
                    same.ttl = u.ttl;
                } else {
                    records.push(zr(u));
                }
                // One TTL per RRset: the newest.
                for r in records.iter_mut().filter(|r| r.owner == u.name && r.rtype == u.rtype) {
                    r.ttl = u.ttl;
                }
            }
            CLASS_ANY if u.rtype == code::ANY => {
                records.retain(|r| {
                    r.owner != u.name
                        || (at_apex && matches!(r.rtype, code::SOA | code::NS))
                        || is_dnssec(r.rtype)
                });
            }
            CLASS_ANY => {
                if at_apex && matches!(u.rtype, code::SOA | code::NS) {
                    continue;
                }
                records.retain(|r| !(r.owner == u.name && r.rtype == u.rtype));
            }
            _ => {
                // CLASS_NONE: delete one RR; never the SOA or the last apex NS.
                if u.rtype == code::SOA {
                    continue;
                }
                if at_apex
                    && u.rtype == code::NS
                    && records.iter().filter(|r| r.owner.as_ref() == apex && r.rtype == code::NS).count() <= 1
                {
                    continue;
                }
                records.retain(|r| !(r.owner == u.name && r.rtype == u.rtype && r.rdata == u.rdata));
            }
        }
    }
    if records == before {
        return Ok(None);
    }
    let soa_now = records
        .iter()
        .find(|r| r.owner.as_ref() == apex && r.rtype == code::SOA)
        .and_then(|r| crate::soa::SoaInfo::from_rdata(&r.rdata))
        .map_or(old_serial, |s| s.serial);
    if soa_now == old_serial {
        records = with_serial(apex, records, old_serial.wrapping_add(1));
    }
    Ok(Some(records))
}

fn zr(u: &UpdateRr) -> ZoneRecord {
    ZoneRecord {
        owner: u.name.clone(),
        rtype: u.rtype,
        ttl: u.ttl,
        rdata: u.rdata.clone(),
        at: Location::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;

    fn zone() -> Zone {
        Zone::from_text("com.", "$ORIGIN com.\n@ 60 SOA ns host 7 2 3 4 5\n@ 60 NS ns\nns 60 A 192.0.2.1\n")
            .unwrap()
    }

    fn rr(name: &str, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> UpdateRr {
        UpdateRr { name: from_text(name).unwrap(), rtype, class, ttl, rdata: rdata.to_vec() }
    }

    fn ns_rdata(name: &str) -> Vec<u8> {
        from_text(name).unwrap().to_vec()
    }

    fn req(prereqs: Vec<UpdateRr>, updates: Vec<UpdateRr>) -> UpdateRequest {
        UpdateRequest { zone: from_text("com.").unwrap(), prereqs, updates }
    }

    #[test]
    fn registrar_inserts_delegation_and_glue() {
        let z = zone();
        let r = req(
            vec![rr("networkutopia.com.", code::ANY, CLASS_NONE, 0, &[])],
            vec![
                rr("networkutopia.com.", code::NS, CLASS_IN, 3600, &ns_rdata("dns1.networkutopia.com.")),
                rr("dns1.networkutopia.com.", code::A, CLASS_IN, 3600, &[212, 212, 212, 1]),
            ],
        );
        let out = apply(&z, &r).unwrap().unwrap();
        let new = Zone::from_records(z.apex(), out).unwrap();
        assert_eq!(new.soa().serial, 8);
        assert!(new.node(&from_text("networkutopia.com.").unwrap()).unwrap().get(code::NS).is_some());
        // The same prerequisite now fails: the name is in use.
        assert_eq!(apply(&new, &r), Err(YXDOMAIN));
    }

    #[test]
    fn prerequisites_and_deletes() {
        let z = zone();
        assert_eq!(
            apply(&z, &req(vec![rr("x.com.", code::ANY, CLASS_ANY, 0, &[])], vec![])),
            Err(rcode::NXDOMAIN)
        );
        assert_eq!(apply(&z, &req(vec![rr("ns.com.", code::AAAA, CLASS_ANY, 0, &[])], vec![])), Err(NXRRSET));
        assert_eq!(apply(&z, &req(vec![rr("ns.com.", code::A, CLASS_NONE, 0, &[])], vec![])), Err(YXRRSET));
        assert_eq!(
            apply(&z, &req(vec![rr("ns.com.", code::A, CLASS_IN, 0, &[192, 0, 2, 9])], vec![])),
            Err(NXRRSET)
        );
        assert_eq!(
            apply(&z, &req(vec![rr("ns.com.", code::A, CLASS_IN, 0, &[192, 0, 2, 1])], vec![])),
            Ok(None)
        );
        assert_eq!(
            apply(&z, &req(vec![], vec![rr("ns.org.", code::A, CLASS_IN, 60, &[1, 2, 3, 4])])),
            Err(NOTZONE)
        );
        assert_eq!(
            apply(&z, &req(vec![], vec![rr("a.com.", code::RRSIG, CLASS_IN, 60, &[0; 20])])),
            Err(rcode::REFUSED)
        );
        // Apex SOA and the last NS survive deletes.
        let out = apply(
            &z,
            &req(
                vec![],
                vec![
                    rr("com.", code::ANY, CLASS_ANY, 0, &[]),
                    rr("com.", code::NS, CLASS_NONE, 0, &ns_rdata("ns.com.")),
                ],
            ),
        );
        assert_eq!(out, Ok(None));
        let out = apply(&z, &req(vec![], vec![rr("ns.com.", code::A, CLASS_NONE, 0, &[192, 0, 2, 1])]))
            .unwrap()
            .unwrap();
        assert!(!out.iter().any(|r| r.rtype == code::A));
    }

    #[test]
    fn junk_updates_never_panic() {
        // Every prefix and byte flip of a real UPDATE (nsupdate-shaped) parses or is refused.
        let mut msg = vec![0x12, 0x34, 0x28, 0x00, 0, 1, 0, 1, 0, 1, 0, 0];
        msg.extend_from_slice(b"\x03com\x00\x00\x06\x00\x01");
        msg.extend_from_slice(b"\x02nu\x03com\x00\x00\xff\x00\xfe\x00\x00\x00\x00\x00\x00");
        msg.extend_from_slice(b"\x02nu\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xd4\xd4\xd4\x01");
        let z = zone();
        let good = parse(&msg).unwrap();
        assert_eq!(good.prereqs.len(), 1);
        assert!(apply(&z, &good).unwrap().is_some());
        for cut in 0..msg.len() {
            if let Ok(r) = parse(&msg[..cut]) {
                let _ = apply(&z, &r);
            }
        }
        for i in 0..msg.len() {
            let mut m = msg.clone();
            m[i] ^= 0xa5;
            if let Ok(r) = parse(&m) {
                let _ = apply(&z, &r);
            }
        }
    }

    #[test]
    fn junk_messages_are_formerr() {
        for junk in [
            &[][..],
            &[0; 12],
            &[0xff; 40],
            b"\x00\x01\x28\x00\x00\x01\x00\x00\x00\x01\x00\x00\x03com\x00\x00\x06\x00\x01",
        ] {
            assert!(parse(junk).is_err());
        }
    }
}
