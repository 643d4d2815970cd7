//! The SOA record's timers, read from its rdata. Its own module because zones, their IXFR
//! journals, secondaries and the resolver all read them, below any of those.

use crate::wire::rrtype::embedded_name;

/// The SOA timers the server and secondaries act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoaInfo {
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
    /// TTL of the SOA record itself.
    pub ttl: u32,
}

impl SoaInfo {
    /// Reads the timers from SOA rdata (two names then five 32-bit numbers).
    pub fn from_rdata(rdata: &[u8]) -> Option<SoaInfo> {
        let m = embedded_name(rdata, 0)?.len();
        let r = embedded_name(rdata, m)?.len();
        let nums = rdata.get(m + r..m + r + 20)?;
        let n =
            |i: usize| u32::from_be_bytes([nums[i * 4], nums[i * 4 + 1], nums[i * 4 + 2], nums[i * 4 + 3]]);
        Some(SoaInfo { serial: n(0), refresh: n(1), retry: n(2), expire: n(3), minimum: n(4), ttl: 0 })
    }

    /// TTL for negative answers (RFC 2308 §3): min(SOA TTL, MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.ttl.min(self.minimum)
    }
}
