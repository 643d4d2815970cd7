//! Scene 18, "DNSSEC fixes this" (decks 000/001): an attacker who has taken over
//! someschool.edu's name server answers `www.someschool.edu A` with its own address, signed with
//! a key of its own. A resolver without validation passes the forgery on; the lab's validating
//! resolver finds that no DS in edu vouches for the attacker's key and answers SERVFAIL with an
//! Extended DNS Error (RFC 8914). Then the chain of trust of gaia.cs.umass.edu is printed link
//! by link: the root key the anchor names, each DS in a parent and the key it matches in the
//! child, and the RRSIG over the A record.
//!
//! The forgery is deterministic (the compromised server answers every query), not a race: the
//! point is what validation decides, not whether a spoofer wins.

use crate::events::{self, Endpoint};
use crate::run::Lab;
use crate::tour::dns_fields;
use crate::zones::{self, fqdn, is_at_or_below};
use appnet_dns::wire::dnssec::{self, Algorithm};
use appnet_dns::wire::message::{self, Parsed};
use appnet_dns::wire::name::{from_text, to_lower, to_text};
use appnet_dns::wire::query::opcode;
use appnet_dns::wire::rrtype::{code, type_name};
use appnet_dns::wire::zonefile::{Includes, parse_text, record_text};
use appnet_resolver::trace::StepOutcome;
use appnet_resolver::transport::{NetTransport, Transport};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scene's number in the tour.
pub const SCENE: u32 = 18;
/// Its title (the tour's heading and the page's button).
pub const TITLE: &str = "DNSSEC fixes this — a forged answer rejected, the chain of trust";
/// The name whose chain of trust the scene prints.
pub const CHAIN_NAME: &str = "gaia.cs.umass.edu";

/// A resolver of the scene: its name and address.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Its host name.
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
}

/// The attacker of the scene and the resolver it fools.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttackerSpec {
    /// Its host name.
    pub name: String,
    /// Its address: where the forged record sends the victim's visitors.
    pub addr: Ipv4Addr,
    /// The name it forges (its zone's name server is the one it takes over).
    pub victim: String,
    /// A resolver without DNSSEC validation, started for the scene only.
    pub plain_resolver: HostSpec,
}

/// RFC 8914 Extended DNS Errors of a reply: (info code, extra text). Reads the OPT record of the
/// additional section; anything malformed yields what was read so far.
pub fn extended_errors(msg: &[u8]) -> Vec<(u16, String)> {
    fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
        for _ in 0..128 {
            let len = *msg.get(at)?;
            match len {
                0 => return Some(at + 1),
                l if l & 0xc0 == 0xc0 => return Some(at + 2),
                l if l & 0xc0 == 0 => at += 1 + usize::from(l),
                _ => return None,
            }
        }
        None
    }
    let u16_at = |at: usize| msg.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let mut out = Vec::new();
    let (Some(qd), Some(an), Some(ns), Some(ar)) = (u16_at(4), u16_at(6), u16_at(8), u16_at(10)) else {
        return out;
    };
    let mut at = 12;
    for _ in 0..qd {
        let Some(next) = skip_name(msg, at) else { return out };
        at = next + 4;
    }
    let rrs = usize::from(an) + usize::from(ns) + usize::from(ar);
    for i in 0..rrs {
        let Some(next) = skip_name(msg, at) else { return out };
        let (Some(rtype), Some(rdlen)) = (u16_at(next), u16_at(next + 8)) else { return out };
        let rdata_at = next + 10;
        let end = rdata_at + usize::from(rdlen);
        if end > msg.len() {
            return out;
        }
        if rtype == code::OPT && i >= usize::from(an) + usize::from(ns) {
            let mut o = rdata_at;
            while o + 4 <= end {
                let (Some(opt), Some(len)) = (u16_at(o), u16_at(o + 2)) else { return out };
                let body_end = o + 4 + usize::from(len);
                if body_end > end {
                    return out;
                }
                if opt == 15 && len >= 2 {
                    let info = u16_at(o + 4).unwrap_or(0);
                    let text = String::from_utf8_lossy(&msg[o + 6..body_end]).into_owned();
                    out.push((info, text));
                }
                o = body_end;
            }
        }
        at = end;
    }
    out
}

