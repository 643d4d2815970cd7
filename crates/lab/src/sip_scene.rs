//! The tour's SIP scene ("Alice calls Bob wherever he is"): Bob's laptop registers with
//! umass.edu's registrar from a new address (user location); Alice, at poly.edu, calls
//! bob@umass.edu: her proxy asks her for credentials (407), finds umass.edu's SIP server through
//! DNS (NAPTR → SRV → A through dns.poly.edu), umass.edu's proxy looks up Bob's current contact,
//! the call is set up, media flows for two seconds, BYE. Then Bob sets forwarding on no answer
//! and Alice's next call lands on his desk phone; Alice watches Bob's presence go offline; and
//! admission control at poly.edu turns away a call its link cannot carry.
//!
//! Every SIP message the two servers receive or send, and every DNS step of their RFC 3263
//! lookups, is an event on the lab's bus (the servers' observer); the text below is printed
//! from those same events.

use crate::LabError;
use crate::events::{Endpoint, Event, bus, event};
use crate::run::Lab;
use crate::topology::Topology;
use appnet_netkit::Shutdown;
use appnet_sip::server::{Observed, Observer};
use appnet_sip::ua::call::{CallConfig, CallError, call};
use appnet_sip::ua::phone::{Phone, PhoneConfig};
use appnet_sip::wire::{self, Message};
use appnet_sip::{SipConfig, SipServer};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::broadcast;

/// A SIP server of the lab (registrar and proxy for one domain).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SipSpec {
    /// Its host name (`sip.umass.edu`, the target of the domain's SRV records).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// UDP and TCP port.
    #[serde(default = "default_sip_port")]
    pub port: u16,
    /// The domain it serves.
    pub domain: String,
    /// Its users and their lab passwords.
    #[serde(default)]
    pub users: Vec<SipUserSpec>,
    /// Admission control: the domain's link in kbit/s per direction.
    #[serde(default)]
    pub link_kbps: Option<u32>,
}

fn default_sip_port() -> u16 {
    5060
}

/// A lab SIP user.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SipUserSpec {
    pub address: String,
    pub password: String,
}

/// Bob's laptop: the new address he registers from.
const LAPTOP: (&str, [u8; 4]) = ("bob's laptop", [127, 0, 14, 11]);
/// Bob's desk phone: where his calls go when the laptop does not answer.
const DESK: (&str, [u8; 4]) = ("bob's desk phone", [127, 0, 14, 12]);
/// Alice's presence watcher.
const WATCHER: (&str, [u8; 4]) = ("alice's watcher", [127, 0, 14, 21]);
/// The phones' SIP port.
const PHONE_PORT: u16 = 5060;

/// A bound lab SIP server: its name, address, what the directory says, the server.
pub type Started = (String, SocketAddr, String, SipServer);

/// Where a lab SIP server's users file is.
pub fn users_file(dir: &Path, spec: &SipSpec) -> PathBuf {
    dir.join("sip").join(format!("{}.users", spec.name))
}

/// Binds every `[[sip]]` server: users added, the first lab resolver for RFC 3263, and an
/// observer putting every message on the lab's bus.
pub async fn start(topology: &Topology, dir: &Path) -> Result<Vec<Started>, LabError> {
    let mut out = Vec::new();
    let resolver = topology.resolvers.first().map(|r| SocketAddr::new(IpAddr::V4(r.addr), topology.dns_port));
    let mut names: HashMap<SocketAddr, String> = HashMap::new();
    for s in &topology.sips {
        names.insert(SocketAddr::new(IpAddr::V4(s.addr), s.port), s.name.clone());
    }
    if let Some(r) = topology.resolvers.first() {
        names.insert(SocketAddr::new(IpAddr::V4(r.addr), topology.dns_port), r.name.clone());
    }
    for (n, ip) in [LAPTOP, DESK, WATCHER] {
        names.insert(SocketAddr::new(IpAddr::from(ip), PHONE_PORT), n.to_string());
    }
    let observer = observer(names, resolver);
    for spec in &topology.sips {
        let addr = SocketAddr::new(IpAddr::V4(spec.addr), spec.port);
        let fail = |reason: String| LabError::Start { name: spec.name.clone(), addr, reason };
        let users = users_file(dir, spec);
        if let Some(parent) = users.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
        }
        for u in &spec.users {
            appnet_sip::users::add_user(&users, &u.address, Some(&u.password), &[])
                .map_err(|e| fail(e.to_string()))?;
        }
        let config = SipConfig {
            domain: spec.domain.clone(),
            listen: addr,
            users: (!spec.users.is_empty()).then_some(users),
            resolver,
            link_kbps: spec.link_kbps,
            ..SipConfig::default()
        };
        let mut server = SipServer::bind(config).await.map_err(|e| fail(e.to_string()))?;
        server.observe(observer.clone());
        let serves = format!(
            "sip:{} registrar and proxy (UDP/TCP {}){}",
            spec.domain,
            spec.port,
            spec.link_kbps.map(|k| format!(", link {k} kbit/s")).unwrap_or_default()
        );
        out.push((spec.name.clone(), addr, serves, server));
    }
    Ok(out)
}

