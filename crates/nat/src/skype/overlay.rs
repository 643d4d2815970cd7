//! Supernode-to-supernode membership (sans-IO): which other SNs are alive. Every SN-SN datagram
//! is authenticated with the overlay's shared secret: `SO`, version, kind, a wall-clock
//! timestamp (ms since the Unix epoch) and a random nonce, the body, then HMAC-SHA256 over all of
//! it. A datagram outside the replay window (±30 s) or whose (sender, nonce) was already seen
//! inside it is dropped; an SN without a secret refuses every SN-SN datagram and sends none, so
//! it works alone as before. Members gossip their lists every few seconds (bounded); one not
//! heard from for a while is dropped.

use super::directory::{Replica, ReplicaOnline};
use super::sealing::{self, STORE_SEALED};
use super::wire::{self, MAX_DATAGRAM, put_addr};
use ring::hmac;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most other SNs one SN keeps (members and addresses learnt but not yet heard from).
pub const MAX_MEMBERS: usize = 32;
/// Shortest accepted overlay secret, in bytes.
pub const MIN_SECRET: usize = 16;
const MAGIC: &[u8; 2] = b"SO";
const VERSION: u8 = 1;
const TAG: usize = 32;
/// Largest SN-SN datagram (a relayed peer datagram and the envelope).
pub const MAX_OVERLAY_DATAGRAM: usize = 1500;
const HEADER: usize = 2 + 1 + 1 + 8 + 8;
/// Most (sender, nonce) pairs remembered for replay detection.
const MAX_SEEN: usize = 65_536;

/// Whether a datagram is meant for the overlay rather than the peer-facing directory.
pub fn is_overlay(raw: &[u8]) -> bool {
    raw.starts_with(MAGIC)
}

/// One SN-SN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayMsg {
    /// "I am alive, and these are the SNs I know alive": sent to every member each period.
    Members { sns: Vec<SocketAddr> },
    /// A peer's datagram (from `client`) handed to an SN that owns its user's entry.
    Relay { client: SocketAddr, raw: Vec<u8> },
    /// The owner's answer to a [`OverlayMsg::Relay`], for the attachment SN to send to `client`.
    Reply { client: SocketAddr, raw: Vec<u8> },
    /// A copy of `user`'s entry for the other owner.
    Store { user: String, replica: Replica },
    /// From the caller's owner (caller checked) to the callee's owner: hand `payload` from
    /// `from` to `to`, and send the caller's answer (transaction `tid`) through `reply_to`.
    Call { client: SocketAddr, reply_to: SocketAddr, tid: u32, from: String, to: String, payload: Vec<u8> },
    /// To the SN a peer is attached to: send `raw` to it.
    Push { to: SocketAddr, raw: Vec<u8> },
    /// A promoted SN's grant is withdrawn (its peer went offline or moved, or it went silent):
    /// refuse `sn` until `until_ms` (Unix ms), when its keys have expired anyway.
    Revoke { sn: SocketAddr, until_ms: u64 },
}

/// Why an overlay datagram is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverlayError {
    #[error("truncated or malformed")]
    Malformed,
    #[error("not an overlay message (magic or version)")]
    NotOverlay,
    #[error("bad HMAC")]
    BadTag,
    #[error("timestamp outside the replay window")]
    Stale,
    #[error("nonce already seen")]
    Replay,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("sender's grant was withdrawn")]
    Revoked,
}

