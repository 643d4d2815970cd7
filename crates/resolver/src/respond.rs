//! One client query → one response: parse, admit, answer locally or from the resolver, and
//! write the response (RA set, EDNS echoed, truncated with TC when it does not fit).

use crate::admission::{Gate, Ticket, client_key};
use crate::cache::Answer;
use crate::clients::{Admission, Clients};
use crate::dnssec::{Ede, Security};
use crate::driver::Resolver;
use crate::local::LocalZones;
use crate::transport::Transport;
use appnet_dns::wire::message::Record;
use appnet_dns::wire::query::{self, BadQuery, Header, opcode};
use appnet_dns::wire::response::{self, OptOut, Question, Reply, RrRef, rcode};
use appnet_dns::wire::rrtype::{CLASS_IN, code, pack_rdata};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Our EDNS payload size towards clients.
pub const CLIENT_PAYLOAD: u16 = 1232;

/// Per-service counters (Prometheus names in [`crate::server`]).
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub queries: AtomicU64,
    pub refused: AtomicU64,
    pub rate_limited: AtomicU64,
    pub local_answers: AtomicU64,
    pub servfail: AtomicU64,
    /// Uncached questions answered SERVFAIL at once: the client had its limit in flight.
    pub client_limited: AtomicU64,
    /// Uncached questions answered SERVFAIL at once: the resolver had its limit in flight.
    pub busy: AtomicU64,
}

/// Everything a query needs: the resolver, the local zones and the client policy.
pub struct Frontend<T: Transport> {
    pub resolver: Resolver<T>,
    pub local: LocalZones,
    pub clients: Clients,
    pub counters: ServiceCounters,
    /// Questions being resolved per client (see [`client_key`]): one client's flood of
    /// uncached names cannot take the slots everyone else needs.
    pub per_client: Gate<IpAddr>,
    /// Questions being resolved in all (the service's `max_in_flight`).
    pub in_flight: Arc<Semaphore>,
}

/// The slots held by a question being resolved; dropping it frees them.
#[derive(Debug)]
pub struct Admitted {
    _client: Ticket<IpAddr>,
    _global: OwnedSemaphorePermit,
}

/// How the query arrived (UDP replies are size-limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Udp,
    Tcp,
}

impl<T: Transport> Frontend<T> {
    /// Answers one query packet from `peer`; `None` means send nothing.
    pub async fn answer(&self, packet: &[u8], peer: IpAddr, via: Via) -> Option<Vec<u8>> {
        match self.answer_now(packet, peer, via) {
            Immediate::Reply(reply) => reply,
            Immediate::Resolve(admitted) => {
                let reply = self.answer_resolving(packet, via).await;
                drop(admitted);
                reply
            }
        }
    }

