//! Test and lab harness: start a bound service in-process, wait until it answers, stop it.
//! Readiness waits are bounded and poll; nothing here sleeps for a fixed time.

use crate::{BoxError, Service, Shutdown};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// A scratch directory under the system temp dir, removed with everything in it on drop, so
/// tests and experiments leave nothing behind in `/tmp` (a CI disk is shared and finite).
/// The name carries the tag, the process id and a counter: parallel tests never collide.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/appnet-TAG-PID-N`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("appnet-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create scratch directory {}: {e}", path.display()));
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_distinct_and_removed_on_drop() {
        let a = TempDir::new("harness");
        let b = TempDir::new("harness");
        assert_ne!(a.path(), b.path());
        std::fs::write(a.join("f"), b"x").unwrap();
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }
}
