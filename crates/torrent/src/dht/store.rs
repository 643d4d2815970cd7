//! Peers announced to us (announce_peer), per info hash, with expiry and caps so a flood of
//! announces cannot grow memory without bound.

use super::krpc::Id;
use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// How long an announce is remembered (clients re-announce every 15–30 minutes).
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Most peers kept per torrent.
pub const MAX_PEERS_PER_TORRENT: usize = 200;
/// Most torrents kept.
pub const MAX_TORRENTS: usize = 2000;
/// Most peers returned in one get_peers reply (keeps it in one datagram).
pub const MAX_REPLY_PEERS: usize = 50;

/// The announced-peer store.
#[derive(Debug, Default, Clone)]
pub struct PeerStore {
    torrents: HashMap<Id, Vec<(SocketAddrV4, Instant)>>,
}

impl PeerStore {
    /// Records `peer` for `info_hash`; false when a cap refused it.
    pub fn announce(&mut self, info_hash: Id, peer: SocketAddrV4, now: Instant) -> bool {
        if !self.torrents.contains_key(&info_hash) && self.torrents.len() >= MAX_TORRENTS {
            self.expire(now);
            if self.torrents.len() >= MAX_TORRENTS {
                return false;
            }
        }
        let peers = self.torrents.entry(info_hash).or_default();
        if let Some(p) = peers.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = now;
            return true;
        }
        if peers.len() >= MAX_PEERS_PER_TORRENT {
            // Replace the stalest announce.
            if let Some(oldest) = peers.iter_mut().min_by_key(|(_, t)| *t) {
                *oldest = (peer, now);
            }
            return true;
        }
        peers.push((peer, now));
        true
    }

    /// Live peers of `info_hash`, at most [`MAX_REPLY_PEERS`], most recent first.
    pub fn peers(&self, info_hash: &Id, now: Instant) -> Vec<SocketAddrV4> {
        let mut live: Vec<&(SocketAddrV4, Instant)> = self
            .torrents
            .get(info_hash)
            .map(|v| v.iter().filter(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL).collect())
            .unwrap_or_default();
        live.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
        live.into_iter().take(MAX_REPLY_PEERS).map(|(a, _)| *a).collect()
    }

    /// Drops expired announces and empty torrents.
    pub fn expire(&mut self, now: Instant) {
        self.torrents.retain(|_, v| {
            v.retain(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL);
            !v.is_empty()
        });
    }

    /// Number of torrents with peers.
    pub fn torrents(&self) -> usize {
        self.torrents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn p(n: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, n)
    }

    #[test]
    fn expires_and_caps() {
        let t0 = Instant::now();
        let mut s = PeerStore::default();
        assert!(s.announce([1; 20], p(1), t0));
        assert!(s.announce([1; 20], p(1), t0));
        assert_eq!(s.peers(&[1; 20], t0), vec![p(1)]);
        assert!(s.peers(&[1; 20], t0 + PEER_TTL).is_empty());
        s.expire(t0 + PEER_TTL);
        assert_eq!(s.torrents(), 0);
        for n in 0..(MAX_PEERS_PER_TORRENT as u16 + 10) {
            s.announce([2; 20], p(n + 1), t0 + Duration::from_millis(u64::from(n)));
        }
        assert_eq!(s.torrents[&[2; 20]].len(), MAX_PEERS_PER_TORRENT);
        assert_eq!(s.peers(&[2; 20], t0 + Duration::from_secs(1)).len(), MAX_REPLY_PEERS);
        for n in 0..MAX_TORRENTS as u32 + 5 {
            let mut ih = [0u8; 20];
            ih[..4].copy_from_slice(&n.to_be_bytes());
            ih[19] = 9;
            s.announce(ih, p(1), t0);
        }
        assert_eq!(s.torrents(), MAX_TORRENTS);
    }
}
