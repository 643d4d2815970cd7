//! A sans-IO TURN client (RFC 8656 §7–§11): one allocation on one server. It answers the 401
//! challenge with long-term credentials, follows 438 to a fresh nonce, retransmits requests,
//! refreshes the allocation at half its lifetime and permissions every 4 minutes, and wraps
//! and unwraps peer data in Send and Data indications. The peer agent (our relayed candidate)
//! drives it from the same UDP socket it uses for everything else.

use crate::stun::attr::code;
use crate::stun::message::{Decoded, method};
use crate::stun::{Attr, Class, Message, decode_datagram, long_term_key};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const RTO: Duration = Duration::from_millis(500);
const TRIES: u32 = 7;
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Times one request may be re-sent after 401/438 before the client gives up.
const MAX_CHALLENGES: u32 = 3;

/// What the driver must do or learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send `0` to the TURN server.
    Transmit(Vec<u8>),
    /// The allocation exists: our relayed address, and our address as the server sees it.
    Allocated { relayed: SocketAddr, mapped: SocketAddr },
    /// A peer sent `data` to our relayed address.
    Data { peer: SocketAddr, data: Vec<u8> },
    /// The allocation failed or was lost (the reason, for the log).
    Failed(String),
}

struct Pending {
    msg: Message,
    tries: u32,
    challenges: u32,
    next: Instant,
}

/// One allocation's client state.
pub struct TurnClient {
    user: String,
    password: String,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<[u8; 16]>,
    relayed: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    permissions: HashMap<IpAddr, Instant>,
    pending: HashMap<[u8; 12], Pending>,
    failed: bool,
}

impl TurnClient {
    /// A client for `user`; [`TurnClient::start`] sends the first Allocate.
    pub fn new(user: &str, password: &str) -> TurnClient {
        TurnClient {
            user: user.into(),
            password: password.into(),
            realm: None,
            nonce: None,
            key: None,
            relayed: None,
            refresh_at: None,
            permissions: HashMap::new(),
            pending: HashMap::new(),
            failed: false,
        }
    }

    /// Our relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Sends the Allocate (UDP, default lifetime).
    pub fn start(&mut self, now: Instant) -> Vec<Event> {
        let mut m = Message::new(Class::Request, method::ALLOCATE);
        m.attrs.push(Attr::RequestedTransport(17));
        self.send(m, 0, now)
    }

    /// Asks the server to let `peer`'s IP in (CreatePermission), unless it already may.
    pub fn permit(&mut self, peer: IpAddr, now: Instant) -> Vec<Event> {
        if self.permissions.get(&peer).is_some_and(|t| *t > now) || self.relayed.is_none() {
            return Vec::new();
        }
        self.permissions.insert(peer, now + PERMISSION_REFRESH);
        let mut m = Message::new(Class::Request, method::CREATE_PERMISSION);
        m.attrs.push(Attr::XorPeerAddress(SocketAddr::new(peer, 0)));
        self.send(m, 0, now)
    }

    /// Wraps `data` for `peer` in a Send indication.
    pub fn send_to(&self, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut m = Message::new(Class::Indication, method::SEND);
        m.attrs.push(Attr::XorPeerAddress(peer));
        m.attrs.push(Attr::Data(data.to_vec()));
        m.encode(None, false)
    }

    fn signed(&self, msg: &Message) -> Vec<u8> {
        let mut m = msg.clone();
        if let (Some(realm), Some(nonce), Some(key)) = (&self.realm, &self.nonce, &self.key) {
            m.attrs.retain(|a| !matches!(a.code(), code::USERNAME | code::REALM | code::NONCE));
            m.attrs.push(Attr::Username(self.user.clone()));
            m.attrs.push(Attr::Realm(realm.clone()));
            m.attrs.push(Attr::Nonce(nonce.clone()));
            return m.encode(Some((key, false)), true);
        }
        m.encode(None, true)
    }

    fn send(&mut self, msg: Message, challenges: u32, now: Instant) -> Vec<Event> {
        let raw = self.signed(&msg);
        self.pending.insert(msg.tid, Pending { msg, tries: 1, challenges, next: now + RTO });
        vec![Event::Transmit(raw)]
    }

    fn fail(&mut self, why: String) -> Vec<Event> {
        self.failed = true;
        self.pending.clear();
        self.relayed = None;
        vec![Event::Failed(why)]
    }

