//! The authoritative lookup (RFC 1034 §4.3.2), sans-IO: given the catalog and a question, decide
//! what goes in each section. No allocation: sections are fixed-capacity arrays on the stack
//! whose entries borrow from the zones and the request packet.

use crate::served::{Served, ServedZones};
use crate::wire::name::{MAX_NAME, is_at_or_below, label_count, lower_into, parent};
use crate::wire::response::{RrRef, rcode};
use crate::wire::rrtype::{code, embedded_name, target_name_offset};
use crate::zone::{Node, Zone};

/// Longest CNAME chain followed inside our zones (DNAME substitutions count as links).
pub const MAX_CNAME_CHAIN: usize = 8;

/// Room for the CNAMEs synthesised from DNAMEs (RFC 6672) while answering one question: each
/// link needs its packed rdata (two length bytes and a name).
const SCRATCH_LEN: usize = (MAX_CNAME_CHAIN + 1) * (MAX_NAME + 2);

/// Caller-provided room the lookup writes synthesised records into (a DNAME's CNAME), so the
/// plan can borrow them like zone data and the lookup still allocates nothing.
pub struct Scratch {
    buf: [u8; SCRATCH_LEN],
}

impl Scratch {
    /// Empty room for one lookup.
    pub fn new() -> Scratch {
        Scratch { buf: [0; SCRATCH_LEN] }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// How to answer QTYPE ANY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyPolicy {
    /// Every RRset at the name (over TCP, where there is no amplification).
    All,
    /// RFC 8482: one RRset (the SOA at the apex, else the lowest type), used over UDP so ANY
    /// cannot be used for amplification.
    Minimal,
}

/// A fixed-capacity list of RRsets for one section; pushes beyond capacity are dropped.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a, const N: usize> {
    items: [RrRef<'a>; N],
    len: usize,
}

const EMPTY: RrRef<'static> = RrRef { owner: &[], rtype: 0, ttl: 0, rdata: &[] };

impl<'a, const N: usize> Section<'a, N> {
    fn new() -> Self {
        Section { items: [EMPTY; N], len: 0 }
    }

    pub(crate) fn push(&mut self, rr: RrRef<'a>) -> bool {
        if self.len == N {
            return false;
        }
        self.items[self.len] = rr;
        self.len += 1;
        true
    }

    /// The RRsets pushed so far.
    pub fn as_slice(&self) -> &[RrRef<'a>] {
        &self.items[..self.len]
    }

    fn contains(&self, owner: &[u8], rtype: u16) -> bool {
        self.as_slice().iter().any(|r| r.rtype == rtype && r.owner.eq_ignore_ascii_case(owner))
    }
}

/// What kind of answer this is (for statistics and rate limiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Answer,
    NoData,
    NxDomain,
    Referral,
    Refused,
    Error,
}

/// The lookup's result: response code, AA, and the three sections.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub rcode: u16,
    pub aa: bool,
    pub kind: Kind,
    pub answer: Section<'a, 32>,
    pub authority: Section<'a, 8>,
    pub additional: Section<'a, 32>,
    /// Leading additional RRsets that must fit (in-zone glue of a referral).
    pub required_additional: usize,
    /// The apex of the zone that answered (for rate-limit keys), if any.
    pub zone: Option<&'a [u8]>,
    /// For an answer synthesised for the question name: the wildcard or DNAME owner it came
    /// from. Rate limiting accounts such answers to that owner, not to the (attacker-chosen,
    /// random) question name, as BIND and Knot do.
    pub synthesized_from: Option<&'a [u8]>,
}

impl<'a> Plan<'a> {
    fn new(rcode: u16, kind: Kind) -> Self {
        Plan {
            rcode,
            aa: false,
            kind,
            answer: Section::new(),
            authority: Section::new(),
            additional: Section::new(),
            required_additional: 0,
            zone: None,
            synthesized_from: None,
        }
    }

    /// REFUSED: not a name we are authoritative for.
    pub fn refused() -> Self {
        Plan::new(rcode::REFUSED, Kind::Refused)
    }
}

/// Answers `qname` (as sent, any case) / `qtype` from `catalog`; ANY gets every RRset, and
/// CNAMEs synthesised from DNAMEs are written into `scratch`.
pub fn lookup<'a>(
    catalog: &'a ServedZones,
    qname: &'a [u8],
    qtype: u16,
    scratch: &'a mut Scratch,
) -> Plan<'a> {
    lookup_with(catalog, qname, qtype, AnyPolicy::All, scratch)
}

