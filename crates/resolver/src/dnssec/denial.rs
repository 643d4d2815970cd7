//! Authenticated denial of existence, sans-IO: do these (already verified) NSEC or NSEC3
//! records prove that a name does not exist (NXDOMAIN), that it has no records of a type
//! (NODATA), that a wildcard expansion was legitimate, or whether a name is an unsigned
//! delegation (RFC 4035 §5.4, RFC 5155 §8, RFC 7129).

use appnet_dns::denial::canonical_key;
use appnet_dns::wire::message::Record;
use appnet_dns::wire::name::{self, NameBuf, is_at_or_below, label_count, parent, wildcard_of};
use appnet_dns::wire::rrtype::code;
use appnet_dns::wire::verify::{DS, bitmap_has, nsec3_hash, nsec3_owner_hash, parse_nsec, parse_nsec3};
use std::cmp::Ordering;

/// What the records prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The denial (or the wildcard expansion) is proven.
    Proven,
    /// Proven only through an NSEC3 opt-out span, or with NSEC3 iterations above the limit
    /// (RFC 9276): the answer is insecure, not bogus.
    Insecure,
    /// Not proven.
    Missing,
}

/// What the NSEC/NSEC3 records of a DS denial say about the name asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A delegation without DS (or inside an opt-out span): the child is insecure.
    Unsigned,
    /// Not a delegation: the name lies inside the zone (or does not exist).
    NotACut,
}

/// Verified denial records of one answer.
pub struct Denials<'a> {
    nsec: Vec<(NameBuf, NameBuf, &'a [u8])>,
    nsec3: Vec<&'a Record>,
    max_iterations: u16,
}

fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    canonical_key(a).cmp(&canonical_key(b))
}

/// `owner < name < next` in canonical order, wrapping around at the end of the chain.
fn nsec_covers(owner: &[u8], next: &[u8], name: &[u8]) -> bool {
    let after_owner = canonical_cmp(owner, name) == Ordering::Less;
    let before_next = canonical_cmp(name, next) == Ordering::Less;
    if canonical_cmp(owner, next) == Ordering::Less {
        after_owner && before_next
    } else {
        after_owner || before_next
    }
}

/// The longest common ancestor of two names (lower-cased).
fn common_ancestor(a: &[u8], b: &[u8]) -> NameBuf {
    let mut cur: &[u8] = a;
    loop {
        if is_at_or_below(b, cur) {
            return cur.into();
        }
        match parent(cur) {
            Some(p) => cur = p,
            None => return name::ROOT.into(),
        }
    }
}

/// The ancestor of `name` with `labels` labels.
fn ancestor_with(name: &[u8], labels: usize) -> Option<&[u8]> {
    let mut cur = name;
    for _ in labels..label_count(name) {
        cur = parent(cur)?;
    }
    Some(cur)
}

