//! The supernode's tokio driver: one UDP socket feeding the [`Directory`] core, and a
//! once-a-second tick that takes lapsed registrations offline.

use super::directory::{Directory, DirectoryConfig};
use crate::config::SupernodeConfig;
use appnet_netkit::service::BoxError;
use appnet_netkit::{Service, Shutdown};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// A bound supernode.
pub struct Supernode {
    socket: UdpSocket,
    directory: Directory,
}

impl Supernode {
    /// Binds the UDP socket.
    pub async fn bind(config: SupernodeConfig) -> std::io::Result<Supernode> {
        let socket = UdpSocket::bind(config.listen).await?;
        let cfg = DirectoryConfig {
            entry_lifetime: Duration::from_secs(config.entry_lifetime_secs.max(1)),
            nonce_lifetime: Duration::from_secs(config.nonce_lifetime_secs.max(1)),
            names_per_ip: config.names_per_ip,
            max_names: config.max_names,
            requests_per_sec: config.requests_per_sec,
        };
        Ok(Supernode { socket, directory: Directory::new(cfg, Instant::now()) })
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
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => self.directory.expire(Instant::now()),
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    for (to, data) in self.directory.handle_all(from, &buf[..n], Instant::now()) {
                        let _ = self.socket.send_to(&data, to).await;
                    }
                }
            }
        }
        Ok(())
    }
}