/// The observer shared by the lab's SIP servers: each message they send, and each they receive
/// from a phone (messages between the two servers are shown once, when sent), plus the DNS
/// steps of their lookups.
fn observer(names: HashMap<SocketAddr, String>, resolver: Option<SocketAddr>) -> Observer {
    let names = Arc::new(Mutex::new(names));
    Arc::new(move |server: SocketAddr, what: Observed<'_>| {
        let bus = bus();
        if !bus.active() {
            return;
        }
        let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
        let me = Endpoint::new(names.get(&server).cloned().unwrap_or_else(|| server.to_string()), server);
        match what {
            Observed::Received { from, bytes } => {
                let servers_sent_it = names.get(&from).is_some_and(|n| n.starts_with("sip."));
                let Ok(m) = wire::parse(bytes) else { return };
                if servers_sent_it {
                    return;
                }
                let name = names.entry(from).or_insert_with(|| caller_name(&m, from)).clone();
                bus.emit(|| sip_event(Endpoint::new(name, from), me, &m, bytes));
            }
            Observed::Sent { to, bytes } => {
                let Ok(m) = wire::parse(bytes) else { return };
                let name = names.get(&to).cloned().unwrap_or_else(|| to.to_string());
                bus.emit(|| sip_event(me, Endpoint::new(name, to), &m, bytes));
            }
            Observed::Located { uri, steps, targets } => {
                let (rname, raddr) = match resolver {
                    Some(r) => (names.get(&r).cloned().unwrap_or_else(|| r.to_string()), r.to_string()),
                    None => ("resolver".into(), String::new()),
                };
                for step in steps {
                    let (q, a) = step.split_once(" → ").unwrap_or((step.as_str(), ""));
                    bus.emit(|| {
                        let fields =
                            vec![("Question".to_string(), q.to_string()), ("Answer".into(), a.into())];
                        event(
                            me.clone(),
                            Endpoint::new(rname.clone(), raddr.clone()),
                            "DNS",
                            step.clone(),
                            fields,
                            Vec::new(),
                            None,
                        )
                    });
                }
                let found: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
                bus.emit(|| {
                    let summary = format!(
                        "RFC 3263: {uri} → {}",
                        if found.is_empty() { "no server".into() } else { found.join(", ") }
                    );
                    event(
                        me.clone(),
                        me.clone(),
                        "SIP",
                        summary,
                        vec![("Request-URI".into(), uri.to_string())],
                        Vec::new(),
                        None,
                    )
                });
            }
        }
    })
}

/// A phone the servers had not seen: named after the From of its first request.
fn caller_name(m: &Message, from: SocketAddr) -> String {
    match m.from().and_then(|f| wire::SipUri::parse(&f.uri)) {
        Some(u) if m.is_request() => format!("{}@{}", u.user.unwrap_or_default(), u.host),
        _ => from.to_string(),
    }
}

/// A SIP message as an event: the request or status line, the key headers, the bytes.
fn sip_event(from: Endpoint, to: Endpoint, m: &Message, bytes: &[u8]) -> Event {
    let summary = start_line(m);
    let mut fields = vec![("Start line".to_string(), summary.clone())];
    for h in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Route",
        "Record-Route",
        "Expires",
        "Event",
        "Subscription-State",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Warning",
        "Retry-After",
        "Content-Type",
    ] {
        for (i, v) in m.header_values(h).iter().enumerate() {
            let name = if i == 0 { h.to_string() } else { format!("{h} {}", i + 1) };
            fields.push((name, v.clone()));
        }
    }
    event(from, to, "SIP", summary, fields, bytes.to_vec(), None)
}

