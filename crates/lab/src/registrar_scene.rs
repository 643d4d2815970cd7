//! Scene 17, "Inserting records into DNS" (deck 004): the registrar inserts Network Utopia's
//! delegation into the com zone with TSIG-signed RFC 2136 updates — the textbook's
//! `(networkutopia.com, dns1.networkutopia.com, NS)` and `(dns1.networkutopia.com, address, A)`,
//! plus the DS record that keeps the chain of trust unbroken — and the name resolves through
//! the hierarchy.
//!
//! The lab starts with networkutopia.com delegated (scene 5, the interop scripts and anyone
//! typing `dig www.networkutopia.com` use it), so the scene first has the registrar withdraw the
//! delegation, shows that the name no longer resolves (NXDOMAIN from com), then replays the
//! registration and finally lists the secondary dns2 again: the lab ends as it started.

use crate::events::{self, Endpoint};
use crate::run::Lab;
use crate::tour::{dns_fields, scene_query};
use crate::zones::fqdn;
use appnet_dns::client::{read_framed, write_framed};
use appnet_dns::update::CLASS_NONE;
use appnet_dns::wire::message;
use appnet_dns::wire::name::{NameBuf, from_text, to_lower};
use appnet_dns::wire::rrtype::{CLASS_ANY, CLASS_IN, code};
use appnet_dns::wire::update::{UpdateRr, build};
use appnet_dns::wire::zonefile::record_text;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The scene's number in the tour.
pub const SCENE: u32 = 17;
/// Its title (the tour's heading and the page's button).
pub const TITLE: &str = "inserting records into DNS — the registrar registers networkutopia.com";

/// The registrar host of the scene: it holds the TSIG key the `zone` server accepts updates
/// with, and registers `registrant` there.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSpec {
    /// Its host name.
    pub name: String,
    /// Its loopback address (updates leave from it).
    pub addr: Ipv4Addr,
    /// The TLD zone it may update (`com`).
    pub zone: String,
    /// The second-level zone it registers (`networkutopia.com`, a zone of the lab).
    pub registrant: String,
}

/// TTL of the inserted delegation (the textbook's records carry none; a day, like com's).
const TTL: u32 = crate::zones::DELEGATION_TTL;

fn rr(name: &[u8], rtype: u16, class: u16, ttl: u32, rdata: Vec<u8>) -> UpdateRr {
    UpdateRr { name: NameBuf::from(name), rtype, class, ttl, rdata }
}

/// How one UPDATE went: its rcode and the bytes both ways.
struct Sent {
    rcode: u16,
    query: Vec<u8>,
    reply: Vec<u8>,
    elapsed: Duration,
}

/// Sends one TSIG-signed UPDATE over TCP from the registrar's address, verifying the signed reply.
async fn send_update(
    from: Ipv4Addr,
    server: SocketAddr,
    key: &Arc<appnet_dns::wire::tsig::Key>,
    mut packet: Vec<u8>,
) -> Result<Sent, String> {
    use appnet_dns::wire::tsig::sign::{Verifier, sign_request};
    let now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mac = sign_request(&mut packet, key, now());
    let mut verifier = Verifier::new(key.clone(), mac);
    let started = Instant::now();
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        let mut stream = socket.connect(server).await?;
        write_framed(&mut stream, &packet).await?;
        read_framed(&mut stream).await
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from {server} to the UPDATE"))?
        .map_err(|e| format!("UPDATE to {server}: {e}"))?;
    let parsed = message::parse(&reply)?;
    if parsed.rcode == 0 {
        verifier.check(&reply, now()).map_err(|e| format!("the com server's reply failed TSIG: {e}"))?;
    }
    Ok(Sent { rcode: parsed.rcode, query: packet, reply, elapsed: started.elapsed() })
}

