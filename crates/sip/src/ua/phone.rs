//! `appnet sip phone`: registers (with Digest, refreshed at half the granted expiry),
//! answers INVITEs with 180 then 200 and an SDP answer (or 486 when busy), echoes the
//! caller's audio back, answers BYE, CANCEL and OPTIONS, and unregisters on shutdown.

use super::call::{MediaReport, TraceFn, local_ip_towards};
use super::{
    Dialog, auth, contact_uri, new_request, remote_media, response_target, sdp_pcmu, token, trace_line,
    via_for,
};
use crate::rtp::{ReceiverStats, RtpPacket, Sender};
use crate::transaction::{ClientTransaction, Output, Timers};
use crate::wire::{Message, SipUri};
use appnet_netkit::Shutdown;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Called with each finished call's media report (the CLI prints it).
pub type CallEndFn = std::sync::Arc<dyn Fn(&MediaReport) + Send + Sync>;

/// How the phone behaves.
#[derive(Clone)]
pub struct PhoneConfig {
    /// `bob@umass.edu`.
    pub user: String,
    /// Registrar/outbound proxy; `None`: no registration, callers reach us directly.
    pub proxy: Option<SocketAddr>,
    pub password: Option<String>,
    /// SIP address to listen on (port 0: any).
    pub listen: SocketAddr,
    /// Answer with 200 right after 180; otherwise ring until the caller gives up.
    pub auto_answer: bool,
    /// Answer every INVITE with 486 Busy Here.
    pub busy: bool,
    /// Registration lifetime asked for, seconds.
    pub expires: u32,
    /// Stop after this many answered calls ended.
    pub max_calls: Option<u64>,
    /// Called with each finished call's media report.
    pub on_call_end: Option<CallEndFn>,
    pub trace: Option<TraceFn>,
}

/// A bound phone, ready to run.
pub struct Phone {
    cfg: PhoneConfig,
    aor: SipUri,
    sock: UdpSocket,
    local: SocketAddr,
}

/// The registration client's state (sans-IO apart from the socket the loop owns).
struct Registration {
    tx: Option<(ClientTransaction, String)>,
    cseq: u32,
    call_id: String,
    from: String,
    nc: u32,
    refresh_at: Option<Instant>,
    expires: u32,
    registered: bool,
}

struct ActiveCall {
    dialog: Dialog,
    ok: Message,
    ok_dest: SocketAddr,
    acked: bool,
    retransmit: Option<(Instant, Duration)>,
    give_up: Instant,
    rtp: UdpSocket,
    media: SocketAddr,
    sender: Sender,
    stats: ReceiverStats,
}

struct Ringing {
    invite: Message,
    to: String,
    src: SocketAddr,
}

