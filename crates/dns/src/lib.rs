//! DNS for appnet: zone files, an authoritative server (primary and secondary), and a client.
//!
//! - [`wire`]: the only room that uses NLnet Labs' `domain` (messages, zone-file text).
//! - [`zone`], [`catalog`]: the in-memory zones a server answers from (buildable from text, so
//!   the lab and tests can run many servers in one process).
//! - [`answer`]: the RFC 1034 §4.3.2 lookup, sans-IO; [`respond`]: request bytes → response
//!   bytes (errors, EDNS, transfers, TSIG); [`rrl`]: response rate limiting, sans-IO.
//! - [`serial`]: zone serials with RFC 1982 ordering.
//! - [`journal`]: what changed between zone versions, for IXFR; [`store`]: the state directory
//!   (secondary zones, journals) written crash-safely; [`acl`]: allow-transfer entries and the
//!   TSIG key of each remote server.
//! - [`server`]: the tokio driver (UDP per core + TCP); [`secondary`]: transfers and timers;
//!   [`client`]: queries, AXFR and NOTIFY; [`config`]: settings.

pub mod acl;
pub mod answer;
pub mod catalog;
pub mod client;
pub mod config;
pub mod journal;
pub mod memory;
pub mod respond;
pub mod rrl;
pub mod secondary;
pub mod serial;
pub mod server;
pub mod store;
pub mod wire;
pub mod zone;

pub use config::DnsConfig;
pub use server::{Control, DnsServer};
