//! DNS for appnet: zone files, an authoritative server (primary and secondary), and a client.
//!
//! - [`wire`]: the only room that uses NLnet Labs' `domain` (messages, zone-file text).
//! - [`zone`], [`served`]: the in-memory zones a server answers from (buildable from text, so
//!   the lab and tests can run many servers in one process).
//! - [`answer`]: the RFC 1034 §4.3.2 lookup, sans-IO; [`answer_cache`]: finished UDP answers
//!   reused for repeated questions; [`respond`]: request bytes → response
//!   bytes (errors, EDNS, transfers, TSIG); [`rrl`]: response rate limiting, sans-IO.
//! - [`proofs`]: RRSIGs and NSEC/NSEC3 denial proofs for DO=1 answers; [`denial`]: the
//!   chains' order index.
//! - [`online`]: signing served zones (`--dnssec-keys`) and deciding when to re-sign.
//! - [`update`]: RFC 2136 dynamic updates (prerequisites, changes), sans-IO.
//! - [`serial`]: zone serials with RFC 1982 ordering.
//! - [`delta`]: what changed between zone versions, for IXFR, and [`journal`] that builds and
//!   applies it; [`soa`]: the SOA timers; [`store`]: the state directory
//!   (secondary zones, journals) written crash-safely; [`acl`]: allow-transfer entries and the
//!   TSIG key of each remote server.
//! - [`server`]: the tokio driver (TCP, zone swaps, updates) and [`udp`]: a thread per UDP
//!   socket; [`secondary`]: the sans-IO refresh,
//!   transfer and NOTIFY logic of a secondary zone, driven by [`secondary_driver`];
//!   [`client`]: queries, AXFR and NOTIFY; [`config`]: settings; [`clock`]: the drivers' clock.

pub mod acl;
pub mod answer;
pub mod answer_cache;
pub mod client;
pub mod clock;
pub mod config;
mod cpu;
pub mod delta;
pub mod denial;
pub mod journal;
pub mod memory;
pub mod online;
pub mod proofs;
pub mod respond;
pub mod rrl;
pub mod secondary;
pub mod secondary_driver;
pub mod serial;
pub mod served;
pub mod server;
pub mod soa;
pub mod store;
pub mod udp;
pub mod update;
pub mod wire;
pub mod zone;

pub use config::DnsConfig;
pub use server::{Control, DnsServer};

/// The old name of [`served`], kept so code written against it still compiles ("catalog"
/// now means RFC 9432 catalog zones, which this is not).
pub mod catalog {
    /// The old name of [`ServedZones`](crate::served::ServedZones).
    pub type Catalog = crate::served::ServedZones;
}
