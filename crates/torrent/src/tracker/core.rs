//! The tracker's state machine, sans IO: swarms of peers per info hash, announces that add,
//! refresh and remove peers, expiry of peers that stop announcing, scrape counts, an optional
//! allow-list, and per-IP limits. Every call takes `now`.

use super::proto::{Announce, AnnounceReply, Event, PeerAddr, ScrapeEntry};
use crate::InfoHash;
use appnet_netkit::rate::TokenBucket;
use rand::seq::IteratorRandom;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Tracker policy knobs (shared by the config file and the CLI).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Seconds between announces we ask clients for.
    pub interval: u32,
    /// Seconds a client must wait at least.
    pub min_interval: u32,
    /// A peer not heard from for this long is dropped.
    pub peer_timeout: Duration,
    /// Peers returned when the client does not say.
    pub default_numwant: u32,
    /// Most peers returned in one reply.
    pub max_numwant: u32,
    /// Most peers per torrent.
    pub max_peers_per_torrent: usize,
    /// Most torrents tracked (without an allow-list).
    pub max_torrents: usize,
    /// Most peer entries one IP address may hold across all torrents.
    pub max_peers_per_ip: usize,
    /// Announces per second one IP may make (sustained), with a burst of ten times that.
    pub announces_per_ip_per_sec: u32,
    /// When set, only these info hashes are tracked.
    pub allow: Option<HashSet<InfoHash>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval: 1800,
            min_interval: 60,
            peer_timeout: Duration::from_secs(2 * 1800 + 60),
            default_numwant: 50,
            max_numwant: 200,
            max_peers_per_torrent: 10_000,
            max_torrents: 100_000,
            max_peers_per_ip: 256,
            announces_per_ip_per_sec: 20,
            allow: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    seeder: bool,
    last_seen: Instant,
    key: Option<u32>,
}

/// One torrent's swarm.
#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<[u8; 20], Peer>,
    downloaded: u32,
}

impl Swarm {
    fn counts(&self) -> ScrapeEntry {
        let complete = self.peers.values().filter(|p| p.seeder).count() as u32;
        ScrapeEntry { complete, incomplete: self.peers.len() as u32 - complete, downloaded: self.downloaded }
    }
}

/// A status-page row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentStatus {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its counts.
    pub counts: ScrapeEntry,
}

/// The tracker: every swarm and the per-IP accounting.
#[derive(Debug)]
pub struct Tracker {
    policy: Policy,
    swarms: HashMap<InfoHash, Swarm>,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, TokenBucket>,
}