/// [`lookup`] with a choice of how ANY is answered (RFC 8482 minimal over UDP).
pub fn lookup_with<'a>(
    catalog: &'a ServedZones,
    qname: &'a [u8],
    qtype: u16,
    any: AnyPolicy,
    scratch: &'a mut Scratch,
) -> Plan<'a> {
    let mut buf = [0u8; MAX_NAME];
    let low = lower_into(qname, &mut buf);
    let zone = match catalog.lookup(low) {
        Served::Zone(z) => z,
        Served::Expired => return Plan::new(rcode::SERVFAIL, Kind::Error),
        Served::NotAuthoritative => return Plan::refused(),
    };
    // RFC 4035 §3.1.4.1: DS lives on the parent side of a cut; a server of both the parent and
    // the child answers a DS query at the child's apex from the parent.
    let zone = match (qtype == code::DS && zone.apex() == low, parent(low).map(|p| catalog.lookup(p))) {
        (true, Some(Served::Zone(up))) => up,
        _ => zone,
    };
    let mut plan = Plan::new(rcode::NOERROR, Kind::Answer);
    plan.aa = true;
    plan.zone = Some(zone.apex());
    let mut zone: &'a Zone = zone;
    let mut current: &'a [u8] = qname;
    let mut free: &'a mut [u8] = &mut scratch.buf[..];
    for step in 0..=MAX_CNAME_CHAIN {
        let mut buf = [0u8; MAX_NAME];
        let low = lower_into(current, &mut buf);
        match find_node(zone, low, qtype) {
            Found::Cut(cut_owner, ns_node) => {
                referral(catalog, &mut plan, zone, cut_owner, ns_node);
                if step == 0 {
                    plan.aa = false;
                    plan.kind = Kind::Referral;
                }
                return plan;
            }
            Found::Dname(owner, node) => {
                // RFC 6672 §3.2: the DNAME, then a CNAME from the name to the name with the
                // DNAME's owner replaced by its target (TTL of the DNAME), then follow it.
                let Some(dname) = node.get(code::DNAME) else { return plan };
                let Some(target) = dname.rdatas().next().and_then(|rd| embedded_name(rd, 0)) else {
                    return plan;
                };
                if !plan.answer.contains(owner, code::DNAME) {
                    plan.answer.push(dname.at(owner));
                }
                if step == 0 {
                    plan.synthesized_from = Some(owner);
                }
                let prefix = current.len().saturating_sub(owner.len());
                let new_len = prefix + target.len();
                if new_len > MAX_NAME {
                    plan.rcode = rcode::YXDOMAIN;
                    return plan;
                }
                if free.len() < new_len + 2 || plan.answer.len > MAX_CNAME_CHAIN * 2 {
                    return plan;
                }
                let (head, tail) = std::mem::take(&mut free).split_at_mut(new_len + 2);
                free = tail;
                head[..2].copy_from_slice(&(new_len as u16).to_be_bytes());
                head[2..2 + prefix].copy_from_slice(&current[..prefix]);
                head[2 + prefix..].copy_from_slice(target);
                let head: &'a [u8] = head;
                let synthesized = &head[2..];
                if plan.answer.contains(current, code::CNAME) {
                    return plan;
                }
                plan.answer.push(RrRef { owner: current, rtype: code::CNAME, ttl: dname.ttl, rdata: head });
                if qtype == code::CNAME || plan.answer.contains(synthesized, code::CNAME) {
                    return plan;
                }
                let mut tbuf = [0u8; MAX_NAME];
                let Some(next_zone) = catalog.find(lower_into(synthesized, &mut tbuf)) else { return plan };
                zone = next_zone;
                current = synthesized;
                continue;
            }
            Found::Node(node) | Found::Wildcard(node) => {
                if step == 0 && node.name().first() == Some(&1) && node.name().get(1) == Some(&b'*') {
                    // Found through the wildcard (or the question was the wildcard itself).
                    plan.synthesized_from = Some(node.name());
                }
                if qtype != code::CNAME
                    && qtype != code::ANY
                    && let Some(cname) = node.get(code::CNAME)
                {
                    plan.answer.push(cname.at(current));
                    let Some(target) = cname.rdatas().next().and_then(|rd| embedded_name(rd, 0)) else {
                        return plan;
                    };
                    let mut tbuf = [0u8; MAX_NAME];
                    let tlow = lower_into(target, &mut tbuf);
                    // Follow only inside our zones, and never in a loop.
                    let Some(next_zone) = catalog.find(tlow) else { return plan };
                    if plan.answer.len > MAX_CNAME_CHAIN || plan.answer.contains(target, code::CNAME) {
                        return plan;
                    }
                    zone = next_zone;
                    current = target;
                    continue;
                }
                let before = plan.answer.len;
                if qtype == code::ANY && any == AnyPolicy::Minimal {
                    if let Some(set) = node.get(code::SOA).or_else(|| node.rrsets().next()) {
                        plan.answer.push(set.at(current));
                    }
                } else if qtype == code::ANY {
                    for set in node.rrsets() {
                        plan.answer.push(set.at(current));
                    }
                } else if let Some(set) = node.get(qtype) {
                    plan.answer.push(set.at(current));
                }
                if plan.answer.len == before {
                    plan.kind = if step == 0 { Kind::NoData } else { plan.kind };
                    negative(&mut plan, zone);
                } else {
                    add_targets(catalog, &mut plan);
                }
                return plan;
            }
            Found::Nothing => {
                plan.rcode = rcode::NXDOMAIN;
                plan.kind = Kind::NxDomain;
                negative(&mut plan, zone);
                return plan;
            }
        }
    }
    plan
}

