//! The resolution algorithm (RFC 1034 §5.3.3): answer from the cache when possible, otherwise
//! start at the closest known zone cut (the root hints at first), ask one of its servers, follow
//! referrals down, resolve glueless name servers, follow CNAMEs across zones, and cache what is
//! learned: answers, negative answers (RFC 2308), delegations apart from answers.
//!
//! Defences against poisoning: random IDs and source ports (see [`crate::transport`]), replies
//! checked against the question asked (optionally with 0x20 case randomisation), records
//! outside the answering server's bailiwick dropped, glue used only for delegations and only
//! when in bailiwick, additional-section data never cached as an answer.

use crate::admission::Gate;
use crate::cache::{Answer, Cache, CacheLimits, CacheStats, Delegation, Outcome};
use crate::infra::InfraCache;
use crate::trace::{Step, StepOutcome};
use crate::transport::Transport;
use appnet_dns::wire::message::{self, Parsed, Record};
use appnet_dns::wire::name::{self, NameBuf, is_at_or_below};
use appnet_dns::wire::query::opcode;
use appnet_dns::wire::response::rcode;
use appnet_dns::wire::rrtype::{code, embedded_name, type_name};
use appnet_dns::wire::zonefile::record_text;
use rand::Rng;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest CNAME chain followed.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Most upstream queries one client question may cause (loops and deep chains stop here).
pub const MAX_QUERIES: usize = 48;
/// How deeply name-server address lookups may nest.
pub const MAX_DEPTH: usize = 5;
/// Most servers remembered as not speaking EDNS (the oldest is forgotten past it).
pub const MAX_NO_EDNS: usize = 1_024;
/// The EDNS payload size we advertise upstream (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// How the resolver finds answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Iterative resolution from these root servers (names and addresses).
    Iterative { roots: Vec<(NameBuf, Vec<IpAddr>)> },
    /// Recursive queries to one upstream resolver, like a home router.
    Forward { upstream: SocketAddr },
}

/// Settings for the algorithm (the service's config turns into this).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Iterative or forwarding.
    pub mode: Mode,
    /// The port upstream servers listen on (53; the lab uses 10053).
    pub upstream_port: u16,
    /// Randomise the case of query names and require the reply to echo it (DNS 0x20).
    pub use_0x20: bool,
    /// Cache bounds.
    pub cache: CacheLimits,
    /// Most upstream exchanges in flight towards one zone at once (0 = no limit); questions
    /// past it get SERVFAIL at once, uncached, instead of queueing behind a slow or dead zone.
    pub max_in_flight_per_zone: usize,
}

/// Counters for the statistics page, the tour and the tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client questions answered from the cache without any upstream query.
    pub served_from_cache: AtomicU64,
    /// Queries sent upstream.
    pub upstream_queries: AtomicU64,
    /// Upstream replies dropped as mismatched, out of bailiwick or malformed.
    pub rejected_replies: AtomicU64,
    /// Upstream tries that timed out.
    pub timeouts: AtomicU64,
    /// Questions answered SERVFAIL because their zone had its limit of exchanges in flight.
    pub zone_limited: AtomicU64,
}

struct State {
    cache: Cache,
    servers: InfraCache,
    no_edns: Vec<IpAddr>,
}

/// A resolver: shared by every client task; the cache sits behind a mutex never held across I/O.
pub struct Resolver<T: Transport> {
    transport: T,
    settings: Settings,
    state: Mutex<State>,
    /// Upstream exchanges in flight per zone cut.
    zones: Gate<NameBuf>,
    counters: Counters,
    /// When set, every step of every resolution is recorded here too (the lab tour sends real
    /// queries from a host and shows what the resolver did for them).
    recorder: Mutex<Option<Vec<Step>>>,
}

