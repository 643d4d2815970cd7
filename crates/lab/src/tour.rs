//! The guided tour: the textbook's scenes (DNS, the Web, caches, the CDN, a torrent, the Chord
//! ring), run against the live lab with real queries from lab hosts, each exchange printed step
//! by step.

use crate::events::{self, Endpoint};
use crate::run::Lab;
use appnet_dns::wire::message::{self, Parsed};
use appnet_dns::wire::name::{from_text, to_text};
use appnet_dns::wire::query::opcode;
use appnet_dns::wire::rrtype::{code, type_name};
use appnet_dns::wire::zonefile::record_text;
use appnet_resolver::trace::{Step, StepOutcome};
use appnet_resolver::transport::{NetTransport, Transport};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Sends one recursive query from the host at `from` (a lab address) to `server`, over UDP with
/// the resolver's own transport (a fresh socket bound to the host's address), retrying twice.
pub async fn ask_from(
    from: IpAddr,
    server: SocketAddr,
    qname: &str,
    qtype: u16,
) -> Result<(Parsed, Duration), String> {
    ask_exchange(from, server, qname, qtype).await.map(|x| (x.reply, x.elapsed))
}

/// One stub exchange with the bytes on the wire (what the page decodes).
pub struct Exchange {
    /// The query as sent.
    pub query: Vec<u8>,
    /// The reply as received.
    pub raw: Vec<u8>,
    /// The reply, parsed.
    pub reply: Parsed,
    /// Time from the first send to the reply.
    pub elapsed: Duration,
}

/// [`ask_from`], keeping the query's and the reply's bytes.
pub async fn ask_exchange(
    from: IpAddr,
    server: SocketAddr,
    qname: &str,
    qtype: u16,
) -> Result<Exchange, String> {
    let name = from_text(qname)?;
    let transport = NetTransport { source: Some(from) };
    let query = message::build_query(rand_id(), opcode::QUERY, &name, qtype, true, Some((1232, 0)));
    let started = Instant::now();
    for _ in 0..3 {
        if let Ok(raw) = transport.exchange(server, &query, false, Duration::from_secs(4)).await {
            let reply = message::parse(&raw)?;
            return Ok(Exchange { query, raw, reply, elapsed: started.elapsed() });
        }
    }
    Err(format!("no answer from {server}"))
}

/// One numbered line of an exchange, printed and emitted as the same event.
struct Line<'a> {
    n: usize,
    from_label: &'a str,
    to_label: &'a str,
    from: Endpoint,
    to: Endpoint,
    summary: String,
}

fn tell(
    say: &mut dyn FnMut(String),
    line: Line,
    fields: impl FnOnce() -> Vec<(String, String)>,
    bytes: &[u8],
    latency: Option<Duration>,
) {
    say(format!("{:>2}. {} → {}: {}", line.n, line.from_label, line.to_label, line.summary));
    events::bus().emit(|| {
        events::event(
            line.from,
            line.to,
            "DNS",
            line.summary,
            fields(),
            bytes.to_vec(),
            latency.map(|d| d.as_secs_f64() * 1000.0),
        )
    });
}

/// A resolver step's query or reply for the page: the message decoded from the bytes the
/// resolver sent or received (header, question, each section), then the step's outcome.
fn step_fields(s: &Step, reply: bool) -> Vec<(String, String)> {
    let bytes = if reply { &s.reply } else { &s.query };
    let mut f = match message::parse(bytes) {
        Ok(p) => dns_fields(&p),
        Err(_) => {
            let flags = if reply { "QR (reply), RD=0 (iterative)" } else { "RD=0 (iterative)" };
            vec![("Question".to_string(), s.question.clone()), ("Flags".to_string(), flags.to_string())]
        }
    };
    if reply {
        match &s.outcome {
            StepOutcome::Referral { zone, servers } => {
                f.push(("Outcome".into(), format!("referral to the {zone} zone")));
                f.push(("Authority (NS)".into(), servers.join(", ")));
            }
            StepOutcome::Answer { records } => {
                f.push(("Outcome".into(), "answer".into()));
                for (i, r) in records.iter().enumerate() {
                    f.push((format!("Answer {}", i + 1), r.clone()));
                }
            }
            StepOutcome::NxDomain => f.push(("Outcome".into(), "NXDOMAIN (rcode 3)".into())),
            StepOutcome::NoData => f.push(("Outcome".into(), "NODATA (no records of that type)".into())),
            StepOutcome::Failed(why) => f.push(("Outcome".into(), why.clone())),
            _ => {}
        }
        f.push(("RTT".into(), format!("{:.3} ms", s.rtt.as_secs_f64() * 1000.0)));
    }
    f
}

