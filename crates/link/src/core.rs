//! The sans-IO impairment pipe of one direction: a packet goes in with `now` and comes out at a
//! scheduled release time, or is dropped (random or bursty loss, or a full drop-tail queue).
//! No sockets and no clock: time is a [`Duration`] since the caller's epoch, randomness a seeded
//! RNG, so every behaviour is unit-tested exactly in virtual time.
//!
//! Order of the stages, as netem does it: loss first (a lost packet never occupies the queue),
//! then the rate limiter (serialisation at `rate`, one packet after the other, with a drop-tail
//! queue), then the delay line (fixed delay ± jitter; FIFO unless a packet is picked to reorder,
//! in which case it skips the delay).

use crate::spec::Impairment;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

/// What happened to a packet handed to [`Pipe::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It will be released at this time.
    Scheduled(Duration),
    /// Random (Bernoulli) loss.
    Lost,
    /// Gilbert–Elliott bad state.
    BurstLost,
    /// The rate limiter's queue was full (drop-tail).
    QueueFull,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeStats {
    /// Packets handed in.
    pub packets: u64,
    /// Bytes handed in.
    pub bytes: u64,
    /// Lost at random.
    pub lost: u64,
    /// Lost in a burst.
    pub burst_lost: u64,
    /// Dropped by the full queue.
    pub queue_drops: u64,
    /// Released (sent on).
    pub released: u64,
    /// Released ahead of a packet that entered before them.
    pub reordered: u64,
}

struct Scheduled<P> {
    at: Duration,
    seq: u64,
    packet: P,
}

impl<P> PartialEq for Scheduled<P> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<P> Eq for Scheduled<P> {}
impl<P> PartialOrd for Scheduled<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for Scheduled<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One direction of the emulated link. `P` is the packet (bytes in the driver, anything in tests).
pub struct Pipe<P> {
    imp: Impairment,
    rng: SmallRng,
    /// Gilbert–Elliott state: true while in the bad state.
    bad: bool,
    /// When the rate limiter finishes sending the last accepted packet.
    busy_until: Duration,
    /// Departure times of the packets still in the rate limiter (queued or being sent).
    backlog: VecDeque<Duration>,
    /// The latest release time given so far (jitter without reordering keeps FIFO).
    last_release: Duration,
    heap: BinaryHeap<Reverse<Scheduled<P>>>,
    next_seq: u64,
    /// The highest sequence number released so far (to count reordering).
    released_seq: Option<u64>,
    stats: PipeStats,
}

impl<P> Pipe<P> {
    /// A pipe applying `imp`, with a reproducible RNG seeded by `seed`.
    pub fn new(imp: Impairment, seed: u64) -> Self {
        Pipe {
            imp,
            rng: SmallRng::seed_from_u64(seed),
            bad: false,
            busy_until: Duration::ZERO,
            backlog: VecDeque::new(),
            last_release: Duration::ZERO,
            heap: BinaryHeap::new(),
            next_seq: 0,
            released_seq: None,
            stats: PipeStats::default(),
        }
    }

    /// Changes the settings; packets already scheduled keep their release times.
    pub fn set(&mut self, imp: Impairment) {
        if imp.burst.is_none() {
            self.bad = false;
        }
        self.imp = imp;
    }

    /// The settings in force.
    pub fn impairment(&self) -> &Impairment {
        &self.imp
    }

    /// The counters so far.
    pub fn stats(&self) -> PipeStats {
        self.stats
    }

    /// Packets scheduled and not yet released.
    pub fn in_flight(&self) -> usize {
        self.heap.len()
    }

