//! Starting the lab: zone files written, one authoritative server per name-server address
//! (primaries first, then secondaries that transfer by AXFR), then the local resolvers.

use crate::error::LabError;
use crate::topology::Topology;
use crate::zones::{self, fqdn};
use appnet_dns::config::{SecondaryZone, ZoneSource};
use appnet_dns::{DnsConfig, DnsServer};
use appnet_netkit::harness::{self, Running};
use appnet_resolver::server::SharedFrontend;
use appnet_resolver::{ResolverConfig, ResolverServer};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Whether `served` is exactly the one zone `zone`.
fn serves_only(served: &[(&crate::topology::ZoneSpec, bool)], zone: &str) -> bool {
    matches!(served, [(z, false)] if fqdn(&z.name) == fqdn(zone))
}

/// The configuration of the lab's name server at `ip` (its zones from `dir/zones`, signed
/// online with the lab keys, secondaries transferring from their primary) and what it serves.
fn dns_config(
    topology: &Topology,
    dir: &Path,
    keys: Option<&crate::signing::LabKeys>,
    ip: std::net::Ipv4Addr,
) -> (DnsConfig, Vec<String>) {
    let port = topology.dns_port;
    let addr = SocketAddr::new(IpAddr::V4(ip), port);
    let mut config = DnsConfig { listen: addr, udp_workers: 1, ..DnsConfig::default() };
    config.state_dir = Some(dir.join("secondary"));
    let mut labels = Vec::new();
    for (zone, secondary) in topology.zones_at(ip) {
        let zname = fqdn(&zone.name);
        let Some(primary) = zone.servers.iter().find(|s| !s.secondary) else { continue };
        if secondary {
            let primary = SocketAddr::new(IpAddr::V4(primary.addr), port);
            config.secondaries.push(SecondaryZone { name: zname.clone(), primary });
            labels.push(format!("{zname} (secondary)"));
        } else {
            config.zones.push(ZoneSource {
                name: Some(zname.clone()),
                file: dir.join("zones").join(zones::file_name(zone)),
            });
            for s in zone.servers.iter().filter(|s| s.secondary) {
                config.notify.push(SocketAddr::new(IpAddr::V4(s.addr), port));
            }
            if zone.servers.iter().any(|s| s.secondary) {
                // Transfers on loopback leave from whichever 127.x address the kernel
                // picks, so the lab allows its whole loopback network.
                config.allow_transfer.push("127.0.0.0/8".into());
            }
            labels.push(zname);
        }
    }
    if let Some(k) = keys {
        config.dnssec_keys = Some(k.key_dir.clone());
        // The registrar may update the zone it registers names in (scene 17).
        if let Some(reg) = &topology.registrar
            && config.zones.iter().any(|z| z.name.as_deref() == Some(fqdn(&reg.zone).as_str()))
        {
            config.tsig_key_files.push(k.registrar_key.clone());
            config.allow_update.push(format!("{}={}", fqdn(&reg.zone), crate::signing::REGISTRAR_KEY_NAME));
        }
    }
    (config, labels)
}

/// The configuration of a lab resolver at `addr`: the lab's root hints, and validation with
/// the lab's root anchor when the lab is signed.
pub fn resolver_config(
    addr: SocketAddr,
    hints: &Path,
    upstream_port: u16,
    keys: Option<&crate::signing::LabKeys>,
) -> ResolverConfig {
    ResolverConfig {
        listen: addr,
        root_hints: Some(hints.to_path_buf()),
        upstream_port,
        dnssec: keys.is_some(),
        trust_anchors: keys.map(|k| vec![k.anchor.clone()]).unwrap_or_default(),
        ..ResolverConfig::default()
    }
}

/// What a lab service is, for the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Root,
    Tld,
    Authoritative,
    Resolver,
    Web,
    CdnReplica,
    Cache,
    ChordNode,
    Ftp,
    Mail,
    Sip,
    LoadBalancer,
    NapsterDirectory,
    NapsterPeer,
    GnutellaPeer,
    Ultrapeer,
}

