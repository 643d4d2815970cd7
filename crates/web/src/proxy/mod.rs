//! `appnet web proxy`: a caching forward and reverse HTTP proxy, to run instead of Varnish or
//! Squid.
//!
//! - [`policy`]: the RFC 9111 core (sans-IO, on `http-cache-semantics` plus what it lacks).
//! - [`store`]: memory and disk storage with CLOCK eviction; crash-safe disk objects.
//! - [`plan`]: the cache flow as a pure planner (request + stored entry + `now` → step).
//! - [`collapse`]: request collapsing, so concurrent misses make one origin request.
//! - [`handler`]: the request flow's driver, with its I/O rooms `fetch` (origin requests),
//!   `tee` (storing while streaming), `serve` (answers from the store) and `admin` (metrics,
//!   purge); [`origin`]: the pooled origin clients; [`connector`]:
//!   their connections (TCP, and TLS to `https://` origins).
//! - [`server`]: the tokio driver ([`ProxyServer::bind`] → `Service`), CONNECT tunnels;
//!   [`idle`]: its client-connection idle and header timers.
//! - [`push`]: CDN push, a signed list of URLs the replica fetches and stores ahead of
//!   requests.
//! - [`metrics`]: counters, `X-Cache` and `Cache-Status` (RFC 9211).

mod admin;
pub mod collapse;
pub mod config;
pub mod connector;
pub mod dest;
mod fetch;
pub mod handler;
pub mod idle;
pub mod metrics;
pub mod origin;
pub mod origin_dns;
pub mod plan;
pub mod policy;
pub mod push;
pub mod reqcheck;
mod serve;
pub mod server;
pub mod store;
mod tee;

pub use config::ProxyConfig;
pub use server::ProxyServer;
