//! Who may ask, and how fast: recursion only for configured client networks (no open resolver
//! for amplification attacks), and a per-client token bucket. Sans-IO: takes `now`.

use appnet_netkit::acl::AccessList;
use appnet_netkit::rate::TokenBucket;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most clients tracked before idle buckets are swept.
const MAX_TRACKED: usize = 65_536;

/// The access decision for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it.
    Allowed,
    /// Not one of our clients: answer REFUSED.
    Refused,
    /// Over its rate: drop silently (answering would still amplify).
    Limited,
}

/// Client access control and rate limiting. The allow list and the exemptions are checked
/// without a lock; only rate-limited clients touch the shared buckets.
#[derive(Debug)]
pub struct Clients {
    allow: AccessList,
    qps: u32,
    limit_loopback: bool,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl Clients {
    /// `allow` lists networks (`127.0.0.0/8`, `::1`, ...); `qps` 0 disables rate limiting.
    pub fn new(allow: &[String], qps: u32, limit_loopback: bool) -> Result<Clients, String> {
        Ok(Clients {
            allow: AccessList::parse(allow)?,
            qps,
            limit_loopback,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Decides whether to serve a query from `client` at `now`.
    pub fn admit(&self, client: IpAddr, now: Instant) -> Admission {
        let client = appnet_dns::respond::canonical(client);
        if !self.allow.contains(client) {
            return Admission::Refused;
        }
        if self.qps == 0 || (client.is_loopback() && !self.limit_loopback) {
            return Admission::Allowed;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let qps = self.qps as u64;
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&client) {
            // Full buckets belong to clients idle for at least a second: forget them.
            buckets.retain(|_, b| b.available(now) < qps);
        }
        let bucket = buckets.entry(client).or_insert_with(|| TokenBucket::new(qps, qps, now));
        if bucket.try_take(1, now) { Admission::Allowed } else { Admission::Limited }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_configured_networks_are_served() {
        let c = Clients::new(&["127.0.0.0/8".into(), "10.1.0.0/16".into()], 0, false).unwrap();
        let now = Instant::now();
        assert_eq!(c.admit("127.0.4.1".parse().unwrap(), now), Admission::Allowed);
        assert_eq!(c.admit("10.1.2.3".parse().unwrap(), now), Admission::Allowed);
        assert_eq!(c.admit("10.2.0.1".parse().unwrap(), now), Admission::Refused);
        assert_eq!(c.admit("::ffff:127.0.0.1".parse().unwrap(), now), Admission::Allowed);
    }

    #[test]
    fn each_client_gets_its_own_rate() {
        let c = Clients::new(&["0.0.0.0/0".into()], 10, false).unwrap();
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..20).filter(|_| c.admit(a, now) == Admission::Allowed).count();
        assert_eq!(allowed, 10);
        assert_eq!(c.admit(b, now), Admission::Allowed);
        assert_eq!(c.admit(a, now + Duration::from_millis(100)), Admission::Allowed);
        // Loopback is exempt unless asked for.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let c = Clients::new(&["127.0.0.0/8".into()], 1, false).unwrap();
        assert!((0..5).all(|_| c.admit(lo, now) == Admission::Allowed));
    }
}
