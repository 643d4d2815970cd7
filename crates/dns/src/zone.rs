//! The in-memory zone, built from zone-file records after the same checks `named-checkzone`
//! makes. A zone is immutable once built; reloads and transfers build a new one and swap it in
//! (see [`crate::catalog`]).
//!
//! Storage is compact, for million-record zones: every owner name in one byte arena, every
//! RRset's packed rdata in another, fixed-size node and RRset records indexing into them, and an
//! open-addressing table of node indices keyed by the lower-cased wire-format name. About 60
//! bytes per A record instead of several heap allocations each.

use crate::delta::Journal;
/// Re-exported for the resolver, which reads negative TTLs with it.
pub use crate::soa::SoaInfo;
use crate::wire::name::{self, NameBuf, is_at_or_below, parent, to_text};
use crate::wire::response::RrRef;
use crate::wire::rrtype::{code, embedded_name, target_name_offset, type_name, unpack_rdata};
use crate::wire::zonefile::{self, Includes, Location, ZoneFileError, ZoneRecord};
use std::hash::Hasher;
use std::path::Path;

/// One RRset: all records of one type at one name, with one TTL (a view into the zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RRset<'a> {
    pub rtype: u16,
    pub ttl: u32,
    /// The rdatas, packed (`[len:u16][rdata]...`).
    pub data: &'a [u8],
}

impl<'a> RRset<'a> {
    /// Iterates over the rdatas.
    pub fn rdatas(&self) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a> {
        unpack_rdata(self.data)
    }

    /// This RRset as a section entry owned by `owner`.
    pub fn at(&self, owner: &'a [u8]) -> RrRef<'a> {
        RrRef { owner, rtype: self.rtype, ttl: self.ttl, rdata: self.data }
    }
}

/// All RRsets at one name (a view into the zone); none for an empty non-terminal, a name that
/// exists only because names below it do.
#[derive(Debug, Clone, Copy)]
pub struct Node<'a> {
    zone: &'a Zone,
    rec: NodeRec,
}

impl<'a> Node<'a> {
    /// The RRset of type `rtype`, if any.
    pub fn get(&self, rtype: u16) -> Option<RRset<'a>> {
        self.rrsets().find(|r| r.rtype == rtype)
    }

    /// The RRsets, by type.
    pub fn rrsets(&self) -> impl Iterator<Item = RRset<'a>> + use<'a> {
        let zone = self.zone;
        let first = self.rec.first_set as usize;
        zone.sets[first..first + self.rec.set_count as usize].iter().map(move |s| zone.view(s))
    }

    /// The RRSIGs at this name covering `covered` (their own set per covered type).
    pub fn sigs(&self, covered: u16) -> Option<RRset<'a>> {
        self.rrsets().find(|r| {
            r.rtype == code::RRSIG
                && r.rdatas().next().is_some_and(|rd| rd.len() >= 2 && rd[..2] == covered.to_be_bytes())
        })
    }

    /// Whether the name holds no data (an empty non-terminal).
    pub fn is_empty(&self) -> bool {
        self.rec.set_count == 0
    }

    /// The owner name (lower-cased wire format).
    pub fn name(&self) -> &'a [u8] {
        self.zone.name_of(&self.rec)
    }
}

#[derive(Debug, Clone, Copy)]
struct NodeRec {
    name_off: u32,
    first_set: u32,
    set_count: u16,
    name_len: u8,
}

#[derive(Debug, Clone, Copy)]
struct SetRec {
    data_off: u32,
    data_len: u32,
    ttl: u32,
    rtype: u16,
}

/// FNV-1a: fast for short keys and no dependency (used for small maps of zone names).
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Fold the well-mixed high bits into the low ones hash tables index with.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf29ce484222325 } else { self.0 };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        self.0 = h;
    }
}

fn hash_name(name: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.write(name);
    h.finish()
}