enum Found<'a> {
    /// The name exists.
    Node(Node<'a>),
    /// The name does not exist but a wildcard at its closest encloser does.
    Wildcard(Node<'a>),
    /// A delegation at or above the name: the cut's owner and its node.
    Cut(&'a [u8], Node<'a>),
    /// A DNAME strictly above the name (RFC 6672): its owner and node.
    Dname(&'a [u8], Node<'a>),
    /// No such name.
    Nothing,
}

/// Walks from the apex down to `name` (lower-cased), stopping at a zone cut.
fn find_node<'a>(zone: &'a Zone, name: &[u8], qtype: u16) -> Found<'a> {
    let apex_labels = label_count(zone.apex());
    let labels = label_count(name);
    let mut encloser: Node<'a> = match zone.node(zone.apex()) {
        Some(n) => n,
        None => return Found::Nothing,
    };
    let mut encloser_name: &[u8] = zone.apex();
    if labels > apex_labels && encloser.get(code::DNAME).is_some() {
        return Found::Dname(encloser_name, encloser);
    }
    for depth in apex_labels + 1..=labels {
        let suffix = suffix_with_labels(name, depth);
        let Some((key, node)) = zone.node_entry(suffix) else {
            // The closest encloser is `encloser_name`; try its wildcard.
            let mut wbuf = [0u8; MAX_NAME + 2];
            let wild = wildcard_into(encloser_name, &mut wbuf);
            return match wild.and_then(|w| zone.node(w)) {
                Some(w) => Found::Wildcard(w),
                None => Found::Nothing,
            };
        };
        let at_target = depth == labels;
        if node.get(code::NS).is_some() && !(at_target && qtype == code::DS) {
            return Found::Cut(key, node);
        }
        if !at_target && node.get(code::DNAME).is_some() {
            return Found::Dname(key, node);
        }
        encloser = node;
        encloser_name = key;
    }
    Found::Node(encloser)
}

/// The suffix of `name` that has `n` labels.
fn suffix_with_labels(name: &[u8], n: usize) -> &[u8] {
    let total = label_count(name);
    let mut cur = name;
    for _ in n..total {
        match parent(cur) {
            Some(p) => cur = p,
            None => break,
        }
    }
    cur
}

fn wildcard_into<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME + 2]) -> Option<&'b [u8]> {
    if name.len() + 2 > MAX_NAME {
        return None;
    }
    buf[0] = 1;
    buf[1] = b'*';
    buf[2..2 + name.len()].copy_from_slice(name);
    Some(&buf[..2 + name.len()])
}

/// NXDOMAIN / NODATA: the zone's SOA in authority with TTL min(SOA TTL, MINIMUM).
fn negative<'a>(plan: &mut Plan<'a>, zone: &'a Zone) {
    if let Some(soa) = zone.soa_rrset() {
        let mut rr = soa.at(zone.apex());
        rr.ttl = zone.soa().negative_ttl();
        plan.authority.push(rr);
    }
}