    /// Everything that needs no upstream query: errors, refusals, local zones and cache hits.
    /// The UDP loop answers these inline and spawns a task only for [`Immediate::Resolve`].
    pub fn answer_now(&self, packet: &[u8], peer: IpAddr, via: Via) -> Immediate {
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        let q = match query::parse(packet) {
            Ok(q) => q,
            Err(BadQuery::Ignore) => return Immediate::Reply(None),
            Err(BadQuery::FormErr(h)) => return Immediate::Reply(Some(error(h, None, None, rcode::FORMERR))),
            Err(BadQuery::NotImp(h)) => return Immediate::Reply(Some(error(h, None, None, rcode::NOTIMP))),
        };
        let question = Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
        let opt = q.edns.map(|_| OptOut { payload: CLIENT_PAYLOAD });
        let reply = |code| Immediate::Reply(Some(error(q.header(), Some(question), opt, code)));
        match self.clients.admit(peer, Instant::now()) {
            Admission::Allowed => {}
            Admission::Refused => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "recursion refused: client not in the allow list");
                return reply(rcode::REFUSED);
            }
            Admission::Limited => {
                self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Immediate::Reply(None);
            }
        }
        if q.edns.is_some_and(|e| e.version != 0) {
            return reply(rcode::BADVERS);
        }
        if q.opcode != opcode::QUERY {
            return reply(rcode::NOTIMP);
        }
        if q.qclass != CLASS_IN || matches!(q.qtype, code::AXFR | code::IXFR | 253 | 254) {
            return reply(rcode::REFUSED);
        }
        let limit = limit_for(via, q.edns);
        let sec = SecOpts::of(packet, q.qtype, q.edns, q.cd);
        if let Some((_, answer)) = self.local.answer(q.qname, q.qtype) {
            self.counters.local_answers.fetch_add(1, Ordering::Relaxed);
            let out = write_answer(q.header(), question, opt, &answer, 0, true, limit, sec, None);
            return Immediate::Reply(Some(out));
        }
        // With validation on, a cached answer is served at once only with its cached verdict
        // (or when the client set CD); otherwise the slow path validates it.
        let verdict = match self.resolver.validates() && !q.cd {
            true => self.resolver.cached_verdict(q.qname, q.qtype).map(Some),
            false => Some(None),
        };
        // A bogus verdict is kept for its own time (60 s), even past the answer's.
        if let Some(Some(Security::Bogus(e))) = &verdict {
            self.counters.servfail.fetch_add(1, Ordering::Relaxed);
            return Immediate::Reply(Some(bogus(q.header(), question, opt, e)));
        }
        match self.resolver.cached_shared(q.qname, q.qtype).filter(|_| verdict.is_some()) {
            Some((answer, age)) => {
                self.resolver.counters().served_from_cache.fetch_add(1, Ordering::Relaxed);
                let verdict = verdict.flatten();
                self.count_servfail(&answer);
                let out = write_answer(q.header(), question, opt, &answer, age, false, limit, sec, verdict);
                Immediate::Reply(Some(out))
            }
            // RD clear: the client asks what we already know; never go upstream for it.
            None if !q.rd => reply(rcode::REFUSED),
            None => match self.admit_resolution(peer) {
                Ok(admitted) => Immediate::Resolve(admitted),
                Err(why) => {
                    tracing::debug!(%peer, "SERVFAIL without resolving: {why}");
                    self.counters.servfail.fetch_add(1, Ordering::Relaxed);
                    reply(rcode::SERVFAIL)
                }
            },
        }
    }

    /// Slots for one more question being resolved for `peer`: its own cap first (so a flooder
    /// is stopped before it takes global slots), then the service's.
    fn admit_resolution(&self, peer: IpAddr) -> Result<Admitted, &'static str> {
        let Some(client) = self.per_client.try_enter(client_key(peer)) else {
            self.counters.client_limited.fetch_add(1, Ordering::Relaxed);
            return Err("the client has its limit of questions in flight");
        };
        let Ok(global) = self.in_flight.clone().try_acquire_owned() else {
            self.counters.busy.fetch_add(1, Ordering::Relaxed);
            return Err("too many questions in flight");
        };
        Ok(Admitted { _client: client, _global: global })
    }

    /// The slow path: resolve upstream (the packet already passed [`answer_now`](Self::answer_now)).
    pub async fn answer_resolving(&self, packet: &[u8], via: Via) -> Option<Vec<u8>> {
        let q = query::parse(packet).ok()?;
        let question = Question { qname: q.qname, qtype: q.qtype, qclass: q.qclass };
        let opt = q.edns.map(|_| OptOut { payload: CLIENT_PAYLOAD });
        let sec = SecOpts::of(packet, q.qtype, q.edns, q.cd);
        let (answer, verdict) = if self.resolver.validates() && !q.cd {
            let (answer, security) = self.resolver.resolve_secure(q.qname, q.qtype).await;
            (answer, Some(security))
        } else {
            (self.resolver.resolve(q.qname, q.qtype).await, None)
        };
        if let Some(Security::Bogus(e)) = &verdict {
            self.counters.servfail.fetch_add(1, Ordering::Relaxed);
            return Some(bogus(q.header(), question, opt, e));
        }
        self.count_servfail(&answer);
        Some(write_answer(q.header(), question, opt, &answer, 0, false, limit_for(via, q.edns), sec, verdict))
    }

    fn count_servfail(&self, answer: &Answer) {
        if answer.rcode() == rcode::SERVFAIL {
            self.counters.servfail.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What [`Frontend::answer_now`] decided.
#[derive(Debug)]
pub enum Immediate {
    /// Send this (or nothing) now.
    Reply(Option<Vec<u8>>),
    /// The answer needs upstream queries: call [`Frontend::answer_resolving`] in a task that
    /// holds these slots until it is done.
    Resolve(Admitted),
}

fn limit_for(via: Via, edns: Option<appnet_dns::wire::query::Edns>) -> usize {
    match via {
        Via::Udp => response::udp_limit(edns, CLIENT_PAYLOAD),
        Via::Tcp => 65_535,
    }
}

fn error(header: Header, question: Option<Question<'_>>, opt: Option<OptOut>, code: u16) -> Vec<u8> {
    let reply = Reply { rcode: code, ..Default::default() };
    let mut out = response::write(header, question, opt, &reply, 512, Vec::new());
    set_ra(&mut out);
    out
}

/// What the client asked of DNSSEC: DO (keep RRSIG/NSEC/NSEC3 records), AD (RFC 6840 §5.7: a
/// client setting AD wants it back on secure answers) and CD.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecOpts {
    dnssec_ok: bool,
    ad: bool,
    cd: bool,
    /// The question asks for a DNSSEC type itself: nothing is stripped.
    dnssec_type: bool,
}

impl SecOpts {
    fn of(packet: &[u8], qtype: u16, edns: Option<appnet_dns::wire::query::Edns>, cd: bool) -> SecOpts {
        use appnet_dns::wire::dnssec::{NSEC, NSEC3};
        use appnet_dns::wire::verify::RRSIG;
        SecOpts {
            dnssec_ok: edns.is_some_and(|e| e.dnssec_ok),
            ad: packet.get(3).is_some_and(|b| b & 0x20 != 0),
            cd,
            dnssec_type: matches!(qtype, RRSIG | NSEC | NSEC3 | code::ANY),
        }
    }
}

/// SERVFAIL for a bogus answer, with the Extended DNS Error (RFC 8914) when the client speaks
/// EDNS.
fn bogus(header: Header, question: Question<'_>, opt: Option<OptOut>, e: &Ede) -> Vec<u8> {
    let mut out = error(header, Some(question), opt, rcode::SERVFAIL);
    if opt.is_some() {
        add_ede(&mut out, e);
    }
    out
}

/// Appends an EDE option to the message's OPT record: the last record, written without options
/// by [`response::write`] (owner root, type 41, RDLENGTH 0 at the very end).
fn add_ede(message: &mut Vec<u8>, e: &Ede) {
    let n = message.len();
    if n < 12 + 11 || message[n - 11..n - 8] != [0, 0, 41] || message[n - 2..] != [0, 0] {
        return;
    }
    let text = &e.text.as_bytes()[..e.text.len().min(200)];
    let option_len = 2 + text.len() as u16;
    let rdlen = 4 + option_len;
    message.truncate(n - 2);
    message.extend_from_slice(&rdlen.to_be_bytes());
    message.extend_from_slice(&15u16.to_be_bytes());
    message.extend_from_slice(&option_len.to_be_bytes());
    message.extend_from_slice(&e.code.to_be_bytes());
    message.extend_from_slice(text);
}

/// Borrows grouped RRsets as section entries.
fn to_refs<'a>(sets: &'a [(&'a [u8], u16, u32, Vec<u8>)]) -> Vec<RrRef<'a>> {
    sets.iter()
        .map(|(owner, rtype, ttl, data)| RrRef { owner, rtype: *rtype, ttl: *ttl, rdata: data })
        .collect()
}

/// Groups records into RRsets (same owner, type) with packed rdata, in order of appearance.
/// `age` (seconds in the cache) is taken off every TTL.
fn rrsets(records: &[Record], age: u32) -> Vec<(&[u8], u16, u32, Vec<u8>)> {
    let mut sets: Vec<(&[u8], u16, u32, Vec<u8>)> = Vec::new();
    for r in records {
        match sets.iter_mut().find(|(o, t, _, _)| *t == r.rtype && o.eq_ignore_ascii_case(&r.owner)) {
            Some(set) => {
                set.2 = set.2.min(r.ttl.saturating_sub(age));
                pack_rdata(&mut set.3, &r.rdata);
            }
            None => {
                let mut packed = Vec::new();
                pack_rdata(&mut packed, &r.rdata);
                sets.push((&r.owner, r.rtype, r.ttl.saturating_sub(age), packed));
            }
        }
    }
    sets
}

/// Without DO, the RRSIG, NSEC and NSEC3 records are left out (RFC 4035 §3.2.1).
fn visible(records: &[Record], sec: SecOpts) -> std::borrow::Cow<'_, [Record]> {
    use appnet_dns::wire::dnssec::{NSEC, NSEC3};
    use appnet_dns::wire::verify::RRSIG;
    let hidden = |r: &Record| matches!(r.rtype, RRSIG | NSEC | NSEC3);
    if sec.dnssec_ok || sec.dnssec_type || !records.iter().any(hidden) {
        return std::borrow::Cow::Borrowed(records);
    }
    std::borrow::Cow::Owned(records.iter().filter(|r| !hidden(r)).cloned().collect())
}

#[allow(clippy::too_many_arguments)]
fn write_answer(
    header: Header,
    question: Question<'_>,
    opt: Option<OptOut>,
    answer: &Answer,
    age: u32,
    aa: bool,
    limit: usize,
    sec: SecOpts,
    verdict: Option<Security>,
) -> Vec<u8> {
    let records = visible(&answer.records, sec);
    let authority = visible(&answer.authority, sec);
    let answer_sets = rrsets(&records, age);
    let authority_sets = rrsets(&authority, age);
    let answer_refs = to_refs(&answer_sets);
    let authority_refs = to_refs(&authority_sets);
    let reply = Reply {
        rcode: answer.rcode(),
        aa,
        answer: &answer_refs,
        authority: &authority_refs,
        additional: &[],
        required_additional: 0,
    };
    let mut out = response::write(header, Some(question), opt, &reply, limit, Vec::new());
    set_ra(&mut out);
    // AD (RFC 4035 §3.2.3, RFC 6840 §5.7): secure, and the client asked with DO or AD.
    if verdict == Some(Security::Secure)
        && (sec.dnssec_ok || sec.ad)
        && !sec.cd
        && let Some(flags) = out.get_mut(3)
    {
        *flags |= 0x20;
    }
    out
}

/// Sets the RA (recursion available) bit: byte 3, top bit, of the DNS header (RFC 1035 §4.1.1).
fn set_ra(message: &mut [u8]) {
    if let Some(flags) = message.get_mut(3) {
        *flags |= 0x80;
    }
}