/// An authoritative zone, ready to answer from.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: NameBuf,
    names: Vec<u8>,
    nodes: Vec<NodeRec>,
    sets: Vec<SetRec>,
    data: Vec<u8>,
    /// Open addressing: (hash tag << 32) | (node index + 1), 0 = empty; a power of two long, at
    /// most half full. The tag spares most name comparisons on collisions.
    slots: Vec<u64>,
    soa: SoaInfo,
    records: usize,
    /// The changes that led to this version, for IXFR.
    journal: Journal,
    /// NSEC/NSEC3 chains in order, for DNSSEC denial proofs.
    denial: crate::denial::DenialIndex,
}

/// How bad a zone problem is: errors stop the zone from loading, warnings are only reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding of the zone checks, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub at: Location,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.severity == Severity::Error { "error" } else { "warning" };
        write!(f, "{}: {s}: {}", self.at, self.message)
    }
}

/// Why a zone could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ZoneError {
    #[error("{0}")]
    Syntax(#[from] ZoneFileError),
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
    #[error("zone too large (more than 4 GiB of names or data)")]
    TooLarge,
    #[error("DNSSEC signing: {0}")]
    Signing(String),
}

impl Zone {
    /// Reads and checks a zone file. Any error rejects the whole zone.
    pub fn load_file(path: &Path, origin: &str) -> Result<Zone, ZoneError> {
        let apex = origin_name(origin, &path.display().to_string())?;
        let records = zonefile::read_file(path, &apex)?;
        Zone::from_records(&apex, records)
    }

    /// Builds a zone from zone-file text (no `$INCLUDE`): for tests, the lab and transfers.
    pub fn from_text(origin: &str, text: &str) -> Result<Zone, ZoneError> {
        let label = format!("<zone {origin}>");
        let apex = origin_name(origin, &label)?;
        let records = zonefile::parse_text(text, &label, &apex, &Includes::Forbidden)?;
        Zone::from_records(&apex, records)
    }

    /// Builds a zone from records after the checks; any error rejects it.
    pub fn from_records(apex: &[u8], mut records: Vec<ZoneRecord>) -> Result<Zone, ZoneError> {
        let apex = name::to_lower(apex);
        // Sorted by (owner, type), file order kept within an RRset.
        // RRSIGs grouped by the type they cover (one set per covered type, RFC 4035 §3.1.1).
        records.sort_by(|a, b| (&a.owner[..], a.rtype, covered(a)).cmp(&(&b.owner[..], b.rtype, covered(b))));
        let problems = check_sorted(&apex, &records);
        if problems.iter().any(|p| p.severity == Severity::Error) {
            return Err(ZoneError::Invalid { problems });
        }
        Zone::build(apex, records)
    }

    /// Builds from records sorted by (owner, type), without checks.
    fn build(apex: NameBuf, records: Vec<ZoneRecord>) -> Result<Zone, ZoneError> {
        let mut z = Zone {
            apex,
            names: Vec::new(),
            nodes: Vec::new(),
            sets: Vec::new(),
            data: Vec::new(),
            slots: Vec::new(),
            soa: SoaInfo::default(),
            records: 0,
            journal: Journal::default(),
            denial: Default::default(),
        };
        let in_zone: Vec<&ZoneRecord> =
            records.iter().filter(|r| is_at_or_below(&r.owner, &z.apex)).collect();
        z.names.reserve(in_zone.iter().map(|r| r.owner.len()).sum::<usize>() / 2);
        z.data.reserve(in_zone.iter().map(|r| r.rdata.len() + 2).sum());
        z.grow(in_zone.len());
        let mut i = 0;
        while i < in_zone.len() {
            let owner = &in_zone[i].owner;
            let first_set = z.sets.len();
            while i < in_zone.len() && in_zone[i].owner == *owner {
                let rtype = in_zone[i].rtype;
                let cov = covered(in_zone[i]);
                let data_off = z.data.len();
                // One TTL per RRset: the first record's, as BIND does ("TTL set to prior TTL").
                let ttl = in_zone[i].ttl;
                let start = i;
                while i < in_zone.len()
                    && in_zone[i].owner == *owner
                    && in_zone[i].rtype == rtype
                    && covered(in_zone[i]) == cov
                {
                    let r = in_zone[i];
                    let dup = in_zone[start..i].iter().any(|p| p.rdata == r.rdata);
                    if !dup {
                        crate::wire::rrtype::pack_rdata(&mut z.data, &r.rdata);
                        z.records += 1;
                    }
                    i += 1;
                }
                let data_len = z.data.len() - data_off;
                z.sets.push(SetRec {
                    data_off: u32::try_from(data_off).map_err(|_| ZoneError::TooLarge)?,
                    data_len: u32::try_from(data_len).map_err(|_| ZoneError::TooLarge)?,
                    ttl,
                    rtype,
                });
            }
            let set_count = z.sets.len() - first_set;
            z.add_node(owner, first_set, set_count.min(u16::MAX as usize) as u16)?;
        }
        // Empty non-terminals: every name between an owner and the apex exists.
        for k in 0..z.nodes.len() {
            let owner: NameBuf = z.name_of(&z.nodes[k]).into();
            let mut cur = parent(&owner);
            while let Some(p) = cur {
                if p.len() < z.apex.len() || z.find(p).is_some() {
                    break;
                }
                z.add_node(p, z.sets.len(), 0)?;
                cur = parent(p);
            }
        }
        let soa = z.soa_rrset().and_then(|s| {
            let mut info = s.rdatas().next().and_then(SoaInfo::from_rdata)?;
            info.ttl = s.ttl;
            Some(info)
        });
        z.soa = soa.unwrap_or_default();
        z.denial = crate::denial::DenialIndex::build(&z);
        z.names.shrink_to_fit();
        z.nodes.shrink_to_fit();
        z.sets.shrink_to_fit();
        z.data.shrink_to_fit();
        Ok(z)
    }