/// An authenticated, timestamped encoding of `msg`.
pub fn seal(key: &hmac::Key, unix_ms: u64, nonce: u64, msg: &OverlayMsg) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(match msg {
        OverlayMsg::Members { .. } => 1,
        OverlayMsg::Relay { .. } => 2,
        OverlayMsg::Reply { .. } => 3,
        OverlayMsg::Store { .. } => 4,
        OverlayMsg::Call { .. } => 5,
        OverlayMsg::Push { .. } => 6,
        OverlayMsg::Revoke { .. } => 7,
    });
    out.extend_from_slice(&unix_ms.to_be_bytes());
    out.extend_from_slice(&nonce.to_be_bytes());
    match msg {
        OverlayMsg::Members { sns } => {
            let sns = &sns[..sns.len().min(MAX_MEMBERS)];
            out.push(sns.len() as u8);
            sns.iter().for_each(|a| put_addr(&mut out, *a));
        }
        OverlayMsg::Relay { client, raw }
        | OverlayMsg::Reply { client, raw }
        | OverlayMsg::Push { to: client, raw } => {
            put_addr(&mut out, *client);
            put_bytes(&mut out, raw);
        }
        OverlayMsg::Store { user, replica } => {
            wire::put_user(&mut out, user);
            // Never the verifier in the clear: sealed under this epoch's key.
            out.extend_from_slice(&sealing::seal_store(key, user, &replica.verifier));
            put_addr(&mut out, SocketAddr::new(replica.bound_by, 0));
            match &replica.online {
                None => out.push(0),
                Some(o) => {
                    out.push(1);
                    put_addr(&mut out, o.addr);
                    match o.via {
                        None => out.push(0),
                        Some(v) => {
                            out.push(1);
                            put_addr(&mut out, v);
                        }
                    }
                    out.extend_from_slice(&o.secs_left.to_be_bytes());
                    wire::put_candidates(&mut out, &o.candidates);
                }
            }
        }
        OverlayMsg::Call { client, reply_to, tid, from, to, payload } => {
            put_addr(&mut out, *client);
            put_addr(&mut out, *reply_to);
            out.extend_from_slice(&tid.to_be_bytes());
            wire::put_user(&mut out, from);
            wire::put_user(&mut out, to);
            put_bytes(&mut out, payload);
        }
        OverlayMsg::Revoke { sn, until_ms } => {
            put_addr(&mut out, *sn);
            out.extend_from_slice(&until_ms.to_be_bytes());
        }
    }
    let tag = hmac::sign(key, &out);
    out.extend_from_slice(tag.as_ref());
    out
}

/// The HMAC key for an overlay secret.
pub fn key(secret: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret)
}

/// The overlay's key for `epoch` (Unix seconds / epoch length): HMAC-SHA256(secret, "appnet
/// skype overlay epoch" ‖ epoch as 8 bytes). SN-SN datagrams are tagged with the key of the
/// epoch their timestamp falls in, so a promoted SN can be handed a few epochs' keys instead of
/// the secret, and they stop working by themselves.
pub fn epoch_key(secret: &[u8], epoch: u64) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&key(secret));
    ctx.update(b"appnet skype overlay epoch");
    ctx.update(&epoch.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// The timestamp (Unix ms) in a datagram's header, before its tag is checked (it picks the
/// epoch's key).
fn header_ts(raw: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(raw.get(4..12)?.try_into().ok()?))
}

/// `body` with its tag appended, whatever it holds: lets tests and the fuzz target reach the
/// body decoder with arbitrary bytes.
pub fn tag_raw(key: &hmac::Key, body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(hmac::sign(key, body).as_ref());
    out
}