impl Tracker {
    /// An empty tracker with `policy`.
    pub fn new(policy: Policy) -> Self {
        Tracker { policy, swarms: HashMap::new(), per_ip: HashMap::new(), buckets: HashMap::new() }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Handles an announce from `ip` (the connection's source address; a client-supplied `ip`
    /// parameter is ignored so nobody can point a swarm at a third party).
    pub fn announce(&mut self, a: &Announce, ip: IpAddr, now: Instant) -> Result<AnnounceReply, String> {
        if let Some(allow) = &self.policy.allow
            && !allow.contains(&a.info_hash)
        {
            return Err("torrent not allowed on this tracker".into());
        }
        let rate = self.policy.announces_per_ip_per_sec.max(1) as u64;
        let bucket = self.buckets.entry(ip).or_insert_with(|| TokenBucket::new(rate, rate * 10, now));
        if !bucket.try_take(1, now) {
            return Err("too many announces from your address; slow down".into());
        }
        if !self.swarms.contains_key(&a.info_hash) && self.swarms.len() >= self.policy.max_torrents {
            return Err("tracker is full".into());
        }
        let addr = SocketAddr::new(ip, a.port);
        let swarm = self.swarms.entry(a.info_hash).or_default();
        let existing = swarm.peers.get(&a.peer_id).cloned();
        if let Some(old) = &existing
            && old.addr.ip() != ip
            && (old.key.is_none() || old.key != a.key)
        {
            return Err("peer id already in use from another address".into());
        }
        if a.event == Event::Stopped {
            if let Some(old) = swarm.peers.remove(&a.peer_id) {
                dec(&mut self.per_ip, old.addr.ip());
            }
            let c = swarm.counts();
            return Ok(AnnounceReply {
                interval: self.policy.interval,
                min_interval: Some(self.policy.min_interval),
                complete: c.complete,
                incomplete: c.incomplete,
                peers: vec![],
            });
        }
        if existing.is_none() {
            if swarm.peers.len() >= self.policy.max_peers_per_torrent {
                return Err("swarm is full".into());
            }
            if *self.per_ip.get(&ip).unwrap_or(&0) >= self.policy.max_peers_per_ip {
                return Err("too many peers from your address".into());
            }
            *self.per_ip.entry(ip).or_default() += 1;
        } else if let Some(old) = &existing
            && old.addr.ip() != ip
        {
            dec(&mut self.per_ip, old.addr.ip());
            *self.per_ip.entry(ip).or_default() += 1;
        }
        if a.event == Event::Completed && existing.as_ref().is_some_and(|p| !p.seeder) {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        swarm.peers.insert(a.peer_id, Peer { addr, seeder: a.left == 0, last_seen: now, key: a.key });
        let want = a.numwant.unwrap_or(self.policy.default_numwant).min(self.policy.max_numwant) as usize;
        let seeder = a.left == 0;
        let mut rng = rand::rng();
        // Seeders gain little from other seeders: give them leechers first. Seeders still fill
        // the rest, because a magnet client fetching metadata does not know the size yet and
        // announces `left=0` (aria2c does) though it needs a seeder most of all.
        let others = swarm.peers.iter().filter(|(id, _)| **id != a.peer_id);
        let entry = |(id, p): (&[u8; 20], &Peer)| PeerAddr { addr: p.addr, peer_id: Some(*id) };
        let mut peers: Vec<PeerAddr> = if seeder {
            others.clone().filter(|(_, p)| !p.seeder).map(entry).choose_multiple(&mut rng, want)
        } else {
            others.clone().map(entry).choose_multiple(&mut rng, want)
        };
        if seeder && peers.len() < want {
            let more =
                others.filter(|(_, p)| p.seeder).map(entry).choose_multiple(&mut rng, want - peers.len());
            peers.extend(more);
        }
        let c = swarm.counts();
        Ok(AnnounceReply {
            interval: self.policy.interval,
            min_interval: Some(self.policy.min_interval),
            complete: c.complete,
            incomplete: c.incomplete,
            peers,
        })
    }

    /// Scrape counts; an empty list means every torrent.
    pub fn scrape(&self, hashes: &[InfoHash]) -> Vec<(InfoHash, ScrapeEntry)> {
        if hashes.is_empty() {
            return self.swarms.iter().map(|(h, s)| (*h, s.counts())).collect();
        }
        hashes.iter().map(|h| (*h, self.swarms.get(h).map(Swarm::counts).unwrap_or_default())).collect()
    }

    /// Drops peers silent for longer than the timeout, empty swarms and idle rate buckets.
    pub fn expire(&mut self, now: Instant) {
        let timeout = self.policy.peer_timeout;
        for swarm in self.swarms.values_mut() {
            swarm.peers.retain(|_, p| {
                let keep = now.saturating_duration_since(p.last_seen) < timeout;
                if !keep {
                    dec(&mut self.per_ip, p.addr.ip());
                }
                keep
            });
        }
        self.swarms.retain(|_, s| !s.peers.is_empty() || s.downloaded > 0);
        let rate = self.policy.announces_per_ip_per_sec.max(1) as u64;
        self.buckets.retain(|_, b| b.available(now) < rate * 10);
    }

    /// Every torrent's counts, for the status page, busiest first.
    pub fn status(&self) -> Vec<TorrentStatus> {
        let mut v: Vec<_> =
            self.swarms.iter().map(|(h, s)| TorrentStatus { info_hash: *h, counts: s.counts() }).collect();
        v.sort_by_key(|t| (std::cmp::Reverse(t.counts.complete + t.counts.incomplete), t.info_hash));
        v
    }
}

fn dec(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(id: u8, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [1; 20],
            peer_id: [id; 20],
            port: 6000 + id as u16,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            compact: true,
            no_peer_id: false,
            key: None,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn swarm_lifecycle_counts_and_expiry() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Policy { peer_timeout: Duration::from_secs(100), ..Policy::default() });
        let r = t.announce(&ann(1, 0, Event::Started), IP, t0).unwrap();
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (1, 0));
        let r = t.announce(&ann(2, 10, Event::Started), IP, t0).unwrap();
        assert_eq!(r.peers.len(), 1);
        assert_eq!(r.peers[0].addr.port(), 6001);
        // A seeder hears of leechers first, then of other seeders (a magnet client announces
        // left=0 before it knows the size).
        let r = t.announce(&ann(3, 0, Event::Started), IP, t0).unwrap();
        assert_eq!(r.peers.iter().map(|p| p.addr.port()).collect::<Vec<_>>(), vec![6002, 6001]);
        let r = t.announce(&Announce { numwant: Some(1), ..ann(3, 0, Event::None) }, IP, t0).unwrap();
        assert_eq!(r.peers.iter().map(|p| p.addr.port()).collect::<Vec<_>>(), vec![6002]);
        t.announce(&ann(2, 0, Event::Completed), IP, t0).unwrap();
        assert_eq!(t.scrape(&[[1; 20]])[0].1, ScrapeEntry { complete: 3, downloaded: 1, incomplete: 0 });
        t.announce(&ann(3, 0, Event::Stopped), IP, t0).unwrap();
        assert_eq!(t.scrape(&[])[0].1.complete, 2);
        t.announce(&ann(1, 0, Event::None), IP, t0 + Duration::from_secs(90)).unwrap();
        t.expire(t0 + Duration::from_secs(150));
        assert_eq!(t.scrape(&[[1; 20]])[0].1.complete, 1);
    }

    #[test]
    fn numwant_allow_list_and_ip_limits() {
        let t0 = Instant::now();
        let mut t =
            Tracker::new(Policy { max_peers_per_ip: 5, announces_per_ip_per_sec: 1000, ..Policy::default() });
        for id in 1..=5 {
            t.announce(&ann(id, 5, Event::Started), IP, t0).unwrap();
        }
        assert!(t.announce(&ann(6, 5, Event::Started), IP, t0).unwrap_err().contains("too many peers"));
        let mut a = ann(1, 5, Event::None);
        a.numwant = Some(2);
        assert_eq!(t.announce(&a, IP, t0).unwrap().peers.len(), 2);
        let mut allow = HashSet::new();
        allow.insert([9; 20]);
        let mut t = Tracker::new(Policy { allow: Some(allow), ..Policy::default() });
        assert!(t.announce(&ann(1, 0, Event::Started), IP, t0).is_err());
    }

    #[test]
    fn announce_flood_is_throttled() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Policy { announces_per_ip_per_sec: 1, ..Policy::default() });
        let ok = (0..20).filter(|_| t.announce(&ann(1, 0, Event::None), IP, t0).is_ok()).count();
        assert_eq!(ok, 10);
    }
}