/// Prints an UPDATE and its reply, emitted as two events.
fn tell_update(
    say: &mut dyn FnMut(String),
    registrar: &Endpoint,
    server: &Endpoint,
    what: &str,
    lines: &[String],
    sent: &Sent,
) {
    say(format!("   {} → {}: UPDATE (RFC 2136, TSIG-signed) {what}", registrar.host, server.host));
    for l in lines {
        say(format!("        {l}"));
    }
    let rcode = appnet_dns::client::rcode_name(sent.rcode);
    say(format!(
        "   {} → {}: {rcode} ({:.1} ms)",
        server.host,
        registrar.host,
        sent.elapsed.as_secs_f64() * 1000.0
    ));
    let mut fields = message::parse(&sent.query).map(|p| dns_fields(&p)).unwrap_or_default();
    fields.insert(
        0,
        ("Sections".into(), "zone = question, prerequisites = answer, updates = authority".into()),
    );
    for (i, l) in lines.iter().enumerate() {
        fields.push((format!("Update {}", i + 1), l.clone()));
    }
    fields.push(("TSIG".into(), format!("key {} (hmac-sha256)", crate::signing::REGISTRAR_KEY_NAME)));
    let query = sent.query.clone();
    events::bus().emit(|| {
        events::event(registrar.clone(), server.clone(), "DNS", format!("UPDATE {what}"), fields, query, None)
    });
    let reply_fields = message::parse(&sent.reply).map(|p| dns_fields(&p)).unwrap_or_default();
    let reply = sent.reply.clone();
    let ms = sent.elapsed.as_secs_f64() * 1000.0;
    events::bus().emit(|| {
        events::event(
            server.clone(),
            registrar.clone(),
            "DNS",
            format!("UPDATE {rcode}"),
            reply_fields,
            reply,
            Some(ms),
        )
    });
}

