//! The tracker's state machine, sans IO: swarms of peers per info hash, announces that add,
//! refresh and remove peers, expiry of peers that stop announcing, scrape counts, an optional
//! allow-list, and per-IP limits. Every call takes `now`.
//!
//! The torrent table is bounded against floods of made-up info hashes: each source (an IPv4
//! address, or an IPv6 /64) may create only so many torrents a minute, and when the table is
//! full the least recently announced torrent is evicted if nobody has announced it for a whole
//! interval (no live peers) before a new one is refused. Both are O(log n) per announce.

use super::proto::{Announce, AnnounceReply, Event, PeerAddr, ScrapeEntry};
use crate::InfoHash;
use appnet_netkit::rate::TokenBucket;
use rand::seq::IteratorRandom;
use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// New torrents one source (IPv4 address or IPv6 /64) may create per minute, so a flood of
    /// made-up info hashes cannot fill the table.
    pub new_torrents_per_ip_per_min: u32,
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
            new_torrents_per_ip_per_min: 30,
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
#[derive(Debug)]
struct Swarm {
    peers: HashMap<[u8; 20], Peer>,
    downloaded: u32,
    /// When anyone last announced it (its key in `Tracker::by_age`).
    last_announce: Instant,
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
    /// Every swarm ordered by its last announce: the eviction candidate is the first.
    by_age: BTreeSet<(Instant, InfoHash)>,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Torrents created per source in the current minute: (window start, count).
    created: HashMap<IpAddr, (Instant, u32)>,
}

/// The unit the new-torrent quota is charged to: the IPv4 address, or the IPv6 /64 (one
/// subscriber's usual allocation, so rotating addresses inside it does not help).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::V6(o.into())
        }
        v4 => v4,
    }
}

const QUOTA_WINDOW: Duration = Duration::from_secs(60);

impl Tracker {
    /// An empty tracker with `policy`.
    pub fn new(policy: Policy) -> Self {
        Tracker {
            policy,
            swarms: HashMap::new(),
            by_age: BTreeSet::new(),
            per_ip: HashMap::new(),
            buckets: HashMap::new(),
            created: HashMap::new(),
        }
    }

    /// Number of torrents in the table.
    pub fn torrents(&self) -> usize {
        self.swarms.len()
    }

    /// Makes room for one more torrent, or says why not: over the source's quota, or the table
    /// is full of torrents announced within the last interval (all live).
    fn make_room(&mut self, ip: IpAddr, now: Instant) -> Result<(), String> {
        let key = source_key(ip);
        let quota = self.policy.new_torrents_per_ip_per_min;
        let (start, n) = self.created.get(&key).copied().unwrap_or((now, 0));
        let (start, n) =
            if now.saturating_duration_since(start) >= QUOTA_WINDOW { (now, 0) } else { (start, n) };
        if n >= quota {
            return Err("too many new torrents from your address; try again in a minute".into());
        }
        if self.swarms.len() >= self.policy.max_torrents {
            // Every client re-announces within `interval`: a torrent nobody announced for
            // longer (plus slack) has no live peer left, and is the one to give up.
            let live = Duration::from_secs(self.policy.interval as u64 + self.policy.min_interval as u64);
            match self.by_age.first().copied() {
                Some((at, hash)) if now.saturating_duration_since(at) > live => self.remove_swarm(&hash),
                _ => return Err("tracker is full".into()),
            }
        }
        self.created.insert(key, (start, n + 1));
        Ok(())
    }