/// Per-question bookkeeping: query budget, nesting depth, and the trace when asked for.
struct Ctx {
    queries: usize,
    depth: usize,
    trace: Option<Vec<Step>>,
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn servfail() -> Answer {
    Answer { outcome: Outcome::ServFail, records: vec![], authority: vec![] }
}

fn question_text(qname: &[u8], qtype: u16) -> String {
    format!("{} {}", name::to_text(qname), type_name(qtype))
}

impl<T: Transport> Resolver<T> {
    /// A resolver with an empty cache.
    pub fn new(settings: Settings, transport: T) -> Resolver<T> {
        let state =
            State { cache: Cache::new(settings.cache), servers: InfraCache::new(), no_edns: Vec::new() };
        Resolver {
            transport,
            zones: Gate::new(settings.max_in_flight_per_zone),
            settings,
            state: Mutex::new(state),
            counters: Counters::default(),
            recorder: Mutex::new(None),
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Cache hit/miss counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.lock().cache.stats()
    }

    /// Bytes the cache accounts for now (at most its budget).
    pub fn cache_bytes(&self) -> usize {
        self.lock().cache.bytes()
    }

    /// Empties the cache (answers and delegations).
    pub fn flush(&self) {
        self.lock().cache.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts recording the steps of every resolution (replacing any earlier recording).
    pub fn start_recording(&self) {
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Stops recording and returns the steps recorded since [`start_recording`](Self::start_recording).
    pub fn take_recording(&self) -> Vec<Step> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    /// Looks only in the cache (for RD=0 questions).
    pub fn cached(&self, qname: &[u8], qtype: u16) -> Option<Answer> {
        self.lock().cache.get(qname, qtype, Instant::now())
    }

    /// The cached answer as stored and its age in seconds (the lock is held for a lookup and a
    /// reference count only; the caller subtracts the age from the TTLs it sends).
    pub fn cached_shared(&self, qname: &[u8], qtype: u16) -> Option<(std::sync::Arc<Answer>, u32)> {
        self.lock().cache.get_shared(qname, qtype, Instant::now())
    }

    /// Resolves `qname`/`qtype`.
    pub async fn resolve(&self, qname: &[u8], qtype: u16) -> Answer {
        let mut ctx = Ctx { queries: 0, depth: 0, trace: None };
        self.resolve_in(qname.into(), qtype, &mut ctx).await
    }

    /// Resolves and also returns every step taken (for `--trace` and the tour).
    pub async fn resolve_traced(&self, qname: &[u8], qtype: u16) -> (Answer, Vec<Step>) {
        let mut ctx = Ctx { queries: 0, depth: 0, trace: Some(Vec::new()) };
        let answer = self.resolve_in(qname.into(), qtype, &mut ctx).await;
        (answer, ctx.trace.unwrap_or_default())
    }

    fn resolve_in<'a>(&'a self, qname: NameBuf, qtype: u16, ctx: &'a mut Ctx) -> Boxed<'a, Answer> {
        Box::pin(async move {
            let mut chain: Vec<Record> = Vec::new();
            let mut current = qname;
            for _ in 0..=MAX_CNAME_CHAIN {
                let cached = {
                    let mut st = self.lock();
                    let now = Instant::now();
                    match st.cache.get(&current, qtype, now) {
                        Some(a) => Some(a),
                        None if qtype != code::CNAME => st
                            .cache
                            .get(&current, code::CNAME, now)
                            .filter(|a| a.outcome == Outcome::Positive),
                        None => None,
                    }
                };
                let answer = match cached {
                    Some(a) => {
                        if ctx.depth == 0 && chain.is_empty() {
                            self.counters.served_from_cache.fetch_add(1, Ordering::Relaxed);
                        }
                        self.record_step(
                            ctx,
                            "cache",
                            None,
                            question_text(&current, qtype),
                            StepOutcome::Cached,
                            Duration::ZERO,
                        );
                        a
                    }
                    None => match &self.settings.mode {
                        Mode::Iterative { .. } => self.iterate(&current, qtype, ctx).await,
                        Mode::Forward { upstream } => self.forward(*upstream, &current, qtype, ctx).await,
                    },
                };
                if answer.outcome == Outcome::Positive
                    && qtype != code::CNAME
                    && let Some(target) = dangling_cname(&answer.records, qtype)
                {
                    chain.extend(answer.records);
                    current = target;
                    continue;
                }
                chain.extend(answer.records);
                return Answer { outcome: answer.outcome, records: chain, authority: answer.authority };
            }
            servfail()
        })
    }

    /// The starting zone cut for `qname`: the deepest cached delegation, else the root hints.
    fn start_cut(&self, qname: &[u8]) -> Delegation {
        if let Some(d) = self.lock().cache.closest_delegation(qname, Instant::now()) {
            return d;
        }
        let roots = match &self.settings.mode {
            Mode::Iterative { roots } => roots.clone(),
            Mode::Forward { .. } => Vec::new(),
        };
        Delegation { zone: name::ROOT.into(), servers: roots }
    }

    async fn iterate(&self, qname: &[u8], qtype: u16, ctx: &mut Ctx) -> Answer {
        let mut cut = self.start_cut(qname);
        loop {
            if !cut.servers.iter().any(|(_, a)| !a.is_empty())
                && !self.find_server_addresses(&mut cut, ctx).await
            {
                return self.give_up(
                    qname,
                    qtype,
                    ctx,
                    format!("no address for any {} server", name::to_text(&cut.zone)),
                );
            }
            let Some(ticket) = self.zones.try_enter(cut.zone.clone()) else {
                return self.zone_busy(qname, qtype, ctx, &cut.zone);
            };
            let asked = self.ask_zone(&cut, qname, qtype, false, ctx).await;
            drop(ticket);
            let Some((server_name, reply)) = asked else {
                return self.give_up(
                    qname,
                    qtype,
                    ctx,
                    format!("every {} server failed", name::to_text(&cut.zone)),
                );
            };
            match self.classify(&cut, qname, qtype, &reply) {
                Classified::Done(answer, outcome) => {
                    self.note(ctx, &server_name, &reply, qname, qtype, outcome);
                    let mut st = self.lock();
                    let now = Instant::now();
                    for r in answer.records.iter().filter(|r| r.rtype == code::CNAME) {
                        let single = Answer {
                            outcome: Outcome::Positive,
                            records: vec![r.clone()],
                            authority: vec![],
                        };
                        st.cache.insert(&r.owner, code::CNAME, single, now);
                    }
                    return st.cache.insert(qname, qtype, answer, now);
                }
                Classified::Referral(next, ttl) => {
                    let outcome = StepOutcome::Referral {
                        zone: name::to_text(&next.zone),
                        servers: next.servers.iter().map(|(n, _)| name::to_text(n)).collect(),
                    };
                    self.note(ctx, &server_name, &reply, qname, qtype, outcome);
                    let mut st = self.lock();
                    st.cache.insert_delegation(next.clone(), ttl, Instant::now());
                    drop(st);
                    cut = next;
                }
                Classified::Lame(why) => {
                    self.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                    self.note(ctx, &server_name, &reply, qname, qtype, StepOutcome::Failed(why.clone()));
                    return self.give_up(qname, qtype, ctx, why);
                }
            }
        }
    }

    fn note(
        &self,
        ctx: &mut Ctx,
        server: &str,
        reply: &Reply,
        qname: &[u8],
        qtype: u16,
        outcome: StepOutcome,
    ) {
        self.record_step(ctx, server, Some(reply.from), question_text(qname, qtype), outcome, reply.rtt);
    }

    fn give_up(&self, qname: &[u8], qtype: u16, ctx: &mut Ctx, why: String) -> Answer {
        tracing::info!("SERVFAIL for {}: {why}", question_text(qname, qtype));
        self.record_step(
            ctx,
            "resolver",
            None,
            question_text(qname, qtype),
            StepOutcome::Failed(format!("SERVFAIL: {why}")),
            Duration::ZERO,
        );
        self.lock().cache.insert(qname, qtype, servfail(), Instant::now())
    }

    /// The zone already has its limit of exchanges in flight: SERVFAIL now, not cached (the
    /// question may well succeed a moment later, and a flood's names are not worth keeping).
    fn zone_busy(&self, qname: &[u8], qtype: u16, ctx: &mut Ctx, zone: &[u8]) -> Answer {
        self.counters.zone_limited.fetch_add(1, Ordering::Relaxed);
        let why = format!("{} has its limit of queries in flight", name::to_text(zone));
        tracing::debug!("SERVFAIL for {}: {why}", question_text(qname, qtype));
        self.record_step(
            ctx,
            "resolver",
            None,
            question_text(qname, qtype),
            StepOutcome::Failed(format!("SERVFAIL: {why}")),
            Duration::ZERO,
        );
        servfail()
    }

    /// A glueless delegation: resolve the addresses of its name servers (not those inside the
    /// zone itself, which would need glue we lack). Returns whether any address was found.
    async fn find_server_addresses(&self, cut: &mut Delegation, ctx: &mut Ctx) -> bool {
        if ctx.depth >= MAX_DEPTH {
            return false;
        }
        let names: Vec<NameBuf> = cut.servers.iter().map(|(n, _)| n.clone()).collect();
        for ns in names.iter().take(4) {
            if is_at_or_below(ns, &cut.zone) {
                continue;
            }
            ctx.depth += 1;
            let answer = self.resolve_in(ns.clone(), code::A, ctx).await;
            ctx.depth -= 1;
            let addrs: Vec<IpAddr> = answer.records.iter().filter_map(address_of).collect();
            if !addrs.is_empty() {
                self.lock().cache.add_server_addresses(ns, &addrs);
                if let Some(entry) = cut.servers.iter_mut().find(|(n, _)| n == ns) {
                    entry.1 = addrs;
                }
                return true;
            }
        }
        false
    }

    /// Asks the zone's servers in order of preference until one gives a usable reply.
    async fn ask_zone(
        &self,
        cut: &Delegation,
        qname: &[u8],
        qtype: u16,
        rd: bool,
        ctx: &mut Ctx,
    ) -> Option<(String, Reply)> {
        let candidates: Vec<(String, IpAddr)> = cut
            .servers
            .iter()
            .flat_map(|(n, addrs)| addrs.iter().map(move |a| (name::to_text(n), *a)))
            .collect();
        let addrs: Vec<IpAddr> = candidates.iter().map(|(_, a)| *a).collect();
        let order = {
            let st = self.lock();
            let mut rng = rand::rng();
            st.servers.order(
                &addrs,
                Instant::now(),
                rng.random_range(0..100),
                rng.random_range(0..usize::MAX),
            )
        };
        // Each server gets one try per round; two rounds, so a lost datagram is retried with
        // a backed-off timeout.
        for round in 0..2 {
            for addr in &order {
                if ctx.queries >= MAX_QUERIES {
                    return None;
                }
                let server_name =
                    candidates.iter().find(|(_, a)| a == addr).map(|(n, _)| n.clone()).unwrap_or_default();
                let target = SocketAddr::new(*addr, self.settings.upstream_port);
                match self.exchange(target, qname, qtype, rd, ctx).await {
                    Ok(reply) => return Some((server_name, reply)),
                    Err(failure) => {
                        let outcome = match failure {
                            Failure::Timeout(waited) => StepOutcome::Timeout { waited },
                            Failure::Bad(why) => StepOutcome::Failed(why),
                        };
                        self.record_step(
                            ctx,
                            &server_name,
                            Some(target),
                            question_text(qname, qtype),
                            outcome,
                            Duration::ZERO,
                        );
                    }
                }
            }
            if round == 0 && order.len() > 3 {
                break;
            }
        }
        None
    }

    /// One query to one server, with TCP fallback on TC and EDNS fallback on FORMERR/NOTIMP.
    async fn exchange(
        &self,
        server: SocketAddr,
        qname: &[u8],
        qtype: u16,
        rd: bool,
        ctx: &mut Ctx,
    ) -> Result<Reply, Failure> {
        let sent_name: NameBuf = if self.settings.use_0x20 { randomize_case(qname) } else { qname.into() };
        let mut edns = !self.lock().no_edns.contains(&server.ip());
        let mut tcp = false;
        for _attempt in 0..3 {
            ctx.queries += 1;
            self.counters.upstream_queries.fetch_add(1, Ordering::Relaxed);
            let id: u16 = rand::rng().random();
            let query = message::build_query(
                id,
                opcode::QUERY,
                &sent_name,
                qtype,
                rd,
                edns.then_some((EDNS_PAYLOAD, 0)),
            );
            let timeout = self.lock().servers.timeout(server.ip());
            let started = Instant::now();
            let bytes = match self.transport.exchange(server, &query, tcp, timeout).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                    self.lock().servers.timed_out(server.ip(), Instant::now());
                    return Err(Failure::Timeout(timeout));
                }
                Err(e) => {
                    self.lock().servers.timed_out(server.ip(), Instant::now());
                    return Err(Failure::Bad(format!("network error: {e}")));
                }
            };
            let rtt = started.elapsed();
            let parsed = match message::parse(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    self.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                    return Err(Failure::Bad(format!("malformed reply: {e}")));
                }
            };
            if let Err(why) = matches_question(&parsed, id, &sent_name, qtype, self.settings.use_0x20) {
                self.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                return Err(Failure::Bad(why));
            }
            if parsed.tc && !tcp {
                tcp = true;
                continue;
            }
            if edns && matches!(parsed.rcode, rcode::FORMERR | rcode::NOTIMP) {
                // A server that does not speak EDNS: remember (a bounded list) and ask plainly.
                remember_bounded(&mut self.lock().no_edns, server.ip(), MAX_NO_EDNS);
                edns = false;
                continue;
            }
            if matches!(parsed.rcode, rcode::SERVFAIL | rcode::REFUSED | rcode::NOTIMP | rcode::FORMERR) {
                self.lock().servers.timed_out(server.ip(), Instant::now());
                return Err(Failure::Bad(format!("server answered rcode {}", parsed.rcode)));
            }
            self.lock().servers.answered(server.ip(), rtt);
            return Ok(Reply { from: server, parsed, rtt });
        }
        Err(Failure::Bad("gave up after retries".into()))
    }

