//! netkit: the runtime pieces every appnet service shares, so no protocol crate writes its own.
//!
//! - [`accept`]: the accept loop every TCP service runs, with per-address caps, eviction of
//!   waiting connections when full, and whole-request deadlines ([`conn_table`] is its policy).
//! - [`acl`]: address allow-lists (`192.0.2.0/24`, `2001:db8::/32`) every service reads alike.
//! - [`batch`]: many UDP datagrams per system call (recvmmsg/sendmmsg on Linux).
//! - [`listen`]: TCP/UDP listeners bound with socket2 (reuse-addr, optional SO_REUSEPORT, v4/v6).
//! - [`shutdown`]: one shutdown signal that all service tasks observe, and a deadline-bounded drain.
//! - [`rate`]: a token-bucket rate limiter (sans-IO core + async stream wrapper).
//! - [`metrics`]: counters rendered in the Prometheus text format.
//! - [`service`]: the `bind` → `run(shutdown)` contract every service follows.
//! - [`harness`]: start services in-process on 127.0.0.1:0, wait until ready, stop them.
//! - [`lines`]: bounded line reading, so no client can grow memory with an endless line.
//! - [`sendfile`]: file bytes straight to a TCP socket (`sendfile(2)`), head first with `MSG_MORE`.
//! - [`files`]: crash-safe replacement of state files kept across restarts.
//! - [`io`]: generic I/O wrappers: replaying sniffed bytes, gathering small writes.
//! - `tls`, `tls_client` (feature `tls`): the lab CA and rustls configs every TLS service and
//!   client shares.
//! - [`units`]: sizes written by people (`64KiB`, `10MB`), one rule for every flag and config.

pub mod accept;
pub mod acl;
pub mod batch;
pub mod conn_table;
pub mod files;
pub mod harness;
pub mod io;
pub mod lines;
pub mod listen;
pub mod metrics;
pub mod rate;
pub mod sendfile;
pub mod service;
pub mod shutdown;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tls")]
pub mod tls_client;
pub mod units;

pub use service::{BoxError, Service};
pub use shutdown::Shutdown;
