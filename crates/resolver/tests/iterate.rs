//! The sans-IO iteration core driven without sockets or a runtime: a scripted network (the
//! textbook hierarchy of `support`, answered synchronously) in virtual time. Each test checks
//! the exact queries the core asks to send, in order, and the outcome.

mod support;

use appnet_dns::wire::name::{self, NameBuf, from_text};
use appnet_dns::wire::query;
use appnet_dns::wire::rrtype::{code, type_name};
use appnet_resolver::admission::Gate;
use appnet_resolver::cache::{Answer, CacheLimits, Outcome};
use appnet_resolver::infra::UNKNOWN_RTT;
use appnet_resolver::iterate::{
    Counters, DEFAULT_MAX_QUERIES, Env, Event, Mode, Resolution, Settings, Shared,
};
use appnet_resolver::trace::{Step, StepOutcome};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{FakeNet, roots, textbook_net};

/// Virtual time every server takes to answer.
const RTT: Duration = Duration::from_millis(10);

/// One query the core asked to send, as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    server: IpAddr,
    question: String,
    tcp: bool,
    edns: bool,
}

fn sent(server: &str, question: &str) -> Sent {
    Sent { server: server.parse().unwrap(), question: question.into(), tcp: false, edns: true }
}

/// The world around the core: its shared state, a scripted network and a virtual clock.
struct Sim {
    net: FakeNet,
    settings: Settings,
    shared: Mutex<Shared>,
    zones: Gate<NameBuf>,
    counters: Counters,
    now: Instant,
    /// Servers that never answer (the core's own timer must fire).
    silent: HashSet<IpAddr>,
    /// Servers whose UDP replies come truncated (TC set), so only TCP gets the answer.
    truncating: HashSet<IpAddr>,
    sent: Vec<Sent>,
}

impl Sim {
    fn new(net: FakeNet) -> Sim {
        let settings = Settings {
            mode: Mode::Iterative { roots: roots() },
            upstream_port: 53,
            use_0x20: false,
            cache: CacheLimits::default(),
            max_in_flight_per_zone: 64,
            max_queries: DEFAULT_MAX_QUERIES,
            dnssec: false,
        };
        Sim {
            net,
            shared: Mutex::new(Shared::new(settings.cache)),
            zones: Gate::new(settings.max_in_flight_per_zone),
            settings,
            counters: Counters::default(),
            now: Instant::now(),
            silent: HashSet::new(),
            truncating: HashSet::new(),
            sent: Vec::new(),
        }
    }

    fn env(&mut self) -> Env<'_> {
        Env {
            settings: &self.settings,
            shared: &mut self.shared,
            zones: &self.zones,
            counters: &self.counters,
        }
    }

    fn start(&mut self, qname: &str, qtype: u16) -> Resolution {
        let qname = from_text(qname).unwrap();
        let now = self.now;
        Resolution::start(now, &qname, qtype, StdRng::seed_from_u64(11), &self.env())
    }

    /// Runs one resolution to its end: every transmit answered by the scripted network (or left
    /// to time out), the clock moved to each reply or deadline. Returns the answer and steps.
    fn run(&mut self, mut res: Resolution) -> (Answer, Vec<Step>) {
        let mut steps = Vec::new();
        for _ in 0..200 {
            while let Some(event) = res.poll_event() {
                match event {
                    Event::Step(step) => steps.push(step),
                    Event::Done(answer) => {
                        assert!(res.poll_transmit().is_none() && res.poll_timeout().is_none());
                        return (answer, steps);
                    }
                }
            }
            let tx = res.poll_transmit().expect("a query to send when there is no answer yet");
            let deadline = res.poll_timeout().expect("a deadline for the query in flight");
            assert_eq!(deadline, self.now + tx.timeout);
            let q = query::parse(&tx.query).expect("the core sends well-formed queries");
            self.sent.push(Sent {
                server: tx.server.ip(),
                question: format!("{} {}", name::to_text(q.qname), type_name(q.qtype)),
                tcp: tx.tcp,
                edns: q.edns.is_some(),
            });
            if self.silent.contains(&tx.server.ip()) {
                // Nothing comes back: before the deadline time passing changes nothing.
                res.handle_timeout(deadline - Duration::from_millis(1), &self.env());
                assert_eq!(res.poll_timeout(), Some(deadline));
                self.now = deadline;
                let now = self.now;
                res.handle_timeout(now, &self.env());
                continue;
            }
            self.now += RTT;
            let now = self.now;
            match self.net.answer(tx.server, &tx.query, tx.tcp) {
                Ok(mut bytes) => {
                    if !tx.tcp && self.truncating.contains(&tx.server.ip()) {
                        bytes[2] |= 0x02;
                    }
                    res.handle_response(now, tx.server, &bytes, &self.env())
                }
                Err(e) => res.handle_error(now, &e, &self.env()),
            }
        }
        panic!("no answer after 200 rounds");
    }

    fn resolve(&mut self, qname: &str, qtype: u16) -> (Answer, Vec<Step>) {
        let res = self.start(qname, qtype);
        self.run(res)
    }
}

