//! The resolver's cache, sans-IO: answers (positive and negative, RFC 2308) keyed by
//! (lower-cased name, type), and delegations (zone cut → name servers and their addresses)
//! kept apart from answers. Every call takes `now`; TTLs count down in what `get` returns.
//! Bounded by accounted bytes: past the budget the least recently used entries go, one at a
//! time, O(1) each (see [`crate::lru`]). TTLs are capped on the way in, so clients never see
//! more than the configured maximum.

use crate::lru::ByteLru;
use appnet_dns::wire::message::Record;
use appnet_dns::wire::name::{self, NameBuf};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What kind of result a cached answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Records for the name and type (possibly through a CNAME chain).
    Positive,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The name exists but has no records of the type (NOERROR, empty answer).
    NoData,
    /// Every server failed; remembered briefly so a dead zone is not hammered.
    ServFail,
}

/// A resolved answer, as handed to clients and kept in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What kind of answer this is.
    pub outcome: Outcome,
    /// The answer section: CNAME chain first, then the records of the asked type.
    pub records: Vec<Record>,
    /// The authority section: the SOA that set a negative answer's lifetime.
    pub authority: Vec<Record>,
}

impl Answer {
    /// The DNS response code for this answer.
    pub fn rcode(&self) -> u16 {
        match self.outcome {
            Outcome::Positive | Outcome::NoData => 0,
            Outcome::NxDomain => 3,
            Outcome::ServFail => 2,
        }
    }
}

/// Limits on what the cache keeps and for how long.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Most bytes the cache accounts for (answers and delegations together; a quarter of it is
    /// set aside for delegations). Least recently used entries go first.
    pub max_bytes: usize,
    /// Longest any positive answer is kept, and the largest TTL clients are given.
    pub max_ttl: u32,
    /// Longest a negative answer is kept (RFC 2308 suggests up to 3 hours), and the largest TTL
    /// its SOA is given.
    pub max_negative_ttl: u32,
    /// How long a SERVFAIL is remembered.
    pub servfail_ttl: u32,
}

/// The default cache budget: 32 MiB (Unbound's msg-cache plus rrset-cache defaults are 12 MiB).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_bytes: DEFAULT_CACHE_BYTES,
            max_ttl: 86_400,
            max_negative_ttl: 3_600,
            servfail_ttl: 5,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    stored: Instant,
    expires: Instant,
}

/// A zone cut learned from a referral: the zone's name servers and any addresses known for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    /// The zone apex (lower-cased wire name).
    pub zone: NameBuf,
    /// Name servers (lower-cased) with the addresses learned for them (glue or resolved).
    pub servers: Vec<(NameBuf, Vec<IpAddr>)>,
}

/// Counters the cache keeps for the statistics page and the tour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// Writes the key for `qname`/`qtype` into `buf` and returns it: the lower-cased wire name
/// followed by the type (two bytes), built on the stack so a cache hit allocates nothing.
fn key_into<'b>(qname: &[u8], qtype: u16, buf: &'b mut [u8; name::MAX_NAME + 2]) -> &'b [u8] {
    let n = qname.len().min(name::MAX_NAME);
    for (d, s) in buf[..n].iter_mut().zip(qname) {
        *d = s.to_ascii_lowercase();
    }
    buf[n..n + 2].copy_from_slice(&qtype.to_be_bytes());
    &buf[..n + 2]
}

/// Heap bytes behind one allocation besides its contents (the allocator's header, rounded).
const ALLOC_OVERHEAD: usize = 16;

fn record_bytes(r: &Record) -> usize {
    size_of::<Record>() + r.owner.len() + r.rdata.capacity() + 2 * ALLOC_OVERHEAD
}

/// The bytes an answer is charged: the entry, the shared allocation and every record.
fn answer_bytes(a: &Answer) -> usize {
    size_of::<Entry<Arc<Answer>>>()
        + size_of::<Answer>()
        + 2 * size_of::<usize>()
        + ALLOC_OVERHEAD
        + (a.records.capacity() + a.authority.capacity()) * size_of::<Record>()
        + a.records.iter().chain(&a.authority).map(|r| record_bytes(r) - size_of::<Record>()).sum::<usize>()
        + 2 * ALLOC_OVERHEAD
}

/// The bytes a delegation is charged.
fn delegation_bytes(d: &Delegation) -> usize {
    size_of::<Entry<Delegation>>()
        + d.zone.len()
        + d.servers.capacity() * size_of::<(NameBuf, Vec<IpAddr>)>()
        + d.servers
            .iter()
            .map(|(n, a)| n.len() + a.capacity() * size_of::<IpAddr>() + 2 * ALLOC_OVERHEAD)
            .sum::<usize>()
        + 2 * ALLOC_OVERHEAD
}