fn rand_id() -> u16 {
    // Good enough for a tour query: nanosecond clock bits.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or(1)
}

fn answer_text(p: &Parsed) -> String {
    if p.rcode == 3 {
        return "NXDOMAIN (no such name)".into();
    }
    if p.answer.is_empty() {
        return format!("no records (rcode {})", p.rcode);
    }
    p.answer.iter().map(|r| record_text(&r.owner, r.rtype, r.ttl, &r.rdata)).collect::<Vec<_>>().join("; ")
}

/// Prints one exchange as two numbered lines (query, then reply), like the textbook figure, each
/// also emitted on the event bus.
fn print_steps(steps: &[Step], resolver: &Endpoint, n: &mut usize, say: &mut dyn FnMut(String)) {
    let name = resolver.host.as_str();
    for s in steps {
        let server =
            s.server.map(|a| format!("{} ({a})", s.server_name)).unwrap_or_else(|| s.server_name.clone());
        let peer = Endpoint::new(
            s.server_name.trim_end_matches('.'),
            s.server.map_or(String::new(), |a| a.to_string()),
        );
        let ms = s.rtt.as_secs_f64() * 1000.0;
        let query = |n: usize| Line {
            n,
            from_label: name,
            to_label: &server,
            from: resolver.clone(),
            to: peer.clone(),
            summary: format!("query {} (iterative)", s.question),
        };
        match &s.outcome {
            StepOutcome::Cached => say(format!("   {name} finds {} in its cache: no query sent", s.question)),
            StepOutcome::Local => say(format!("   {name} answers {} locally", s.question)),
            StepOutcome::Timeout { waited } => {
                tell(say, query(*n), || step_fields(s, false), &s.query, None);
                say(format!(
                    "    … no reply within {:.0} ms: TIMEOUT; back off and try another replica",
                    waited.as_secs_f64() * 1000.0
                ));
                *n += 1;
            }
            outcome => {
                tell(say, query(*n), || step_fields(s, false), &s.query, None);
                let reply = match outcome {
                    StepOutcome::Referral { zone, servers } => {
                        format!("referral: ask the {zone} servers [{}]", servers.join(", "))
                    }
                    StepOutcome::Answer { records } => format!("answer: {}", records.join("; ")),
                    StepOutcome::NxDomain => "NXDOMAIN: no such name".into(),
                    StepOutcome::NoData => "no records of that type".into(),
                    StepOutcome::Failed(why) => why.clone(),
                    _ => String::new(),
                };
                let line = Line {
                    n: *n + 1,
                    from_label: &server,
                    to_label: name,
                    from: peer.clone(),
                    to: resolver.clone(),
                    summary: format!("{reply} ({ms:.1} ms)"),
                };
                tell(say, line, || step_fields(s, true), &s.reply, Some(s.rtt));
                *n += 2;
            }
        }
    }
}

/// One host asking its local resolver, with the resolver's work shown step by step.
/// Returns the answer and how many upstream queries it took.
pub async fn scene_query(
    lab: &Lab,
    host: (&str, IpAddr),
    resolver_name: &str,
    qname: &str,
    qtype: u16,
    say: &mut dyn FnMut(String),
) -> Result<(Parsed, u64), String> {
    let frontend = lab.resolver(resolver_name).ok_or(format!("no resolver {resolver_name}"))?;
    let server = lab.addr_of(resolver_name).ok_or(format!("no address for {resolver_name}"))?;
    let upstream = &frontend.resolver.counters().upstream_queries;
    let before = upstream.load(Ordering::Relaxed);
    frontend.resolver.start_recording();
    let result = ask_exchange(host.1, server, qname, qtype).await;
    let steps = frontend.resolver.take_recording();
    let x = result?;
    let sent = upstream.load(Ordering::Relaxed) - before;
    let client = Endpoint::new(host.0, host.1);
    let resolver = Endpoint::new(resolver_name, server);
    let client_label = format!("{} ({})", host.0, host.1);
    let resolver_label = format!("{resolver_name} ({server})");
    let mut n = 1;
    let line = Line {
        n,
        from_label: &client_label,
        to_label: &resolver_label,
        from: client.clone(),
        to: resolver.clone(),
        summary: format!("recursive query {qname} {}", type_name(qtype)),
    };
    let query_fields = || message::parse(&x.query).map(|p| dns_fields(&p)).unwrap_or_default();
    tell(say, line, query_fields, &x.query, None);
    n += 1;
    print_steps(&steps, &resolver, &mut n, say);
    let line = Line {
        n,
        from_label: resolver_name,
        to_label: host.0,
        from: resolver,
        to: client,
        summary: format!(
            "{} ({:.1} ms in all, {sent} upstream queries)",
            answer_text(&x.reply),
            x.elapsed.as_secs_f64() * 1000.0
        ),
    };
    tell(say, line, || dns_fields(&x.reply), &x.raw, Some(x.elapsed));
    Ok((x.reply, sent))
}