/// RFC 8914's name for an info code.
pub fn ede_name(code: u16) -> &'static str {
    match code {
        0 => "Other Error",
        1 => "Unsupported DNSKEY Algorithm",
        2 => "Unsupported DS Digest Type",
        5 => "DNSSEC Indeterminate",
        6 => "DNSSEC Bogus",
        7 => "Signature Expired",
        8 => "Signature Not Yet Valid",
        9 => "DNSKEY Missing",
        10 => "RRSIGs Missing",
        11 => "No Zone Key Bit Set",
        12 => "NSEC Missing",
        _ => "",
    }
}

/// One stub exchange with DO=1 and AD=1 (so a validating resolver reports AD, RFC 6840 §5.7).
struct Exchange {
    query: Vec<u8>,
    raw: Vec<u8>,
    reply: Parsed,
    elapsed: Duration,
}

impl Exchange {
    fn ad(&self) -> bool {
        self.raw.get(3).is_some_and(|b| b & 0x20 != 0)
    }
}

async fn ask_dnssec(
    from: IpAddr,
    server: SocketAddr,
    qname: &str,
    qtype: u16,
    rd: bool,
) -> Result<Exchange, String> {
    let name = from_text(qname)?;
    let id: u16 = rand::random();
    let mut query = message::build_query(id, opcode::QUERY, &name, qtype, rd, Some((1232, 0)));
    // The OPT record ends the message: its flags' top bit is DO; the header's AD bit asks for AD.
    let n = query.len();
    if n > 12 {
        query[n - 4] |= 0x80;
        query[3] |= 0x20;
    }
    let transport = NetTransport { source: Some(from) };
    let started = Instant::now();
    for _ in 0..3 {
        if let Ok(raw) = transport.exchange(server, &query, false, Duration::from_secs(4)).await {
            let raw = if raw.get(2).is_some_and(|b| b & 0x02 != 0) {
                transport.exchange(server, &query, true, Duration::from_secs(4)).await.unwrap_or(raw)
            } else {
                raw
            };
            let reply = message::parse(&raw)?;
            return Ok(Exchange { query, raw, reply, elapsed: started.elapsed() });
        }
    }
    Err(format!("no answer from {server}"))
}

/// Emits a stub exchange as two events (query, reply) and returns the reply's summary line.
fn emit_exchange(from: &Endpoint, to: &Endpoint, what: &str, x: &Exchange) -> String {
    let q = message::parse(&x.query).map(|p| dns_fields(&p)).unwrap_or_default();
    let query = x.query.clone();
    events::bus().emit(|| {
        events::event(from.clone(), to.clone(), "DNS", format!("query {what} (DO=1)"), q, query, None)
    });
    let mut fields = dns_fields(&x.reply);
    fields.push(("AD".into(), if x.ad() { "1 (validated)".into() } else { "0".into() }));
    for (c, t) in extended_errors(&x.raw) {
        fields.push(("Extended DNS Error".into(), format!("{c} ({}) {t}", ede_name(c))));
    }
    let summary = reply_summary(x);
    let (raw, ms, s) = (x.raw.clone(), x.elapsed.as_secs_f64() * 1000.0, summary.clone());
    events::bus().emit(|| events::event(to.clone(), from.clone(), "DNS", s, fields, raw, Some(ms)));
    summary
}

fn reply_summary(x: &Exchange) -> String {
    let p = &x.reply;
    let mut s = match p.rcode {
        0 if p.answer.is_empty() => "NOERROR, no records".to_string(),
        0 => p
            .answer
            .iter()
            .filter(|r| r.rtype != code::RRSIG)
            .map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata))
            .collect::<Vec<_>>()
            .join("; "),
        2 => "SERVFAIL".to_string(),
        3 => "NXDOMAIN".to_string(),
        c => format!("rcode {c}"),
    };
    if x.ad() {
        s.push_str(" [AD: validated]");
    }
    for (c, t) in extended_errors(&x.raw) {
        s.push_str(&format!(
            " [EDE {c} {}{}]",
            ede_name(c),
            if t.is_empty() { String::new() } else { format!(": {t}") }
        ));
    }
    s
}

