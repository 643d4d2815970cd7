//! The set of zones one server answers for (not to be confused with RFC 9432 catalog zones).
//! Immutable: a reload or a transfer builds a new set (cheaply, zones are shared `Arc`s) and the
//! server swaps it in atomically.

use crate::wire::name::{MAX_NAME, NameBuf, lower_into, parent};
use crate::zone::{Fnv, Zone};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Zones by apex name, and the secondary zones that expired (answered with SERVFAIL until a
/// transfer brings them back).
#[derive(Debug, Clone, Default)]
pub struct ServedZones {
    zones: HashMap<NameBuf, Arc<Zone>, BuildHasherDefault<Fnv>>,
    expired: HashMap<NameBuf, (), BuildHasherDefault<Fnv>>,
}

/// What the served set holds for a name: the zone that answers it, a zone that expired, or
/// nothing (not authoritative).
#[derive(Debug, Clone, Copy)]
pub enum Served<'a> {
    /// The most specific zone containing the name.
    Zone(&'a Arc<Zone>),
    /// The most specific zone containing the name is a secondary zone past its SOA expire.
    Expired,
    /// No zone contains the name.
    NotAuthoritative,
}

impl ServedZones {
    /// A catalog of `zones`; a later zone with the same apex replaces an earlier one.
    pub fn new(zones: impl IntoIterator<Item = Arc<Zone>>) -> ServedZones {
        let mut c = ServedZones::default();
        for z in zones {
            c.zones.insert(z.apex().into(), z);
        }
        c
    }

    /// A copy with `zone` added or replaced (no longer expired, if it was).
    pub fn with_zone(&self, zone: Arc<Zone>) -> ServedZones {
        let mut c = self.clone();
        c.expired.remove(zone.apex());
        c.zones.insert(zone.apex().into(), zone);
        c
    }

    /// A copy where the zone at `apex` is expired: its data dropped, names in it answered with
    /// SERVFAIL (RFC 1035 §4.3.5: a secondary stops answering for an expired zone).
    pub fn with_expired(&self, apex: &[u8]) -> ServedZones {
        let mut c = self.clone();
        c.zones.remove(apex);
        c.expired.insert(apex.into(), ());
        c
    }

    /// Whether the zone at `apex` is expired.
    pub fn is_expired(&self, apex: &[u8]) -> bool {
        self.expired.contains_key(apex)
    }

    /// What answers `name` (lower-cased wire format): the most specific zone or expired zone
    /// containing it.
    pub fn lookup(&self, name: &[u8]) -> Served<'_> {
        let check_expired = !self.expired.is_empty();
        let mut cur = name;
        loop {
            if let Some(z) = self.zones.get(cur) {
                return Served::Zone(z);
            }
            if check_expired && self.expired.contains_key(cur) {
                return Served::Expired;
            }
            match parent(cur) {
                Some(p) => cur = p,
                None => return Served::NotAuthoritative,
            }
        }
    }

    /// A copy without the zone at `apex` (an expired secondary).
    pub fn without(&self, apex: &[u8]) -> ServedZones {
        let mut c = self.clone();
        c.zones.remove(apex);
        c
    }

    /// The zone whose apex is exactly `apex` (lower-cased wire format).
    pub fn zone(&self, apex: &[u8]) -> Option<&Arc<Zone>> {
        self.zones.get(apex)
    }

    /// The most specific zone containing `name` (lower-cased wire format); `None` also when
    /// that is an expired zone.
    pub fn find(&self, name: &[u8]) -> Option<&Arc<Zone>> {
        match self.lookup(name) {
            Served::Zone(z) => Some(z),
            Served::Expired | Served::NotAuthoritative => None,
        }
    }

    /// Like [`find`](Self::find) for a name in any case.
    pub fn find_any_case(&self, name: &[u8]) -> Option<&Arc<Zone>> {
        let mut buf = [0u8; MAX_NAME];
        let low = lower_into(name, &mut buf);
        self.find(low)
    }

    /// All zones.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether there are no zones.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}

/// The zone set a running server answers from, swapped atomically on reload or transfer. It
/// exists apart from the server so that the drivers that change the set (the secondary zones'
/// loops) need only this, not the server; readers notice a swap through the generation counter.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    zones: RwLock<Arc<ServedZones>>,
    generation: AtomicU64,
}

impl Catalog {
    /// A catalog serving `zones`.
    pub fn new(zones: ServedZones) -> Catalog {
        Catalog { zones: RwLock::new(Arc::new(zones)), generation: AtomicU64::new(0) }
    }

    /// The current zone set.
    pub fn served(&self) -> Arc<ServedZones> {
        self.zones.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the zone set with `f(current)` atomically.
    pub fn update(&self, f: impl FnOnce(&ServedZones) -> ServedZones) {
        let mut guard = self.zones.write().unwrap_or_else(|p| p.into_inner());
        let next = Arc::new(f(&guard));
        *guard = next;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Bumped by every [`update`](Catalog::update).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::name::from_text;

    fn zone(apex: &str) -> Arc<Zone> {
        let text = format!("$ORIGIN {apex}.\n@ 3600 SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n");
        Arc::new(Zone::from_text(apex, &text).unwrap())
    }

    #[test]
    fn expired_zones_shadow_their_parent_until_transferred_again() {
        let set = ServedZones::new([zone("example"), zone("sub.example")]);
        let name = from_text("www.sub.example").unwrap();
        let apex = from_text("sub.example").unwrap();
        assert!(matches!(set.lookup(&name), Served::Zone(z) if z.apex() == &apex[..]));
        let expired = set.with_expired(&apex);
        assert!(expired.is_expired(&apex));
        assert!(matches!(expired.lookup(&name), Served::Expired), "not the parent's answer");
        assert!(expired.find(&name).is_none());
        let other = from_text("www.example").unwrap();
        assert!(matches!(expired.lookup(&other), Served::Zone(_)), "the parent still answers");
        assert!(matches!(expired.lookup(&from_text("nowhere").unwrap()), Served::NotAuthoritative));
        let back = expired.with_zone(zone("sub.example"));
        assert!(!back.is_expired(&apex));
        assert!(matches!(back.lookup(&name), Served::Zone(_)));
    }

    #[test]
    fn a_catalog_swaps_the_set_and_counts_each_swap() {
        let catalog = Catalog::new(ServedZones::new([zone("example")]));
        let apex = from_text("sub.example").unwrap();
        assert_eq!(catalog.generation(), 0);
        catalog.update(|c| c.with_zone(zone("sub.example")));
        assert_eq!(catalog.generation(), 1);
        assert!(catalog.served().zone(&apex).is_some());
        catalog.update(|c| c.with_expired(&apex));
        assert_eq!(catalog.generation(), 2);
        assert!(catalog.served().is_expired(&apex));
    }
}
