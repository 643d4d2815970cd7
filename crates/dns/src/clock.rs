//! The drivers' wall clock. Cores and the wire code never read it: they take `now` as an
//! argument, and the tokio drivers ([`crate::server`], [`crate::client`]) call this.

/// Seconds since the Unix epoch (TSIG's time base, RFC 8945 §4.2); 0 if the clock is before it.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
