//! A supernode's sans-IO core when it is part of an overlay: the [`Directory`] share it owns,
//! the [`Overlay`] membership and the consistent-hashing [`Placement`] built from it. A peer's
//! request about a user (Hello, Register, Lookup, the caller of a Forward) is handled by the
//! user's first live owner: an SN that does not own it relays the datagram there and sends the
//! answer back (one hop). A registration is copied to the other owner (salt and stored key
//! included, so either can check later proofs). An offer goes from the caller's SN to the
//! caller's owner (which checks the caller's registered address), to the callee's owner, to the
//! SN the callee is attached to, to the callee: at most three SN hops, never a loop. When the
//! ring changes, every SN copies the entries it holds to their owners again.

use super::directory::{Directory, Reach, Replica};
use super::overlay::{self, Changes, Overlay, OverlayMsg};
use super::placement::Placement;
use super::promotion::{self, Grant, PromotionPolicy};
use super::wire::{self, CandidateKind, Msg};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most promotions waiting for their probe's answer.
const MAX_PENDING: usize = 64;
/// Most grants one SN keeps track of (to withdraw them).
const MAX_ISSUED: usize = 64;
/// How long a candidate has to answer the reachability probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A promotion waiting for the candidate's SN port to answer our probe.
struct Pending {
    user: String,
    client: SocketAddr,
    reply_to: SocketAddr,
    tid: u32,
    public_key: [u8; 32],
    stored_key: [u8; 32],
    sn: SocketAddr,
    deadline: Instant,
}

/// A grant this SN issued: withdrawn (revocation gossip) when its peer goes offline or moves,
/// or the promoted SN goes silent.
struct Issued {
    user: String,
    client: SocketAddr,
    until_ms: u64,
}

/// Datagrams to send: (destination, bytes).
pub type Out = Vec<(SocketAddr, Vec<u8>)>;

/// One supernode: directory, overlay and ring.
pub struct Node {
    directory: Directory,
    overlay: Overlay,
    ring: Placement,
    policy: Option<PromotionPolicy>,
    pending: HashMap<[u8; 16], Pending>,
    issued: HashMap<SocketAddr, Issued>,
    /// Our own grant was withdrawn by the overlay.
    revoked: bool,
    /// A promoted SN's user's StoredKey: it answers the probes of its grant's renewals.
    probe_key: Option<[u8; 32]>,
}

fn error(tid: u32, code: u16, reason: &str) -> Vec<u8> {
    wire::encode(tid, &Msg::Error { code, reason: reason.into() })
}

impl Node {
    /// A node from its directory and overlay (the ring starts with the members known).
    pub fn new(directory: Directory, overlay: Overlay) -> Node {
        let ring = Placement::new(overlay.members());
        Node {
            directory,
            overlay,
            ring,
            policy: Some(PromotionPolicy::default()),
            pending: HashMap::new(),
            issued: HashMap::new(),
            revoked: false,
            probe_key: None,
        }
    }

    /// Lets this (promoted) SN answer probes for its user (renewals of its grant).
    pub fn with_probe_key(mut self, key: [u8; 32]) -> Node {
        self.probe_key = Some(key);
        self
    }

    /// Sets when this SN promotes peers (None: never). Only an SN holding the overlay secret
    /// promotes.
    pub fn with_policy(mut self, policy: Option<PromotionPolicy>) -> Node {
        self.policy = policy;
        self
    }

    /// Installs renewed grant keys (a promoted SN).
    pub fn renew(&mut self, grant: Grant) {
        self.overlay.grant(grant.keys);
    }

    /// Whether this promoted SN must stop: its keys ran out or its grant was withdrawn.
    pub fn retired(&self, now: Instant) -> bool {
        self.revoked || self.overlay.expired(now)
    }

    /// The directory share held here.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The live SNs, this one included.
    pub fn members(&self) -> Vec<SocketAddr> {
        self.overlay.members()
    }

    fn me(&self) -> SocketAddr {
        self.overlay.me()
    }

    /// The SNs that own `user`'s entry; just this one when the overlay is off.
    fn owners(&self, user: &str) -> Vec<SocketAddr> {
        let owners = self.ring.owners(user);
        if !self.overlay.enabled() || owners.is_empty() { vec![self.me()] } else { owners }
    }

    fn seal(&self, to: SocketAddr, msg: &OverlayMsg, now: Instant, out: &mut Out) {
        if let Some(d) = self.overlay.seal(msg, now) {
            out.push((to, d));
        }
    }

