//! Failed logins per client address, across connections: a password guesser who reconnects
//! after each session's few tries is shut out for a while. A pure table (the caller passes
//! `now`), bounded in size.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long failures are remembered, and an address refused once it reaches the limit.
pub const WINDOW: Duration = Duration::from_secs(600);

/// Addresses tracked at most; when full, the entry seen longest ago makes room.
pub const CAPACITY: usize = 4096;

/// Failed logins per address within [`WINDOW`].
#[derive(Debug)]
pub struct LoginFailures {
    limit: u32,
    entries: HashMap<IpAddr, (u32, Instant)>,
}

impl LoginFailures {
    /// A table that refuses an address after `limit` failures (0: never).
    pub fn new(limit: u32) -> LoginFailures {
        LoginFailures { limit, entries: HashMap::new() }
    }

    /// Counts one failed login from `ip`.
    pub fn record(&mut self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        if !self.entries.contains_key(&ip) && self.entries.len() >= CAPACITY {
            self.entries.retain(|_, (_, last)| now.saturating_duration_since(*last) < WINDOW);
            if self.entries.len() >= CAPACITY
                && let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, last))| *last).map(|(k, _)| *k)
            {
                self.entries.remove(&oldest);
            }
        }
        let e = self.entries.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(e.1) >= WINDOW {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }

    /// Whether `ip` has used up its failures (until [`WINDOW`] after its last one).
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.limit > 0
            && self
                .entries
                .get(&ip)
                .is_some_and(|(n, last)| *n >= self.limit && now.saturating_duration_since(*last) < WINDOW)
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_at_the_limit_until_the_window_passes() {
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut t = LoginFailures::new(3);
        for i in 0..3 {
            assert!(!t.blocked(a, t0), "after {i}");
            t.record(a, t0 + Duration::from_secs(i));
        }
        assert!(t.blocked(a, t0 + Duration::from_secs(3)));
        assert!(!t.blocked(b, t0));
        assert!(t.blocked(a, t0 + Duration::from_secs(2) + WINDOW - Duration::from_secs(1)));
        assert!(!t.blocked(a, t0 + Duration::from_secs(2) + WINDOW));
        // A failure after the window starts a new count.
        t.record(a, t0 + Duration::from_secs(2) + WINDOW);
        assert!(!t.blocked(a, t0 + Duration::from_secs(3) + WINDOW));
        let mut off = LoginFailures::new(0);
        off.record(a, t0);
        assert!(!off.blocked(a, t0) && off.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut t = LoginFailures::new(2);
        for i in 0..(CAPACITY as u32 + 100) {
            t.record(IpAddr::from(i.to_be_bytes()), t0 + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(t.len(), CAPACITY);
    }
}
