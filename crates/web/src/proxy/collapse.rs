//! Request collapsing (a cache lock): the first miss for a URL fetches from the origin, later
//! misses for the same URL wait for it and then read the cache, so a flash crowd makes one
//! origin request. When the fetched response turns out not to be storable, the URL is marked
//! for a short while so that waiting requests (and the next ones) go to the origin in
//! parallel instead of queueing one by one ("hit-for-miss"). The clock is the caller's:
//! every decision takes `now`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long an uncacheable URL skips the lock.
const UNCACHEABLE_FOR: Duration = Duration::from_secs(10);

/// What a miss should do.
pub enum Turn {
    /// Fetch; drop the guard when the response is stored (or known unstorable).
    Lead(LeadGuard),
    /// Another request is fetching: wait on this, then look in the cache again.
    Wait(watch::Receiver<bool>),
    /// Go to the origin without the lock.
    Bypass,
}

/// The table of fetches in progress.
#[derive(Default)]
pub struct Collapser {
    inflight: Mutex<HashMap<String, watch::Sender<bool>>>,
    uncacheable: Mutex<HashMap<String, Instant>>,
}

impl Collapser {
    /// Joins or starts the fetch of `key`.
    pub fn turn(self: &std::sync::Arc<Self>, key: &str, now: Instant) -> Turn {
        {
            let mut unc = self.uncacheable.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&until) = unc.get(key) {
                if now < until {
                    return Turn::Bypass;
                }
                unc.remove(key);
            }
        }
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(key) {
            return Turn::Wait(tx.subscribe());
        }
        let (tx, _) = watch::channel(false);
        map.insert(key.to_string(), tx);
        Turn::Lead(LeadGuard { table: self.clone(), key: key.to_string(), done: false })
    }

    fn finish(&self, key: &str) {
        let tx = self.inflight.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        if let Some(tx) = tx {
            let _ = tx.send(true);
        }
    }

    /// Number of fetches in progress.
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Held by the request that fetches; waiters wake when it is dropped.
pub struct LeadGuard {
    table: std::sync::Arc<Collapser>,
    key: String,
    done: bool,
}

impl LeadGuard {
    /// The response cannot be stored (found out at `now`): let waiters (and others for a
    /// while) bypass the lock.
    pub fn uncacheable(mut self, now: Instant) {
        let until = now + UNCACHEABLE_FOR;
        {
            let mut unc = self.table.uncacheable.lock().unwrap_or_else(|e| e.into_inner());
            if unc.len() > 100_000 {
                unc.retain(|_, t| *t > now);
            }
            unc.insert(self.key.clone(), until);
        }
        self.table.finish(&self.key);
        self.done = true;
    }
}

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if !self.done {
            self.table.finish(&self.key);
        }
    }
}

/// Waits until the leader finished (or `limit` passed).
pub async fn wait(mut rx: watch::Receiver<bool>, limit: Duration) {
    let _ = tokio::time::timeout(limit, rx.wait_for(|done| *done)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn second_miss_waits_and_uncacheable_bypasses() {
        let c = Arc::new(Collapser::default());
        let now = Instant::now();
        let Turn::Lead(g) = c.turn("k", now) else { panic!("first should lead") };
        assert!(matches!(c.turn("k", now), Turn::Wait(_)));
        assert!(matches!(c.turn("other", now), Turn::Lead(_)));
        g.uncacheable(now);
        assert!(matches!(c.turn("k", now + UNCACHEABLE_FOR / 2), Turn::Bypass));
        assert!(matches!(c.turn("k", now + UNCACHEABLE_FOR * 2), Turn::Lead(_)));
    }
}
