//! ICE-style connectivity checks (RFC 8445 in spirit), sans-IO. Each side pairs its bases
//! (host and relayed candidates) with the other side's candidates, orders the pairs by priority
//! (host > server-reflexive > relayed) and sends STUN Binding requests on them with short-term
//! credentials (USERNAME `their-ufrag:our-ufrag`, MESSAGE-INTEGRITY keyed by their password).
//! Both sides check at once, so each NAT sees an outgoing packet before the other side's arrives:
//! that is the simultaneous open of hole punching. A request that arrives triggers a check back
//! on the same pair. The controlling side selects the best pair that succeeded once no better
//! one is still in flight and tells the other with USE-CANDIDATE; when every direct pair fails
//! the relayed pairs are what is left.

use super::wire::{Candidate, CandidateKind};
use crate::stun::attr::code;
use crate::stun::message::method;
use crate::stun::{Attr, Class, Message};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PRIORITY: u16 = 0x0024;
const USE_CANDIDATE: u16 = 0x0025;
const ICE_CONTROLLED: u16 = 0x8029;
const ICE_CONTROLLING: u16 = 0x802A;
/// Pace of new checks (RFC 8445's Ta).
const PACE: Duration = Duration::from_millis(20);
/// First retransmission timeout of a check; doubled each time.
const RTO: Duration = Duration::from_millis(100);
/// Transmissions of one check before its pair fails.
const TRIES: u32 = 6;
/// Most pairs checked (candidate lists are capped on the wire, this bounds the product).
const MAX_PAIRS: usize = 64;

/// Which side nominates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Controlling,
    Controlled,
}