    /// Sorts a reply into a final answer, a referral downwards, or a lame/bogus reply.
    fn classify(&self, cut: &Delegation, qname: &[u8], qtype: u16, reply: &Reply) -> Classified {
        let p = &reply.parsed;
        let zone = &cut.zone;
        // Only records at or below the zone the server was asked about count (its bailiwick).
        let in_zone = |r: &&Record| is_at_or_below(&name::to_lower(&r.owner), zone);
        let answers: Vec<Record> = p.answer.iter().filter(in_zone).cloned().collect();
        let dropped = p.answer.len() - answers.len();
        if dropped > 0 {
            self.counters.rejected_replies.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!("dropped {dropped} out-of-bailiwick answer records from {}", reply.from);
        }
        let soa: Vec<Record> =
            p.authority.iter().filter(in_zone).filter(|r| r.rtype == code::SOA).cloned().collect();
        let chain = follow_chain(&answers, qname, qtype);
        if p.rcode == rcode::NXDOMAIN {
            let answer = Answer { outcome: Outcome::NxDomain, records: chain, authority: soa };
            return Classified::Done(answer, StepOutcome::NxDomain);
        }
        if !chain.is_empty() {
            let texts = chain.iter().map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)).collect();
            let answer = Answer { outcome: Outcome::Positive, records: chain, authority: vec![] };
            return Classified::Done(answer, StepOutcome::Answer { records: texts });
        }
        // A referral: NS records for a zone strictly below the cut that contains the name.
        let ns: Vec<&Record> = p.authority.iter().filter(|r| r.rtype == code::NS).collect();
        if let Some(first) = ns.first() {
            let child = name::to_lower(&first.owner);
            if is_at_or_below(&child, zone)
                && child.len() > zone.len()
                && is_at_or_below(&name::to_lower(qname), &child)
            {
                let mut servers: Vec<(NameBuf, Vec<IpAddr>)> = Vec::new();
                for r in ns.iter().filter(|r| name::to_lower(&r.owner) == child) {
                    if let Some(target) = embedded_name(&r.rdata, 0) {
                        servers.push((name::to_lower(target), Vec::new()));
                    }
                }
                // Glue only from the additional section, only for these servers, only in bailiwick.
                for g in &p.additional {
                    let owner = name::to_lower(&g.owner);
                    if !is_at_or_below(&owner, zone) {
                        continue;
                    }
                    if let (Some(entry), Some(ip)) =
                        (servers.iter_mut().find(|(n, _)| *n == owner), address_of(g))
                    {
                        entry.1.push(ip);
                    }
                }
                let ttl = ns.iter().map(|r| r.ttl).min().unwrap_or(0);
                return Classified::Referral(Delegation { zone: child, servers }, ttl);
            }
            if !is_at_or_below(&child, zone) || child.len() <= zone.len() {
                return Classified::Lame(format!(
                    "lame referral to {} from a {} server",
                    name::to_text(&child),
                    name::to_text(zone)
                ));
            }
        }
        if p.rcode == rcode::NOERROR {
            let answer = Answer { outcome: Outcome::NoData, records: vec![], authority: soa };
            return Classified::Done(answer, StepOutcome::NoData);
        }
        Classified::Lame(format!("unexpected reply (rcode {})", p.rcode))
    }

    async fn forward(&self, upstream: SocketAddr, qname: &[u8], qtype: u16, ctx: &mut Ctx) -> Answer {
        // Two tries (the second with the backed-off timeout), with RD set: the upstream recurses.
        let mut reply = None;
        for _ in 0..2 {
            if let Ok(r) = self.exchange(upstream, qname, qtype, true, ctx).await {
                reply = Some(r);
                break;
            }
        }
        let Some(reply) = reply else {
            return self.give_up(qname, qtype, ctx, format!("forwarder {upstream} did not answer"));
        };
        let p = &reply.parsed;
        let chain = follow_chain(&p.answer, qname, qtype);
        let soa: Vec<Record> = p.authority.iter().filter(|r| r.rtype == code::SOA).cloned().collect();
        let (answer, outcome) = if p.rcode == rcode::NXDOMAIN {
            (Answer { outcome: Outcome::NxDomain, records: chain, authority: soa }, StepOutcome::NxDomain)
        } else if !chain.is_empty() {
            let texts = chain.iter().map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)).collect();
            (
                Answer { outcome: Outcome::Positive, records: chain, authority: vec![] },
                StepOutcome::Answer { records: texts },
            )
        } else {
            (Answer { outcome: Outcome::NoData, records: vec![], authority: soa }, StepOutcome::NoData)
        };
        self.note(ctx, &upstream.to_string(), &reply, qname, qtype, outcome);
        self.lock().cache.insert(qname, qtype, answer, Instant::now())
    }
}