impl<'a> Denials<'a> {
    /// The NSEC and NSEC3 records among `records` (other types are skipped).
    pub fn new(records: &'a [Record], max_iterations: u16) -> Denials<'a> {
        let mut nsec = Vec::new();
        let mut nsec3 = Vec::new();
        for r in records {
            if r.rtype == appnet_dns::wire::dnssec::NSEC {
                if let Some((next, bitmap)) = parse_nsec(&r.rdata) {
                    nsec.push((name::to_lower(&r.owner), next, bitmap));
                }
            } else if r.rtype == appnet_dns::wire::dnssec::NSEC3 && parse_nsec3(&r.rdata).is_some() {
                nsec3.push(r);
            }
        }
        Denials { nsec, nsec3, max_iterations }
    }

    /// Whether there is any denial record at all.
    pub fn is_empty(&self) -> bool {
        self.nsec.is_empty() && self.nsec3.is_empty()
    }

    fn nsec_matching(&self, n: &[u8]) -> Option<&[u8]> {
        self.nsec.iter().find(|(o, _, _)| o[..] == n[..]).map(|(_, _, b)| *b)
    }

    fn nsec_covering(&self, n: &[u8]) -> Option<(&NameBuf, &NameBuf)> {
        self.nsec.iter().find(|(o, next, _)| nsec_covers(o, next, n)).map(|(o, next, _)| (o, next))
    }

    /// The NSEC closest encloser of a covered `qname`: the deepest ancestor shared with the
    /// covering record's ends (RFC 4035 §5.4).
    fn nsec_closest_encloser(&self, qname: &[u8]) -> Option<NameBuf> {
        let (owner, next) = self.nsec_covering(qname)?;
        let a = common_ancestor(qname, owner);
        let b = common_ancestor(qname, next);
        Some(if a.len() >= b.len() { a } else { b })
    }

    /// NXDOMAIN for `qname`: the name and the wildcard at its closest encloser are denied.
    pub fn nxdomain(&self, qname: &[u8]) -> Proof {
        let qname = name::to_lower(qname);
        if !self.nsec.is_empty() {
            let Some(ce) = self.nsec_closest_encloser(&qname) else { return Proof::Missing };
            let wild = wildcard_of(&ce);
            return if self.nsec_covering(&wild).is_some() || wild == qname {
                Proof::Proven
            } else {
                Proof::Missing
            };
        }
        match self.nsec3_closest_encloser(&qname) {
            Err(p) => p,
            Ok((ce, _)) => self.nsec3_covers(&wildcard_of(&ce)),
        }
    }

    /// NODATA for `qname`/`qtype`: the name exists without the type (or a wildcard does).
    pub fn nodata(&self, qname: &[u8], qtype: u16) -> Proof {
        let qname = name::to_lower(qname);
        let lacks = |bitmap: &[u8]| !bitmap_has(bitmap, qtype) && !bitmap_has(bitmap, code::CNAME);
        if !self.nsec.is_empty() {
            if let Some(bitmap) = self.nsec_matching(&qname) {
                // A parent-side NSEC at a delegation proves nothing but the absence of DS.
                let delegation = bitmap_has(bitmap, code::NS) && !bitmap_has(bitmap, code::SOA);
                return if lacks(bitmap) && (qtype == DS || !delegation) {
                    Proof::Proven
                } else {
                    Proof::Missing
                };
            }
            // An empty non-terminal: covered by an NSEC whose next name lies below it.
            if self.nsec_covering(&qname).is_some_and(|(_, next)| is_at_or_below(next, &qname)) {
                return Proof::Proven;
            }
            // Wildcard NODATA: the name is covered, the wildcard at its encloser lacks the type.
            let Some(ce) = self.nsec_closest_encloser(&qname) else { return Proof::Missing };
            return match self.nsec_matching(&wildcard_of(&ce)) {
                Some(bitmap) if lacks(bitmap) => Proof::Proven,
                _ => Proof::Missing,
            };
        }
        if self.nsec3.is_empty() {
            return Proof::Missing;
        }
        if self.iterations_too_high() {
            return Proof::Insecure;
        }
        if let Some(bitmap) = self.nsec3_matching(&qname) {
            return if lacks(bitmap) { Proof::Proven } else { Proof::Missing };
        }
        match self.nsec3_closest_encloser(&qname) {
            Err(p) => p,
            Ok((_, true)) if qtype == DS => Proof::Insecure,
            Ok((ce, _)) => match self.nsec3_matching(&wildcard_of(&ce)) {
                Some(bitmap) if lacks(bitmap) => Proof::Proven,
                _ => Proof::Missing,
            },
        }
    }

    /// A wildcard expansion to `qname` from a signature over `labels` labels: the next closer
    /// name must not exist (RFC 4035 §5.3.4, RFC 5155 §8.8).
    pub fn wildcard_answer(&self, qname: &[u8], labels: usize) -> Proof {
        let qname = name::to_lower(qname);
        if !self.nsec.is_empty() {
            return if self.nsec_covering(&qname).is_some() { Proof::Proven } else { Proof::Missing };
        }
        if self.nsec3.is_empty() {
            return Proof::Missing;
        }
        match ancestor_with(&qname, labels + 1) {
            Some(next_closer) => self.nsec3_covers(next_closer),
            None => Proof::Missing,
        }
    }

    /// What a proven DS denial at `n` says: an unsigned delegation, or not a zone cut.
    pub fn ds_denial(&self, n: &[u8]) -> Cut {
        let n = name::to_lower(n);
        let unsigned_cut = |bitmap: &[u8]| {
            bitmap_has(bitmap, code::NS) && !bitmap_has(bitmap, code::SOA) && !bitmap_has(bitmap, DS)
        };
        if !self.nsec.is_empty() {
            return match self.nsec_matching(&n) {
                Some(b) if unsigned_cut(b) => Cut::Unsigned,
                _ => Cut::NotACut,
            };
        }
        if self.iterations_too_high() {
            return Cut::Unsigned;
        }
        if let Some(b) = self.nsec3_matching(&n) {
            return if unsigned_cut(b) { Cut::Unsigned } else { Cut::NotACut };
        }
        match self.nsec3_closest_encloser(&n) {
            Ok((_, true)) => Cut::Unsigned,
            _ => Cut::NotACut,
        }
    }

    fn iterations_too_high(&self) -> bool {
        self.nsec3.iter().any(|r| parse_nsec3(&r.rdata).is_some_and(|p| p.iterations > self.max_iterations))
    }

    /// The NSEC3 hash of `n` in the zone of the NSEC3 records (their owners' parent).
    fn hashed(&self, n: &[u8], r: &Record) -> Option<Vec<u8>> {
        let p = parse_nsec3(&r.rdata)?;
        if p.hash_algorithm != 1 || p.iterations > self.max_iterations {
            return None;
        }
        let zone = parent(&r.owner)?;
        if !is_at_or_below(n, &name::to_lower(zone)) {
            return None;
        }
        Some(nsec3_hash(n, p.iterations, p.salt))
    }

    fn nsec3_matching(&self, n: &[u8]) -> Option<&'a [u8]> {
        self.nsec3.iter().find_map(|r| {
            let h = self.hashed(n, r)?;
            (nsec3_owner_hash(&r.owner)? == h).then(|| parse_nsec3(&r.rdata).map(|p| p.bitmap))?
        })
    }

