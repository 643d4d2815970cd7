//! The iteration algorithm (RFC 1034 §5.3.3) as a sans-IO state machine, one [`Resolution`] per
//! client question, in the style of quinn-proto: it never reads a clock or touches a socket.
//! Every call takes `now`; it says what to send with [`Resolution::poll_transmit`], when its
//! exchange times out with [`Resolution::poll_timeout`], and what happened with
//! [`Resolution::poll_event`] (the trace steps, then [`Event::Done`] with the answer). The
//! driver ([`crate::driver`]) only sends, receives, sleeps and feeds back
//! [`handle_response`](Resolution::handle_response), [`handle_timeout`](Resolution::handle_timeout)
//! and [`handle_error`](Resolution::handle_error).
//!
//! The algorithm: answer from the cache when possible, otherwise start at the closest known
//! zone cut (the root hints at first), ask one of its servers (chosen by the infra cache,
//! [`crate::infra`]), follow referrals down, resolve glueless name servers (nested lookups on a
//! stack inside the same resolution), follow CNAMEs across zones, and cache what is learned:
//! answers, negative answers (RFC 2308), delegations apart from answers. One exchange retries
//! over TCP when truncated and without EDNS when the server rejects it.
//!
//! Defences against poisoning: random IDs (and source ports, see [`crate::transport`]), replies
//! checked against the question asked (optionally with 0x20 case randomisation), records
//! outside the answering server's bailiwick dropped, glue used only for delegations and only
//! when in bailiwick, additional-section data never cached as an answer.

use crate::admission::{Gate, Ticket};
use crate::cache::{Answer, Cache, CacheLimits, Delegation, Outcome};
use crate::infra::InfraCache;
use crate::trace::{Step, StepOutcome};
use appnet_dns::wire::dnssec::{NSEC, NSEC3};
use appnet_dns::wire::message::{self, Parsed, Record};
use appnet_dns::wire::name::{self, NameBuf, is_at_or_below};
use appnet_dns::wire::query::opcode;
use appnet_dns::wire::response::rcode;
use appnet_dns::wire::rrtype::{code, embedded_name, type_name};
use appnet_dns::wire::verify::{RRSIG, rrsig_covers};
use appnet_dns::wire::zonefile::record_text;
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest CNAME chain followed.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Default of [`Settings::max_queries`]: most upstream queries one client question may cause
/// (loops and deep chains stop here).
pub const DEFAULT_MAX_QUERIES: usize = 48;
/// How deeply name-server address lookups may nest.
pub const MAX_DEPTH: usize = 5;
/// Most servers remembered as not speaking EDNS (the oldest is forgotten past it).
pub const MAX_NO_EDNS: usize = 1_024;
/// The EDNS payload size we advertise upstream (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Tries of one exchange with one server: the first, over TCP after a truncated reply, and
/// without EDNS after a FORMERR/NOTIMP.
const MAX_ATTEMPTS: u8 = 3;

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
    /// Most upstream queries one client question may cause, nested lookups included (at least
    /// 1); past it the zone being asked counts as failed (SERVFAIL).
    pub max_queries: usize,
    /// Ask upstream with DO=1 and keep the RRSIGs and NSEC/NSEC3 records the validator needs
    /// ([`crate::dnssec`]); DS questions go to the parent side of the zone cut.
    pub dnssec: bool,
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

/// What every resolution reads and updates, owned by the driver (behind one lock there, never
/// held across I/O): the cache, the infra cache, and the servers known not to speak EDNS.
#[derive(Debug)]
pub struct Shared {
    /// Answers and delegations.
    pub cache: Cache,
    /// RTTs, timeouts and back-off per upstream address.
    pub infra: InfraCache,
    /// Servers that rejected EDNS (bounded by [`MAX_NO_EDNS`]).
    pub no_edns: Vec<IpAddr>,
}

impl Shared {
    /// An empty cache and infra cache.
    pub fn new(limits: CacheLimits) -> Shared {
        Shared { cache: Cache::new(limits), infra: InfraCache::new(), no_edns: Vec::new() }
    }
}