/// A DNS message decoded field by field for the page: header, question and each section.
pub fn dns_fields(p: &Parsed) -> Vec<(String, String)> {
    let mut flags = Vec::new();
    for (on, name) in [(p.qr, "QR"), (p.aa, "AA"), (p.tc, "TC"), (p.rd, "RD"), (p.ra, "RA")] {
        if on {
            flags.push(name);
        }
    }
    let rcode = match p.rcode {
        0 => "NOERROR".to_string(),
        2 => "SERVFAIL".to_string(),
        3 => "NXDOMAIN".to_string(),
        5 => "REFUSED".to_string(),
        c => format!("rcode {c}"),
    };
    let mut f = vec![
        ("ID".to_string(), p.id.to_string()),
        ("Flags".to_string(), format!("{} opcode {} {rcode}", flags.join(" "), p.opcode)),
    ];
    if let Some((name, qtype, class)) = &p.question {
        f.push(("Question".into(), format!("{} {} class {class}", to_text(name), type_name(*qtype))));
    }
    let sections = [("Answer", &p.answer), ("Authority", &p.authority), ("Additional", &p.additional)];
    for (section, records) in sections {
        f.push((format!("{section} section"), format!("{} records", records.len())));
        for (i, r) in records.iter().enumerate() {
            f.push((format!("{section} {}", i + 1), record_text(&r.owner, r.rtype, r.ttl, &r.rdata)));
        }
    }
    if let Some(e) = &p.edns {
        f.push(("EDNS".into(), format!("payload {} version {} DO={}", e.payload, e.version, e.dnssec_ok)));
    }
    f
}

/// The tour's numbered scenes, by number and title as the tour prints them (the page's buttons).
/// `run` runs them in this order and `run_scene` dispatches each number; every scene's first line
/// is [`heading`] of its number, so the text and the buttons cannot drift apart.
pub const SCENES: &[(u32, &str)] = &[
    (1, "iterative resolution"),
    (2, "the same name again — answered from the cache"),
    (3, "a misspelt name — NXDOMAIN, then from the negative cache"),
    (4, "a replica is down — timeout, backoff, the other replica answers"),
    (5, "replication — a secondary filled by zone transfer"),
    (6, "the Web page with ten images"),
    (7, "the institutional cache — conditional GET"),
    (8, "a CDN — the nearest replica"),
    (9, "Alice joins a torrent"),
    (10, "the Chord ring"),
    (11, "alice@crepes.fr mails bob@hamburger.edu"),
    (12, "FTP — one control connection, a new data connection per file"),
    (13, "one address, many machines — a layer-4 load balancer"),
    (14, "Napster, Gnutella and ultrapeers — \"Hey Jude\" found three ways"),
    (15, "Alice calls Bob over SIP"),
    (crate::nat_lab::SCENE, crate::nat_lab::TITLE),
    (crate::registrar_scene::SCENE, crate::registrar_scene::TITLE),
    (crate::dnssec_scene::SCENE, crate::dnssec_scene::TITLE),
];

/// Scene `n`'s title line as the tour prints it: "\n== Scene N: title" (empty title for a number
/// not in [`SCENES`]).
pub fn heading(n: u32) -> String {
    let title = SCENES.iter().find(|(s, _)| *s == n).map_or("", |(_, t)| t);
    format!("\n== Scene {n}: {title}")
}

/// Prints scene `n`'s heading and why it does not run: the lab's topology lacks its services.
fn absent(n: u32, what: &str, say: &mut dyn FnMut(String)) {
    say(heading(n));
    say(format!("   (skipped: the lab runs no {what})"));
}

