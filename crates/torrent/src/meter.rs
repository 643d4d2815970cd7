//! Rolling transfer rates (bytes per second over the last W seconds), sans IO: the choker's
//! input. The window is split into 20 buckets, so a 20 s window moves in 1 s steps.

use std::time::{Duration, Instant};

const BUCKETS: usize = 20;

/// Bytes counted into time buckets covering a sliding window.
#[derive(Debug, Clone)]
pub struct RateMeter {
    window: Duration,
    start: Instant,
    buckets: [u64; BUCKETS],
    /// Index (in bucket units since `start`) of the newest bucket.
    head: u64,
    total: u64,
}

impl RateMeter {
    /// A meter over `window`, starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        let window = window.max(Duration::from_millis(20));
        RateMeter { window, start: now, buckets: [0; BUCKETS], head: 0, total: 0 }
    }

    fn width(&self) -> Duration {
        self.window / BUCKETS as u32
    }

    fn advance(&mut self, now: Instant) {
        let idx =
            (now.saturating_duration_since(self.start).as_nanos() / self.width().as_nanos().max(1)) as u64;
        if idx > self.head {
            let steps = (idx - self.head).min(BUCKETS as u64);
            for k in 1..=steps {
                self.buckets[((self.head + k) % BUCKETS as u64) as usize] = 0;
            }
            self.head = idx;
        }
    }

    /// Counts `bytes` at `now`.
    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        self.buckets[(self.head % BUCKETS as u64) as usize] += bytes;
        self.total += bytes;
    }

    /// Bytes per second over the window (or since the start, if younger than the window).
    pub fn rate(&mut self, now: Instant) -> f64 {
        self.advance(now);
        let sum: u64 = self.buckets.iter().sum();
        let age = now.saturating_duration_since(self.start).min(self.window).max(self.width());
        sum as f64 / age.as_secs_f64()
    }

    /// Bytes counted ever.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_and_decay() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(Duration::from_secs(20), t0);
        for s in 0..40 {
            m.add(1000, t0 + Duration::from_secs(s));
        }
        let r = m.rate(t0 + Duration::from_secs(40));
        assert!((900.0..=1100.0).contains(&r), "{r}");
        assert_eq!(m.rate(t0 + Duration::from_secs(100)), 0.0);
        assert_eq!(m.total(), 40_000);
    }
}
