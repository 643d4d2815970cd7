//! Admission control (the deck's "resource allocation by the session control protocol"):
//! each call reserves its offer's bandwidth on the domain's link; a call that would exceed
//! the link is refused; the reservation ends with the call (BYE, failure, or timeout).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bandwidth bookkeeping for calls crossing the link, keyed by Call-ID.
#[derive(Debug)]
pub struct Admission {
    link_kbps: u32,
    used: u32,
    dialog_timeout: Duration,
    calls: HashMap<String, (u32, Instant)>,
}

impl Admission {
    /// A link of `link_kbps` per direction; reservations older than `dialog_timeout` lapse.
    pub fn new(link_kbps: u32, dialog_timeout: Duration) -> Self {
        Admission { link_kbps, used: 0, dialog_timeout, calls: HashMap::new() }
    }

    /// Reserves `kbps` for `call_id`; `false` if the link cannot carry it. A re-INVITE of a
    /// call already admitted keeps its reservation.
    pub fn admit(&mut self, call_id: &str, kbps: u32, now: Instant) -> bool {
        self.expire(now);
        if self.calls.contains_key(call_id) {
            return true;
        }
        if self.used.saturating_add(kbps) > self.link_kbps {
            return false;
        }
        self.used += kbps;
        self.calls.insert(call_id.to_string(), (kbps, now + self.dialog_timeout));
        true
    }

    /// Releases a call's bandwidth (BYE, or the INVITE failed).
    pub fn release(&mut self, call_id: &str) {
        if let Some((kbps, _)) = self.calls.remove(call_id) {
            self.used = self.used.saturating_sub(kbps);
        }
    }

    /// Releases calls whose dialog timed out.
    pub fn expire(&mut self, now: Instant) {
        let used = &mut self.used;
        self.calls.retain(|_, (kbps, until)| {
            let keep = *until > now;
            if !keep {
                *used = used.saturating_sub(*kbps);
            }
            keep
        });
    }

    /// kbit/s currently reserved.
    pub fn used_kbps(&self) -> u32 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_until_full_and_releases() {
        let t0 = Instant::now();
        let mut a = Admission::new(200, Duration::from_secs(60));
        assert!(a.admit("c1", 80, t0));
        assert!(a.admit("c2", 80, t0));
        assert!(!a.admit("c3", 80, t0));
        assert!(a.admit("c2", 80, t0), "re-INVITE keeps its reservation");
        a.release("c1");
        assert!(a.admit("c3", 80, t0));
        assert!(!a.admit("c4", 80, t0));
        assert!(a.admit("c4", 80, t0 + Duration::from_secs(60)), "timed-out dialogs release");
        assert_eq!(a.used_kbps(), 80);
    }
}
