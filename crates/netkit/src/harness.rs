//! Test and lab harness: start a bound service in-process, wait until it answers, stop it.
//! Readiness waits are bounded and poll; nothing here sleeps for a fixed time.

use crate::{BoxError, Service, Shutdown};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A service running in a tokio task, stopped by [`Running::stop`] (or dropped: it is then
/// signalled to stop but not awaited).
pub struct Running {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: Option<JoinHandle<Result<(), BoxError>>>,
}

impl Running {
    /// The address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service's shutdown handle.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Triggers shutdown and waits (up to 10 s) for the service task to return.
    pub async fn stop(mut self) -> Result<(), BoxError> {
        self.shutdown.trigger();
        let task = self.task.take().expect("task present until stop");
        match tokio::time::timeout(Duration::from_secs(10), task).await {
            Ok(Ok(res)) => res,
            Ok(Err(join)) => Err(Box::new(join)),
            Err(_) => Err("service did not stop within 10 s".into()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Runs an already bound service in a new task with its own shutdown handle.
pub fn start<S: Service>(service: S) -> Running {
    let addr = service.local_addr();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(service.run(shutdown.clone()));
    Running { addr, shutdown, task: Some(task) }
}

/// Waits until a TCP connect to `addr` succeeds, polling every 10 ms, for at most `limit`.
pub async fn wait_tcp(addr: SocketAddr, limit: Duration) -> io::Result<()> {
    let ready = wait_until(limit, Duration::from_millis(10), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    if ready {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::TimedOut, format!("{addr} did not accept within {limit:?}")))
    }
}

/// Polls `check` every `every` until it returns true or `limit` passes; returns the last answer.
pub async fn wait_until<F, Fut>(limit: Duration, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// The loopback address with port 0, for binding test services.
pub fn any_loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
