//! The supernode's directory core (sans-IO): user name → verifier, candidates and online status.
//! It takes a datagram, its source and `now` and returns the answer. A name is bound by its
//! first registration (salt and StoredKey, see [`super::auth`]); every later registration must
//! prove the password against a nonce that is bound to the source address and expires. Caps:
//! names per source IP, online entries in all, and a token bucket per source IP for the
//! unauthenticated answers (challenges, lookups, errors).

use super::auth;
use super::sealing::SnKey;
use super::wire::{self, Candidate, Msg, SealedVerifier, Verifier};
use appnet_netkit::rate::TokenBucket;
use ring::hmac;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The directory's limits.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// How long a registration keeps a user online without a refresh.
    pub entry_lifetime: Duration,
    /// How long a challenge nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Most names one source IP may bind.
    pub names_per_ip: usize,
    /// Most names bound in all.
    pub max_names: usize,
    /// Unauthenticated answers per second per source IP (burst twice that).
    pub requests_per_sec: u32,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            entry_lifetime: Duration::from_secs(120),
            nonce_lifetime: Duration::from_secs(30),
            names_per_ip: 8,
            max_names: 100_000,
            requests_per_sec: 20,
        }
    }
}

struct Name {
    verifier: Verifier,
    bound_by: IpAddr,
    online: Option<Online>,
}

struct Online {
    /// Where the registration came from: forwarded payloads go there.
    addr: SocketAddr,
    /// The SN the peer is attached to, when it is another SN of the overlay.
    via: Option<SocketAddr>,
    candidates: Vec<Candidate>,
    expires: Instant,
    /// Since when the user has been registered from `addr` without a break (its uptime, for
    /// promotion; a copy from the other owner starts counting when it arrives).
    since: Instant,
}

/// A live registration, as the promotion policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEntry {
    pub addr: SocketAddr,
    pub candidates: Vec<Candidate>,
    pub since: Instant,
}

/// A directory entry as replicated between the SNs that own it: the credentials (never the
/// password) and, when online, where the user is and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub verifier: Verifier,
    pub bound_by: IpAddr,
    pub online: Option<ReplicaOnline>,
}

/// The online part of a [`Replica`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOnline {
    /// The peer's registered address.
    pub addr: SocketAddr,
    /// The SN it is attached to (None: the SN holding the entry).
    pub via: Option<SocketAddr>,
    pub candidates: Vec<Candidate>,
    /// Seconds left before it goes offline.
    pub secs_left: u32,
}

/// Where a user can be reached, for forwarding an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// No such name here.
    Unknown,
    /// Bound, but no live registration.
    Offline,
    /// Online at `addr`, attached to `via` (None: here).
    Online { addr: SocketAddr, via: Option<SocketAddr> },
}

/// Most sources tracked by the rate limiter; refilled ones are forgotten first.
const MAX_SOURCES: usize = 65_536;

/// One SN's share of the directory.
pub struct Directory {
    cfg: DirectoryConfig,
    names: HashMap<String, Name>,
    bound_per_ip: HashMap<IpAddr, usize>,
    limits: HashMap<IpAddr, TokenBucket>,
    nonce_key: hmac::Key,
    /// Our long-term X25519 key: first registrations seal their verifier to it.
    sn_key: SnKey,
    epoch: Instant,
}

fn error(code: u16, reason: &str) -> Msg {
    Msg::Error { code, reason: reason.into() }
}

impl Directory {
    /// An empty directory; `now` anchors nonce timestamps.
    pub fn new(cfg: DirectoryConfig, now: Instant) -> Directory {
        let secret: [u8; 32] = rand::random();
        Directory {
            cfg,
            names: HashMap::new(),
            bound_per_ip: HashMap::new(),
            limits: HashMap::new(),
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            sn_key: SnKey::from_seed(rand::random())
                .unwrap_or_else(|| unreachable!("X25519 takes any 32-byte seed")),
            epoch: now,
        }
    }

