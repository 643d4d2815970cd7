//! The lab's topology: zones, their name servers and host records, and the local resolvers.
//! One TOML description (embedded, or the `[lab]` table of `--config`) generates everything.

use serde::Deserialize;
use std::net::Ipv4Addr;

/// The embedded default topology (the textbook's names, see DESIGN.md's lab table).
pub const DEFAULT_TOML: &str = include_str!("lab.toml");

/// The whole lab.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The port every lab name server listens on (and the resolvers query upstream).
    #[serde(default = "default_dns_port")]
    pub dns_port: u16,
    /// Every zone, the root first.
    #[serde(rename = "zone")]
    pub zones: Vec<ZoneSpec>,
    /// The local (recursive) resolvers.
    #[serde(rename = "resolver", default)]
    pub resolvers: Vec<ResolverSpec>,
    /// The port every lab web server listens on.
    #[serde(default = "default_web_port")]
    pub web_port: u16,
    /// The web servers.
    #[serde(rename = "web", default)]
    pub webs: Vec<WebSpec>,
    /// The CDN: its DNS zone, replicas and which resolvers are near which replica.
    #[serde(default)]
    pub cdn: Option<CdnSpec>,
    /// Institutional web caches (forward proxies that browsers are configured to use).
    #[serde(rename = "cache", default)]
    pub caches: Vec<CacheSpec>,
    /// The textbook's Chord ring (real nodes with fixed ids), for the DHT scene.
    #[serde(default)]
    pub chord: Option<ChordSpec>,
    /// The BitTorrent swarm Alice joins in the tour (tracker, seeder, peers).
    #[serde(default)]
    pub swarm: Option<SwarmSpec>,
    /// Anycast in network namespaces (`appnet lab --netns`, root only).
    #[serde(default)]
    pub anycast: Option<crate::netns::AnycastSpec>,
    /// Anonymous FTP servers, each serving a generated tree of course material.
    #[serde(rename = "ftp", default)]
    pub ftps: Vec<FtpSpec>,
    /// Mail servers (SMTP, submission, the queue) for "Alice sends a message to Bob".
    #[serde(rename = "mail", default)]
    pub mails: Vec<crate::mail_scene::MailSpec>,
    /// SIP servers (registrar and proxy per domain) for "Alice calls Bob over SIP".
    #[serde(rename = "sip", default)]
    pub sips: Vec<crate::sip_scene::SipSpec>,
    /// Layer-4 load balancers: one site's address in front of its replica web servers.
    #[serde(rename = "lb", default)]
    pub lbs: Vec<LbSpec>,
    /// Unstructured P2P: a Napster directory and two Gnutella overlays on the same peers.
    #[serde(default)]
    pub overlay: Option<OverlaySpec>,
    /// DNSSEC: every zone signed (keys in `--dir/keys`), DS records in the parents, the root
    /// anchor in `--dir/root.anchor` and the resolvers validating with it (`--no-dnssec`: off).
    #[serde(default = "default_dnssec")]
    pub dnssec: bool,
    /// The registrar of the "Inserting records into DNS" scene (RFC 2136 updates to com).
    #[serde(default)]
    pub registrar: Option<crate::registrar_scene::RegistrarSpec>,
    /// The attacker of the "DNSSEC fixes this" scene.
    #[serde(default)]
    pub attacker: Option<crate::dnssec_scene::AttackerSpec>,
}

fn default_dnssec() -> bool {
    true
}

/// The "Hey Jude" scene's peers: a Napster directory, and `peers` servents on consecutive
/// addresses from `first_peer`, each running a node of a plain flooding overlay (`flat_port`)
/// and of a two-tier overlay whose first `ultrapeers` are ultrapeers (`gnutella_port`). Peers
/// are numbered from 0; `bob` and `carol` share "Hey Jude", `alice` searches.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OverlaySpec {
    /// The Napster directory's address.
    pub directory: Ipv4Addr,
    /// Its port (0: a free one).
    pub napster_port: u16,
    /// The port of Bob's and Carol's Napster HTTP side (0: a free one).
    pub share_port: u16,
    /// The first peer's address.
    pub first_peer: Ipv4Addr,
    /// How many peers.
    pub peers: u8,
    /// How many of them are ultrapeers in the two-tier overlay.
    pub ultrapeers: u8,
    /// Port of the two-tier overlay (0: free ports).
    pub gnutella_port: u16,
    /// Port of the flat overlay (0: free ports).
    pub flat_port: u16,
    /// Bob's peer number.
    pub bob: u8,
    /// Carol's peer number (a second copy, for the parallel download).
    pub carol: u8,
    /// Alice's peer number.
    pub alice: u8,
}

impl OverlaySpec {
    /// Peer `n`'s address.
    pub fn peer_addr(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.first_peer) + u32::from(n))
    }
}

