//! The peer agent's tokio driver. One UDP socket carries everything: the SN protocol
//! (registration, refreshed at half its lifetime; offers and answers through the SN), STUN to
//! learn the server-reflexive candidate, TURN for the relayed one, the ICE-style checks
//! ([`Checks`]) and then the media ([`media`]). Commands (send a message, make a call) arrive on
//! a channel; what other users send comes out on another.

use super::candidacy::{self, Candidacy, Step};
use super::checks::{Checks, Credentials, Output, Role};
use super::client as sn;
use super::media::{self, Media};
use super::promotion::Grant;
use super::wire::{self, Candidate, CandidateKind, Msg};
use crate::turn::client::{Event, TurnClient};
use appnet_netkit::Shutdown;
use ring::hmac;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

/// Voice-like stream: 50 packets a second of 160 bytes (20 ms of 8 kHz G.711).
pub const VOICE_PPS: u32 = 50;
/// Bytes per voice packet.
pub const VOICE_BYTES: usize = 160;
/// How long a command waits for a path to the other user.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most sessions at once (each holds its checks and keys).
const MAX_SESSIONS: usize = 32;
/// A session with a path and no call is forgotten after this long without media either way
/// (the next message sets up a new one through the SN).
const IDLE: Duration = Duration::from_secs(300);
/// Most queued commands waiting for one session's path.
const MAX_WAITING: usize = 16;
/// How often the peer pings its SN (the keepalive, which also keeps its NAT's mapping open).
pub const KEEPALIVE: Duration = Duration::from_secs(2);
/// An SN silent for this long is given up: the peer attaches to the next SN it knows.
pub const SN_SILENT: Duration = Duration::from_secs(7);

/// The peer's settings.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub user: String,
    pub password: String,
    pub supernode: SocketAddr,
    /// SNs to attach to when the current one stops answering, in order; the SNs' Pong answers
    /// add the overlay's other live SNs.
    pub fallback: Vec<SocketAddr>,
    /// Local UDP address; with an unspecified IP, the host candidate uses the address the
    /// kernel routes the SN through.
    pub listen: SocketAddr,
    /// STUN server for the server-reflexive candidate (default: the TURN server).
    pub stun: Option<SocketAddr>,
    /// TURN server for the relayed candidate, and its credentials.
    pub turn: Option<(SocketAddr, String, String)>,
    /// Ask to become a supernode too (`--promote-after`).
    pub promote: Option<PromoteConfig>,
}

/// When and where a peer offers to serve as a supernode.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    /// Ask this long after starting (the SN decides on its own minimum uptime).
    pub after: Duration,
    /// The SN port: bound at start (it must answer the SN's unsolicited probe), then the SN
    /// role's socket. With an unspecified IP, the host candidate's IP is advertised.
    pub listen: SocketAddr,
}

/// What a user asks the running peer to do.
#[derive(Debug)]
pub enum Command {
    /// Send a text message.
    Message { to: String, text: String },
    /// Stream voice for `secs` seconds, then report loss and delay.
    Call { to: String, secs: u32 },
}

/// The peer's answer to a command, one line.
pub type Reply = oneshot::Sender<String>;

struct Call {
    secs: u32,
    started: Instant,
    sent: u32,
    rtts: Vec<Duration>,
    ended: Option<Instant>,
    reply: Option<Reply>,
}

struct Session {
    user: String,
    call_id: u32,
    ours: Credentials,
    checks: Option<Checks>,
    key: Option<hmac::Key>,
    path: Option<(Candidate, SocketAddr)>,
    waiting: Vec<(Command, Reply)>,
    /// Until a path is found: when the setup gives up; after: when the idle session is dropped.
    deadline: Instant,
    call: Option<Call>,
    /// Voice packets received from the other side (the stream it is sending us).
    received: u32,
    /// The transaction of our offer's Forward, to match the SN's refusal.
    forward_tid: u32,
    /// The other side's candidates, from its offer or answer.
    remotes: Vec<Candidate>,
}

fn random_string(len: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| A[rand::random::<u8>() as usize % A.len()] as char).collect()
}