impl Phone {
    /// Binds the SIP socket (to an address that reaches the proxy when `listen` is
    /// unspecified).
    pub async fn bind(mut cfg: PhoneConfig) -> std::io::Result<Phone> {
        let aor = super::aor_uri(&cfg.user).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "user must be user@domain")
        })?;
        if cfg.listen.ip().is_unspecified() {
            let ip = match cfg.proxy {
                Some(p) => local_ip_towards(p).await?,
                None => std::net::Ipv4Addr::LOCALHOST.into(),
            };
            cfg.listen.set_ip(ip);
        }
        let sock = UdpSocket::bind(cfg.listen).await?;
        let local = sock.local_addr()?;
        Ok(Phone { cfg, aor, sock, local })
    }

    /// The SIP address calls reach.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn trace(&self, m: &Message, from: &str, to: &str) {
        if let Some(t) = &self.cfg.trace {
            t(&trace_line(m, from, to));
        }
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.aor.user.as_deref().unwrap_or(""), self.local)
    }

    fn register_request(
        &self,
        reg: &mut Registration,
        expires: u32,
        authz: Option<(&str, String)>,
    ) -> Message {
        reg.cseq += 1;
        let registrar = format!("sip:{}", self.aor.host);
        let aor = format!("<sip:{}>", self.aor.aor());
        let mut m = new_request(
            "REGISTER",
            &registrar,
            &reg.from,
            &aor,
            &reg.call_id,
            reg.cseq,
            &via_for(self.local),
        );
        m.push("Contact", self.contact());
        m.push("Expires", expires.to_string());
        m.push("User-Agent", "appnet");
        if let Some((h, v)) = authz {
            m.push(h, v);
        }
        m
    }

    async fn send_to(&self, m: &Message, dest: SocketAddr) {
        let _ = self.sock.send_to(&m.to_bytes(), dest).await;
    }

    /// Runs until `shutdown` (then unregisters) or `max_calls` calls ended. Returns the
    /// media reports of the answered calls.
    pub async fn run(self, shutdown: Shutdown) -> std::io::Result<Vec<MediaReport>> {
        let mut reports = Vec::new();
        let mut reg = Registration {
            tx: None,
            cseq: 0,
            call_id: format!("{}@{}", token(), self.local.ip()),
            from: format!("<sip:{}>;tag={}", self.aor.aor(), token()),
            nc: 0,
            refresh_at: self.cfg.proxy.map(|_| Instant::now()),
            expires: self.cfg.expires,
            registered: false,
        };
        let me = self.cfg.user.clone();
        let mut ringing: Option<Ringing> = None;
        let mut active: Option<ActiveCall> = None;
        let mut buf = vec![0u8; 65_536];
        let mut rbuf = vec![0u8; 2048];
        let mut unregistering = false;
        loop {
            let now = Instant::now();
            if let (Some(at), Some(proxy)) = (reg.refresh_at, self.cfg.proxy)
                && now >= at
                && reg.tx.is_none()
            {
                reg.refresh_at = None;
                reg.nc = 0;
                let expires = reg.expires;
                let m = self.register_request(&mut reg, expires, None);
                self.start_reg(&mut reg, m, proxy, &me).await;
            }
            let wake = [
                reg.refresh_at,
                reg.tx.as_ref().and_then(|t| t.0.deadline()),
                active.as_ref().and_then(|a| a.retransmit.map(|r| r.0)),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            let rtp_recv = async {
                match &active {
                    Some(a) => a.rtp.recv_from(&mut rbuf).await.map(|(n, _)| n),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.wait(), if !unregistering => {
                    let Some(proxy) = self.cfg.proxy.filter(|_| reg.registered) else { break };
                    unregistering = true;
                    reg.tx = None;
                    reg.refresh_at = None;
                    reg.nc = 0;
                    reg.expires = 0;
                    let m = self.register_request(&mut reg, 0, None);
                    self.start_reg(&mut reg, m, proxy, &me).await;
                }
                _ = sleep => {
                    let now = Instant::now();
                    if let Some((tx, _)) = &mut reg.tx {
                        let outs = tx.on_tick(now);
                        if self.reg_outputs(&mut reg, outs, &me).await {
                            break;
                        }
                    }
                    if let Some(a) = &mut active
                        && let Some((at, interval)) = a.retransmit
                        && now >= at
                    {
                        // Timer G/H for our 2xx (§13.3.1.4): resend until ACK, give up at 64·T1.
                        if now >= a.give_up {
                            a.retransmit = None;
                        } else {
                            let _ = self.sock.send_to(&a.ok.to_bytes(), a.ok_dest).await;
                            let next = (interval * 2).min(Duration::from_secs(4));
                            a.retransmit = Some((now + next, next));
                        }
                    }
                }
                n = rtp_recv => {
                    if let (Ok(n), Some(a)) = (n, &mut active)
                        && let Ok(p) = RtpPacket::parse(&rbuf[..n])
                    {
                        a.stats.on_packet(&p, Instant::now());
                        // Echo: the caller's audio back under our own SSRC and sequence.
                        let mut out = a.sender.next_packet();
                        out.payload = p.payload;
                        let _ = a.rtp.send_to(&out.to_bytes(), a.media).await;
                    }
                }
                r = self.sock.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    // A datagram that is not a well-formed SIP message is dropped: without a
                    // readable Via there is nowhere to send a 400 (§18.2.1 lets a UA discard).
                    let Ok(m) = crate::wire::parse(&buf[..n]) else { continue };
                    if !m.is_request() {
                        let ours = reg.tx.as_ref().is_some_and(|(_, b)| {
                            m.top_via().and_then(|v| v.branch().map(|x| x == b)).unwrap_or(false)
                        });
                        if ours && let Some((tx, _)) = &mut reg.tx {
                            let outs = tx.on_response(m, Instant::now());
                            if self.reg_outputs(&mut reg, outs, &me).await {
                                break;
                            }
                        }
                        continue;
                    }
                    let peer = src.to_string();
                    self.trace(&m, &peer, &me);
                    let reply_to = response_target(&m, src);
                    match m.method() {
                        "INVITE" => {
                            if let Some(a) = &active && m.call_id() == Some(&a.dialog.call_id) {
                                // A retransmission of the answered INVITE.
                                let _ = self.sock.send_to(&a.ok.to_bytes(), a.ok_dest).await;
                                continue;
                            }
                            if let Some(r) = &ringing && r.invite.call_id() == m.call_id() {
                                let resp = Message::response_to(&m, 180, "Ringing", None);
                                let mut resp = resp;
                                resp.set("To", r.to.clone());
                                self.send_to(&resp, reply_to).await;
                                continue;
                            }
                            let tag = token();
                            if self.cfg.busy || active.is_some() || ringing.is_some() {
                                let resp = Message::response_to(&m, 486, "Busy Here", Some(&tag));
                                self.trace(&resp, &me, &peer);
                                self.send_to(&resp, reply_to).await;
                                continue;
                            }
                            let media = match remote_media(&m.body) {
                                Ok(a) => a,
                                Err(_) => {
                                    let mut resp = Message::response_to(&m, 488, "Not Acceptable Here", Some(&tag));
                                    resp.push("Warning", "305 appnet \"PCMU/8000 audio is required\"");
                                    self.trace(&resp, &me, &peer);
                                    self.send_to(&resp, reply_to).await;
                                    continue;
                                }
                            };
                            let mut ring = Message::response_to(&m, 180, "Ringing", Some(&tag));
                            copy_record_route(&m, &mut ring);
                            ring.push("Contact", self.contact());
                            self.trace(&ring, &me, &peer);
                            self.send_to(&ring, reply_to).await;
                            let to = ring.header("To").unwrap_or_default().to_string();
                            if !self.cfg.auto_answer {
                                ringing = Some(Ringing { invite: m, to, src });
                                continue;
                            }
                            let rtp = UdpSocket::bind(SocketAddr::new(self.local.ip(), 0)).await?;
                            let mut ok = Message::response_to(&m, 200, "OK", Some(&tag));
                            copy_record_route(&m, &mut ok);
                            ok.push("Contact", self.contact());
                            ok.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                            ok.push("Content-Type", "application/sdp");
                            ok.body = sdp_pcmu(rtp.local_addr()?, rand::random::<u32>() as u64);
                            self.trace(&ok, &me, &peer);
                            self.send_to(&ok, reply_to).await;
                            let Some(dialog) = Dialog::from_uas(&m, &to) else { continue };
                            let now = Instant::now();
                            let t1 = Timers::default().t1;
                            active = Some(ActiveCall {
                                dialog,
                                ok,
                                ok_dest: reply_to,
                                acked: false,
                                retransmit: Some((now + t1, t1)),
                                give_up: now + Timers::default().t64(),
                                rtp,
                                media,
                                sender: Sender::new(&[]),
                                stats: ReceiverStats::default(),
                            });
                        }
                        "ACK" => {
                            if let Some(a) = &mut active && m.call_id() == Some(&a.dialog.call_id) {
                                a.acked = true;
                                a.retransmit = None;
                            }
                        }
                        "CANCEL" => {
                            let ok = Message::response_to(&m, 200, "OK", None);
                            self.trace(&ok, &me, &peer);
                            self.send_to(&ok, reply_to).await;
                            if let Some(r) = ringing.take_if(|r| r.invite.call_id() == m.call_id()) {
                                let mut t = Message::response_to(&r.invite, 487, "Request Terminated", None);
                                t.set("To", r.to.clone());
                                self.trace(&t, &me, &peer);
                                self.send_to(&t, response_target(&r.invite, r.src)).await;
                            }
                        }
                        "BYE" => {
                            let in_call = active.as_ref().is_some_and(|a| m.call_id() == Some(&a.dialog.call_id));
                            if !in_call {
                                let resp = Message::response_to(&m, 481, "Call/Transaction Does Not Exist", None);
                                self.send_to(&resp, reply_to).await;
                                continue;
                            }
                            let ok = Message::response_to(&m, 200, "OK", None);
                            self.trace(&ok, &me, &peer);
                            self.send_to(&ok, reply_to).await;
                            if let Some(a) = active.take() {
                                let report = MediaReport::new(a.sender.sent, &a.stats);
                                if let Some(f) = &self.cfg.on_call_end {
                                    f(&report);
                                }
                                reports.push(report);
                                if self.cfg.max_calls.is_some_and(|n| reports.len() as u64 >= n) {
                                    break;
                                }
                            }
                        }
                        "OPTIONS" => {
                            let mut ok = Message::response_to(&m, 200, "OK", Some(&token()));
                            ok.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                            ok.push("Accept", "application/sdp");
                            self.send_to(&ok, reply_to).await;
                        }
                        _ => {
                            let mut resp = Message::response_to(&m, 405, "Method Not Allowed", Some(&token()));
                            resp.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
                            self.send_to(&resp, reply_to).await;
                        }
                    }
                }
            }
        }
        Ok(reports)
    }

    async fn start_reg(&self, reg: &mut Registration, m: Message, proxy: SocketAddr, me: &str) {
        self.trace(&m, me, &format!("registrar {proxy}"));
        let branch = m.top_via().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let (tx, outs) = ClientTransaction::start(m, false, Timers::default(), Instant::now());
        reg.tx = Some((tx, branch));
        self.reg_outputs(reg, outs, me).await;
    }

    /// Handles the registration transaction's outputs; true when the phone should stop
    /// (the unregistration finished).
    async fn reg_outputs(&self, reg: &mut Registration, outs: Vec<Output>, me: &str) -> bool {
        let Some(proxy) = self.cfg.proxy else { return false };
        for o in outs {
            match o {
                Output::Send(m) => self.send_to(&m, proxy).await,
                Output::Timeout => {
                    reg.tx = None;
                    if reg.expires == 0 {
                        return true;
                    }
                    tracing::warn!("registrar {proxy} does not answer; retrying in 30 s");
                    reg.refresh_at = Some(Instant::now() + Duration::from_secs(30));
                }
                Output::Terminated => {}
                Output::Deliver(resp) => {
                    let Some(code) = resp.code() else { continue };
                    if code < 200 {
                        continue;
                    }
                    self.trace(&resp, &format!("registrar {proxy}"), me);
                    reg.tx = None;
                    if (code == 401 || code == 407)
                        && reg.nc < 2
                        && let (Some(pw), Some((ch, header))) =
                            (&self.cfg.password, auth::best_challenge(&resp))
                    {
                        reg.nc += 1;
                        let uri = format!("sip:{}", self.aor.host);
                        let user = self.aor.user.clone().unwrap_or_default();
                        let a = auth::answer(&ch, &user, pw, "REGISTER", &uri, reg.nc);
                        let expires = reg.expires;
                        let m = self.register_request(reg, expires, Some((header, a)));
                        Box::pin(self.start_reg(reg, m, proxy, me)).await;
                        continue;
                    }
                    if reg.expires == 0 {
                        return true;
                    }
                    if (200..300).contains(&code) {
                        reg.registered = true;
                        let granted = granted_expiry(&resp, &self.contact()).unwrap_or(reg.expires).max(2);
                        reg.refresh_at = Some(Instant::now() + Duration::from_secs(granted as u64 / 2));
                        tracing::info!("registered {} at {} for {granted} s", self.cfg.user, self.local);
                    } else {
                        tracing::warn!("registration refused: {code}; retrying in 60 s");
                        reg.refresh_at = Some(Instant::now() + Duration::from_secs(60));
                    }
                }
            }
        }
        false
    }
}

/// The callee's responses carry the INVITE's Record-Route (§12.1.1).
fn copy_record_route(req: &Message, resp: &mut Message) {
    for rr in req.header_values("Record-Route") {
        resp.push("Record-Route", rr);
    }
}

/// The expiry the registrar granted our contact: its `expires` parameter, else Expires.
fn granted_expiry(resp: &Message, contact: &str) -> Option<u32> {
    let ours = crate::wire::NameAddr::parse(contact).map(|n| n.uri);
    for c in resp.header_values("Contact") {
        if let Some(n) = crate::wire::NameAddr::parse(&c)
            && Some(&n.uri) == ours.as_ref()
            && let Some(e) = n.param("expires").and_then(|e| e.parse().ok())
        {
            return Some(e);
        }
    }
    let _ = contact_uri;
    resp.expires()
}
