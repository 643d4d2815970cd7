//! Binding the listener of a passive data connection (PASV/EPSV): one per transfer.
//!
//! Not `bind(port 0)`: for that the kernel looks for a port no socket on the address uses at
//! all, and a busy FTP server leaves a data connection in TIME_WAIT on most ephemeral ports
//! (the server closes each data connection first), so every EPSV walked much of the range
//! under the bind-hash lock — 60 % of the server's CPU at 200 concurrent sessions. Instead, as
//! vsftpd does, a random port of the range bound with SO_REUSEADDR (which TIME_WAIT sockets do
//! not block): one hash lookup, and another random port in the rare case it is taken.

use appnet_netkit::listen::{ListenOpts, bind_tcp};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use tokio::net::TcpListener;

/// Random ports tried in the system's ephemeral range before falling back to port 0.
const RANDOM_TRIES: u32 = 32;
/// Ports tried in a configured range (from a random start, in order).
const RANGE_TRIES: u32 = 512;

/// A listener on `ip` for one passive data connection: a port of `range` when one is
/// configured, else a port of the system's ephemeral range. `None` when no port is free.
pub(crate) fn listener(ip: IpAddr, range: Option<(u16, u16)>) -> Option<TcpListener> {
    match range {
        Some((a, b)) => {
            let (lo, hi) = (a.min(b), a.max(b));
            let span = u32::from(hi - lo) + 1;
            let start = rand::random::<u32>() % span;
            (0..span.min(RANGE_TRIES)).find_map(|i| bind(ip, (u32::from(lo) + (start + i) % span) as u16))
        }
        None => {
            let (lo, hi) = ephemeral_range();
            let span = u32::from(hi - lo) + 1;
            (0..RANDOM_TRIES)
                .find_map(|_| bind(ip, (u32::from(lo) + rand::random::<u32>() % span) as u16))
                .or_else(|| bind_tcp(SocketAddr::new(ip, 0), &ListenOpts::default()).ok())
        }
    }
}

/// Binds and listens on `ip:port` (SO_REUSEADDR, set by netkit's listener options).
fn bind(ip: IpAddr, port: u16) -> Option<TcpListener> {
    bind_tcp(SocketAddr::new(ip, port), &ListenOpts { backlog: 8, ..ListenOpts::default() }).ok()
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`, also used for IPv6),
/// read once; Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| parse_range(&s))
            .unwrap_or((32768, 60999))
    })
}

/// `"32768\t60999\n"` → (32768, 60999).
fn parse_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    (lo > 0 && lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_range_parses_and_rejects_nonsense() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("0 10"), None);
        assert_eq!(parse_range("10 5"), None);
        assert_eq!(parse_range("x"), None);
    }

    #[tokio::test]
    async fn listeners_get_distinct_ports_in_the_range() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (lo, hi) = ephemeral_range();
        let held: Vec<TcpListener> = (0..50).filter_map(|_| listener(ip, None)).collect();
        assert_eq!(held.len(), 50);
        let mut ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports.iter().all(|p| (lo..=hi).contains(p)), "{ports:?} outside {lo}-{hi}");
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50, "a port was handed out twice while still listening");
    }
}