/// A load balancer of the lab: `addr` (the address the site's name resolves to) on the web port,
/// in front of the `[[web]]` hosts of the same name at `replicas`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LbSpec {
    /// The site's host name (`www.stanford.edu`).
    pub name: String,
    /// The one address clients connect to.
    pub addr: Ipv4Addr,
    /// The replicas' addresses (each a `[[web]]` host of the same name).
    pub replicas: Vec<Ipv4Addr>,
}

/// An anonymous, read-only FTP server of the lab (the tour's control/data connection scene).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FtpSpec {
    /// Its host name (`ftp.cs.umass.edu`).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// Its control port (0: a free one); active-mode data leaves from the port below it.
    #[serde(default = "default_ftp_port")]
    pub port: u16,
}

fn default_ftp_port() -> u16 {
    2121
}

/// The tour's swarm: a tracker, a seeder and peers on their own loopback addresses, and Alice,
/// who joins during the scene. The choker's rounds are compressed in time.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SwarmSpec {
    /// The tracker's address.
    pub tracker: Ipv4Addr,
    /// The tracker's port (0: a free one).
    #[serde(default = "default_tracker_port")]
    pub tracker_port: u16,
    /// The port every peer listens on (0: each picks a free one).
    #[serde(default = "default_peer_port")]
    pub port: u16,
    /// The seeder's address.
    pub seeder: Ipv4Addr,
    /// The other peers, already downloading when Alice arrives.
    pub peers: Vec<Ipv4Addr>,
    /// Alice's address.
    pub alice: Ipv4Addr,
    /// Pieces in the generated file.
    #[serde(default = "default_pieces")]
    pub pieces: u32,
    /// Piece size in KiB (16 = one block per piece).
    #[serde(default = "default_piece_kib")]
    pub piece_kib: u64,
    /// Each peer's upload limit in KiB/s (so the swarm takes seconds, not milliseconds).
    #[serde(default = "default_upload_kib")]
    pub upload_kib: u64,
    /// Milliseconds between tit-for-tat rechoke rounds (BitTorrent: 10 000).
    #[serde(default = "default_rechoke_ms")]
    pub rechoke_ms: u64,
    /// Milliseconds between optimistic unchokes (BitTorrent: 30 000).
    #[serde(default = "default_optimistic_ms")]
    pub optimistic_ms: u64,
    /// Seconds Alice may take before the scene gives up.
    #[serde(default = "default_swarm_max_secs")]
    pub max_secs: u64,
}

fn default_tracker_port() -> u16 {
    6969
}

fn default_peer_port() -> u16 {
    6881
}

fn default_pieces() -> u32 {
    24
}

fn default_piece_kib() -> u64 {
    16
}

fn default_upload_kib() -> u64 {
    64
}

fn default_rechoke_ms() -> u64 {
    1000
}

fn default_optimistic_ms() -> u64 {
    3000
}

fn default_swarm_max_secs() -> u64 {
    60
}

/// A Chord ring of real nodes with fixed ids on their own loopback addresses. Nodes marked
/// `late` are not started with the lab: the tour has them join the ring.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChordSpec {
    /// Identifier width m (the textbook's ring has 4 bits: ids 0..15).
    pub bits: u8,
    /// The port every node listens on (0: each picks a free one).
    #[serde(default = "default_chord_port")]
    pub port: u16,
    /// Successor list length r (the textbook keeps two successors).
    #[serde(default = "default_chord_successors")]
    pub successors: usize,
    /// Milliseconds between stabilize rounds and predecessor checks (fast, so the tour's
    /// repairs take a second, not minutes).
    #[serde(default = "default_chord_stabilize_ms")]
    pub stabilize_ms: u64,
    /// Milliseconds before an unanswered RPC counts as a dead peer.
    #[serde(default = "default_chord_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// The nodes, in any order.
    pub nodes: Vec<ChordNodeSpec>,
}

/// One Chord node of the lab ring.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChordNodeSpec {
    /// Its id on the ring (below 2^bits).
    pub id: u64,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// Not started with the lab; the tour has it join.
    #[serde(default)]
    pub late: bool,
}

fn default_chord_port() -> u16 {
    14000
}

fn default_chord_successors() -> usize {
    2
}

fn default_chord_stabilize_ms() -> u64 {
    100
}

fn default_chord_rpc_timeout_ms() -> u64 {
    300
}

/// An institutional cache: a forward proxy on its own address that resolves origin names
/// through one of the lab's local resolvers.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Its host name (`cache.poly.edu`).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// Its port (3128, Squid's).
    pub port: u16,
    /// The lab resolver it asks for origin addresses (a `[[resolver]]` name).
    pub resolver: String,
}

