//! `appnet sip call`: one call from INVITE to BYE with RTP media both ways (the tokio
//! driver; message building and dialog state live in the parent module).

use super::{Dialog, auth, new_request, remote_media, response_target, sdp_pcmu, token, trace_line, via_for};
use crate::rtp::{ReceiverStats, RtpPacket, Sender};
use crate::transaction::{ClientTransaction, Output, Timers};
use crate::wire::Message;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::net::UdpSocket;

/// Prints one trace line (the CLI passes `println!`).
pub type TraceFn = Arc<dyn Fn(&str) + Send + Sync>;

/// What one call does.
#[derive(Clone)]
pub struct CallConfig {
    /// Caller's address of record, `alice@poly.edu`.
    pub from: String,
    /// Callee's address of record, `bob@umass.edu`.
    pub to: String,
    /// Outbound proxy every request goes to first.
    pub proxy: SocketAddr,
    /// Seconds of media before BYE.
    pub duration: Duration,
    /// Password for a 401/407 challenge.
    pub password: Option<String>,
    /// 8 kHz mono samples to send (looped).
    pub audio: Vec<i16>,
    /// How long to wait for a final answer to the INVITE before CANCEL.
    pub ring_timeout: Duration,
    pub trace: Option<TraceFn>,
}

/// Packets and quality of one direction of media, as seen by one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaReport {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub jitter_ms: f64,
}

impl MediaReport {
    /// From a sender count and receiver statistics.
    pub fn new(sent: u64, stats: &ReceiverStats) -> Self {
        MediaReport { sent, received: stats.received, lost: stats.lost(), jitter_ms: stats.jitter_ms() }
    }
}

impl std::fmt::Display for MediaReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "packets sent {} received {} lost {} jitter {:.2} ms",
            self.sent, self.received, self.lost, self.jitter_ms
        )
    }
}

/// Why a call did not happen.
#[derive(Debug, Error)]
pub enum CallError {
    #[error("bad address of record {0:?} (user@domain)")]
    BadAor(String),
    #[error("the call was refused: {0} {1}")]
    Refused(u16, String),
    #[error("no answer from the proxy (timer B)")]
    Timeout,
    #[error("no answer within the ring timeout; cancelled")]
    NoAnswer,
    #[error("the answer has no usable PCMU media")]
    BadAnswer,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Places the call; returns the media report when it was answered.
pub async fn call(cfg: CallConfig) -> Result<MediaReport, CallError> {
    let from_uri = super::aor_uri(&cfg.from).ok_or_else(|| CallError::BadAor(cfg.from.clone()))?;
    let to_uri = super::aor_uri(&cfg.to).ok_or_else(|| CallError::BadAor(cfg.to.clone()))?;
    let local_ip = local_ip_towards(cfg.proxy).await?;
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let rtp = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let local = sock.local_addr()?;
    let me = cfg.from.clone();
    let proxy_name = format!("proxy {}", cfg.proxy);
    let tr = |m: &Message, out: bool| {
        if let Some(t) = &cfg.trace {
            let (a, b) =
                if out { (me.as_str(), proxy_name.as_str()) } else { (proxy_name.as_str(), me.as_str()) };
            t(&trace_line(m, a, b));
        }
    };
    let via = via_for(local);
    let call_id = format!("{}@{}", token(), local.ip());
    let from_hdr = format!("<{from_uri}>;tag={}", token());
    let to_hdr = format!("<{to_uri}>");
    let mut cseq = 1;
    let mut nc = 0;
    let mut auth_header: Option<(&'static str, String)> = None;
    let deadline = Instant::now() + cfg.ring_timeout;
    let (invite, ok) = loop {
        let mut inv = new_request("INVITE", &to_uri.to_string(), &from_hdr, &to_hdr, &call_id, cseq, &via);
        inv.push("Contact", format!("<sip:{}@{local}>", from_uri.user.as_deref().unwrap_or("")));
        inv.push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
        inv.push("Content-Type", "application/sdp");
        inv.push("User-Agent", "appnet");
        inv.body = sdp_pcmu(rtp.local_addr()?, rand::random::<u32>() as u64);
        if let Some(a) = auth_header.take() {
            inv.push(a.0, a.1);
        }
        let resp = transact(&sock, cfg.proxy, inv.clone(), &tr, Some(deadline)).await?;
        let Some(resp) = resp else {
            // Ring timeout: CANCEL (§9.1) and wait for its 200 and the INVITE's 487.
            let mut cancel = inv.clone();
            cancel.start = crate::wire::StartLine::Request {
                method: "CANCEL".into(),
                uri: inv.uri().unwrap_or_default().to_string(),
            };
            cancel.headers.retain(|h| {
                matches!(h.name.as_str(), "Via" | "From" | "To" | "Call-ID" | "Max-Forwards" | "Route")
            });
            cancel.push("CSeq", format!("{cseq} CANCEL"));
            cancel.body.clear();
            let _ = transact(&sock, cfg.proxy, cancel, &tr, None).await;
            return Err(CallError::NoAnswer);
        };
        let code = resp.code().unwrap_or(500);
        if (code == 401 || code == 407)
            && nc == 0
            && let (Some(pw), Some((ch, header))) = (&cfg.password, auth::best_challenge(&resp))
        {
            nc += 1;
            cseq += 1;
            let user = from_uri.user.clone().unwrap_or_default();
            auth_header = Some((header, auth::answer(&ch, &user, pw, "INVITE", &to_uri.to_string(), nc)));
            continue;
        }
        if code >= 300 {
            return Err(CallError::Refused(code, reason(&resp)));
        }
        break (inv, resp);
    };
    let mut dialog = Dialog::from_uac(&invite, &ok).ok_or(CallError::BadAnswer)?;
    let ack = dialog.request("ACK", &via);
    let ack_dest = hop(&dialog, cfg.proxy);
    tr(&ack, true);
    sock.send_to(&ack.to_bytes(), ack_dest).await?;
    let media = remote_media(&ok.body).map_err(|_| CallError::BadAnswer)?;
    if let Some(t) = &cfg.trace {
        t(&format!("{:>24} <> {:<24} media: RTP PCMU 20 ms packets for {:?}", me, media, cfg.duration));
    }
    // Media: a packet every 20 ms, receive the other side's, absorb 2xx retransmissions.
    let mut sender = Sender::new(&cfg.audio);
    let mut stats = ReceiverStats::default();
    let end = tokio::time::Instant::now() + cfg.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = vec![0u8; 65_536];
    let mut rbuf = vec![0u8; 2048];
    let mut hung_up_by_peer = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            _ = tick.tick() => {
                let _ = rtp.send_to(&sender.next_packet().to_bytes(), media).await;
            }
            r = rtp.recv_from(&mut rbuf) => {
                if let Ok((n, _)) = r && let Ok(p) = RtpPacket::parse(&rbuf[..n]) {
                    stats.on_packet(&p, Instant::now());
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, src)) = r else { continue };
                let Ok(m) = crate::wire::parse(&buf[..n]) else { continue };
                if m.code().is_some_and(|c| (200..300).contains(&c)) && m.method() == "INVITE" {
                    sock.send_to(&ack.to_bytes(), ack_dest).await?;
                } else if m.is_request() && m.method() == "BYE" && m.call_id() == Some(&dialog.call_id) {
                    tr(&m, false);
                    let ok = Message::response_to(&m, 200, "OK", None);
                    tr(&ok, true);
                    sock.send_to(&ok.to_bytes(), response_target(&m, src)).await?;
                    hung_up_by_peer = true;
                    break;
                } else if m.is_request() && m.method() != "ACK" {
                    let resp = Message::response_to(&m, 481, "Call/Transaction Does Not Exist", Some("x"));
                    sock.send_to(&resp.to_bytes(), response_target(&m, src)).await?;
                }
            }
        }
    }
    if !hung_up_by_peer {
        let bye = dialog.request("BYE", &via);
        transact(&sock, hop(&dialog, cfg.proxy), bye, &tr, None).await?;
    }
    Ok(MediaReport::new(sender.sent, &stats))
}