/// Short-term credentials of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ufrag: String,
    pub pwd: String,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `data` from the base `local` (the host socket, or through the TURN allocation for a
    /// relayed base) to `to`.
    Transmit { local: Candidate, to: SocketAddr, data: Vec<u8> },
    /// The media path: send from `local` to `remote` from now on.
    Selected { local: Candidate, remote: SocketAddr },
    /// Every pair failed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InProgress { tid: [u8; 12], tries: u32, next: Instant },
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Pair {
    local: Candidate,
    remote: SocketAddr,
    priority: u64,
    state: State,
    /// The pair has been nominated with USE-CANDIDATE (controlling: sent; controlled: received).
    nominated: bool,
}

/// The checks between us and one remote peer.
pub struct Checks {
    role: Role,
    tie: u64,
    ours: Credentials,
    theirs: Credentials,
    pairs: Vec<Pair>,
    next_check: Instant,
    selected: Option<usize>,
    failed: bool,
    /// Controlling side: the USE-CANDIDATE request in flight (transaction, sends, next resend),
    /// resent until answered so a lost one does not leave the other side undecided.
    nomination: Option<([u8; 12], u32, Instant)>,
}

fn type_pref(kind: CandidateKind) -> u32 {
    match kind {
        CandidateKind::Host => 126,
        CandidateKind::ServerReflexive => 100,
        CandidateKind::Relayed => 0,
    }
}

/// A candidate's priority (RFC 8445 §5.1.2.1, one component).
pub fn priority(kind: CandidateKind) -> u32 {
    (type_pref(kind) << 24) | (65535 << 8) | 255
}

/// A pair's priority (RFC 8445 §6.1.2.3): G is the controlling side's candidate priority.
fn pair_priority(g: u32, d: u32) -> u64 {
    let (g, d) = (g as u64, d as u64);
    (1 << 32) * g.min(d) + 2 * g.max(d) + (g > d) as u64
}

/// Whether a check from base `l` to `r` can work at all: a relay on the public side cannot
/// reach a private, loopback or link-local host address (coturn even tears the session down
/// on the send error), nor is hairpinning through the same relay useful next to the pairs
/// that use one relay.
fn relay_can_reach(l: &Candidate, r: &Candidate) -> bool {
    if l.kind != CandidateKind::Relayed {
        return true;
    }
    match r.kind {
        CandidateKind::Host => !crate::turn::peers::is_restricted(r.addr.ip()),
        CandidateKind::Relayed => r.addr.ip() != l.addr.ip(),
        CandidateKind::ServerReflexive => true,
    }
}

impl Checks {
    /// Pairs our `bases` (host and relayed candidates: server-reflexive ones share the host
    /// socket) with their `remotes`, same address family only, leaving out what a relay cannot
    /// reach.
    pub fn new(
        role: Role,
        ours: Credentials,
        theirs: Credentials,
        bases: &[Candidate],
        remotes: &[Candidate],
        now: Instant,
    ) -> Checks {
        let mut pairs = Vec::new();
        for l in bases.iter().filter(|c| c.kind != CandidateKind::ServerReflexive) {
            for r in remotes {
                if l.addr.is_ipv4() != r.addr.is_ipv4() || pairs.len() >= MAX_PAIRS || !relay_can_reach(l, r)
                {
                    continue;
                }
                if pairs.iter().any(|p: &Pair| p.local == *l && p.remote == r.addr) {
                    continue;
                }
                let (lp, rp) = (priority(l.kind), priority(r.kind));
                let priority = match role {
                    Role::Controlling => pair_priority(lp, rp),
                    Role::Controlled => pair_priority(rp, lp),
                };
                pairs.push(Pair {
                    local: *l,
                    remote: r.addr,
                    priority,
                    state: State::Waiting,
                    nominated: false,
                });
            }
        }
        pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
        Checks {
            role,
            tie: rand::random(),
            ours,
            theirs,
            pairs,
            next_check: now,
            selected: None,
            failed: false,
            nomination: None,
        }
    }

    /// The selected pair, once there is one.
    pub fn selected(&self) -> Option<(Candidate, SocketAddr)> {
        self.selected.and_then(|i| self.pairs.get(i)).map(|p| (p.local, p.remote))
    }

    /// Whether every pair failed.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// When [`Checks::poll`] next has something to do.
    pub fn next_timeout(&self) -> Option<Instant> {
        if self.failed || (self.selected.is_some() && self.role == Role::Controlled) {
            return None;
        }
        if self.selected.is_some() {
            return self.nomination.map(|(_, _, next)| next);
        }
        let retransmit = self
            .pairs
            .iter()
            .filter_map(|p| if let State::InProgress { next, .. } = p.state { Some(next) } else { None })
            .min();
        let fresh = self.pairs.iter().any(|p| p.state == State::Waiting).then_some(self.next_check);
        retransmit.into_iter().chain(fresh).min()
    }

    fn request(&self, pair: &Pair, nominate: bool) -> Message {
        let mut m = Message::new(Class::Request, method::BINDING);
        m.attrs.push(Attr::Username(format!("{}:{}", self.theirs.ufrag, self.ours.ufrag)));
        let prflx = priority(CandidateKind::ServerReflexive);
        m.attrs.push(Attr::Other(PRIORITY, prflx.to_be_bytes().to_vec()));
        let role = if self.role == Role::Controlling { ICE_CONTROLLING } else { ICE_CONTROLLED };
        m.attrs.push(Attr::Other(role, self.tie.to_be_bytes().to_vec()));
        if nominate || pair.nominated {
            m.attrs.push(Attr::Other(USE_CANDIDATE, Vec::new()));
        }
        m
    }

    fn send_check(&mut self, i: usize, now: Instant, out: &mut Vec<Output>) {
        let Some(pair) = self.pairs.get(i) else { return };
        let msg = self.request(pair, false);
        let tries = match pair.state {
            State::InProgress { tries, .. } => tries + 1,
            _ => 1,
        };
        let data = msg.encode(Some((self.theirs.pwd.as_bytes(), false)), true);
        out.push(Output::Transmit { local: pair.local, to: pair.remote, data });
        let next = now + RTO * 2u32.pow(tries.saturating_sub(1).min(6));
        if let Some(p) = self.pairs.get_mut(i) {
            p.state = State::InProgress { tid: msg.tid, tries, next };
        }
    }

    /// Runs the timers: the next waiting pair every 20 ms, retransmissions, failures.
    pub fn poll(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        for i in 0..self.pairs.len() {
            if let Some(Pair { state: State::InProgress { tries, next, .. }, .. }) =
                self.pairs.get(i).cloned()
                && next <= now
            {
                if tries >= TRIES {
                    self.pairs[i].state = State::Failed;
                } else {
                    self.send_check(i, now, &mut out);
                }
            }
        }
        if now >= self.next_check
            && let Some(i) = self.pairs.iter().position(|p| p.state == State::Waiting)
        {
            self.send_check(i, now, &mut out);
            self.next_check = now + PACE;
        }
        self.nominate(now, &mut out);
        if let (Some((_, tries, next)), Some((local, remote))) = (self.nomination, self.selected())
            && next <= now
        {
            if tries >= TRIES {
                self.nomination = None;
            } else {
                self.send_nomination(local, remote, tries + 1, now, &mut out);
            }
        }
        if self.selected.is_none() && self.pairs.iter().all(|p| p.state == State::Failed) {
            self.failed = true;
            out.push(Output::Failed);
        }
        out
    }

    /// Controlling side: selects the best succeeded pair once no better pair can still succeed,
    /// and nominates it with USE-CANDIDATE.
    fn send_nomination(
        &mut self,
        local: Candidate,
        remote: SocketAddr,
        tries: u32,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(pair) = self.selected.and_then(|i| self.pairs.get(i)) else { return };
        let msg = self.request(pair, true);
        let data = msg.encode(Some((self.theirs.pwd.as_bytes(), false)), true);
        out.push(Output::Transmit { local, to: remote, data });
        self.nomination = Some((msg.tid, tries, now + RTO * 2u32.pow(tries.saturating_sub(1).min(6))));
    }

    fn nominate(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.role != Role::Controlling || self.selected.is_some() {
            return;
        }
        for i in 0..self.pairs.len() {
            match self.pairs[i].state {
                State::Failed => continue,
                State::Succeeded => {
                    self.selected = Some(i);
                    self.pairs[i].nominated = true;
                    let (local, remote) = (self.pairs[i].local, self.pairs[i].remote);
                    self.send_nomination(local, remote, 1, now, out);
                    out.push(Output::Selected { local, remote });
                    return;
                }
                // A better pair is still being checked: wait for it.
                State::Waiting | State::InProgress { .. } => return,
            }
        }
    }

    /// A STUN datagram arrived on base `local` from `from`. Answers checks (and checks back on
    /// the same pair), takes responses to ours, and returns what to send. Anything that is not
    /// a check with our credentials is ignored.
    pub fn receive(&mut self, local: Candidate, from: SocketAddr, raw: &[u8], now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        let Ok(msg) = Message::decode(raw) else { return out };
        match msg.class {
            Class::Request if msg.method == method::BINDING => {
                self.on_request(local, from, &msg, raw, now, &mut out)
            }
            Class::Success | Class::Error => self.on_response(from, &msg, raw),
            _ => {}
        }
        self.nominate(now, &mut out);
        out
    }

    fn on_request(
        &mut self,
        local: Candidate,
        from: SocketAddr,
        msg: &Message,
        raw: &[u8],
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let expected = format!("{}:{}", self.ours.ufrag, self.theirs.ufrag);
        let Some(Attr::Username(user)) = msg.get(code::USERNAME) else { return };
        if *user != expected || !msg.verify(raw, self.ours.pwd.as_bytes()) {
            return;
        }
        let mut r = msg.reply(Class::Success);
        r.attrs.push(Attr::XorMappedAddress(from));
        out.push(Output::Transmit {
            local,
            to: from,
            data: r.encode(Some((self.ours.pwd.as_bytes(), false)), true),
        });
        let i = match self.pairs.iter().position(|p| p.local == local && p.remote == from) {
            Some(i) => i,
            None if self.pairs.len() < MAX_PAIRS => {
                // A peer-reflexive remote: the NAT showed us an address the SNs did not.
                let prio = pair_priority(priority(CandidateKind::ServerReflexive), priority(local.kind));
                self.pairs.push(Pair {
                    local,
                    remote: from,
                    priority: prio,
                    state: State::Waiting,
                    nominated: false,
                });
                self.pairs.len() - 1
            }
            None => return,
        };
        let use_candidate = msg.attrs.iter().any(|a| matches!(a, Attr::Other(USE_CANDIDATE, _)));
        if self.role == Role::Controlled && use_candidate && self.selected.is_none() {
            self.pairs[i].nominated = true;
            self.selected = Some(i);
            out.push(Output::Selected { local, remote: from });
        }
        // Triggered check: answer their packet with ours on the same pair (hole punching).
        if matches!(self.pairs[i].state, State::Waiting | State::Failed) {
            self.pairs[i].state = State::Waiting;
            self.send_check(i, now, out);
        }
    }

    fn on_response(&mut self, from: SocketAddr, msg: &Message, raw: &[u8]) {
        if self.nomination.is_some_and(|(tid, _, _)| tid == msg.tid)
            && msg.verify(raw, self.theirs.pwd.as_bytes())
        {
            self.nomination = None;
            return;
        }
        let Some(i) = self
            .pairs
            .iter()
            .position(|p| matches!(p.state, State::InProgress { tid, .. } if tid == msg.tid))
        else {
            return;
        };
        // RFC 8445 §7.2.5.2.1: the response must come from where the request went.
        if self.pairs[i].remote != from || !msg.verify(raw, self.theirs.pwd.as_bytes()) {
            return;
        }
        self.pairs[i].state = if msg.class == Class::Success { State::Succeeded } else { State::Failed };
    }
}
