//! Presence (RFC 3856 over the RFC 6665 event framework, PIDF RFC 3863, PUBLISH RFC 3903):
//! watchers SUBSCRIBE to `Event: presence` of a local user and get a NOTIFY with a PIDF
//! document at once and whenever the user's state changes (registration or PUBLISH).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One watcher's subscription (a dialog we are the notifier of).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub aor: String,
    /// Where NOTIFYs go (the SUBSCRIBE's Contact).
    pub contact: String,
    pub call_id: String,
    /// The watcher's tag (From of the SUBSCRIBE) and ours (To of our 200).
    pub remote_tag: String,
    pub local_tag: String,
    pub watcher: String,
    pub expires_at: Instant,
    pub cseq: u32,
    pub source_ip: std::net::IpAddr,
}

/// A published state (RFC 3903): the entity tag and the PIDF body.
#[derive(Debug, Clone)]
pub struct Published {
    pub etag: String,
    pub body: Vec<u8>,
    pub expires_at: Instant,
}

/// Subscriptions and published states, bounded per watcher address and in all.
#[derive(Debug, Default)]
pub struct Presence {
    pub subs: HashMap<String, Subscription>,
    pub published: HashMap<String, Published>,
    pub max_subscriptions: usize,
    pub max_per_ip: usize,
}

impl Presence {
    /// Empty, with these caps.
    pub fn new(max_subscriptions: usize, max_per_ip: usize) -> Self {
        Presence { max_subscriptions, max_per_ip, ..Default::default() }
    }

    /// May `ip` open one more subscription?
    pub fn has_room(&self, ip: std::net::IpAddr) -> bool {
        self.subs.len() < self.max_subscriptions
            && self.subs.values().filter(|s| s.source_ip == ip).count() < self.max_per_ip
    }

    /// Subscriptions watching `aor` (their dialog keys).
    pub fn watchers_of(&self, aor: &str) -> Vec<String> {
        self.subs.iter().filter(|(_, s)| s.aor == aor).map(|(k, _)| k.clone()).collect()
    }

    /// Drops expired subscriptions and publications; returns the dropped subscriptions.
    pub fn expire(&mut self, now: Instant) -> Vec<Subscription> {
        let gone: Vec<String> =
            self.subs.iter().filter(|(_, s)| s.expires_at <= now).map(|(k, _)| k.clone()).collect();
        self.published.retain(|_, p| p.expires_at > now);
        gone.into_iter().filter_map(|k| self.subs.remove(&k)).collect()
    }
}

/// The PIDF document (RFC 3863) for `aor`: open when registered.
pub fn pidf(aor: &str, open: bool) -> Vec<u8> {
    let basic = if open { "open" } else { "closed" };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{aor}\">\r\n\
         <tuple id=\"reg\"><status><basic>{basic}</basic></status></tuple>\r\n\
         </presence>\r\n"
    )
    .into_bytes()
}

/// Seconds left, for Subscription-State.
pub fn left(until: Instant, now: Instant) -> u64 {
    until.saturating_duration_since(now).as_secs()
}

/// Default and maximum subscription length.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);
