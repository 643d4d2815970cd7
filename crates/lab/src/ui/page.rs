//! What the page is made of: the embedded assets and the lab's map as JSON.

use crate::events::json_str;
use crate::run::Lab;
use std::fmt::Write as _;

/// The page.
pub const INDEX_HTML: &str = include_str!("index.html");
/// Its script (the chart, the map, the controls).
pub const APP_JS: &str = include_str!("app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("app.css");

/// The hosts the tour's clients run on: (name, address, local DNS server). The lab has no
/// service on them, so the map adds them by hand, as the tour does.
pub const CLIENTS: &[(&str, &str, &str)] =
    &[("cis.poly.edu", "127.0.10.4", "dns.poly.edu"), ("www.cl.cam.ac.uk", "127.0.10.10", "dns.cam.ac.uk")];

/// The /24 a lab address belongs to: the map's "network".
pub fn network_of(addr: &str) -> String {
    let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
    match ip.rsplit_once('.') {
        Some((net, _)) => format!("{net}.0/24"),
        None => ip.to_string(),
    }
}

/// The map and the scene list as one JSON object (GET /lab.json).
pub fn lab_json(lab: &Lab) -> String {
    let mut out = String::from("{\"hosts\":[");
    let mut first = true;
    let mut push = |out: &mut String, name: &str, role: &str, addr: &str| {
        let sep = if first { "" } else { "," };
        first = false;
        let _ = write!(
            out,
            "{sep}{{\"name\":{},\"role\":{},\"addr\":{},\"network\":{}}}",
            json_str(name),
            json_str(role),
            json_str(addr),
            json_str(&network_of(addr))
        );
    };
    for (name, addr, _) in CLIENTS {
        push(&mut out, name, "client host", addr);
    }
    for m in &lab.members {
        push(&mut out, &m.name, m.role.label(), &m.addr.to_string());
    }
    // What the topology runs that is not a lab member: the scenes' own hosts and processes.
    let known = |addr: &str| lab.members.iter().any(|m| m.addr.ip().to_string() == addr);
    if lab.mail.len() >= 2 {
        for (name, addr) in [crate::mail_scene::ALICE_HOST, crate::mail_scene::BOB_HOST] {
            push(&mut out, name, "client host (mail user agent)", addr);
        }
    }
    for lb in &lab.topology.lbs {
        for r in lb.replicas.iter().map(|r| r.to_string()).filter(|r| !known(r)) {
            push(&mut out, &format!("{} machine {r}", lb.name), "load-balanced machine (web server)", &r);
        }
    }
    if let Some(swarm) = &lab.topology.swarm {
        let tracker = std::net::SocketAddr::new(swarm.tracker.into(), swarm.tracker_port);
        push(&mut out, "tracker", "BitTorrent tracker (scene 9)", &tracker.to_string());
        let peers = swarm.peers.iter().enumerate().map(|(i, ip)| (format!("peer{}", i + 1), *ip));
        for (name, ip) in [("seeder".to_string(), swarm.seeder), ("alice".to_string(), swarm.alice)]
            .into_iter()
            .chain(peers)
        {
            let addr = std::net::SocketAddr::new(ip.into(), swarm.port);
            push(&mut out, &name, "BitTorrent peer (scene 9)", &addr.to_string());
        }
    }
    if lab.keys.is_some() {
        if let Some(r) = &lab.topology.registrar {
            push(&mut out, &r.name, "registrar (RFC 2136 updates to com, scene 17)", &r.addr.to_string());
        }
        if let Some(a) = &lab.topology.attacker {
            push(&mut out, &a.name, "attacker (forged DNS answers, scene 18)", &a.addr.to_string());
            let plain = std::net::SocketAddr::new(a.plain_resolver.addr.into(), lab.topology.dns_port);
            push(
                &mut out,
                &a.plain_resolver.name,
                "resolver without DNSSEC validation (scene 18)",
                &plain.to_string(),
            );
        }
    }
    out.push_str("],\"scenes\":[");
    for (i, (n, title)) in crate::tour::SCENES.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(out, "{sep}{{\"n\":{n},\"title\":{}}}", json_str(&format!("Scene {n}: {title}")));
    }
    out.push_str("],\"clients\":[");
    for (i, (name, addr, resolver)) in CLIENTS.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(
            out,
            "{sep}{{\"name\":{},\"addr\":{},\"resolver\":{}}}",
            json_str(name),
            json_str(addr),
            json_str(resolver)
        );
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24s() {
        assert_eq!(network_of("127.0.4.1:10053"), "127.0.4.0/24");
        assert_eq!(network_of("127.0.10.4"), "127.0.10.0/24");
    }

    #[test]
    fn assets_load_nothing_from_outside() {
        for asset in [INDEX_HTML, APP_JS, APP_CSS] {
            for external in
                ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "url(http", "@import", "fetch(\"http"]
            {
                assert!(!asset.contains(external), "{external}");
            }
        }
        // The page's own resources, by absolute path.
        assert!(INDEX_HTML.contains("src=\"/app.js\"") && INDEX_HTML.contains("href=\"/app.css\""));
    }
}
