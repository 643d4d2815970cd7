//! The in-memory zone: a hash map from lower-cased owner names to their RRsets, built from zone
//! file records after the same checks `named-checkzone` makes. A zone is immutable once built;
//! reloads and transfers build a new one and swap it in (see [`crate::catalog`]).

use crate::wire::name::{self, NameBuf, is_at_or_below, parent, to_text};
use crate::wire::response::RrRef;
use crate::wire::rrtype::{code, embedded_name, pack_rdata, target_name_offset, type_name, unpack_rdata};
use crate::wire::zonefile::{self, Includes, Location, ZoneFileError, ZoneRecord};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

/// One RRset: all records of one type at one name, with one TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    pub rtype: u16,
    pub ttl: u32,
    /// The rdatas, packed (`[len:u16][rdata]...`).
    pub data: Box<[u8]>,
}

impl RRset {
    /// Iterates over the rdatas.
    pub fn rdatas(&self) -> impl Iterator<Item = &[u8]> + Clone {
        unpack_rdata(&self.data)
    }

    /// This RRset as a section entry owned by `owner`.
    pub fn at<'a>(&'a self, owner: &'a [u8]) -> RrRef<'a> {
        RrRef { owner, rtype: self.rtype, ttl: self.ttl, rdata: &self.data }
    }
}

/// All RRsets at one name; empty for an empty non-terminal (a name that exists only because
/// names below it do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub rrsets: Box<[RRset]>,
}

impl Node {
    /// The RRset of type `rtype`, if any.
    pub fn get(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|r| r.rtype == rtype)
    }
}

/// FNV-1a: fast for short keys and no dependency; keys are zone-file names, not attacker input
/// that could be chosen to collide (queries only look up).
#[derive(Default, Clone, Copy)]
pub struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
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

type NodeMap = HashMap<NameBuf, Node, BuildHasherDefault<Fnv>>;
/// Records being grouped into RRsets: (owner, type) → (TTL, rdatas).
type Grouping = HashMap<(NameBuf, u16), (u32, Vec<Vec<u8>>), BuildHasherDefault<Fnv>>;

/// The SOA timers the server and secondaries act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoaInfo {
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

impl SoaInfo {
    /// Reads the timers from SOA rdata (two names then five 32-bit numbers).
    pub fn from_rdata(rdata: &[u8]) -> Option<SoaInfo> {
        let m = embedded_name(rdata, 0)?.len();
        let r = embedded_name(rdata, m)?.len();
        let nums = rdata.get(m + r..m + r + 20)?;
        let n =
            |i: usize| u32::from_be_bytes([nums[i * 4], nums[i * 4 + 1], nums[i * 4 + 2], nums[i * 4 + 3]]);
        Some(SoaInfo { serial: n(0), refresh: n(1), retry: n(2), expire: n(3), minimum: n(4), ttl: 0 })
    }

    /// TTL for negative answers (RFC 2308 §3): min(SOA TTL, MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.ttl.min(self.minimum)
    }
}