/// A referral: the cut's NS in authority, their addresses (glue) in additional.
fn referral<'a>(
    catalog: &'a ServedZones,
    plan: &mut Plan<'a>,
    zone: &'a Zone,
    cut: &'a [u8],
    node: Node<'a>,
) {
    let Some(ns) = node.get(code::NS) else { return };
    plan.authority.push(ns.at(cut));
    // Glue below the cut is required; other addresses we happen to hold are a bonus.
    for required in [true, false] {
        for rd in ns.rdatas() {
            let Some(target) = embedded_name(rd, 0) else { continue };
            let mut tbuf = [0u8; MAX_NAME];
            let tlow = lower_into(target, &mut tbuf);
            if is_at_or_below(tlow, cut) != required {
                continue;
            }
            let holder = if required { Some(zone) } else { catalog.find(tlow).map(|z| &**z) };
            if let Some(n) = holder.and_then(|z| z.node(tlow)) {
                push_addresses(plan, target, n);
            }
        }
        if required {
            plan.required_additional = plan.additional.len;
        }
    }
}

/// Additional-section addresses for NS, MX and SRV targets in the answer.
fn add_targets<'a>(catalog: &'a ServedZones, plan: &mut Plan<'a>) {
    let answers = plan.answer;
    for rr in answers.as_slice() {
        let Some(offset) = target_name_offset(rr.rtype) else { continue };
        if rr.rtype == code::CNAME {
            continue;
        }
        for rd in crate::wire::rrtype::unpack_rdata(rr.rdata) {
            let Some(target) = embedded_name(rd, offset) else { continue };
            let mut tbuf = [0u8; MAX_NAME];
            let tlow = lower_into(target, &mut tbuf);
            if let Some(n) = catalog.find(tlow).and_then(|z| z.node(tlow)) {
                push_addresses(plan, target, n);
            }
        }
    }
}

fn push_addresses<'a>(plan: &mut Plan<'a>, owner: &'a [u8], node: Node<'a>) {
    for t in [code::A, code::AAAA] {
        if let Some(set) = node.get(t)
            && !plan.additional.contains(owner, t)
        {
            plan.additional.push(set.at(owner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;
    use std::sync::Arc;

    fn zone(apex: &str) -> Arc<Zone> {
        let text = format!("$ORIGIN {apex}.\n@ 3600 SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n");
        Arc::new(Zone::from_text(apex, &text).unwrap())
    }

    #[test]
    fn an_expired_zone_answers_servfail_and_its_parent_answers_the_rest() {
        let apex = from_text("sub.example").unwrap();
        let expired = ServedZones::new([zone("example"), zone("sub.example")]).with_expired(&apex);
        let (inside, parent_name) =
            (from_text("www.sub.example").unwrap(), from_text("www.example").unwrap());
        let mut scratch = Scratch::new();
        let plan = lookup(&expired, &inside, code::A, &mut scratch);
        assert_eq!(plan.rcode, rcode::SERVFAIL);
        let mut scratch = Scratch::new();
        let plan = lookup(&expired, &parent_name, code::A, &mut scratch);
        assert_eq!(plan.rcode, rcode::NXDOMAIN);
    }

    #[test]
    fn ds_at_a_child_apex_is_answered_from_the_parent_when_both_are_served() {
        let text = "$ORIGIN example.\n@ 3600 SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n\
                    sub NS ns.sub\nns.sub A 192.0.2.2\nsub DS 1 13 2 AABBCCDD\n";
        let parent = Arc::new(Zone::from_text("example", text).unwrap());
        let both = ServedZones::new([parent, zone("sub.example")]);
        let child = from_text("sub.example").unwrap();
        let mut scratch = Scratch::new();
        let plan = lookup(&both, &child, code::DS, &mut scratch);
        assert_eq!(plan.zone, Some(&from_text("example").unwrap()[..]), "the parent answers");
        assert_eq!((plan.rcode, plan.aa, plan.answer.as_slice().len()), (rcode::NOERROR, true, 1));
        // Other types at the child's apex still come from the child.
        let mut scratch = Scratch::new();
        let plan = lookup(&both, &child, code::SOA, &mut scratch);
        assert_eq!(plan.zone, Some(&child[..]));
    }
}