/// A validated reply from the server asked.
struct Reply {
    from: SocketAddr,
    parsed: Parsed,
    rtt: Duration,
}

enum Failure {
    Timeout(Duration),
    Bad(String),
}

enum Classified {
    Done(Answer, StepOutcome),
    Referral(Delegation, u32),
    Lame(String),
}

impl<T: Transport> Resolver<T> {
    fn record_step(
        &self,
        ctx: &mut Ctx,
        server: &str,
        addr: Option<SocketAddr>,
        question: String,
        outcome: StepOutcome,
        rtt: Duration,
    ) {
        let step = Step { server_name: server.to_string(), server: addr, question, outcome, rtt };
        if let Some(all) = self.recorder.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            all.push(step.clone());
        }
        if let Some(trace) = ctx.trace.as_mut() {
            trace.push(step);
        }
    }
}

/// Adds `ip` to a list kept to `max` entries, the oldest forgotten first.
fn remember_bounded(list: &mut Vec<IpAddr>, ip: IpAddr, max: usize) {
    if list.contains(&ip) {
        return;
    }
    if list.len() >= max.max(1) {
        list.remove(0);
    }
    list.push(ip);
}

/// The reply must answer our question: same ID, QR set, same name (exactly, with 0x20) and type.
fn matches_question(p: &Parsed, id: u16, sent: &[u8], qtype: u16, exact_case: bool) -> Result<(), String> {
    if p.id != id || !p.qr {
        return Err("reply with a mismatched ID".into());
    }
    let Some((qn, qt, _)) = &p.question else { return Err("reply without a question".into()) };
    let same = if exact_case { qn[..] == sent[..] } else { qn.eq_ignore_ascii_case(sent) };
    if !same || *qt != qtype {
        return Err("reply for a different question".into());
    }
    Ok(())
}

