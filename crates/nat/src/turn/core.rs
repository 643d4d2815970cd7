//! The sans-IO TURN server (RFC 8656) that also answers STUN Binding requests (RFC 8489).
//! It takes datagrams and `now`, and returns what to send; the driver owns the sockets.
//! Allocations are keyed by the client's transport address (one UDP listener, so that is the
//! 5-tuple); each has a relayed port from the configured range, permissions (300 s) and
//! channel bindings (600 s).

use super::peers;
use crate::stun::attr::code;
use crate::stun::message::{Decoded, encode_channel_data, method};
use crate::stun::{Attr, Class, Message, decode_datagram};
use appnet_netkit::acl::AccessList;
use appnet_netkit::rate::TokenBucket;
use ring::hmac;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
const DEFAULT_LIFETIME: u32 = 600;
const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Most sources tracked by the unauthenticated-reply limiter; beyond it idle ones are dropped.
const MAX_LIMITED_SOURCES: usize = 65_536;

/// The core's settings (from [`crate::TurnConfig`] after parsing).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub realm: String,
    pub users: Vec<(String, String)>,
    pub relay_ip: IpAddr,
    pub ports: (u16, u16),
    pub allow_peer: AccessList,
    pub user_quota: usize,
    pub ip_quota: usize,
    pub max_allocations: usize,
    pub nonce_lifetime: Duration,
    pub max_lifetime: u32,
    /// The server's second address (RFC 5780 OTHER-ADDRESS), when it has one: another IP and
    /// another port than `primary_address`.
    pub other_address: Option<SocketAddr>,
    /// The listening address itself, for RESPONSE-ORIGIN (known once the driver has bound it).
    pub primary_address: Option<SocketAddr>,
    /// Error replies per second (burst twice that) one source IP gets to requests that are not
    /// authenticated (401, 438, 400): they go to addresses nobody proved, so a spoofed source
    /// would otherwise turn the server into an amplifier. 0 means no limit.
    pub unauth_rate: u32,
}

/// One of the server's four transport addresses (RFC 5780 §3): the primary or alternate IP
/// with the primary or alternate port. Requests arrive on all four when the server has a second
/// address; CHANGE-REQUEST picks which one the answer leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The alternate IP address rather than the primary one.
    pub alt_ip: bool,
    /// The alternate port rather than the primary one.
    pub alt_port: bool,
}

impl Origin {
    /// The listening address.
    pub const PRIMARY: Origin = Origin { alt_ip: false, alt_port: false };

    /// Index 0..4 (primary, alternate port, alternate IP, both), for the driver's socket table.
    pub fn index(self) -> usize {
        (self.alt_ip as usize) << 1 | self.alt_port as usize
    }
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `data` from the listening socket to `to`.
    ToClient { to: SocketAddr, data: Vec<u8> },
    /// Send `data` to `to` from another of the server's addresses (RFC 5780 CHANGE-REQUEST, or a
    /// request that arrived there).
    FromOrigin { origin: Origin, to: SocketAddr, data: Vec<u8> },
    /// Send `data` from the relayed socket on `port` to `peer`.
    ToPeer { port: u16, peer: SocketAddr, data: Vec<u8> },
    /// The relayed socket on `port` is no longer needed.
    CloseRelay { port: u16 },
}

struct Allocation {
    user: String,
    port: u16,
    /// The Allocate transaction that made it: a retransmission gets the success again.
    tid: [u8; 12],
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
    by_peer: HashMap<SocketAddr, u16>,
}

/// The TURN server state.
pub struct Core {
    cfg: CoreConfig,
    keys: HashMap<String, [u8; 16]>,
    allocations: HashMap<SocketAddr, Allocation>,
    by_port: HashMap<u16, SocketAddr>,
    used_ports: BTreeSet<u16>,
    reservations: HashMap<[u8; 8], (u16, Instant)>,
    nonce_key: hmac::Key,
    epoch: Instant,
    next_port: u16,
    /// Per-source budget of unauthenticated error replies.
    unauth: HashMap<IpAddr, TokenBucket>,
}

fn err(req: &Message, code: u16, reason: &str) -> Message {
    let mut m = req.reply(Class::Error);
    m.attrs.push(Attr::ErrorCode(code, reason.into()));
    m
}

