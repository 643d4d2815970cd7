//! The connection's open streams by id: a deque kept in id order. Streams open in id order
//! and most end oldest first, so the usual insert is a push at the back and the usual removal
//! a pop at the front, with no entry moved (a `BTreeMap` shifted its node's entries, a hundred
//! bytes each, on every removal); lookups are a binary search over a few entries.

use std::collections::VecDeque;

/// A map from stream id to `T`, iterated in id order.
#[derive(Debug)]
pub(super) struct IdMap<T> {
    v: VecDeque<(u32, T)>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap { v: VecDeque::new() }
    }
}

impl<T> IdMap<T> {
    fn find(&self, id: u32) -> Result<usize, usize> {
        // Newest ids are at the back and the most looked up.
        match self.v.back() {
            Some((last, _)) if *last == id => Ok(self.v.len() - 1),
            Some((last, _)) if *last < id => Err(self.v.len()),
            _ => self.v.binary_search_by_key(&id, |e| e.0),
        }
    }

    /// The entry of `id`.
    pub(super) fn get(&self, id: &u32) -> Option<&T> {
        self.find(*id).ok().and_then(|i| self.v.get(i)).map(|e| &e.1)
    }

    /// The entry of `id`, to change.
    pub(super) fn get_mut(&mut self, id: &u32) -> Option<&mut T> {
        let i = self.find(*id).ok()?;
        self.v.get_mut(i).map(|e| &mut e.1)
    }

    /// Whether `id` has an entry.
    pub(super) fn contains_key(&self, id: &u32) -> bool {
        self.find(*id).is_ok()
    }

    /// Sets the entry of `id`.
    pub(super) fn insert(&mut self, id: u32, value: T) {
        match self.find(id) {
            Ok(i) => {
                if let Some(e) = self.v.get_mut(i) {
                    e.1 = value;
                }
            }
            Err(i) if i == self.v.len() => self.v.push_back((id, value)),
            Err(i) => self.v.insert(i, (id, value)),
        }
    }

    /// Takes the entry of `id` out.
    pub(super) fn remove(&mut self, id: &u32) -> Option<T> {
        let i = self.find(*id).ok()?;
        if i == 0 {
            return self.v.pop_front().map(|e| e.1);
        }
        self.v.remove(i).map(|e| e.1)
    }

    /// Entries.
    pub(super) fn len(&self) -> usize {
        self.v.len()
    }

    /// Drops every entry.
    pub(super) fn clear(&mut self) {
        self.v.clear();
    }

    /// The entries in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u32, &T)> {
        self.v.iter().map(|(id, t)| (id, t))
    }

    /// The values in id order, to change.
    pub(super) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.v.iter_mut().map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in proptest::collection::vec((0u8..3, 0u32..64), 0..300)) {
            let mut m = IdMap::default();
            let mut want = BTreeMap::new();
            for (op, id) in ops {
                match op {
                    0 => {
                        m.insert(id, id * 10);
                        want.insert(id, id * 10);
                    }
                    1 => prop_assert_eq!(m.remove(&id), want.remove(&id)),
                    _ => {
                        if let Some(v) = m.get_mut(&id) {
                            *v += 1;
                        }
                        if let Some(v) = want.get_mut(&id) {
                            *v += 1;
                        }
                    }
                }
                prop_assert_eq!(m.get(&id), want.get(&id));
                prop_assert_eq!(m.contains_key(&id), want.contains_key(&id));
                prop_assert_eq!(m.len(), want.len());
            }
            let got: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            let exp: Vec<_> = want.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(got, exp);
        }
    }
}
