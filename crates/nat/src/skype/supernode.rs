//! The supernode's tokio driver: one UDP socket feeding the [`Directory`] core (peers) and the
//! [`Overlay`] core (other SNs, datagrams starting `SO`), and a once-a-second tick that takes
//! lapsed registrations offline and gossips the overlay's membership.

use super::directory::{Directory, DirectoryConfig};
use super::node::Node;
use super::overlay::{self, Overlay, OverlayConfig};
use super::promotion::{Grant, PromotionPolicy};
use crate::config::SupernodeConfig;
use appnet_netkit::service::BoxError;
use appnet_netkit::{Service, Shutdown};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::UdpSocket;

/// A bound supernode.
pub struct Supernode {
    socket: UdpSocket,
    node: Node,
    /// A promoted SN's renewed grants, from its peer.
    renewals: Option<tokio::sync::mpsc::Receiver<Grant>>,
}

fn directory_config(config: &SupernodeConfig) -> DirectoryConfig {
    DirectoryConfig {
        entry_lifetime: Duration::from_secs(config.entry_lifetime_secs.max(1)),
        nonce_lifetime: Duration::from_secs(config.nonce_lifetime_secs.max(1)),
        names_per_ip: config.names_per_ip,
        max_names: config.max_names,
        requests_per_sec: config.requests_per_sec,
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Supernode {
    /// Binds the UDP socket and reads the overlay secret, when one is configured.
    pub async fn bind(config: SupernodeConfig) -> std::io::Result<Supernode> {
        let secret = match &config.overlay_secret_file {
            Some(path) => {
                let raw = std::fs::read(path)?;
                let secret = raw.trim_ascii().to_vec();
                if secret.len() < overlay::MIN_SECRET {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "overlay secret in {} is shorter than {} bytes",
                            path.display(),
                            overlay::MIN_SECRET
                        ),
                    ));
                }
                Some(secret)
            }
            None => None,
        };
        let socket = UdpSocket::bind(config.listen).await?;
        let cfg = directory_config(&config);
        let now = Instant::now();
        let me = socket.local_addr()?;
        let policy = (config.target_supernodes > 0).then(|| PromotionPolicy {
            min_uptime: Duration::from_secs(config.promote_min_uptime_secs),
            target_supernodes: config.target_supernodes,
        });
        let overlay =
            Overlay::new(OverlayConfig::default(), me, secret.as_deref(), config.join, now, unix_ms());
        let node = Node::new(Directory::new(cfg, now), overlay).with_policy(policy);
        Ok(Supernode { socket, node, renewals: None })
    }

    /// A promoted peer's SN role on its already bound SN `socket`: the overlay keys come from
    /// `grant` (and later from `renewals`), not from a secret; it joins the grant's members and
    /// stops when its keys run out or the overlay withdraws its grant. It promotes nobody.
    /// `me` is the address the others reach it at (its name on the ring); `probe_key` (the
    /// user's StoredKey) tags its answers to renewal probes.
    pub fn promoted(
        socket: UdpSocket,
        me: SocketAddr,
        probe_key: [u8; 32],
        config: &SupernodeConfig,
        grant: Grant,
        renewals: tokio::sync::mpsc::Receiver<Grant>,
    ) -> std::io::Result<Supernode> {
        let now = Instant::now();
        let ocfg = OverlayConfig {
            epoch: Duration::from_secs(grant.epoch_secs.max(1) as u64),
            ..OverlayConfig::default()
        };
        let mut overlay = Overlay::new(ocfg, me, None, grant.members.clone(), now, unix_ms());
        overlay.grant(grant.keys);
        let node = Node::new(Directory::new(directory_config(config), now), overlay)
            .with_policy(None)
            .with_probe_key(probe_key);
        Ok(Supernode { socket, node, renewals: Some(renewals) })
    }
}

impl Service for Supernode {
    fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    async fn run(mut self, shutdown: Shutdown) -> Result<(), BoxError> {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            if self.node.retired(Instant::now()) {
                tracing::warn!("supernode grant expired or withdrawn: no longer a supernode");
                break;
            }
            let out = tokio::select! {
                _ = shutdown.wait() => break,
                grant = async {
                    match self.renewals.as_mut() {
                        Some(r) => r.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match grant {
                        Some(g) => self.node.renew(g),
                        None => self.renewals = None,
                    }
                    continue;
                }
                _ = tick.tick() => self.node.tick(Instant::now()),
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    self.node.handle(from, &buf[..n], Instant::now())
                }
            };
            for (to, data) in out {
                let _ = self.socket.send_to(&data, to).await;
            }
        }
        Ok(())
    }
}