    /// Handles one datagram from `from` (a peer, or another SN when it starts with `SO`).
    pub fn handle(&mut self, from: SocketAddr, raw: &[u8], now: Instant) -> Out {
        let mut out = Out::new();
        if overlay::is_overlay(raw) {
            let Ok(msg) = self.overlay.open(from, raw, now) else { return out };
            match msg {
                OverlayMsg::Members { .. } => {
                    let mut changes = Changes::default();
                    out = self.overlay.handle(from, msg, now, &mut changes);
                    self.apply(&changes, now, &mut out);
                }
                OverlayMsg::Relay { client, raw } => self.peer(client, &raw, Some(from), now, &mut out),
                OverlayMsg::Reply { client, raw } => out.push((client, raw)),
                OverlayMsg::Push { to, raw } => out.push((to, raw)),
                OverlayMsg::Store { user, mut replica } => {
                    if let Some(o) = replica.online.as_mut()
                        && o.via == Some(self.me())
                    {
                        o.via = None;
                    }
                    if !self.directory.put_replica(&user, replica, now) {
                        tracing::debug!(%from, user, "replica refused (name bound otherwise, or full)");
                    }
                }
                OverlayMsg::Call { client, reply_to, tid, from: caller, to, payload } => {
                    self.deliver(client, reply_to, tid, caller, &to, payload, now, &mut out)
                }
                OverlayMsg::Revoke { sn, until_ms } => {
                    if sn == self.me() {
                        tracing::warn!(%from, "our supernode grant was withdrawn");
                        self.revoked = true;
                    } else {
                        // Never longer than the two epochs a grant can hold keys for.
                        let cap = self.overlay.unix_ms_at(now) + 2 * self.overlay.epoch(now).1 as u64 * 1000;
                        let mut changes = Changes::default();
                        self.overlay.revoke(sn, until_ms.min(cap), &mut changes);
                        self.issued.remove(&sn);
                        self.apply(&changes, now, &mut out);
                    }
                }
            }
            return out;
        }
        let Ok((tid, msg)) = wire::decode(raw) else { return out };
        if matches!(msg, Msg::Ping) {
            // The keepalive is answered here, with the SNs the peer can fail over to.
            if self.directory.allowed(from.ip(), now) {
                let mut sns = self.members();
                sns.truncate(wire::MAX_SNS);
                out.push((from, wire::encode(tid, &Msg::Pong { sns })));
            }
            return out;
        }
        match &msg {
            // A promoted SN answers the probes of its grant's renewals, for its user only.
            Msg::Probe { nonce } => {
                if let Some(key) = self.probe_key
                    && self.directory.allowed(from.ip(), now)
                {
                    let tag = promotion::probe_tag(&key, nonce);
                    out.push((from, wire::encode(tid, &Msg::ProbeAck { nonce: *nonce, tag })));
                }
                return out;
            }
            Msg::ProbeAck { nonce, tag } => {
                self.probe_answered(from, *nonce, tag, now, &mut out);
                return out;
            }
            _ => {}
        }
        let user = match &msg {
            Msg::Hello { user }
            | Msg::Lookup { user }
            | Msg::Register { user, .. }
            | Msg::Promote { user, .. } => user,
            Msg::Forward { from: caller, .. } => caller,
            _ => return out,
        };
        let owners = self.owners(user);
        match owners.first() {
            Some(owner) if !owners.contains(&self.me()) => {
                if self.directory.allowed(from.ip(), now) {
                    self.seal(*owner, &OverlayMsg::Relay { client: from, raw: raw.to_vec() }, now, &mut out);
                }
            }
            _ => self.peer(from, raw, None, now, &mut out),
        }
        out
    }

    /// A peer's request for a user owned here; `via` is the SN it came through (None: direct).
    fn peer(&mut self, client: SocketAddr, raw: &[u8], via: Option<SocketAddr>, now: Instant, out: &mut Out) {
        let Ok((tid, msg)) = wire::decode(raw) else { return };
        let reply_to = via.unwrap_or(self.me());
        match msg {
            Msg::Forward { from: caller, to, payload } => {
                if !self.directory.allowed(client.ip(), now) {
                    return;
                }
                if !matches!(self.directory.reach(&caller, now), Reach::Online { addr, .. } if addr == client)
                {
                    self.answer(
                        client,
                        reply_to,
                        error(tid, 403, "Register From This Address First"),
                        now,
                        out,
                    );
                    return;
                }
                let owners = self.owners(&to);
                match owners.first() {
                    Some(owner) if !owners.contains(&self.me()) => {
                        let call = OverlayMsg::Call { client, reply_to, tid, from: caller, to, payload };
                        self.seal(*owner, &call, now, out);
                    }
                    _ => self.deliver(client, reply_to, tid, caller, &to, payload, now, out),
                }
            }
            Msg::Promote { user, sn, public_key, proof } => {
                if !self.directory.allowed(client.ip(), now) {
                    return;
                }
                match self.promotion_verdict(client, &user, sn, &public_key, &proof, now) {
                    Err((code, reason)) => self.answer(client, reply_to, error(tid, code, reason), now, out),
                    Ok(stored_key) => {
                        let nonce: [u8; 16] = rand::random();
                        tracing::info!(%user, %sn, "promotion: probing the candidate's SN port");
                        let deadline = now + PROBE_TIMEOUT;
                        let p = Pending { user, client, reply_to, tid, public_key, stored_key, sn, deadline };
                        self.pending.insert(nonce, p);
                        out.push((sn, wire::encode(rand::random(), &Msg::Probe { nonce })));
                    }
                }
            }
            msg => {
                let registered = match &msg {
                    Msg::Register { user, .. } => Some(user.clone()),
                    _ => None,
                };
                for (to, d) in self.directory.handle_all(client, raw, now) {
                    if let (Some(user), Ok((_, Msg::Registered { .. }))) = (&registered, wire::decode(&d)) {
                        self.directory.set_via(user, via);
                        self.replicate(user, now, out);
                    }
                    self.answer(to, reply_to, d, now, out);
                }
            }
        }
    }

