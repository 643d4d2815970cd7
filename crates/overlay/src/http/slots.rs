//! The KaZaA upload policy (sans-IO): at most `max_uploads` transfers at once; others wait in a
//! queue and are told their place (`503` with `X-Queue: position=N,length=M,...`, as
//! Gnutella's active queueing does); peers that upload to us go ahead of those that do not;
//! a queued peer that stops asking again within `poll_max` loses its place.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The policy's numbers.
#[derive(Debug, Clone, Copy)]
pub struct SlotLimits {
    /// Transfers at once.
    pub max_uploads: usize,
    /// Peers waiting at once; beyond it a request gets a plain 503.
    pub max_queue: usize,
    /// Earliest a queued peer should ask again.
    pub poll_min: Duration,
    /// Latest a queued peer may ask again before it loses its place.
    pub poll_max: Duration,
}

/// The decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send the file now; call [`UploadSlots::finish`] when done.
    Start,
    /// Wait: the peer's 1-based place and the queue's length.
    Queued { position: usize, length: usize },
    /// The queue is full too.
    Refused,
}

#[derive(Debug)]
struct Waiter {
    who: IpAddr,
    priority: bool,
    last_poll: Instant,
}

/// The upload slots and their queue.
#[derive(Debug)]
pub struct UploadSlots {
    limits: SlotLimits,
    active: usize,
    queue: Vec<Waiter>,
}

impl UploadSlots {
    /// No uploads yet.
    pub fn new(limits: SlotLimits) -> UploadSlots {
        UploadSlots { limits, active: 0, queue: Vec::new() }
    }

    /// The limits in force.
    pub fn limits(&self) -> SlotLimits {
        self.limits
    }

    /// Decides on a request from `who` (`priority` if it uploads to us) at `now`.
    pub fn request(&mut self, who: IpAddr, priority: bool, now: Instant) -> Admission {
        let poll_max = self.limits.poll_max;
        self.queue.retain(|w| now.saturating_duration_since(w.last_poll) <= poll_max);
        let free = self.limits.max_uploads.saturating_sub(self.active);
        let place = self.queue.iter().position(|w| w.who == who);
        // The first `free` waiters may start; so may a newcomer when nobody waits.
        let may_start = match place {
            Some(i) => i < free,
            None => {
                free > self.queue.len() || (priority && self.queue.iter().take(free).any(|w| !w.priority))
            }
        };
        if may_start && free > 0 {
            if let Some(i) = place {
                self.queue.remove(i);
            }
            self.active += 1;
            return Admission::Start;
        }
        let i = match place {
            Some(i) => {
                self.queue[i].last_poll = now;
                i
            }
            None if self.queue.len() < self.limits.max_queue => {
                // Uploaders go behind other uploaders but ahead of everyone else.
                let at = if priority {
                    self.queue.iter().take_while(|w| w.priority).count()
                } else {
                    self.queue.len()
                };
                self.queue.insert(at, Waiter { who, priority, last_poll: now });
                at
            }
            None => return Admission::Refused,
        };
        Admission::Queued { position: i + 1, length: self.queue.len() }
    }

    /// A transfer ended (finished or broken).
    pub fn finish(&mut self) {
        self.active = self.active.saturating_sub(1);
    }

    /// Transfers running now.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Peers waiting now.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// The `X-Queue` header value for a queued request.
pub fn x_queue(position: usize, length: usize, limits: &SlotLimits) -> String {
    format!(
        "position={position},length={length},limit={},pollMin={},pollMax={}",
        limits.max_uploads,
        limits.poll_min.as_secs(),
        limits.poll_max.as_secs()
    )
}

/// Reads `pollMin` (seconds) and `position` from an `X-Queue` value.
pub fn parse_x_queue(value: &str) -> (Option<usize>, Option<u64>) {
    let (mut position, mut poll_min) = (None, None);
    for part in value.split(',') {
        let Some((k, v)) = part.split_once('=') else { continue };
        match k.trim().to_ascii_lowercase().as_str() {
            "position" => position = v.trim().parse().ok(),
            "pollmin" => poll_min = v.trim().parse().ok(),
            _ => {}
        }
    }
    (position, poll_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 11, n])
    }

    fn slots() -> UploadSlots {
        UploadSlots::new(SlotLimits {
            max_uploads: 2,
            max_queue: 3,
            poll_min: Duration::from_secs(5),
            poll_max: Duration::from_secs(60),
        })
    }

    #[test]
    fn caps_uploads_then_queues_then_refuses() {
        let (mut s, t) = (slots(), Instant::now());
        assert_eq!(s.request(ip(1), false, t), Admission::Start);
        assert_eq!(s.request(ip(2), false, t), Admission::Start);
        assert_eq!(s.request(ip(3), false, t), Admission::Queued { position: 1, length: 1 });
        assert_eq!(s.request(ip(4), false, t), Admission::Queued { position: 2, length: 2 });
        assert_eq!(s.request(ip(5), false, t), Admission::Queued { position: 3, length: 3 });
        assert_eq!(s.request(ip(6), false, t), Admission::Refused);
        // ip(4) polls again: same place; a slot frees; the head (ip 3) gets it, not ip(4).
        assert_eq!(s.request(ip(4), false, t), Admission::Queued { position: 2, length: 3 });
        s.finish();
        assert_eq!(s.request(ip(4), false, t), Admission::Queued { position: 2, length: 3 });
        assert_eq!(s.request(ip(3), false, t), Admission::Start);
        assert_eq!(s.request(ip(4), false, t), Admission::Queued { position: 1, length: 2 });
        assert_eq!((s.active(), s.queued()), (2, 2));
    }

    #[test]
    fn uploaders_go_first_and_silent_waiters_lose_their_place() {
        let (mut s, t) = (slots(), Instant::now());
        s.request(ip(1), false, t);
        s.request(ip(2), false, t);
        s.request(ip(3), false, t);
        assert_eq!(s.request(ip(9), true, t), Admission::Queued { position: 1, length: 2 });
        s.finish();
        assert_eq!(s.request(ip(3), false, t), Admission::Queued { position: 2, length: 2 });
        assert_eq!(s.request(ip(9), true, t), Admission::Start);
        // ip(3) never polls again; after poll_max it is gone.
        let later = t + Duration::from_secs(61);
        assert_eq!(s.request(ip(5), false, later), Admission::Queued { position: 1, length: 1 });
    }

    #[test]
    fn x_queue_round_trips_its_fields() {
        let s = slots();
        let v = x_queue(3, 7, &s.limits());
        assert_eq!(v, "position=3,length=7,limit=2,pollMin=5,pollMax=60");
        assert_eq!(parse_x_queue(&v), (Some(3), Some(5)));
        assert_eq!(parse_x_queue("junk"), (None, None));
    }
}