    fn add_node(&mut self, owner: &[u8], first_set: usize, set_count: u16) -> Result<(), ZoneError> {
        let rec = NodeRec {
            name_off: u32::try_from(self.names.len()).map_err(|_| ZoneError::TooLarge)?,
            first_set: u32::try_from(first_set).map_err(|_| ZoneError::TooLarge)?,
            set_count,
            name_len: owner.len() as u8,
        };
        self.names.extend_from_slice(owner);
        self.nodes.push(rec);
        if self.nodes.len() * 2 > self.slots.len() {
            self.grow(self.nodes.len());
        } else {
            self.insert_slot(self.nodes.len() - 1);
        }
        Ok(())
    }

    /// Resizes the table for at least `n` nodes and re-inserts every node.
    fn grow(&mut self, n: usize) {
        let size = (n.max(4) * 2).next_power_of_two();
        self.slots = vec![0; size];
        for k in 0..self.nodes.len() {
            self.insert_slot(k);
        }
    }

    fn insert_slot(&mut self, k: usize) {
        let mask = self.slots.len() - 1;
        let h = hash_name(self.name_of(&self.nodes[k]));
        let mut pos = h as usize & mask;
        while self.slots[pos] != 0 {
            pos = (pos + 1) & mask;
        }
        self.slots[pos] = (h >> 32 << 32) | (k as u64 + 1);
    }

    fn find(&self, name: &[u8]) -> Option<&NodeRec> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let h = hash_name(name);
        let tag = h >> 32;
        let mut pos = h as usize & mask;
        loop {
            let slot = self.slots[pos];
            if slot == 0 {
                return None;
            }
            if slot >> 32 == tag {
                let rec = &self.nodes[(slot as u32) as usize - 1];
                if self.name_of(rec) == name {
                    return Some(rec);
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    fn name_of(&self, rec: &NodeRec) -> &[u8] {
        let off = rec.name_off as usize;
        &self.names[off..off + rec.name_len as usize]
    }

    fn view(&self, s: &SetRec) -> RRset<'_> {
        let off = s.data_off as usize;
        RRset { rtype: s.rtype, ttl: s.ttl, data: &self.data[off..off + s.data_len as usize] }
    }

    /// This zone carrying `journal` (the steps that led to it).
    pub fn with_journal(mut self, journal: Journal) -> Zone {
        self.journal = journal;
        self
    }

    /// The NSEC/NSEC3 chains of a signed zone, for denial proofs.
    pub fn denial(&self) -> &crate::denial::DenialIndex {
        &self.denial
    }

    /// Every node (owner names in storage order), for building indexes.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        self.nodes.iter().map(move |rec| Node { zone: self, rec: *rec })
    }

    /// The steps that led to this version (for IXFR).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The zone's name (lower-cased wire format).
    pub fn apex(&self) -> &[u8] {
        &self.apex
    }

    /// The zone's name as text.
    pub fn name(&self) -> String {
        to_text(&self.apex)
    }

    /// The SOA timers and serial.
    pub fn soa(&self) -> SoaInfo {
        self.soa
    }

    /// The apex SOA RRset.
    pub fn soa_rrset(&self) -> Option<RRset<'_>> {
        self.node(&self.apex).and_then(|n| n.get(code::SOA))
    }

