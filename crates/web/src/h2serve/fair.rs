//! Byte fairness between the HTTP/2 connections of one worker thread. A client reading many
//! connections reads one until it would block; each read lets the kernel push more of that
//! connection's queued data out, and the worker refills whichever socket drains, so the
//! connection being read keeps being served while the others wait (with 64 connections of
//! 1 MB answers, some got 8 times the bytes of others over a second). Here a connection with
//! output waiting may not write more than [`LEAD`] bytes ahead of the connection that has
//! written least among those still taking data: it waits until that one is served.
//! A connection whose client takes (almost) nothing holds nobody back: each [`EPOCH`], only
//! connections that took at least a quarter of the average share count for the floor; and a
//! connection is never held back longer than [`RECHECK`] at a time (it then writes one batch),
//! so a slow reader cannot pace the others down to its own rate (held back without a bound,
//! everyone would advance only as fast as the slow one, which would then keep counting).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How far (bytes written) a connection may get ahead of the least-served one.
pub const LEAD: u64 = 512 * 1024;
/// How often each connection's share is looked at to leave slow readers out of the floor.
pub const EPOCH: Duration = Duration::from_millis(250);
/// How long a connection may be held back at a time; it then writes one batch anyway.
pub const RECHECK: Duration = Duration::from_millis(20);

/// One connection's account.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    /// Bytes written (moved forward to the floor when the connection starts sending again).
    sent: u64,
    /// Whether it has output waiting.
    backlogged: bool,
    /// `sent` at the start of the epoch.
    epoch_base: u64,
    /// Whether it counts for the floor (took a fair part of the last epoch, or is new).
    counts: bool,
    /// Since when it has been held back (cleared when it writes).
    held_since: Option<Instant>,
}

/// The accounts of one worker's connections (sans-IO: the caller passes `now`).
#[derive(Debug)]
pub struct Share {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    epoch_at: Instant,
}

impl Share {
    /// No connections yet.
    pub fn new(now: Instant) -> Share {
        Share { entries: Vec::new(), free: Vec::new(), epoch_at: now }
    }

    /// Adds a connection; its index is used in the other calls.
    pub fn join(&mut self) -> usize {
        let e = Entry { counts: true, ..Entry::default() };
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(e);
                i
            }
            None => {
                self.entries.push(Some(e));
                self.entries.len() - 1
            }
        }
    }

    /// Removes a connection.
    pub fn leave(&mut self, i: usize) {
        if let Some(slot) = self.entries.get_mut(i)
            && slot.take().is_some()
        {
            self.free.push(i);
        }
    }

    /// The least `sent` among backlogged connections that count.
    pub fn floor(&self) -> Option<u64> {
        self.entries.iter().flatten().filter(|e| e.backlogged && e.counts).map(|e| e.sent).min()
    }

    /// Whether connection `i`, which has output waiting, may write now.
    pub fn may_write(&mut self, i: usize, now: Instant) -> bool {
        if now.duration_since(self.epoch_at) >= EPOCH {
            self.new_epoch(now);
        }
        let floor = self.floor();
        let Some(Some(e)) = self.entries.get_mut(i) else { return true };
        if !e.backlogged {
            // No credit is saved while idle: it starts level with the least served.
            e.backlogged = true;
            if let Some(f) = floor {
                e.sent = e.sent.max(f);
            }
            return true;
        }
        if floor.is_none_or(|f| e.sent < f + LEAD) {
            return true;
        }
        // Held back, but never longer than RECHECK at a time.
        let since = *e.held_since.get_or_insert(now);
        now.duration_since(since) >= RECHECK
    }

    /// Records `n` bytes written by `i`; true if the floor rose (held-back ones may go on).
    pub fn wrote(&mut self, i: usize, n: usize) -> bool {
        let before = self.floor();
        if let Some(Some(e)) = self.entries.get_mut(i) {
            e.sent += n as u64;
            e.held_since = None;
        }
        self.floor() != before
    }

    /// Connection `i` has nothing more to write for now; true if the floor rose.
    pub fn idle(&mut self, i: usize) -> bool {
        match self.entries.get_mut(i) {
            Some(Some(e)) if e.backlogged => {
                e.backlogged = false;
                true
            }
            _ => false,
        }
    }

    /// Leaves connections that took under a quarter of the average share out of the floor.
    fn new_epoch(&mut self, now: Instant) {
        self.epoch_at = now;
        let (mut total, mut n) = (0u64, 0u64);
        for e in self.entries.iter().flatten().filter(|e| e.backlogged) {
            total += e.sent - e.epoch_base.min(e.sent);
            n += 1;
        }
        let avg = total.checked_div(n).unwrap_or(0);
        for e in self.entries.iter_mut().flatten() {
            let took = e.sent - e.epoch_base.min(e.sent);
            e.counts = !e.backlogged || took.saturating_mul(4) >= avg;
            e.epoch_base = e.sent;
        }
    }
}