    /// A packet of `len` bytes arrives at `now`.
    pub fn push(&mut self, now: Duration, len: usize, packet: P) -> Verdict {
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        // Loss: the Gilbert–Elliott chain advances once per packet, then Bernoulli.
        if let Some(g) = self.imp.burst {
            let flip = if self.bad { g.r } else { g.p };
            if self.rng.random_bool(flip) {
                self.bad = !self.bad;
            }
            if self.bad {
                self.stats.burst_lost += 1;
                return Verdict::BurstLost;
            }
        }
        if self.imp.loss > 0.0 && self.rng.random_bool(self.imp.loss) {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        // The rate limiter: serialisation one packet after the other, drop-tail when full.
        let departs = match self.imp.rate_bps {
            Some(rate) => {
                while self.backlog.front().is_some_and(|&d| d <= now) {
                    self.backlog.pop_front();
                }
                if self.backlog.len() >= self.imp.queue {
                    self.stats.queue_drops += 1;
                    return Verdict::QueueFull;
                }
                let start = self.busy_until.max(now);
                let done = start + transmission_time(len, rate);
                self.busy_until = done;
                self.backlog.push_back(done);
                done
            }
            None => now,
        };
        // The delay line.
        let at = if self.imp.reorder > 0.0 && self.rng.random_bool(self.imp.reorder) {
            departs
        } else {
            let mut d = departs + self.imp.delay;
            if !self.imp.jitter.is_zero() {
                let j = self.imp.jitter.as_nanos() as i128;
                let offset = self.rng.random_range(-j..=j);
                let nanos = (d.as_nanos() as i128 + offset).max(departs.as_nanos() as i128);
                d = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                if self.imp.reorder == 0.0 {
                    d = d.max(self.last_release);
                }
            }
            self.last_release = self.last_release.max(d);
            d
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Scheduled { at, seq, packet }));
        Verdict::Scheduled(at)
    }

    /// The earliest scheduled release, if any.
    pub fn next_release(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(s)| s.at)
    }

    /// Takes the next packet due at `now`, if any (call until None).
    pub fn pop_due(&mut self, now: Duration) -> Option<P> {
        if self.next_release()? > now {
            return None;
        }
        let Reverse(s) = self.heap.pop()?;
        self.stats.released += 1;
        match self.released_seq {
            Some(max) if s.seq < max => self.stats.reordered += 1,
            _ => self.released_seq = Some(s.seq),
        }
        Some(s.packet)
    }
}