/// Everything a [`Resolution`] consults on a call besides its own state: the settings, the
/// shared cache and infra cache, the per-zone admission gate and the counters.
pub struct Env<'a> {
    /// The algorithm's settings.
    pub settings: &'a Settings,
    /// Cache, infra cache, no-EDNS list: locked by the core for each use only, so replies are
    /// parsed and classified outside the lock.
    pub shared: &'a Mutex<Shared>,
    /// Upstream exchanges in flight per zone cut (the slot is held while a zone is asked).
    pub zones: &'a Gate<NameBuf>,
    /// Counters.
    pub counters: &'a Counters,
}

impl Env<'_> {
    /// The shared state, locked (a poisoned lock is still usable: every update is complete).
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A query the driver must send: to `server`, over TCP or UDP, waiting at most `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub server: SocketAddr,
    /// The DNS message.
    pub query: Vec<u8>,
    /// Over TCP (after a truncated reply) rather than UDP.
    pub tcp: bool,
    /// How long the exchange may take (also [`Resolution::poll_timeout`] − now at sending).
    pub timeout: Duration,
}

/// What a resolution reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One step of the trace (an exchange, a cache hit, a failure).
    Step(Step),
    /// The resolution is over: its answer (positive, NXDOMAIN, NODATA or SERVFAIL). Last event.
    Done(Answer),
}

/// The state machine for one client question: a stack of lookups (the question itself at the
/// bottom, name-server address lookups for glueless delegations above it) and at most one
/// exchange in flight.
pub struct Resolution {
    rng: StdRng,
    /// Queries sent for this question, nested lookups included (see [`Settings::max_queries`]).
    queries: usize,
    stack: Vec<Frame>,
    pending: Option<Pending>,
    transmit: Option<Transmit>,
    events: VecDeque<Event>,
    done: bool,
    /// The last query sent upstream and the reply it drew (empty until one came), for the
    /// [`Step`]s that show the bytes on the wire.
    last_query: Vec<u8>,
    last_reply: Vec<u8>,
}

/// One lookup (name, type) with its CNAME chain so far.
struct Frame {
    qtype: u16,
    current: NameBuf,
    chain: Vec<Record>,
    /// Lookups done along the CNAME chain (at most MAX_CNAME_CHAIN + 1).
    links: usize,
    depth: usize,
    task: Task,
}

enum Task {
    /// Look in the cache for `current`, then start iterating or forwarding.
    Lookup,
    Iterate(Iter),
    Forward {
        upstream: SocketAddr,
        tries: u8,
    },
}

struct Iter {
    cut: Delegation,
    /// Resolving addresses of a glueless delegation's servers: the names to try (the first
    /// four) and the index of the one being looked up (its frame is above this one).
    glueless: Option<(Vec<NameBuf>, usize)>,
    ask: Option<Ask>,
}

/// Asking one zone's servers in order: each gets one try per round; a second round (with the
/// backed-off timeout) only when the zone has three servers or fewer.
struct Ask {
    _ticket: Ticket<NameBuf>,
    candidates: Vec<(String, IpAddr)>,
    order: Vec<IpAddr>,
    round: usize,
    index: usize,
}

/// The exchange in flight with one server.
struct Pending {
    server: SocketAddr,
    sent_name: NameBuf,
    qtype: u16,
    rd: bool,
    edns: bool,
    tcp: bool,
    attempt: u8,
    id: u16,
    sent_at: Instant,
    deadline: Instant,
    timeout: Duration,
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

/// What a frame does next after a piece of work.
enum Flow {
    /// A query is queued: wait for the network.
    Wait,
    /// The frame finished with this answer.
    Finished(Answer),
    /// Keep working on the top frame (it may have changed).
    Continue,
}

fn servfail() -> Answer {
    Answer { outcome: Outcome::ServFail, records: vec![], authority: vec![] }
}

fn question_text(qname: &[u8], qtype: u16) -> String {
    format!("{} {}", name::to_text(qname), type_name(qtype))
}

impl Resolution {
    /// Starts resolving `qname`/`qtype`: answers from the cache at once when it can, else queues
    /// the first query. `rng` draws query IDs, 0x20 case and server probes (seed it from the
    /// OS in service; tests pass a fixed seed).
    pub fn start(now: Instant, qname: &[u8], qtype: u16, rng: StdRng, env: &Env<'_>) -> Resolution {
        let frame =
            Frame { qtype, current: qname.into(), chain: Vec::new(), links: 0, depth: 0, task: Task::Lookup };
        let mut res = Resolution {
            rng,
            queries: 0,
            stack: vec![frame],
            pending: None,
            last_query: Vec::new(),
            last_reply: Vec::new(),
            transmit: None,
            events: VecDeque::new(),
            done: false,
        };
        res.run(now, env);
        res
    }

    /// The next query to send, if one is queued (at most one is in flight at a time).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.take()
    }

    /// When the exchange in flight times out: call [`handle_timeout`](Self::handle_timeout)
    /// then. `None` when nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The next trace step, and finally [`Event::Done`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the answer is known (it is, or was, in [`Event::Done`]).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Upstream queries sent so far for this question.
    pub fn queries(&self) -> usize {
        self.queries
    }

    /// A reply arrived from `from`. Replies from anyone but the server asked, or when nothing is
    /// in flight, are ignored; malformed or mismatched ones fail the exchange (the next server
    /// is tried).
    pub fn handle_response(&mut self, now: Instant, from: SocketAddr, bytes: &[u8], env: &Env<'_>) {
        let Some(p) = self.pending.as_ref() else { return };
        if p.server != from {
            return;
        }
        let rtt = now.saturating_duration_since(p.sent_at);
        self.last_reply = bytes.to_vec();
        let result = match message::parse(bytes) {
            Err(e) => {
                env.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                Err(Failure::Bad(format!("malformed reply: {e}")))
            }
            Ok(parsed) => {
                if let Err(why) =
                    matches_question(&parsed, p.id, &p.sent_name, p.qtype, env.settings.use_0x20)
                {
                    env.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                    Err(Failure::Bad(why))
                } else if parsed.tc && !p.tcp {
                    self.retry(now, env, |p| p.tcp = true);
                    return;
                } else if p.edns && matches!(parsed.rcode, rcode::FORMERR | rcode::NOTIMP) {
                    // A server that does not speak EDNS: remember (a bounded list) and ask plainly.
                    remember_bounded(&mut env.shared().no_edns, from.ip(), MAX_NO_EDNS);
                    self.retry(now, env, |p| p.edns = false);
                    return;
                } else if matches!(
                    parsed.rcode,
                    rcode::SERVFAIL | rcode::REFUSED | rcode::NOTIMP | rcode::FORMERR
                ) {
                    env.shared().infra.timed_out(from.ip(), now);
                    Err(Failure::Bad(format!("server answered rcode {}", parsed.rcode)))
                } else {
                    env.shared().infra.answered(from.ip(), rtt);
                    Ok(Reply { from, parsed, rtt })
                }
            }
        };
        self.pending = None;
        self.exchanged(now, env, result);
    }

    /// Time passed: the exchange in flight fails if its deadline is reached (the server's
    /// timeout backs off in the infra cache and the next server is tried).
    pub fn handle_timeout(&mut self, now: Instant, env: &Env<'_>) {
        let Some(p) = self.pending.as_ref() else { return };
        if now < p.deadline {
            return;
        }
        let (ip, waited) = (p.server.ip(), p.timeout);
        self.pending = None;
        env.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        env.shared().infra.timed_out(ip, now);
        self.exchanged(now, env, Err(Failure::Timeout(waited)));
    }

    /// The driver could not complete the exchange (connection refused, reset, ...); an error of
    /// kind `TimedOut` is the transport's own deadline and counts as a timeout.
    pub fn handle_error(&mut self, now: Instant, error: &io::Error, env: &Env<'_>) {
        let Some(p) = self.pending.take() else { return };
        env.shared().infra.timed_out(p.server.ip(), now);
        let failure = if error.kind() == io::ErrorKind::TimedOut {
            env.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            Failure::Timeout(p.timeout)
        } else {
            Failure::Bad(format!("network error: {error}"))
        };
        self.exchanged(now, env, Err(failure));
    }

    /// Works on the stack until a query is queued or the question is answered.
    fn run(&mut self, now: Instant, env: &Env<'_>) {
        while !self.done && self.pending.is_none() {
            match self.advance(now, env) {
                Flow::Wait => {}
                Flow::Continue => {}
                Flow::Finished(answer) => self.finish_frame(env, answer),
            }
        }
    }

    /// The top frame finished: hand its answer to the frame below, or end the resolution.
    fn finish_frame(&mut self, env: &Env<'_>, mut answer: Answer) {
        loop {
            self.stack.pop();
            if self.stack.is_empty() {
                self.done = true;
                self.events.push_back(Event::Done(answer));
                return;
            }
            match self.glueless_done(env, answer) {
                Flow::Finished(a) => answer = a,
                Flow::Wait | Flow::Continue => return,
            }
        }
    }

    /// One piece of work on the top frame.
    fn advance(&mut self, now: Instant, env: &Env<'_>) -> Flow {
        let Some(frame) = self.stack.last_mut() else {
            self.done = true;
            return Flow::Wait;
        };
        match &frame.task {
            Task::Lookup => self.lookup(now, env),
            Task::Iterate(_) => self.iterate(now, env),
            // Forwarding always has an exchange in flight or is finished.
            Task::Forward { .. } => Flow::Finished(servfail()),
        }
    }

    fn top(&mut self) -> &mut Frame {
        self.stack.last_mut().expect("a frame while running")
    }

    /// The start of each link of the CNAME chain: the cache, else iterate or forward.
    fn lookup(&mut self, now: Instant, env: &Env<'_>) -> Flow {
        let frame = self.top();
        if frame.links > MAX_CNAME_CHAIN {
            return Flow::Finished(servfail());
        }
        let (current, qtype) = (frame.current.clone(), frame.qtype);
        let cached = {
            let cache = &mut env.shared().cache;
            match cache.get(&current, qtype, now) {
                Some(a) => Some(a),
                None if qtype != code::CNAME => {
                    cache.get(&current, code::CNAME, now).filter(|a| a.outcome == Outcome::Positive)
                }
                None => None,
            }
        };
        if let Some(answer) = cached {
            if frame.depth == 0 && frame.chain.is_empty() {
                env.counters.served_from_cache.fetch_add(1, Ordering::Relaxed);
            }
            self.step("cache", None, question_text(&current, qtype), StepOutcome::Cached, Duration::ZERO);
            return self.link_answered(answer);
        }
        match &env.settings.mode {
            Mode::Iterative { roots } => {
                // DS lives on the parent side of a zone cut (RFC 4035 §3.1.4.1).
                let from: &[u8] = match qtype {
                    code::DS if env.settings.dnssec => name::parent(&current).unwrap_or(&current),
                    _ => &current,
                };
                let cut = env
                    .shared()
                    .cache
                    .closest_delegation(from, now)
                    .unwrap_or_else(|| Delegation { zone: name::ROOT.into(), servers: roots.clone() });
                self.top().task = Task::Iterate(Iter { cut, glueless: None, ask: None });
                Flow::Continue
            }
            Mode::Forward { upstream } => {
                let upstream = *upstream;
                self.top().task = Task::Forward { upstream, tries: 0 };
                self.send(now, env, upstream, &current, qtype, true);
                Flow::Wait
            }
        }
    }

    /// A link of the chain has its answer: follow a dangling CNAME, or finish the frame.
    fn link_answered(&mut self, answer: Answer) -> Flow {
        let frame = self.top();
        if answer.outcome == Outcome::Positive
            && frame.qtype != code::CNAME
            && let Some(target) = dangling_cname(&answer.records, frame.qtype)
        {
            frame.chain.extend(answer.records);
            frame.current = target;
            frame.links += 1;
            frame.task = Task::Lookup;
            return Flow::Continue;
        }
        let mut records = std::mem::take(&mut frame.chain);
        records.extend(answer.records);
        Flow::Finished(Answer { outcome: answer.outcome, records, authority: answer.authority })
    }

    /// The top of the iteration loop: find server addresses if the cut has none, then take the
    /// zone's slot and ask its servers.
    fn iterate(&mut self, now: Instant, env: &Env<'_>) -> Flow {
        let frame = self.stack.last_mut().expect("a frame");
        let (current, qtype, depth) = (frame.current.clone(), frame.qtype, frame.depth);
        let Task::Iterate(it) = &mut frame.task else { return Flow::Finished(servfail()) };
        if !it.cut.servers.iter().any(|(_, a)| !a.is_empty()) {
            // A glueless delegation: resolve the addresses of its name servers (not those inside
            // the zone itself, which would need glue we lack), the first four at most.
            if depth >= MAX_DEPTH {
                let why = format!("no address for any {} server", name::to_text(&it.cut.zone));
                return self.give_up(now, env, why);
            }
            let (names, next) = it
                .glueless
                .get_or_insert_with(|| (it.cut.servers.iter().take(4).map(|(n, _)| n.clone()).collect(), 0));
            while *next < names.len() && is_at_or_below(&names[*next], &it.cut.zone) {
                *next += 1;
            }
            if *next >= names.len() {
                let why = format!("no address for any {} server", name::to_text(&it.cut.zone));
                return self.give_up(now, env, why);
            }
            let ns = names[*next].clone();
            self.stack.push(Frame {
                qtype: code::A,
                current: ns,
                chain: Vec::new(),
                links: 0,
                depth: depth + 1,
                task: Task::Lookup,
            });
            return Flow::Continue;
        }
        let Some(ticket) = env.zones.try_enter(it.cut.zone.clone()) else {
            env.counters.zone_limited.fetch_add(1, Ordering::Relaxed);
            let why = format!("{} has its limit of queries in flight", name::to_text(&it.cut.zone));
            tracing::debug!("SERVFAIL for {}: {why}", question_text(&current, qtype));
            self.step(
                "resolver",
                None,
                question_text(&current, qtype),
                StepOutcome::Failed(format!("SERVFAIL: {why}")),
                Duration::ZERO,
            );
            // Not cached: the question may well succeed a moment later, and a flood's names are
            // not worth keeping.
            return self.link_answered(servfail());
        };
        let candidates: Vec<(String, IpAddr)> = it
            .cut
            .servers
            .iter()
            .flat_map(|(n, addrs)| addrs.iter().map(move |a| (name::to_text(n), *a)))
            .collect();
        let addrs: Vec<IpAddr> = candidates.iter().map(|(_, a)| *a).collect();
        let order = env.shared().infra.order(
            &addrs,
            now,
            self.rng.random_range(0..100),
            self.rng.random_range(0..usize::MAX),
        );
        it.ask = Some(Ask { _ticket: ticket, candidates, order, round: 0, index: 0 });
        self.ask_next(now, env)
    }

    /// Sends to the next server of the zone in order, or gives up when all have failed.
    fn ask_next(&mut self, now: Instant, env: &Env<'_>) -> Flow {
        let queries = self.queries;
        let frame = self.stack.last_mut().expect("a frame");
        let (current, qtype) = (frame.current.clone(), frame.qtype);
        let Task::Iterate(it) = &mut frame.task else { return Flow::Finished(servfail()) };
        let Some(ask) = it.ask.as_mut() else { return Flow::Finished(servfail()) };
        if ask.index >= ask.order.len() && ask.round == 0 && ask.order.len() <= 3 {
            ask.round = 1;
            ask.index = 0;
        }
        if ask.index >= ask.order.len() || queries >= env.settings.max_queries.max(1) {
            let why = format!("every {} server failed", name::to_text(&it.cut.zone));
            it.ask = None;
            return self.give_up(now, env, why);
        }
        let target = SocketAddr::new(ask.order[ask.index], env.settings.upstream_port);
        self.send(now, env, target, &current, qtype, false);
        Flow::Wait
    }

    /// The exchange in flight ended (after its retries): hand the result to the top frame.
    fn exchanged(&mut self, now: Instant, env: &Env<'_>, result: Result<Reply, Failure>) {
        let flow = match &self.top().task {
            Task::Iterate(_) => self.zone_replied(now, env, result),
            Task::Forward { .. } => self.forwarder_replied(now, env, result),
            Task::Lookup => Flow::Continue,
        };
        if let Flow::Finished(answer) = flow {
            self.finish_frame(env, answer);
        }
        self.run(now, env);
    }

    fn zone_replied(&mut self, now: Instant, env: &Env<'_>, result: Result<Reply, Failure>) -> Flow {
        let frame = self.stack.last_mut().expect("a frame");
        let (current, qtype) = (frame.current.clone(), frame.qtype);
        let Task::Iterate(it) = &mut frame.task else { return Flow::Finished(servfail()) };
        let Some(ask) = it.ask.as_mut() else { return Flow::Finished(servfail()) };
        let addr = ask.order[ask.index];
        let server_name =
            ask.candidates.iter().find(|(_, a)| *a == addr).map(|(n, _)| n.clone()).unwrap_or_default();
        let reply = match result {
            Ok(reply) => reply,
            Err(failure) => {
                ask.index += 1;
                let outcome = match failure {
                    Failure::Timeout(waited) => StepOutcome::Timeout { waited },
                    Failure::Bad(why) => StepOutcome::Failed(why),
                };
                let target = SocketAddr::new(addr, env.settings.upstream_port);
                self.step(
                    &server_name,
                    Some(target),
                    question_text(&current, qtype),
                    outcome,
                    Duration::ZERO,
                );
                return self.ask_next(now, env);
            }
        };
        // The zone's slot is given back as soon as it has answered.
        it.ask = None;
        match classify(&it.cut, &current, qtype, &reply, env.counters, env.settings.dnssec) {
            Classified::Done(answer, outcome) => {
                self.note(&server_name, &reply, &current, qtype, outcome);
                let mut shared = env.shared();
                let cache = &mut shared.cache;
                for r in answer.records.iter().filter(|r| r.rtype == code::CNAME) {
                    let single = Answer {
                        outcome: Outcome::Positive,
                        records: with_signatures(vec![r.clone()], &answer.records),
                        authority: vec![],
                    };
                    cache.insert(&r.owner, code::CNAME, single, now);
                }
                let answer = cache.insert(&current, qtype, answer, now);
                drop(shared);
                self.link_answered(answer)
            }
            Classified::Referral(next, ttl) => {
                let outcome = StepOutcome::Referral {
                    zone: name::to_text(&next.zone),
                    servers: next.servers.iter().map(|(n, _)| name::to_text(n)).collect(),
                };
                env.shared().cache.insert_delegation(next.clone(), ttl, now);
                *it = Iter { cut: next, glueless: None, ask: None };
                self.note(&server_name, &reply, &current, qtype, outcome);
                Flow::Continue
            }
            Classified::Lame(why) => {
                env.counters.rejected_replies.fetch_add(1, Ordering::Relaxed);
                self.note(&server_name, &reply, &current, qtype, StepOutcome::Failed(why.clone()));
                self.give_up(now, env, why)
            }
        }
    }

    /// A glueless name server's address lookup (the frame just popped) ended.
    fn glueless_done(&mut self, env: &Env<'_>, answer: Answer) -> Flow {
        let frame = self.top();
        let Task::Iterate(it) = &mut frame.task else { return Flow::Finished(servfail()) };
        let Some((names, next)) = it.glueless.as_mut() else { return Flow::Finished(servfail()) };
        let ns = names[*next].clone();
        let addrs: Vec<IpAddr> = answer.records.iter().filter_map(address_of).collect();
        if addrs.is_empty() {
            *next += 1;
            return Flow::Continue;
        }
        env.shared().cache.add_server_addresses(&ns, &addrs);
        if let Some(entry) = it.cut.servers.iter_mut().find(|(n, _)| *n == ns) {
            entry.1 = addrs;
        }
        it.glueless = None;
        Flow::Continue
    }

    fn forwarder_replied(&mut self, now: Instant, env: &Env<'_>, result: Result<Reply, Failure>) -> Flow {
        let frame = self.stack.last_mut().expect("a frame");
        let (current, qtype) = (frame.current.clone(), frame.qtype);
        let Task::Forward { upstream, tries } = &mut frame.task else { return Flow::Finished(servfail()) };
        let upstream = *upstream;
        let reply = match result {
            Ok(reply) => reply,
            Err(_) => {
                // Two tries (the second with the backed-off timeout), with RD set.
                *tries += 1;
                if *tries < 2 {
                    self.send(now, env, upstream, &current, qtype, true);
                    return Flow::Wait;
                }
                return self.give_up(now, env, format!("forwarder {upstream} did not answer"));
            }
        };
        let p = &reply.parsed;
        let mut chain = follow_chain(&p.answer, &current, qtype);
        let mut soa: Vec<Record> = p.authority.iter().filter(|r| r.rtype == code::SOA).cloned().collect();
        if env.settings.dnssec {
            chain = with_signatures(chain, &p.answer);
            soa.extend(denial_records(&p.authority));
        }
        let (answer, outcome) = if p.rcode == rcode::NXDOMAIN {
            (Answer { outcome: Outcome::NxDomain, records: chain, authority: soa }, StepOutcome::NxDomain)
        } else if !chain.is_empty() {
            let texts = chain.iter().map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)).collect();
            let proofs = soa.into_iter().filter(|r| r.rtype != code::SOA && !covers_soa(r)).collect();
            (
                Answer { outcome: Outcome::Positive, records: chain, authority: proofs },
                StepOutcome::Answer { records: texts },
            )
        } else {
            (Answer { outcome: Outcome::NoData, records: vec![], authority: soa }, StepOutcome::NoData)
        };
        self.note(&upstream.to_string(), &reply, &current, qtype, outcome);
        let answer = env.shared().cache.insert(&current, qtype, answer, now);
        self.link_answered(answer)
    }

    /// SERVFAIL for the top frame's name, remembered briefly in the cache.
    fn give_up(&mut self, now: Instant, env: &Env<'_>, why: String) -> Flow {
        let frame = self.top();
        let (current, qtype) = (frame.current.clone(), frame.qtype);
        tracing::info!("SERVFAIL for {}: {why}", question_text(&current, qtype));
        self.step(
            "resolver",
            None,
            question_text(&current, qtype),
            StepOutcome::Failed(format!("SERVFAIL: {why}")),
            Duration::ZERO,
        );
        let answer = env.shared().cache.insert(&current, qtype, servfail(), now);
        self.link_answered(answer)
    }

    /// Starts an exchange with `server` (a fresh 0x20 case, EDNS unless it is known not to work).
    fn send(&mut self, now: Instant, env: &Env<'_>, server: SocketAddr, qname: &[u8], qtype: u16, rd: bool) {
        let sent_name: NameBuf =
            if env.settings.use_0x20 { randomize_case(qname, &mut self.rng) } else { qname.into() };
        let edns = !env.shared().no_edns.contains(&server.ip());
        self.pending = Some(Pending {
            server,
            sent_name,
            qtype,
            rd,
            edns,
            tcp: false,
            attempt: 0,
            id: 0,
            sent_at: now,
            deadline: now,
            timeout: Duration::ZERO,
        });
        self.transmit_pending(now, env);
    }

    /// The exchange goes again with a change (TCP, or no EDNS), if it has tries left.
    fn retry(&mut self, now: Instant, env: &Env<'_>, change: impl FnOnce(&mut Pending)) {
        let Some(p) = self.pending.as_mut() else { return };
        change(p);
        p.attempt += 1;
        if p.attempt >= MAX_ATTEMPTS {
            self.pending = None;
            self.exchanged(now, env, Err(Failure::Bad("gave up after retries".into())));
            return;
        }
        self.transmit_pending(now, env);
    }

    /// Queues the pending exchange's current attempt with a fresh ID and the server's timeout.
    fn transmit_pending(&mut self, now: Instant, env: &Env<'_>) {
        let Some(p) = self.pending.as_mut() else { return };
        self.queries += 1;
        env.counters.upstream_queries.fetch_add(1, Ordering::Relaxed);
        p.id = self.rng.random();
        let mut query = message::build_query(
            p.id,
            opcode::QUERY,
            &p.sent_name,
            p.qtype,
            p.rd,
            p.edns.then_some((EDNS_PAYLOAD, 0)),
        );
        if p.edns && env.settings.dnssec {
            set_dnssec_ok(&mut query);
        }
        p.timeout = env.shared().infra.timeout(p.server.ip());
        p.sent_at = now;
        p.deadline = now + p.timeout;
        self.last_query.clone_from(&query);
        self.last_reply.clear();
        self.transmit = Some(Transmit { server: p.server, query, tcp: p.tcp, timeout: p.timeout });
    }

    fn note(&mut self, server: &str, reply: &Reply, qname: &[u8], qtype: u16, outcome: StepOutcome) {
        self.step(server, Some(reply.from), question_text(qname, qtype), outcome, reply.rtt);
    }

    fn step(
        &mut self,
        server: &str,
        addr: Option<SocketAddr>,
        question: String,
        outcome: StepOutcome,
        rtt: Duration,
    ) {
        // Only a step that went to a server has bytes on the wire: the last exchange's.
        let (query, reply) = match addr {
            Some(_) => (self.last_query.clone(), self.last_reply.clone()),
            None => (Vec::new(), Vec::new()),
        };
        let step =
            Step { server_name: server.to_string(), server: addr, question, outcome, rtt, query, reply };
        self.events.push_back(Event::Step(step));
    }
}

/// Sets the DO bit of a query's OPT record, the last record of a query [`message::build_query`]
/// made (flags: the fourth and third bytes from the end, before the empty RDLENGTH).
fn set_dnssec_ok(query: &mut [u8]) {
    let n = query.len();
    if n >= 11 + 12 && query[n - 11..n - 8] == [0, 0, 41] && query[n - 2..] == [0, 0] {
        query[n - 4] |= 0x80;
    }
}

/// `chain` with the RRSIGs in `answers` that cover its RRsets (same owner, covered type).
fn with_signatures(mut chain: Vec<Record>, answers: &[Record]) -> Vec<Record> {
    let covered: Vec<(NameBuf, u16)> = chain.iter().map(|r| (name::to_lower(&r.owner), r.rtype)).collect();
    for r in answers.iter().filter(|r| r.rtype == RRSIG) {
        let key = (name::to_lower(&r.owner), rrsig_covers(&r.rdata));
        if covered.contains(&key) && !chain.contains(r) {
            chain.push(r.clone());
        }
    }
    chain
}

/// Whether `r` is an RRSIG over an SOA.
fn covers_soa(r: &Record) -> bool {
    r.rtype == RRSIG && rrsig_covers(&r.rdata) == code::SOA
}

/// The denial-of-existence records of an authority section: NSEC, NSEC3 and the RRSIGs over
/// them and over the SOA (the SOA itself is taken apart).
fn denial_records(authority: &[Record]) -> impl Iterator<Item = Record> + '_ {
    authority
        .iter()
        .filter(|r| {
            matches!(r.rtype, NSEC | NSEC3)
                || (r.rtype == RRSIG && matches!(rrsig_covers(&r.rdata), NSEC | NSEC3 | code::SOA))
        })
        .cloned()
}

/// Sorts a reply into a final answer, a referral downwards, or a lame/bogus reply. With
/// `dnssec`, answers keep their RRSIGs and negative answers their NSEC/NSEC3 proofs.
fn classify(
    cut: &Delegation,
    qname: &[u8],
    qtype: u16,
    reply: &Reply,
    counters: &Counters,
    dnssec: bool,
) -> Classified {
    let p = &reply.parsed;
    let zone = &cut.zone;
    // Only records at or below the zone the server was asked about count (its bailiwick).
    let in_zone = |r: &&Record| is_at_or_below(&name::to_lower(&r.owner), zone);
    let answers: Vec<Record> = p.answer.iter().filter(in_zone).cloned().collect();
    let dropped = p.answer.len() - answers.len();
    if dropped > 0 {
        counters.rejected_replies.fetch_add(dropped as u64, Ordering::Relaxed);
        tracing::debug!("dropped {dropped} out-of-bailiwick answer records from {}", reply.from);
    }
    let mut soa: Vec<Record> =
        p.authority.iter().filter(in_zone).filter(|r| r.rtype == code::SOA).cloned().collect();
    let mut chain = follow_chain(&answers, qname, qtype);
    let mut proofs = Vec::new();
    if dnssec {
        chain = with_signatures(chain, &answers);
        let in_zone_authority: Vec<Record> = p.authority.iter().filter(in_zone).cloned().collect();
        proofs = denial_records(&in_zone_authority).collect();
    }
    if p.rcode == rcode::NXDOMAIN {
        soa.extend(proofs);
        let answer = Answer { outcome: Outcome::NxDomain, records: chain, authority: soa };
        return Classified::Done(answer, StepOutcome::NxDomain);
    }
    if !chain.is_empty() {
        let texts = chain.iter().map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)).collect();
        // Wildcard expansions carry the NSEC/NSEC3 proving the name itself does not exist.
        let authority = proofs.into_iter().filter(|r| !covers_soa(r)).collect();
        let answer = Answer { outcome: Outcome::Positive, records: chain, authority };
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
        soa.extend(proofs);
        let answer = Answer { outcome: Outcome::NoData, records: vec![], authority: soa };
        return Classified::Done(answer, StepOutcome::NoData);
    }
    Classified::Lame(format!("unexpected reply (rcode {})", p.rcode))
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
    let last = records.iter().rev().find(|r| r.rtype != RRSIG)?;
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
fn randomize_case(qname: &[u8], rng: &mut impl Rng) -> NameBuf {
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
