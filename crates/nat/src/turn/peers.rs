//! Which peer addresses a relay may reach: loopback, private, link-local and other special
//! ranges are refused (403) unless an `--allow-peer` prefix allows them.

use appnet_netkit::acl::AccessList;
use std::net::IpAddr;

/// Whether `ip` is in a range a relay must not reach by default.
pub fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_restricted(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Whether the relay may talk to `ip`.
pub fn allowed(ip: IpAddr, allow: &AccessList) -> bool {
    !is_restricted(ip) || allow.contains(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_ranges_are_refused_unless_allowed() {
        let none = AccessList::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!allowed(ip.parse().unwrap(), &none), "{ip}");
        }
        assert!(
            allowed("192.0.2.55".parse().unwrap(), &none) || is_restricted("192.0.2.55".parse().unwrap())
        );
        assert!(allowed("8.8.8.8".parse().unwrap(), &none));
        let lo = AccessList::parse(&["127.0.0.0/8"]).unwrap();
        assert!(allowed("127.0.0.1".parse().unwrap(), &lo));
        assert!(!allowed("10.0.0.1".parse().unwrap(), &lo));
    }
}
