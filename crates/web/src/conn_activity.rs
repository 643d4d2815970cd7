//! One connection's request accounting, shared by the web server and the proxy: its service
//! marks requests in service ([`Activity::enter`] → [`InService`], held until the response
//! body is written), its I/O wrapper reads that to run the timers (no header or idle timeout
//! while a request is in service; idle counts from the last one's end), and netkit's
//! [`ConnSlot`] is told busy/idle on the same transitions, so the connection policy only
//! evicts or times out connections with nothing in service. It also carries the HTTP/1
//! guard's verdicts from the I/O wrapper to the service, and the service's request for a
//! lingering close back.

use crate::http1_guard::Verdict;
use appnet_netkit::accept::ConnSlot;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

struct Shared {
    /// The connection's place in the listener's table (netkit's connection policy).
    slot: Option<Arc<ConnSlot>>,
    /// Serialises the busy/idle transitions told to `slot`.
    phase: Mutex<()>,
    start: Instant,
    in_service: AtomicUsize,
    /// Requests entered so far (a head that started before the latest entry is complete).
    entered: AtomicU64,
    /// Milliseconds after `start` when the last request left.
    last_done_ms: AtomicU64,
    /// Signalled when an idle HTTP/2 connection should shut down gracefully.
    expired: Notify,
    /// The guard's verdicts on HTTP/1 heads, in request order.
    verdicts: Mutex<VecDeque<Verdict>>,
    /// The service asked for a lingering close (an error response while the client may still
    /// be sending).
    linger: AtomicBool,
}

/// One connection's request accounting (see the module docs); clones share it.
#[derive(Clone)]
pub struct Activity(Arc<Shared>);

impl Default for Activity {
    fn default() -> Self {
        Activity::new(None)
    }
}

impl Activity {
    /// The accounting of a connection holding `slot` (marked busy and idle as requests enter
    /// and leave); `None` for a connection outside a listener's table (tests, fuzzing).
    pub fn new(slot: Option<Arc<ConnSlot>>) -> Activity {
        Activity(Arc::new(Shared {
            slot,
            phase: Mutex::new(()),
            start: Instant::now(),
            in_service: AtomicUsize::new(0),
            entered: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
            expired: Notify::new(),
            verdicts: Mutex::new(VecDeque::new()),
            linger: AtomicBool::new(false),
        }))
    }

    /// The connection's slot, if it has one.
    pub fn slot(&self) -> Option<&Arc<ConnSlot>> {
        self.0.slot.as_ref()
    }

    /// A request enters service; it is in progress until the guard is dropped.
    pub fn enter(&self) -> InService {
        self.0.entered.fetch_add(1, Ordering::SeqCst);
        let _phase = self.0.phase.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.in_service.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(slot) = &self.0.slot
        {
            slot.busy();
        }
        InService(self.0.clone())
    }

    /// How many requests are in service now.
    pub fn in_service(&self) -> usize {
        self.0.in_service.load(Ordering::SeqCst)
    }

    /// How many requests have entered service so far.
    pub fn entered(&self) -> u64 {
        self.0.entered.load(Ordering::SeqCst)
    }

    /// When the last request left service (the connection's start if none has).
    pub fn last_done(&self) -> Instant {
        self.0.start + Duration::from_millis(self.0.last_done_ms.load(Ordering::SeqCst))
    }

    /// Resolves when the connection has been idle too long and should shut down gracefully
    /// (HTTP/2: GOAWAY).
    pub async fn expired(&self) {
        self.0.expired.notified().await
    }

    /// Tells [`Activity::expired`] that the idle timeout has passed.
    pub fn expire(&self) {
        self.0.expired.notify_one();
    }

    /// Queues the guard's verdict on the next HTTP/1 head.
    pub fn push_verdict(&self, v: Verdict) {
        self.0.verdicts.lock().unwrap_or_else(|e| e.into_inner()).push_back(v);
    }

    /// The guard's verdict on the next request, to be taken once per request in the order
    /// hyper calls the service ([`Verdict::Pass`] for HTTP/2, which has no HTTP/1 heads).
    pub fn next_verdict(&self) -> Verdict {
        self.0.verdicts.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or(Verdict::Pass)
    }

    /// Asks for a lingering close: the connection is closing after an error response, possibly
    /// while the client is still sending, so the I/O wrapper reads and discards for a while
    /// before the socket closes (a reset would destroy the response).
    pub fn request_linger(&self) {
        self.0.linger.store(true, Ordering::SeqCst);
    }

    /// Whether a lingering close was asked for.
    pub fn linger_requested(&self) -> bool {
        self.0.linger.load(Ordering::SeqCst)
    }
}

/// A request in service (see [`Activity::enter`]).
pub struct InService(Arc<Shared>);

impl Drop for InService {
    fn drop(&mut self) {
        let ms = self.0.start.elapsed().as_millis() as u64;
        self.0.last_done_ms.fetch_max(ms, Ordering::SeqCst);
        let _phase = self.0.phase.lock().unwrap_or_else(|e| e.into_inner());
        if self.0.in_service.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(slot) = &self.0.slot
        {
            slot.idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_in_service_are_counted_and_verdicts_come_out_in_order() {
        let a = Activity::default();
        assert_eq!((a.in_service(), a.entered()), (0, 0));
        let one = a.enter();
        let two = a.clone().enter();
        assert_eq!((a.in_service(), a.entered()), (2, 2));
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(one);
        drop(two);
        assert_eq!(a.in_service(), 0);
        assert_eq!(a.last_done() - a.0.start, Duration::from_secs(3));
        a.push_verdict(Verdict::Pass);
        a.push_verdict(Verdict::Reject { status: 400, why: "x" });
        assert_eq!(a.next_verdict(), Verdict::Pass);
        assert_eq!(a.next_verdict(), Verdict::Reject { status: 400, why: "x" });
        assert_eq!(a.next_verdict(), Verdict::Pass, "none queued: HTTP/2");
        assert!(!a.linger_requested());
        a.request_linger();
        assert!(a.clone().linger_requested());
    }
}
