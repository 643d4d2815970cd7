//! The active health-check driver: one task per backend probes it every interval (TCP connect,
//! or an HTTP GET whose status must be 2xx/3xx) and feeds the result to the backend's
//! [`crate::health::Health`] through the pool.

use crate::config::HealthCheck;
use crate::health::parse_http_status;
use crate::pool::{Backend, Pool};
use crate::proxy_protocol::{self, Version};
use appnet_netkit::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How to probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The kind of check.
    pub check: HealthCheck,
    /// Time between probes of one backend.
    pub interval: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// The PROXY header version backends expect, if any (probes then send a LOCAL header).
    pub proxy_protocol: Option<Version>,
}

/// Most bytes of an HTTP answer read to find its status line.
const MAX_STATUS_LINE: usize = 1024;

/// Probes `backend` until it leaves the pool or shutdown.
pub async fn run(pool: Arc<Pool>, backend: Arc<Backend>, probe: Probe, shutdown: Shutdown) {
    if probe.check == HealthCheck::None {
        return;
    }
    // Spread the probes of different backends over the interval.
    let offset = Duration::from_millis(backend.id * 97 % probe.interval.as_millis().max(1) as u64);
    let mut next = tokio::time::Instant::now() + offset;
    loop {
        tokio::select! {
            _ = backend.gone.cancelled() => return,
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        next += probe.interval;
        let ok = tokio::select! {
            _ = backend.gone.cancelled() => return,
            r = tokio::time::timeout(probe.timeout, once(&backend, &probe)) => matches!(r, Ok(true)),
        };
        tracing::trace!(backend = %backend.addr, ok, "health probe");
        pool.check_result(&backend, ok, Instant::now());
        if next < tokio::time::Instant::now() {
            next = tokio::time::Instant::now() + probe.interval;
        }
    }
}

/// One probe of `backend`.
pub async fn once(backend: &Backend, probe: &Probe) -> bool {
    let Ok(mut stream) = TcpStream::connect(backend.addr).await else { return false };
    let path = match &probe.check {
        HealthCheck::None | HealthCheck::Tcp => {
            if let Some(v) = probe.proxy_protocol {
                let _ = stream.write_all(&proxy_protocol::encode_local(v)).await;
            }
            return true;
        }
        HealthCheck::Http(path) => path,
    };
    let mut request = probe.proxy_protocol.map(proxy_protocol::encode_local).unwrap_or_default();
    request.extend_from_slice(
        format!(
            "GET {path} HTTP/1.0\r\nHost: {}\r\nUser-Agent: appnet-lb-health-check\r\nConnection: close\r\n\r\n",
            backend.addr
        )
        .as_bytes(),
    );
    if stream.write_all(&request).await.is_err() {
        return false;
    }
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while head.len() < MAX_STATUS_LINE && !head.contains(&b'\n') {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    matches!(parse_http_status(&head), Some(200..=399))
}