    /// A datagram from the TURN server.
    pub fn receive(&mut self, raw: &[u8], now: Instant) -> Vec<Event> {
        let msg = match decode_datagram(raw) {
            Ok(Decoded::Stun(m)) => m,
            _ => return Vec::new(),
        };
        if msg.class == Class::Indication && msg.method == method::DATA {
            return match (msg.get(code::XOR_PEER_ADDRESS), msg.get(code::DATA)) {
                (Some(Attr::XorPeerAddress(peer)), Some(Attr::Data(data))) => {
                    vec![Event::Data { peer: *peer, data: data.clone() }]
                }
                _ => Vec::new(),
            };
        }
        let Some(p) = self.pending.get(&msg.tid) else { return Vec::new() };
        // Answers after the first challenge must carry our integrity.
        if let Some(key) = &self.key
            && msg.integrity.is_some()
            && !msg.verify(raw, key)
        {
            return Vec::new();
        }
        let (request, challenges) = (p.msg.clone(), p.challenges);
        self.pending.remove(&msg.tid);
        match msg.class {
            Class::Success => self.on_success(&request, &msg, now),
            Class::Error => {
                let code = match msg.get(code::ERROR_CODE) {
                    Some(Attr::ErrorCode(c, _)) => *c,
                    _ => 0,
                };
                if matches!(code, 401 | 438) && challenges < MAX_CHALLENGES {
                    if let Some(Attr::Realm(r)) = msg.get(code::REALM) {
                        self.realm = Some(r.clone());
                    }
                    if let Some(Attr::Nonce(n)) = msg.get(code::NONCE) {
                        self.nonce = Some(n.clone());
                    }
                    if let Some(realm) = &self.realm {
                        self.key = Some(long_term_key(&self.user, realm, &self.password));
                    }
                    let mut again = request.clone();
                    again.tid = rand::random();
                    return self.send(again, challenges + 1, now);
                }
                if request.method == method::CREATE_PERMISSION {
                    return Vec::new();
                }
                self.fail(format!("TURN {} refused: {code}", method_name(request.method)))
            }
            _ => Vec::new(),
        }
    }

    fn on_success(&mut self, request: &Message, msg: &Message, now: Instant) -> Vec<Event> {
        let lifetime = match msg.get(code::LIFETIME) {
            Some(Attr::Lifetime(s)) => Duration::from_secs(*s as u64),
            _ => Duration::from_secs(600),
        };
        self.refresh_at = Some(now + lifetime / 2);
        if request.method != method::ALLOCATE {
            return Vec::new();
        }
        let (Some(Attr::XorRelayedAddress(relayed)), Some(Attr::XorMappedAddress(mapped))) =
            (msg.get(code::XOR_RELAYED_ADDRESS), msg.get(code::XOR_MAPPED_ADDRESS))
        else {
            return self.fail("Allocate success without addresses".into());
        };
        self.relayed = Some(*relayed);
        vec![Event::Allocated { relayed: *relayed, mapped: *mapped }]
    }

    /// Retransmissions, the allocation's refresh and the permissions' refresh.
    pub fn poll(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        if self.failed {
            return out;
        }
        let due: Vec<[u8; 12]> =
            self.pending.iter().filter(|(_, p)| p.next <= now).map(|(t, _)| *t).collect();
        for tid in due {
            let Some(p) = self.pending.get_mut(&tid) else { continue };
            if p.tries >= TRIES {
                let m = p.msg.method;
                return self.fail(format!("no answer to TURN {}", method_name(m)));
            }
            p.tries += 1;
            p.next = now + RTO * 2u32.pow(p.tries.min(6));
            let msg = p.msg.clone();
            out.push(Event::Transmit(self.signed(&msg)));
        }
        if self.relayed.is_some() && self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            out.extend(self.send(Message::new(Class::Request, method::REFRESH), 0, now));
        }
        let stale: Vec<IpAddr> =
            self.permissions.iter().filter(|(_, t)| **t <= now).map(|(ip, _)| *ip).collect();
        for ip in stale {
            self.permissions.remove(&ip);
            out.extend(self.permit(ip, now));
        }
        out
    }

    /// Releases the allocation (Refresh with LIFETIME 0).
    pub fn close(&mut self, now: Instant) -> Vec<Event> {
        if self.relayed.take().is_none() {
            return Vec::new();
        }
        let mut m = Message::new(Class::Request, method::REFRESH);
        m.attrs.push(Attr::Lifetime(0));
        self.send(m, 0, now)
    }
}

fn method_name(m: u16) -> &'static str {
    match m {
        method::ALLOCATE => "Allocate",
        method::REFRESH => "Refresh",
        method::CREATE_PERMISSION => "CreatePermission",
        _ => "request",
    }
}