/// From the answer records, the chain that starts at `qname`: CNAMEs followed, then the records
/// of `qtype` at the end of the chain. Records not on the chain are left out.
fn follow_chain(records: &[Record], qname: &[u8], qtype: u16) -> Vec<Record> {
    let mut out = Vec::new();
    let mut current = name::to_lower(qname);
    for _ in 0..=MAX_CNAME_CHAIN {
        let at: Vec<&Record> = records.iter().filter(|r| name::to_lower(&r.owner) == current).collect();
        let wanted: Vec<&Record> =
            at.iter().copied().filter(|r| r.rtype == qtype || qtype == code::ANY).collect();
        if !wanted.is_empty() {
            out.extend(wanted.into_iter().cloned());
            return out;
        }
        match at.iter().find(|r| r.rtype == code::CNAME) {
            Some(c) => {
                out.push((*c).clone());
                match embedded_name(&c.rdata, 0) {
                    Some(target) => current = name::to_lower(target),
                    None => return out,
                }
            }
            None => return out,
        }
    }
    out
}

/// The CNAME target the chain ends on, when the answer has no records of `qtype` there.
fn dangling_cname(records: &[Record], qtype: u16) -> Option<NameBuf> {
    let last = records.last()?;
    if last.rtype == qtype || qtype == code::ANY {
        return None;
    }
    if last.rtype != code::CNAME {
        return None;
    }
    embedded_name(&last.rdata, 0).map(NameBuf::from)
}