/// The path in words: which side's relay it goes through, if any.
fn describe(path: &(Candidate, SocketAddr), remotes: &[Candidate]) -> String {
    let theirs_relayed = remotes.iter().any(|c| c.kind == CandidateKind::Relayed && c.addr == path.1);
    match path.0.kind {
        CandidateKind::Relayed => format!("relayed through our TURN address {} to {}", path.0.addr, path.1),
        _ if theirs_relayed => format!("relayed from {} through their TURN address {}", path.0.addr, path.1),
        _ => format!("direct from {} to {}", path.0.addr, path.1),
    }
}

/// A running peer: its socket, candidates, TURN allocation and sessions.
pub struct Peer {
    cfg: PeerConfig,
    socket: UdpSocket,
    host: Candidate,
    candidates: Vec<Candidate>,
    turn: Option<TurnClient>,
    sessions: HashMap<String, Session>,
    epoch: Instant,
    reregister_at: Instant,
    /// The SN attached to now.
    sn: SocketAddr,
    /// Every SN known: the configured ones first, then the ones the SNs told us about.
    sns: Vec<SocketAddr>,
    /// The SN keys seen (trust on first use); a first registration seals only to these.
    pins: sn::Pins,
    /// When the current SN last answered.
    sn_heard: Instant,
    next_ping: Instant,
    /// The SN the last registration was accepted through.
    attached: watch::Sender<SocketAddr>,
    /// `sns`, for whoever watches.
    known: watch::Sender<Vec<SocketAddr>>,
    /// The SN port, until the SN role takes it over.
    sn_socket: Option<UdpSocket>,
    candidacy: Option<Candidacy>,
    /// Renewed grants for the running SN role.
    renewals: Option<mpsc::Sender<Grant>>,
    /// The SN address once promoted.
    promoted: watch::Sender<Option<SocketAddr>>,
    /// Probe answers this second (at most 20).
    probe_budget: (Instant, u32),
    shutdown: Option<Shutdown>,
}