/// The answer and delegation cache, bounded by bytes (see [`CacheLimits::max_bytes`]).
#[derive(Debug)]
pub struct Cache {
    limits: CacheLimits,
    answers: ByteLru<Entry<Arc<Answer>>>,
    delegations: ByteLru<Entry<Delegation>>,
    stats: CacheStats,
}

impl Cache {
    /// An empty cache.
    pub fn new(limits: CacheLimits) -> Cache {
        let for_delegations = limits.max_bytes / 4;
        Cache {
            limits,
            answers: ByteLru::new(limits.max_bytes - for_delegations),
            delegations: ByteLru::new(for_delegations),
            stats: CacheStats::default(),
        }
    }

    /// Hit/miss/eviction counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of cached answers.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether no answers are cached.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// The bytes accounted to answers and delegations (at most [`CacheLimits::max_bytes`]).
    pub fn bytes(&self) -> usize {
        self.answers.used() + self.delegations.used()
    }

    /// The cached answer for `qname`/`qtype`, with TTLs decreased by the time spent in the cache.
    pub fn get(&mut self, qname: &[u8], qtype: u16, now: Instant) -> Option<Answer> {
        let (shared, age) = self.get_shared(qname, qtype, now)?;
        let mut answer = (*shared).clone();
        for r in answer.records.iter_mut().chain(answer.authority.iter_mut()) {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(answer)
    }

    /// The cached answer as stored (shared, TTLs already capped) and its age in seconds: the
    /// fast path for answering clients, which subtract the age while writing the response.
    pub fn get_shared(&mut self, qname: &[u8], qtype: u16, now: Instant) -> Option<(Arc<Answer>, u32)> {
        let mut buf = [0u8; name::MAX_NAME + 2];
        let key = key_into(qname, qtype, &mut buf);
        let found = match self.answers.get_mut(key) {
            Some(e) if e.expires > now => {
                let age = now.saturating_duration_since(e.stored).as_secs() as u32;
                Some((e.value.clone(), age))
            }
            Some(_) => {
                self.answers.remove(key);
                None
            }
            None => None,
        };
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Stores an answer and returns it as stored, with every TTL capped: positive records at
    /// `max_ttl`, a negative answer's SOA at its negative lifetime. Its lifetime: the smallest
    /// record TTL for positive answers; for negative ones min(SOA TTL, SOA MINIMUM) (RFC 2308
    /// §5); the configured time for SERVFAIL; all capped.
    pub fn insert(&mut self, qname: &[u8], qtype: u16, mut answer: Answer, now: Instant) -> Answer {
        let ttl = self.cap_ttls(&mut answer);
        if ttl == 0 {
            return answer;
        }
        let stored = answer.clone();
        let bytes = answer_bytes(&stored);
        let entry =
            Entry { value: Arc::new(stored), stored: now, expires: now + Duration::from_secs(ttl as u64) };
        let mut buf = [0u8; name::MAX_NAME + 2];
        self.stats.evictions += self.answers.insert(key_into(qname, qtype, &mut buf), entry, bytes) as u64;
        answer
    }

    /// Caps the TTLs in `answer` (as [`insert`](Self::insert) describes) and returns its
    /// lifetime in the cache.
    pub fn cap_ttls(&self, answer: &mut Answer) -> u32 {
        for r in answer.records.iter_mut() {
            r.ttl = r.ttl.min(self.limits.max_ttl);
        }
        match answer.outcome {
            Outcome::Positive => answer.records.iter().map(|r| r.ttl).min().unwrap_or(0),
            Outcome::NxDomain | Outcome::NoData => {
                let soa = answer.authority.iter().find(|r| r.rtype == appnet_dns::wire::rrtype::code::SOA);
                let ttl = soa
                    .map(|r| {
                        let minimum =
                            appnet_dns::zone::SoaInfo::from_rdata(&r.rdata).map_or(0, |s| s.minimum);
                        r.ttl.min(minimum)
                    })
                    .unwrap_or(0)
                    .min(self.limits.max_negative_ttl);
                for r in answer.authority.iter_mut() {
                    r.ttl = r.ttl.min(ttl);
                }
                ttl
            }
            Outcome::ServFail => self.limits.servfail_ttl,
        }
    }

    /// Remembers a zone cut for `ttl` seconds (capped).
    pub fn insert_delegation(&mut self, delegation: Delegation, ttl: u32, now: Instant) {
        let ttl = ttl.min(self.limits.max_ttl);
        if ttl == 0 {
            return;
        }
        let bytes = delegation_bytes(&delegation);
        let key = delegation.zone.clone();
        let entry = Entry { value: delegation, stored: now, expires: now + Duration::from_secs(ttl as u64) };
        self.stats.evictions += self.delegations.insert(&key, entry, bytes) as u64;
    }

    /// Adds addresses learned for a name server to every cached delegation that names it.
    pub fn add_server_addresses(&mut self, ns: &[u8], addrs: &[IpAddr]) {
        let ns = name::to_lower(ns);
        self.stats.evictions += self.delegations.update_all(|e| {
            let mut changed = false;
            for (name, known) in e.value.servers.iter_mut() {
                if *name == ns {
                    for a in addrs {
                        if !known.contains(a) {
                            known.push(*a);
                            changed = true;
                        }
                    }
                }
            }
            changed.then(|| delegation_bytes(&e.value))
        }) as u64;
    }

    /// The deepest unexpired delegation at or above `qname`.
    pub fn closest_delegation(&mut self, qname: &[u8], now: Instant) -> Option<Delegation> {
        let low = name::to_lower(qname);
        let mut cur: &[u8] = &low;
        loop {
            match self.delegations.get_mut(cur) {
                Some(e) if e.expires > now => return Some(e.value.clone()),
                Some(_) => {
                    self.delegations.remove(cur);
                }
                None => {}
            }
            cur = name::parent(cur)?;
        }
    }

    /// Drops everything (the CLI's flush, and tests).
    pub fn clear(&mut self) {
        self.answers.clear();
        self.delegations.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appnet_dns::wire::name::from_text;
    use appnet_dns::wire::rrtype::code;

    fn a(owner: &str, ttl: u32) -> Record {
        Record { owner: from_text(owner).unwrap(), rtype: code::A, class: 1, ttl, rdata: vec![10, 0, 0, 1] }
    }

    fn soa(owner: &str, ttl: u32, minimum: u32) -> Record {
        let mut rdata = Vec::new();
        rdata.extend_from_slice(&from_text("ns.example.").unwrap());
        rdata.extend_from_slice(&from_text("admin.example.").unwrap());
        for v in [1u32, 3600, 600, 86400, minimum] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        Record { owner: from_text(owner).unwrap(), rtype: code::SOA, class: 1, ttl, rdata }
    }

    fn positive(records: Vec<Record>) -> Answer {
        Answer { outcome: Outcome::Positive, records, authority: vec![] }
    }

    #[test]
    fn answers_expire_with_their_smallest_ttl_and_count_down() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheLimits::default());
        let q = from_text("www.example.").unwrap();
        c.insert(&q, code::A, positive(vec![a("www.example.", 300), a("www.example.", 60)]), t0);
        let got = c.get(&from_text("WWW.Example.").unwrap(), code::A, t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(got.records.iter().map(|r| r.ttl).collect::<Vec<_>>(), vec![280, 40]);
        assert!(c.get(&q, code::A, t0 + Duration::from_secs(60)).is_none());
        assert_eq!(c.stats(), CacheStats { hits: 1, misses: 1, evictions: 0 });
    }

    #[test]
    fn negative_answers_live_for_min_of_soa_ttl_and_minimum() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheLimits::default());
        let q = from_text("nope.example.").unwrap();
        let nx = Answer {
            outcome: Outcome::NxDomain,
            records: vec![],
            authority: vec![soa("example.", 900, 120)],
        };
        c.insert(&q, code::A, nx, t0);
        assert_eq!(c.get(&q, code::A, t0 + Duration::from_secs(119)).unwrap().outcome, Outcome::NxDomain);
        assert!(c.get(&q, code::A, t0 + Duration::from_secs(120)).is_none());
        // Without an SOA a negative answer is not cached at all.
        let bare = Answer { outcome: Outcome::NoData, records: vec![], authority: vec![] };
        c.insert(&q, code::MX, bare, t0);
        assert!(c.get(&q, code::MX, t0).is_none());
    }