/// The textbook's Akamai scene: a zone answered by the CDN's own DNS with the nearest healthy
/// replica for each querying resolver, and replicas that are reverse-proxy caches of an origin.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CdnSpec {
    /// The zone the CDN's DNS serves instead of a plain authoritative server (one of `[[zone]]`).
    pub zone: String,
    /// The name handed out as a replica (`a128.g.akamai.net`).
    pub name: String,
    /// The web host whose content the replicas cache (a `[[web]]` name).
    pub origin: String,
    /// The replicas (reverse-proxy caches on `web_port`).
    pub replicas: Vec<ReplicaSpec>,
    /// Resolver networks → replica names, nearest first.
    pub networks: Vec<NearSpec>,
}

/// One CDN replica.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    /// Its name (used in `networks`).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
}

/// Which replicas are near the resolvers of one network.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NearSpec {
    /// Resolver addresses (`127.0.4.1/32`).
    pub prefix: String,
    /// Replica names, nearest first.
    pub replicas: Vec<String>,
}

fn default_web_port() -> u16 {
    8080
}

/// A web server host and the site it serves.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebSpec {
    /// Its host name (the site's name; replicas share one).
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// A page of the textbook served besides the home page (e.g. `someDepartment/home.index`).
    #[serde(default)]
    pub page: Option<String>,
    /// An image this site publishes through the CDN: the file is served here (the origin) and
    /// the page references it at the CDN's name (`popular-image.jpg`).
    #[serde(default)]
    pub cdn_image: Option<String>,
    /// How many JPEG images that page references (the textbook's page has ten).
    #[serde(default)]
    pub images: u32,
}

fn default_dns_port() -> u16 {
    10053
}

/// One zone and where it is served.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// The zone's name ("." for the root).
    pub name: String,
    /// Its name servers; the first non-secondary one is the primary (named in the SOA).
    pub servers: Vec<ServerSpec>,
    /// Host records in zone-file syntax, relative to the zone (`www A 127.0.10.1`).
    #[serde(default)]
    pub records: Vec<String>,
    /// A deliberately broken chain of trust, like the real dnssec-failed.org: the zone is
    /// signed, but the DS its parent publishes matches none of its keys, so validating
    /// resolvers must answer SERVFAIL for every name in it.
    #[serde(default)]
    pub bogus_ds: bool,
}

/// A name server of a zone.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Its host name.
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
    /// A secondary: it transfers the zone from the primary by AXFR instead of loading it.
    #[serde(default)]
    pub secondary: bool,
}

/// A local resolver.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResolverSpec {
    /// Its host name.
    pub name: String,
    /// Its loopback address.
    pub addr: Ipv4Addr,
}

impl Default for Topology {
    fn default() -> Self {
        toml::from_str(DEFAULT_TOML).expect("the embedded lab topology is valid")
    }
}