    /// Number of records (not RRsets).
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// The node at `name` (lower-cased wire format), if the name exists.
    pub fn node(&self, name: &[u8]) -> Option<Node<'_>> {
        self.find(name).map(|rec| Node { zone: self, rec: *rec })
    }

    /// The stored owner name and node at `name` (lower-cased wire format).
    pub fn node_entry(&self, name: &[u8]) -> Option<(&[u8], Node<'_>)> {
        self.find(name).map(|rec| (self.name_of(rec), Node { zone: self, rec: *rec }))
    }

    /// Every (owner, RRset) pair, apex SOA first, for transfers and persistence.
    pub fn rrsets(&self) -> impl Iterator<Item = (&[u8], RRset<'_>)> {
        let soa = self.soa_rrset().map(|s| (&self.apex[..], s));
        let rest = self
            .nodes
            .iter()
            .flat_map(move |rec| Node { zone: self, rec: *rec }.rrsets().map(move |s| (self.name_of(rec), s)))
            .filter(|(owner, s)| !(s.rtype == code::SOA && *owner == &self.apex[..]));
        soa.into_iter().chain(rest)
    }

    /// The zone as zone-file text (what a secondary writes to disk).
    pub fn to_text(&self) -> String {
        // Relative to the root: some of domain's rdata printers leave the final dot off names.
        let mut out = String::from("$ORIGIN .\n");
        for (owner, set) in self.rrsets() {
            for rd in set.rdatas() {
                out.push_str(&zonefile::record_text(owner, set.rtype, set.ttl, rd));
                out.push('\n');
            }
        }
        out
    }
}

/// The type an RRSIG covers (0 for other records): RRSIGs are stored one set per covered type.
fn covered(r: &ZoneRecord) -> u16 {
    if r.rtype == code::RRSIG && r.rdata.len() >= 2 {
        u16::from_be_bytes([r.rdata[0], r.rdata[1]])
    } else {
        0
    }
}

fn origin_name(origin: &str, file: &str) -> Result<NameBuf, ZoneFileError> {
    name::from_text(origin)
        .map(|n| name::to_lower(&n))
        .map_err(|reason| ZoneFileError { at: Location { file: file.into(), line: 0 }, reason })
}

/// The checks `named-checkzone` makes, on records as read: SOA present (once, at the apex), NS at
/// the apex, CNAME alone at its name, one DNAME per name, and every in-zone name server with an
/// address; data outside the zone (out-of-zone glue included) is a warning and is not served.
pub fn check(apex: &[u8], records: &[ZoneRecord]) -> Vec<Problem> {
    let mut sorted: Vec<ZoneRecord> = records.to_vec();
    sorted.sort_by(|a, b| (&a.owner[..], a.rtype).cmp(&(&b.owner[..], b.rtype)));
    check_sorted(&name::to_lower(apex), &sorted)
}

