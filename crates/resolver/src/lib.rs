//! The recursive resolver — the textbook's "local DNS server": it takes a host's recursive
//! query and resolves it iteratively from the root, caches by TTL (negative answers too),
//! retries other replicas with backoff, and resists poisoning.
//!
//! - [`cache`]: answers and delegations, sans-IO, bounded by bytes through [`lru`].
//! - [`infra`]: the infra cache (Unbound's name): smoothed RTTs, server choice and exponential
//!   backoff per upstream address, sans-IO.
//! - [`local`]: junk and local-zone names answered without going upstream.
//! - [`iterate`]: the iteration algorithm (RFC 1034 §5.3.3), a sans-IO [`iterate::Resolution`]
//!   per question; [`driver`]: the thin tokio driver that sends its queries ([`driver::Resolver`]).
//! - [`transport`]: UDP/TCP exchanges with the anti-spoofing rules.
//! - [`trace`]: the numbered steps `--trace` and the lab tour print.
//! - [`lookup`]: a URL's host (`[::1]:5353`, `host:port`) and its address, for clients.
//! - [`clients`]: access control and per-client rate limits; [`respond`]: query → response.
//! - [`admission`]: caps on questions in flight per client and upstream exchanges per zone.
//! - [`dnssec`]: DNSSEC validation (trust anchors, the sans-IO validator, denial proofs).
//! - [`server`]: the tokio service (UDP + TCP); [`config`], [`hints`]: its settings.

pub mod admission;
pub mod cache;
pub mod clients;
pub mod config;
pub mod dnssec;
pub mod driver;
pub mod hints;
pub mod infra;
pub mod iterate;
pub mod local;
pub mod lookup;
pub mod lru;
pub mod respond;
pub mod server;
pub mod trace;
pub mod transport;

pub use config::ResolverConfig;
pub use server::ResolverServer;