/// A worker thread's share and the wake-up of its held-back connections (a mutex only because
/// tasks must be `Send`: a worker's connections all run on its thread).
struct Local {
    share: Mutex<Share>,
    notify: Notify,
}

impl Local {
    fn share(&self) -> MutexGuard<'_, Share> {
        self.share.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    static LOCAL: Arc<Local> =
        Arc::new(Local { share: Mutex::new(Share::new(Instant::now())), notify: Notify::new() });
}

/// One connection's place in its worker's share; leaves it when dropped.
pub struct Account {
    local: Arc<Local>,
    index: usize,
}

impl Account {
    /// Joins this thread's share.
    pub fn join() -> Account {
        let local = LOCAL.with(Arc::clone);
        let index = local.share().join();
        Account { local, index }
    }

    /// Whether this connection may write its waiting output now.
    pub fn may_write(&self) -> bool {
        self.local.share().may_write(self.index, Instant::now())
    }

    /// Records bytes written.
    pub fn wrote(&self, n: usize) {
        if self.local.share().wrote(self.index, n) {
            self.local.notify.notify_waiters();
        }
    }

    /// Records that nothing is waiting.
    pub fn idle(&self) {
        if self.local.share().idle(self.index) {
            self.local.notify.notify_waiters();
        }
    }

    /// Waits until the floor may have risen (or a while, to look again).
    pub async fn held(&self) {
        let _ = tokio::time::timeout(RECHECK, self.local.notify.notified()).await;
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.local.share().leave(self.index);
        self.local.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_waits_for_the_least_served() {
        let t = Instant::now();
        let mut s = Share::new(t);
        let (a, b) = (s.join(), s.join());
        assert!(s.may_write(a, t) && s.may_write(b, t));
        s.wrote(a, LEAD as usize);
        assert!(!s.may_write(a, t), "a is LEAD ahead of b");
        assert!(s.may_write(b, t));
        assert!(s.wrote(b, 1), "the floor rose");
        assert!(s.may_write(a, t));
        // b has nothing to send: a is not held back by it.
        s.wrote(a, 4 * LEAD as usize);
        assert!(s.idle(b));
        assert!(s.may_write(a, t));
        // b comes back level with the floor (a), not with its old count.
        assert!(s.may_write(b, t));
        assert!(s.may_write(a, t));
    }

    #[test]
    fn a_slow_reader_stops_holding_others_back() {
        let t = Instant::now();
        let mut s = Share::new(t);
        let (a, b, c) = (s.join(), s.join(), s.join());
        for i in [a, b, c] {
            assert!(s.may_write(i, t));
        }
        s.wrote(a, LEAD as usize);
        s.wrote(b, LEAD as usize);
        assert!(!s.may_write(a, t), "c is behind");
        let later = t + EPOCH;
        assert!(s.may_write(a, later), "c took nothing in the epoch: it no longer counts");
        s.leave(c);
        s.leave(b);
        assert_eq!(s.join(), b, "slots are reused");
    }

    /// A reader slow enough to stay the floor still cannot hold the others back for longer
    /// than RECHECK at a time: each of them writes at least one batch per RECHECK.
    #[test]
    fn nobody_is_held_back_longer_than_recheck() {
        let t = Instant::now();
        let mut s = Share::new(t);
        let (fast, slow) = (s.join(), s.join());
        assert!(s.may_write(fast, t) && s.may_write(slow, t));
        s.wrote(fast, LEAD as usize);
        assert!(!s.may_write(fast, t));
        assert!(!s.may_write(fast, t + RECHECK / 2), "still within RECHECK");
        assert!(s.may_write(fast, t + RECHECK), "held back for RECHECK: it may write");
        s.wrote(fast, 1);
        let t2 = t + RECHECK;
        assert!(!s.may_write(fast, t2), "the wait starts again after the write");
        assert!(s.may_write(fast, t2 + RECHECK));
    }
}