/// How long `len` bytes take at `rate` bits per second, rounded up to the nanosecond.
pub fn transmission_time(len: usize, rate_bps: u64) -> Duration {
    let bits = len as u128 * 8 * 1_000_000_000;
    let rate = u128::from(rate_bps.max(1));
    Duration::from_nanos(u64::try_from(bits.div_ceil(rate)).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Gilbert, LinkSpec};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain<P>(p: &mut Pipe<P>, now: Duration) -> Vec<P> {
        std::iter::from_fn(|| p.pop_due(now)).collect()
    }

    #[test]
    fn a_clean_pipe_releases_at_once_and_a_delay_shifts_by_exactly_the_delay() {
        let mut p = Pipe::new(Impairment::default(), 1);
        assert_eq!(p.push(ms(5), 100, 1), Verdict::Scheduled(ms(5)));
        assert_eq!(drain(&mut p, ms(5)), vec![1]);
        let imp = LinkSpec::parse("rtt=40ms").unwrap().a2b;
        let mut p = Pipe::new(imp, 1);
        assert_eq!(p.push(ms(5), 100, 1), Verdict::Scheduled(ms(25)));
        assert!(drain(&mut p, ms(24)).is_empty());
        assert_eq!(p.next_release(), Some(ms(25)));
        assert_eq!(drain(&mut p, ms(25)), vec![1]);
    }

    #[test]
    fn bernoulli_loss_is_within_a_tenth_of_a_point_over_many_packets() {
        for pct in [1.0, 2.0, 5.0, 20.0] {
            let imp = Impairment { loss: pct / 100.0, ..Default::default() };
            let mut p = Pipe::new(imp, 7);
            let n = 400_000;
            for i in 0..n {
                p.push(Duration::from_micros(i), 1000, ());
            }
            let measured = p.stats().lost as f64 / n as f64 * 100.0;
            assert!((measured - pct).abs() < 0.1, "{pct}%: measured {measured}%");
            assert_eq!(p.stats().released + p.in_flight() as u64 + p.stats().lost, n);
        }
    }

    #[test]
    fn gilbert_loss_has_the_mean_and_the_burst_length_of_the_chain() {
        let g = Gilbert { p: 0.01, r: 0.25 };
        let mut p = Pipe::new(Impairment { burst: Some(g), ..Default::default() }, 3);
        let n = 1_000_000u64;
        let (mut bursts, mut in_burst) = (0u64, false);
        for i in 0..n {
            let lost = p.push(Duration::from_micros(i), 100, ()) == Verdict::BurstLost;
            if lost && !in_burst {
                bursts += 1;
            }
            in_burst = lost;
        }
        let mean = p.stats().burst_lost as f64 / n as f64;
        assert!((mean - g.mean_loss()).abs() < 0.003, "mean loss {mean} vs {}", g.mean_loss());
        let burst_len = p.stats().burst_lost as f64 / bursts as f64;
        assert!((burst_len - 1.0 / g.r).abs() < 0.1, "burst length {burst_len}");
    }

    #[test]
    fn the_rate_limiter_serialises_exactly_and_drops_the_tail() {
        // 1250 bytes at 10 Mbit/s take exactly 1 ms.
        let imp = LinkSpec::parse("rate=10mbit,queue=10,delay=3ms").unwrap().a2b;
        let mut p = Pipe::new(imp, 1);
        let verdicts: Vec<_> = (0..15).map(|i| p.push(ms(100), 1250, i)).collect();
        for (i, v) in verdicts.iter().enumerate().take(10) {
            assert_eq!(*v, Verdict::Scheduled(ms(100 + i as u64 + 1 + 3)));
        }
        assert!(verdicts[10..].iter().all(|v| *v == Verdict::QueueFull));
        assert_eq!(p.stats().queue_drops, 5);
        // After 4 ms four packets have left the limiter: room for four more, queued behind.
        let more: Vec<_> = (0..5).map(|i| p.push(ms(104), 1250, 100 + i)).collect();
        assert_eq!(more[0], Verdict::Scheduled(ms(100 + 11 + 3)));
        assert_eq!(more[3], Verdict::Scheduled(ms(100 + 14 + 3)));
        assert_eq!(more[4], Verdict::QueueFull);
        let out = drain(&mut p, ms(1000));
        assert_eq!(out.len(), 14);
        assert!(out.windows(2).all(|w| w[0] < w[1]), "FIFO order");
        // Throughput over a long run is the rate, to the nanosecond.
        let mut p = Pipe::new(LinkSpec::parse("rate=8mbit,queue=1000000").unwrap().a2b, 1);
        let mut last = Duration::ZERO;
        for i in 0..10_000 {
            if let Verdict::Scheduled(t) = p.push(Duration::ZERO, 1000 + i % 500, ()) {
                last = t;
            }
        }
        let bytes: u64 = (0..10_000u64).map(|i| 1000 + i % 500).sum();
        assert_eq!(last, Duration::from_micros(bytes));
    }

    #[test]
    fn jitter_stays_in_bounds_and_keeps_order_unless_reordering_is_asked() {
        let imp = LinkSpec::parse("delay=20ms,jitter=5ms").unwrap().a2b;
        let mut p = Pipe::new(imp, 9);
        let mut last = Duration::ZERO;
        for i in 0..10_000u64 {
            let now = Duration::from_micros(i * 100);
            let Verdict::Scheduled(t) = p.push(now, 100, i) else { panic!("dropped") };
            assert!(t >= now + ms(15) && t >= last);
            last = t;
        }
        let out = drain(&mut p, Duration::from_secs(10));
        assert!(out.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.stats().reordered, 0);
    }

    #[test]
    fn reordering_lets_a_fraction_overtake() {
        let imp = LinkSpec::parse("delay=10ms,reorder=10%").unwrap().a2b;
        let mut p = Pipe::new(imp, 5);
        let n = 100_000u64;
        for i in 0..n {
            p.push(Duration::from_micros(i * 100), 100, i);
        }
        let out = drain(&mut p, Duration::from_secs(100));
        assert_eq!(out.len() as u64, n);
        let early = p.stats().reordered as f64 / n as f64;
        // The overtaken packets are the ~90% delayed ones released after an undelayed one.
        assert!(early > 0.5 && early < 1.0, "reordered fraction {early}");
        let mut sorted = out.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n).collect::<Vec<_>>());
    }
}
