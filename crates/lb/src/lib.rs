//! A layer-4 TCP/UDP load balancer: one address, many replicas, Maglev consistent hashing.
//!
//! The rooms (see DESIGN.md "Inside a protocol crate"):
//! - pure cores: [`maglev`] (the lookup table), [`balance`] (maglev / roundrobin / leastconn),
//!   [`health`] (rise/fall, passive ejection, slow start), [`flows`] (the UDP flow table),
//!   [`proxy_protocol`] (PROXY v1/v2 headers);
//! - [`config`]: [`LbConfig`], the `[lb]` table and the CLI flags' target;
//! - [`pool`]: the live backend set the drivers share, and its [`Event`]s;
//! - drivers: [`server`] (TCP, and the background tasks), [`relay`] (one proxied connection),
//!   [`udp`], [`checker`] (active health checks), [`metrics`] (Prometheus text over HTTP).

pub mod balance;
pub mod checker;
pub mod config;
pub mod flows;
pub mod health;
pub mod maglev;
pub mod metrics;
pub mod pool;
pub mod proxy_protocol;
pub mod relay;
pub mod server;
pub mod udp;

pub use balance::Policy;
pub use config::{HashBy, HealthCheck, LbConfig};
pub use pool::Event;
pub use server::{LbError, LbHandle, LbServer};

/// Raises this process's open-file limit to its hard maximum: every proxied connection holds
/// two descriptors and every UDP flow one, and the usual soft limit (1024) would cap the
/// balancer long before `max_conns`. Returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}