/// Asks `resolver` from `host` with the resolver's upstream work recorded, printed and emitted.
async fn resolve_traced(
    frontend: &appnet_resolver::server::SharedFrontend,
    resolver: &Endpoint,
    host: &Endpoint,
    qname: &str,
    say: &mut dyn FnMut(String),
) -> Result<Exchange, String> {
    let from: IpAddr = host.addr.parse().map_err(|_| "host address")?;
    let server: SocketAddr = resolver.addr.parse().map_err(|_| "resolver address")?;
    frontend.resolver.start_recording();
    let x = ask_dnssec(from, server, qname, code::A, true).await;
    let steps = frontend.resolver.take_recording();
    let x = x?;
    say(format!("   {} → {}: recursive query {qname} A (DO=1)", host.host, resolver.host));
    let summary = emit_exchange(host, resolver, &format!("{qname} A"), &x);
    for s in &steps {
        if matches!(s.outcome, StepOutcome::Cached | StepOutcome::Local) {
            continue;
        }
        let peer = Endpoint::new(
            s.server_name.trim_end_matches('.'),
            s.server.map_or(String::new(), |a| a.to_string()),
        );
        say(format!("      {} {s}", resolver.host));
        // The exchange as the resolver's trace kept it: decoded fields and the bytes both ways.
        let decoded = |bytes: &[u8]| message::parse(bytes).map(|p| dns_fields(&p)).ok();
        let q = decoded(&s.query).unwrap_or_else(|| vec![("Question".to_string(), s.question.clone())]);
        let mut a = decoded(&s.reply).unwrap_or_default();
        a.insert(0, ("Outcome".to_string(), s.to_string()));
        let (query, reply) = (s.query.clone(), s.reply.clone());
        let ms = s.rtt.as_secs_f64() * 1000.0;
        events::bus().emit(|| {
            events::event(
                resolver.clone(),
                peer.clone(),
                "DNS",
                format!("query {} (iterative)", s.question),
                q,
                query,
                None,
            )
        });
        events::bus()
            .emit(|| events::event(peer.clone(), resolver.clone(), "DNS", s.to_string(), a, reply, Some(ms)));
    }
    say(format!("   {} → {}: {summary}", resolver.host, host.host));
    Ok(x)
}

/// The zone (of the lab) that holds `name`: the longest one it is at or below.
fn zone_of<'a>(lab: &'a Lab, name: &str) -> Option<&'a crate::topology::ZoneSpec> {
    lab.topology
        .zones
        .iter()
        .filter(|z| is_at_or_below(name, &fqdn(&z.name)))
        .max_by_key(|z| if fqdn(&z.name) == "." { 0 } else { fqdn(&z.name).len() })
}