/// [`check`] on records sorted by (owner, type), with a lower-cased apex.
fn check_sorted(apex: &[u8], records: &[ZoneRecord]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let err = |at: &Location, message: String| Problem { severity: Severity::Error, at: at.clone(), message };
    let zone_name = to_text(apex);
    let first = records.iter().min_by_key(|r| r.at.line).map(|r| r.at.clone()).unwrap_or_default();

    let soas: Vec<&ZoneRecord> = records.iter().filter(|r| r.rtype == code::SOA).collect();
    match soas.as_slice() {
        [] => problems.push(err(&first, format!("zone {zone_name} has no SOA record"))),
        [one] if &one.owner[..] != apex => problems.push(err(
            &one.at,
            format!("SOA record at {} is not at the zone apex {zone_name}", to_text(&one.owner)),
        )),
        [_] => {}
        [_, second, ..] => {
            problems.push(err(&second.at, format!("zone {zone_name} has more than one SOA record")))
        }
    }
    if !records.iter().any(|r| r.rtype == code::NS && &r.owner[..] == apex) {
        problems.push(err(&first, format!("zone {zone_name} has no NS records at its apex")));
    }

    let mut i = 0;
    while i < records.len() {
        let owner = &records[i].owner;
        let start = i;
        while i < records.len() && records[i].owner == *owner {
            i += 1;
        }
        let group = &records[start..i];
        if !is_at_or_below(owner, apex) {
            // Like named-checkzone: out-of-zone data (glue included) is ignored with a warning.
            for r in group {
                problems.push(Problem {
                    severity: Severity::Warning,
                    at: r.at.clone(),
                    message: format!(
                        "ignoring out-of-zone data: {} {} is not in zone {zone_name}",
                        to_text(&r.owner),
                        type_name(r.rtype)
                    ),
                });
            }
            continue;
        }
        // DNAME is a singleton type (RFC 6672 §2.4): one record per name.
        let dnames: Vec<&ZoneRecord> = group.iter().filter(|r| r.rtype == code::DNAME).collect();
        if dnames.len() > 1 && dnames[1..].iter().any(|r| r.rdata != dnames[0].rdata) {
            problems.push(err(&dnames[1].at, format!("{} has more than one DNAME record", to_text(owner))));
        }
        let cnames: Vec<&ZoneRecord> = group.iter().filter(|r| r.rtype == code::CNAME).collect();
        if cnames.len() > 1 {
            problems.push(err(&cnames[1].at, format!("{} has more than one CNAME record", to_text(owner))));
        }
        if !cnames.is_empty()
            && let Some(other) = group.iter().find(|r| !matches!(r.rtype, code::CNAME | code::RRSIG | 47))
        {
            let at = if other.at.line > cnames[0].at.line { &other.at } else { &cnames[0].at };
            problems.push(err(
                at,
                format!(
                    "CNAME and other data: {} has a CNAME and a {} record",
                    to_text(owner),
                    type_name(other.rtype)
                ),
            ));
        }
    }

    let has_address = |target: &[u8]| {
        let lo = records.partition_point(|r| &r.owner[..] < target);
        records[lo..]
            .iter()
            .take_while(|r| &r.owner[..] == target)
            .any(|r| matches!(r.rtype, code::A | code::AAAA))
    };
    // Delegation points and DNAME owners, for where name-server targets may live.
    let owners_of = |t: u16, with_apex: bool| -> Vec<&[u8]> {
        records
            .iter()
            .filter(|r| r.rtype == t && (with_apex || &r.owner[..] != apex) && is_at_or_below(&r.owner, apex))
            .map(|r| &r.owner[..])
            .collect()
    };
    let (cuts, dnames) = (owners_of(code::NS, false), owners_of(code::DNAME, true));
    let below = |name: &[u8], owners: &[&[u8]], strictly: bool| {
        owners.iter().find(|o| is_at_or_below(name, o) && !(strictly && name == **o)).map(|o| to_text(o))
    };
    for r in records.iter().filter(|r| r.rtype == code::NS && is_at_or_below(&r.owner, apex)) {
        if name::is_wildcard(&r.owner) {
            problems.push(err(&r.at, format!("invalid NS owner name (wildcard): {}", to_text(&r.owner))));
            continue;
        }
        let Some(target) = target_name_offset(code::NS).and_then(|o| embedded_name(&r.rdata, o)) else {
            continue;
        };
        let target = name::to_lower(target);
        if !is_at_or_below(&target, apex) {
            continue;
        }
        let line = |what: &str| format!("{} NS {} {what}", to_text(&r.owner), to_text(&target));
        // Like named-checkzone: the zone's own name servers must be reachable in it (an error);
        // a delegation's missing glue is only reported.
        let apex_ns = &r.owner[..] == apex;
        if let Some(dname) = below(&target, &dnames, true) {
            let p = Problem {
                severity: if apex_ns { Severity::Error } else { Severity::Warning },
                at: r.at.clone(),
                message: line(&format!("is below a DNAME {dname} (illegal)")),
            };
            problems.push(p);
        } else if !has_address(&target) {
            let glue = below(&target, &cuts, false).is_some();
            let severity = if apex_ns && !glue { Severity::Error } else { Severity::Warning };
            let message = if glue {
                format!("NS without glue: {}", line("has no address records (A or AAAA)"))
            } else {
                format!("NS without address: {}", line("has no address records (A or AAAA)"))
            };
            problems.push(Problem { severity, at: r.at.clone(), message });
        }
    }
    problems.sort_by(|a, b| (&*a.at.file, a.at.line).cmp(&(&*b.at.file, b.at.line)));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;

    const GOOD: &str = "$TTL 3600\n@ SOA ns1 host 5 7200 3600 1209600 300\n@ NS ns1\n@ NS ns.other.net.\n\
        ns1 A 192.0.2.1\nwww CNAME host.a.b\nhost.a.b A 192.0.2.2\nsub NS ns.sub\nns.sub A 192.0.2.3\n";

    #[test]
    fn builds_nodes_and_empty_non_terminals() {
        let z = Zone::from_text("example.com", GOOD).unwrap();
        assert_eq!(z.soa().serial, 5);
        assert_eq!(z.soa().negative_ttl(), 300);
        assert_eq!(z.record_count(), 8);
        let ent = from_text("a.b.example.com").unwrap();
        assert!(z.node(&ent).unwrap().is_empty());
        let b = from_text("b.example.com").unwrap();
        assert!(z.node(&b).is_some());
        assert!(z.node(&from_text("nope.example.com").unwrap()).is_none());
        assert_eq!(z.rrsets().next().unwrap().1.rtype, code::SOA);
        let again = Zone::from_text("example.com", &z.to_text()).unwrap();
        assert_eq!(again.record_count(), z.record_count());
    }

    #[test]
    fn reports_what_named_checkzone_reports() {
        let bad = "@ 3600 NS ns1\n\
            ns1 3600 A 192.0.2.1\n\
            www 3600 CNAME x\nwww 3600 A 192.0.2.5\n\
            glue.other.org. 3600 A 192.0.2.9\n\
            sub 3600 NS ns.sub\n\
            @ 3600 NS nowhere\n\
            *.w 3600 NS ns1\n";
        let apex = from_text("example.com").unwrap();
        let recs = zonefile::parse_text(bad, "bad.zone", &apex, &Includes::Forbidden).unwrap();
        let problems = check(&apex, &recs);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        assert!(all.contains("has no SOA record"), "{all}");
        assert!(all.contains("bad.zone:4: error: CNAME and other data"), "{all}");
        assert!(all.contains("bad.zone:5: warning: ignoring out-of-zone data"), "{all}");
        assert!(all.contains("bad.zone:6: warning: NS without glue"), "{all}");
        assert!(all.contains("bad.zone:7: error: NS without address"), "{all}");
        assert!(all.contains("bad.zone:8: error: invalid NS owner name (wildcard)"), "{all}");
        assert!(Zone::from_records(&apex, recs).is_err());
    }
}

#[cfg(test)]
mod text_round_trip {
    use super::*;
    use crate::wire::name::{ROOT, from_text};

    /// Fuzzer-found: names with `;`, `\` and other special characters survive writing the zone
    /// to disk (as a secondary does) and reading it back.
    #[test]
    fn odd_names_survive_to_text() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/odd-names.zone"))
            .unwrap();
        let apex = from_text("example.com").unwrap();
        let zone = Zone::from_records(
            &apex,
            zonefile::parse_text(&text, "odd", &apex, &Includes::Forbidden).unwrap(),
        )
        .unwrap();
        let printed = zone.to_text();
        let back = zonefile::parse_text(&printed, "printed", ROOT, &Includes::Forbidden).unwrap();
        assert_eq!(back.len(), zone.record_count(), "{printed}");
        let again = Zone::from_records(&apex, back).unwrap();
        assert_eq!(again.to_text().lines().count(), printed.lines().count());
    }
}
