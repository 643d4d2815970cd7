//! What the link does to packets, per direction, and its text form
//! (`rtt=40ms,loss=1%,rate=10mbit,queue=100`, with `a2b.`/`b2a.` prefixes for one direction),
//! shared by `appnet link up` flags, `appnet lab --link` and the experiments.

use crate::error::LinkError;
use std::time::Duration;

/// Gilbert–Elliott bursty loss (the simple Gilbert form: every packet is lost in the bad state,
/// none in the good state): `p` = P(good → bad), `r` = P(bad → good) per packet. The mean loss
/// rate is p / (p + r) and the mean burst length 1 / r.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gilbert {
    /// Probability of entering the bad state after a packet in the good state.
    pub p: f64,
    /// Probability of leaving the bad state after a packet in the bad state.
    pub r: f64,
}

impl Gilbert {
    /// The long-run fraction of packets lost.
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r == 0.0 { 0.0 } else { self.p / (self.p + self.r) }
    }
}

/// What one direction of the link does to the packets crossing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Fixed one-way propagation delay.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within ±jitter (order kept unless `reorder` > 0).
    pub jitter: Duration,
    /// Independent (Bernoulli) loss probability per packet, 0..=1.
    pub loss: f64,
    /// Bursty loss on top of `loss`.
    pub burst: Option<Gilbert>,
    /// Link rate in bits per second (None: unlimited, no queue).
    pub rate_bps: Option<u64>,
    /// Drop-tail queue in packets in front of the rate limiter (the packet being sent counts).
    pub queue: usize,
    /// Probability that a packet skips the delay line and overtakes those before it.
    pub reorder: f64,
}

impl Default for Impairment {
    fn default() -> Self {
        Impairment {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            rate_bps: None,
            queue: 100,
            reorder: 0.0,
        }
    }
}

/// Both directions: `a2b` is what namespace A sends to B, `b2a` the way back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkSpec {
    /// From namespace A to namespace B.
    pub a2b: Impairment,
    /// From namespace B to namespace A.
    pub b2a: Impairment,
}

impl LinkSpec {
    /// Parses `key=value,...`; keys: `rtt` (half as delay each way), `delay` (one way), `jitter`,
    /// `loss`, `burst` (`p:r`, percentages or fractions), `rate` (`10mbit`, `512kbit`, `1gbit`,
    /// bits/s), `queue` (packets), `reorder`. A key prefixed `a2b.` or `b2a.` sets one direction.
    pub fn parse(text: &str) -> Result<LinkSpec, LinkError> {
        let mut spec = LinkSpec::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| LinkError::Spec(format!("{item:?}: expected key=value (e.g. rtt=40ms)")))?;
            spec.set(key.trim(), value.trim())?;
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Sets one key (see [`LinkSpec::parse`]), in both directions unless prefixed.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), LinkError> {
        if let Some(k) = key.strip_prefix("a2b.") {
            return set_one(&mut self.a2b, k, value, false);
        }
        if let Some(k) = key.strip_prefix("b2a.") {
            return set_one(&mut self.b2a, k, value, false);
        }
        set_one(&mut self.a2b, key, value, true)?;
        set_one(&mut self.b2a, key, value, true)
    }

    /// Checks ranges (probabilities in [0, 1], a queue of at least one packet, delays under a minute).
    pub fn validate(&self) -> Result<(), LinkError> {
        for (name, d) in [("a2b", &self.a2b), ("b2a", &self.b2a)] {
            let prob = |what: &str, v: f64| {
                if (0.0..=1.0).contains(&v) {
                    Ok(())
                } else {
                    Err(LinkError::Spec(format!("{name} {what} {v} is not a probability in [0, 1]")))
                }
            };
            prob("loss", d.loss)?;
            prob("reorder", d.reorder)?;
            if let Some(g) = d.burst {
                prob("burst p", g.p)?;
                prob("burst r", g.r)?;
            }
            if d.queue == 0 || d.queue > 1_000_000 {
                return Err(LinkError::Spec(format!("{name} queue must be 1..=1000000 packets")));
            }
            if d.delay + d.jitter > Duration::from_secs(60) {
                return Err(LinkError::Spec(format!("{name} delay + jitter must stay under 60 s")));
            }
            if d.rate_bps == Some(0) {
                return Err(LinkError::Spec(format!("{name} rate must be positive")));
            }
        }
        Ok(())
    }

    /// The round-trip propagation delay (both one-way delays).
    pub fn rtt(&self) -> Duration {
        self.a2b.delay + self.b2a.delay
    }
}

impl std::fmt::Display for Impairment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "delay {:?}", self.delay)?;
        if !self.jitter.is_zero() {
            write!(f, " ±{:?}", self.jitter)?;
        }
        if self.loss > 0.0 {
            write!(f, ", loss {}%", self.loss * 100.0)?;
        }
        if let Some(g) = self.burst {
            write!(f, ", bursty loss p={} r={} (mean {:.2}%)", g.p, g.r, g.mean_loss() * 100.0)?;
        }
        match self.rate_bps {
            Some(r) => write!(f, ", rate {} kbit/s, queue {} packets", r / 1000, self.queue)?,
            None => write!(f, ", rate unlimited")?,
        }
        if self.reorder > 0.0 {
            write!(f, ", reorder {}%", self.reorder * 100.0)?;
        }
        Ok(())
    }
}