    /// Whether `user`, asking from `client`, may become an SN at `sn` (before the probe): its
    /// StoredKey when so, else the refusal.
    fn promotion_verdict(
        &self,
        client: SocketAddr,
        user: &str,
        sn: SocketAddr,
        public_key: &[u8; 32],
        proof: &wire::Proof,
        now: Instant,
    ) -> Result<[u8; 32], (u16, &'static str)> {
        let Some(policy) = self.policy.as_ref().filter(|_| self.overlay.is_full()) else {
            return Err((403, "This Supernode Does Not Promote"));
        };
        let signed = wire::promote_signed_part(user, sn, public_key);
        let stored_key = self.directory.check_proof(user, client, proof, &signed, now)?;
        let live = self.directory.live(user, now).ok_or((403, "Register First"))?;
        if live.addr != client {
            return Err((403, "Register From This Address First"));
        }
        // This SN sees the peer's address itself (what STUN would tell it): behind a NAT it
        // differs from every host candidate the peer registered.
        let public = live.candidates.iter().any(|c| c.kind == CandidateKind::Host && c.addr == client);
        if !public || sn.ip() != client.ip() || sn == client {
            return Err((403, "Not A Public Address"));
        }
        if now.saturating_duration_since(live.since) < policy.min_uptime {
            return Err((403, "Uptime Too Short"));
        }
        if self.overlay.is_revoked(sn, now) {
            return Err((403, "Grant Withdrawn"));
        }
        // A member asking again renews its keys (whoever granted them: the user's owners change
        // with the ring); the probe's tag shows the SN there is this user's.
        let renewal = self.overlay.is_member(sn)
            || self.issued.get(&sn).is_some_and(|g| g.user == user && g.client == client);
        if !renewal
            && (sn == self.me()
                || self.members().len() >= policy.target_supernodes
                || self.issued.len() >= MAX_ISSUED)
        {
            return Err((409, "Enough Supernodes"));
        }
        if self.pending.len() >= MAX_PENDING {
            return Err((503, "Busy"));
        }
        Ok(stored_key)
    }

    /// The candidate answered our probe from its SN port: hand it the grant, sealed.
    fn probe_answered(
        &mut self,
        from: SocketAddr,
        nonce: [u8; 16],
        tag: &[u8; 32],
        now: Instant,
        out: &mut Out,
    ) {
        if !self.pending.get(&nonce).is_some_and(|p| {
            p.sn == from && p.deadline >= now && promotion::probe_tag_ok(&p.stored_key, &nonce, tag)
        }) {
            return;
        }
        let Some(p) = self.pending.remove(&nonce) else { return };
        let (epoch, epoch_secs) = self.overlay.epoch(now);
        let keys =
            [epoch, epoch + 1].into_iter().filter_map(|e| Some((e, self.overlay.epoch_key(e)?))).collect();
        let grant = Grant { epoch_secs, keys, members: self.members() };
        let until_ms = grant.expires_unix().saturating_mul(1000);
        let answer = match promotion::seal_grant(&p.public_key, &p.stored_key, &p.user, &grant) {
            Some((public_key, sealed)) => {
                tracing::info!(user = %p.user, sn = %p.sn, "promoted to supernode");
                self.issued.insert(p.sn, Issued { user: p.user.clone(), client: p.client, until_ms });
                wire::encode(p.tid, &Msg::Promoted { public_key, sealed })
            }
            None => error(p.tid, 500, "Key Agreement Failed"),
        };
        self.answer(p.client, p.reply_to, answer, now, out);
    }