fn start_line(m: &Message) -> String {
    match (m.code(), m.uri()) {
        (Some(code), _) => {
            let reason = match &m.start {
                wire::StartLine::Response { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            format!("SIP/2.0 {code} {reason} ({})", m.cseq().map(|c| c.1.to_string()).unwrap_or_default())
        }
        (None, uri) => format!("{} {} SIP/2.0", m.method(), uri.unwrap_or("")),
    }
}

/// Prints the SIP and DNS events that arrive until `done` matches one (or `limit` passes);
/// returns the matching event.
async fn until(
    rx: &mut broadcast::Receiver<Arc<Event>>,
    say: &mut dyn FnMut(String),
    limit: Duration,
    mut done: impl FnMut(&Event) -> bool,
) -> Option<Arc<Event>> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let e = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
        };
        // RTP reports are said by `media` itself, from the event it emits.
        if e.protocol != "SIP" && e.protocol != "DNS" {
            continue;
        }
        say(line(&e));
        if done(&e) {
            return Some(e);
        }
    }
}

/// Prints what arrives until the bus is quiet for `quiet`.
async fn settle(rx: &mut broadcast::Receiver<Arc<Event>>, say: &mut dyn FnMut(String), quiet: Duration) {
    for _ in 0..10_000 {
        match tokio::time::timeout(quiet, rx.recv()).await {
            Ok(Ok(e)) if matches!(e.protocol, "SIP" | "DNS") => say(line(&e)),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            _ => return,
        }
    }
}

fn line(e: &Event) -> String {
    if e.protocol == "DNS" {
        return format!("   {:>18} → {:<18} DNS {}", e.from.host, e.to.host, e.summary);
    }
    if e.from == e.to {
        return format!("   {:>18}   {}", e.from.host, e.summary);
    }
    format!("   {:>18} → {:<18} {}", e.from.host, e.to.host, e.summary)
}

fn is(e: &Event, to: &str, start: &str) -> bool {
    e.protocol == "SIP" && e.to.host == to && e.summary.starts_with(start)
}

fn phone(
    user: &str,
    proxy: Option<SocketAddr>,
    password: Option<&str>,
    at: [u8; 4],
    answer: bool,
) -> PhoneConfig {
    PhoneConfig {
        user: user.into(),
        proxy,
        password: password.map(str::to_string),
        listen: SocketAddr::new(IpAddr::from(at), PHONE_PORT),
        auto_answer: answer,
        busy: false,
        expires: 3600,
        max_calls: None,
        on_call_end: None,
        trace: None,
    }
}

struct Running {
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<std::io::Result<Vec<appnet_sip::ua::call::MediaReport>>>,
}

async fn run_phone(cfg: PhoneConfig) -> Result<Running, String> {
    let at = cfg.listen;
    let p = Phone::bind(cfg).await.map_err(|e| format!("SIP scene: cannot bind a phone on {at}: {e}"))?;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(p.run(shutdown.clone()));
    Ok(Running { shutdown, task })
}

/// Hangs the phone up (it unregisters first) and waits for it.
async fn stop_phone(p: Running) {
    p.shutdown.trigger();
    let _ = tokio::time::timeout(Duration::from_secs(5), p.task).await;
}

fn password(spec: &SipSpec, user: &str) -> Option<String> {
    spec.users.iter().find(|u| u.address == user).map(|u| u.password.clone())
}

