//! The choker, sans IO: the textbook's tit-for-tat. Every `rechoke` period unchoke the `slots`
//! interested peers that upload to us fastest (rolling rates), plus one optimistic unchoke
//! rotated every `optimistic` period (new peers three times as likely); snubbed peers (no block
//! for `snub` while we wanted some) lose their regular slot. As a seed, rank by how fast we
//! upload to them instead. A pure function of peer stats and `now`.

use rand::Rng;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The choker's constants.
#[derive(Debug, Clone, Copy)]
pub struct ChokeParams {
    /// Regular unchoke slots (the textbook's 4).
    pub slots: usize,
    /// How often to re-evaluate (10 s).
    pub rechoke: Duration,
    /// How often to rotate the optimistic unchoke (30 s).
    pub optimistic: Duration,
    /// No block for this long while interested = snubbed (60 s).
    pub snub: Duration,
}

impl Default for ChokeParams {
    fn default() -> Self {
        ChokeParams {
            slots: 4,
            rechoke: Duration::from_secs(10),
            optimistic: Duration::from_secs(30),
            snub: Duration::from_secs(60),
        }
    }
}

/// What the choker knows about one peer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerStat {
    /// The driver's id for the peer.
    pub id: u64,
    /// The peer wants our data.
    pub interested: bool,
    /// Bytes/s the peer sends us (rolling).
    pub down_rate: f64,
    /// Bytes/s we send the peer (rolling).
    pub up_rate: f64,
    /// When the connection was made.
    pub connected_at: Instant,
    /// Last time the peer sent us a block (None: never).
    pub last_block: Option<Instant>,
    /// Whether we want data from the peer.
    pub we_are_interested: bool,
}

/// The choker's memory between runs: the optimistic peer and when it was picked.
#[derive(Debug, Clone, Default)]
pub struct Choker {
    optimistic: Option<u64>,
    optimistic_since: Option<Instant>,
}

impl Choker {
    /// A fresh choker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current optimistic unchoke.
    pub fn optimistic(&self) -> Option<u64> {
        self.optimistic
    }

    /// Whether `p` is snubbing us at `now`.
    pub fn snubbed(p: &PeerStat, params: &ChokeParams, now: Instant) -> bool {
        p.we_are_interested
            && now.saturating_duration_since(p.last_block.unwrap_or(p.connected_at)) > params.snub
    }

    /// Decides the unchoked set at `now` (call every `rechoke`).
    pub fn rechoke(
        &mut self,
        peers: &[PeerStat],
        seeding: bool,
        params: &ChokeParams,
        now: Instant,
        rng: &mut impl Rng,
    ) -> HashSet<u64> {
        let mut candidates: Vec<&PeerStat> =
            peers.iter().filter(|p| p.interested && (seeding || !Self::snubbed(p, params, now))).collect();
        candidates.sort_by(|a, b| {
            let (ra, rb) = if seeding { (a.up_rate, b.up_rate) } else { (a.down_rate, b.down_rate) };
            rb.partial_cmp(&ra).unwrap_or(std::cmp::Ordering::Equal).then(a.id.cmp(&b.id))
        });
        let mut unchoked: HashSet<u64> = candidates.iter().take(params.slots).map(|p| p.id).collect();
        let current_ok = self
            .optimistic
            .is_some_and(|o| peers.iter().any(|p| p.id == o && p.interested) && !unchoked.contains(&o));
        let due = self.optimistic_since.is_none_or(|t| now.saturating_duration_since(t) >= params.optimistic);
        if !current_ok || due {
            // Weighted draw among interested peers outside the regular set; peers connected
            // within three optimistic periods count three times.
            let pool: Vec<(&PeerStat, u32)> = peers
                .iter()
                .filter(|p| p.interested && !unchoked.contains(&p.id))
                .map(|p| {
                    (
                        p,
                        if now.saturating_duration_since(p.connected_at) < params.optimistic * 3 {
                            3
                        } else {
                            1
                        },
                    )
                })
                .collect();
            let total: u32 = pool.iter().map(|(_, w)| w).sum();
            self.optimistic = None;
            if total > 0 {
                let mut pick = rng.random_range(0..total);
                for (p, w) in pool {
                    if pick < w {
                        self.optimistic = Some(p.id);
                        break;
                    }
                    pick -= w;
                }
            }
            self.optimistic_since = Some(now);
        }
        if let Some(o) = self.optimistic {
            unchoked.insert(o);
        }
        unchoked
    }