/// Runs every scene of [`SCENES`] in order, printing through `say`.
pub async fn run(lab: &mut Lab, say: &mut dyn FnMut(String)) -> Result<(), String> {
    for (n, _) in SCENES {
        run_scene(lab, *n, say).await?;
    }
    Ok(())
}

const CIS: &str = "127.0.10.4";
const CAM_HOST: &str = "127.0.10.10";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("static")
}

/// Runs scene `n` of [`SCENES`] alone (scenes 2 and 3 expect the cache the scenes before them
/// filled); a scene whose part of the topology is absent prints its heading and says so.
pub async fn run_scene(lab: &mut Lab, n: u32, say: &mut dyn FnMut(String)) -> Result<(), String> {
    let cis = ip(CIS);
    let cam_host = ip(CAM_HOST);
    match n {
        1 => {
            say(format!("{} (textbook figure: cis.poly.edu wants gaia.cs.umass.edu)", heading(1)));
            say("The host sends one recursive query to its local DNS server, which walks the hierarchy"
                .into());
            say("iteratively. umass.edu delegates cs.umass.edu to its own server, so the walk has one more"
                .into());
            say("exchange than the textbook's 8-step figure (which skips the intermediate dns.umass.edu)."
                .into());
            if lab.keys.is_some() {
                say("The lab is signed: after the answer dns.poly.edu also fetches each zone's DNSKEY and"
                    .into());
                say("the DS its parent holds, to validate the chain of trust (scene 18 prints that chain)."
                    .into());
            }
            let (first, sent) =
                scene_query(lab, ("cis.poly.edu", cis), "dns.poly.edu", "gaia.cs.umass.edu", code::A, say)
                    .await?;
            if first.answer.is_empty() || sent == 0 {
                return Err("scene 1 did not resolve gaia.cs.umass.edu through the hierarchy".into());
            }
        }
        2 => {
            say(heading(2));
            let (_, sent) =
                scene_query(lab, ("cis.poly.edu", cis), "dns.poly.edu", "gaia.cs.umass.edu", code::A, say)
                    .await?;
            say(format!("   upstream queries this time: {sent} (the TTL counts down in the cached answer)"));
            if sent != 0 {
                return Err("scene 2 went upstream for a cached name".into());
            }
        }
        3 => {
            say(format!("{} (RFC 2308)", heading(3)));
            let (nx, _) =
                scene_query(lab, ("cis.poly.edu", cis), "dns.poly.edu", "gaai.cs.umass.edu", code::A, say)
                    .await?;
            let (_, sent) =
                scene_query(lab, ("cis.poly.edu", cis), "dns.poly.edu", "gaai.cs.umass.edu", code::A, say)
                    .await?;
            say(format!(
                "   the second time: {sent} upstream queries; the SOA's MINIMUM ({}s) bounds how long it is remembered",
                crate::zones::NEGATIVE_TTL
            ));
            if nx.rcode != 3 || sent != 0 {
                return Err("scene 3 did not serve the negative answer from the cache".into());
            }
        }
        4 => {
            say(heading(4));
            say("dns1.stanford.edu goes dark (its packets vanish); a host at Cambridge asks dns.cam.ac.uk"
                .into());
            say("for www.stanford.edu.".into());
            lab.black_hole("dns1.stanford.edu").await;
            let (www, _) = scene_query(
                lab,
                ("www.cl.cam.ac.uk", cam_host),
                "dns.cam.ac.uk",
                "www.stanford.edu",
                code::A,
                say,
            )
            .await?;
            if www.answer.is_empty() {
                return Err("scene 4 got no answer from the surviving replica".into());
            }
        }
        5 => {
            say(format!("{} (dns2.networkutopia.com, from dns1)", heading(5)));
            let Some(dns2) = lab.addr_of("dns2.networkutopia.com") else {
                say("   (skipped: the lab runs no dns2.networkutopia.com)".into());
                return Ok(());
            };
            {
                let ready = appnet_netkit::harness::wait_until(
                    Duration::from_secs(10),
                    Duration::from_millis(50),
                    || async {
                        ask_from(cis, dns2, "www.networkutopia.com", code::A)
                            .await
                            .is_ok_and(|(p, _)| !p.answer.is_empty())
                    },
                )
                .await;
                let (p, _) = ask_from(cis, dns2, "www.networkutopia.com", code::A).await?;
                say(format!(
                    "   dns2.networkutopia.com ({dns2}) answers {} with AA={} after its AXFR from dns1 ({})",
                    to_text(&from_text("www.networkutopia.com")?),
                    p.aa,
                    if ready { answer_text(&p) } else { "transfer not finished".into() }
                ));
            }
        }
        6 => {
            say(format!("{} — non-persistent, persistent, pipelined", heading(6)));
            // With --link, cis.poly.edu is behind the emulated link: real RTTs.
            if let Some(net) = &lab.link {
                return net.scene(say).await;
            }
            let Some(web) = lab.addr_of("www.someschool.edu") else {
                say("   (skipped: the lab runs no www.someschool.edu)".into());
                return Ok(());
            };
            {
                say(format!(
                    "cis.poly.edu fetches http://www.someschool.edu:{}/someDepartment/home.index",
                    web.port()
                ));
                say(format!(
                    "   {:<14} {:>11} {:>8} {:>9} {:>14} {:>10}",
                    "mode", "connections", "objects", "bytes", "textbook RTTs", "measured"
                ));
                for mode in [
                    crate::http_scene::Mode::NonPersistent,
                    crate::http_scene::Mode::Persistent,
                    crate::http_scene::Mode::Pipelined,
                ] {
                    let page = "/someDepartment/home.index";
                    let f = crate::http_scene::fetch_page(cis, web, "www.someschool.edu", page, mode).await?;
                    say(format!(
                        "   {:<14} {:>11} {:>8} {:>9} {:>14} {:>8.2}ms",
                        format!("{mode:?}"),
                        f.connections,
                        f.objects,
                        f.bytes,
                        f.rtts,
                        f.elapsed.as_secs_f64() * 1000.0
                    ));
                    if f.objects != 11 {
                        return Err(format!(
                            "scene 6 fetched {} objects, expected the page and ten images",
                            f.objects
                        ));
                    }
                }
                say("   On loopback an RTT is microseconds, so the times differ little; the RTT counts are what"
                    .into());
                say("   the textbook compares: 2 per object without persistence, 1 per object with it, and one"
                    .into());
                say("   for all ten images when the requests are pipelined.".into());
            }
        }
        7 => match lab.topology.caches.first().cloned() {
            Some(cache) => cache_scene(lab, &cache, say).await?,
            None => absent(7, "institutional cache", say),
        },
        8 => match lab.topology.cdn.clone() {
            Some(cdn) => {
                cdn_scene(lab, &cdn, say).await?;
                crate::push_scene::run(lab, &cdn, say).await?;
            }
            None => absent(8, "CDN", say),
        },
        9 if lab.topology.swarm.is_none() => absent(9, "torrent swarm", say),
        9 => {
            crate::torrent_scene::run(lab, say).await?;
        }
        10 if lab.topology.chord.is_none() => absent(10, "Chord ring", say),
        10 => {
            crate::chord_scene::run(lab, say).await?;
        }
        11 if lab.mail.len() < 2 => absent(11, "pair of mail servers", say),
        11 => {
            crate::mail_scene::run(lab, say).await?;
        }
        12 if lab.topology.ftps.is_empty() => absent(12, "FTP server", say),
        12 => {
            crate::ftp_scene::run(lab, say).await?;
        }
        13 => match lab.topology.lbs.first().cloned() {
            Some(lb) => crate::lb_scene::run(lab, &lb, say).await?,
            None => absent(13, "load balancer", say),
        },
        14 if lab.overlay.is_none() => absent(14, "Napster/Gnutella overlay", say),
        14 => {
            crate::overlay_scene::run(lab, say).await?;
        }
        15 if lab.topology.sips.len() < 2 => absent(15, "pair of SIP servers", say),
        15 => {
            crate::sip_scene::run(lab, say).await?;
        }
        crate::nat_lab::SCENE => crate::nat_lab::scene(say).await?,
        crate::registrar_scene::SCENE => crate::registrar_scene::run(lab, say).await?,
        crate::dnssec_scene::SCENE => crate::dnssec_scene::run(lab, say).await?,
        _ => {
            let all: Vec<String> = SCENES.iter().map(|(s, _)| s.to_string()).collect();
            return Err(format!("no scene {n}: the tour has scenes {}", all.join(", ")));
        }
    }
    Ok(())
}

