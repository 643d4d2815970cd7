//! Where a forward proxy may connect (SSRF defence, as Squid's default `http_access` rules):
//! loopback, private, link-local and other special-purpose addresses are refused unless an
//! `allow_dest` prefix admits them, and the proxy's own listening address is refused always
//! (so a client can neither reach services bound to the proxy's loopback nor loop the proxy
//! into itself, e.g. to read its own metrics). The check runs on the *resolved* address, the
//! one actually connected to, so a name resolving to 127.0.0.1 is refused as well.
//!
//! Pure: [`DestPolicy::check`] takes the address and a "is this one of my addresses" oracle.

use appnet_netkit::acl::{AccessList, canonical};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Why a destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The proxy's own listening address (a forwarding loop).
    Itself,
    /// A loopback, private, link-local or otherwise special address not in `allow_dest`.
    Internal,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Itself => f.write_str("the proxy itself"),
            Refusal::Internal => f.write_str("an internal address (see --allow-dest)"),
        }
    }
}

/// The error a connection attempt returns when every resolved address was refused (the
/// handler finds it in the error chain and answers 403 instead of 502).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("destination refused: {0}")]
pub struct DestDenied(pub Refusal);

/// The forward proxy's destination rules.
#[derive(Debug, Clone)]
pub struct DestPolicy {
    allow: AccessList,
    listen: SocketAddr,
}

impl DestPolicy {
    /// `allow`: prefixes of internal addresses that may be reached anyway; `listen`: the
    /// proxy's bound address (never reachable).
    pub fn new(allow: AccessList, listen: SocketAddr) -> DestPolicy {
        DestPolicy { allow, listen }
    }

    /// Whether `dst` may be connected to. `is_local(ip)` says whether `ip` belongs to this
    /// host (used only when the proxy listens on a wildcard address).
    pub fn check(&self, dst: SocketAddr, is_local: impl Fn(IpAddr) -> bool) -> Result<(), Refusal> {
        let ip = canonical(dst.ip());
        let me = canonical(self.listen.ip());
        if dst.port() == self.listen.port()
            && (ip == me
                || ip.is_unspecified()
                || (me.is_unspecified() && (ip.is_loopback() || is_local(ip))))
        {
            return Err(Refusal::Itself);
        }
        if is_internal(ip) && !self.allow.contains(ip) {
            return Err(Refusal::Internal);
        }
        Ok(())
    }

    /// [`check`](Self::check) with the real "is this address mine" test.
    pub fn check_here(&self, dst: SocketAddr) -> Result<(), Refusal> {
        self.check(dst, is_local_address)
    }
}

/// Whether `ip` is special-purpose: this-network, loopback, private (RFC 1918, ULA), shared
/// (CGNAT), link-local, multicast or broadcast.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 0
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || v4.is_multicast()
                || v4 == Ipv4Addr::BROADCAST
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_unspecified()
                || v6.is_loopback()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6.is_multicast()
        }
    }
}

/// Whether `ip` is an address of this host: binding a socket to it succeeds only then.
pub fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], listen: &str) -> DestPolicy {
        DestPolicy::new(AccessList::parse(allow).unwrap(), listen.parse().unwrap())
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused_by_default() {
        let p = policy(&[], "127.0.0.1:3128");
        for d in [
            "127.0.0.1:22",
            "127.9.9.9:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fd00::1]:80",
            "[fe80::1]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert_eq!(p.check(sa(d), |_| false), Err(Refusal::Internal), "{d}");
        }
        for d in ["93.184.216.34:80", "8.8.8.8:8080", "[2001:db8::1]:80", "172.32.0.1:80"] {
            assert_eq!(p.check(sa(d), |_| false), Ok(()), "{d}");
        }
    }

    #[test]
    fn allow_dest_admits_internal_ranges_but_never_the_proxy_itself() {
        let p = policy(&["127.0.0.0/8"], "127.0.0.1:3128");
        assert_eq!(p.check(sa("127.0.0.1:8080"), |_| false), Ok(()));
        assert_eq!(p.check(sa("127.0.10.1:80"), |_| false), Ok(()));
        assert_eq!(p.check(sa("127.0.0.1:3128"), |_| false), Err(Refusal::Itself));
        assert_eq!(p.check(sa("0.0.0.0:3128"), |_| false), Err(Refusal::Itself));
        assert_eq!(p.check(sa("[::ffff:127.0.0.1]:3128"), |_| false), Err(Refusal::Itself));
        // Another loopback address on the same port is another listener.
        assert_eq!(p.check(sa("127.0.0.2:3128"), |_| false), Ok(()));
        assert_eq!(p.check(sa("10.0.0.1:80"), |_| false), Err(Refusal::Internal));
    }

    #[test]
    fn a_wildcard_listener_refuses_every_local_address_on_its_port() {
        let p = policy(&["0.0.0.0/0"], "0.0.0.0:3128");
        let mine = |ip: IpAddr| ip == "192.0.2.7".parse::<IpAddr>().unwrap();
        assert_eq!(p.check(sa("192.0.2.7:3128"), mine), Err(Refusal::Itself));
        assert_eq!(p.check(sa("127.0.0.5:3128"), mine), Err(Refusal::Itself));
        assert_eq!(p.check(sa("192.0.2.8:3128"), mine), Ok(()));
        assert_eq!(p.check(sa("192.0.2.7:80"), mine), Ok(()));
    }

    #[test]
    fn local_addresses_are_recognised() {
        assert!(is_local_address("127.0.0.1".parse().unwrap()));
        assert!(!is_local_address("192.0.2.123".parse().unwrap()));
    }
}
