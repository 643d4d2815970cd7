//! The stateful proxy and registrar core (RFC 3261 §16, §10), sans-IO: bytes and a source
//! address in, datagrams out. The driver in `server.rs` owns the socket and calls `tick`.
//!
//! Requests for the domain (or the server's own address) are served locally (REGISTER,
//! OPTIONS) or forked in parallel to the registered contacts; the first 2xx wins and the
//! other branches are cancelled. In-dialog requests follow Route (we Record-Route with `;lr`).
//! Requests for other domains are refused unless they carry our Route (no open relay).

pub mod admission;
mod context;
pub mod presence;

use crate::digest::{self, AuthError, NonceStore};
use crate::locate::{Target, Transport};
use crate::registrar::{RegisterOutcome, Registrar, RegistrarLimits};
use crate::transaction::{ClientTransaction, Key, Output, ServerTransaction, Timers, key_of};
use crate::users::User;
use crate::wire::{self, Limits, Message, SipUri, Via};
use admission::Admission;
use context::Context;
use presence::{Presence, Subscription};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A message to send: as a datagram (or on the connection `to` already has), or, with
/// `stream`, on an outbound TCP/TLS connection the driver opens or reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub msg: Message,
    pub stream: Option<Outbound>,
}

/// An outbound connection a request needs (RFC 3263 chose TCP or TLS, or a URI says
/// `;transport=tcp`/`tls` or `sips:`). If it cannot be opened in time, the driver reports
/// [`Proxy::on_connect_failed`] and the request moves on as after a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub transport: Transport,
    /// The name the TLS server certificate must carry (RFC 5922: the domain of the URI).
    pub name: String,
}

/// The core's settings (built from `SipConfig`).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub domain: String,
    /// Our address as others reach it (Via sent-by, Record-Route).
    pub local: SocketAddr,
    pub redirect: bool,
    pub link_kbps: Option<u32>,
    pub max_transactions: usize,
    pub max_transactions_per_ip: usize,
    pub nonce_lifetime: Duration,
    pub dialog_timeout: Duration,
    pub noanswer_default: Duration,
    /// Timer C: how long an INVITE branch may stay in Proceeding (RFC 3261: > 3 min).
    pub timer_c: Duration,
    /// Presence subscriptions in all, and from one address.
    pub max_subscriptions: usize,
    pub max_subscriptions_per_ip: usize,
    pub registrar: RegistrarLimits,
    pub limits: Limits,
    pub timers: Timers,
    /// Route requests of authenticated local users to other domains (RFC 3263 location by
    /// the driver, `--resolver`); when false, every request for another domain gets 403.
    pub route_other_domains: bool,
    /// Challenge with MD5 only, no SHA-256 second header (old libre/baresip fail on a
    /// challenge algorithm they do not know instead of skipping it).
    pub md5_only: bool,
}

/// A location the driver must look up (RFC 3263) and report with [`Proxy::on_located`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub id: u64,
    /// The Request-URI whose domain's servers are wanted.
    pub uri: String,
}

/// What the driver found for a [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// Servers in the order to try them, each with its transport.
    Targets(Vec<Target>),
    /// The domain has no SIP server (the caller gets 404).
    NotFound,
    /// The resolver failed (the caller gets 503).
    Failed,
}

struct ServerEntry {
    tx: ServerTransaction,
    source: SocketAddr,
    /// Arrived over a stream: responses go back on that connection (§18.2.2).
    reliable: bool,
    ctx: Option<u64>,
    /// Still counted against its source's per-address cap: no final response sent yet.
    /// Finished transactions linger (timers I/J absorb retransmissions) but no longer count
    /// there; the overall cap `max_transactions` still bounds them.
    live: bool,
}

struct ClientEntry {
    tx: ClientTransaction,
    to: SocketAddr,
    /// Sent over an outbound TCP/TLS connection (None: UDP or the peer's own connection).
    stream: Option<Outbound>,
    ctx: u64,
}

/// Counters for the log and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub requests: u64,
    pub responses: u64,
    pub bad: u64,
    pub retransmissions_absorbed: u64,
    pub registrations: u64,
    pub forwarded: u64,
}

/// The proxy/registrar state.
pub struct Proxy {
    cfg: ProxyConfig,
    users: HashMap<String, User>,
    registrar: Registrar,
    nonces: NonceStore,
    server_tx: HashMap<Key, ServerEntry>,
    client_tx: HashMap<String, ClientEntry>,
    contexts: HashMap<u64, Context>,
    next_ctx: u64,
    per_ip: HashMap<IpAddr, usize>,
    admission: Option<Admission>,
    presence: Presence,
    /// Whether the message being handled arrived over a stream (set per call).
    inbound_reliable: bool,
    /// Locations the driver has to look up (drained by `take_lookups`).
    lookups: Vec<Lookup>,
    pub counters: Counters,
}

const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY";

