//! The location service and registrar (RFC 3261 §10.3): bindings with expiry and q-values,
//! `Expires: 0` and `Contact: *` removal, Call-ID/CSeq ordering, a cap per user.

use crate::wire::{Message, NameAddr};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One contact bound to an address-of-record.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The contact URI.
    pub contact: String,
    /// q-value, 0.0..=1.0 (default 1.0).
    pub q: f32,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
}

/// The registrar's policy.
#[derive(Debug, Clone, Copy)]
pub struct RegistrarLimits {
    /// Expiry granted when the client asks none.
    pub default_expires: u32,
    /// Shorter requests get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// Contacts one address-of-record may hold.
    pub max_bindings_per_user: usize,
}

impl Default for RegistrarLimits {
    fn default() -> Self {
        RegistrarLimits {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            max_bindings_per_user: 10,
        }
    }
}

/// What a REGISTER did.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    /// 200 OK: the bindings now in force.
    Ok(Vec<Binding>),
    /// 423 with Min-Expires.
    IntervalTooBrief(u32),
    /// 400: `*` with other contacts or a non-zero expiry, or a bad Contact.
    Bad(&'static str),
    /// 500-class: an out-of-order CSeq for the same Call-ID (§10.3 step 7).
    OutOfOrder,
    /// 403: more contacts than `max_bindings_per_user`.
    TooMany,
}

/// The location service: address-of-record → bindings.
#[derive(Debug, Default)]
pub struct Registrar {
    limits: RegistrarLimits,
    bindings: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// An empty location service.
    pub fn new(limits: RegistrarLimits) -> Self {
        Registrar { limits, bindings: HashMap::new() }
    }

    /// Applies an (authenticated) REGISTER for `aor` (§10.3 steps 6-8).
    pub fn register(&mut self, req: &Message, aor: &str, now: Instant) -> RegisterOutcome {
        let contacts: Vec<NameAddr> =
            match req.header_values("Contact").iter().map(|c| NameAddr::parse(c)).collect() {
                Some(c) => c,
                None => return RegisterOutcome::Bad("bad Contact"),
            };
        let call_id = req.call_id().unwrap_or("").to_string();
        let cseq = req.cseq().map(|c| c.0).unwrap_or(0);
        let header_expires = req.expires();
        if contacts.iter().any(|c| c.star) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return RegisterOutcome::Bad("Contact: * needs Expires: 0 and no other contact");
            }
            let list = self.bindings.entry(aor.to_string()).or_default();
            if list.iter().any(|b| b.call_id == call_id && cseq <= b.cseq) {
                return RegisterOutcome::OutOfOrder;
            }
            self.bindings.remove(aor);
            return RegisterOutcome::Ok(Vec::new());
        }
        self.expire_aor(aor, now);
        let mut list = self.bindings.get(aor).cloned().unwrap_or_default();
        for c in &contacts {
            let asked = c.param("expires").and_then(|e| e.parse::<u32>().ok()).or(header_expires);
            let expires = asked.unwrap_or(self.limits.default_expires);
            if expires != 0 && expires < self.limits.min_expires {
                return RegisterOutcome::IntervalTooBrief(self.limits.min_expires);
            }
            let expires = expires.min(self.limits.max_expires);
            let q = match c.param("q") {
                Some(q) => match q.parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => q,
                    _ => return RegisterOutcome::Bad("bad q-value"),
                },
                None => 1.0,
            };
            if let Some(i) = list.iter().position(|b| same_uri(&b.contact, &c.uri)) {
                if list[i].call_id == call_id && cseq <= list[i].cseq {
                    return RegisterOutcome::OutOfOrder;
                }
                if expires == 0 {
                    list.remove(i);
                } else {
                    list[i] = Binding {
                        contact: c.uri.clone(),
                        q,
                        expires_at: now + Duration::from_secs(expires.into()),
                        call_id: call_id.clone(),
                        cseq,
                    };
                }
            } else if expires != 0 {
                list.push(Binding {
                    contact: c.uri.clone(),
                    q,
                    expires_at: now + Duration::from_secs(expires.into()),
                    call_id: call_id.clone(),
                    cseq,
                });
            }
        }
        if list.len() > self.limits.max_bindings_per_user {
            return RegisterOutcome::TooMany;
        }
        if list.is_empty() {
            self.bindings.remove(aor);
        } else {
            self.bindings.insert(aor.to_string(), list);
        }
        RegisterOutcome::Ok(self.lookup(aor, now))
    }

    /// The live bindings of `aor`, highest q first.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let mut v: Vec<Binding> = self
            .bindings
            .get(aor)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| b.q.total_cmp(&a.q));
        v
    }

    /// Is anyone registered for `aor`?
    pub fn is_online(&self, aor: &str, now: Instant) -> bool {
        !self.lookup(aor, now).is_empty()
    }

    fn expire_aor(&mut self, aor: &str, now: Instant) {
        if let Some(l) = self.bindings.get_mut(aor) {
            l.retain(|b| b.expires_at > now);
        }
    }

    /// Drops expired bindings; returns the addresses-of-record that went offline.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = Vec::new();
        self.bindings.retain(|aor, l| {
            l.retain(|b| b.expires_at > now);
            if l.is_empty() {
                gone.push(aor.clone());
            }
            !l.is_empty()
        });
        gone
    }

    /// The Contact header values of a 200 OK (§10.3 step 8), with remaining expiry.
    pub fn contact_values(bindings: &[Binding], now: Instant) -> Vec<String> {
        bindings
            .iter()
            .map(|b| {
                let left = b.expires_at.saturating_duration_since(now).as_secs();
                if b.q < 1.0 {
                    format!("<{}>;expires={left};q={:.1}", b.contact, b.q)
                } else {
                    format!("<{}>;expires={left}", b.contact)
                }
            })
            .collect()
    }
}

/// URI equality good enough for bindings: scheme/user/host/port compared, case-insensitive host.
fn same_uri(a: &str, b: &str) -> bool {
    match (crate::wire::SipUri::parse(a), crate::wire::SipUri::parse(b)) {
        (Some(x), Some(y)) => {
            x.user == y.user && x.host == y.host && x.port == y.port && x.scheme == y.scheme
        }
        _ => a == b,
    }
}