/// The someschool.edu zone as the attacker serves it: the real zone's records with the victim's
/// address replaced, signed with a key of the attacker's own (no DS in edu names it).
fn forged_zone(lab: &Lab, spec: &AttackerSpec) -> Result<(appnet_dns::zone::Zone, u16), String> {
    let zone = zone_of(lab, &fqdn(&spec.victim)).ok_or("the victim's zone is not in the lab")?;
    let origin = fqdn(&zone.name);
    let apex = to_lower(&from_text(&origin)?);
    let victim = fqdn(&spec.victim);
    let real = zones::zone_text(&lab.topology, zone, 1);
    let mut text: String = real
        .lines()
        .filter(|l| {
            let owner = l.split_whitespace().next().unwrap_or("");
            let absolute = if owner.ends_with('.') { owner.to_string() } else { format!("{owner}.{origin}") };
            !(absolute == victim && l.contains(" A "))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{victim} {} IN A {}\n", zones::HOST_TTL, spec.addr));
    let records = parse_text(&text, "forged", &apex, &Includes::Forbidden).map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let g = dnssec::generate_key(&apex, Algorithm::EcdsaP256Sha256, true, now).map_err(|e| e.to_string())?;
    let key = dnssec::load_key(&g.public, Some(&g.private)).map_err(|e| e.to_string())?;
    let policy = appnet_dns::online::SignPolicy { validity_secs: 86_400, nsec3: false };
    let signed =
        appnet_dns::online::sign_records(&apex, &records, &[key], policy, now).map_err(|e| e.to_string())?;
    Ok((signed, g.tag))
}

/// Runs scene 18 against the lab; an error says which step did not hold.
pub async fn run(lab: &mut Lab, say: &mut dyn FnMut(String)) -> Result<(), String> {
    say(crate::tour::heading(SCENE));
    let (Some(spec), Some(keys)) = (lab.topology.attacker.clone(), lab.keys.clone()) else {
        say("   (skipped: the lab has no attacker, or runs without DNSSEC)".into());
        return Ok(());
    };
    let port = lab.topology.dns_port;
    let zone = zone_of(lab, &fqdn(&spec.victim)).ok_or("the victim's zone is not in the lab")?.clone();
    let ns = zone.servers.first().ok_or("the victim's zone has no server")?.clone();
    let ns_addr = SocketAddr::new(IpAddr::V4(ns.addr), port);
    let (forged, attacker_tag) = forged_zone(lab, &spec)?;

    say(format!(
        "{} has taken over {} ({ns_addr}), the name server of {}: it answers {} A with its own",
        spec.name,
        ns.name,
        zone.name.trim_end_matches('.'),
        spec.victim
    ));
    say(format!(
        "address {}, and signs the zone with a key of its own (key tag {attacker_tag}) — but no DS in the",
        spec.addr
    ));
    say(format!(
        "parent zone names that key: the DS there names the real key of {}.",
        zone.name.trim_end_matches('.')
    ));
    lab.stop_member(&ns.name).await;
    let config =
        appnet_dns::DnsConfig { listen: ns_addr, udp_workers: 1, ..appnet_dns::DnsConfig::default() };
    let evil = appnet_dns::DnsServer::bind_with_zones(config, vec![Arc::new(forged)]).await;
    let evil = match evil {
        Ok(s) => appnet_netkit::harness::start(s),
        Err(e) => {
            let _ = lab.restart_name_server(&ns.name).await;
            return Err(format!("scene {SCENE}: the forging server did not start: {e}"));
        }
    };
    let outcome = attack(lab, &spec, &keys, say).await;
    let _ = evil.stop().await;
    lab.restart_name_server(&ns.name).await.map_err(|e| e.to_string())?;
    if let Some(f) = lab.resolver("dns.poly.edu") {
        f.resolver.flush();
    }
    outcome?;
    chain_of_trust(lab, &keys, say).await
}

/// The forged answer through a plain resolver, then through the validating one.
async fn attack(
    lab: &Lab,
    spec: &AttackerSpec,
    keys: &crate::signing::LabKeys,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let port = lab.topology.dns_port;
    let host = Endpoint::new("cis.poly.edu", "127.0.10.4");
    let plain_addr = SocketAddr::new(IpAddr::V4(spec.plain_resolver.addr), port);
    let hints = lab.dir.join("root.hints");
    let config = crate::run::resolver_config(plain_addr, &hints, port, None);
    let plain = appnet_resolver::ResolverServer::bind(config)
        .await
        .map_err(|e| format!("scene {SCENE}: {} did not start: {e}", spec.plain_resolver.name))?;
    let plain_front = plain.frontend();
    let plain_run = appnet_netkit::harness::start(plain);
    let plain_ep = Endpoint::new(spec.plain_resolver.name.clone(), plain_addr);
    say(format!("A resolver without validation, {} ({plain_addr}), believes it:", spec.plain_resolver.name));
    let fooled = resolve_traced(&plain_front, &plain_ep, &host, &spec.victim, say).await;
    let _ = plain_run.stop().await;
    let fooled = fooled?;
    let forged_ip = spec.addr.octets().to_vec();
    if !fooled.reply.answer.iter().any(|r| r.rtype == code::A && r.rdata == forged_ip) {
        return Err(format!("scene {SCENE}: the plain resolver did not pass the forged address on"));
    }
    say(format!("   cis.poly.edu would now send its requests for {} to the attacker.", spec.victim));

    let name = "dns.poly.edu";
    let front = lab.resolver(name).ok_or("no dns.poly.edu")?.clone();
    front.resolver.flush();
    let addr = lab.addr_of(name).ok_or("no dns.poly.edu address")?;
    let ep = Endpoint::new(name, addr);
    say(format!(
        "The lab's validating resolver {name} ({addr}) checks the answer against the chain of trust"
    ));
    say(format!("from its root anchor ({}):", keys.anchor.display()));
    let checked = resolve_traced(&front, &ep, &host, &spec.victim, say).await?;
    let edes = extended_errors(&checked.raw);
    if checked.reply.rcode != 2 || checked.reply.answer.iter().any(|r| r.rdata == forged_ip) {
        return Err(format!(
            "scene {SCENE}: {name} should reject the forgery as bogus (SERVFAIL), got {}",
            reply_summary(&checked)
        ));
    }
    let why = edes
        .iter()
        .map(|(c, t)| {
            format!("{c} ({}){}", ede_name(*c), if t.is_empty() { String::new() } else { format!(": {t}") })
        })
        .collect::<Vec<_>>()
        .join("; ");
    say(format!(
        "   bogus: SERVFAIL{} — the host gets no address rather than the attacker's.",
        if why.is_empty() { String::new() } else { format!(" with Extended DNS Error {why}") }
    ));
    Ok(())
}

/// DNSKEY rdata → (flags, algorithm, key tag).
fn dnskey_info(rdata: &[u8]) -> Option<(u16, u8, u16)> {
    let flags = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    Some((flags, *rdata.get(3)?, dnssec::key_tag(rdata)))
}

/// DS rdata → (key tag, algorithm, digest type).
fn ds_info(rdata: &[u8]) -> Option<(u16, u8, u8)> {
    Some((u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]), *rdata.get(2)?, *rdata.get(3)?))
}