    /// Between runs: whether a newly interested peer may be unchoked at once because a slot
    /// (regular or optimistic) is free, so a fresh swarm does not wait a whole period.
    pub fn has_free_slot(&self, unchoked_interested: usize, params: &ChokeParams) -> bool {
        unchoked_interested < params.slots + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn peer(id: u64, down: f64, t0: Instant) -> PeerStat {
        PeerStat {
            id,
            interested: true,
            down_rate: down,
            up_rate: 0.0,
            connected_at: t0,
            last_block: Some(t0),
            we_are_interested: true,
        }
    }

    #[test]
    fn four_fastest_plus_one_optimistic() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(7);
        let params = ChokeParams::default();
        let peers: Vec<PeerStat> = (0..10).map(|i| peer(i, i as f64 * 100.0, t0)).collect();
        let mut c = Choker::new();
        let set = c.rechoke(&peers, false, &params, t0, &mut rng);
        assert_eq!(set.len(), 5);
        for fast in [9, 8, 7, 6] {
            assert!(set.contains(&fast));
        }
        let opt = c.optimistic().unwrap();
        assert!(opt < 6);
        // 10 s later the optimistic peer is kept (rotation is every 30 s)...
        let set2 = c.rechoke(&peers, false, &params, t0 + Duration::from_secs(10), &mut rng);
        assert!(set2.contains(&opt));
        // ...and over many 30 s rotations every slow peer gets a turn.
        let mut seen = HashSet::new();
        let mut peers = peers;
        for k in 1..60 {
            let now = t0 + Duration::from_secs(30 * k);
            for p in &mut peers {
                p.last_block = Some(now);
            }
            let set = c.rechoke(&peers, false, &params, now, &mut rng);
            assert!([9, 8, 7, 6].iter().all(|f| set.contains(f)));
            seen.insert(c.optimistic().unwrap());
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn uninterested_and_snubbing_peers_lose_regular_slots() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(8);
        let params = ChokeParams::default();
        let now = t0 + Duration::from_secs(120);
        let mut peers: Vec<PeerStat> = (0..6).map(|i| peer(i, 1000.0 + i as f64, t0)).collect();
        for p in &mut peers {
            p.last_block = Some(now);
        }
        peers[5].interested = false;
        peers[4].last_block = Some(t0); // silent for 120 s while we want its data
        let set = Choker::new().rechoke(&peers, false, &params, now, &mut rng);
        assert!(!set.contains(&5));
        assert!([0, 1, 2, 3].iter().all(|i| set.contains(i)));
        // Peer 4 can only be there as the optimistic unchoke, the sole candidate left.
        assert_eq!(set.len(), 5);
    }

    #[test]
    fn seed_mode_ranks_by_upload_rate() {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(9);
        let params = ChokeParams { slots: 2, ..ChokeParams::default() };
        let mut peers: Vec<PeerStat> = (0..5).map(|i| peer(i, 0.0, t0)).collect();
        for (i, p) in peers.iter_mut().enumerate() {
            p.up_rate = (10 - i) as f64;
            p.we_are_interested = false;
        }
        let set = Choker::new().rechoke(&peers, true, &params, t0, &mut rng);
        assert!(set.contains(&0) && set.contains(&1));
        assert_eq!(set.len(), 3);
        assert!(Choker::new().has_free_slot(2, &params));
        assert!(!Choker::new().has_free_slot(3, &params));
    }
}
