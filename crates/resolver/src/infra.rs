//! The infra cache (as Unbound calls it): upstream server selection, sans-IO. A smoothed RTT
//! per server address (as TCP estimates it, RFC 6298), timeouts derived from it, exponential
//! backoff after timeouts, and a choice that prefers the fastest server but sometimes probes
//! the others so a recovered one is noticed. Every call takes `now`; the iteration core
//! ([`crate::iterate`]) consults it for each zone it asks.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The RTT assumed for a server never asked (Unbound uses 376 ms; loopback labs are faster).
pub const UNKNOWN_RTT: Duration = Duration::from_millis(200);
/// Shortest timeout ever used for one try.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest timeout ever used for one try (backoff stops doubling here).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3);
/// Share of choices that probe a server other than the fastest.
pub const PROBE_PERCENT: u32 = 5;
/// How long a timed-out server stays at the back of the queue.
pub const BLACKOUT: Duration = Duration::from_secs(30);
/// Most server addresses remembered: zones an attacker controls can name any number of
/// addresses, so past this half the entries are forgotten (amortised O(1) per new address).
pub const MAX_SERVERS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Stat {
    srtt: f64,
    rttvar: f64,
    /// Consecutive timeouts; each doubles the next timeout (exponential backoff).
    timeouts: u32,
    last_timeout: Option<Instant>,
}

/// What the resolver knows about each upstream server's speed and health (the infra cache).
#[derive(Debug, Default)]
pub struct InfraCache {
    stats: HashMap<IpAddr, Stat>,
}

impl InfraCache {
    /// No knowledge yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The smoothed RTT of `addr` (the unknown default if never measured).
    pub fn srtt(&self, addr: IpAddr) -> Duration {
        self.stats.get(&addr).map_or(UNKNOWN_RTT, |s| Duration::from_secs_f64(s.srtt / 1000.0))
    }

    /// How long to wait for `addr` on this try: srtt + 4·rttvar, doubled per consecutive timeout.
    pub fn timeout(&self, addr: IpAddr) -> Duration {
        let (base, timeouts) = match self.stats.get(&addr) {
            Some(s) => (Duration::from_secs_f64((s.srtt + 4.0 * s.rttvar) / 1000.0), s.timeouts),
            None => (UNKNOWN_RTT * 2, 0),
        };
        let backoff = base.saturating_mul(1u32 << timeouts.min(6));
        backoff.clamp(MIN_TIMEOUT, MAX_TIMEOUT)
    }