/// Checks the tag and decodes: (timestamp, nonce, message). The replay window is the caller's.
pub fn open(key: &hmac::Key, raw: &[u8]) -> Result<(u64, u64, OverlayMsg), OverlayError> {
    if raw.len() < HEADER + TAG || raw.len() > MAX_OVERLAY_DATAGRAM {
        return Err(OverlayError::Malformed);
    }
    if &raw[..2] != MAGIC || raw[2] != VERSION {
        return Err(OverlayError::NotOverlay);
    }
    let (body, tag) = raw.split_at(raw.len() - TAG);
    hmac::verify(key, body, tag).map_err(|_| OverlayError::BadTag)?;
    let mut r = &body[3..];
    let kind = take(&mut r, 1)?[0];
    let ts = u64::from_be_bytes(array(&mut r)?);
    let nonce = u64::from_be_bytes(array(&mut r)?);
    let msg = match kind {
        1 => {
            let n = take(&mut r, 1)?[0] as usize;
            if n > MAX_MEMBERS {
                return Err(OverlayError::Malformed);
            }
            let mut sns = Vec::with_capacity(n);
            for _ in 0..n {
                sns.push(get_addr(&mut r)?);
            }
            OverlayMsg::Members { sns }
        }
        2 => OverlayMsg::Relay { client: get_addr(&mut r)?, raw: get_bytes(&mut r)? },
        3 => OverlayMsg::Reply { client: get_addr(&mut r)?, raw: get_bytes(&mut r)? },
        6 => OverlayMsg::Push { to: get_addr(&mut r)?, raw: get_bytes(&mut r)? },
        7 => OverlayMsg::Revoke { sn: get_addr(&mut r)?, until_ms: u64::from_be_bytes(array(&mut r)?) },
        4 => {
            let user = user(&mut r)?;
            let sealed: [u8; STORE_SEALED] = array(&mut r)?;
            let verifier = sealing::open_store(key, &user, &sealed).ok_or(OverlayError::Malformed)?;
            let bound_by = get_addr(&mut r)?.ip();
            let online = match take(&mut r, 1)?[0] {
                0 => None,
                1 => {
                    let addr = get_addr(&mut r)?;
                    let via = match take(&mut r, 1)?[0] {
                        0 => None,
                        1 => Some(get_addr(&mut r)?),
                        _ => return Err(OverlayError::Malformed),
                    };
                    let secs_left = u32::from_be_bytes(array(&mut r)?);
                    let candidates = wire::get_candidates(&mut r).map_err(|_| OverlayError::Malformed)?;
                    Some(ReplicaOnline { addr, via, candidates, secs_left })
                }
                _ => return Err(OverlayError::Malformed),
            };
            OverlayMsg::Store { user, replica: Replica { verifier, bound_by, online } }
        }
        5 => OverlayMsg::Call {
            client: get_addr(&mut r)?,
            reply_to: get_addr(&mut r)?,
            tid: u32::from_be_bytes(array(&mut r)?),
            from: user(&mut r)?,
            to: user(&mut r)?,
            payload: get_bytes(&mut r)?,
        },
        k => return Err(OverlayError::Kind(k)),
    };
    if !r.is_empty() {
        return Err(OverlayError::Malformed);
    }
    Ok((ts, nonce, msg))
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], OverlayError> {
    if r.len() < n {
        return Err(OverlayError::Malformed);
    }
    let (head, rest) = r.split_at(n);
    *r = rest;
    Ok(head)
}

fn array<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], OverlayError> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(r, N)?);
    Ok(a)
}

fn user(r: &mut &[u8]) -> Result<String, OverlayError> {
    wire::get_user(r).map_err(|_| OverlayError::Malformed)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(MAX_DATAGRAM)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn get_bytes(r: &mut &[u8]) -> Result<Vec<u8>, OverlayError> {
    let n = u16::from_be_bytes(array(r)?) as usize;
    if n > MAX_DATAGRAM {
        return Err(OverlayError::Malformed);
    }
    Ok(take(r, n)?.to_vec())
}

fn get_addr(r: &mut &[u8]) -> Result<SocketAddr, OverlayError> {
    wire::get_addr(r).map_err(|_| OverlayError::Malformed)
}

/// The overlay's timers and bounds.
#[derive(Debug, Clone)]
pub struct OverlayConfig {
    /// How often members are told our list (and so that we are alive).
    pub gossip_every: Duration,
    /// A member not heard from for this long is dropped.
    pub dead_after: Duration,
    /// Accepted clock difference, and how long nonces are remembered.
    pub replay_window: Duration,
    /// The key period: every datagram is tagged with its epoch's key ([`epoch_key`]).
    pub epoch: Duration,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        OverlayConfig {
            gossip_every: Duration::from_secs(2),
            dead_after: Duration::from_secs(7),
            replay_window: Duration::from_secs(30),
            epoch: Duration::from_secs(600),
        }
    }
}

/// What changed in the membership after a call, so the driver can re-place entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// SNs heard from for the first time (or again after being dropped).
    pub joined: Vec<SocketAddr>,
    /// SNs dropped for silence.
    pub died: Vec<SocketAddr>,
}