/// Runs the scene (scene 15 of the tour).
pub async fn run(lab: &mut Lab, say: &mut dyn FnMut(String)) -> Result<(), String> {
    let find = |d: &str| lab.topology.sips.iter().find(|s| s.domain == d).cloned();
    let (Some(umass), Some(poly)) = (find("umass.edu"), find("poly.edu")) else {
        return Err("SIP scene: the lab needs SIP servers for umass.edu and poly.edu".into());
    };
    let umass_addr = SocketAddr::new(IpAddr::V4(umass.addr), umass.port);
    let poly_addr = SocketAddr::new(IpAddr::V4(poly.addr), poly.port);
    let bob = "bob@umass.edu";
    let alice = "alice@poly.edu";
    let bob_pw = password(&umass, bob).ok_or("SIP scene: umass.edu has no user bob")?;
    let alice_pw = password(&poly, alice).ok_or("SIP scene: poly.edu has no user alice")?;
    let mut rx = bus().subscribe();
    let wait = Duration::from_secs(15);
    say(crate::tour::heading(15));
    say(format!(
        "   {} serves umass.edu, {} serves poly.edu; each finds the other through DNS.",
        umass.name, poly.name
    ));

    say(format!("1) User location: Bob's laptop registers from a new address, {}.", IpAddr::from(LAPTOP.1)));
    let laptop = run_phone(phone(bob, Some(umass_addr), Some(&bob_pw), LAPTOP.1, true)).await?;
    until(&mut rx, say, wait, |e| is(e, LAPTOP.0, "SIP/2.0 200 OK (REGISTER)"))
        .await
        .ok_or("SIP scene: Bob's laptop did not register")?;

    say("2) Alice calls bob@umass.edu through her proxy, sip.poly.edu:".into());
    let call_cfg = |duration: Duration| CallConfig {
        from: alice.into(),
        to: bob.into(),
        proxy: poly_addr,
        duration,
        password: Some(alice_pw.clone()),
        audio: appnet_sip::rtp::tone(440.0, 8000),
        ring_timeout: Duration::from_secs(20),
        trace: None,
    };
    let first = tokio::spawn(call(call_cfg(Duration::from_secs(2))));
    until(&mut rx, say, wait * 2, |e| {
        e.protocol == "SIP" && e.summary.starts_with("SIP/2.0 200 OK (BYE)") && e.to.host == alice
    })
    .await
    .ok_or("SIP scene: the first call did not end with BYE / 200")?;
    let report =
        first.await.map_err(|e| e.to_string())?.map_err(|e| format!("SIP scene: the call failed: {e}"))?;
    media(say, alice, LAPTOP.0, &report);

    say("3) Bob sets forwarding on no answer (3 s) to his desk phone, and leaves his laptop ringing:".into());
    let desk_uri = format!("sip:bob@{}", SocketAddr::new(IpAddr::from(DESK.1), PHONE_PORT));
    let file = users_file(&lab.dir, &umass);
    appnet_sip::users::add_user(
        &file,
        bob,
        None,
        &[format!("noanswer={desk_uri}"), "noanswer-secs=3".into()],
    )
    .map_err(|e| format!("SIP scene: {e}"))?;
    say(format!(
        "   appnet sip user add bob@umass.edu --forward noanswer={desk_uri} --forward noanswer-secs=3"
    ));
    say("   Bob's laptop unregisters (Expires: 0) and registers again, now ringing without answering:".into());
    stop_phone(laptop).await;
    settle(&mut rx, say, Duration::from_millis(300)).await;
    // The server re-reads its users file every second.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let laptop = run_phone(phone(bob, Some(umass_addr), Some(&bob_pw), LAPTOP.1, false)).await?;
    let desk = run_phone(phone(bob, None, None, DESK.1, true)).await?;
    until(&mut rx, say, wait, |e| is(e, LAPTOP.0, "SIP/2.0 200 OK (REGISTER)"))
        .await
        .ok_or("SIP scene: Bob's laptop did not register again")?;
    let second = tokio::spawn(call(call_cfg(Duration::from_secs(1))));
    until(&mut rx, say, wait * 2, |e| {
        e.protocol == "SIP" && e.summary.starts_with("SIP/2.0 200 OK (BYE)") && e.to.host == alice
    })
    .await
    .ok_or("SIP scene: the forwarded call did not end with BYE / 200")?;
    let report = second
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("SIP scene: the forwarded call failed: {e}"))?;
    media(say, alice, DESK.0, &report);
    stop_phone(desk).await;

    say("4) Presence: Alice subscribes to Bob's presence, then Bob's laptop goes offline:".into());
    let watcher = UdpSocket::bind(SocketAddr::new(IpAddr::from(WATCHER.1), PHONE_PORT))
        .await
        .map_err(|e| format!("SIP scene: cannot bind the watcher: {e}"))?;
    let w = watcher.local_addr().map_err(|e| e.to_string())?;
    let sub = format!(
        "SUBSCRIBE sip:bob@umass.edu SIP/2.0\r\nVia: SIP/2.0/UDP {w};branch=z9hG4bKpres1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@poly.edu>;tag=w1\r\nTo: <sip:bob@umass.edu>\r\nCall-ID: presence-{w}\r\nCSeq: 1 SUBSCRIBE\r\n\
         Contact: <sip:alice@{w}>\r\nEvent: presence\r\nAccept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    watcher.send_to(sub.as_bytes(), umass_addr).await.map_err(|e| e.to_string())?;
    let (status, tag) = answer_notify(&watcher).await.ok_or("SIP scene: no NOTIFY for the subscription")?;
    settle(&mut rx, say, Duration::from_millis(300)).await;
    say(format!("   Alice's watcher reads Bob's presence: {status}"));
    say("   Bob closes his laptop (it unregisters):".into());
    stop_phone(laptop).await;
    let (status, _) = answer_notify(&watcher).await.ok_or("SIP scene: no NOTIFY when Bob went offline")?;
    settle(&mut rx, say, Duration::from_millis(300)).await;
    say(format!("   Alice's watcher reads Bob's presence: {status}"));
    say("   Alice ends her subscription (Expires: 0):".into());
    let unsub = sub
        .replace("To: <sip:bob@umass.edu>\r\n", &format!("To: <sip:bob@umass.edu>;tag={tag}\r\n"))
        .replace("CSeq: 1 SUBSCRIBE", "CSeq: 2 SUBSCRIBE")
        .replace("z9hG4bKpres1", "z9hG4bKpres2")
        .replace("Expires: 600", "Expires: 0");
    watcher.send_to(unsub.as_bytes(), umass_addr).await.map_err(|e| e.to_string())?;
    answer_notify(&watcher).await.ok_or("SIP scene: no final NOTIFY for the unsubscription")?;
    settle(&mut rx, say, Duration::from_millis(300)).await;

    let link = poly.link_kbps.unwrap_or(0);
    say(format!(
        "5) Admission control: poly.edu's link carries {link} kbit/s per direction; a G.711 call costs 80."
    ));
    let laptop = run_phone(phone(bob, Some(umass_addr), Some(&bob_pw), LAPTOP.1, true)).await?;
    until(&mut rx, say, wait, |e| is(e, LAPTOP.0, "SIP/2.0 200 OK (REGISTER)"))
        .await
        .ok_or("SIP scene: Bob's laptop did not register for the last calls")?;
    let held = tokio::spawn(call(call_cfg(Duration::from_secs(3))));
    until(&mut rx, say, wait, |e| is(e, alice, "SIP/2.0 200 OK (INVITE)"))
        .await
        .ok_or("SIP scene: the first call of the busy link was not answered")?;
    let refused = call(call_cfg(Duration::from_secs(1))).await;
    until(&mut rx, say, wait, |e| is(e, alice, "SIP/2.0 503"))
        .await
        .ok_or("SIP scene: no 503 for the call over the link")?;
    match refused {
        Err(CallError::Refused(503, reason)) => {
            say(format!("   The second call is turned away: 503 {reason}."))
        }
        other => return Err(format!("SIP scene: the call over the link's capacity got {other:?}")),
    }
    until(&mut rx, say, wait * 2, |e| {
        e.protocol == "SIP" && e.summary.starts_with("SIP/2.0 200 OK (BYE)") && e.to.host == alice
    })
    .await
    .ok_or("SIP scene: the call holding the link did not end")?;
    held.await.map_err(|e| e.to_string())?.map_err(|e| format!("SIP scene: the held call failed: {e}"))?;
    stop_phone(laptop).await;
    settle(&mut rx, say, Duration::from_millis(300)).await;
    say("   The BYE released the bandwidth: the next call would be admitted.".into());
    Ok(())
}

