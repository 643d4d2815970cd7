//! Address allow-lists: the prefixes a service accepts for some purpose (zone transfers,
//! recursion, purges, proxy destinations, CDN client networks). One type for every service, so
//! they all read `192.0.2.0/24` and `2001:db8::/32` the same way.

use std::net::IpAddr;

/// A set of address prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    prefixes: Vec<(IpAddr, u8)>,
}

impl AccessList {
    /// Parses `192.0.2.1`, `192.0.2.0/24`, `::1`, `2001:db8::/32`. An IPv4-mapped IPv6 prefix
    /// (`::ffff:192.0.2.0/120`) is read as the IPv4 prefix it maps.
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<AccessList, String> {
        let mut prefixes = Vec::new();
        for item in items {
            let item = item.as_ref();
            let (addr, len) = match item.split_once('/') {
                Some((a, l)) => {
                    (a, Some(l.parse::<u8>().map_err(|_| format!("bad prefix length in {item:?}"))?))
                }
                None => (item, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| format!("bad address {item:?}"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return Err(format!("prefix length too long in {item:?}"));
            }
            prefixes.push(match canonical(addr) {
                v4 @ IpAddr::V4(_) if addr.is_ipv6() => {
                    if len < 96 {
                        return Err(format!("{item:?} mixes IPv4-mapped and other IPv6 addresses"));
                    }
                    (v4, len - 96)
                }
                _ => (addr, len),
            });
        }
        Ok(AccessList { prefixes })
    }

    /// Whether `ip` falls in one of the prefixes (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.prefixes.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                mask(u32::from(n) as u128, len, 32) == mask(u32::from(a) as u128, len, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => mask(u128::from(n), len, 128) == mask(u128::from(a), len, 128),
            _ => false,
        })
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses count as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn mask(v: u128, len: u8, bits: u8) -> u128 {
    if len == 0 { 0 } else { v >> (bits - len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_of_both_families() {
        let acl = AccessList::parse(&["192.0.2.0/24", "10.1.2.3", "2001:db8::/32"]).unwrap();
        assert!(acl.contains(ip("192.0.2.200")));
        assert!(!acl.contains(ip("192.0.3.1")));
        assert!(acl.contains(ip("10.1.2.3")) && !acl.contains(ip("10.1.2.4")));
        assert!(acl.contains(ip("2001:db8:ffff::1")));
        assert!(!acl.contains(ip("2001:db9::1")));
        assert!(acl.contains(ip("::ffff:192.0.2.9")), "mapped addresses count as IPv4");
        assert!(AccessList::parse(&["0.0.0.0/0"]).unwrap().contains(ip("203.0.113.1")));
        assert!(AccessList::default().is_empty() && !AccessList::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn mapped_prefixes_and_bad_input() {
        let acl = AccessList::parse(&["::ffff:192.0.2.0/120"]).unwrap();
        assert!(acl.contains(ip("192.0.2.7")) && !acl.contains(ip("192.0.3.7")));
        assert!(AccessList::parse(&["::ffff:192.0.2.0/64"]).is_err());
        assert!(AccessList::parse(&["192.0.2.0/33"]).is_err());
        assert!(AccessList::parse(&["192.0.2.0/x"]).is_err());
        assert!(AccessList::parse(&["example.com"]).is_err());
    }
}