impl Core {
    /// A server with no allocations; `now` anchors nonce timestamps.
    pub fn new(cfg: CoreConfig, now: Instant) -> Core {
        let keys = cfg
            .users
            .iter()
            .map(|(u, p)| (u.clone(), crate::stun::long_term_key(u, &cfg.realm, p)))
            .collect();
        let secret: [u8; 32] = rand::random();
        let next_port = cfg.ports.0;
        Core {
            cfg,
            keys,
            allocations: HashMap::new(),
            by_port: HashMap::new(),
            used_ports: BTreeSet::new(),
            reservations: HashMap::new(),
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            epoch: now,
            next_port,
            unauth: HashMap::new(),
        }
    }

    /// Whether `port` belongs to an allocation or a reservation (the driver keeps its socket).
    pub fn port_used(&self, port: u16) -> bool {
        self.used_ports.contains(&port)
    }

    /// How many allocations exist.
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    fn nonce(&self, now: Instant) -> String {
        let t = now.saturating_duration_since(self.epoch).as_secs();
        let tag = hmac::sign(&self.nonce_key, &t.to_be_bytes());
        let mut s = format!("{t:016x}");
        tag.as_ref()[..12].iter().for_each(|b| s.push_str(&format!("{b:02x}")));
        s
    }

    fn nonce_fresh(&self, nonce: &str, now: Instant) -> bool {
        if nonce.len() != 40 || !nonce.is_ascii() {
            return false;
        }
        let Ok(t) = u64::from_str_radix(&nonce[..16], 16) else { return false };
        let tag = hmac::sign(&self.nonce_key, &t.to_be_bytes());
        let mut want = String::new();
        tag.as_ref()[..12].iter().for_each(|b| want.push_str(&format!("{b:02x}")));
        let same = want.bytes().zip(nonce[16..].bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        let age = now.saturating_duration_since(self.epoch).as_secs().saturating_sub(t);
        same && age < self.cfg.nonce_lifetime.as_secs()
    }

    /// Whether `ip` may get one more unauthenticated error reply now.
    fn unauth_allowed(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.cfg.unauth_rate as u64;
        if rate == 0 {
            return true;
        }
        if !self.unauth.contains_key(&ip) && self.unauth.len() >= MAX_LIMITED_SOURCES {
            // Sources whose bucket refilled are no different from new ones: forget them.
            self.unauth.retain(|_, b| b.available(now) < b.burst());
            if self.unauth.len() >= MAX_LIMITED_SOURCES {
                return false;
            }
        }
        self.unauth.entry(ip).or_insert_with(|| TokenBucket::new(rate, rate * 2, now)).try_take(1, now)
    }

    /// The Binding answer to a request that arrived at `at` (RFC 8489 §7.3, RFC 5780 §6.1):
    /// XOR-MAPPED-ADDRESS, and with a second address RESPONSE-ORIGIN and OTHER-ADDRESS; a
    /// CHANGE-REQUEST moves the answer to the other IP and/or port, or gets 420 without a second
    /// address. Returns nothing for anything but a Binding request.
    pub fn binding(&mut self, at: Origin, from: SocketAddr, msg: &Message, now: Instant) -> Option<Action> {
        if (msg.class, msg.method) != (Class::Request, method::BINDING) {
            return None;
        }
        let change = msg.attrs.iter().find_map(|a| match a {
            Attr::ChangeRequest { ip, port } => Some((*ip, *port)),
            _ => None,
        });
        let (Some(other), Some(primary)) = (self.cfg.other_address, self.cfg.primary_address) else {
            if change.is_some() {
                if !self.unauth_allowed(from.ip(), now) {
                    return None;
                }
                let mut r = err(msg, 420, "Unknown Attribute");
                r.attrs.push(Attr::UnknownAttributes(vec![code::CHANGE_REQUEST]));
                return Some(Action::ToClient { to: from, data: r.encode(None, true) });
            }
            let mut r = msg.reply(Class::Success);
            r.attrs.push(Attr::XorMappedAddress(from));
            return Some(Action::ToClient { to: from, data: r.encode(None, true) });
        };
        let (ip, port) = change.unwrap_or((false, false));
        let origin = Origin { alt_ip: at.alt_ip ^ ip, alt_port: at.alt_port ^ port };
        let addr = |o: Origin| {
            SocketAddr::new(
                if o.alt_ip { other.ip() } else { primary.ip() },
                if o.alt_port { other.port() } else { primary.port() },
            )
        };
        let mut r = msg.reply(Class::Success);
        r.attrs.push(Attr::XorMappedAddress(from));
        r.attrs.push(Attr::ResponseOrigin(addr(origin)));
        r.attrs.push(Attr::OtherAddress(addr(Origin { alt_ip: !at.alt_ip, alt_port: !at.alt_port })));
        let data = r.encode(None, true);
        Some(if origin == Origin::PRIMARY {
            Action::ToClient { to: from, data }
        } else {
            Action::FromOrigin { origin, to: from, data }
        })
    }

    fn challenge(&self, req: &Message, code: u16, reason: &str, now: Instant) -> Message {
        let mut m = err(req, code, reason);
        m.attrs.push(Attr::Realm(self.cfg.realm.clone()));
        m.attrs.push(Attr::Nonce(self.nonce(now)));
        m
    }

    /// Handles one datagram from a client at `from`.
    pub fn from_client(
        &mut self,
        from: SocketAddr,
        raw: &[u8],
        now: Instant,
        bind: &mut dyn FnMut(u16) -> bool,
    ) -> Vec<Action> {
        let msg = match decode_datagram(raw) {
            Ok(Decoded::ChannelData { channel, data }) => {
                return self.channel_data(from, channel, data, now).into_iter().collect();
            }
            Ok(Decoded::Stun(m)) => m,
            Err(_) => return Vec::new(),
        };
        match (msg.class, msg.method) {
            (Class::Request, method::BINDING) => {
                self.binding(Origin::PRIMARY, from, &msg, now).into_iter().collect()
            }
            (Class::Indication, method::SEND) => self.send_indication(from, &msg, now).into_iter().collect(),
            (
                Class::Request,
                m @ (method::ALLOCATE | method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND),
            ) => {
                let (reply, key, sha256, mut actions) = match self.authenticate(from, &msg, raw, now) {
                    Err(reply) => (reply, None, false, Vec::new()),
                    Ok((user, key)) => {
                        let mut actions = Vec::new();
                        let reply = match m {
                            method::ALLOCATE => self.allocate(from, &msg, &user, now, bind),
                            method::REFRESH => self.refresh(from, &msg, now, &mut actions),
                            method::CREATE_PERMISSION => self.create_permission(from, &msg, now),
                            _ => self.channel_bind(from, &msg, now),
                        };
                        let sha256 = matches!(msg.integrity, Some((_, true, _)));
                        (reply, Some(key), sha256, actions)
                    }
                };
                if reply.class == Class::Error {
                    tracing::debug!(%from, method = m, request = ?msg.attrs, reply = ?reply.attrs, "refused");
                }
                if key.is_none() && !self.unauth_allowed(from.ip(), now) {
                    tracing::debug!(%from, "unauthenticated error reply dropped: source over its rate");
                    return Vec::new();
                }
                let data = reply.encode(key.as_ref().map(|k| (&k[..], sha256)), true);
                actions.insert(0, Action::ToClient { to: from, data });
                actions
            }
            (Class::Request, _) => {
                if !self.unauth_allowed(from.ip(), now) {
                    return Vec::new();
                }
                let r = err(&msg, 400, "Bad Request");
                vec![Action::ToClient { to: from, data: r.encode(None, true) }]
            }
            _ => Vec::new(),
        }
    }

    /// Long-term credentials (RFC 8489 §9.2): 401 without integrity, 438 for a stale nonce.
    fn authenticate(
        &self,
        from: SocketAddr,
        msg: &Message,
        raw: &[u8],
        now: Instant,
    ) -> Result<(String, [u8; 16]), Message> {
        if msg.integrity.is_none() {
            return Err(self.challenge(msg, 401, "Unauthorized", now));
        }
        let (Some(Attr::Username(user)), Some(Attr::Realm(realm)), Some(Attr::Nonce(nonce))) =
            (msg.get(code::USERNAME), msg.get(code::REALM), msg.get(code::NONCE))
        else {
            return Err(err(msg, 400, "Bad Request"));
        };
        if !self.nonce_fresh(nonce, now) || realm != &self.cfg.realm {
            return Err(self.challenge(msg, 438, "Stale Nonce", now));
        }
        // A key is computed for unknown users too, so timing does not tell them apart.
        let dummy = [0u8; 16];
        let key = self.keys.get(user.as_str());
        let ok = msg.verify(raw, key.unwrap_or(&dummy)) && key.is_some();
        if !ok {
            return Err(self.challenge(msg, 401, "Unauthorized", now));
        }
        if let Some(a) = self.allocations.get(&from)
            && a.user != *user
        {
            return Err(err(msg, 441, "Wrong Credentials"));
        }
        Ok((user.clone(), *key.unwrap_or(&dummy)))
    }

    fn free_port(&mut self, even: bool, bind: &mut dyn FnMut(u16) -> bool) -> Option<u16> {
        let (lo, hi) = self.cfg.ports;
        let span = (hi - lo) as u32 + 1;
        for i in 0..span {
            let p = lo + ((self.next_port - lo) as u32 + i).rem_euclid(span) as u16;
            if (even && (!p.is_multiple_of(2) || p == hi || self.used_ports.contains(&(p + 1))))
                || self.used_ports.contains(&p)
            {
                continue;
            }
            if bind(p) {
                self.next_port = if p == hi { lo } else { p + 1 };
                return Some(p);
            }
        }
        None
    }

    fn allocate(
        &mut self,
        from: SocketAddr,
        msg: &Message,
        user: &str,
        now: Instant,
        bind: &mut dyn FnMut(u16) -> bool,
    ) -> Message {
        if let Some(a) = self.allocations.get(&from) {
            if a.tid != msg.tid {
                return err(msg, 437, "Allocation Mismatch");
            }
            let mut r = msg.reply(Class::Success);
            r.attrs.push(Attr::XorRelayedAddress(SocketAddr::new(self.cfg.relay_ip, a.port)));
            let left = a.expires.saturating_duration_since(now).as_secs() as u32;
            r.attrs.push(Attr::Lifetime(left));
            r.attrs.push(Attr::XorMappedAddress(from));
            return r;
        }
        match msg.get(code::REQUESTED_TRANSPORT) {
            Some(Attr::RequestedTransport(17)) => {}
            Some(_) => return err(msg, 442, "Unsupported Transport Protocol"),
            None => return err(msg, 400, "Bad Request"),
        }
        if let Some(Attr::Other(_, v)) = msg.get(code::REQUESTED_ADDRESS_FAMILY) {
            let wanted_v4 = v.first() == Some(&1);
            if wanted_v4 != self.cfg.relay_ip.is_ipv4() {
                return err(msg, 440, "Address Family not Supported");
            }
        }
        let even = msg.get(code::EVEN_PORT);
        let token = msg.get(code::RESERVATION_TOKEN);
        if even.is_some() && token.is_some() {
            return err(msg, 400, "Bad Request");
        }
        if self.allocations.len() >= self.cfg.max_allocations {
            return err(msg, 508, "Insufficient Capacity");
        }
        if self.allocations.values().filter(|a| a.user == user).count() >= self.cfg.user_quota
            || self.allocations.keys().filter(|c| c.ip() == from.ip()).count() >= self.cfg.ip_quota
        {
            return err(msg, 486, "Allocation Quota Reached");
        }
        let mut new_token = None;
        let port = if let Some(Attr::ReservationToken(t)) = token {
            match self.reservations.remove(t) {
                Some((p, until)) if until > now => p,
                Some((p, _)) => {
                    self.used_ports.remove(&p);
                    return err(msg, 508, "Insufficient Capacity");
                }
                None => return err(msg, 508, "Insufficient Capacity"),
            }
        } else {
            let reserve = matches!(even, Some(Attr::EvenPort(true)));
            let Some(p) = self.free_port(even.is_some(), bind) else {
                return err(msg, 508, "Insufficient Capacity");
            };
            if reserve {
                if bind(p + 1) {
                    let t: [u8; 8] = rand::random();
                    self.used_ports.insert(p + 1);
                    self.reservations.insert(t, (p + 1, now + RESERVATION_LIFETIME));
                    new_token = Some(t);
                } else {
                    // Give back p: the driver dropped nothing yet, the caller closes it.
                    return err(msg, 508, "Insufficient Capacity");
                }
            }
            p
        };
        let lifetime = self.lifetime(msg);
        self.used_ports.insert(port);
        self.by_port.insert(port, from);
        self.allocations.insert(
            from,
            Allocation {
                user: user.to_string(),
                port,
                tid: msg.tid,
                expires: now + Duration::from_secs(lifetime as u64),
                permissions: HashMap::new(),
                channels: HashMap::new(),
                by_peer: HashMap::new(),
            },
        );
        let mut r = msg.reply(Class::Success);
        r.attrs.push(Attr::XorRelayedAddress(SocketAddr::new(self.cfg.relay_ip, port)));
        r.attrs.push(Attr::Lifetime(lifetime));
        if let Some(t) = new_token {
            r.attrs.push(Attr::ReservationToken(t));
        }
        r.attrs.push(Attr::XorMappedAddress(from));
        r
    }

    fn lifetime(&self, msg: &Message) -> u32 {
        match msg.get(code::LIFETIME) {
            Some(Attr::Lifetime(0)) => 0,
            Some(Attr::Lifetime(s)) => {
                (*s).clamp(DEFAULT_LIFETIME.min(self.cfg.max_lifetime), self.cfg.max_lifetime)
            }
            _ => DEFAULT_LIFETIME.min(self.cfg.max_lifetime),
        }
    }

    fn refresh(
        &mut self,
        from: SocketAddr,
        msg: &Message,
        now: Instant,
        actions: &mut Vec<Action>,
    ) -> Message {
        let lifetime = self.lifetime(msg);
        let Some(a) = self.allocations.get_mut(&from) else {
            return err(msg, 437, "Allocation Mismatch");
        };
        if lifetime == 0 {
            let port = a.port;
            self.remove(from);
            actions.push(Action::CloseRelay { port });
        } else {
            a.expires = now + Duration::from_secs(lifetime as u64);
        }
        let mut r = msg.reply(Class::Success);
        r.attrs.push(Attr::Lifetime(lifetime));
        r
    }

    fn remove(&mut self, client: SocketAddr) {
        if let Some(a) = self.allocations.remove(&client) {
            self.by_port.remove(&a.port);
            self.used_ports.remove(&a.port);
        }
    }

    fn create_permission(&mut self, from: SocketAddr, msg: &Message, now: Instant) -> Message {
        let peers: Vec<SocketAddr> = msg
            .attrs
            .iter()
            .filter_map(|a| if let Attr::XorPeerAddress(p) = a { Some(*p) } else { None })
            .collect();
        let allow = &self.cfg.allow_peer;
        let Some(a) = self.allocations.get_mut(&from) else {
            return err(msg, 437, "Allocation Mismatch");
        };
        if peers.is_empty() {
            return err(msg, 400, "Bad Request");
        }
        if peers.iter().any(|p| !peers::allowed(p.ip(), allow)) {
            return err(msg, 403, "Forbidden");
        }
        if peers.iter().any(|p| p.is_ipv4() != self.cfg.relay_ip.is_ipv4()) {
            return err(msg, 443, "Peer Address Family Mismatch");
        }
        for p in peers {
            a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
        }
        msg.reply(Class::Success)
    }

    fn channel_bind(&mut self, from: SocketAddr, msg: &Message, now: Instant) -> Message {
        let (Some(Attr::ChannelNumber(ch)), Some(Attr::XorPeerAddress(peer))) =
            (msg.get(code::CHANNEL_NUMBER), msg.get(code::XOR_PEER_ADDRESS))
        else {
            return err(msg, 400, "Bad Request");
        };
        let (ch, peer) = (*ch, *peer);
        let allow = &self.cfg.allow_peer;
        let Some(a) = self.allocations.get_mut(&from) else {
            return err(msg, 437, "Allocation Mismatch");
        };
        // RFC 8656 narrowed the range to 0x4000-0x4FFF; RFC 5766 clients (coturn's among
        // them) still pick from 0x4000-0x7FFF, and ChannelData framing tells both apart alike.
        if !(0x4000..=0x7FFF).contains(&ch) {
            return err(msg, 400, "Bad Request");
        }
        if !peers::allowed(peer.ip(), allow) {
            return err(msg, 403, "Forbidden");
        }
        if peer.is_ipv4() != self.cfg.relay_ip.is_ipv4() {
            return err(msg, 443, "Peer Address Family Mismatch");
        }
        let live = |t: Instant| t > now;
        if let Some((bound, t)) = a.channels.get(&ch)
            && live(*t)
            && *bound != peer
        {
            return err(msg, 400, "Bad Request");
        }
        if let Some(other) = a.by_peer.get(&peer)
            && *other != ch
            && a.channels.get(other).is_some_and(|(_, t)| live(*t))
        {
            return err(msg, 400, "Bad Request");
        }
        if let Some((old, _)) = a.channels.insert(ch, (peer, now + CHANNEL_LIFETIME))
            && old != peer
        {
            a.by_peer.remove(&old);
        }
        a.by_peer.insert(peer, ch);
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        msg.reply(Class::Success)
    }

    fn send_indication(&mut self, from: SocketAddr, msg: &Message, now: Instant) -> Option<Action> {
        let (Some(Attr::XorPeerAddress(peer)), Some(Attr::Data(data))) =
            (msg.get(code::XOR_PEER_ADDRESS), msg.get(code::DATA))
        else {
            return None;
        };
        let a = self.allocations.get(&from).filter(|a| a.expires > now)?;
        let ok = a.permissions.get(&peer.ip()).is_some_and(|t| *t > now)
            && peers::allowed(peer.ip(), &self.cfg.allow_peer);
        ok.then(|| Action::ToPeer { port: a.port, peer: *peer, data: data.clone() })
    }

    fn channel_data(&mut self, from: SocketAddr, channel: u16, data: &[u8], now: Instant) -> Option<Action> {
        let a = self.allocations.get(&from).filter(|a| a.expires > now)?;
        let (peer, until) = a.channels.get(&channel)?;
        let ok = *until > now && a.permissions.get(&peer.ip()).is_some_and(|t| *t > now);
        ok.then(|| Action::ToPeer { port: a.port, peer: *peer, data: data.to_vec() })
    }

    /// A datagram from `peer` arrived on the relayed socket `port`: returns what to send to the
    /// client (ChannelData when a channel is bound, else a Data indication), or nothing when no
    /// permission covers the peer.
    pub fn from_peer(&self, port: u16, peer: SocketAddr, data: &[u8], now: Instant) -> Option<Action> {
        let client = *self.by_port.get(&port)?;
        let a = self.allocations.get(&client).filter(|a| a.expires > now)?;
        if a.permissions.get(&peer.ip()).is_none_or(|t| *t <= now) {
            return None;
        }
        let mut out = Vec::with_capacity(data.len() + 36);
        match a.by_peer.get(&peer).filter(|ch| a.channels.get(ch).is_some_and(|(_, t)| *t > now)) {
            Some(ch) => encode_channel_data(*ch, data, &mut out),
            None => {
                let mut m = Message::new(Class::Indication, method::DATA);
                m.attrs.push(Attr::XorPeerAddress(peer));
                m.attrs.push(Attr::Data(data.to_vec()));
                out = m.encode(None, false);
            }
        }
        Some(Action::ToClient { to: client, data: out })
    }

    /// Drops expired allocations, permissions, channels and reservations, and forgets sources
    /// whose unauthenticated-reply budget has refilled.
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        self.unauth.retain(|_, b| b.available(now) < b.burst());
        let dead: Vec<SocketAddr> =
            self.allocations.iter().filter(|(_, a)| a.expires <= now).map(|(c, _)| *c).collect();
        let mut actions = Vec::new();
        for c in dead {
            if let Some(a) = self.allocations.get(&c) {
                actions.push(Action::CloseRelay { port: a.port });
            }
            self.remove(c);
        }
        for a in self.allocations.values_mut() {
            a.permissions.retain(|_, t| *t > now);
            a.channels.retain(|_, (_, t)| *t > now);
            let channels = &a.channels;
            a.by_peer.retain(|_, ch| channels.contains_key(ch));
        }
        let stale: Vec<[u8; 8]> =
            self.reservations.iter().filter(|(_, (_, t))| *t <= now).map(|(k, _)| *k).collect();
        for t in stale {
            if let Some((p, _)) = self.reservations.remove(&t) {
                self.used_ports.remove(&p);
                actions.push(Action::CloseRelay { port: p });
            }
        }
        actions
    }
}
