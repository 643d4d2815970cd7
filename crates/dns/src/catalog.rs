//! The set of zones one server answers for. Immutable: a reload or a transfer builds a new
//! catalog (cheaply, zones are shared `Arc`s) and the server swaps it in atomically.

use crate::wire::name::{MAX_NAME, NameBuf, lower_into, parent};
use crate::zone::{Fnv, Zone};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// Zones by apex name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    zones: HashMap<NameBuf, Arc<Zone>, BuildHasherDefault<Fnv>>,
}

impl Catalog {
    /// A catalog of `zones`; a later zone with the same apex replaces an earlier one.
    pub fn new(zones: impl IntoIterator<Item = Arc<Zone>>) -> Catalog {
        let mut c = Catalog::default();
        for z in zones {
            c.zones.insert(z.apex().into(), z);
        }
        c
    }

    /// A copy with `zone` added or replaced.
    pub fn with_zone(&self, zone: Arc<Zone>) -> Catalog {
        let mut c = self.clone();
        c.zones.insert(zone.apex().into(), zone);
        c
    }

    /// A copy without the zone at `apex` (an expired secondary).
    pub fn without(&self, apex: &[u8]) -> Catalog {
        let mut c = self.clone();
        c.zones.remove(apex);
        c
    }

    /// The zone whose apex is exactly `apex` (lower-cased wire format).
    pub fn zone(&self, apex: &[u8]) -> Option<&Arc<Zone>> {
        self.zones.get(apex)
    }

    /// The most specific zone containing `name` (lower-cased wire format).
    pub fn find(&self, name: &[u8]) -> Option<&Arc<Zone>> {
        let mut cur = name;
        loop {
            if let Some(z) = self.zones.get(cur) {
                return Some(z);
            }
            cur = parent(cur)?;
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