/// RRSIG rdata → (type covered, algorithm, key tag, signer).
fn rrsig_info(rdata: &[u8]) -> Option<(u16, u8, u16, String)> {
    let covered = u16::from_be_bytes([*rdata.first()?, *rdata.get(1)?]);
    let tag = u16::from_be_bytes([*rdata.get(16)?, *rdata.get(17)?]);
    // The signer's name: uncompressed labels up to the root label, then the signature.
    let rest = rdata.get(18..)?;
    let mut end = 0;
    while *rest.get(end)? != 0 {
        end += 1 + usize::from(rest[end]);
    }
    let signer = to_text(rest.get(..=end)?);
    Some((covered, *rdata.get(2)?, tag, signer))
}

fn alg_name(a: u8) -> &'static str {
    match a {
        8 => "RSASHA256",
        13 => "ECDSAP256SHA256",
        15 => "ED25519",
        _ => "?",
    }
}

/// Prints the chain of trust of [`CHAIN_NAME`] with the authoritative servers' own answers
/// (DO=1), each query emitted as events; checks every DS matches a key of the child.
async fn chain_of_trust(
    lab: &Lab,
    keys: &crate::signing::LabKeys,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    let name = fqdn(CHAIN_NAME);
    let mut path: Vec<&crate::topology::ZoneSpec> =
        lab.topology.zones.iter().filter(|z| is_at_or_below(&name, &fqdn(&z.name))).collect();
    path.sort_by_key(|z| if fqdn(&z.name) == "." { 0 } else { fqdn(&z.name).matches('.').count() });
    let port = lab.topology.dns_port;
    let me = Endpoint::new("cis.poly.edu", "127.0.10.4");
    let from: IpAddr = "127.0.10.4".parse().map_err(|_| "address")?;
    let server_of = |z: &crate::topology::ZoneSpec| {
        z.servers
            .iter()
            .find(|s| !s.secondary)
            .map(|s| (s.name.clone(), SocketAddr::new(IpAddr::V4(s.addr), port)))
    };
    say(format!("\nThe chain of trust of {CHAIN_NAME}, asked of each zone's own server with DO=1:"));
    let anchor = std::fs::read_to_string(&keys.anchor).map_err(|e| e.to_string())?;
    let anchor_tag: Option<u16> = anchor
        .lines()
        .find(|l| l.contains(" DS "))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "DS").nth(1).and_then(|t| t.parse().ok()));
    say(format!(
        "   trust anchor ({}): DS of the root key, key tag {}",
        keys.anchor.display(),
        anchor_tag.map_or("?".into(), |t| t.to_string())
    ));
    let mut expected_tags: Vec<u16> = anchor_tag.into_iter().collect();
    let mut links = 0;
    for (i, z) in path.iter().enumerate() {
        let zname = fqdn(&z.name);
        let (sname, saddr) = server_of(z).ok_or(format!("{zname} has no primary"))?;
        let server = Endpoint::new(sname.clone(), saddr);
        let x = ask_dnssec(from, saddr, &zname, dnssec::DNSKEY, false).await?;
        emit_exchange(&me, &server, &format!("{zname} DNSKEY"), &x);
        let keys_here: Vec<(u16, u8, u16, Vec<u8>, u32)> = x
            .reply
            .answer
            .iter()
            .filter(|r| r.rtype == dnssec::DNSKEY)
            .filter_map(|r| dnskey_info(&r.rdata).map(|(f, a, t)| (f, a, t, r.rdata.to_vec(), r.ttl)))
            .collect();
        let sigs: Vec<(u16, u8, u16, String)> = x
            .reply
            .answer
            .iter()
            .filter(|r| r.rtype == code::RRSIG)
            .filter_map(|r| rrsig_info(&r.rdata))
            .collect();
        for (flags, alg, tag, _, _) in &keys_here {
            let role = if flags & 1 == 1 { "KSK (SEP bit)" } else { "ZSK" };
            let vouched = if expected_tags.contains(tag) { "  ← matches the DS above" } else { "" };
            say(format!(
                "   {zname} DNSKEY {role}, algorithm {alg} ({}), key tag {tag}{vouched}",
                alg_name(*alg)
            ));
        }
        for (_, alg, tag, signer) in &sigs {
            say(format!(
                "   {zname} RRSIG over the DNSKEY set by key tag {tag} of {signer}, algorithm {alg}"
            ));
        }
        if !keys_here.iter().any(|k| expected_tags.contains(&k.2)) {
            return Err(format!("scene {SCENE}: no {zname} DNSKEY matches the DS (or anchor) above it"));
        }
        links += 1;
        // The next link: the child's DS, from this zone's server.
        if let Some(child) = path.get(i + 1) {
            let cname = fqdn(&child.name);
            let x = ask_dnssec(from, saddr, &cname, code::DS, false).await?;
            emit_exchange(&me, &server, &format!("{cname} DS"), &x);
            expected_tags.clear();
            for r in x.reply.answer.iter() {
                if r.rtype == code::DS
                    && let Some((tag, alg, dt)) = ds_info(&r.rdata)
                {
                    say(format!(
                        "   {zname} → DS {cname} key tag {tag}, algorithm {alg} ({}), digest type {dt} (SHA-256)",
                        alg_name(alg)
                    ));
                    expected_tags.push(tag);
                } else if r.rtype == code::RRSIG
                    && let Some((_, alg, tag, signer)) = rrsig_info(&r.rdata)
                {
                    say(format!(
                        "   {zname}   RRSIG over that DS by key tag {tag} of {signer}, algorithm {alg}"
                    ));
                }
            }
            if expected_tags.is_empty() {
                return Err(format!("scene {SCENE}: {zname} publishes no DS for {cname}"));
            }
        }
    }
    let last = path.last().ok_or("no zone holds the name")?;
    let (sname, saddr) = server_of(last).ok_or("no server")?;
    let server = Endpoint::new(sname, saddr);
    let x = ask_dnssec(from, saddr, &name, code::A, false).await?;
    emit_exchange(&me, &server, &format!("{name} A"), &x);
    let mut signed = false;
    for r in &x.reply.answer {
        if r.rtype == code::A {
            say(format!("   {}", record_text(&r.owner, r.rtype, r.ttl, &r.rdata)));
        } else if r.rtype == code::RRSIG
            && let Some((covered, alg, tag, signer)) = rrsig_info(&r.rdata)
        {
            say(format!(
                "   RRSIG over {name} {} by key tag {tag} of {signer}, algorithm {alg} ({})",
                type_name(covered),
                alg_name(alg)
            ));
            signed = true;
        }
    }
    if !signed {
        return Err(format!("scene {SCENE}: {name} A came without its RRSIG"));
    }
    say(format!("   {links} zones, each key vouched for by its parent's DS, the root's by the anchor."));

    // And the lab's validating resolver agrees: AD on the genuine answer.
    let front = lab.resolver("dns.poly.edu").ok_or("no dns.poly.edu")?.clone();
    let addr = lab.addr_of("dns.poly.edu").ok_or("no dns.poly.edu address")?;
    say("dns.poly.edu validates the same chain for cis.poly.edu:".into());
    let ok = resolve_traced(&front, &Endpoint::new("dns.poly.edu", addr), &me, CHAIN_NAME, say).await?;
    if ok.reply.rcode != 0 || !ok.ad() {
        return Err(format!(
            "scene {SCENE}: {CHAIN_NAME} should be secure (AD) at dns.poly.edu, got {}",
            reply_summary(&ok)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_errors_reads_the_opt_option_and_survives_garbage() {
        // Header (1 question, 0/0/1), question ". A IN", OPT with EDE 6 "bad".
        let mut m = vec![0, 1, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1];
        m.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 9, 0, 15, 0, 5, 0, 6, b'b', b'a', b'd']);
        assert_eq!(extended_errors(&m), vec![(6, "bad".to_string())]);
        for cut in 0..m.len() {
            let _ = extended_errors(&m[..cut]);
        }
        let mut bad = m.clone();
        let n = bad.len();
        bad[n - 6] = 0xff; // option length past the end
        assert!(extended_errors(&bad).is_empty());
    }
}