    /// Uses `key` as this SN's long-term key (one kept across restarts) instead of a fresh one.
    pub fn with_key(mut self, key: SnKey) -> Directory {
        self.sn_key = key;
        self
    }

    /// The public half of our long-term key, as Challenges advertise it.
    pub fn sn_key(&self) -> [u8; 32] {
        self.sn_key.public()
    }

    /// How many users are online.
    pub fn online(&self) -> usize {
        self.names.values().filter(|n| n.online.is_some()).count()
    }

    fn nonce_tag(&self, secs: u64, from: SocketAddr, user: &str) -> [u8; 8] {
        let mut ctx = hmac::Context::with_key(&self.nonce_key);
        ctx.update(&secs.to_be_bytes());
        ctx.update(from.to_string().as_bytes());
        ctx.update(user.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&ctx.sign().as_ref()[..8]);
        tag
    }

    /// A nonce for `user` at `from`: seconds since the epoch and an HMAC over them, the address
    /// and the name, so it is stateless and useless elsewhere.
    fn nonce(&self, from: SocketAddr, user: &str, now: Instant) -> [u8; 16] {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&secs.to_be_bytes());
        n[8..].copy_from_slice(&self.nonce_tag(secs, from, user));
        n
    }

    fn nonce_fresh(&self, nonce: &[u8; 16], from: SocketAddr, user: &str, now: Instant) -> bool {
        let mut s = [0u8; 8];
        s.copy_from_slice(&nonce[..8]);
        let secs = u64::from_be_bytes(s);
        let tag = self.nonce_tag(secs, from, user);
        let same = tag.iter().zip(&nonce[8..]).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        let age = now.saturating_duration_since(self.epoch).as_secs().saturating_sub(secs);
        let not_future = secs <= now.saturating_duration_since(self.epoch).as_secs();
        same && not_future && age < self.cfg.nonce_lifetime.as_secs().max(1)
    }

    /// Takes a token from `ip`'s bucket for an unauthenticated answer.
    pub fn allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.cfg.requests_per_sec.max(1) as u64;
        if !self.limits.contains_key(&ip) && self.limits.len() >= MAX_SOURCES {
            self.limits.retain(|_, b| b.available(now) < b.burst());
            if self.limits.len() >= MAX_SOURCES {
                return false;
            }
        }
        self.limits.entry(ip).or_insert_with(|| TokenBucket::new(rate, rate * 2, now)).try_take(1, now)
    }

    /// Handles one datagram from `from`; returns the encoded answer to it, if any.
    /// Undecodable input gets nothing (a spoofed source must not get traffic from it).
    pub fn handle(&mut self, from: SocketAddr, raw: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.handle_all(from, raw, now).into_iter().find(|(to, _)| *to == from).map(|(_, d)| d)
    }

    /// Like [`Directory::handle`], with every datagram to send: the answer to `from`, and for a
    /// Forward the Deliver to the callee's registered address.
    pub fn handle_all(&mut self, from: SocketAddr, raw: &[u8], now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
        let Ok((tid, msg)) = wire::decode(raw) else { return Vec::new() };
        let mut out = Vec::new();
        let reply = match msg {
            Msg::Hello { user } => {
                if !self.allowed(from.ip(), now) {
                    return out;
                }
                let salt = self.names.get(&user).map(|n| n.verifier.salt);
                Msg::Challenge { nonce: self.nonce(from, &user, now), salt, sn_key: self.sn_key.public() }
            }
            // Alone, this SN is the only one a peer can attach to.
            Msg::Ping => {
                if !self.allowed(from.ip(), now) {
                    return out;
                }
                Msg::Pong { sns: Vec::new() }
            }
            Msg::Lookup { user } => {
                if !self.allowed(from.ip(), now) {
                    return out;
                }
                match self.names.get(&user) {
                    None => error(404, "No Such User"),
                    Some(n) => {
                        let live = n.online.as_ref().filter(|o| o.expires > now);
                        Msg::Found {
                            user,
                            online: live.is_some(),
                            candidates: live.map(|o| o.candidates.clone()).unwrap_or_default(),
                        }
                    }
                }
            }
            Msg::Register { user, proof, bind, candidates } => {
                let r = self.register(from, &user, &proof, bind, candidates, now);
                if matches!(r, Msg::Error { .. }) && !self.allowed(from.ip(), now) {
                    return out;
                }
                r
            }
            Msg::Forward { from: caller, to, payload } => {
                if !self.allowed(from.ip(), now) {
                    return out;
                }
                let live = |n: &Name| n.online.as_ref().filter(|o| o.expires > now).map(|o| o.addr);
                if self.names.get(&caller).and_then(live) != Some(from) {
                    error(403, "Register From This Address First")
                } else {
                    match self.names.get(&to).map(live) {
                        None => error(404, "No Such User"),
                        Some(None) => error(480, "Temporarily Unavailable"),
                        Some(Some(callee)) => {
                            // A fresh transaction id: the callee answers the caller, not the SN.
                            let deliver = Msg::Deliver { from: caller, payload };
                            out.push((callee, wire::encode(rand::random(), &deliver)));
                            Msg::Forwarded
                        }
                    }
                }
            }
            // Answers are for peers, not for SNs.
            Msg::Challenge { .. }
            | Msg::Registered { .. }
            | Msg::Found { .. }
            | Msg::Error { .. }
            | Msg::Deliver { .. }
            | Msg::Forwarded
            | Msg::Offer { .. }
            | Msg::Pong { .. }
            // Promotion needs the overlay: the node handles it.
            | Msg::Promote { .. }
            | Msg::Probe { .. }
            | Msg::ProbeAck { .. }
            | Msg::Promoted { .. } => return out,
        };
        out.insert(0, (from, wire::encode(tid, &reply)));
        out
    }

    fn register(
        &mut self,
        from: SocketAddr,
        user: &str,
        proof: &wire::Proof,
        sealed: Option<SealedVerifier>,
        candidates: Vec<Candidate>,
        now: Instant,
    ) -> Msg {
        if !self.nonce_fresh(&proof.nonce, from, user, now) {
            return error(438, "Stale Nonce");
        }
        let signed = wire::register_signed_part(user, sealed.as_ref(), &candidates);
        let bind = match sealed.as_ref().map(|s| self.sn_key.open(user, s)) {
            None => None,
            Some(Some(v)) => Some(v),
            Some(None) => return error(400, "Bad Verifier: not sealed to this supernode's key"),
        };
        let lifetime = self.cfg.entry_lifetime;
        let since = self
            .names
            .get(user)
            .and_then(|n| n.online.as_ref())
            .filter(|o| o.addr == from && o.expires > now)
            .map_or(now, |o| o.since);
        let online = Online { addr: from, via: None, candidates, expires: now + lifetime, since };
        if let Some(name) = self.names.get_mut(user) {
            if bind.as_ref().is_some_and(|b| *b != name.verifier) {
                return error(403, "Name Taken");
            }
            if !auth::check(&name.verifier.stored_key, &proof.nonce, &signed, &proof.proof) {
                return error(401, "Unauthorized");
            }
            name.online = Some(online);
            return Msg::Registered { lifetime: lifetime.as_secs() as u32 };
        }
        let Some(verifier) = bind else {
            return error(404, "No Such User: the first registration binds the name");
        };
        if !auth::check(&verifier.stored_key, &proof.nonce, &signed, &proof.proof) {
            return error(401, "Unauthorized");
        }
        let per_ip = self.bound_per_ip.get(&from.ip()).copied().unwrap_or(0);
        if per_ip >= self.cfg.names_per_ip {
            return error(429, "Too Many Names From This Address");
        }
        if self.names.len() >= self.cfg.max_names {
            return error(503, "Directory Full");
        }
        self.bound_per_ip.insert(from.ip(), per_ip + 1);
        self.names.insert(user.to_string(), Name { verifier, bound_by: from.ip(), online: Some(online) });
        Msg::Registered { lifetime: lifetime.as_secs() as u32 }
    }

    /// Marks users whose registration lapsed offline and forgets refilled rate buckets.
    pub fn expire(&mut self, now: Instant) {
        for n in self.names.values_mut() {
            if n.online.as_ref().is_some_and(|o| o.expires <= now) {
                n.online = None;
            }
        }
        self.limits.retain(|_, b| b.available(now) < b.burst());
    }

    /// Where `user` can be reached now.
    pub fn reach(&self, user: &str, now: Instant) -> Reach {
        match self.names.get(user) {
            None => Reach::Unknown,
            Some(n) => match n.online.as_ref().filter(|o| o.expires > now) {
                None => Reach::Offline,
                Some(o) => Reach::Online { addr: o.addr, via: o.via },
            },
        }
    }

    /// Checks a proof of `user`'s password made for a nonce this SN gave `from`, over `signed`;
    /// returns the user's StoredKey, or the refusal's code and reason.
    pub fn check_proof(
        &self,
        user: &str,
        from: SocketAddr,
        proof: &wire::Proof,
        signed: &[u8],
        now: Instant,
    ) -> Result<[u8; 32], (u16, &'static str)> {
        if !self.nonce_fresh(&proof.nonce, from, user, now) {
            return Err((438, "Stale Nonce"));
        }
        let n = self.names.get(user).ok_or((404, "No Such User"))?;
        if !auth::check(&n.verifier.stored_key, &proof.nonce, signed, &proof.proof) {
            return Err((401, "Unauthorized"));
        }
        Ok(n.verifier.stored_key)
    }

    /// `user`'s live registration, if any.
    pub fn live(&self, user: &str, now: Instant) -> Option<LiveEntry> {
        let o = self.names.get(user)?.online.as_ref().filter(|o| o.expires > now)?;
        Some(LiveEntry { addr: o.addr, candidates: o.candidates.clone(), since: o.since })
    }

    /// Records that `user`'s live registration came through SN `via` (None: directly).
    pub fn set_via(&mut self, user: &str, via: Option<SocketAddr>) {
        if let Some(o) = self.names.get_mut(user).and_then(|n| n.online.as_mut()) {
            o.via = via;
        }
    }

    /// The entry to copy to the other owner.
    pub fn replica(&self, user: &str, now: Instant) -> Option<Replica> {
        let n = self.names.get(user)?;
        let online = n.online.as_ref().filter(|o| o.expires > now).map(|o| ReplicaOnline {
            addr: o.addr,
            via: o.via,
            candidates: o.candidates.clone(),
            secs_left: o.expires.saturating_duration_since(now).as_secs().min(u32::MAX as u64) as u32,
        });
        Some(Replica { verifier: n.verifier.clone(), bound_by: n.bound_by, online })
    }

    /// Stores a copy sent by the other owner. A name already bound here to other credentials
    /// keeps them (the first binding wins); a full directory refuses new names.
    pub fn put_replica(&mut self, user: &str, r: Replica, now: Instant) -> bool {
        let online = r.online.map(|o| Online {
            addr: o.addr,
            via: o.via,
            candidates: o.candidates,
            expires: now + Duration::from_secs(o.secs_left as u64).min(self.cfg.entry_lifetime),
            since: now,
        });
        let full = self.names.len() >= self.cfg.max_names;
        match self.names.get_mut(user) {
            Some(n) if n.verifier != r.verifier => false,
            Some(n) => {
                if let Some(mut o) = online {
                    if let Some(old) = n.online.as_ref().filter(|old| old.addr == o.addr && old.expires > now)
                    {
                        o.since = old.since;
                    }
                    n.online = Some(o);
                }
                true
            }
            None if full || !wire::valid_user(user) => false,
            None => {
                self.names
                    .insert(user.to_string(), Name { verifier: r.verifier, bound_by: r.bound_by, online });
                true
            }
        }
    }

    /// Every bound name (for re-replication when the ring changes).
    pub fn users(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// The source IP that bound `user`, for logs.
    pub fn bound_by(&self, user: &str) -> Option<IpAddr> {
        self.names.get(user).map(|n| n.bound_by)
    }
}
