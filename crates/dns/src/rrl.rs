//! Response rate limiting (like NSD's and Knot's RRL), sans-IO: per client prefix and response
//! class, a token bucket of responses per second; over the limit, every `slip`-th response goes
//! out truncated (TC, empty sections) so a real client retries over TCP, and the rest are dropped
//! so a spoofed victim gets no amplified traffic.

use appnet_netkit::acl::canonical;
use appnet_netkit::rate::TokenBucket;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::Instant;

/// RRL settings (the `[dns.rrl]` table).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RrlConfig {
    /// Turn rate limiting on.
    pub enabled: bool,
    /// Responses per second per client prefix and response class (0 disables).
    pub responses_per_second: u32,
    /// Every Nth limited response is sent truncated instead of dropped (0: drop all, 1: slip all).
    pub slip: u32,
    /// Client prefix length for IPv4.
    pub ipv4_prefix: u8,
    /// Client prefix length for IPv6.
    pub ipv6_prefix: u8,
    /// Never limit loopback clients (tests, benchmarks, the lab).
    pub exempt_loopback: bool,
    /// Buckets per worker (rounded up to a power of two); colliding clients share one.
    pub table_size: usize,
}

impl Default for RrlConfig {
    fn default() -> Self {
        RrlConfig {
            enabled: true,
            responses_per_second: 20,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt_loopback: true,
            table_size: 16384,
        }
    }
}

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a truncated (TC, empty) version instead.
    Slip,
    Drop,
}

struct Slot {
    key: u64,
    bucket: TokenBucket,
    limited: u32,
}

/// One worker's rate-limit table.
pub struct Rrl {
    config: RrlConfig,
    slots: Vec<Option<Slot>>,
    mask: usize,
}

impl Rrl {
    /// A table for `config`.
    pub fn new(config: RrlConfig) -> Rrl {
        let size = config.table_size.clamp(16, 1 << 22).next_power_of_two();
        let mut slots = Vec::with_capacity(size);
        slots.resize_with(size, || None);
        Rrl { config, slots, mask: size - 1 }
    }

    /// Whether limiting applies at all.
    pub fn active(&self) -> bool {
        self.config.enabled && self.config.responses_per_second > 0
    }

    /// Decides about one response of class `class_key` to `client`; `now` is only asked for
    /// when limiting applies (the common exempt case costs no clock read).
    pub fn check(&mut self, client: IpAddr, class_key: u64, now: impl FnOnce() -> Instant) -> Verdict {
        if !self.active() {
            return Verdict::Send;
        }
        let client = canonical(client);
        if self.config.exempt_loopback && client.is_loopback() {
            return Verdict::Send;
        }
        let now = now();
        let prefix = match client {
            IpAddr::V4(v4) => {
                let len = self.config.ipv4_prefix.min(32);
                let bits = u32::from(v4) as u64;
                if len == 0 { 0 } else { bits >> (32 - len) }
            }
            IpAddr::V6(v6) => {
                let len = self.config.ipv6_prefix.min(128);
                let bits = u128::from(v6);
                let p = if len == 0 { 0 } else { bits >> (128 - len) };
                (p as u64) ^ ((p >> 64) as u64) ^ 0x6666_0000_0000_0000
            }
        };
        let key = prefix.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ class_key;
        let idx = (key ^ (key >> 29)) as usize & self.mask;
        let rate = self.config.responses_per_second as u64;
        let slot = &mut self.slots[idx];
        let fresh = !matches!(slot, Some(s) if s.key == key);
        if fresh {
            *slot = Some(Slot { key, bucket: TokenBucket::new(rate, rate, now), limited: 0 });
        }
        let Some(s) = slot.as_mut() else { return Verdict::Send };
        if s.bucket.try_take(1, now) {
            return Verdict::Send;
        }
        s.limited = s.limited.wrapping_add(1);
        match self.config.slip {
            0 => Verdict::Drop,
            n if s.limited % n == 0 => Verdict::Slip,
            _ => Verdict::Drop,
        }
    }
}

/// Turns a response into its slipped form: TC set, all sections emptied (header + question kept).
pub fn slip_response(bytes: &mut Vec<u8>) {
    if bytes.len() < 12 {
        return;
    }
    let qd = u16::from_be_bytes([bytes[4], bytes[5]]);
    let mut end = 12;
    if qd == 1 {
        // Skip the (uncompressed) question name and its type and class.
        while end < bytes.len() && bytes[end] != 0 && bytes[end] < 64 {
            end += 1 + bytes[end] as usize;
        }
        end = (end + 5).min(bytes.len());
    }
    bytes.truncate(end);
    bytes[2] |= 0x02;
    for b in &mut bytes[6..12] {
        *b = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limits_per_prefix_with_slip_and_refills() {
        let mut rrl = Rrl::new(RrlConfig { responses_per_second: 5, slip: 2, ..Default::default() });
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let same_net: IpAddr = "192.0.2.77".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(rrl.check(a, 1, || t0), Verdict::Send);
        }
        assert_eq!(rrl.check(same_net, 1, || t0), Verdict::Drop, "the /24 shares the budget");
        assert_eq!(rrl.check(a, 1, || t0), Verdict::Slip);
        assert_eq!(rrl.check(a, 1, || t0), Verdict::Drop);
        assert_eq!(rrl.check(other, 1, || t0), Verdict::Send);
        assert_eq!(rrl.check(a, 2, || t0), Verdict::Send, "another response class");
        assert_eq!(rrl.check(a, 1, || t0 + Duration::from_secs(1)), Verdict::Send, "refilled");
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(rrl.check(lo, 1, || t0), Verdict::Send);
        }
    }

    #[test]
    fn slipped_responses_keep_only_header_and_question() {
        use crate::wire::message::{build_query, parse};
        let mut q =
            build_query(3, 0, &crate::wire::name::from_text("a.example").unwrap(), 1, false, Some((1232, 0)));
        let qlen = 12 + 11 + 4;
        q[2] |= 0x80;
        slip_response(&mut q);
        assert_eq!(q.len(), qlen);
        let p = parse(&q).unwrap();
        assert!(p.tc && p.answer.is_empty() && p.additional.is_empty() && p.question.is_some());
    }
}