fn a_records(answer: &Answer) -> Vec<[u8; 4]> {
    answer.records.iter().filter(|r| r.rtype == code::A).map(|r| r.rdata[..].try_into().unwrap()).collect()
}

fn outcomes(steps: &[Step]) -> Vec<&StepOutcome> {
    steps.iter().map(|s| &s.outcome).collect()
}

#[test]
fn the_referral_chain_root_edu_umass_cs_in_virtual_time() {
    let mut sim = Sim::new(textbook_net());
    let start = sim.now;
    let (answer, steps) = sim.resolve("gaia.cs.umass.edu.", code::A);
    assert_eq!(answer.outcome, Outcome::Positive);
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    let q = "gaia.cs.umass.edu. A";
    assert_eq!(
        sim.sent,
        vec![sent("127.0.1.1", q), sent("127.0.2.1", q), sent("127.0.3.1", q), sent("127.0.3.3", q)]
    );
    assert!(matches!(
        outcomes(&steps)[..],
        [
            StepOutcome::Referral { .. },
            StepOutcome::Referral { .. },
            StepOutcome::Referral { .. },
            StepOutcome::Answer { .. }
        ]
    ));
    let zones: Vec<&str> = steps
        .iter()
        .filter_map(|s| match &s.outcome {
            StepOutcome::Referral { zone, .. } => Some(zone.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(zones, ["edu.", "umass.edu.", "cs.umass.edu."]);
    // The RTTs in the trace are the virtual ones, and the clock moved only by them.
    assert!(steps.iter().all(|s| s.rtt == RTT));
    assert_eq!(sim.now - start, 4 * RTT);
    assert_eq!(sim.counters.upstream_queries.load(Ordering::Relaxed), 4);
    // The repeat comes from the cache: no query at all, done at once.
    sim.sent.clear();
    let res = sim.start("gaia.cs.umass.edu.", code::A);
    assert!(res.is_done() && res.poll_timeout().is_none());
    let (again, steps) = sim.run(res);
    assert_eq!(a_records(&again), vec![[128, 119, 245, 12]]);
    assert_eq!(outcomes(&steps), vec![&StepOutcome::Cached]);
    assert!(sim.sent.is_empty());
    // A sibling name starts at the cached cs.umass.edu cut: one query.
    let (_, _) = sim.resolve("dns.cs.umass.edu.", code::A);
    assert_eq!(sim.sent, vec![sent("127.0.3.3", "dns.cs.umass.edu. A")]);
}

#[test]
fn a_silent_server_times_out_and_the_other_replica_answers() {
    let mut sim = Sim::new(textbook_net());
    // Both stanford.edu servers are unknown (same RTT estimate); the first in the NS set goes
    // first. It never answers.
    sim.silent.insert("127.0.3.30".parse().unwrap());
    let before = sim.now;
    let (answer, steps) = sim.resolve("www.stanford.edu.", code::A);
    assert_eq!(a_records(&answer), vec![[171, 64, 64, 64]]);
    let q = "www.stanford.edu. A";
    assert_eq!(
        sim.sent,
        vec![sent("127.0.1.1", q), sent("127.0.2.1", q), sent("127.0.3.30", q), sent("127.0.3.31", q)]
    );
    let waited = UNKNOWN_RTT * 2;
    assert_eq!(steps[2].outcome, StepOutcome::Timeout { waited });
    assert!(matches!(steps[3].outcome, StepOutcome::Answer { .. }));
    assert_eq!(sim.now - before, 3 * RTT + waited, "virtual time: three replies and one timeout");
    assert_eq!(sim.counters.timeouts.load(Ordering::Relaxed), 1);
    // The timed-out server is in its blackout: the next question asks the live one first.
    sim.sent.clear();
    let (nx, _) = sim.resolve("www1.stanford.edu.", code::A);
    assert_eq!(nx.outcome, Outcome::NxDomain);
    assert_eq!(sim.sent, vec![sent("127.0.3.31", "www1.stanford.edu. A")]);
}

#[test]
fn every_server_silent_gives_servfail_after_two_rounds_with_backoff() {
    let mut sim = Sim::new(textbook_net());
    sim.silent.insert("127.0.3.30".parse().unwrap());
    sim.silent.insert("127.0.3.31".parse().unwrap());
    let (answer, steps) = sim.resolve("www.stanford.edu.", code::A);
    assert_eq!(answer.outcome, Outcome::ServFail);
    let q = "www.stanford.edu. A";
    // Two servers, so two rounds: each asked twice, the second time backed off (the RTT
    // estimate doubled by the timeout, then the timeout doubled: 4 × 400 ms).
    assert_eq!(
        sim.sent[2..],
        [sent("127.0.3.30", q), sent("127.0.3.31", q), sent("127.0.3.30", q), sent("127.0.3.31", q)]
    );
    let waits: Vec<Duration> = steps
        .iter()
        .filter_map(|s| match s.outcome {
            StepOutcome::Timeout { waited } => Some(waited),
            _ => None,
        })
        .collect();
    let t = UNKNOWN_RTT * 2;
    assert_eq!(waits, vec![t, t, 4 * t, 4 * t]);
    assert_eq!(
        steps.last().unwrap().outcome,
        StepOutcome::Failed("SERVFAIL: every stanford.edu. server failed".into())
    );
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let mut sim = Sim::new(textbook_net());
    sim.truncating.insert("127.0.3.3".parse().unwrap());
    let (answer, steps) = sim.resolve("gaia.cs.umass.edu.", code::A);
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    let q = "gaia.cs.umass.edu. A";
    let tcp = Sent { tcp: true, ..sent("127.0.3.3", q) };
    assert_eq!(
        sim.sent,
        vec![sent("127.0.1.1", q), sent("127.0.2.1", q), sent("127.0.3.1", q), sent("127.0.3.3", q), tcp]
    );
    // One step for the exchange with cs.umass.edu, whose RTT is the TCP round only.
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[3].rtt, RTT);
}

#[test]
fn a_server_rejecting_edns_is_asked_plainly_and_remembered() {
    let net = textbook_net();
    net.reject_edns("127.0.3.3");
    let mut sim = Sim::new(net);
    let (answer, _) = sim.resolve("gaia.cs.umass.edu.", code::A);
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    let q = "gaia.cs.umass.edu. A";
    let plain = Sent { edns: false, ..sent("127.0.3.3", q) };
    assert_eq!(sim.sent[3..], [sent("127.0.3.3", q), plain.clone()]);
    sim.sent.clear();
    sim.resolve("dns.cs.umass.edu.", code::A);
    assert_eq!(sim.sent, vec![Sent { edns: false, ..sent("127.0.3.3", "dns.cs.umass.edu. A") }]);
}

#[test]
fn a_cname_into_another_zone_is_chased_from_the_root() {
    let mut sim = Sim::new(textbook_net());
    let (answer, steps) = sim.resolve("mirror.ibm.com.", code::A);
    assert_eq!(answer.outcome, Outcome::Positive);
    assert_eq!(answer.records[0].rtype, code::CNAME);
    assert_eq!(a_records(&answer), vec![[127, 0, 10, 1]]);
    let (m, w) = ("mirror.ibm.com. A", "www.umass.edu. A");
    assert_eq!(
        sim.sent,
        vec![
            sent("127.0.1.1", m),
            sent("127.0.2.2", m),
            sent("127.0.3.10", m),
            // The target is in another tree: from the root again (edu. was never learned).
            sent("127.0.1.1", w),
            sent("127.0.2.1", w),
            sent("127.0.3.1", w),
        ]
    );
    assert!(matches!(&steps[2].outcome, StepOutcome::Answer { records } if records[0].contains("CNAME")));
    // The CNAME itself is cached: asking for the alias again sends nothing.
    sim.sent.clear();
    let (again, _) = sim.resolve("mirror.ibm.com.", code::A);
    assert_eq!(again.records, answer.records);
    assert!(sim.sent.is_empty());
}

#[test]
fn a_lame_delegation_gives_servfail() {
    let net = textbook_net();
    // edu. delegates lame.edu. to a server that is really a root server: it answers with a
    // referral upwards, to edu., which is not below lame.edu.
    let edu = format!("{}lame.edu. NS ns.lame.edu.\nns.lame.edu. A 127.0.3.50\n", support::EDU);
    net.serve("127.0.2.1", &[("edu.", &edu)]);
    net.serve("127.0.3.50", &[(".", support::ROOT)]);
    let mut sim = Sim::new(net);
    let (answer, steps) = sim.resolve("www.lame.edu.", code::A);
    assert_eq!(answer.outcome, Outcome::ServFail);
    let q = "www.lame.edu. A";
    assert_eq!(sim.sent, vec![sent("127.0.1.1", q), sent("127.0.2.1", q), sent("127.0.3.50", q)]);
    assert_eq!(steps[2].outcome, StepOutcome::Failed("lame referral to edu. from a lame.edu. server".into()));
    assert!(
        matches!(&steps[3].outcome, StepOutcome::Failed(why) if why.starts_with("SERVFAIL: lame referral"))
    );
    assert_eq!(sim.counters.rejected_replies.load(Ordering::Relaxed), 1);
    // The SERVFAIL is remembered briefly: the lame server is not asked again at once.
    sim.sent.clear();
    assert_eq!(sim.resolve("www.lame.edu.", code::A).0.outcome, Outcome::ServFail);
    assert!(sim.sent.is_empty());
}

#[test]
fn a_glueless_delegation_resolves_its_name_server_first() {
    let mut sim = Sim::new(textbook_net());
    let (answer, steps) = sim.resolve("www.glueless.com.", code::A);
    assert_eq!(a_records(&answer), vec![[192, 0, 2, 80]]);
    let (w, ns) = ("www.glueless.com. A", "dns2.umass.edu. A");
    assert_eq!(
        sim.sent,
        vec![
            sent("127.0.1.1", w),
            sent("127.0.2.2", w),
            // glueless.com. NS dns2.umass.edu. without an address: a nested lookup.
            sent("127.0.1.1", ns),
            sent("127.0.2.1", ns),
            sent("127.0.3.1", ns),
            sent("127.0.3.20", w),
        ]
    );
    assert_eq!(steps.len(), 6);
    assert!(matches!(&steps[1].outcome, StepOutcome::Referral { zone, servers }
        if zone == "glueless.com." && servers == &["dns2.umass.edu.".to_string()]));
    // The answer is for the client's question; the nested lookup only fed the delegation.
    assert_eq!(answer.records.len(), 1);
    assert_eq!(sim.counters.served_from_cache.load(Ordering::Relaxed), 0);
}

#[test]
fn a_zone_at_its_limit_gets_servfail_without_a_query_and_the_slot_comes_back() {
    let mut sim = Sim::new(textbook_net());
    sim.settings.max_in_flight_per_zone = 1;
    sim.zones = Gate::new(1);
    // The first question takes the root's only slot and waits for its reply.
    let mut first = sim.start("gaia.cs.umass.edu.", code::A);
    let tx = first.poll_transmit().expect("a query to a root server");
    assert_eq!(tx.server.ip(), "127.0.1.1".parse::<IpAddr>().unwrap());
    // A second question for the same zone is refused at once, with no query.
    let mut second = sim.start("www.stanford.edu.", code::A);
    assert!(second.is_done());
    assert!(second.poll_transmit().is_none());
    let mut events = Vec::new();
    while let Some(e) = second.poll_event() {
        events.push(e);
    }
    assert!(matches!(&events[0], Event::Step(s)
        if s.outcome == StepOutcome::Failed("SERVFAIL: . has its limit of queries in flight".into())));
    assert!(matches!(&events[1], Event::Done(a) if a.outcome == Outcome::ServFail));
    assert_eq!(sim.counters.zone_limited.load(Ordering::Relaxed), 1);
    // Dropping the first resolution mid-exchange (a cancelled client) gives the slot back,
    // and the refused question, not cached, now resolves.
    drop(first);
    let (answer, _) = sim.resolve("www.stanford.edu.", code::A);
    assert_eq!(a_records(&answer), vec![[171, 64, 64, 64]]);
}

#[test]
fn replies_from_elsewhere_are_ignored_and_bad_ones_fail_over() {
    let mut sim = Sim::new(textbook_net());
    let mut res = sim.start("www.stanford.edu.", code::A);
    let tx = res.poll_transmit().unwrap();
    let deadline = res.poll_timeout().unwrap();
    let reply = sim.net.answer(tx.server, &tx.query, false).unwrap();
    // The same bytes from another address change nothing.
    let other: SocketAddr = "127.0.1.2:53".parse().unwrap();
    let now = sim.now + RTT;
    res.handle_response(now, other, &reply, &sim.env());
    assert_eq!(res.poll_timeout(), Some(deadline));
    assert!(res.poll_transmit().is_none());
    // Garbage from the right address fails this server; the other root is asked next.
    res.handle_response(now, tx.server, &[0xde, 0xad], &sim.env());
    let next = res.poll_transmit().expect("the other root");
    assert_eq!(next.server, other);
    assert!(matches!(res.poll_event(), Some(Event::Step(s)) if matches!(s.outcome, StepOutcome::Failed(_))));
    // A refused connection likewise moves on (there is no third server: SERVFAIL, round 2 first).
    let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
    res.handle_error(now, &refused, &sim.env());
    let again = res.poll_transmit().expect("a second round: only two servers");
    assert_eq!(again.server, tx.server);
    assert_eq!(sim.counters.rejected_replies.load(Ordering::Relaxed), 1);
}

#[test]
fn the_query_budget_ends_a_question_with_servfail() {
    let mut sim = Sim::new(textbook_net());
    // gaia.cs.umass.edu needs four queries from a cold cache; three are allowed.
    sim.settings.max_queries = 3;
    let (answer, steps) = sim.resolve("gaia.cs.umass.edu.", code::A);
    assert_eq!(answer.outcome, Outcome::ServFail);
    let q = "gaia.cs.umass.edu. A";
    assert_eq!(sim.sent, vec![sent("127.0.1.1", q), sent("127.0.2.1", q), sent("127.0.3.1", q)]);
    assert_eq!(
        steps.last().unwrap().outcome,
        StepOutcome::Failed("SERVFAIL: every cs.umass.edu. server failed".into())
    );
    // With four allowed (and the remembered SERVFAIL flushed) the same question resolves.
    sim.sent.clear();
    sim.shared.lock().unwrap().cache.clear();
    sim.settings.max_queries = 4;
    let (answer, _) = sim.resolve("gaia.cs.umass.edu.", code::A);
    assert_eq!(a_records(&answer), vec![[128, 119, 245, 12]]);
    assert_eq!(sim.sent.len(), 4);
}