    /// Probes gone unanswered are refused; grants whose peer went offline or moved, or whose
    /// SN went silent, are withdrawn from every member.
    fn promotions(&mut self, died: &[SocketAddr], now: Instant, out: &mut Out) {
        let late: Vec<[u8; 16]> =
            self.pending.iter().filter(|(_, p)| p.deadline < now).map(|(n, _)| *n).collect();
        for nonce in late {
            if let Some(p) = self.pending.remove(&nonce) {
                let refusal = error(p.tid, 403, "Not Reachable: the probe of your SN port went unanswered");
                self.answer(p.client, p.reply_to, refusal, now, out);
            }
        }
        let now_ms = self.overlay.unix_ms_at(now);
        self.issued.retain(|_, g| g.until_ms > now_ms);
        // Whether the user is still online from where it asked is known only while this SN is
        // one of the entry's owners; otherwise expiry (and the owner refusing renewal) ends it.
        let withdraw: Vec<(SocketAddr, u64)> = self
            .issued
            .iter()
            .filter(|(sn, g)| {
                died.contains(sn)
                    || (self.owners(&g.user).contains(&self.me())
                        && !matches!(self.directory.reach(&g.user, now), Reach::Online { addr, .. } if addr == g.client))
            })
            .map(|(sn, g)| (*sn, g.until_ms))
            .collect();
        for (sn, until_ms) in withdraw {
            tracing::info!(%sn, "supernode grant withdrawn");
            self.issued.remove(&sn);
            let mut changes = Changes::default();
            self.overlay.revoke(sn, until_ms, &mut changes);
            let msg = OverlayMsg::Revoke { sn, until_ms };
            for m in self.members().into_iter().filter(|m| *m != self.me()).chain([sn]) {
                self.seal(m, &msg, now, out);
            }
            self.apply(&changes, now, out);
        }
    }

    /// Sends `raw` to `client`, through `reply_to` when that is another SN.
    fn answer(&self, client: SocketAddr, reply_to: SocketAddr, raw: Vec<u8>, now: Instant, out: &mut Out) {
        if reply_to == self.me() {
            out.push((client, raw));
        } else {
            self.seal(reply_to, &OverlayMsg::Reply { client, raw }, now, out);
        }
    }

    /// At the callee's owner: hands the payload to the callee (through its SN) and answers the
    /// caller.
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        client: SocketAddr,
        reply_to: SocketAddr,
        tid: u32,
        caller: String,
        to: &str,
        payload: Vec<u8>,
        now: Instant,
        out: &mut Out,
    ) {
        let answer = match self.directory.reach(to, now) {
            Reach::Unknown => error(tid, 404, "No Such User"),
            Reach::Offline => error(tid, 480, "Temporarily Unavailable"),
            Reach::Online { addr, via } => {
                // A fresh transaction id: the callee answers the caller, not the SN.
                let deliver = wire::encode(rand::random(), &Msg::Deliver { from: caller, payload });
                match via {
                    Some(sn) if sn != self.me() => {
                        self.seal(sn, &OverlayMsg::Push { to: addr, raw: deliver }, now, out)
                    }
                    _ => out.push((addr, deliver)),
                }
                wire::encode(tid, &Msg::Forwarded)
            }
        };
        self.answer(client, reply_to, answer, now, out);
    }

    /// Copies `user`'s entry to the other owners.
    fn replicate(&self, user: &str, now: Instant, out: &mut Out) {
        if !self.overlay.enabled() {
            return;
        }
        let Some(mut replica) = self.directory.replica(user, now) else { return };
        if let Some(o) = replica.online.as_mut() {
            o.via.get_or_insert(self.me());
        }
        for owner in self.owners(user).into_iter().filter(|o| *o != self.me()) {
            let msg = OverlayMsg::Store { user: user.to_string(), replica: replica.clone() };
            self.seal(owner, &msg, now, out);
        }
    }

    /// Rebuilds the ring after a membership change and copies every entry held here to its
    /// owners (the survivor of a dead SN re-replicates to the next SN on the ring).
    fn apply(&mut self, changes: &Changes, now: Instant, out: &mut Out) {
        if changes.joined.is_empty() && changes.died.is_empty() {
            return;
        }
        for sn in &changes.joined {
            tracing::info!(%sn, "supernode joined the overlay");
        }
        for sn in &changes.died {
            tracing::info!(%sn, "supernode silent: dropped from the overlay");
        }
        self.ring = Placement::new(self.overlay.members());
        // Entries held here go to their owners, also when this SN is no longer one of them.
        for user in self.directory.users() {
            self.replicate(&user, now, out);
        }
    }

    /// Once a second: lapsed registrations go offline, the overlay gossips and drops silent SNs.
    pub fn tick(&mut self, now: Instant) -> Out {
        self.directory.expire(now);
        let mut changes = Changes::default();
        let mut out = self.overlay.tick(now, &mut changes);
        self.apply(&changes, now, &mut out);
        self.promotions(&changes.died, now, &mut out);
        out
    }

    /// A replica as the other owner would receive it (for tests and logs).
    pub fn replica(&self, user: &str, now: Instant) -> Option<Replica> {
        self.directory.replica(user, now)
    }
}