impl Topology {
    /// Checks what serde cannot: a root zone, unique server addresses per role, a primary per zone.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.anycast {
            a.validate()?;
        }
        if !self.zones.iter().any(|z| z.name == ".") {
            return Err("the lab topology needs a root zone (name = \".\")".into());
        }
        for z in &self.zones {
            if z.servers.is_empty() {
                return Err(format!("zone {} has no servers", z.name));
            }
            if z.servers.iter().all(|s| s.secondary) {
                return Err(format!("zone {} has only secondaries; one server must be its primary", z.name));
            }
        }
        for w in &self.webs {
            if let Some(page) = &w.page
                && (page.starts_with('/') || page.split('/').any(|part| part == ".." || part.is_empty()))
            {
                return Err(format!("web page {page:?} of {} must be a relative path without ..", w.name));
            }
        }
        for lb in &self.lbs {
            if let Some(r) =
                lb.replicas.iter().find(|r| !self.webs.iter().any(|w| w.addr == **r && w.name == lb.name))
            {
                return Err(format!(
                    "load balancer {}: replica {r} is not a [[web]] host of that name",
                    lb.name
                ));
            }
            if lb.replicas.is_empty() {
                return Err(format!("load balancer {} has no replicas", lb.name));
            }
        }
        if let Some(cdn) = &self.cdn {
            if !self.zones.iter().any(|z| z.name.trim_end_matches('.') == cdn.zone.trim_end_matches('.')) {
                return Err(format!("the CDN zone {} is not one of the lab's zones", cdn.zone));
            }
            if !self.webs.iter().any(|w| w.name == cdn.origin) {
                return Err(format!("the CDN origin {} is not one of the lab's web hosts", cdn.origin));
            }
            for near in &cdn.networks {
                if let Some(unknown) =
                    near.replicas.iter().find(|r| !cdn.replicas.iter().any(|x| &x.name == *r))
                {
                    return Err(format!("CDN network {} names an unknown replica {unknown}", near.prefix));
                }
            }
        }
        for c in &self.caches {
            if !self.resolvers.iter().any(|r| r.name == c.resolver) {
                return Err(format!("cache {} names an unknown resolver {}", c.name, c.resolver));
            }
        }
        if let Some(chord) = &self.chord {
            if !(1..=63).contains(&chord.bits) {
                return Err(format!("the chord ring's bits must be 1..=63, not {}", chord.bits));
            }
            if !chord.nodes.iter().any(|n| !n.late) {
                return Err("the chord ring needs at least one node that is not late".into());
            }
            for (i, n) in chord.nodes.iter().enumerate() {
                if n.id >> chord.bits != 0 {
                    return Err(format!("chord node id {} does not fit in {} bits", n.id, chord.bits));
                }
                if chord.nodes[..i].iter().any(|m| m.id == n.id || m.addr == n.addr) {
                    return Err(format!("chord node {} ({}) repeats an id or address", n.id, n.addr));
                }
            }
        }
        if let Some(swarm) = &self.swarm {
            if !(1..=1024).contains(&swarm.pieces) || !(16..=1024).contains(&swarm.piece_kib) {
                return Err("the swarm needs 1..=1024 pieces of 16..=1024 KiB".into());
            }
            if swarm.upload_kib == 0
                || swarm.rechoke_ms == 0
                || swarm.optimistic_ms == 0
                || swarm.max_secs == 0
            {
                return Err(
                    "the swarm's upload_kib, rechoke_ms, optimistic_ms and max_secs must be positive".into(),
                );
            }
            if swarm.peers.is_empty() {
                return Err("the swarm needs at least one peer besides the seeder".into());
            }
        }
        for r in &self.resolvers {
            if self.zones.iter().flat_map(|z| &z.servers).any(|s| s.addr == r.addr) {
                return Err(format!("resolver {} shares address {} with a name server", r.name, r.addr));
            }
        }
        Ok(())
    }

    /// Every distinct name-server address with its host name, in order of appearance.
    pub fn server_hosts(&self) -> Vec<(String, Ipv4Addr)> {
        let mut out: Vec<(String, Ipv4Addr)> = Vec::new();
        for s in self.zones.iter().flat_map(|z| &z.servers) {
            if !out.iter().any(|(_, a)| *a == s.addr) {
                out.push((s.name.clone(), s.addr));
            }
        }
        out
    }

    /// The zones served by the server at `addr`, with whether it is their secondary.
    pub fn zones_at(&self, addr: Ipv4Addr) -> Vec<(&ZoneSpec, bool)> {
        self.zones
            .iter()
            .filter_map(|z| z.servers.iter().find(|s| s.addr == addr).map(|s| (z, s.secondary)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_topology_is_valid() {
        let t = Topology::default();
        t.validate().unwrap();
        assert_eq!(t.dns_port, 10053);
        assert_eq!(t.resolvers.len(), 2);
        // com and net share a.gtld-servers.net, like the real gTLD servers.
        let gtld = t.zones_at("127.0.2.1".parse().unwrap());
        assert_eq!(gtld.iter().map(|(z, _)| z.name.as_str()).collect::<Vec<_>>(), vec!["com", "net"]);
        // The textbook's 4-bit ring, with peer 13 joining later.
        let chord = t.chord.expect("a chord ring");
        let ids: Vec<u64> = chord.nodes.iter().filter(|n| !n.late).map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 3, 4, 5, 8, 10, 12, 15]);
        assert!(chord.nodes.iter().any(|n| n.late && n.id == 13));
    }

    #[test]
    fn the_swarm_is_checked() {
        let t = Topology::default();
        let swarm = t.swarm.as_ref().expect("a swarm");
        assert_eq!((swarm.pieces, swarm.piece_kib, swarm.peers.len()), (24, 16, 2));
        assert_eq!((swarm.rechoke_ms, swarm.optimistic_ms), (1000, 3000));
        let mut bad = t.clone();
        bad.swarm.as_mut().unwrap().pieces = 0;
        assert!(bad.validate().unwrap_err().contains("1..=1024 pieces"));
        let mut bad = t;
        bad.swarm.as_mut().unwrap().optimistic_ms = 0;
        assert!(bad.validate().unwrap_err().contains("must be positive"));
    }

    #[test]
    fn chord_ids_must_fit_and_be_unique() {
        let mut t = Topology::default();
        let chord = t.chord.as_mut().unwrap();
        chord.nodes[0].id = 16;
        assert!(t.validate().unwrap_err().contains("does not fit in 4 bits"));
        let mut t = Topology::default();
        let chord = t.chord.as_mut().unwrap();
        chord.nodes[1].id = chord.nodes[0].id;
        assert!(t.validate().unwrap_err().contains("repeats"));
    }
}