    /// Whether an NSEC3 covers `n`'s hash; `Some(opt_out)` when one does.
    fn nsec3_covering(&self, n: &[u8]) -> Option<bool> {
        self.nsec3.iter().find_map(|r| {
            let h = self.hashed(n, r)?;
            let owner = nsec3_owner_hash(&r.owner)?;
            let p = parse_nsec3(&r.rdata)?;
            let next = p.next_hashed;
            let covers = if owner[..] < next[..] {
                owner[..] < h[..] && h[..] < next[..]
            } else {
                owner[..] < h[..] || h[..] < next[..]
            };
            covers.then_some(p.opt_out)
        })
    }

    fn nsec3_covers(&self, n: &[u8]) -> Proof {
        if self.iterations_too_high() {
            return Proof::Insecure;
        }
        match self.nsec3_covering(n) {
            Some(_) => Proof::Proven,
            None => Proof::Missing,
        }
    }

    /// The NSEC3 closest-encloser proof (RFC 5155 §8.3): an ancestor that exists and the next
    /// closer name covered. `Ok((closest encloser, next closer covered by opt-out))`.
    fn nsec3_closest_encloser(&self, qname: &[u8]) -> Result<(NameBuf, bool), Proof> {
        if self.nsec3.is_empty() {
            return Err(Proof::Missing);
        }
        if self.iterations_too_high() {
            return Err(Proof::Insecure);
        }
        let mut next_closer: &[u8] = qname;
        let mut cur = parent(qname);
        while let Some(ce) = cur {
            if self.nsec3_matching(ce).is_some() {
                return match self.nsec3_covering(next_closer) {
                    Some(opt_out) => Ok((ce.into(), opt_out)),
                    None => Err(Proof::Missing),
                };
            }
            next_closer = ce;
            cur = parent(ce);
        }
        Err(Proof::Missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_dns::wire::name::from_text;

    #[test]
    fn an_empty_non_terminal_is_nodata_with_the_nsec_covering_it() {
        let n = |t: &str| from_text(t).unwrap();
        // The root zone has sig.example. but no example. node.
        let mut rdata = n("sig.example.").to_vec();
        rdata.extend_from_slice(&[0, 6, 0x20, 0, 0, 0, 0, 0x03]);
        let nsec =
            Record { owner: n("com."), rtype: appnet_dns::wire::dnssec::NSEC, class: 1, ttl: 60, rdata };
        let records = [nsec];
        let d = Denials::new(&records, 100);
        assert_eq!(d.nodata(&n("example."), DS), Proof::Proven);
        assert_eq!(d.ds_denial(&n("example.")), Cut::NotACut);
        assert_eq!(d.nodata(&n("dz."), DS), Proof::Missing, "covered but not above the next name");
    }

    #[test]
    fn canonical_cover_wraps_at_the_end_of_the_chain() {
        let n = |t: &str| from_text(t).unwrap();
        assert!(nsec_covers(&n("a.example."), &n("c.example."), &n("b.example.")));
        assert!(!nsec_covers(&n("a.example."), &n("c.example."), &n("d.example.")));
        assert!(nsec_covers(&n("z.example."), &n("example."), &n("zz.example.")));
        assert!(!nsec_covers(&n("a.example."), &n("c.example."), &n("a.example.")));
        assert_eq!(common_ancestor(&n("x.b.example."), &n("c.example.")), n("example."));
    }
}