/// An authoritative zone, ready to answer from.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: NameBuf,
    nodes: NodeMap,
    soa: SoaInfo,
    records: usize,
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
    pub fn from_records(apex: &[u8], records: Vec<ZoneRecord>) -> Result<Zone, ZoneError> {
        let problems = check(apex, &records);
        if problems.iter().any(|p| p.severity == Severity::Error) {
            return Err(ZoneError::Invalid { problems });
        }
        Ok(Zone::build(apex, records))
    }

    /// Builds without checks (callers have checked, or accept what a primary sent).
    fn build(apex: &[u8], records: Vec<ZoneRecord>) -> Zone {
        let apex: NameBuf = name::to_lower(apex);
        // Group by (owner, type) keeping file order for the rdatas.
        let mut grouped: Grouping = HashMap::default();
        let mut order: Vec<(NameBuf, u16)> = Vec::new();
        let mut count = 0;
        for r in records {
            if !is_at_or_below(&r.owner, &apex) {
                continue;
            }
            let key = (r.owner, r.rtype);
            match grouped.get_mut(&key) {
                Some((ttl, list)) => {
                    *ttl = (*ttl).min(r.ttl);
                    if !list.contains(&r.rdata) {
                        list.push(r.rdata);
                        count += 1;
                    }
                }
                None => {
                    order.push(key.clone());
                    grouped.insert(key, (r.ttl, vec![r.rdata]));
                    count += 1;
                }
            }
        }
        let mut per_name: NodeMap = HashMap::default();
        let mut building: HashMap<NameBuf, Vec<RRset>, BuildHasherDefault<Fnv>> = HashMap::default();
        for key in order {
            let Some((ttl, list)) = grouped.remove(&key) else { continue };
            let mut blob = Vec::with_capacity(list.iter().map(|r| r.len() + 2).sum());
            for rd in &list {
                pack_rdata(&mut blob, rd);
            }
            let (owner, rtype) = key;
            building.entry(owner).or_default().push(RRset { rtype, ttl, data: blob.into_boxed_slice() });
        }
        for (owner, mut sets) in building {
            sets.sort_by_key(|s| s.rtype);
            // Empty non-terminals: every name between the owner and the apex exists.
            let mut cur = parent(&owner);
            while let Some(p) = cur {
                if p.len() < apex.len() || per_name.contains_key(p) {
                    break;
                }
                per_name.insert(p.into(), Node::default());
                cur = parent(p);
            }
            per_name.insert(owner, Node { rrsets: sets.into_boxed_slice() });
        }
        let mut soa = per_name
            .get(&apex)
            .and_then(|n| n.get(code::SOA))
            .and_then(|s| s.rdatas().next().and_then(SoaInfo::from_rdata).map(|i| (i, s.ttl)))
            .map(|(mut i, ttl)| {
                i.ttl = ttl;
                i
            })
            .unwrap_or_default();
        if soa.ttl == 0 && soa.serial == 0 {
            soa = SoaInfo::default();
        }
        per_name.shrink_to_fit();
        Zone { apex, nodes: per_name, soa, records: count }
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
    pub fn soa_rrset(&self) -> Option<&RRset> {
        self.nodes.get(&self.apex).and_then(|n| n.get(code::SOA))
    }

    /// Number of records (not RRsets).
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// The node at `name` (lower-cased wire format), if the name exists.
    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The stored owner name and node at `name` (lower-cased wire format).
    pub fn node_entry(&self, name: &[u8]) -> Option<(&[u8], &Node)> {
        self.nodes.get_key_value(name).map(|(k, v)| (&k[..], v))
    }

    /// Every (owner, RRset) pair, apex SOA first, for transfers and persistence.
    pub fn rrsets(&self) -> impl Iterator<Item = (&[u8], &RRset)> {
        let soa = self.soa_rrset().map(|s| (&self.apex[..], s));
        let rest = self
            .nodes
            .iter()
            .flat_map(|(owner, node)| node.rrsets.iter().map(move |s| (&owner[..], s)))
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

fn origin_name(origin: &str, file: &str) -> Result<NameBuf, ZoneFileError> {
    name::from_text(origin)
        .map(|n| name::to_lower(&n))
        .map_err(|reason| ZoneFileError { at: Location { file: file.to_string(), line: 0 }, reason })
}

/// The checks `named-checkzone` makes, on records as read: SOA present (once, at the apex), NS at
/// the apex, no data outside the zone (out-of-zone glue included), CNAME alone at its name, and
/// every in-zone name server with an address.
pub fn check(apex: &[u8], records: &[ZoneRecord]) -> Vec<Problem> {
    let apex = name::to_lower(apex);
    let mut problems = Vec::new();
    let err = |at: &Location, message: String| Problem { severity: Severity::Error, at: at.clone(), message };
    let zone_name = to_text(&apex);
    let first = records.first().map(|r| r.at.clone()).unwrap_or_default();

    let soas: Vec<&ZoneRecord> = records.iter().filter(|r| r.rtype == code::SOA).collect();
    match soas.as_slice() {
        [] => problems.push(err(&first, format!("zone {zone_name} has no SOA record"))),
        [one] if one.owner != apex => problems.push(err(
            &one.at,
            format!("SOA record at {} is not at the zone apex {zone_name}", to_text(&one.owner)),
        )),
        [_] => {}
        [_, second, ..] => {
            problems.push(err(&second.at, format!("zone {zone_name} has more than one SOA record")))
        }
    }
    if !records.iter().any(|r| r.rtype == code::NS && r.owner == apex) {
        problems.push(err(&first, format!("zone {zone_name} has no NS records at its apex")));
    }

    let mut types_at: HashMap<&[u8], Vec<(u16, &Location)>> = HashMap::new();
    for r in records {
        if !is_at_or_below(&r.owner, &apex) {
            let what =
                if matches!(r.rtype, code::A | code::AAAA) { "out-of-zone glue" } else { "out-of-zone data" };
            problems.push(err(
                &r.at,
                format!("{what}: {} {} is not in zone {zone_name}", to_text(&r.owner), type_name(r.rtype)),
            ));
            continue;
        }
        types_at.entry(&r.owner).or_default().push((r.rtype, &r.at));
    }
    for (owner, types) in &types_at {
        let cnames: Vec<&Location> =
            types.iter().filter(|(t, _)| *t == code::CNAME).map(|(_, at)| *at).collect();
        if cnames.is_empty() {
            continue;
        }
        if cnames.len() > 1 {
            problems.push(err(cnames[1], format!("{} has more than one CNAME record", to_text(owner))));
        }
        if let Some((t, at)) = types.iter().find(|(t, _)| !matches!(*t, code::CNAME | code::RRSIG | 47)) {
            problems.push(err(
                at,
                format!(
                    "CNAME and other data: {} has a CNAME and a {} record",
                    to_text(owner),
                    type_name(*t)
                ),
            ));
        }
    }
    for r in records.iter().filter(|r| r.rtype == code::NS && is_at_or_below(&r.owner, &apex)) {
        let Some(target) = target_name_offset(code::NS).and_then(|o| embedded_name(&r.rdata, o)) else {
            continue;
        };
        let target = name::to_lower(target);
        if !is_at_or_below(&target, &apex) {
            continue;
        }
        let has_addr = types_at
            .get(&target[..])
            .is_some_and(|ts| ts.iter().any(|(t, _)| matches!(*t, code::A | code::AAAA)));
        if !has_addr {
            problems.push(err(
                &r.at,
                format!(
                    "NS without address: {} NS {} has no address records (A or AAAA)",
                    to_text(&r.owner),
                    to_text(&target)
                ),
            ));
        }
    }
    problems.sort_by(|a, b| (a.at.file.as_str(), a.at.line).cmp(&(b.at.file.as_str(), b.at.line)));
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
        assert!(z.node(&ent).unwrap().rrsets.is_empty());
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
            sub 3600 NS ns.sub\n";
        let apex = from_text("example.com").unwrap();
        let recs = zonefile::parse_text(bad, "bad.zone", &apex, &Includes::Forbidden).unwrap();
        let problems = check(&apex, &recs);
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let all = text.join("\n");
        assert!(all.contains("has no SOA record"), "{all}");
        assert!(all.contains("bad.zone:4: error: CNAME and other data"), "{all}");
        assert!(all.contains("bad.zone:5: error: out-of-zone glue"), "{all}");
        assert!(all.contains("bad.zone:6: error: NS without address"), "{all}");
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