impl Role {
    /// The directory's label.
    pub fn label(self) -> &'static str {
        match self {
            Role::Root => "root DNS server",
            Role::Tld => "TLD DNS server",
            Role::Authoritative => "authoritative DNS server",
            Role::Resolver => "local DNS server (resolver)",
            Role::Web => "web server",
            Role::CdnReplica => "CDN replica (cache)",
            Role::Cache => "institutional web cache",
            Role::ChordNode => "Chord DHT node",
            Role::Ftp => "FTP server (anonymous)",
            Role::Mail => "mail server (SMTP, submission, queue)",
            Role::Sip => "SIP server (registrar, proxy)",
            Role::LoadBalancer => "load balancer (layer 4)",
            Role::NapsterDirectory => "Napster directory",
            Role::NapsterPeer => "Napster peer (HTTP)",
            Role::GnutellaPeer => "Gnutella servent",
            Role::Ultrapeer => "Gnutella ultrapeer",
        }
    }
}

/// One running lab service.
pub struct Member {
    /// Its role.
    pub role: Role,
    /// Its host name.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it serves (zones, with "secondary" marked).
    pub serves: String,
    running: Option<Running>,
}

/// The running lab.
pub struct Lab {
    /// The topology it was built from.
    pub topology: Topology,
    /// Where its zone files and root hints are.
    pub dir: PathBuf,
    /// Its DNSSEC keys, anchor and registrar key (`None` with `--no-dnssec`).
    pub keys: Option<crate::signing::LabKeys>,
    /// Every service, in start order.
    pub members: Vec<Member>,
    resolvers: Vec<(String, SharedFrontend)>,
    holes: Vec<appnet_netkit::Shutdown>,
    chord: Vec<ChordPeer>,
    /// The mail servers (the "Alice sends a message to Bob" scene).
    pub mail: Vec<crate::mail_scene::MailHost>,
    lbs: Vec<(String, appnet_lb::LbHandle)>,
    /// The unstructured P2P peers (the "Hey Jude" scene), if the topology has them.
    pub overlay: Option<crate::overlay_lab::OverlayRun>,
    /// `--link` (root): cis.poly.edu behind the link emulator; scene 6 then runs over it.
    pub link: Option<crate::link_scene::LinkNet>,
}

/// A running node of the lab's Chord ring: its id, address and the handle that kills it.
#[derive(Clone)]
pub struct ChordPeer {
    /// Its id on the ring.
    pub id: u64,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Stops it abruptly (no hand-over), as a crashed peer.
    pub killer: appnet_netkit::Shutdown,
}

/// The lab name of the Chord node with id `id`.
pub fn chord_name(id: u64) -> String {
    format!("chord-peer-{id}")
}

/// The configuration of the lab ring's node `node`, joining through `join`.
pub fn chord_config(
    spec: &crate::topology::ChordSpec,
    node: &crate::topology::ChordNodeSpec,
    join: Option<SocketAddr>,
) -> appnet_chord::ChordConfig {
    appnet_chord::ChordConfig {
        listen: SocketAddr::new(IpAddr::V4(node.addr), spec.port),
        join,
        id: Some(node.id.to_string()),
        bits: spec.bits,
        successors: spec.successors,
        replicas: spec.successors.min(2),
        stabilize_ms: spec.stabilize_ms,
        fix_fingers_ms: (spec.stabilize_ms / 4).max(1),
        check_predecessor_ms: spec.stabilize_ms,
        rpc_timeout_ms: spec.rpc_timeout_ms,
        ..appnet_chord::ChordConfig::default()
    }
}

