//! One shutdown signal for a whole process (or one test), and a drain with a deadline.
//!
//! Services take a [`Shutdown`], stop accepting when it fires, and spawn per-connection work
//! with [`Shutdown::spawn`] so that [`Shutdown::drain`] can wait for in-flight work.

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cloneable shutdown handle: trigger once, observed everywhere; tracks in-flight tasks.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered handle.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every service sharing this handle to stop accepting work.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has been asked for.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown is triggered; use in `select!` beside accept loops.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// A child handle: triggered with its parent, but triggering it leaves the parent running.
    /// Its tasks are tracked separately (drain the child to wait for them).
    pub fn child(&self) -> Shutdown {
        Shutdown { token: self.token.child_token(), tracker: TaskTracker::new() }
    }

    /// Spawns in-flight work (a connection, a transfer) that [`drain`](Self::drain) waits for.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Number of tracked tasks still running.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Triggers shutdown and waits up to `deadline` for tracked tasks to finish.
    /// Returns true when everything finished in time.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.trigger();
        self.tracker.close();
        let done = tokio::time::timeout(deadline, self.tracker.wait()).await.is_ok();
        self.tracker.reopen();
        done
    }

    /// Triggers this handle on Ctrl-C or SIGTERM (spawns a small watcher task). The handlers are
    /// installed before this returns: a process started in the background by a shell inherits
    /// SIGINT as ignored, so a signal arriving before the watcher first ran would be lost.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        let signals = Signals::install();
        tokio::spawn(async move {
            signals.wait().await;
            tracing::info!("shutdown signal received; finishing in-flight work");
            this.trigger();
        });
    }
}

/// SIGINT and SIGTERM, registered with tokio when created.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals { int: signal(SignalKind::interrupt()).ok(), term: signal(SignalKind::terminate()).ok() }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn recv(s: Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            if self.int.is_none() && self.term.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = recv(self.int) => {}
                _ = recv(self.term) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_tracked_work() {
        let sd = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = sd.clone();
        sd.spawn(async move {
            watcher.wait().await;
            let _ = rx.await;
        });
        assert_eq!(sd.in_flight(), 1);
        // The task can't finish until we release it, so a short drain times out...
        assert!(!sd.drain(Duration::from_millis(20)).await);
        tx.send(()).unwrap();
        // ...and a longer one sees it finish.
        assert!(sd.drain(Duration::from_secs(5)).await);
        assert!(sd.is_triggered());
    }

    #[tokio::test]
    async fn child_follows_parent_not_the_reverse() {
        let parent = Shutdown::new();
        let child = parent.child();
        child.trigger();
        assert!(!parent.is_triggered());
        let child2 = parent.child();
        parent.trigger();
        assert!(child2.is_triggered());
    }
}