impl Proxy {
    /// A proxy for `cfg.domain` with these users (empty: registration is open).
    pub fn new(cfg: ProxyConfig, users: HashMap<String, User>) -> Self {
        Proxy {
            registrar: Registrar::new(cfg.registrar),
            nonces: NonceStore::new(cfg.nonce_lifetime, 10_000),
            admission: cfg.link_kbps.map(|k| Admission::new(k, cfg.dialog_timeout)),
            presence: Presence::new(cfg.max_subscriptions, cfg.max_subscriptions_per_ip),
            inbound_reliable: false,
            lookups: Vec::new(),
            cfg,
            users,
            server_tx: HashMap::new(),
            client_tx: HashMap::new(),
            contexts: HashMap::new(),
            next_ctx: 1,
            per_ip: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// Server transactions held, live and lingering (bounded by `max_transactions`).
    pub fn transactions(&self) -> usize {
        self.server_tx.len()
    }

    /// Replaces the users (the driver re-reads the users file when it changes, so
    /// `sip user add` and forwarding changes take effect without a restart).
    pub fn set_users(&mut self, users: HashMap<String, User>) {
        self.users = users;
    }

    /// Bandwidth reserved by admission control.
    pub fn reserved_kbps(&self) -> u32 {
        self.admission.as_ref().map(|a| a.used_kbps()).unwrap_or(0)
    }

    /// The location service (read-only), for tests and presence.
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// One datagram (or one framed stream message) from `from`.
    pub fn on_message(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Vec<Transmit> {
        self.inbound_reliable = false;
        self.handle(bytes, from, now)
    }

    /// One message framed from a TCP connection with `from`; responses to it are addressed
    /// to `from`, which the driver maps back to the connection.
    pub fn on_stream_message(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Vec<Transmit> {
        self.inbound_reliable = true;
        let out = self.handle(bytes, from, now);
        self.inbound_reliable = false;
        out
    }

    fn handle(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Vec<Transmit> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Vec::new(); // keep-alive
        }
        match wire::parse_with(bytes, self.cfg.limits) {
            Ok(m) if m.is_request() => {
                self.counters.requests += 1;
                self.on_request(m, from, now)
            }
            Ok(m) => {
                self.counters.responses += 1;
                self.on_response(m, now)
            }
            Err(e) => {
                self.counters.bad += 1;
                tracing::debug!(peer = %from, error = %e, "malformed SIP message");
                match wire::parse_lenient(bytes, self.cfg.limits) {
                    Some(m) if m.is_request() && m.method() != "ACK" && m.header("Via").is_some() => {
                        let (code, reason) = match e {
                            wire::ParseError::TooLarge(_) => (513, "Message Too Large".to_string()),
                            _ => (400, format!("Bad Request ({e})")),
                        };
                        let resp = Message::response_to(&m, code, &reason, None);
                        vec![Transmit { to: from, msg: resp, stream: None }]
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    fn on_request(&mut self, mut req: Message, from: SocketAddr, now: Instant) -> Vec<Transmit> {
        stamp_received(&mut req, from);
        let Some(key) = key_of(&req) else {
            // Pre-RFC 3261 branch: answer statelessly.
            let resp = Message::response_to(&req, 400, "Bad Request (RFC 3261 branch required)", None);
            return self.reply_stateless(&req, resp, from);
        };
        if req.method() == "ACK" {
            if let Some(e) = self.server_tx.get_mut(&key) {
                let out = e.tx.on_request(&req, now);
                self.counters.retransmissions_absorbed += 1;
                return self.run_server_outputs(&key, out);
            }
            // ACK for a 2xx: end to end, forwarded statelessly along its route.
            return self.forward_stateless(req, now);
        }
        if let Some(e) = self.server_tx.get_mut(&key) {
            self.counters.retransmissions_absorbed += 1;
            let out = e.tx.on_request(&req, now);
            return self.run_server_outputs(&key, out);
        }
        if req.method() == "CANCEL" {
            return self.on_cancel(req, from, key, now);
        }
        // Caps: all transactions, and per client address.
        let n_ip = self.per_ip.get(&from.ip()).copied().unwrap_or(0);
        if self.server_tx.len() >= self.cfg.max_transactions || n_ip >= self.cfg.max_transactions_per_ip {
            let mut resp = Message::response_to(&req, 503, "Service Unavailable", None);
            resp.push("Retry-After", "5");
            return self.reply_stateless(&req, resp, from);
        }
        *self.per_ip.entry(from.ip()).or_default() += 1;
        let reliable = self.inbound_reliable;
        let tx = ServerTransaction::new(&req, reliable, self.cfg.timers);
        self.server_tx.insert(key.clone(), ServerEntry { tx, source: from, reliable, ctx: None, live: true });
        let mut out = Vec::new();
        if req.method() == "INVITE" {
            let trying = Message::response_to(&req, 100, "Trying", None);
            out.extend(self.respond(&key, trying, now));
        }
        out.extend(self.route_request(req, key, now));
        out
    }

    /// §16.3 validation and §16.4 route processing, then local service or forwarding.
    fn route_request(&mut self, mut req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let mf = req.max_forwards().unwrap_or(70);
        if mf == 0 {
            if req.method() == "OPTIONS" && self.is_ours(req.uri().unwrap_or("")) {
                return self.answer_options(&req, key, now);
            }
            let resp = Message::response_to(&req, 483, "Too Many Hops", Some(&tag_for(&key)));
            return self.respond(&key, resp, now);
        }
        if let Some(pr) = req.header("Proxy-Require") {
            let mut resp = Message::response_to(&req, 420, "Bad Extension", Some(&tag_for(&key)));
            resp.push("Unsupported", pr.to_string());
            return self.respond(&key, resp, now);
        }
        // Loop detection (§16.3 step 4): our own Via with the branch we would compute.
        let branch = self.branch_for(&req, 0);
        let me = self.sent_by();
        let looped = req.header_values("Via").iter().filter_map(|v| Via::parse(v)).any(|v| {
            v.sent_by.eq_ignore_ascii_case(&me)
                && v.branch().is_some_and(|b| b.starts_with(&branch[..branch.len() - 2]))
        });
        if looped {
            let resp = Message::response_to(&req, 482, "Loop Detected", Some(&tag_for(&key)));
            return self.respond(&key, resp, now);
        }
        // Route processing: pop a Route that names us.
        let mut routed_by_us = false;
        if let Some(first) = req.header_values("Route").first()
            && let Some(na) = wire::NameAddr::parse(first)
            && self.is_us(&na.uri)
        {
            req.remove_first_value("Route");
            routed_by_us = true;
        }
        let uri = req.uri().unwrap_or("").to_string();
        let in_dialog = req.to().and_then(|t| t.tag().map(str::to_string)).is_some();
        if req.header("Route").is_some()
            || (in_dialog && !self.is_ours(&uri))
            || (routed_by_us && !self.is_ours(&uri))
        {
            if req.method() == "BYE"
                && let (Some(a), Some(cid)) = (self.admission.as_mut(), req.call_id())
            {
                a.release(cid);
            }
            return self.forward_to_next_hop(req, key, now);
        }
        if !self.is_ours(&uri) {
            return self.outbound(req, key, now);
        }
        let target = SipUri::parse(&uri);
        match req.method() {
            "REGISTER" => return self.on_register(req, key, now),
            "OPTIONS" if target.as_ref().is_none_or(|u| u.user.is_none()) => {
                return self.answer_options(&req, key, now);
            }
            "SUBSCRIBE" | "PUBLISH" => {
                let event = req.header("Event").and_then(|e| e.split(';').next()).map(str::trim);
                if event != Some("presence") {
                    let mut resp = Message::response_to(&req, 489, "Bad Event", Some(&tag_for(&key)));
                    resp.push("Allow-Events", "presence");
                    return self.respond(&key, resp, now);
                }
                return if req.method() == "SUBSCRIBE" {
                    self.on_subscribe(req, key, now)
                } else {
                    self.on_publish(req, key, now)
                };
            }
            _ => {}
        }
        let Some(target) = target.filter(|t| t.user.is_some()) else {
            let resp = Message::response_to(&req, 404, "Not Found", Some(&tag_for(&key)));
            return self.respond(&key, resp, now);
        };
        let aor = format!("{}@{}", target.user.as_deref().unwrap_or(""), self.cfg.domain);
        self.locate_and_fork(req, key, aor, now)
    }

    fn locate_and_fork(&mut self, req: Message, key: Key, aor: String, now: Instant) -> Vec<Transmit> {
        let forwarding = self.users.get(&aor).map(|u| u.forwarding.clone()).unwrap_or_default();
        let mut targets: Vec<String> =
            self.registrar.lookup(&aor, now).into_iter().map(|b| b.contact).collect();
        if let Some(always) = &forwarding.always {
            targets = vec![always.clone()];
        }
        if targets.is_empty() {
            let (code, reason) = if self.users.contains_key(&aor) || self.users.is_empty() {
                (480, "Temporarily Unavailable")
            } else {
                (404, "Not Found")
            };
            let resp = Message::response_to(&req, code, reason, Some(&tag_for(&key)));
            return self.respond(&key, resp, now);
        }
        if self.cfg.redirect {
            let mut resp = Message::response_to(&req, 302, "Moved Temporarily", Some(&tag_for(&key)));
            for t in &targets {
                resp.push("Contact", format!("<{t}>"));
            }
            return self.respond(&key, resp, now);
        }
        let cost = match self.admit(&req, &key, now) {
            Ok(c) => c,
            Err(out) => return out,
        };
        let id = self.next_ctx;
        self.next_ctx += 1;
        let noanswer_at = forwarding
            .noanswer
            .as_ref()
            .filter(|_| req.method() == "INVITE" && forwarding.always.is_none())
            .map(|_| {
                now + forwarding.noanswer_secs.map(Duration::from_secs).unwrap_or(self.cfg.noanswer_default)
            });
        let ctx = Context::new(key.clone(), req, forwarding, noanswer_at, cost);
        self.contexts.insert(id, ctx);
        if let Some(e) = self.server_tx.get_mut(&key) {
            e.ctx = Some(id);
        }
        self.fork(id, targets, now)
    }

    /// Admission control for a new call with an SDP offer: its cost in kbit/s (0 when not
    /// counted), or the 503 already sent when the link cannot carry it.
    fn admit(&mut self, req: &Message, key: &Key, now: Instant) -> Result<u32, Vec<Transmit>> {
        let mut cost = 0;
        let initial_invite = req.method() == "INVITE" && req.to().is_some_and(|t| t.tag().is_none());
        if initial_invite && let Some(adm) = self.admission.as_mut() {
            if let Ok(sdp) = wire::sdp::parse(&req.body) {
                cost = sdp.cost_kbps();
            }
            let cid = req.call_id().unwrap_or("").to_string();
            if cost > 0 && !adm.admit(&cid, cost, now) {
                let mut resp = Message::response_to(req, 503, "Service Unavailable", Some(&tag_for(key)));
                resp.push("Retry-After", "30");
                resp.push(
                    "Warning",
                    format!("370 {} \"Insufficient bandwidth on the link\"", self.sent_by()),
                );
                return Err(self.respond(key, resp, now));
            }
        }
        Ok(cost)
    }

    /// A request for another domain (§16.5 with RFC 3263): refused (no open relay) unless it
    /// comes from one of our users, who proves it with `Proxy-Authorization` (407 first);
    /// then the driver is asked to locate the domain's servers.
    fn outbound(&mut self, mut req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let from_user = req
            .from()
            .and_then(|f| SipUri::parse(&f.uri))
            .filter(|u| u.host.eq_ignore_ascii_case(&self.cfg.domain))
            .and_then(|u| u.user);
        let Some(user) = from_user.filter(|_| self.cfg.route_other_domains && !self.users.is_empty()) else {
            let resp = Message::response_to(
                &req,
                403,
                "Forbidden (not a relay for other domains)",
                Some(&tag_for(&key)),
            );
            return self.respond(&key, resp, now);
        };
        let aor = format!("{user}@{}", self.cfg.domain);
        if let Some(out) = self.authenticate_as(&req, &aor, Some(&user), &key, now, true) {
            return out;
        }
        // Our credentials stop here (§22.3); others' go on.
        let domain = self.cfg.domain.clone();
        req.headers.retain(|h| {
            h.name != "Proxy-Authorization"
                || digest::parse_credentials(&h.value).is_none_or(|c| !c.realm.eq_ignore_ascii_case(&domain))
        });
        let cost = match self.admit(&req, &key, now) {
            Ok(c) => c,
            Err(out) => return out,
        };
        let id = self.next_ctx;
        self.next_ctx += 1;
        let uri = req.uri().unwrap_or("").to_string();
        let mut ctx = Context::new(key.clone(), req, Default::default(), None, cost);
        ctx.outbound = true;
        self.contexts.insert(id, ctx);
        if let Some(e) = self.server_tx.get_mut(&key) {
            e.ctx = Some(id);
        }
        self.lookups.push(Lookup { id, uri });
        Vec::new()
    }

    /// Locations queued since the last call: the driver looks each up (RFC 3263) and reports
    /// with [`Proxy::on_located`].
    pub fn take_lookups(&mut self) -> Vec<Lookup> {
        std::mem::take(&mut self.lookups)
    }

    /// The servers found for lookup `id`: the request goes to the first; a timeout or a 503
    /// moves it to the next (RFC 3263 §4.3).
    pub fn on_located(&mut self, id: u64, located: Located, now: Instant) -> Vec<Transmit> {
        let Some(ctx) = self.contexts.get_mut(&id) else { return Vec::new() };
        if ctx.cancelled {
            return self.finish_context(id, now, Some((487, "Request Terminated")));
        }
        match located {
            Located::Targets(t) if !t.is_empty() => {
                ctx.pending_targets = t.into_iter().take(16).collect();
                self.try_next_target(id, now)
            }
            Located::Targets(_) | Located::NotFound => {
                self.finish_context(id, now, Some((404, "Not Found (no SIP server for the domain)")))
            }
            Located::Failed => {
                self.finish_context(id, now, Some((503, "Service Unavailable (cannot locate the domain)")))
            }
        }
    }

    /// Sends an outbound request to its next located server, the Request-URI unchanged.
    fn try_next_target(&mut self, id: u64, now: Instant) -> Vec<Transmit> {
        let timer_c = self.cfg.timer_c;
        let Some(ctx) = self.contexts.get_mut(&id) else { return Vec::new() };
        let Some(target) = ctx.pending_targets.pop_front() else {
            return self.finish_context(id, now, Some((503, "Service Unavailable (no server answered)")));
        };
        let dest = target.addr;
        let base = ctx.request.clone();
        let name = base.uri().and_then(SipUri::parse).map(|u| u.host).unwrap_or_default();
        let stream = outbound_for(target.transport, name);
        let index = ctx.branches.len() + 1;
        if base.method() == "INVITE" {
            ctx.timer_c = Some(now + timer_c);
        }
        let mut fwd = base.clone();
        let branch = self.branch_for(&base, index);
        self.prepare_forward(&mut fwd, &branch, true, target.transport);
        if let Some(ctx) = self.contexts.get_mut(&id) {
            ctx.branches.push(branch.clone());
        }
        self.counters.forwarded += 1;
        self.start_client(fwd, branch, dest, stream, id, now)
    }

    /// The driver could not open (or lost before an answer) the outbound connection to
    /// `to`: every branch sent on one there ends as if it had timed out, so RFC 3263
    /// failover moves it to the next server (§4.3), else the caller gets 408.
    pub fn on_connect_failed(&mut self, to: SocketAddr, now: Instant) -> Vec<Transmit> {
        let failed: Vec<(String, u64)> = self
            .client_tx
            .iter()
            .filter(|(_, e)| e.to == to && e.stream.is_some())
            .map(|(b, e)| (b.clone(), e.ctx))
            .collect();
        let mut out = Vec::new();
        for (branch, id) in failed {
            // Removed first, so its own timer B cannot fail over a second time.
            self.client_tx.remove(&branch);
            out.extend(self.run_client_outputs(&branch, id, to, vec![Output::Timeout], now));
        }
        out
    }

    /// RFC 3263 §4.3: an outbound branch that timed out or got 503 moves on to the next
    /// server, if any is left and the caller has not cancelled.
    fn failover(&mut self, id: u64, branch: &str, now: Instant) -> Option<Vec<Transmit>> {
        let ctx = self.contexts.get_mut(&id)?;
        if !ctx.outbound || ctx.pending_targets.is_empty() || ctx.final_sent || ctx.cancelled {
            return None;
        }
        ctx.done.insert(branch.to_string());
        Some(self.try_next_target(id, now))
    }

    /// Starts one client transaction per target (§16.6).
    fn fork(&mut self, id: u64, targets: Vec<String>, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        let Some(ctx) = self.contexts.get(&id) else { return out };
        let base = ctx.request.clone();
        let start = ctx.branches.len();
        let mut started = Vec::new();
        for (i, target) in targets.into_iter().enumerate().take(16) {
            let Some(dest) = resolve_uri(&target) else { continue };
            let mut fwd = base.clone();
            fwd.set_uri(&target);
            let branch = self.branch_for(&base, start + i + 1);
            self.prepare_forward(&mut fwd, &branch, true, Transport::Udp);
            started.push(branch.clone());
            out.extend(self.start_client(fwd, branch, dest, None, id, now));
        }
        self.counters.forwarded += started.len() as u64;
        let none = started.is_empty();
        let timer_c = self.cfg.timer_c;
        if let Some(ctx) = self.contexts.get_mut(&id) {
            ctx.branches.extend(started);
            if ctx.request.method() == "INVITE" {
                ctx.timer_c = Some(now + timer_c);
            }
        }
        if none {
            out.extend(self.finish_context(
                id,
                now,
                Some((503, "Service Unavailable (no reachable contact)")),
            ));
        }
        out
    }

    /// Via, Max-Forwards and Record-Route for a request we forward.
    fn prepare_forward(&self, fwd: &mut Message, branch: &str, record_route: bool, transport: Transport) {
        let mf = fwd.max_forwards().unwrap_or(70).saturating_sub(1);
        fwd.set("Max-Forwards", mf.to_string());
        if record_route && matches!(fwd.method(), "INVITE" | "SUBSCRIBE" | "REFER") {
            fwd.push_front("Record-Route", format!("<sip:{};lr>", self.sent_by()));
        }
        let proto = match transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        fwd.push_front("Via", format!("SIP/2.0/{proto} {};branch={branch};rport", self.sent_by()));
    }

    /// Forwards along Route or to the Request-URI, statefully (one branch).
    fn forward_to_next_hop(&mut self, req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let next = match req.header_values("Route").first().and_then(|r| wire::NameAddr::parse(r)) {
            Some(na) => na.uri,
            None => req.uri().unwrap_or("").to_string(),
        };
        let (transport, stream) = uri_transport(&next);
        let Some(dest) = resolve_uri(&next) else {
            let resp = Message::response_to(
                &req,
                503,
                "Service Unavailable (next hop not resolvable)",
                Some(&tag_for(&key)),
            );
            return self.respond(&key, resp, now);
        };
        let id = self.next_ctx;
        self.next_ctx += 1;
        let ctx = Context::new(key.clone(), req, Default::default(), None, 0);
        self.contexts.insert(id, ctx);
        if let Some(e) = self.server_tx.get_mut(&key) {
            e.ctx = Some(id);
        }
        let Some(ctx) = self.contexts.get(&id) else { return Vec::new() };
        let mut fwd = ctx.request.clone();
        let branch = self.branch_for(&ctx.request, 1);
        self.prepare_forward(&mut fwd, &branch, false, transport);
        if let Some(ctx) = self.contexts.get_mut(&id) {
            ctx.branches.push(branch.clone());
        }
        self.counters.forwarded += 1;
        self.start_client(fwd, branch, dest, stream, id, now)
    }

    /// ACK for 2xx and other requests we do not keep state for (§16.11).
    fn forward_stateless(&mut self, mut req: Message, now: Instant) -> Vec<Transmit> {
        if let Some(first) = req.header_values("Route").first()
            && let Some(na) = wire::NameAddr::parse(first)
            && self.is_us(&na.uri)
        {
            req.remove_first_value("Route");
        }
        let next = match req.header_values("Route").first().and_then(|r| wire::NameAddr::parse(r)) {
            Some(na) => na.uri,
            None => req.uri().unwrap_or("").to_string(),
        };
        if req.max_forwards() == Some(0) {
            return Vec::new();
        }
        // An ACK sent to the domain itself (a UA that ignored Record-Route): the location
        // service names the contact, as for the INVITE.
        let next = if self.is_ours(&next) {
            let Some(user) = SipUri::parse(&next).and_then(|u| u.user) else { return Vec::new() };
            let aor = format!("{user}@{}", self.cfg.domain);
            match self.registrar.lookup(&aor, now).into_iter().next() {
                Some(b) => {
                    req.set_uri(&b.contact);
                    b.contact
                }
                None => return Vec::new(),
            }
        } else {
            next
        };
        let Some(dest) = resolve_uri(&next) else { return Vec::new() };
        let (transport, stream) = uri_transport(&next);
        let incoming = req.top_via().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let branch = format!("{}{}", wire::BRANCH_COOKIE, short_hash(&format!("ack{incoming}{next}")));
        self.prepare_forward(&mut req, &branch, false, transport);
        vec![Transmit { to: dest, msg: req, stream }]
    }

    fn on_cancel(&mut self, req: Message, from: SocketAddr, key: Key, now: Instant) -> Vec<Transmit> {
        let invite_key = Key { method: "INVITE".into(), ..key };
        let ok = Message::response_to(&req, 200, "OK", Some(&tag_for(&invite_key)));
        let Some(entry) = self.server_tx.get(&invite_key) else {
            let resp = Message::response_to(&req, 481, "Call/Transaction Does Not Exist", None);
            return self.reply_stateless(&req, resp, from);
        };
        let ctx = entry.ctx;
        let mut out = self.reply_stateless(&req, ok, from);
        if let Some(id) = ctx {
            out.extend(self.cancel_branches(id, None));
            if let Some(c) = self.contexts.get_mut(&id) {
                c.cancelled = true;
            }
        } else {
            let resp = Message::response_to(&req, 487, "Request Terminated", Some(&tag_for(&invite_key)));
            out.extend(self.respond(&invite_key, resp, now));
        }
        out
    }

    /// CANCELs every pending branch of a context except `keep` (§16.10).
    fn cancel_branches(&mut self, id: u64, keep: Option<&str>) -> Vec<Transmit> {
        let mut out = Vec::new();
        let Some(ctx) = self.contexts.get(&id) else { return out };
        if ctx.request.method() != "INVITE" {
            return out;
        }
        for b in &ctx.branches {
            // Branches already given up (no-answer retargeting) were cancelled then.
            if Some(b.as_str()) == keep || ctx.done.contains(b) {
                continue;
            }
            let Some(e) = self.client_tx.get(b) else { continue };
            if e.tx.state() != crate::transaction::ClientState::Proceeding {
                continue;
            }
            let inv = e.tx.request();
            let mut cancel = Message::request("CANCEL", inv.uri().unwrap_or("sip:invalid"));
            if let Some(v) = inv.header_values("Via").first() {
                cancel.push("Via", v.clone());
            }
            for h in ["Max-Forwards", "From", "To", "Call-ID", "Route"] {
                if let Some(v) = inv.header(h) {
                    cancel.push(h, v.to_string());
                }
            }
            let n = inv.cseq().map(|c| c.0).unwrap_or(1);
            cancel.push("CSeq", format!("{n} CANCEL"));
            out.push(Transmit { to: e.to, msg: cancel, stream: e.stream.clone() });
        }
        out
    }

    fn on_response(&mut self, mut resp: Message, now: Instant) -> Vec<Transmit> {
        let Some(via) = resp.top_via() else { return Vec::new() };
        if !via.sent_by.eq_ignore_ascii_case(&self.sent_by()) {
            return Vec::new(); // not ours: drop (§16.7 step 1 / §18.1.2)
        }
        let branch = via.branch().unwrap_or("").to_string();
        if resp.method() == "CANCEL" {
            return Vec::new(); // the 200 to our CANCEL
        }
        let Some(entry) = self.client_tx.get_mut(&branch) else {
            // No transaction (2xx retransmission after it ended): forward statelessly.
            resp.remove_first_value("Via");
            return match resp.top_via() {
                Some(v) => vec![Transmit { to: via_dest(&v), msg: resp, stream: None }],
                None => Vec::new(),
            };
        };
        let id = entry.ctx;
        let outs = entry.tx.on_response(resp, now);
        let to = entry.to;
        self.run_client_outputs(&branch, id, to, outs, now)
    }

    fn run_client_outputs(
        &mut self,
        branch: &str,
        id: u64,
        to: SocketAddr,
        outs: Vec<Output>,
        now: Instant,
    ) -> Vec<Transmit> {
        let mut out = Vec::new();
        let stream = self.client_tx.get(branch).and_then(|e| e.stream.clone());
        for o in outs {
            match o {
                Output::Send(m) => out.push(Transmit { to, msg: m, stream: stream.clone() }),
                Output::Deliver(r) => out.extend(self.on_branch_response(id, branch, r, now)),
                Output::Timeout => {
                    if let Some(next) = self.failover(id, branch, now) {
                        out.extend(next);
                        continue;
                    }
                    let code = 408;
                    if let Some(ctx) = self.contexts.get_mut(&id) {
                        let mut timeout = Message::response_to(
                            &ctx.request,
                            code,
                            "Request Timeout",
                            Some(&tag_for(&ctx.server_key)),
                        );
                        // As if it came from the branch: `on_branch_response` pops our Via
                        // first, and the caller's must stay.
                        timeout.push_front("Via", format!("SIP/2.0/UDP {};branch={branch}", self.sent_by()));
                        out.extend(self.on_branch_response(id, branch, timeout, now));
                    }
                }
                Output::Terminated => {
                    self.client_tx.remove(branch);
                }
            }
        }
        out
    }

    /// §16.7: choose what goes upstream.
    fn on_branch_response(
        &mut self,
        id: u64,
        branch: &str,
        mut resp: Message,
        now: Instant,
    ) -> Vec<Transmit> {
        let Some(code) = resp.code() else { return Vec::new() };
        resp.remove_first_value("Via");
        let Some(ctx) = self.contexts.get_mut(&id) else { return Vec::new() };
        let key = ctx.server_key.clone();
        if code == 100 {
            return Vec::new();
        }
        if code < 200 {
            if ctx.final_sent {
                return Vec::new();
            }
            if ctx.timer_c.is_some() {
                ctx.timer_c = Some(now + self.cfg.timer_c);
            }
            return self.respond(&key, resp, now);
        }
        if code == 503
            && let Some(next) = self.failover(id, branch, now)
        {
            return next;
        }
        let Some(ctx) = self.contexts.get_mut(&id) else { return Vec::new() };
        ctx.done.insert(branch.to_string());
        if code < 300 {
            let first = !ctx.final_sent;
            ctx.final_sent = true;
            ctx.noanswer_at = None;
            let mut out = Vec::new();
            if first {
                out.extend(self.cancel_branches(id, Some(branch)));
                out.extend(self.respond(&key, resp.clone(), now));
            } else {
                // Later 2xx are forwarded too (§16.7 step 5), statelessly.
                if let Some(v) = resp.top_via() {
                    out.push(Transmit { to: via_dest(&v), msg: resp, stream: None });
                }
            }
            out.extend(self.maybe_finish(id, now));
            return out;
        }
        if (300..400).contains(&code) && !ctx.final_sent {
            // Recurse on the contacts of a 3xx (§16.7 step 4), at most once per context.
            let contacts: Vec<String> = resp
                .header_values("Contact")
                .iter()
                .filter_map(|c| wire::NameAddr::parse(c))
                .map(|n| n.uri)
                .collect();
            if !contacts.is_empty() && ctx.recursions < 1 {
                ctx.recursions += 1;
                let mut out = self.fork(id, contacts, now);
                out.extend(self.maybe_finish(id, now));
                return out;
            }
        }
        ctx.consider(resp);
        self.maybe_finish(id, now)
    }

    /// When every branch is done, send the best response (or retarget on busy).
    fn maybe_finish(&mut self, id: u64, now: Instant) -> Vec<Transmit> {
        let Some(ctx) = self.contexts.get(&id) else { return Vec::new() };
        let pending = ctx.branches.iter().any(|b| !ctx.done.contains(b));
        if pending {
            return Vec::new();
        }
        self.finish_context(id, now, None)
    }

    fn finish_context(&mut self, id: u64, now: Instant, fallback: Option<(u16, &str)>) -> Vec<Transmit> {
        let Some(ctx) = self.contexts.get_mut(&id) else { return Vec::new() };
        let key = ctx.server_key.clone();
        if ctx.final_sent {
            self.contexts.remove(&id);
            return Vec::new();
        }
        let best_code = ctx.best.as_ref().and_then(|b| b.code());
        // Forwarding on busy: the proxy retargets itself.
        if matches!(best_code, Some(486 | 600))
            && !ctx.cancelled
            && ctx.retargets == 0
            && let Some(busy) = ctx.forwarding.busy.clone()
        {
            ctx.retargets += 1;
            ctx.best = None;
            return self.fork(id, vec![busy], now);
        }
        let resp = match ctx.best.take() {
            Some(b) => b,
            None => {
                let (code, reason) = fallback.unwrap_or((408, "Request Timeout"));
                Message::response_to(&ctx.request, code, reason, Some(&tag_for(&key)))
            }
        };
        ctx.final_sent = true;
        let cost = ctx.cost;
        let cid = ctx.request.call_id().unwrap_or("").to_string();
        self.contexts.remove(&id);
        if cost > 0
            && let Some(a) = self.admission.as_mut()
        {
            a.release(&cid);
        }
        self.respond(&key, resp, now)
    }

    fn on_register(&mut self, req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let tag = tag_for(&key);
        let Some(to) = req.to().and_then(|t| SipUri::parse(&t.uri)) else {
            let resp = Message::response_to(&req, 400, "Bad Request (To)", Some(&tag));
            return self.respond(&key, resp, now);
        };
        let aor = format!("{}@{}", to.user.clone().unwrap_or_default(), self.cfg.domain);
        if let Some(out) = self.authenticate(&req, &aor, to.user.as_deref(), &key, now) {
            return out;
        }
        let was_online = self.registrar.is_online(&aor, now);
        let mut notify_after = false;
        let resp = match self.registrar.register(&req, &aor, now) {
            RegisterOutcome::Ok(bindings) => {
                self.counters.registrations += 1;
                let mut r = Message::response_to(&req, 200, "OK", Some(&tag));
                for c in Registrar::contact_values(&bindings, now) {
                    r.push("Contact", c);
                }
                notify_after = was_online == bindings.is_empty();
                r
            }
            RegisterOutcome::IntervalTooBrief(min) => {
                let mut r = Message::response_to(&req, 423, "Interval Too Brief", Some(&tag));
                r.push("Min-Expires", min.to_string());
                r
            }
            RegisterOutcome::Bad(why) => {
                Message::response_to(&req, 400, &format!("Bad Request ({why})"), Some(&tag))
            }
            RegisterOutcome::OutOfOrder => {
                Message::response_to(&req, 500, "Server Internal Error (CSeq out of order)", Some(&tag))
            }
            RegisterOutcome::TooMany => {
                Message::response_to(&req, 403, "Forbidden (too many contacts)", Some(&tag))
            }
        };
        let mut out = self.respond(&key, resp, now);
        if notify_after {
            out.extend(self.notify_watchers(&aor, now));
        }
        out
    }

    /// Digest authentication of a request for `aor` (§22): `None` when it may proceed (or no
    /// users file is configured), else the 401/403 already sent.
    fn authenticate(
        &mut self,
        req: &Message,
        aor: &str,
        user_part: Option<&str>,
        key: &Key,
        now: Instant,
    ) -> Option<Vec<Transmit>> {
        self.authenticate_as(req, aor, user_part, key, now, false)
    }

    /// Digest as the registrar (`Authorization`, 401) or as the proxy (`Proxy-Authorization`,
    /// 407 with `Proxy-Authenticate`, RFC 3261 §22.3): the same nonces and verifier.
    fn authenticate_as(
        &mut self,
        req: &Message,
        aor: &str,
        user_part: Option<&str>,
        key: &Key,
        now: Instant,
        proxy: bool,
    ) -> Option<Vec<Transmit>> {
        if self.users.is_empty() {
            return None;
        }
        let (header, code, reason, challenge) = if proxy {
            ("Proxy-Authorization", 407, "Proxy Authentication Required", "Proxy-Authenticate")
        } else {
            ("Authorization", 401, "Unauthorized", "WWW-Authenticate")
        };
        let user = self.users.get(aor).cloned();
        let creds = req
            .headers
            .iter()
            .filter(|h| h.name == header)
            .filter_map(|h| digest::parse_credentials(&h.value))
            .find(|c| c.realm.eq_ignore_ascii_case(&self.cfg.domain));
        let result = match (&creds, &user) {
            (None, _) => Err(AuthError::Missing),
            (Some(c), _) if Some(c.username.as_str()) != user_part => Err(AuthError::Denied),
            (Some(c), u) => {
                self.nonces.verify(c, req.method(), |a| u.as_ref().map(|u| u.ha1(a).to_string()), now)
            }
        };
        match result {
            Ok(()) => {}
            Err(AuthError::Denied) if creds.is_some() && user.is_some() => {
                let resp = Message::response_to(req, 403, "Forbidden", Some(&tag_for(key)));
                return Some(self.respond(key, resp, now));
            }
            Err(e) => {
                let mut resp = Message::response_to(req, code, reason, Some(&tag_for(key)));
                let n = if self.cfg.md5_only { 1 } else { 2 };
                for c in
                    self.nonces.challenge(&self.cfg.domain, e == AuthError::Stale, now).into_iter().take(n)
                {
                    resp.push(challenge, c);
                }
                return Some(self.respond(key, resp, now));
            }
        }
        None
    }

    fn answer_options(&mut self, req: &Message, key: Key, now: Instant) -> Vec<Transmit> {
        let mut resp = Message::response_to(req, 200, "OK", Some(&tag_for(&key)));
        resp.push("Allow", ALLOW);
        resp.push("Accept", "application/sdp");
        resp.push("Supported", "path");
        resp.push("Server", "appnet-sip");
        self.respond(&key, resp, now)
    }

    /// Sends a response through the server transaction `key`.
    fn respond(&mut self, key: &Key, mut resp: Message, now: Instant) -> Vec<Transmit> {
        let Some(e) = self.server_tx.get_mut(key) else { return Vec::new() };
        if resp.header("Server").is_none()
            && resp.code().is_some_and(|c| c >= 200)
            && resp.header("Contact").is_none()
        {
            resp.push("Server", "appnet-sip");
        }
        let out = e.tx.respond(resp, now);
        self.run_server_outputs(key, out)
    }

    fn run_server_outputs(&mut self, key: &Key, outs: Vec<Output>) -> Vec<Transmit> {
        let mut out = Vec::new();
        for o in outs {
            match o {
                Output::Send(m) => {
                    let entry = self.server_tx.get(key).map(|e| (e.source, e.reliable));
                    let to = match entry {
                        Some((src, true)) => Some(src),
                        _ => m.top_via().map(|v| via_dest(&v)).or(entry.map(|e| e.0)),
                    };
                    if let Some(to) = to {
                        out.push(Transmit { to, msg: m, stream: None });
                    }
                }
                Output::Terminated | Output::Timeout => {
                    if let Some(e) = self.server_tx.remove(key)
                        && e.live
                    {
                        self.release_per_ip(e.source.ip());
                    }
                }
                Output::Deliver(_) => {}
            }
        }
        // A final response ends the transaction's claim on its source's quota.
        if let Some(e) = self.server_tx.get_mut(key)
            && e.live
            && e.tx.last_response().and_then(|r| r.code()).is_some_and(|c| c >= 200)
        {
            e.live = false;
            let ip = e.source.ip();
            self.release_per_ip(ip);
        }
        out
    }

    fn release_per_ip(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Server transactions still waiting for their final response (those counted by the
    /// per-address cap).
    pub fn live_transactions(&self) -> usize {
        self.server_tx.values().filter(|e| e.live).count()
    }

    fn reply_stateless(&self, _req: &Message, resp: Message, from: SocketAddr) -> Vec<Transmit> {
        let to =
            if self.inbound_reliable { from } else { resp.top_via().map(|v| via_dest(&v)).unwrap_or(from) };
        vec![Transmit { to, msg: resp, stream: None }]
    }

    /// Runs due timers: transaction retransmissions and timeouts, no-answer forwarding,
    /// binding and reservation expiry.
    pub fn tick(&mut self, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        let due: Vec<Key> = self
            .server_tx
            .iter()
            .filter(|(_, e)| e.tx.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(e) = self.server_tx.get_mut(&k) {
                let outs = e.tx.on_tick(now);
                out.extend(self.run_server_outputs(&k, outs));
            }
        }
        let due: Vec<String> = self
            .client_tx
            .iter()
            .filter(|(_, e)| e.tx.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for b in due {
            if let Some(e) = self.client_tx.get_mut(&b) {
                let outs = e.tx.on_tick(now);
                let (id, to) = (e.ctx, e.to);
                out.extend(self.run_client_outputs(&b, id, to, outs, now));
            }
        }
        // No answer in time: cancel the branches and retarget (call forwarding).
        let due: Vec<u64> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.noanswer_at.is_some_and(|t| t <= now) && !c.final_sent)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            out.extend(self.cancel_branches(id, None));
            let Some(ctx) = self.contexts.get_mut(&id) else { continue };
            ctx.noanswer_at = None;
            let Some(target) = ctx.forwarding.noanswer.clone() else { continue };
            // The old branches still finish (487); their responses no longer count.
            let old: Vec<String> = ctx.branches.clone();
            ctx.done.extend(old);
            ctx.retargets += 1;
            out.extend(self.fork(id, vec![target], now));
        }
        // Timer C: branches that ring too long are cancelled and count as 408.
        let due: Vec<u64> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.timer_c.is_some_and(|t| t <= now) && !c.final_sent)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            out.extend(self.cancel_branches(id, None));
            let Some(ctx) = self.contexts.get_mut(&id) else { continue };
            ctx.timer_c = None;
            let pending: Vec<String> =
                ctx.branches.iter().filter(|b| !ctx.done.contains(*b)).cloned().collect();
            ctx.done.extend(pending);
            let timeout =
                Message::response_to(&ctx.request, 408, "Request Timeout", Some(&tag_for(&ctx.server_key)));
            ctx.consider(timeout);
            out.extend(self.maybe_finish(id, now));
        }
        // Contexts whose server transaction is gone and whose branches are over.
        self.contexts.retain(|_, c| !c.final_sent || c.branches.iter().any(|b| !c.done.contains(b)));
        for aor in self.registrar.expire(now) {
            out.extend(self.notify_watchers(&aor, now));
        }
        for sub in self.presence.expire(now) {
            out.extend(self.send_notify(&sub, now, false));
        }
        if let Some(a) = self.admission.as_mut() {
            a.expire(now);
        }
        out
    }

    fn sent_by(&self) -> String {
        self.cfg.local.to_string()
    }

    /// Is this URI's host our domain or our own address?
    fn is_ours(&self, uri: &str) -> bool {
        match SipUri::parse(uri) {
            Some(u) => u.host.eq_ignore_ascii_case(&self.cfg.domain) || self.is_us(uri),
            None => false,
        }
    }

    /// Does this URI name this server (address and port)?
    fn is_us(&self, uri: &str) -> bool {
        let Some(u) = SipUri::parse(uri) else { return false };
        let port = u.port.unwrap_or(5060);
        let host_is_us = u.host.parse::<IpAddr>().is_ok_and(|ip| ip == self.cfg.local.ip())
            || (u.user.is_none() && u.host.eq_ignore_ascii_case(&self.cfg.domain));
        host_is_us && port == self.cfg.local.port()
    }

    /// Our branch for a forwarded request (§16.6 step 8): a hash of what stays the same if
    /// the request comes back to us (Call-ID, tags, CSeq, method, Request-URI as received;
    /// not the Via), plus the branch index, so a looped request is recognised (§16.3 step 4).
    fn branch_for(&self, req: &Message, index: usize) -> String {
        let from_tag = req.from().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default();
        let to_tag = req.to().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default();
        let h = short_hash(&format!(
            "{}|{}|{}|{}|{}|{}",
            req.call_id().unwrap_or(""),
            from_tag,
            to_tag,
            req.cseq().map(|c| c.0).unwrap_or(0),
            req.method(),
            req.uri().unwrap_or("")
        ));
        format!("{}{}{:02x}", wire::BRANCH_COOKIE, h, index % 256)
    }
}

impl Proxy {
    fn on_subscribe(&mut self, req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let tag = tag_for(&key);
        let target = req.to().and_then(|t| SipUri::parse(&t.uri)).and_then(|u| u.user);
        let contact = req.header_values("Contact").first().and_then(|c| wire::NameAddr::parse(c));
        let (Some(user), Some(from), Some(contact)) = (target, req.from(), contact) else {
            let resp =
                Message::response_to(&req, 400, "Bad Request (To user, From and Contact needed)", Some(&tag));
            return self.respond(&key, resp, now);
        };
        let aor = format!("{user}@{}", self.cfg.domain);
        if !self.users.is_empty() && !self.users.contains_key(&aor) {
            let resp = Message::response_to(&req, 404, "Not Found", Some(&tag));
            return self.respond(&key, resp, now);
        }
        let remote_tag = from.tag().unwrap_or("").to_string();
        let dialog = format!("{}|{remote_tag}", req.call_id().unwrap_or(""));
        let asked = req.expires().map(u64::from).unwrap_or(3600);
        let expires = Duration::from_secs(asked.min(presence::DEFAULT_EXPIRES.as_secs()));
        let source_ip = self.server_tx.get(&key).map(|e| e.source.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let local_tag = req.to().and_then(|t| t.tag().map(str::to_string)).unwrap_or_else(|| tag.clone());
        let is_new = !self.presence.subs.contains_key(&dialog);
        if is_new && !expires.is_zero() && !self.presence.has_room(source_ip) {
            let mut resp =
                Message::response_to(&req, 503, "Service Unavailable (too many subscriptions)", Some(&tag));
            resp.push("Retry-After", "60");
            return self.respond(&key, resp, now);
        }
        let sub = Subscription {
            aor,
            contact: contact.uri,
            call_id: req.call_id().unwrap_or("").to_string(),
            remote_tag,
            local_tag: local_tag.clone(),
            watcher: from.uri,
            expires_at: now + expires,
            cseq: self.presence.subs.get(&dialog).map(|s| s.cseq).unwrap_or(0),
            source_ip,
        };
        let mut resp = Message::response_to(&req, 200, "OK", Some(&local_tag));
        resp.push("Expires", expires.as_secs().to_string());
        resp.push("Contact", format!("<sip:{}>", self.sent_by()));
        let mut out = self.respond(&key, resp, now);
        if expires.is_zero() {
            self.presence.subs.remove(&dialog);
            out.extend(self.send_notify(&sub, now, false));
        } else {
            self.presence.subs.insert(dialog, sub.clone());
            out.extend(self.send_notify(&sub, now, true));
        }
        out
    }

    fn on_publish(&mut self, req: Message, key: Key, now: Instant) -> Vec<Transmit> {
        let tag = tag_for(&key);
        let Some(user) = req.uri().and_then(SipUri::parse).and_then(|u| u.user) else {
            let resp = Message::response_to(&req, 404, "Not Found", Some(&tag));
            return self.respond(&key, resp, now);
        };
        let aor = format!("{user}@{}", self.cfg.domain);
        if let Some(out) = self.authenticate(&req, &aor, Some(&user), &key, now) {
            return out;
        }
        let expires = req.expires().map(u64::from).unwrap_or(3600).min(presence::DEFAULT_EXPIRES.as_secs());
        let etag = short_hash(&format!("{aor}{:?}{}", now, req.call_id().unwrap_or("")));
        let body = match (req.header("SIP-If-Match"), self.presence.published.get(&aor)) {
            (Some(m), Some(p)) if m == p.etag => {
                if req.body.is_empty() {
                    p.body.clone()
                } else {
                    req.body.clone()
                }
            }
            (Some(_), _) => {
                let resp = Message::response_to(&req, 412, "Conditional Request Failed", Some(&tag));
                return self.respond(&key, resp, now);
            }
            (None, _) if req.body.is_empty() => {
                let resp = Message::response_to(&req, 400, "Bad Request (PIDF body needed)", Some(&tag));
                return self.respond(&key, resp, now);
            }
            (None, _) => req.body.clone(),
        };
        if body.len() > 8192 {
            let resp = Message::response_to(&req, 413, "Request Entity Too Large", Some(&tag));
            return self.respond(&key, resp, now);
        }
        if expires == 0 {
            self.presence.published.remove(&aor);
        } else {
            let published = presence::Published {
                etag: etag.clone(),
                body,
                expires_at: now + Duration::from_secs(expires),
            };
            self.presence.published.insert(aor.clone(), published);
        }
        let mut resp = Message::response_to(&req, 200, "OK", Some(&tag));
        resp.push("SIP-ETag", etag);
        resp.push("Expires", expires.to_string());
        let mut out = self.respond(&key, resp, now);
        out.extend(self.notify_watchers(&aor, now));
        out
    }

    fn notify_watchers(&mut self, aor: &str, now: Instant) -> Vec<Transmit> {
        let mut out = Vec::new();
        for k in self.presence.watchers_of(aor) {
            if let Some(s) = self.presence.subs.get(&k).cloned() {
                out.extend(self.send_notify(&s, now, true));
            }
        }
        out
    }

    /// A NOTIFY in the subscription's dialog (RFC 6665 §4.2.2), through a client transaction.
    fn send_notify(&mut self, sub: &Subscription, now: Instant, active: bool) -> Vec<Transmit> {
        let Some(dest) = resolve_uri(&sub.contact) else { return Vec::new() };
        let dialog = format!("{}|{}", sub.call_id, sub.remote_tag);
        let cseq = match self.presence.subs.get_mut(&dialog) {
            Some(s) => {
                s.cseq += 1;
                s.cseq
            }
            None => sub.cseq + 1,
        };
        let mut n = Message::request("NOTIFY", &sub.contact);
        let branch = format!("{}{}", wire::BRANCH_COOKIE, short_hash(&format!("notify{dialog}{cseq}")));
        n.push("Via", format!("SIP/2.0/UDP {};branch={branch};rport", self.sent_by()));
        n.push("Max-Forwards", "70");
        n.push("From", format!("<sip:{}>;tag={}", sub.aor, sub.local_tag));
        n.push("To", format!("<{}>;tag={}", sub.watcher, sub.remote_tag));
        n.push("Call-ID", sub.call_id.clone());
        n.push("CSeq", format!("{cseq} NOTIFY"));
        n.push("Contact", format!("<sip:{}>", self.sent_by()));
        n.push("Event", "presence");
        if active {
            n.push("Subscription-State", format!("active;expires={}", presence::left(sub.expires_at, now)));
        } else {
            n.push("Subscription-State", "terminated;reason=timeout");
        }
        n.push("Content-Type", "application/pidf+xml");
        n.body = match self.presence.published.get(&sub.aor) {
            Some(p) => p.body.clone(),
            None => presence::pidf(&sub.aor, self.registrar.is_online(&sub.aor, now)),
        };
        self.start_client(n, branch, dest, None, 0, now)
    }

    /// Starts a client transaction for `msg` on `branch` (context `ctx`, 0 for none) towards
    /// `to` and returns its first transmissions: the one place a branch is recorded and sent.
    fn start_client(
        &mut self,
        msg: Message,
        branch: String,
        to: SocketAddr,
        stream: Option<Outbound>,
        ctx: u64,
        now: Instant,
    ) -> Vec<Transmit> {
        let (tx, outs) = ClientTransaction::start(msg, stream.is_some(), self.cfg.timers, now);
        self.client_tx.insert(branch, ClientEntry { tx, to, stream: stream.clone(), ctx });
        outs.into_iter()
            .filter_map(|o| match o {
                Output::Send(m) => Some(Transmit { to, msg: m, stream: stream.clone() }),
                _ => None,
            })
            .collect()
    }
}

/// Adds received= and rport= to the top Via (RFC 3261 §18.2.1, RFC 3581).
fn stamp_received(req: &mut Message, from: SocketAddr) {
    let Some(mut via) = req.top_via() else { return };
    let (host, _) = via.host_port();
    let ip = from.ip().to_string();
    if host != ip {
        via.params.retain(|(k, _)| k != "received");
        via.params.push(("received".into(), Some(ip)));
    }
    if let Some(i) = via.params.iter().position(|(k, _)| k == "rport") {
        via.params[i].1 = Some(from.port().to_string());
        if !via.params.iter().any(|(k, _)| k == "received") {
            via.params.push(("received".into(), Some(from.ip().to_string())));
        }
    }
    req.remove_first_value("Via");
    req.push_front("Via", via.to_string());
}

/// Where a response goes: received/rport if present, else sent-by (§18.2.2).
fn via_dest(v: &Via) -> SocketAddr {
    let (host, port) = v.host_port();
    let ip = v.param("received").and_then(|r| r.parse::<IpAddr>().ok()).or_else(|| host.parse().ok());
    let port = v.param("rport").and_then(|p| p.parse().ok()).unwrap_or(port);
    SocketAddr::new(ip.unwrap_or(IpAddr::from([127, 0, 0, 1])), port)
}

/// A contact/route URI with an IP-literal host (or localhost) as a socket address.
fn resolve_uri(uri: &str) -> Option<SocketAddr> {
    let u = SipUri::parse(uri)?;
    let ip: IpAddr = match u.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().ok()?,
    };
    Some(SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// The transport a next-hop URI asks for (`sips:` or `;transport=`), with the outbound
/// connection it needs when that is TCP or TLS.
fn uri_transport(uri: &str) -> (Transport, Option<Outbound>) {
    let Some(u) = SipUri::parse(uri) else { return (Transport::Udp, None) };
    let t = if u.scheme.eq_ignore_ascii_case("sips") {
        Transport::Tls
    } else {
        u.param("transport").and_then(Transport::from_param).unwrap_or(Transport::Udp)
    };
    (t, outbound_for(t, u.host))
}

/// The outbound connection for `transport` (none for UDP), TLS checked against `name`.
fn outbound_for(transport: Transport, name: String) -> Option<Outbound> {
    let name = name.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    (transport != Transport::Udp).then_some(Outbound { transport, name })
}

/// The To tag we put on responses we generate for a transaction (stable across retransmissions).
fn tag_for(key: &Key) -> String {
    short_hash(&format!("tag{}{}", key.branch, key.sent_by))
}

/// 64-bit FNV-1a as 16 hex digits: stable identifiers, not security.
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}
