//! What a node counts about its own work (RPCs, lookups, garbage collection), served with the
//! store's and the driver's figures by the `Stats` request (`appnet chord stats`).

/// Counters kept by the sans-IO core; the driver adds its transport counters when it answers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// Requests answered.
    pub requests_in: u64,
    /// RPCs this node sent.
    pub rpcs_out: u64,
    /// Sent RPCs that got no answer (peer presumed dead).
    pub rpc_unreachable: u64,
    /// Sent RPCs the peer refused with an error.
    pub rpc_refused: u64,
    /// Lookups this node finished (its own: joins, fingers, reads, garbage collection).
    pub lookups: u64,
    /// Of those, the ones that found no live successor.
    pub lookup_failures: u64,
    /// Hops of the successful lookups, summed.
    pub lookup_hops: u64,
    /// Timeouts met by the successful lookups, summed.
    pub lookup_timeouts: u64,
    /// Garbage-collection rounds finished.
    pub gc_rounds: u64,
    /// Stale items dropped after their owner confirmed it has (or deleted) them.
    pub gc_dropped: u64,
    /// Items another node's garbage collection handed to this one and it kept.
    pub gc_adopted: u64,
    /// Unauthenticated claims refused: a `Notify` or `Store` from an address that does not
    /// match, a `Notify` whose node did not confirm it, a `Leaving` whose node still answers.
    pub claims_refused: u64,
}

impl Counters {
    /// The counters as (name, value) pairs, in a stable order.
    pub fn list(&self) -> Vec<(String, u64)> {
        [
            ("requests_in", self.requests_in),
            ("rpcs_out", self.rpcs_out),
            ("rpc_unreachable", self.rpc_unreachable),
            ("rpc_refused", self.rpc_refused),
            ("lookups", self.lookups),
            ("lookup_failures", self.lookup_failures),
            ("lookup_hops", self.lookup_hops),
            ("lookup_timeouts", self.lookup_timeouts),
            ("gc_rounds", self.gc_rounds),
            ("gc_dropped", self.gc_dropped),
            ("gc_adopted", self.gc_adopted),
            ("claims_refused", self.claims_refused),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}