    #[test]
    fn ttls_are_capped_and_servfail_is_brief() {
        let t0 = Instant::now();
        let limits = CacheLimits { max_ttl: 100, servfail_ttl: 3, ..CacheLimits::default() };
        let mut c = Cache::new(limits);
        let q = from_text("x.example.").unwrap();
        c.insert(&q, code::A, positive(vec![a("x.example.", 1_000_000)]), t0);
        assert!(c.get(&q, code::A, t0 + Duration::from_secs(100)).is_none());
        let sf = Answer { outcome: Outcome::ServFail, records: vec![], authority: vec![] };
        c.insert(&q, code::AAAA, sf, t0);
        assert!(c.get(&q, code::AAAA, t0 + Duration::from_secs(2)).is_some());
        assert!(c.get(&q, code::AAAA, t0 + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn bounded_by_bytes_with_least_recently_used_eviction() {
        let t0 = Instant::now();
        let budget = 64 * 1024;
        let mut c = Cache::new(CacheLimits { max_bytes: budget, ..CacheLimits::default() });
        let hot = from_text("hot.example.").unwrap();
        c.insert(&hot, code::A, positive(vec![a("hot.example.", 300)]), t0);
        // A random-subdomain flood: many distinct names, answers of varying size.
        for i in 0..5_000 {
            let owner = format!("r{i}.wt.zz.");
            let n = from_text(&owner).unwrap();
            let records = (0..1 + i % 7).map(|_| a(&owner, 300)).collect();
            c.insert(&n, code::A, positive(records), t0);
            assert!(c.bytes() <= budget, "over budget after {i} inserts: {}", c.bytes());
            c.get(&hot, code::A, t0); // keep the hot entry in use
        }
        assert!(c.get(&hot, code::A, t0).is_some(), "the hot entry survived");
        assert!(c.stats().evictions >= 4_000, "{:?}", c.stats());
        // The accounting is not a token figure: each entry is charged at least its real size.
        let one = answer_bytes(&positive(vec![a("r1.wt.zz.", 300)]));
        assert!(one > size_of::<Record>() + 10 + 4);
        assert!(c.len() * one <= budget);
    }

    #[test]
    fn delegations_have_their_own_share_of_the_budget() {
        let t0 = Instant::now();
        let budget = 64 * 1024;
        let mut c = Cache::new(CacheLimits { max_bytes: budget, ..CacheLimits::default() });
        let ns = from_text("ns.attacker.example.").unwrap();
        for i in 0..5_000 {
            let zone = from_text(&format!("z{i}.example.")).unwrap();
            let d = Delegation { zone, servers: vec![(ns.clone(), vec!["192.0.2.1".parse().unwrap()])] };
            c.insert_delegation(d, 3600, t0);
            assert!(c.delegations.used() <= budget / 4);
        }
        // Learning addresses grows entries in place and is accounted too.
        let many: Vec<IpAddr> = (0..50u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        c.add_server_addresses(&ns, &many);
        assert!(c.delegations.used() <= budget / 4);
        assert!(c.bytes() <= budget);
    }

    #[test]
    fn clients_never_see_a_ttl_above_the_caps() {
        let t0 = Instant::now();
        let limits = CacheLimits { max_ttl: 86_400, max_negative_ttl: 3_600, ..CacheLimits::default() };
        let mut c = Cache::new(limits);
        let q = from_text("big.example.").unwrap();
        let stored = c.insert(&q, code::A, positive(vec![a("big.example.", 2_147_483_647)]), t0);
        assert_eq!(stored.records[0].ttl, 86_400, "the fresh answer is capped too");
        let got = c.get(&q, code::A, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(got.records[0].ttl, 86_399);
        let (shared, age) = c.get_shared(&q, code::A, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!((shared.records[0].ttl, age), (86_400, 1));
        // A negative answer's SOA: min(TTL, MINIMUM) capped at max_negative_ttl.
        let nx = Answer {
            outcome: Outcome::NxDomain,
            records: vec![],
            authority: vec![soa("example.", 2_147_483_647, 2_147_483_647)],
        };
        let stored = c.insert(&q, code::MX, nx, t0);
        assert_eq!(stored.authority[0].ttl, 3_600);
        assert_eq!(c.get(&q, code::MX, t0).unwrap().authority[0].ttl, 3_600);
        assert!(c.get(&q, code::MX, t0 + Duration::from_secs(3_600)).is_none());
        // Below the caps, the SOA carries the negative lifetime (RFC 2308 §5).
        let nx = Answer {
            outcome: Outcome::NxDomain,
            records: vec![],
            authority: vec![soa("example.", 900, 120)],
        };
        assert_eq!(c.insert(&q, code::TXT, nx, t0).authority[0].ttl, 120);
    }

    #[test]
    fn the_closest_delegation_wins_and_learns_addresses() {
        let t0 = Instant::now();
        let mut c = Cache::new(CacheLimits::default());
        let ns = from_text("dns.umass.edu.").unwrap();
        for zone in ["edu.", "umass.edu."] {
            let d = Delegation { zone: from_text(zone).unwrap(), servers: vec![(ns.clone(), vec![])] };
            c.insert_delegation(d, 3600, t0);
        }
        let q = from_text("gaia.cs.umass.edu.").unwrap();
        let d = c.closest_delegation(&q, t0).unwrap();
        assert_eq!(d.zone, from_text("umass.edu.").unwrap());
        c.add_server_addresses(&ns, &["127.0.3.5".parse().unwrap()]);
        let d = c.closest_delegation(&q, t0).unwrap();
        assert_eq!(d.servers[0].1, vec!["127.0.3.5".parse::<IpAddr>().unwrap()]);
        assert!(c.closest_delegation(&q, t0 + Duration::from_secs(3600)).is_none());
    }
}