    /// Number of server addresses remembered.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether nothing is known yet.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Before remembering a new address: keeps the table under [`MAX_SERVERS`].
    fn make_room(&mut self, addr: IpAddr) {
        if self.stats.len() >= MAX_SERVERS && !self.stats.contains_key(&addr) {
            let mut keep = false;
            self.stats.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }

    /// Records an answer from `addr` after `rtt`.
    pub fn answered(&mut self, addr: IpAddr, rtt: Duration) {
        self.make_room(addr);
        let ms = rtt.as_secs_f64() * 1000.0;
        let s = self.stats.entry(addr).or_insert(Stat {
            srtt: ms,
            rttvar: ms / 2.0,
            timeouts: 0,
            last_timeout: None,
        });
        if s.timeouts > 0 || s.last_timeout.is_some() {
            // The estimate was inflated by timeouts, not measured: start again from this sample.
            s.srtt = ms;
            s.rttvar = ms / 2.0;
        } else {
            s.rttvar = 0.75 * s.rttvar + 0.25 * (s.srtt - ms).abs();
            s.srtt = 0.875 * s.srtt + 0.125 * ms;
        }
        s.timeouts = 0;
        s.last_timeout = None;
    }

    /// Records a timeout (or a broken answer) from `addr`.
    pub fn timed_out(&mut self, addr: IpAddr, now: Instant) {
        self.make_room(addr);
        let ms = UNKNOWN_RTT.as_secs_f64() * 1000.0;
        let s = self.stats.entry(addr).or_insert(Stat {
            srtt: ms,
            rttvar: ms / 2.0,
            timeouts: 0,
            last_timeout: None,
        });
        s.timeouts = s.timeouts.saturating_add(1);
        s.last_timeout = Some(now);
        // Penalise the estimate so other replicas are preferred meanwhile.
        s.srtt = (s.srtt * 2.0).min(MAX_TIMEOUT.as_secs_f64() * 1000.0);
    }

    /// Orders `candidates` for trying: healthy before recently timed-out, fastest first; with
    /// probability PROBE_PERCENT (decided by `roll` in 0..100) a random other server goes first.
    pub fn order(&self, candidates: &[IpAddr], now: Instant, roll: u32, pick: usize) -> Vec<IpAddr> {
        let mut list: Vec<IpAddr> = Vec::with_capacity(candidates.len());
        for a in candidates {
            if !list.contains(a) {
                list.push(*a);
            }
        }
        let key = |a: &IpAddr| {
            let s = self.stats.get(a);
            let dark =
                s.and_then(|s| s.last_timeout).is_some_and(|t| now.saturating_duration_since(t) < BLACKOUT);
            (dark, (self.srtt(*a).as_secs_f64() * 1e6) as u64)
        };
        list.sort_by_key(key);
        // Probe only servers not in their blackout: a server that just timed out waits its turn.
        let healthy = list.iter().filter(|a| !key(a).0).count();
        if healthy > 1 && roll < PROBE_PERCENT {
            let i = 1 + pick % (healthy - 1);
            let probe = list.remove(i);
            list.insert(0, probe);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn fastest_first_and_timed_out_last() {
        let now = Instant::now();
        let mut s = InfraCache::new();
        s.answered(ip("127.0.0.1"), Duration::from_millis(30));
        s.answered(ip("127.0.0.2"), Duration::from_millis(5));
        s.timed_out(ip("127.0.0.3"), now);
        let all = [ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.4")];
        let order = s.order(&all, now, 99, 0);
        assert_eq!(order, vec![ip("127.0.0.2"), ip("127.0.0.1"), ip("127.0.0.4"), ip("127.0.0.3")]);
        // After the blackout the timed-out server competes on its (penalised) RTT again.
        let later = s.order(&all, now + BLACKOUT, 99, 0);
        assert_eq!(later[0], ip("127.0.0.2"));
    }

    #[test]
    fn probing_sometimes_puts_another_server_first() {
        let now = Instant::now();
        let mut s = InfraCache::new();
        s.answered(ip("127.0.0.1"), Duration::from_millis(1));
        s.answered(ip("127.0.0.2"), Duration::from_millis(50));
        let all = [ip("127.0.0.1"), ip("127.0.0.2")];
        assert_eq!(s.order(&all, now, PROBE_PERCENT - 1, 7)[0], ip("127.0.0.2"));
        assert_eq!(s.order(&all, now, PROBE_PERCENT, 7)[0], ip("127.0.0.1"));
    }

    #[test]
    fn probing_never_picks_a_server_in_its_blackout() {
        let now = Instant::now();
        let mut s = InfraCache::new();
        s.answered(ip("127.0.0.1"), Duration::from_millis(1));
        s.timed_out(ip("127.0.0.2"), now);
        let all = [ip("127.0.0.1"), ip("127.0.0.2")];
        for pick in 0..10 {
            assert_eq!(s.order(&all, now, 0, pick)[0], ip("127.0.0.1"));
        }
    }

    #[test]
    fn the_table_of_servers_is_bounded() {
        let now = Instant::now();
        let mut s = InfraCache::new();
        for i in 0..=(3 * MAX_SERVERS as u32) {
            let addr = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            if i % 2 == 0 {
                s.answered(addr, Duration::from_millis(5));
            } else {
                s.timed_out(addr, now);
            }
            assert!(s.len() <= MAX_SERVERS);
        }
        // The latest one (an answer: i is even) is always kept.
        let last = IpAddr::from((0x0a00_0000 + 3 * MAX_SERVERS as u32).to_be_bytes());
        assert_eq!(s.srtt(last), Duration::from_millis(5));
    }

    #[test]
    fn timeouts_back_off_exponentially_and_reset_on_an_answer() {
        let now = Instant::now();
        let mut s = InfraCache::new();
        let a = ip("127.0.0.9");
        s.answered(a, Duration::from_millis(100));
        let t0 = s.timeout(a);
        s.timed_out(a, now);
        let t1 = s.timeout(a);
        s.timed_out(a, now);
        let t2 = s.timeout(a);
        assert!(t1 >= t0 * 2 - Duration::from_millis(1), "{t0:?} {t1:?}");
        assert!(t2 >= t1 * 2 - Duration::from_millis(1) || t2 == MAX_TIMEOUT, "{t1:?} {t2:?}");
        for _ in 0..20 {
            s.timed_out(a, now);
        }
        assert_eq!(s.timeout(a), MAX_TIMEOUT);
        s.answered(a, Duration::from_millis(10));
        assert!(s.timeout(a) < MAX_TIMEOUT);
    }
}