/// A conditional GET through the institutional cache: a miss (200 from the origin), a forced
/// revalidation (the cache asks with If-None-Match, the origin answers 304), then a fresh hit.
async fn cache_scene(
    lab: &Lab,
    cache: &crate::topology::CacheSpec,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    use crate::http_scene::{get_once, header};
    let proxy = SocketAddr::new(IpAddr::V4(cache.addr), cache.port);
    let url = format!("http://gaia.cs.umass.edu:{}/kurose_ross/index.html", lab.topology.web_port);
    let host = format!("gaia.cs.umass.edu:{}", lab.topology.web_port);
    let cis: IpAddr = "127.0.10.4".parse().expect("static");
    say(format!("{} (200, then 304 revalidated, then a hit)", heading(7)));
    say(format!("cis.poly.edu's browser uses the proxy {} ({proxy}) for {url}", cache.name));
    let steps = [
        ("first request", "", "MISS"),
        ("with Cache-Control: no-cache", "Cache-Control: no-cache\r\n", "REVALIDATED"),
        ("again", "", "HIT"),
    ];
    for (what, extra, want) in steps {
        let (head, body) = get_once(cis, proxy, &host, &url, extra).await?;
        let status = head.lines().next().unwrap_or("").to_string();
        let x_cache = header(&head, "x-cache").unwrap_or("-").to_string();
        let cache_status = header(&head, "cache-status").unwrap_or("-").to_string();
        say(format!(
            "   {what}: {status}, {} bytes, X-Cache: {x_cache}; Cache-Status: {cache_status}",
            body.len()
        ));
        if !x_cache.starts_with(want) {
            return Err(format!("scene 7: expected X-Cache {want} for the {what}, got {x_cache}"));
        }
    }
    say("   The revalidation sent If-None-Match to the origin, which answered 304 Not Modified: the".into());
    say("   cache refreshed its copy without the body crossing the access link again.".into());
    Ok(())
}