    /// Drops a swarm and its peers' per-IP accounting.
    fn remove_swarm(&mut self, hash: &InfoHash) {
        if let Some(s) = self.swarms.remove(hash) {
            self.by_age.remove(&(s.last_announce, *hash));
            for p in s.peers.values() {
                dec(&mut self.per_ip, p.addr.ip());
            }
        }
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
        let addr = SocketAddr::new(ip, a.port);
        if !self.swarms.contains_key(&a.info_hash) {
            // Nothing to record for a peer leaving a torrent we do not track, and a new torrent
            // costs the source's quota only once its peer would be accepted.
            if a.event == Event::Stopped {
                return Ok(AnnounceReply {
                    interval: self.policy.interval,
                    min_interval: Some(self.policy.min_interval),
                    complete: 0,
                    incomplete: 0,
                    peers: vec![],
                });
            }
            if self.policy.max_peers_per_torrent == 0 {
                return Err("swarm is full".into());
            }
            if *self.per_ip.get(&ip).unwrap_or(&0) >= self.policy.max_peers_per_ip {
                return Err("too many peers from your address".into());
            }
            self.make_room(ip, now)?;
            self.swarms
                .insert(a.info_hash, Swarm { peers: HashMap::new(), downloaded: 0, last_announce: now });
            self.by_age.insert((now, a.info_hash));
        }
        let Some(swarm) = self.swarms.get_mut(&a.info_hash) else {
            return Err("tracker is full".into());
        };
        if swarm.last_announce != now {
            self.by_age.remove(&(swarm.last_announce, a.info_hash));
            swarm.last_announce = now;
            self.by_age.insert((now, a.info_hash));
        }
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
        let by_age = &mut self.by_age;
        self.swarms.retain(|h, s| {
            let keep = !s.peers.is_empty() || s.downloaded > 0;
            if !keep {
                by_age.remove(&(s.last_announce, *h));
            }
            keep
        });
        let rate = self.policy.announces_per_ip_per_sec.max(1) as u64;
        self.buckets.retain(|_, b| b.available(now) < rate * 10);
        self.created.retain(|_, (start, _)| now.saturating_duration_since(*start) < QUOTA_WINDOW);
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

    fn ann_for(hash: u32, id: u8) -> Announce {
        let mut a = ann(id, 5, Event::Started);
        a.info_hash[..4].copy_from_slice(&hash.to_be_bytes());
        a
    }

    fn ip4(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + i))
    }

    /// The hostile tester's flood: random info hashes from 500 addresses. The table must not
    /// fill, so a genuinely new torrent is still accepted.
    #[test]
    fn random_hash_flood_from_many_addresses_leaves_room() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Policy {
            max_torrents: 20_000,
            announces_per_ip_per_sec: 1_000_000,
            ..Policy::default()
        });
        let mut n = 0u32;
        for src in 2..502 {
            for _ in 0..50 {
                n += 1;
                let _ = t.announce(&ann_for(n, 1), ip4(src), t0);
            }
        }
        assert_eq!(t.status().len(), 500 * 30, "each source made only its quota");
        let fresh = t.announce(&ann_for(u32::MAX, 9), ip4(1), t0);
        assert!(fresh.is_ok(), "{fresh:?}");
    }

    #[test]
    fn new_torrent_quota_per_source_and_minute() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Policy {
            new_torrents_per_ip_per_min: 3,
            announces_per_ip_per_sec: 1000,
            ..Policy::default()
        });
        for h in 1..=3 {
            t.announce(&ann_for(h, 1), ip4(1), t0).unwrap();
        }
        let e = t.announce(&ann_for(4, 1), ip4(1), t0).unwrap_err();
        assert!(e.contains("too many new torrents"), "{e}");
        // Joining an existing torrent costs nothing; another source has its own quota.
        t.announce(&ann_for(1, 2), ip4(1), t0).unwrap();
        t.announce(&ann_for(4, 3), ip4(2), t0).unwrap();
        // IPv6 addresses of one /64 share a quota.
        let v6 = |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        for h in 10..13 {
            t.announce(&ann_for(h, 1), v6(h as u16), t0).unwrap();
        }
        assert!(t.announce(&ann_for(13, 1), v6(99), t0).is_err());
        // A minute later the quota is back.
        t.expire(t0 + Duration::from_secs(61));
        t.announce(&ann_for(5, 1), ip4(1), t0 + Duration::from_secs(61)).unwrap();
    }

    #[test]
    fn full_table_evicts_the_stalest_torrent_before_refusing() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Tracker::new(Policy {
            max_torrents: 2,
            interval: 100,
            min_interval: 10,
            announces_per_ip_per_sec: 1000,
            ..Policy::default()
        });
        t.announce(&ann_for(1, 1), ip4(1), t0).unwrap();
        t.announce(&ann_for(2, 1), ip4(2), t0 + s(50)).unwrap();
        // Both announced within the interval: live, so the newcomer is refused.
        let e = t.announce(&ann_for(3, 1), ip4(3), t0 + s(60)).unwrap_err();
        assert!(e.contains("full"), "{e}");
        // Torrent 1 has not been announced for longer than interval + min_interval: evicted.
        t.announce(&ann_for(3, 1), ip4(3), t0 + s(111)).unwrap();
        let hashes: HashSet<u8> = t.status().iter().map(|r| r.info_hash[3]).collect();
        assert_eq!(hashes, HashSet::from([2, 3]));
        // Its peer's per-IP entry went with it.
        assert!(!t.per_ip.contains_key(&ip4(1)));
        // Re-announcing refreshes a torrent: 2 is now older than 3, and still live.
        t.announce(&ann_for(2, 1), ip4(2), t0 + s(112)).unwrap();
        assert!(t.announce(&ann_for(4, 1), ip4(4), t0 + s(113)).is_err());
        t.announce(&ann_for(4, 1), ip4(4), t0 + s(224)).unwrap();
        let hashes: HashSet<u8> = t.status().iter().map(|r| r.info_hash[3]).collect();
        assert_eq!(hashes, HashSet::from([2, 4]));
    }

    #[test]
    fn refused_announce_creates_no_torrent() {
        let t0 = Instant::now();
        let mut t =
            Tracker::new(Policy { max_peers_per_ip: 1, announces_per_ip_per_sec: 1000, ..Policy::default() });
        t.announce(&ann_for(1, 1), IP, t0).unwrap();
        assert!(t.announce(&ann_for(2, 1), IP, t0).is_err());
        t.announce(&Announce { event: Event::Stopped, ..ann_for(3, 1) }, IP, t0).unwrap();
        assert_eq!(t.status().len(), 1);
    }

    #[test]
    fn announce_flood_is_throttled() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Policy { announces_per_ip_per_sec: 1, ..Policy::default() });
        let ok = (0..20).filter(|_| t.announce(&ann(1, 0, Event::None), IP, t0).is_ok()).count();
        assert_eq!(ok, 10);
    }
}
