//! The UDP driver: owns the socket, feeds datagrams to the proxy core and runs its timers.

use crate::config::SipConfig;
use crate::proxy::{Proxy, ProxyConfig};
use crate::registrar::RegistrarLimits;
use crate::transaction::Timers;
use crate::users::{self, UsersError};
use crate::wire::Limits;
use appnet_netkit::service::BoxError;
use appnet_netkit::{Service, Shutdown};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Users(#[from] UsersError),
}

/// A bound SIP server (registrar + proxy) on UDP.
pub struct SipServer {
    socket: UdpSocket,
    proxy: Proxy,
    local: SocketAddr,
}

impl SipServer {
    /// Binds the socket and loads the users file.
    pub async fn bind(cfg: SipConfig) -> Result<SipServer, ServeError> {
        let socket = UdpSocket::bind(cfg.listen).await.map_err(|e| ServeError::Bind(cfg.listen, e))?;
        let local = socket.local_addr().map_err(|e| ServeError::Bind(cfg.listen, e))?;
        let users = match &cfg.users {
            Some(p) => users::load(p)?,
            None => HashMap::new(),
        };
        let t1 = Duration::from_millis(cfg.t1_ms.max(1));
        let pcfg = ProxyConfig {
            domain: cfg.domain.to_ascii_lowercase(),
            local,
            redirect: cfg.redirect,
            link_kbps: cfg.link_kbps,
            max_transactions: cfg.max_transactions,
            max_transactions_per_ip: cfg.max_transactions_per_ip,
            nonce_lifetime: Duration::from_secs(cfg.nonce_lifetime_secs),
            dialog_timeout: Duration::from_secs(cfg.dialog_timeout_secs),
            noanswer_default: Duration::from_secs(cfg.noanswer_secs),
            timer_c: Duration::from_secs(cfg.timer_c_secs),
            max_subscriptions: cfg.max_subscriptions,
            max_subscriptions_per_ip: cfg.max_subscriptions_per_ip,
            registrar: RegistrarLimits {
                default_expires: cfg.default_expires,
                min_expires: cfg.min_expires,
                max_expires: cfg.max_expires,
                max_bindings_per_user: cfg.max_bindings_per_user,
            },
            limits: Limits { max_size: cfg.max_message, max_headers: cfg.max_headers },
            timers: Timers { t1, t2: t1 * 8, t4: t1 * 10 },
        };
        Ok(SipServer { socket, proxy: Proxy::new(pcfg, users), local })
    }
}

impl Service for SipServer {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), BoxError> {
        let SipServer { socket, mut proxy, .. } = self;
        let mut buf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                _ = shutdown.wait() => break,
                _ = tick.tick() => proxy.tick(Instant::now()),
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => proxy.on_message(&buf[..n], from, Instant::now()),
                    // ICMP port unreachable surfaces here on Linux: ignore and go on.
                    Err(_) => continue,
                },
            };
            for t in out {
                let bytes = t.msg.to_bytes();
                if let Err(e) = socket.send_to(&bytes, t.to).await {
                    tracing::debug!(to = %t.to, error = %e, "send failed");
                }
            }
        }
        let c = proxy.counters;
        tracing::info!(requests = c.requests, responses = c.responses, bad = c.bad, "sip server stopped");
        Ok(())
    }
}
