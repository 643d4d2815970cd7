//! Where a torrent session finds peers besides its trackers, and the rules for it: the
//! mainline DHT (BEP 5) runs on the UDP port of the peer listener (the port other clients
//! learn from our handshakes and PEX), or on any free port when that one is taken; private
//! torrents (BEP 27) use neither the DHT nor peer exchange, only their trackers. `appnet torrent
//! get|seed` call these; the lab and tests may too.

use crate::config::{ClientConfig, DhtConfig};
use crate::dht::{Dht, DhtHandle};
use crate::metainfo::Info;
use crate::session::TorrentHandle;
use appnet_netkit::{Service, Shutdown};
use std::io;
use std::net::SocketAddr;

/// BEP 27: whether peers may come from anywhere but the torrent's trackers (DHT, PEX). False
/// for private torrents.
pub fn public_sources_allowed(info: &Info) -> bool {
    !info.private
}

/// Whether a session with `cfg` exchanges peer lists (BEP 11) for a torrent like `info`.
pub fn pex_allowed(cfg: &ClientConfig, info: &Info) -> bool {
    cfg.pex && public_sources_allowed(info)
}

/// Starts the DHT node of a `get`/`seed` whose peer listener is `listen`, unless `cfg.dht` is
/// off or the torrent is known to be private (`private`: `None` while a magnet link's metadata
/// is still unknown). The node takes `listen`'s address on UDP, else a free port on the same
/// IP; it runs until `shutdown` (tracked, so the drain waits for its state file).
pub async fn start_dht(
    cfg: &ClientConfig,
    dht: DhtConfig,
    listen: SocketAddr,
    private: Option<bool>,
    shutdown: &Shutdown,
) -> io::Result<Option<DhtHandle>> {
    if !cfg.dht || private == Some(true) {
        return Ok(None);
    }
    let node = bind_dht(dht, listen).await?;
    tracing::info!("DHT node {} on udp {}", crate::urlenc::hex(&node.id()), node.local_addr());
    let handle = node.handle();
    let stop = shutdown.clone();
    shutdown.spawn(async move { node.run(stop).await });
    Ok(Some(handle))
}

/// Binds a DHT node on `listen`'s address and port (UDP), or on a free port of the same
/// address when that port is taken.
pub async fn bind_dht(mut dht: DhtConfig, listen: SocketAddr) -> io::Result<Dht> {
    dht.listen = listen;
    match Dht::bind(&dht).await {
        Ok(d) => Ok(d),
        Err(_) => {
            dht.listen.set_port(0);
            Dht::bind(&dht).await
        }
    }
}

/// Keeps finding peers of `session`'s torrent on the DHT and announcing our listening port
/// there until `shutdown`, unless there is no node or the torrent is private.
pub fn find_peers_for(dht: Option<DhtHandle>, session: &TorrentHandle, shutdown: &Shutdown) {
    let Some(dht) = dht else { return };
    if !public_sources_allowed(&session.metainfo().info) {
        return;
    }
    let (h, stop) = (session.clone(), shutdown.clone());
    let (info_hash, port) = (h.metainfo().info_hash, h.listen_addr().port());
    tokio::spawn(async move {
        dht.find_peers(info_hash, Some(port), stop, |peers| peers.into_iter().for_each(|a| h.connect(a)))
            .await
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dht_cfg() -> DhtConfig {
        DhtConfig { bootstrap: Vec::new(), status_secs: 0, ..DhtConfig::default() }
    }

    /// The DHT takes the peer port on UDP, another port when it is taken, and is not started
    /// for private torrents or with `dht = false`.
    #[tokio::test]
    async fn dht_port_and_private_torrents() {
        let free = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let listen = free.local_addr().unwrap();
        drop(free);
        assert_eq!(bind_dht(dht_cfg(), listen).await.unwrap().local_addr(), listen, "on the peer port");
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let addr = bind_dht(dht_cfg(), busy).await.unwrap().local_addr();
        assert!(addr.ip() == busy.ip() && addr.port() != busy.port(), "{addr} instead of {busy}");
        let sd = Shutdown::new();
        let cfg = ClientConfig::default();
        assert!(start_dht(&cfg, dht_cfg(), busy, Some(true), &sd).await.unwrap().is_none(), "BEP 27");
        let off = ClientConfig { dht: false, ..ClientConfig::default() };
        assert!(start_dht(&off, dht_cfg(), busy, Some(false), &sd).await.unwrap().is_none());
        let h = start_dht(&cfg, dht_cfg(), busy, None, &sd).await.unwrap().expect("a magnet's DHT");
        assert!(h.status().await.is_some(), "running");
        sd.trigger();
        sd.drain(std::time::Duration::from_secs(5)).await;
        drop(taken);
    }

    #[test]
    fn private_torrents_have_no_pex() {
        let mut info = crate::metainfo::Info {
            name: "x".into(),
            piece_length: 16384,
            pieces: vec![[0; 20]],
            files: Vec::new(),
            multi_file: false,
            private: false,
        };
        let cfg = ClientConfig::default();
        assert!(pex_allowed(&cfg, &info));
        info.private = true;
        assert!(!pex_allowed(&cfg, &info) && !public_sources_allowed(&info));
        info.private = false;
        assert!(!pex_allowed(&ClientConfig { pex: false, ..cfg }, &info));
    }
}
