//! The CDN's DNS side, the textbook's Akamai scene: an authoritative DNS server for the CDN's
//! zone that answers a name like `a128.g.akamai.net` with the address of the replica nearest to
//! the querying resolver (a configured table of client networks → replicas in order of
//! closeness), skips replicas that fail health checks, and uses a short TTL so clients follow
//! changes quickly. Each replica is an appnet reverse proxy ([`crate::proxy`]).
//!
//! - [`config`]: replicas, networks, health checks (serde, shared with the lab).
//! - [`policy`]: nearest-healthy-replica choice and the health state machine (sans-IO).
//! - [`respond`]: DNS request bytes → reply bytes, on appnet-dns's wire module.
//! - [`health`] and [`server`]: the tokio drivers ([`CdnDnsServer::bind`] → `Service`).

pub mod config;
pub mod health;
pub mod policy;
pub mod respond;
pub mod server;

pub use config::CdnConfig;
pub use server::CdnDnsServer;
