//! RFC 9218 extensible priorities: the `Priority` field value (urgency `u=0..7`, incremental
//! `i`) and the scheduler that picks which stream's DATA goes out next.

/// A stream's priority parameters (RFC 9218 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// 0 (most urgent) to 7; 3 by default.
    pub urgency: u8,
    /// Whether the response is useful in parts, so it may share the connection with others
    /// of its urgency.
    pub incremental: bool,
}

impl Default for Priority {
    fn default() -> Self {
        Priority { urgency: 3, incremental: false }
    }
}

impl Priority {
    /// Parses a field value (a Structured Fields dictionary, RFC 8941). Parameters missing or
    /// invalid keep their defaults; unknown keys are ignored (RFC 9218 §4).
    pub fn parse(value: &[u8]) -> Priority {
        let mut p = Priority::default();
        for member in value.split(|&b| b == b',') {
            let member = trim(member);
            // Member parameters (";...") carry nothing RFC 9218 defines.
            let member = member.split(|&b| b == b';').next().unwrap_or_default();
            let (key, val) = match member.iter().position(|&b| b == b'=') {
                Some(i) => (&member[..i], Some(&member[i + 1..])),
                None => (member, None),
            };
            match (key, val) {
                (b"u", Some([d @ b'0'..=b'7'])) => p.urgency = d - b'0',
                (b"i", None) | (b"i", Some(b"?1")) => p.incremental = true,
                (b"i", Some(b"?0")) => p.incremental = false,
                _ => {}
            }
        }
        p
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Chooses the next stream to send DATA for (RFC 9218 §10): the lowest urgency first; within
/// it, non-incremental streams one at a time in stream order, then incremental streams in
/// turn, one frame each.
#[derive(Debug, Default)]
pub struct Scheduler {
    /// The incremental stream served last, per urgency.
    last_incremental: [u32; 8],
}

impl Scheduler {
    /// Picks among the streams ready to send (`(id, priority)`, any order).
    pub fn pick(&mut self, ready: impl Iterator<Item = (u32, Priority)>) -> Option<u32> {
        let mut best = 8u8;
        let mut sequential: Option<u32> = None;
        let mut next_turn: Option<u32> = None;
        let mut first_turn: Option<u32> = None;
        for (id, p) in ready {
            let u = p.urgency.min(7);
            if u > best {
                continue;
            }
            if u < best {
                best = u;
                sequential = None;
                next_turn = None;
                first_turn = None;
            }
            if !p.incremental {
                sequential = Some(sequential.map_or(id, |s| s.min(id)));
            } else {
                first_turn = Some(first_turn.map_or(id, |s| s.min(id)));
                if id > self.last_incremental[usize::from(u)] {
                    next_turn = Some(next_turn.map_or(id, |s| s.min(id)));
                }
            }
        }
        if let Some(id) = sequential {
            return Some(id);
        }
        let id = next_turn.or(first_turn)?;
        self.last_incremental[usize::from(best)] = id;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values() {
        assert_eq!(Priority::parse(b""), Priority::default());
        assert_eq!(Priority::parse(b"u=0"), Priority { urgency: 0, incremental: false });
        assert_eq!(Priority::parse(b"u=5, i"), Priority { urgency: 5, incremental: true });
        assert_eq!(Priority::parse(b"i=?1 ,u=1;x=2"), Priority { urgency: 1, incremental: true });
        assert_eq!(Priority::parse(b"u=9, i=?0, foo=bar"), Priority::default());
        assert_eq!(Priority::parse(b"u=12"), Priority::default());
    }

    #[test]
    fn lower_urgency_first_then_sequential_then_round_robin() {
        let mut s = Scheduler::default();
        let p = |u, i| Priority { urgency: u, incremental: i };
        assert_eq!(s.pick([(1, p(3, false)), (3, p(1, false))].into_iter()), Some(3));
        assert_eq!(s.pick([(5, p(3, false)), (1, p(3, false))].into_iter()), Some(1));
        let inc = [(1, p(2, true)), (3, p(2, true)), (5, p(2, true))];
        let turns: Vec<_> = (0..4).filter_map(|_| s.pick(inc.into_iter())).collect();
        assert_eq!(turns, [1, 3, 5, 1]);
        assert_eq!(s.pick(std::iter::empty()), None);
    }
}