fn media(say: &mut dyn FnMut(String), from: &str, to: &str, report: &appnet_sip::ua::call::MediaReport) {
    let e = event(
        Endpoint::new(from, ""),
        Endpoint::new(to, ""),
        "RTP",
        format!("media (RTP G.711, 20 ms packets): {report}"),
        vec![("Report".into(), report.to_string())],
        Vec::new(),
        None,
    );
    say(format!("   {from:>18} ↔ {to:<18} {}", e.summary));
    bus().emit(|| e);
}

/// Waits for a NOTIFY on the watcher's socket, answers 200; returns the PIDF status and the
/// subscription dialog's tag at the server.
async fn answer_notify(s: &UdpSocket) -> Option<(String, String)> {
    let mut buf = vec![0u8; 65_536];
    for _ in 0..10 {
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(10), s.recv_from(&mut buf)).await.ok()?.ok()?;
        let Ok(m) = wire::parse(&buf[..n]) else { continue };
        if m.method() != "NOTIFY" {
            continue;
        }
        let ok = Message::response_to(&m, 200, "OK", None);
        let _ = s.send_to(&ok.to_bytes(), from).await;
        let body = String::from_utf8_lossy(&m.body).to_string();
        let basic =
            body.split("<basic>").nth(1).and_then(|b| b.split("</basic>").next()).unwrap_or("unknown");
        let state = m.header("Subscription-State").unwrap_or("");
        let tag = m.from().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default();
        return Some((format!("{basic} (Subscription-State: {state})"), tag));
    }
    None
}
