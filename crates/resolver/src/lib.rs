//! The recursive resolver — the textbook's "local DNS server": it takes a host's recursive
//! query and resolves it iteratively from the root, caches by TTL (negative answers too),
//! retries other replicas with backoff, and resists poisoning.
//!
//! - [`cache`]: answers and delegations, sans-IO.
//! - [`servers`]: smoothed RTTs, server choice and exponential backoff, sans-IO.
//! - [`local`]: junk and local-zone names answered without going upstream.
//! - [`resolver`]: the algorithm, generic over a [`transport::Transport`].
//! - [`transport`]: UDP/TCP exchanges with the anti-spoofing rules.
//! - [`trace`]: the numbered steps `--trace` and the lab tour print.

pub mod cache;
pub mod local;
pub mod resolver;
pub mod servers;
pub mod trace;
pub mod transport;