impl Peer {
    /// Binds, gathers the candidates (host, server-reflexive, relayed) and registers at the SN.
    pub async fn start(cfg: PeerConfig) -> Result<Peer, sn::SnError> {
        let socket = UdpSocket::bind(cfg.listen).await?;
        let port = socket.local_addr()?.port();
        let ip = if cfg.listen.ip().is_unspecified() {
            let probe = UdpSocket::bind(SocketAddr::new(cfg.listen.ip(), 0)).await?;
            probe.connect(cfg.supernode).await?;
            probe.local_addr()?.ip()
        } else {
            cfg.listen.ip()
        };
        let host = Candidate { kind: CandidateKind::Host, addr: SocketAddr::new(ip, port) };
        let mut candidates = vec![host];
        let t = Duration::from_secs(3);
        if let Some(stun) = cfg.stun.or(cfg.turn.as_ref().map(|t| t.0))
            && let Ok(r) = crate::client::binding_on(&socket, stun, t).await
            && r.mapped != host.addr
        {
            candidates.push(Candidate { kind: CandidateKind::ServerReflexive, addr: r.mapped });
        }
        let mut turn = None;
        if let Some((server, user, password)) = &cfg.turn {
            let mut client = TurnClient::new(user, password);
            if let Some(relayed) = allocate(&socket, *server, &mut client, Duration::from_secs(5)).await? {
                candidates.push(Candidate { kind: CandidateKind::Relayed, addr: relayed });
                turn = Some(client);
            }
        }
        let mut sns = vec![cfg.supernode];
        for a in &cfg.fallback {
            if !sns.contains(a) && sns.len() < wire::MAX_SNS {
                sns.push(*a);
            }
        }
        // The first SN that accepts the registration is the one attached to.
        let mut registered = None;
        let mut last_error = None;
        let mut pins = sn::Pins::default();
        for at in &sns {
            match sn::register_pinned(
                &socket,
                *at,
                &cfg.user,
                &cfg.password,
                candidates.clone(),
                t,
                &mut pins,
            )
            .await
            {
                Ok(lifetime) => {
                    registered = Some((*at, lifetime));
                    break;
                }
                Err(e @ sn::SnError::Timeout(_)) => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        let Some((at, lifetime)) = registered else {
            return Err(last_error.unwrap_or(sn::SnError::Timeout(cfg.supernode)));
        };
        let now = Instant::now();
        let mut sn_socket = None;
        let mut candidacy = None;
        if let Some(p) = &cfg.promote {
            let s = UdpSocket::bind(p.listen).await?;
            let port = s.local_addr()?.port();
            let ip = if p.listen.ip().is_unspecified() { host.addr.ip() } else { p.listen.ip() };
            candidacy =
                Some(Candidacy::new(&cfg.user, &cfg.password, SocketAddr::new(ip, port), p.after, now));
            sn_socket = Some(s);
        }
        Ok(Peer {
            cfg,
            socket,
            host,
            candidates,
            turn,
            sessions: HashMap::new(),
            epoch: now,
            reregister_at: now + Duration::from_secs(lifetime.max(2) as u64 / 2),
            sn: at,
            sn_heard: now,
            next_ping: now,
            attached: watch::Sender::new(at),
            known: watch::Sender::new(sns.clone()),
            sn_socket,
            candidacy,
            renewals: None,
            promoted: watch::Sender::new(None),
            probe_budget: (now, 0),
            shutdown: None,
            sns,
            pins,
        })
    }

    /// The address this peer serves as a supernode at, once promoted.
    pub fn promoted(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.promoted.subscribe()
    }

    /// The SN port it asks to be promoted at (`--promote-after`).
    pub fn sn_port(&self) -> Option<SocketAddr> {
        self.candidacy.as_ref().map(|c| c.sn_addr())
    }

    /// The SN the peer is registered through; it changes when the peer fails over.
    pub fn attached(&self) -> watch::Receiver<SocketAddr> {
        self.attached.subscribe()
    }

    /// Every SN the peer knows (configured, then learnt from its SNs' Pong answers); it
    /// grows as the peer learns more.
    pub fn supernodes(&self) -> watch::Receiver<Vec<SocketAddr>> {
        self.known.subscribe()
    }

    /// The current SN went silent: attach to the next one known and register there at once.
    fn fail_over(&mut self, now: Instant) {
        let at = self.sns.iter().position(|a| *a == self.sn).unwrap_or(0);
        let next = self.sns.get((at + 1) % self.sns.len().max(1)).copied().unwrap_or(self.sn);
        tracing::warn!(silent = %self.sn, next = %next, "the supernode stopped answering: attaching to another");
        self.sn = next;
        self.sn_heard = now;
        self.next_ping = now;
        self.reregister_at = now;
    }

    /// Our candidates as registered.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Serves commands until `shutdown`; lines for the user (`<from>: TEXT`, call summaries)
    /// go to `lines`.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<(Command, Reply)>,
        lines: mpsc::UnboundedSender<String>,
        shutdown: Shutdown,
    ) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut reg_tid: Option<u32> = None;
        let mut sn_buf = vec![0u8; 2048];
        self.shutdown = Some(shutdown.clone());
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                got = async {
                    match self.sn_socket.as_ref() {
                        Some(s) => s.recv_from(&mut sn_buf).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let Ok((n, from)) = got else { continue };
                    self.on_sn_port(&sn_buf[..n], from, Instant::now()).await;
                }
                cmd = commands.recv() => {
                    let Some((cmd, reply)) = cmd else { break };
                    self.command(cmd, reply, Instant::now()).await;
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if now.saturating_duration_since(self.sn_heard) > SN_SILENT {
                        self.fail_over(now);
                    }
                    if now >= self.next_ping {
                        self.next_ping = now + KEEPALIVE;
                        let ping = wire::encode(rand::random(), &Msg::Ping);
                        let _ = self.socket.send_to(&ping, self.sn).await;
                    }
                    if now >= self.reregister_at {
                        self.reregister_at = now + Duration::from_secs(5);
                        let tid = rand::random();
                        reg_tid = Some(tid);
                        let hello = wire::encode(tid, &Msg::Hello { user: self.cfg.user.clone() });
                        let _ = self.socket.send_to(&hello, self.sn).await;
                    }
                    if let Some(hello) = self.candidacy.as_mut().and_then(|c| c.poll(now)) {
                        let _ = self.socket.send_to(&hello, self.sn).await;
                    }
                    self.timers(now, &lines).await;
                }
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    let now = Instant::now();
                    let data = buf[..n].to_vec();
                    if from == self.sn {
                        self.on_sn(&data, &mut reg_tid, now, &lines).await;
                    } else if self.cfg.turn.as_ref().is_some_and(|t| t.0 == from) {
                        let events = self.turn.as_mut().map(|t| t.receive(&data, now)).unwrap_or_default();
                        self.turn_events(events, now, &lines).await;
                    } else {
                        self.on_peer(self.host, from, &data, now, &lines).await;
                    }
                }
            }
        }
        for s in self.sessions.values_mut() {
            for (_, reply) in s.waiting.drain(..) {
                let _ = reply.send("error: the peer is stopping".into());
            }
        }
        if let (Some(t), Some((server, ..))) = (self.turn.as_mut(), self.cfg.turn.as_ref()) {
            for e in t.close(Instant::now()) {
                if let Event::Transmit(raw) = e {
                    let _ = self.socket.send_to(&raw, *server).await;
                }
            }
        }
    }

    async fn to_turn(&self, raw: &[u8]) {
        if let Some((server, ..)) = &self.cfg.turn {
            let _ = self.socket.send_to(raw, *server).await;
        }
    }

    /// Sends `data` from base `local` to `to`: straight from the socket, or as a Send
    /// indication through our TURN allocation (after a permission for `to`).
    async fn transmit(&mut self, local: Candidate, to: SocketAddr, data: &[u8], now: Instant) {
        if local.kind != CandidateKind::Relayed {
            let _ = self.socket.send_to(data, to).await;
            return;
        }
        let Some(turn) = self.turn.as_mut() else { return };
        let mut out: Vec<Vec<u8>> = turn
            .permit(to.ip(), now)
            .into_iter()
            .filter_map(|e| if let Event::Transmit(r) = e { Some(r) } else { None })
            .collect();
        out.push(turn.send_to(to, data));
        for raw in out {
            self.to_turn(&raw).await;
        }
    }

    async fn turn_events(&mut self, events: Vec<Event>, now: Instant, lines: &mpsc::UnboundedSender<String>) {
        for e in events {
            match e {
                Event::Transmit(raw) => self.to_turn(&raw).await,
                Event::Data { peer, data } => {
                    if let Some(relayed) =
                        self.candidates.iter().find(|c| c.kind == CandidateKind::Relayed).copied()
                    {
                        Box::pin(self.on_peer(relayed, peer, &data, now, lines)).await;
                    }
                }
                Event::Allocated { .. } => {}
                Event::Failed(why) => tracing::warn!(%why, "TURN allocation lost"),
            }
        }
    }

    async fn command(&mut self, cmd: Command, reply: Reply, now: Instant) {
        let to = match &cmd {
            Command::Message { to, .. } | Command::Call { to, .. } => to.clone(),
        };
        if !wire::valid_user(&to) || to == self.cfg.user {
            let _ = reply.send(format!("error: cannot call {to:?}"));
            return;
        }
        if let Some(s) = self.sessions.get_mut(&to) {
            if s.path.is_some() {
                self.act(&to, cmd, reply, now).await;
            } else if s.waiting.len() < MAX_WAITING {
                s.waiting.push((cmd, reply));
            } else {
                let _ = reply.send("error: too many commands waiting for this user".into());
            }
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            let _ = reply.send("error: too many sessions".into());
            return;
        }
        // Offer: our credentials and candidates, through the SN.
        let call_id = rand::random();
        let ours = Credentials { ufrag: random_string(8), pwd: random_string(24) };
        let offer = Msg::Offer {
            call: call_id,
            answer: false,
            ufrag: ours.ufrag.clone(),
            pwd: ours.pwd.clone(),
            candidates: self.candidates.clone(),
        };
        let fwd =
            Msg::Forward { from: self.cfg.user.clone(), to: to.clone(), payload: wire::encode(0, &offer) };
        let forward_tid = rand::random();
        let _ = self.socket.send_to(&wire::encode(forward_tid, &fwd), self.sn).await;
        tracing::info!(user = %to, "offer sent through the supernode");
        self.sessions.insert(
            to.clone(),
            Session {
                user: to,
                call_id,
                ours,
                checks: None,
                key: None,
                path: None,
                waiting: vec![(cmd, reply)],
                deadline: now + CONNECT_TIMEOUT,
                call: None,
                received: 0,
                forward_tid,
                remotes: Vec::new(),
            },
        );
    }

    async fn on_sn(
        &mut self,
        raw: &[u8],
        reg_tid: &mut Option<u32>,
        now: Instant,
        lines: &mpsc::UnboundedSender<String>,
    ) {
        let Ok((tid, msg)) = wire::decode(raw) else { return };
        self.sn_heard = now;
        if let Some(c) = self.candidacy.as_mut() {
            match c.on_sn(tid, &msg, now) {
                Step::NotOurs => {}
                Step::Send(d) => {
                    let _ = self.socket.send_to(&d, self.sn).await;
                    return;
                }
                Step::Granted(grant) => {
                    self.granted(grant, lines);
                    return;
                }
                Step::Refused(code, reason) => {
                    tracing::info!(code, %reason, "promotion refused");
                    return;
                }
            }
        }
        match msg {
            Msg::Pong { sns } => {
                let before = self.sns.len();
                for a in sns {
                    if !self.sns.contains(&a) && self.sns.len() < wire::MAX_SNS {
                        self.sns.push(a);
                    }
                }
                if self.sns.len() != before {
                    self.known.send_replace(self.sns.clone());
                }
            }
            Msg::Challenge { nonce, salt: Some(salt), sn_key } if Some(tid) == *reg_tid => {
                if !self.pins.check(self.sn, sn_key) {
                    // Only a first registration seals to the key; this proof does not use it.
                    tracing::warn!(sn = %self.sn, "the supernode presents another key than before");
                }
                let key = super::auth::ClientKey::derive(&self.cfg.password, &salt);
                let v = key.verifier(salt);
                let signed = wire::register_signed_part(&self.cfg.user, None, &self.candidates);
                let proof = wire::Proof { nonce, proof: key.prove(&v.stored_key, &nonce, &signed) };
                let reg = Msg::Register {
                    user: self.cfg.user.clone(),
                    proof,
                    bind: None,
                    candidates: self.candidates.clone(),
                };
                let _ = self.socket.send_to(&wire::encode(tid, &reg), self.sn).await;
            }
            Msg::Registered { lifetime } if Some(tid) == *reg_tid => {
                *reg_tid = None;
                self.reregister_at = now + Duration::from_secs(lifetime.max(2) as u64 / 2);
                if *self.attached.borrow() != self.sn {
                    self.attached.send_replace(self.sn);
                    let _ = lines.send(format!("appnet skype: re-registered at supernode {}", self.sn));
                }
            }
            Msg::Deliver { from, payload } => {
                if let Ok((_, Msg::Offer { call, answer, ufrag, pwd, candidates })) = wire::decode(&payload) {
                    self.offer(from, call, answer, Credentials { ufrag, pwd }, candidates, now).await;
                }
            }
            Msg::Error { code, reason } => {
                tracing::warn!(code, %reason, "the supernode refused");
                let user = self
                    .sessions
                    .iter()
                    .find(|(_, s)| s.forward_tid == tid && s.path.is_none())
                    .map(|(u, _)| u.clone());
                if let Some(mut s) = user.and_then(|u| self.sessions.remove(&u)) {
                    for (_, reply) in s.waiting.drain(..) {
                        let _ = reply.send(format!("error: {}: {code} {reason}", s.user));
                    }
                }
            }
            _ => {}
        }
    }

    /// A datagram on the SN port before the SN role runs: only probes are answered.
    async fn on_sn_port(&mut self, raw: &[u8], from: SocketAddr, now: Instant) {
        if now.saturating_duration_since(self.probe_budget.0) >= Duration::from_secs(1) {
            self.probe_budget = (now, 0);
        }
        if self.probe_budget.1 >= 20 {
            return;
        }
        let Some(key) = self.candidacy.as_ref().and_then(|c| c.probe_key()) else { return };
        if let (Some(ack), Some(s)) = (candidacy::answer_probe(raw, &key), self.sn_socket.as_ref()) {
            self.probe_budget.1 += 1;
            let _ = s.send_to(&ack, from).await;
        }
    }

    /// A grant arrived: start the SN role on the SN port, or hand it the renewed keys.
    fn granted(&mut self, grant: Grant, lines: &mpsc::UnboundedSender<String>) {
        if let Some(r) = &self.renewals
            && !r.is_closed()
        {
            let _ = r.try_send(grant);
            return;
        }
        let (Some(socket), Some(shutdown)) = (self.sn_socket.take(), self.shutdown.clone()) else {
            // The SN role ran and stopped (its grant ran out or was withdrawn): stay a peer.
            self.candidacy = None;
            return;
        };
        let (tx, rx) = mpsc::channel(2);
        let config = crate::config::SupernodeConfig::default();
        let Some((advertised, Some(key))) = self.candidacy.as_ref().map(|c| (c.sn_addr(), c.probe_key()))
        else {
            return;
        };
        match super::Supernode::promoted(socket, advertised, key, &config, grant, rx) {
            Ok(sn) => {
                use appnet_netkit::Service;
                tracing::info!(%advertised, "promoted: serving as a supernode too");
                let _ = lines.send(format!("appnet skype: promoted: supernode on udp {advertised}"));
                self.promoted.send_replace(Some(advertised));
                self.renewals = Some(tx);
                tokio::spawn(async move {
                    let _ = sn.run(shutdown).await;
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the supernode role"),
        }
    }

    async fn offer(
        &mut self,
        from: String,
        call: u32,
        answer: bool,
        theirs: Credentials,
        remotes: Vec<Candidate>,
        now: Instant,
    ) {
        // The other side's TURN server must let their packets in: permissions for their IPs.
        for r in &remotes {
            if let Some(t) = self.turn.as_mut() {
                for e in t.permit(r.addr.ip(), now) {
                    if let Event::Transmit(raw) = e {
                        self.to_turn(&raw).await;
                    }
                }
            }
        }
        let bases: Vec<Candidate> = self.candidates.clone();
        if answer {
            let Some(s) = self.sessions.get_mut(&from).filter(|s| s.call_id == call && s.checks.is_none())
            else {
                return;
            };
            tracing::info!(user = %from, candidates = remotes.len(), "answer received: checking pairs");
            s.key = Some(media::session_key(&s.ours.pwd, &theirs.pwd));
            s.remotes = remotes.clone();
            s.checks = Some(Checks::new(Role::Controlling, s.ours.clone(), theirs, &bases, &remotes, now));
            return;
        }
        if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&from) {
            return;
        }
        let ours = Credentials { ufrag: random_string(8), pwd: random_string(24) };
        let reply = Msg::Offer {
            call,
            answer: true,
            ufrag: ours.ufrag.clone(),
            pwd: ours.pwd.clone(),
            candidates: self.candidates.clone(),
        };
        let fwd =
            Msg::Forward { from: self.cfg.user.clone(), to: from.clone(), payload: wire::encode(0, &reply) };
        let _ = self.socket.send_to(&wire::encode(rand::random(), &fwd), self.sn).await;
        tracing::info!(user = %from, candidates = remotes.len(), "offer received: answered, checking pairs");
        let key = media::session_key(&theirs.pwd, &ours.pwd);
        let checks = Checks::new(Role::Controlled, ours.clone(), theirs, &bases, &remotes, now);
        self.sessions.insert(
            from.clone(),
            Session {
                user: from,
                call_id: call,
                ours,
                checks: Some(checks),
                key: Some(key),
                path: None,
                waiting: Vec::new(),
                deadline: now + CONNECT_TIMEOUT,
                call: None,
                received: 0,
                forward_tid: 0,
                remotes: remotes.clone(),
            },
        );
    }

    async fn outputs(&mut self, user: &str, outs: Vec<Output>, now: Instant) {
        for o in outs {
            match o {
                Output::Transmit { local, to, data } => self.transmit(local, to, &data, now).await,
                Output::Selected { local, remote } => {
                    let Some(s) = self.sessions.get_mut(user) else { continue };
                    s.path = Some((local, remote));
                    s.deadline = now + IDLE;
                    tracing::info!(%user, path = %describe(&(local, remote), &s.remotes), "path selected");
                    let waiting = std::mem::take(&mut s.waiting);
                    for (cmd, reply) in waiting {
                        Box::pin(self.act(user, cmd, reply, now)).await;
                    }
                }
                Output::Failed => {
                    tracing::info!(%user, "every candidate pair failed");
                    if let Some(mut s) = self.sessions.remove(user) {
                        for (_, reply) in s.waiting.drain(..) {
                            let _ =
                                reply.send(format!("error: no path to {user}: every candidate pair failed"));
                        }
                    }
                }
            }
        }
    }

    async fn send_media(&mut self, user: &str, m: &Media, now: Instant) {
        let Some(s) = self.sessions.get(user) else { return };
        let (Some(key), Some(path)) = (&s.key, s.path) else { return };
        let raw = media::encode(key, s.call_id, m);
        self.transmit(path.0, path.1, &raw, now).await;
    }

    async fn act(&mut self, user: &str, cmd: Command, reply: Reply, now: Instant) {
        if let Some(s) = self.sessions.get_mut(user) {
            s.deadline = now + IDLE;
        }
        let Some((path, remotes)) = self.sessions.get(user).and_then(|s| Some((s.path?, s.remotes.clone())))
        else {
            return;
        };
        match cmd {
            Command::Message { text, .. } => {
                self.send_media(user, &Media::Text(text), now).await;
                let _ = reply.send(format!("sent to {user}, {}", describe(&path, &remotes)));
            }
            Command::Call { secs, .. } => {
                let Some(s) = self.sessions.get_mut(user) else { return };
                if s.call.is_some() {
                    let _ = reply.send(format!("error: already in a call with {user}"));
                    return;
                }
                s.call = Some(Call {
                    secs,
                    started: now,
                    sent: 0,
                    rtts: Vec::new(),
                    ended: None,
                    reply: Some(reply),
                });
            }
        }
    }

    async fn timers(&mut self, now: Instant, lines: &mpsc::UnboundedSender<String>) {
        let events = self.turn.as_mut().map(|t| t.poll(now)).unwrap_or_default();
        self.turn_events(events, now, lines).await;
        let users: Vec<String> = self.sessions.keys().cloned().collect();
        for user in users {
            let Some(s) = self.sessions.get_mut(&user) else { continue };
            if s.path.is_none() && now > s.deadline {
                if let Some(mut s) = self.sessions.remove(&user) {
                    for (_, reply) in s.waiting.drain(..) {
                        let _ = reply.send(format!("error: no answer from {user} (offline, or no path)"));
                    }
                }
                continue;
            }
            if s.path.is_some() && s.call.is_none() && now > s.deadline {
                tracing::info!(%user, "idle session closed");
                self.sessions.remove(&user);
                continue;
            }
            let outs = s.checks.as_mut().map(|c| c.poll(now)).unwrap_or_default();
            self.outputs(&user, outs, now).await;
            self.voice(&user, now).await;
        }
    }

    /// The caller's side of a call: 50 packets/s until `secs`, then End, then the report.
    async fn voice(&mut self, user: &str, now: Instant) {
        let epoch = self.epoch;
        let Some(call) = self.sessions.get_mut(user).and_then(|s| s.call.as_mut()) else { return };
        if let Some(ended) = call.ended {
            if now.duration_since(ended) > Duration::from_secs(3)
                && let Some(s) = self.sessions.get_mut(user)
                && let Some(mut call) = s.call.take()
                && let Some(reply) = call.reply.take()
            {
                let _ = reply
                    .send(format!("call with {user}: sent {} voice packets, no report came back", call.sent));
            }
            return;
        }
        let due =
            ((now.duration_since(call.started).as_millis() as u64 * VOICE_PPS as u64) / 1000) as u32 + 1;
        let total = call.secs * VOICE_PPS;
        let mut packets = Vec::new();
        while call.sent < due.min(total) {
            let sent_us = now.duration_since(epoch).as_micros() as u64;
            packets.push(Media::Voice { seq: call.sent, sent_us, samples: vec![0xD5; VOICE_BYTES] });
            call.sent += 1;
        }
        if call.sent >= total {
            call.ended = Some(now);
            packets.push(Media::End { sent: call.sent });
        }
        for p in packets {
            self.send_media(user, &p, now).await;
        }
    }

    async fn on_peer(
        &mut self,
        base: Candidate,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
        lines: &mpsc::UnboundedSender<String>,
    ) {
        if !media::is_media(data) {
            let users: Vec<String> = self.sessions.keys().cloned().collect();
            for user in users {
                let outs = match self.sessions.get_mut(&user).and_then(|s| s.checks.as_mut()) {
                    Some(c) => c.receive(base, from, data, now),
                    None => continue,
                };
                self.outputs(&user, outs, now).await;
            }
            return;
        }
        let Some(call_id) = media::call_of(data) else { return };
        let Some(s) = self.sessions.values_mut().find(|s| s.call_id == call_id) else {
            tracing::debug!(%from, call_id, "media for no session");
            return;
        };
        let Some(m) = s.key.as_ref().and_then(|k| media::decode(k, data)) else {
            tracing::debug!(%from, user = %s.user, "media with a bad tag");
            return;
        };
        let user = s.user.clone();
        s.deadline = now + IDLE;
        match m {
            Media::Text(t) => {
                let _ = lines.send(format!("{user}: {t}"));
            }
            Media::Voice { seq, sent_us, .. } => {
                s.received += 1;
                if seq % 10 == 0 {
                    self.send_media(&user, &Media::Echo { sent_us }, now).await;
                }
            }
            Media::Echo { sent_us } => {
                let sent = Duration::from_micros(sent_us);
                let rtt = now.duration_since(self.epoch).saturating_sub(sent);
                if let Some(c) = s.call.as_mut() {
                    c.rtts.push(rtt);
                }
            }
            Media::End { sent } => {
                let received = s.received;
                s.received = 0;
                let lost = sent.saturating_sub(received);
                let _ = lines.send(format!(
                    "{user}: voice stream over: received {received} of {sent} packets ({:.1}% lost)",
                    lost as f64 * 100.0 / sent.max(1) as f64
                ));
                self.send_media(&user, &Media::Report { received }, now).await;
            }
            Media::Report { received } => {
                let via = s.path.map(|p| describe(&p, &s.remotes)).unwrap_or_default();
                if let Some(mut call) = s.call.take()
                    && let Some(reply) = call.reply.take()
                {
                    let lost = call.sent.saturating_sub(received);
                    let avg = if call.rtts.is_empty() {
                        "no round trip measured".to_string()
                    } else {
                        let sum: Duration = call.rtts.iter().sum();
                        let max = call.rtts.iter().max().copied().unwrap_or_default();
                        format!(
                            "delay (half the round trip) avg {:.2} ms, max {:.2} ms",
                            sum.as_secs_f64() * 500.0 / call.rtts.len() as f64,
                            max.as_secs_f64() * 500.0
                        )
                    };
                    let _ = reply.send(format!(
                        "call with {user} ({via}): sent {} voice packets ({VOICE_PPS}/s of {VOICE_BYTES} bytes), {received} received, {lost} lost ({:.1}%), {avg}",
                        call.sent,
                        lost as f64 * 100.0 / call.sent.max(1) as f64
                    ));
                }
            }
        }
    }
}

/// Drives a TURN Allocate to completion on `socket` (before the peer's loop runs); `None` when
/// the server refuses or does not answer.
async fn allocate(
    socket: &UdpSocket,
    server: SocketAddr,
    client: &mut TurnClient,
    timeout: Duration,
) -> std::io::Result<Option<SocketAddr>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = client.start(Instant::now());
    let mut buf = vec![0u8; 2048];
    loop {
        for e in events.drain(..) {
            match e {
                Event::Transmit(raw) => {
                    socket.send_to(&raw, server).await?;
                }
                Event::Allocated { relayed, .. } => return Ok(Some(relayed)),
                Event::Failed(why) => {
                    tracing::warn!(%why, "no relayed candidate");
                    return Ok(None);
                }
                Event::Data { .. } => {}
            }
        }
        match tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
            socket.recv_from(&mut buf),
        )
        .await
        {
            Ok(Ok((n, from))) if from == server => events = client.receive(&buf[..n], Instant::now()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) if tokio::time::Instant::now() >= deadline => return Ok(None),
            Err(_) => events = client.poll(Instant::now()),
        }
    }
}