/// Where an SN's overlay keys come from.
enum Keys {
    /// A full member: every epoch's key is derived from the shared secret.
    Secret(Vec<u8>),
    /// A promoted member: the epochs' keys it was granted, nothing after them.
    Granted(Vec<(u64, [u8; 32])>),
}

/// Most revoked SNs remembered.
const MAX_REVOKED: usize = 1024;

/// One SN's view of the overlay.
pub struct Overlay {
    cfg: OverlayConfig,
    key: Option<Keys>,
    /// SNs whose grant was withdrawn, until when (Unix ms).
    revoked: HashMap<SocketAddr, u64>,
    me: SocketAddr,
    /// Addresses given with `--join`: tried every period, for good.
    seeds: Vec<SocketAddr>,
    /// SNs heard from (authenticated), with when.
    alive: HashMap<SocketAddr, Instant>,
    /// Addresses learnt from others' lists, not heard from yet, with when learnt.
    heard_of: HashMap<SocketAddr, Instant>,
    seen: HashMap<(SocketAddr, u64), Instant>,
    epoch: Instant,
    unix_ms_at_epoch: u64,
    next_gossip: Instant,
}

impl Overlay {
    /// The overlay as seen from `me`; `secret` None refuses all SN-SN traffic. `unix_ms` is the
    /// wall clock at `now` (timestamps on the wire are wall-clock; everything else is `now`).
    pub fn new(
        cfg: OverlayConfig,
        me: SocketAddr,
        secret: Option<&[u8]>,
        seeds: Vec<SocketAddr>,
        now: Instant,
        unix_ms: u64,
    ) -> Overlay {
        let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != me).take(MAX_MEMBERS).collect();
        Overlay {
            cfg,
            key: secret.map(|s| Keys::Secret(s.to_vec())),
            revoked: HashMap::new(),
            me,
            seeds,
            alive: HashMap::new(),
            heard_of: HashMap::new(),
            seen: HashMap::new(),
            epoch: now,
            unix_ms_at_epoch: unix_ms,
            next_gossip: now,
        }
    }

    /// Our own address, as the others see it.
    pub fn me(&self) -> SocketAddr {
        self.me
    }

    /// Whether SN-SN traffic is enabled (a secret was given, or keys were granted).
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Whether this SN holds the overlay secret (and so may promote peers).
    pub fn is_full(&self) -> bool {
        matches!(self.key, Some(Keys::Secret(_)))
    }

    /// The epoch `unix_ms` falls in.
    fn epoch_of(&self, unix_ms: u64) -> u64 {
        unix_ms / (self.cfg.epoch.as_millis().max(1000) as u64)
    }

    /// The current epoch and the key period in seconds.
    pub fn epoch(&self, now: Instant) -> (u64, u32) {
        (self.epoch_of(self.unix_ms(now)), self.cfg.epoch.as_secs().clamp(1, u32::MAX as u64) as u32)
    }

    /// The key of `epoch`, when we have it.
    pub fn epoch_key(&self, epoch: u64) -> Option<[u8; 32]> {
        match self.key.as_ref()? {
            Keys::Secret(s) => Some(epoch_key(s, epoch)),
            Keys::Granted(keys) => keys.iter().find(|(e, _)| *e == epoch).map(|(_, k)| *k),
        }
    }

    fn hmac_key(&self, epoch: u64) -> Option<hmac::Key> {
        Some(key(&self.epoch_key(epoch)?))
    }

    /// Installs (or renews) granted epoch keys; a full member keeps its secret.
    pub fn grant(&mut self, keys: Vec<(u64, [u8; 32])>) {
        if !self.is_full() {
            self.key = Some(Keys::Granted(keys));
        }
    }

    /// Whether a promoted SN's keys have run out (a full member's never do).
    pub fn expired(&self, now: Instant) -> bool {
        match &self.key {
            Some(Keys::Granted(_)) => self.epoch_key(self.epoch_of(self.unix_ms(now))).is_none(),
            _ => false,
        }
    }

    /// Wall-clock ms at `now`.
    pub fn unix_ms_at(&self, now: Instant) -> u64 {
        self.unix_ms(now)
    }

    /// Refuses `sn` until `until_ms`, and drops it from the members.
    pub fn revoke(&mut self, sn: SocketAddr, until_ms: u64, changes: &mut Changes) {
        if sn == self.me {
            return;
        }
        if self.revoked.len() < MAX_REVOKED || self.revoked.contains_key(&sn) {
            self.revoked.insert(sn, until_ms);
        }
        self.heard_of.remove(&sn);
        if self.alive.remove(&sn).is_some() {
            changes.died.push(sn);
        }
    }

    /// Whether `sn` is refused for a withdrawn grant.
    pub fn is_revoked(&self, sn: SocketAddr, now: Instant) -> bool {
        self.revoked.get(&sn).is_some_and(|until| *until > self.unix_ms(now))
    }

    /// The live SNs, ourselves included, sorted: what the placement ring is built from.
    pub fn members(&self) -> Vec<SocketAddr> {
        let mut m: Vec<SocketAddr> = self.alive.keys().copied().chain([self.me]).collect();
        m.sort();
        m
    }

    /// Whether `sn` is a live member (its datagrams may change our state).
    pub fn is_member(&self, sn: SocketAddr) -> bool {
        self.alive.contains_key(&sn)
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        self.unix_ms_at_epoch.saturating_add(now.saturating_duration_since(self.epoch).as_millis() as u64)
    }

    /// Seals `msg` for sending now; None without a secret.
    pub fn seal(&self, msg: &OverlayMsg, now: Instant) -> Option<Vec<u8>> {
        let ms = self.unix_ms(now);
        Some(seal(&self.hmac_key(self.epoch_of(ms))?, ms, rand::random(), msg))
    }

    /// Opens an SN-SN datagram from `from`: tag, replay window and nonce checked.
    pub fn open(&mut self, from: SocketAddr, raw: &[u8], now: Instant) -> Result<OverlayMsg, OverlayError> {
        if self.is_revoked(from, now) {
            return Err(OverlayError::Revoked);
        }
        let ts = header_ts(raw).ok_or(OverlayError::Malformed)?;
        let key = self.hmac_key(self.epoch_of(ts)).ok_or(OverlayError::BadTag)?;
        let (ts, nonce, msg) = open(&key, raw)?;
        let ours = self.unix_ms(now);
        let window = self.cfg.replay_window.as_millis() as u64;
        if ts.abs_diff(ours) > window {
            return Err(OverlayError::Stale);
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.retain(|_, t| now.saturating_duration_since(*t) <= 2 * self.cfg.replay_window);
            if self.seen.len() >= MAX_SEEN {
                return Err(OverlayError::Replay);
            }
        }
        if self.seen.insert((from, nonce), now).is_some() {
            return Err(OverlayError::Replay);
        }
        Ok(msg)
    }

    /// Handles an opened membership message from `from`; returns datagrams to send (our list
    /// straight back to an SN heard from for the first time, so joining takes one round trip).
    pub fn handle(
        &mut self,
        from: SocketAddr,
        msg: OverlayMsg,
        now: Instant,
        changes: &mut Changes,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        let OverlayMsg::Members { sns } = msg else { return out };
        let new = !self.alive.contains_key(&from);
        if new
            && self.alive.len() + self.heard_of.len() >= MAX_MEMBERS
            && self.heard_of.remove(&from).is_none()
        {
            return out;
        }
        self.alive.insert(from, now);
        self.heard_of.remove(&from);
        if new {
            changes.joined.push(from);
            if let Some(d) = self.seal(&OverlayMsg::Members { sns: self.members() }, now) {
                out.push((from, d));
            }
        }
        for sn in sns {
            if sn != self.me
                && !self.alive.contains_key(&sn)
                && !self.revoked.contains_key(&sn)
                && self.alive.len() + self.heard_of.len() < MAX_MEMBERS
            {
                self.heard_of.entry(sn).or_insert(now);
            }
        }
        out
    }

    /// Opens and handles a datagram in one go; refused ones are dropped silently.
    pub fn receive(
        &mut self,
        from: SocketAddr,
        raw: &[u8],
        now: Instant,
        changes: &mut Changes,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        match self.open(from, raw, now) {
            Ok(msg) => self.handle(from, msg, now, changes),
            Err(e) => {
                tracing::debug!(%from, error = %e, "overlay datagram refused");
                Vec::new()
            }
        }
    }

    /// The periodic work: drop silent members, forget stale nonces and addresses, and gossip
    /// our list to members, seeds and addresses heard of.
    pub fn tick(&mut self, now: Instant, changes: &mut Changes) -> Vec<(SocketAddr, Vec<u8>)> {
        if self.key.is_none() || now < self.next_gossip {
            return Vec::new();
        }
        self.next_gossip = now + self.cfg.gossip_every;
        let dead_after = self.cfg.dead_after;
        let died: Vec<SocketAddr> = self
            .alive
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) > dead_after)
            .map(|(a, _)| *a)
            .collect();
        for sn in &died {
            self.alive.remove(sn);
        }
        changes.died.extend(died);
        self.heard_of.retain(|_, t| now.saturating_duration_since(*t) <= dead_after);
        let window = self.cfg.replay_window;
        self.seen.retain(|_, t| now.saturating_duration_since(*t) <= 2 * window);
        let ms = self.unix_ms(now);
        self.revoked.retain(|_, until| *until > ms);
        let list = OverlayMsg::Members { sns: self.members() };
        let mut targets: Vec<SocketAddr> =
            self.alive.keys().chain(self.heard_of.keys()).chain(self.seeds.iter()).copied().collect();
        targets.sort();
        targets.dedup();
        targets.into_iter().filter_map(|to| Some((to, self.seal(&list, now)?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"overlay secret for the tests!";

    fn sn(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 33000 + i))
    }

    /// Delivers every datagram among `sns` until none is left (bounded).
    fn pump(sns: &mut [Overlay], mut queue: Vec<(SocketAddr, SocketAddr, Vec<u8>)>, now: Instant) {
        for _ in 0..1000 {
            let Some((from, to, d)) = queue.pop() else { return };
            if let Some(o) = sns.iter_mut().find(|o| o.me == to) {
                let mut ch = Changes::default();
                queue.extend(o.receive(from, &d, now, &mut ch).into_iter().map(|(t, d)| (to, t, d)));
            }
        }
        panic!("datagrams kept flowing");
    }

    fn tick_all(sns: &mut [Overlay], now: Instant) -> Vec<SocketAddr> {
        let mut queue = Vec::new();
        let mut died = Vec::new();
        for o in sns.iter_mut() {
            let mut ch = Changes::default();
            queue.extend(o.tick(now, &mut ch).into_iter().map(|(t, d)| (o.me, t, d)));
            died.extend(ch.died);
        }
        pump(sns, queue, now);
        died
    }

    #[test]
    fn sns_learn_each_other_through_one_seed_and_drop_a_silent_one() {
        let t0 = Instant::now();
        let cfg = OverlayConfig::default();
        let mk = |i: u16, seeds: Vec<SocketAddr>| {
            Overlay::new(cfg.clone(), sn(i), Some(SECRET), seeds, t0, 1_000_000)
        };
        // B and C only know A.
        let mut sns = vec![mk(0, vec![]), mk(1, vec![sn(0)]), mk(2, vec![sn(0)])];
        for s in 0..3u64 {
            tick_all(&mut sns, t0 + Duration::from_secs(2 * s));
        }
        for o in &sns {
            assert_eq!(o.members(), vec![sn(0), sn(1), sn(2)], "as seen from {}", o.me);
        }
        // C goes silent: after dead_after the others drop it.
        sns.pop();
        let mut died = Vec::new();
        for s in 3..8u64 {
            died.extend(tick_all(&mut sns, t0 + Duration::from_secs(2 * s)));
        }
        assert_eq!(died, vec![sn(2), sn(2)]);
        assert_eq!(sns[0].members(), vec![sn(0), sn(1)]);
    }

    #[test]
    fn forged_replayed_and_stale_datagrams_are_refused() {
        let t0 = Instant::now();
        let mut a = Overlay::new(OverlayConfig::default(), sn(0), Some(SECRET), vec![], t0, 5_000_000);
        let msg = OverlayMsg::Members { sns: vec![sn(7)] };
        let good = seal(&key(&epoch_key(SECRET, 8)), 5_000_000, 42, &msg);
        assert_eq!(a.open(sn(1), &good, t0), Ok(msg.clone()));
        assert_eq!(a.open(sn(1), &good, t0), Err(OverlayError::Replay));
        // Tagged with the raw secret instead of the epoch's key: refused too.
        let raw_secret = seal(&key(SECRET), 5_000_000, 46, &msg);
        assert_eq!(a.open(sn(1), &raw_secret, t0), Err(OverlayError::BadTag));
        let other = key(&epoch_key(b"another secret, not ours", 8));
        assert_eq!(a.open(sn(1), &seal(&other, 5_000_000, 43, &msg), t0), Err(OverlayError::BadTag));
        let mut flipped = seal(&key(&epoch_key(SECRET, 8)), 5_000_000, 44, &msg);
        flipped[HEADER] ^= 1;
        assert_eq!(a.open(sn(1), &flipped, t0), Err(OverlayError::BadTag));
        let old = seal(&key(&epoch_key(SECRET, 8)), 5_000_000 - 31_000, 45, &msg);
        assert_eq!(a.open(sn(1), &old, t0), Err(OverlayError::Stale));
        // Without a secret nothing is accepted and nothing is sent.
        let mut alone = Overlay::new(OverlayConfig::default(), sn(0), None, vec![sn(1)], t0, 5_000_000);
        assert!(alone.open(sn(1), &good, t0).is_err());
        assert!(alone.tick(t0, &mut Changes::default()).is_empty());
        for cut in 0..good.len() {
            assert!(a.open(sn(2), &good[..cut], t0).is_err());
        }
    }

    #[test]
    fn granted_keys_work_for_their_epochs_only_and_revocation_refuses_the_sender() {
        let t0 = Instant::now();
        // Unix time 5,000 s: epoch 8 of 600 s.
        let full = Overlay::new(OverlayConfig::default(), sn(0), Some(SECRET), vec![], t0, 5_000_000);
        let mut promoted = Overlay::new(OverlayConfig::default(), sn(1), None, vec![], t0, 5_000_000);
        assert!(!promoted.enabled());
        promoted.grant(vec![(8, epoch_key(SECRET, 8)), (9, epoch_key(SECRET, 9))]);
        assert!(promoted.enabled() && !promoted.is_full() && !promoted.expired(t0));
        let msg = OverlayMsg::Members { sns: vec![sn(0)] };
        let mut full = full;
        assert_eq!(full.open(sn(1), &promoted.seal(&msg, t0).unwrap(), t0), Ok(msg.clone()));
        assert_eq!(promoted.open(sn(0), &full.seal(&msg, t0).unwrap(), t0), Ok(msg.clone()));
        // Epoch 10 (6,000 s) is past the grant: it can neither seal nor open, and says so.
        let later = t0 + Duration::from_secs(1000);
        assert!(promoted.expired(later) && promoted.seal(&msg, later).is_none());
        assert_eq!(promoted.open(sn(0), &full.seal(&msg, later).unwrap(), later), Err(OverlayError::BadTag));
        // A full member grants nothing to itself and keeps deriving.
        full.grant(Vec::new());
        assert!(full.is_full() && full.seal(&msg, later).is_some());
        // Revoked: its datagrams are refused, and it leaves the members.
        let mut ch = Changes::default();
        full.handle(sn(1), msg.clone(), t0, &mut ch);
        assert!(full.is_member(sn(1)));
        full.revoke(sn(1), 6_000_000, &mut ch);
        assert!(!full.is_member(sn(1)) && ch.died == vec![sn(1)]);
        assert_eq!(full.open(sn(1), &promoted.seal(&msg, t0).unwrap(), t0), Err(OverlayError::Revoked));
    }
}
