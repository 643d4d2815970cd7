//! The lab's CDN: the CDN's DNS server for its zone (nearest healthy replica per querying
//! resolver, from the topology's network table) and the replicas, reverse-proxy caches that
//! pull from the origin web host on a miss.

use crate::error::LabError;
use crate::topology::{CdnSpec, Topology};
use crate::zones::fqdn;
use appnet_web::cdn::config::{Network, Replica};
use appnet_web::cdn::{CdnConfig, CdnDnsServer};
use appnet_web::proxy::{ProxyConfig, ProxyServer};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The CDN's DNS server for `cdn.zone`, listening on `addr`.
pub async fn dns_server(
    topology: &Topology,
    cdn: &CdnSpec,
    addr: SocketAddr,
) -> Result<CdnDnsServer, LabError> {
    let zone = topology
        .zones
        .iter()
        .find(|z| fqdn(&z.name) == fqdn(&cdn.zone))
        .ok_or_else(|| LabError::Topology(format!("no zone {}", cdn.zone)))?;
    let config = CdnConfig {
        listen: addr,
        zone: cdn.zone.clone(),
        names: vec![cdn.name.clone()],
        replicas: cdn
            .replicas
            .iter()
            .map(|r| Replica {
                name: r.name.clone(),
                addr: IpAddr::V4(r.addr),
                check: Some(SocketAddr::new(IpAddr::V4(r.addr), topology.web_port)),
            })
            .collect(),
        networks: cdn
            .networks
            .iter()
            .map(|n| Network { prefix: n.prefix.clone(), replicas: n.replicas.clone() })
            .collect(),
        nameservers: zone.servers.iter().map(|s| (s.name.clone(), IpAddr::V4(s.addr))).collect(),
        ..CdnConfig::default()
    };
    CdnDnsServer::bind(config).await.map_err(|e| LabError::Start {
        name: format!("the CDN DNS for {}", cdn.zone),
        addr,
        reason: e.to_string(),
    })
}

/// The file (in the lab directory) holding the secret the content provider signs pushes with.
pub fn push_secret_file(dir: &Path) -> PathBuf {
    dir.join("cdn-push.secret")
}

/// Writes a fresh random push secret (owner-only) to [`push_secret_file`].
fn write_push_secret(dir: &Path) -> std::io::Result<PathBuf> {
    use rand::Rng;
    let path = push_secret_file(dir);
    let secret: String = (0..32).map(|_| format!("{:02x}", rand::rng().random::<u8>())).collect();
    appnet_netkit::files::write_private(&path, secret.as_bytes())?;
    Ok(path)
}

/// The replicas: one reverse-proxy cache per replica address, pulling from the origin, and
/// accepting CDN pushes signed with the secret written to [`push_secret_file`] in `dir`.
pub async fn replicas(
    topology: &Topology,
    cdn: &CdnSpec,
    dir: &Path,
) -> Result<Vec<(String, SocketAddr, ProxyServer)>, LabError> {
    let secret = write_push_secret(dir).map_err(|e| LabError::Topology(format!("CDN push secret: {e}")))?;
    let origin = topology
        .webs
        .iter()
        .find(|w| w.name == cdn.origin)
        .ok_or_else(|| LabError::Topology(format!("no web host {}", cdn.origin)))?;
    let mut out = Vec::new();
    for r in &cdn.replicas {
        let addr = SocketAddr::new(IpAddr::V4(r.addr), topology.web_port);
        let config = ProxyConfig {
            listen: addr,
            reverse: Some(format!("http://{}:{}", origin.addr, topology.web_port)),
            name: r.name.clone(),
            access_log: false,
            push_secret_file: Some(secret.clone()),
            ..ProxyConfig::default()
        };
        let server = ProxyServer::bind(config).await.map_err(|e| LabError::Start {
            name: r.name.clone(),
            addr,
            reason: e.to_string(),
        })?;
        out.push((format!("{} ({})", cdn.name, r.name), addr, server));
    }
    Ok(out)
}