fn set_one(d: &mut Impairment, key: &str, value: &str, both: bool) -> Result<(), LinkError> {
    match key {
        "rtt" if both => d.delay = parse_duration(value)? / 2,
        "rtt" => return Err(LinkError::Spec("rtt is a round trip: use a2b.delay / b2a.delay".into())),
        "delay" => d.delay = parse_duration(value)?,
        "jitter" => d.jitter = parse_duration(value)?,
        "loss" => d.loss = parse_fraction(value)?,
        "burst" | "burst-loss" => {
            d.burst = if value == "0" || value == "off" {
                None
            } else {
                let (p, r) = value
                    .split_once([':', '/'])
                    .ok_or_else(|| LinkError::Spec(format!("burst {value:?}: expected p:r, e.g. 1%:30%")))?;
                Some(Gilbert { p: parse_fraction(p)?, r: parse_fraction(r)? })
            }
        }
        "rate" => {
            d.rate_bps = if value == "0" || value == "off" { None } else { Some(parse_bitrate(value)?) }
        }
        "queue" => {
            d.queue = value
                .strip_suffix('p')
                .unwrap_or(value)
                .parse()
                .map_err(|_| LinkError::Spec(format!("queue {value:?}: expected a packet count")))?
        }
        "reorder" => d.reorder = parse_fraction(value)?,
        other => {
            return Err(LinkError::Spec(format!(
                "unknown key {other:?} (rtt, delay, jitter, loss, burst, rate, queue, reorder; a2b./b2a. prefixes)"
            )));
        }
    }
    Ok(())
}

/// Parses `40ms`, `1.5s`, `250us`, `0` into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, LinkError> {
    let t = text.trim();
    let bad = || LinkError::Spec(format!("{text:?} is not a duration like 40ms, 1.5s or 250us"));
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" if n == 0.0 => 0.0,
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=3600.0).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1%`, `0.5%` or a fraction `0.01` into a fraction.
pub fn parse_fraction(text: &str) -> Result<f64, LinkError> {
    let t = text.trim();
    let bad = || LinkError::Spec(format!("{text:?} is not a percentage like 1% or a fraction like 0.01"));
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => t.parse::<f64>().map_err(|_| bad())?,
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(bad());
    }
    Ok(v)
}

/// Parses a bit rate: `10mbit`, `512kbit`, `1gbit`, `64000bit` or `bps` (decimal, as tc does).
pub fn parse_bitrate(text: &str) -> Result<u64, LinkError> {
    let t = text.trim().to_ascii_lowercase();
    let bad = || LinkError::Spec(format!("{text:?} is not a bit rate like 10mbit, 512kbit or 1gbit"));
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult = match unit.trim() {
        "" | "bit" | "bps" => 1.0,
        "k" | "kbit" | "kbps" => 1e3,
        "m" | "mbit" | "mbps" => 1e6,
        "g" | "gbit" | "gbps" => 1e9,
        _ => return Err(bad()),
    };
    let bps = n * mult;
    if !bps.is_finite() || !(1000.0..=1e11).contains(&bps) {
        return Err(LinkError::Spec(format!("rate {text:?} must be between 1kbit and 100gbit")));
    }
    Ok(bps as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_split_between_directions_and_prefixes_set_one() {
        let s = LinkSpec::parse("rtt=40ms,loss=1%,rate=10mbit,queue=50,a2b.loss=5%,b2a.jitter=2ms").unwrap();
        assert_eq!(s.a2b.delay, Duration::from_millis(20));
        assert_eq!(s.rtt(), Duration::from_millis(40));
        assert_eq!((s.a2b.loss, s.b2a.loss), (0.05, 0.01));
        assert_eq!(s.a2b.rate_bps, Some(10_000_000));
        assert_eq!(s.b2a.queue, 50);
        assert_eq!((s.a2b.jitter, s.b2a.jitter), (Duration::ZERO, Duration::from_millis(2)));
    }

    #[test]
    fn burst_and_units() {
        let s = LinkSpec::parse("burst=1%:25%,rate=512kbit,delay=250us").unwrap();
        let g = s.a2b.burst.unwrap();
        assert!((g.mean_loss() - 0.01 / 0.26).abs() < 1e-12);
        assert_eq!(s.b2a.rate_bps, Some(512_000));
        assert_eq!(s.a2b.delay, Duration::from_micros(250));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "loss=150%",
            "rtt",
            "rate=fast",
            "queue=0",
            "burst=1%",
            "colour=red",
            "a2b.rtt=10ms",
            "delay=-1ms",
        ] {
            assert!(LinkSpec::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