impl Lab {
    /// Writes the zone files under `dir` and starts every service.
    pub async fn start(topology: Topology, dir: &Path) -> Result<Lab, LabError> {
        topology.validate().map_err(LabError::Topology)?;
        let files = |source| LabError::Files { dir: dir.to_path_buf(), source };
        let zone_dir = dir.join("zones");
        std::fs::create_dir_all(&zone_dir).map_err(files)?;
        std::fs::create_dir_all(dir.join("secondary")).map_err(files)?;
        // The serial is the start time, so secondaries kept from an earlier start transfer anew.
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        for z in &topology.zones {
            std::fs::write(zone_dir.join(zones::file_name(z)), zones::zone_text(&topology, z, serial))
                .map_err(files)?;
        }
        let keys = if topology.dnssec {
            Some(crate::signing::prepare(&topology, dir).map_err(files)?)
        } else {
            None
        };
        let hints = dir.join("root.hints");
        std::fs::write(&hints, zones::root_hints(&topology)).map_err(files)?;

        let port = topology.dns_port;
        let mut members = Vec::new();
        // Primaries first so secondaries find them.
        let mut hosts = topology.server_hosts();
        hosts.sort_by_key(|(_, addr)| topology.zones_at(*addr).iter().any(|(_, secondary)| *secondary));
        for (name, ip) in hosts {
            let served = topology.zones_at(ip);
            let addr = SocketAddr::new(IpAddr::V4(ip), port);
            let (config, mut labels) = dns_config(&topology, dir, keys.as_ref(), ip);
            let role = if served.iter().any(|(z, _)| fqdn(&z.name) == ".") {
                Role::Root
            } else if served
                .iter()
                .any(|(z, _)| zones::parent_of(&topology, z).is_some_and(|p| fqdn(&p.name) == "."))
            {
                Role::Tld
            } else {
                Role::Authoritative
            };
            if let Some(cdn) = topology.cdn.as_ref().filter(|c| serves_only(&served, &c.zone)) {
                let server = crate::cdn::dns_server(&topology, cdn, addr).await?;
                let serves = format!("{} (CDN: nearest healthy replica for {})", fqdn(&cdn.zone), cdn.name);
                members.push(Member { role, name, addr, serves, running: Some(harness::start(server)) });
                continue;
            }
            let server = DnsServer::bind(config).await.map_err(|e| LabError::Start {
                name: name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            if keys.is_some() {
                labels = labels.into_iter().map(|l| format!("{l} signed")).collect();
            }
            members.push(Member {
                role,
                name,
                addr,
                serves: labels.join(", "),
                running: Some(harness::start(server)),
            });
        }
        let mut resolvers = Vec::new();
        for r in &topology.resolvers {
            let addr = SocketAddr::new(IpAddr::V4(r.addr), port);
            let config = resolver_config(addr, &hints, port, keys.as_ref());
            let server = ResolverServer::bind(config).await.map_err(|e| LabError::Start {
                name: r.name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            resolvers.push((r.name.clone(), server.frontend()));
            members.push(Member {
                role: Role::Resolver,
                name: r.name.clone(),
                addr,
                serves: match &keys {
                    Some(_) => "recursive queries from lab hosts, validating (DNSSEC)".into(),
                    None => "recursive queries from lab hosts".into(),
                },
                running: Some(harness::start(server)),
            });
        }
        let site_root = dir.join("sites");
        for web in &topology.webs {
            let cdn_url = topology.cdn.as_ref().map(|c| format!("http://{}:{}", c.name, topology.web_port));
            let root = crate::sites::write_site(web, &site_root, cdn_url.as_deref()).map_err(files)?;
            let addr = SocketAddr::new(IpAddr::V4(web.addr), topology.web_port);
            let config = appnet_web::WebConfig {
                listen: addr,
                root,
                apps: true,
                listing: true,
                access_log: false,
                // Images may be cached for an hour (the CDN and the caches keep them); pages carry
                // no lifetime, so caches revalidate them with a conditional GET.
                cache: vec![
                    appnet_web::files::policy::CacheRule {
                        suffix: ".jpg".into(),
                        max_age: Some(3600),
                        ..Default::default()
                    },
                    appnet_web::files::policy::CacheRule {
                        suffix: ".html".into(),
                        max_age: Some(60),
                        ..Default::default()
                    },
                ],
                ..appnet_web::WebConfig::default()
            };
            let server = appnet_web::WebServer::bind(config).await.map_err(|e| LabError::Start {
                name: web.name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            let serves = match &web.page {
                Some(page) => format!("http://{}:{}/{page}", web.name, topology.web_port),
                None => format!("http://{}:{}/", web.name, topology.web_port),
            };
            members.push(Member {
                role: Role::Web,
                name: web.name.clone(),
                addr,
                serves,
                running: Some(harness::start(server)),
            });
        }
        let mut lbs = Vec::new();
        for lb in &topology.lbs {
            let addr = SocketAddr::new(IpAddr::V4(lb.addr), topology.web_port);
            let config = appnet_lb::LbConfig {
                listen: addr,
                backends: lb
                    .replicas
                    .iter()
                    .map(|r| SocketAddr::new(IpAddr::V4(*r), topology.web_port))
                    .collect(),
                health_interval_ms: 500,
                fall: 2,
                slow_start_secs: 5,
                ..appnet_lb::LbConfig::default()
            };
            let server = appnet_lb::LbServer::bind(config).await.map_err(|e| LabError::Start {
                name: lb.name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            lbs.push((lb.name.clone(), server.handle()));
            let replicas: Vec<String> = lb.replicas.iter().map(|r| r.to_string()).collect();
            members.push(Member {
                role: Role::LoadBalancer,
                name: lb.name.clone(),
                addr,
                serves: format!("one address for {} (Maglev over {})", lb.name, replicas.join(", ")),
                running: Some(harness::start(server)),
            });
        }
        for cache in &topology.caches {
            let addr = SocketAddr::new(IpAddr::V4(cache.addr), cache.port);
            let dns = topology
                .resolvers
                .iter()
                .find(|r| r.name == cache.resolver)
                .map(|r| SocketAddr::new(IpAddr::V4(r.addr), topology.dns_port));
            let config = appnet_web::proxy::ProxyConfig {
                listen: addr,
                dns,
                name: cache.name.clone(),
                access_log: false,
                // The lab's origins live on 127.0.0.0/8, which a forward proxy refuses by default.
                allow_dest: vec!["127.0.0.0/8".into()],
                ..appnet_web::proxy::ProxyConfig::default()
            };
            let server = appnet_web::proxy::ProxyServer::bind(config).await.map_err(|e| LabError::Start {
                name: cache.name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            members.push(Member {
                role: Role::Cache,
                name: cache.name.clone(),
                addr,
                serves: format!("forward proxy for lab hosts, names via {}", cache.resolver),
                running: Some(harness::start(server)),
            });
        }
        if let Some(cdn) = &topology.cdn {
            for (name, addr, server) in crate::cdn::replicas(&topology, cdn, dir).await? {
                let serves =
                    format!("cache of http://{}:{}/ for {}", cdn.origin, topology.web_port, cdn.name);
                members.push(Member {
                    role: Role::CdnReplica,
                    name,
                    addr,
                    serves,
                    running: Some(harness::start(server)),
                });
            }
        }
        for ftp in &topology.ftps {
            let root = crate::ftp_site::write_tree(ftp, &dir.join("ftp")).map_err(files)?;
            let addr = SocketAddr::new(IpAddr::V4(ftp.addr), ftp.port);
            let config = appnet_ftp::FtpConfig { listen: addr, root, anonymous: true, ..Default::default() };
            let server = appnet_ftp::FtpServer::bind(config).await.map_err(|e| LabError::Start {
                name: ftp.name.clone(),
                addr,
                reason: e.to_string(),
            })?;
            let addr = appnet_netkit::Service::local_addr(&server);
            let serves = format!("ftp://{}:{}/pub/ (anonymous, read-only)", ftp.name, addr.port());
            members.push(Member {
                role: Role::Ftp,
                name: ftp.name.clone(),
                addr,
                serves,
                running: Some(harness::start(server)),
            });
        }
        let (mail_started, mail) = crate::mail_scene::start(&topology, dir).await?;
        for (name, addr, serves, server) in mail_started {
            members.push(Member {
                role: Role::Mail,
                name,
                addr,
                serves,
                running: Some(harness::start(server)),
            });
        }
        for (name, addr, serves, server) in crate::sip_scene::start(&topology, dir).await? {
            members.push(Member {
                role: Role::Sip,
                name,
                addr,
                serves,
                running: Some(harness::start(server)),
            });
        }
        let mut lab = Lab {
            topology,
            keys,
            dir: dir.to_path_buf(),
            members,
            resolvers,
            holes: Vec::new(),
            chord: Vec::new(),
            mail,
            lbs,
            overlay: None,
            link: None,
        };
        if let Some(spec) = lab.topology.overlay.clone() {
            let (run, started) = crate::overlay_lab::start(&spec, dir).await?;
            for (role, name, addr, serves, running) in started {
                lab.members.push(Member { role, name, addr, serves, running: Some(running) });
            }
            lab.overlay = Some(run);
        }
        if let Some(spec) = lab.topology.chord.clone() {
            let mut nodes: Vec<_> = spec.nodes.iter().filter(|n| !n.late).collect();
            nodes.sort_by_key(|n| n.id);
            let mut first = None;
            for node in nodes {
                lab.start_chord_node(&spec, node, first).await?;
                first = first.or(lab.chord.first().map(|p| p.addr));
            }
        }
        Ok(lab)
    }

    /// Starts one node of the lab's Chord ring, joining through `join` (none: a new ring).
    pub async fn start_chord_node(
        &mut self,
        spec: &crate::topology::ChordSpec,
        node: &crate::topology::ChordNodeSpec,
        join: Option<SocketAddr>,
    ) -> Result<ChordPeer, LabError> {
        let config = chord_config(spec, node, join);
        let name = chord_name(node.id);
        let server = appnet_chord::ChordServer::bind(config.clone()).await.map_err(|e| LabError::Start {
            name: name.clone(),
            addr: config.listen,
            reason: e.to_string(),
        })?;
        let peer = ChordPeer { id: node.id, addr: server.node_ref().addr, killer: server.killer() };
        let serves = match join {
            Some(via) => format!("id {} of the {}-bit ring (joined via {via})", node.id, spec.bits),
            None => format!("id {} of the {}-bit ring (its first node)", node.id, spec.bits),
        };
        self.members.push(Member {
            role: Role::ChordNode,
            name,
            addr: peer.addr,
            serves,
            running: Some(harness::start(server)),
        });
        self.chord.push(peer.clone());
        Ok(peer)
    }

    /// The running nodes of the Chord ring, in start order.
    pub fn chord_peers(&self) -> &[ChordPeer] {
        &self.chord
    }

    /// Kills the Chord node `id` abruptly (no hand-over): its neighbours must notice by
    /// themselves. Returns whether it was running.
    pub async fn kill_chord_node(&mut self, id: u64) -> bool {
        let Some(pos) = self.chord.iter().position(|p| p.id == id) else { return false };
        let peer = self.chord.remove(pos);
        peer.killer.trigger();
        self.stop_member(&chord_name(id)).await
    }

    /// The resolver named `name` (its cache, counters and trace recorder).
    pub fn resolver(&self, name: &str) -> Option<&SharedFrontend> {
        self.resolvers.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    /// The address of the service named `name`.
    pub fn addr_of(&self, name: &str) -> Option<SocketAddr> {
        self.members.iter().find(|m| m.name == name).map(|m| m.addr)
    }

    /// The control handle of the load balancer in front of `name`.
    pub fn lb(&self, name: &str) -> Option<&appnet_lb::LbHandle> {
        self.lbs.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }

    /// Starts the authoritative server `name` again (after [`stop_member`](Self::stop_member))
    /// with the configuration the lab gave it; returns whether it was stopped and now runs.
    pub async fn restart_name_server(&mut self, name: &str) -> Result<bool, LabError> {
        let Some(m) = self.members.iter().find(|m| m.name == name) else { return Ok(false) };
        let (IpAddr::V4(ip), addr) = (m.addr.ip(), m.addr) else { return Ok(false) };
        if m.running.is_some() || !matches!(m.role, Role::Root | Role::Tld | Role::Authoritative) {
            return Ok(false);
        }
        let (config, _) = dns_config(&self.topology, &self.dir, self.keys.as_ref(), ip);
        let server = DnsServer::bind(config).await.map_err(|e| LabError::Start {
            name: name.to_string(),
            addr,
            reason: e.to_string(),
        })?;
        if let Some(m) = self.members.iter_mut().find(|m| m.name == name) {
            m.running = Some(harness::start(server));
        }
        Ok(true)
    }

    /// Stops the service listening at `addr` (replicas share a name); returns whether it ran.
    pub async fn stop_member_at(&mut self, addr: SocketAddr) -> bool {
        let Some(m) = self.members.iter_mut().find(|m| m.addr == addr) else { return false };
        match m.running.take() {
            Some(r) => {
                let _ = r.stop().await;
                true
            }
            None => false,
        }
    }

    /// Stops one service (to show failover); returns whether it was running.
    pub async fn stop_member(&mut self, name: &str) -> bool {
        let Some(m) = self.members.iter_mut().find(|m| m.name == name) else { return false };
        match m.running.take() {
            Some(r) => {
                let _ = r.stop().await;
                true
            }
            None => false,
        }
    }

    /// Makes a service's host "go dark": the service stops and its address swallows every
    /// datagram without a reply, as a crashed or unreachable host does (a stopped port on a live
    /// host would answer "connection refused" at once instead of letting clients time out).
    pub async fn black_hole(&mut self, name: &str) -> bool {
        let Some(addr) = self.addr_of(name) else { return false };
        self.stop_member(name).await;
        let Ok(socket) = tokio::net::UdpSocket::bind(addr).await else { return false };
        let hole = appnet_netkit::Shutdown::new();
        let watch = hole.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                tokio::select! {
                    _ = watch.wait() => return,
                    got = socket.recv_from(&mut buf) => if got.is_err() { return },
                }
            }
        });
        self.holes.push(hole);
        true
    }

    /// Stops every service.
    pub async fn stop(mut self) {
        // The emulated link's namespaces go first (removing them blocks for a moment).
        if let Some(link) = self.link.take() {
            let _ = tokio::task::spawn_blocking(move || drop(link)).await;
        }
        for hole in &self.holes {
            hole.trigger();
        }
        // The whole lab goes down: Chord nodes need not hand their keys over.
        for peer in &self.chord {
            peer.killer.trigger();
        }
        for m in self.members.iter_mut().rev() {
            if let Some(r) = m.running.take() {
                let _ = r.stop().await;
            }
        }
    }

    /// The directory: every service with its name, role and address.
    pub fn directory(&self) -> String {
        let mut out = String::from("appnet lab: the textbook's Internet on 127.0.0.0/8\n\n");
        out.push_str(&format!("{:<28} {:<27} {:<18} serves\n", "role", "name", "address"));
        for m in &self.members {
            out.push_str(&format!("{:<28} {:<27} {:<18} {}\n", m.role.label(), m.name, m.addr, m.serves));
        }
        out.push_str(&format!("\nzone files and root hints: {}\n", self.dir.display()));
        if let Some(k) = &self.keys {
            out.push_str(&format!(
                "DNSSEC: every zone signed (keys in {}); root trust anchor {} (for delv: {}.conf); registrar TSIG key {}\n",
                k.key_dir.display(),
                k.anchor.display(),
                k.anchor.display(),
                k.registrar_key.display()
            ));
        }
        if let Some(r) = self.topology.resolvers.first() {
            out.push_str(&format!(
                "try: dig @{} -p {} gaia.cs.umass.edu     (or: appnet dns query gaia.cs.umass.edu A --server {}:{})\n",
                r.addr, self.topology.dns_port, r.addr, self.topology.dns_port
            ));
        }
        out
    }
}