fn address_of(r: &Record) -> Option<IpAddr> {
    match (r.rtype, r.rdata.len()) {
        (code::A, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).ok()?)),
        (code::AAAA, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).ok()?)),
        _ => None,
    }
}

/// DNS 0x20: flips the case of each letter at random, so a forger must also guess the case.
fn randomize_case(qname: &[u8]) -> NameBuf {
    let mut rng = rand::rng();
    let mut out = qname.to_vec();
    let mut pos = 0;
    while pos < out.len() {
        let len = out[pos] as usize;
        if len == 0 {
            break;
        }
        for b in out.iter_mut().skip(pos + 1).take(len) {
            if b.is_ascii_alphabetic() && rng.random::<bool>() {
                *b ^= 0x20;
            }
        }
        pos += 1 + len;
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_edns_list_is_bounded_and_keeps_the_newest() {
        let mut list = Vec::new();
        for i in 0..(3 * MAX_NO_EDNS as u32) {
            remember_bounded(&mut list, IpAddr::from(i.to_be_bytes()), MAX_NO_EDNS);
            assert!(list.len() <= MAX_NO_EDNS);
        }
        let newest = IpAddr::from((3 * MAX_NO_EDNS as u32 - 1).to_be_bytes());
        assert_eq!(list.last(), Some(&newest));
        remember_bounded(&mut list, newest, MAX_NO_EDNS);
        assert_eq!(list.iter().filter(|a| **a == newest).count(), 1, "no duplicates");
    }
}
