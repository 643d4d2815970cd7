//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4): a lookup table of prime size
//! `M` filled by each backend in turn along its own permutation of the slots, so every backend
//! owns about `M/N` slots and removing one backend moves (almost) only the slots it owned.
//!
//! Weights extend the paper's round-robin fill: in each round a backend accrues its weight as
//! credit and claims one slot per `max_weight` of credit, so its share is proportional to its
//! weight. Slow start uses this to ramp a recovered replica up gradually.

/// The default table size: a prime well above 100 × the expected backend count.
pub const DEFAULT_TABLE_SIZE: usize = 65537;

/// Marks an unfilled slot (only when no backend has weight).
const EMPTY: u32 = u32::MAX;

/// A filled Maglev lookup table over named backends.
#[derive(Debug, Clone)]
pub struct Maglev {
    names: Vec<String>,
    table: Vec<u32>,
}

/// A stable 64-bit hash (FNV-1a followed by the splitmix64 finaliser), independent of the
/// process, so two balancers (or a reload) build the same table from the same names.
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// The splitmix64 finaliser: spreads every input bit over the output.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl Maglev {
    /// Builds the table for `backends` (name, weight) with `size` slots. `size` should be prime
    /// (a non-prime is raised to the next prime so every permutation visits every slot).
    /// Backends with weight 0 get no slots; with no weighted backend every slot is empty.
    pub fn new(backends: &[(String, u32)], size: usize) -> Maglev {
        let mut m = size.max(3);
        while !is_prime(m) {
            m += 1;
        }
        let names: Vec<String> = backends.iter().map(|(n, _)| n.clone()).collect();
        let mut table = vec![EMPTY; m];
        let max_weight = backends.iter().map(|(_, w)| *w).max().unwrap_or(0);
        if max_weight == 0 {
            return Maglev { names, table };
        }
        // The permutation of backend i: offset + j·skip (mod M), both from its name.
        let perms: Vec<(usize, usize)> = backends
            .iter()
            .map(|(name, _)| {
                let offset = (hash64(name.as_bytes(), 1) % m as u64) as usize;
                let skip = (hash64(name.as_bytes(), 2) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; backends.len()];
        let mut credit = vec![0u64; backends.len()];
        let mut filled = 0;
        'fill: loop {
            for (i, (_, weight)) in backends.iter().enumerate() {
                credit[i] += u64::from(*weight);
                while credit[i] >= u64::from(max_weight) {
                    credit[i] -= u64::from(max_weight);
                    let (offset, skip) = perms[i];
                    // Walk backend i's permutation to its next free slot (at most M steps).
                    let mut c = (offset + next[i] * skip) % m;
                    while table[c] != EMPTY {
                        next[i] += 1;
                        c = (offset + next[i] * skip) % m;
                    }
                    table[c] = i as u32;
                    next[i] += 1;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        Maglev { names, table }
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.table.len()
    }

    /// The backend index (into the slice given to [`Maglev::new`]) that owns `hash`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        let slot = self.table[(hash % self.table.len() as u64) as usize];
        (slot != EMPTY).then_some(slot as usize)
    }

    /// The backend name that owns slot `i`.
    fn owner(&self, i: usize) -> Option<&str> {
        let slot = self.table[i];
        (slot != EMPTY).then(|| self.names[slot as usize].as_str())
    }

    /// Slots owned by each backend, in the order given to [`Maglev::new`].
    pub fn shares(&self) -> Vec<usize> {
        let mut counts = vec![0; self.names.len()];
        for &s in &self.table {
            if s != EMPTY {
                counts[s as usize] += 1;
            }
        }
        counts
    }

    /// The fraction of slots whose owner differs between `self` and `other` (compared by
    /// backend name): how many flows a change of the backend set moves.
    pub fn fraction_moved(&self, other: &Maglev) -> f64 {
        if self.table.len() != other.table.len() {
            return 1.0;
        }
        let moved = (0..self.table.len()).filter(|&i| self.owner(i) != other.owner(i)).count();
        moved as f64 / self.table.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 100)).collect()
    }

    #[test]
    fn each_backend_owns_about_one_nth() {
        for n in [1, 2, 3, 5, 10] {
            let t = Maglev::new(&backends(n), DEFAULT_TABLE_SIZE);
            let ideal = DEFAULT_TABLE_SIZE as f64 / n as f64;
            for share in t.shares() {
                assert!((share as f64 - ideal).abs() / ideal < 0.02, "n={n}: share {share} vs {ideal}");
            }
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3, 5, 10] {
            let all = backends(n);
            let before = Maglev::new(&all, DEFAULT_TABLE_SIZE);
            let mut fewer = all.clone();
            fewer.remove(1);
            let after = Maglev::new(&fewer, DEFAULT_TABLE_SIZE);
            let moved = before.fraction_moved(&after);
            let ideal = 1.0 / n as f64;
            assert!(moved >= ideal * 0.99 && moved < ideal * 1.25, "n={n}: moved {moved} vs {ideal}");
            // The slots that did not belong to the removed backend mostly stay put.
            let gone = &all[1].0;
            let kept = (0..before.size())
                .filter(|&i| before.owner(i) != Some(gone.as_str()))
                .filter(|&i| before.owner(i) == after.owner(i))
                .count();
            let others = before.size() - before.shares()[1];
            assert!(kept as f64 / others as f64 > 0.9);
        }
    }

    #[test]
    fn order_of_backends_does_not_matter_much_and_lookup_is_stable() {
        let a = backends(4);
        let mut b = a.clone();
        b.reverse();
        let ta = Maglev::new(&a, 4099);
        let tb = Maglev::new(&b, 4099);
        assert!(ta.fraction_moved(&tb) < 0.1);
        let again = Maglev::new(&a, 4099);
        assert_eq!(ta.fraction_moved(&again), 0.0);
        assert_eq!(ta.lookup(12345), again.lookup(12345));
    }

    #[test]
    fn weights_are_proportional_and_zero_weight_gets_nothing() {
        let t = Maglev::new(&[("a".into(), 100), ("b".into(), 50), ("c".into(), 0)], DEFAULT_TABLE_SIZE);
        let s = t.shares();
        assert_eq!(s[2], 0);
        let ratio = s[1] as f64 / s[0] as f64;
        assert!((ratio - 0.5).abs() < 0.02, "ratio {ratio}");
        let empty = Maglev::new(&[("a".into(), 0)], 7);
        assert_eq!(empty.lookup(3), None);
        let none = Maglev::new(&[], 7);
        assert_eq!(none.lookup(3), None);
    }

    #[test]
    fn non_prime_sizes_are_raised_to_a_prime() {
        assert_eq!(Maglev::new(&backends(2), 100).size(), 101);
        assert!(is_prime(65537) && !is_prime(65536));
    }
}
