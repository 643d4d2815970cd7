//! Health checks of the replicas: an HTTP GET of the check path on each replica's check address
//! every interval; any answer below 500 within the timeout counts as alive. Results feed the
//! [`Health`] state machines the DNS answers read.

use super::config::CdnConfig;
use super::policy::Health;
use appnet_netkit::Shutdown;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The replicas' health, shared by the checker and the DNS answering paths.
pub type SharedHealth = Arc<RwLock<Vec<Health>>>;

/// One check: whether `addr` answers `GET path` with a status below 500 within `limit`.
pub async fn check(addr: SocketAddr, host: &str, path: &str, limit: Duration) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: appnet-cdn-health\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            let n = s.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let line = std::str::from_utf8(&buf[..got]).ok()?;
        let status: u16 = line.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
        Some(status < 500)
    };
    matches!(tokio::time::timeout(limit, attempt).await, Ok(Some(true)))
}

/// Checks every replica every `check_interval_ms` until shutdown.
pub async fn run(cfg: Arc<CdnConfig>, health: SharedHealth, shutdown: Shutdown) {
    if cfg.check_interval_ms == 0 || cfg.replicas.is_empty() {
        return;
    }
    let every = Duration::from_millis(cfg.check_interval_ms);
    let limit = Duration::from_millis(cfg.check_timeout_ms.max(1));
    loop {
        let checks = cfg.replicas.iter().map(|r| check(r.check_addr(), &cfg.zone, &cfg.check_path, limit));
        let results = futures_util::future::join_all(checks).await;
        {
            let mut h = health.write().unwrap_or_else(|e| e.into_inner());
            for (i, ok) in results.into_iter().enumerate() {
                if let Some(state) = h.get_mut(i)
                    && state.record(ok, cfg.fall, cfg.rise)
                {
                    let r = &cfg.replicas[i];
                    if state.up {
                        tracing::info!("CDN replica {} ({}) is up again", r.name, r.addr);
                    } else {
                        tracing::warn!("CDN replica {} ({}) is down; not handing it out", r.name, r.addr);
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