/// The response's reason phrase.
fn reason(m: &Message) -> String {
    match &m.start {
        crate::wire::StartLine::Response { reason, .. } => reason.clone(),
        _ => String::new(),
    }
}

/// In-dialog requests go through the outbound proxy when there is a route set (it is the
/// first Record-Route hop on our side), else straight to the peer's Contact.
fn hop(d: &Dialog, proxy: SocketAddr) -> SocketAddr {
    if !d.route.is_empty() {
        return proxy;
    }
    d.next_hop().and_then(|(h, p)| h.parse().ok().map(|ip| SocketAddr::new(ip, p))).unwrap_or(proxy)
}

/// The local address the system routes to `peer` from (no packet is sent).
pub async fn local_ip_towards(peer: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let probe = UdpSocket::bind(if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await?;
    probe.connect(peer).await?;
    Ok(probe.local_addr()?.ip())
}

/// Runs one client transaction to its final response (`None` when `give_up` passed first:
/// the caller cancels). Provisional responses are traced; requests that arrive meanwhile
/// get 481 (this caller has one dialog and it is not established yet).
pub(crate) async fn transact(
    sock: &UdpSocket,
    dest: SocketAddr,
    req: Message,
    tr: &impl Fn(&Message, bool),
    give_up: Option<Instant>,
) -> Result<Option<Message>, CallError> {
    let now = Instant::now();
    tr(&req, true);
    let branch = req.top_via().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
    let (mut tx, outs) = ClientTransaction::start(req, false, Timers::default(), now);
    let mut pending = outs;
    let mut buf = vec![0u8; 65_536];
    loop {
        for o in pending.drain(..) {
            match o {
                Output::Send(m) => {
                    sock.send_to(&m.to_bytes(), dest).await?;
                }
                Output::Deliver(m) => {
                    tr(&m, false);
                    if m.code().is_some_and(|c| c >= 200) {
                        return Ok(Some(m));
                    }
                }
                Output::Timeout => return Err(CallError::Timeout),
                Output::Terminated => {}
            }
        }
        let wake = [tx.deadline(), give_up].into_iter().flatten().min();
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {
                let now = Instant::now();
                if give_up.is_some_and(|g| now >= g) {
                    return Ok(None);
                }
                pending = tx.on_tick(now);
            }
            r = sock.recv_from(&mut buf) => {
                let (n, src) = r?;
                let Ok(m) = crate::wire::parse(&buf[..n]) else { continue };
                if m.is_request() {
                    if m.method() != "ACK" {
                        let resp = Message::response_to(&m, 481, "Call/Transaction Does Not Exist", Some("x"));
                        sock.send_to(&resp.to_bytes(), response_target(&m, src)).await?;
                    }
                    continue;
                }
                let matches = m.top_via().and_then(|v| v.branch().map(|b| b == branch)).unwrap_or(false);
                if matches {
                    pending = tx.on_response(m, Instant::now());
                }
            }
        }
    }
}