/// Runs scene 17 against the lab; an error says which step did not hold.
pub async fn run(lab: &mut Lab, say: &mut dyn FnMut(String)) -> Result<(), String> {
    say(crate::tour::heading(SCENE));
    let (Some(spec), Some(keys)) = (lab.topology.registrar.clone(), lab.keys.clone()) else {
        say("   (skipped: the lab has no registrar, or runs without DNSSEC and updates)".into());
        return Ok(());
    };
    let tld = fqdn(&spec.zone);
    let child = fqdn(&spec.registrant);
    let child_spec = lab
        .topology
        .zones
        .iter()
        .find(|z| fqdn(&z.name) == child)
        .cloned()
        .ok_or(format!("{child} is not a zone of the lab"))?;
    let tld_spec =
        lab.topology.zones.iter().find(|z| fqdn(&z.name) == tld).cloned().ok_or(format!("no {tld} zone"))?;
    let tld_server = tld_spec.servers.iter().find(|s| !s.secondary).ok_or(format!("{tld} has no primary"))?;
    let server = SocketAddr::new(IpAddr::V4(tld_server.addr), lab.topology.dns_port);
    let server_ep = Endpoint::new(tld_server.name.clone(), server);
    let registrar = Endpoint::new(spec.name.clone(), spec.addr);
    let key_text = std::fs::read_to_string(&keys.registrar_key).map_err(|e| e.to_string())?;
    let key = appnet_dns::wire::tsig::parse_key_file(&key_text)?
        .into_iter()
        .next()
        .map(Arc::new)
        .ok_or("the registrar key file holds no key")?;
    let zone = to_lower(&from_text(&tld)?);
    let apex = to_lower(&from_text(&child)?);
    let primary =
        child_spec.servers.iter().find(|s| !s.secondary).ok_or(format!("{child} has no primary"))?;
    let primary_name = to_lower(&from_text(&fqdn(&primary.name))?);
    let short = child.trim_end_matches('.').to_string();

    say(format!(
        "{short} is in the lab from the start; to replay its registration, {} first withdraws it",
        spec.name
    ));
    say(format!("from the {} zone (NS, glue and DS gone):", tld.trim_end_matches('.')));
    let mut deletes = vec![rr(&apex, code::ANY, CLASS_ANY, 0, Vec::new())];
    let mut lines = vec![format!("delete {child} (every record: NS, DS)")];
    for s in &child_spec.servers {
        let n = to_lower(&from_text(&fqdn(&s.name))?);
        deletes.push(rr(&n, code::ANY, CLASS_ANY, 0, Vec::new()));
        lines.push(format!("delete {} (glue)", fqdn(&s.name)));
    }
    let sent = send_update(spec.addr, server, &key, build(rand::random(), &zone, &[], &deletes)).await?;
    tell_update(say, &registrar, &server_ep, "withdraw the delegation", &lines, &sent);
    if sent.rcode != 0 {
        return Err(format!(
            "scene {SCENE}: the withdrawal got {}",
            appnet_dns::client::rcode_name(sent.rcode)
        ));
    }
    for r in &lab.topology.resolvers {
        if let Some(f) = lab.resolver(&r.name) {
            f.resolver.flush();
        }
    }
    let www = format!("www.{child}");
    let cis: IpAddr = "127.0.10.4".parse().map_err(|_| "address")?;
    say(format!(
        "Unregistered, www.{short} does not resolve: the {} server has never heard of {short}.",
        tld.trim_end_matches('.')
    ));
    let (before, _) = scene_query(lab, ("cis.poly.edu", cis), "dns.poly.edu", &www, code::A, say).await?;
    if before.rcode != 3 {
        return Err(format!(
            "scene {SCENE}: {www} should be NXDOMAIN before the registration, got rcode {}",
            before.rcode
        ));
    }

    // The DS of the registrant's key, as the registrant hands it to the registrar.
    let all = appnet_dns::wire::dnssec::load_keys_dir(&keys.key_dir).map_err(|e| e.to_string())?;
    let child_keys: Vec<_> = all.iter().filter(|k| k.owner == apex && k.is_ksk()).collect();
    let mut inserts = vec![
        rr(&apex, code::NS, CLASS_IN, TTL, primary_name.to_vec()),
        rr(&primary_name, code::A, CLASS_IN, TTL, primary.addr.octets().to_vec()),
    ];
    let mut lines = vec![
        format!("add ({child}, {}, NS)", fqdn(&primary.name)),
        format!("add ({}, {}, A)", fqdn(&primary.name), primary.addr),
    ];
    for k in &child_keys {
        let ds = appnet_dns::wire::dnssec::ds_rdata(&apex, k);
        lines.push(format!("add {}", record_text(&apex, code::DS, TTL, &ds)));
        inserts.push(rr(&apex, code::DS, CLASS_IN, TTL, ds));
    }
    let prereq = [rr(&apex, code::ANY, CLASS_NONE, 0, Vec::new())];
    say(format!(
        "Network Utopia registers {short}; {} inserts the textbook's two records, and the DS",
        spec.name
    ));
    say(format!("of {short}'s key so validating resolvers can follow the chain of trust into it:"));
    let sent = send_update(spec.addr, server, &key, build(rand::random(), &zone, &prereq, &inserts)).await?;
    tell_update(
        say,
        &registrar,
        &server_ep,
        &format!("insert {child} (prerequisite: {child} does not exist)"),
        &lines,
        &sent,
    );
    if sent.rcode != 0 {
        return Err(format!(
            "scene {SCENE}: the registration got {}",
            appnet_dns::client::rcode_name(sent.rcode)
        ));
    }
    say("   The com server bumped its serial, journaled the change for IXFR and signed the new records."
        .into());

    let cam: IpAddr = "127.0.10.10".parse().map_err(|_| "address")?;
    say(format!(
        "dns.poly.edu may remember the NXDOMAIN for up to {}s (RFC 2308); dns.cam.ac.uk has not asked yet:",
        crate::zones::NEGATIVE_TTL
    ));
    let (after, sent_up) =
        scene_query(lab, ("www.cl.cam.ac.uk", cam), "dns.cam.ac.uk", &www, code::A, say).await?;
    if after.rcode != 0 || !after.answer.iter().any(|r| r.rtype == code::A) || sent_up < 3 {
        return Err(format!(
            "scene {SCENE}: after the registration {www} should resolve through root, {tld} and {child} (rcode {}, {sent_up} upstream queries)",
            after.rcode
        ));
    }

    // The lab's secondary comes back into the delegation.
    let mut extra = Vec::new();
    let mut lines = Vec::new();
    for s in child_spec.servers.iter().filter(|s| s.addr != primary.addr) {
        let n = to_lower(&from_text(&fqdn(&s.name))?);
        extra.push(rr(&apex, code::NS, CLASS_IN, TTL, n.to_vec()));
        extra.push(rr(&n, code::A, CLASS_IN, TTL, s.addr.octets().to_vec()));
        lines.push(format!("add ({child}, {}, NS)", fqdn(&s.name)));
        lines.push(format!("add ({}, {}, A)", fqdn(&s.name), s.addr));
    }
    if !extra.is_empty() {
        say("Network Utopia also lists its secondary, as the lab had it:".into());
        let sent = send_update(spec.addr, server, &key, build(rand::random(), &zone, &[], &extra)).await?;
        tell_update(say, &registrar, &server_ep, "add the secondary", &lines, &sent);
        if sent.rcode != 0 {
            return Err(format!(
                "scene {SCENE}: adding the secondary got {}",
                appnet_dns::client::rcode_name(sent.rcode)
            ));
        }
    }
    // Later scenes start from clean caches (dns.poly.edu forgets its NXDOMAIN).
    if let Some(f) = lab.resolver("dns.poly.edu") {
        f.resolver.flush();
    }
    Ok(())
}