/// Two clients in different networks are sent to different CDN replicas by the CDN's DNS, and
/// each replica fetches the image from the origin once, then serves it from its cache.
async fn cdn_scene(
    lab: &Lab,
    cdn: &crate::topology::CdnSpec,
    say: &mut dyn FnMut(String),
) -> Result<(), String> {
    use crate::http_scene::{get_once, header};
    say(format!("{} ({} answered by the CDN's DNS)", heading(8), cdn.name));
    say(format!(
        "www.bbc.co.uk's page refers to http://{}:{}/{}; the CDN's DNS ({}) picks a replica by",
        cdn.name, lab.topology.web_port, "popular-image.jpg", cdn.zone
    ));
    say("the address of the resolver that asks, so clients in different networks go to different caches."
        .into());
    let clients = [
        ("cis.poly.edu", "127.0.10.4", "dns.poly.edu"),
        ("www.cl.cam.ac.uk", "127.0.10.10", "dns.cam.ac.uk"),
    ];
    let mut chosen = Vec::new();
    for (host, ip, resolver) in clients {
        let from: IpAddr = ip.parse().expect("static");
        let server = lab.addr_of(resolver).ok_or(format!("no {resolver}"))?;
        let (reply, _) = ask_from(from, server, &cdn.name, code::A).await?;
        let addr = reply
            .answer
            .iter()
            .find(|r| r.rtype == code::A && r.rdata.len() == 4)
            .map(|r| IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).expect("length checked")))
            .ok_or(format!("{resolver} found no address for {}", cdn.name))?;
        let replica =
            cdn.replicas.iter().find(|r| IpAddr::V4(r.addr) == addr).map_or("?", |r| r.name.as_str());
        say(format!("   {host} asks {resolver}: {} → {addr} ({replica})", cdn.name));
        let target = SocketAddr::new(addr, lab.topology.web_port);
        let host_header = format!("{}:{}", cdn.name, lab.topology.web_port);
        for attempt in ["first", "again"] {
            let (head, body) = get_once(from, target, &host_header, "/popular-image.jpg", "").await?;
            let status = head.lines().next().unwrap_or("");
            let cache = header(&head, "x-cache").unwrap_or("-");
            say(format!("     {attempt}: {status}, {} bytes, X-Cache: {cache}", body.len()));
        }
        chosen.push(addr);
    }
    if chosen.len() == 2 && chosen[0] == chosen[1] {
        return Err("scene 8: both networks were sent to the same replica".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_numbered_once_and_headed_by_their_title() {
        let mut seen = std::collections::BTreeSet::new();
        for (n, title) in SCENES {
            assert!(seen.insert(*n), "scene {n} listed twice");
            assert_eq!(heading(*n), format!("\n== Scene {n}: {title}"));
        }
        assert!((1..=14).all(|n| seen.contains(&n)), "{seen:?}");
    }
}
