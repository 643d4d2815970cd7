//! Root hints: where iterative resolution starts. Read from a standard `named.root` file, or
//! the built-in copy of the real root servers' addresses.

use appnet_dns::wire::name::{self, NameBuf};
use appnet_dns::wire::rrtype::{code, embedded_name};
use appnet_dns::wire::zonefile::{Includes, parse_text};
use std::net::IpAddr;
use std::path::Path;

/// The root servers and their IPv4 addresses (IANA's root hints).
const BUILT_IN: &str = "
.                        3600000      NS    A.ROOT-SERVERS.NET.
A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
.                        3600000      NS    B.ROOT-SERVERS.NET.
B.ROOT-SERVERS.NET.      3600000      A     170.247.170.2
.                        3600000      NS    C.ROOT-SERVERS.NET.
C.ROOT-SERVERS.NET.      3600000      A     192.33.4.12
.                        3600000      NS    D.ROOT-SERVERS.NET.
D.ROOT-SERVERS.NET.      3600000      A     199.7.91.13
.                        3600000      NS    E.ROOT-SERVERS.NET.
E.ROOT-SERVERS.NET.      3600000      A     192.203.230.10
.                        3600000      NS    F.ROOT-SERVERS.NET.
F.ROOT-SERVERS.NET.      3600000      A     192.5.5.241
.                        3600000      NS    G.ROOT-SERVERS.NET.
G.ROOT-SERVERS.NET.      3600000      A     192.112.36.4
.                        3600000      NS    H.ROOT-SERVERS.NET.
H.ROOT-SERVERS.NET.      3600000      A     198.97.190.53
.                        3600000      NS    I.ROOT-SERVERS.NET.
I.ROOT-SERVERS.NET.      3600000      A     192.36.148.17
.                        3600000      NS    J.ROOT-SERVERS.NET.
J.ROOT-SERVERS.NET.      3600000      A     192.58.128.30
.                        3600000      NS    K.ROOT-SERVERS.NET.
K.ROOT-SERVERS.NET.      3600000      A     193.0.14.129
.                        3600000      NS    L.ROOT-SERVERS.NET.
L.ROOT-SERVERS.NET.      3600000      A     199.7.83.42
.                        3600000      NS    M.ROOT-SERVERS.NET.
M.ROOT-SERVERS.NET.      3600000      A     202.12.27.33
";

/// Root servers: names with their addresses.
pub type Roots = Vec<(NameBuf, Vec<IpAddr>)>;

/// The built-in root hints.
pub fn built_in() -> Roots {
    parse(BUILT_IN, "<built-in root hints>").expect("the built-in hints parse")
}

/// Reads a root hints file.
pub fn load(path: &Path) -> Result<Roots, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses root hints text: NS records at the root and the addresses of their targets.
pub fn parse(text: &str, label: &str) -> Result<Roots, String> {
    let records = parse_text(text, label, name::ROOT, &Includes::Forbidden).map_err(|e| e.to_string())?;
    let mut roots: Roots = Vec::new();
    for r in records.iter().filter(|r| r.rtype == code::NS && &r.owner[..] == name::ROOT) {
        if let Some(target) = embedded_name(&r.rdata, 0) {
            roots.push((name::to_lower(target), Vec::new()));
        }
    }
    for r in &records {
        let ip = match (r.rtype, r.rdata.len()) {
            (code::A, 4) => IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).expect("length checked")),
            (code::AAAA, 16) => IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).expect("length checked")),
            _ => continue,
        };
        if let Some(entry) = roots.iter_mut().find(|(n, _)| *n == name::to_lower(&r.owner)) {
            entry.1.push(ip);
        }
    }
    roots.retain(|(_, addrs)| !addrs.is_empty());
    if roots.is_empty() {
        return Err(format!("{label}: no root server with an address (need `. NS name` and `name A addr`)"));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_hints_list_thirteen_roots() {
        let roots = built_in();
        assert_eq!(roots.len(), 13);
        assert_eq!(name::to_text(&roots[0].0), "a.root-servers.net.");
        assert_eq!(roots[0].1, vec!["198.41.0.4".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn hints_without_addresses_are_rejected() {
        assert!(parse(". 3600 NS a.root.\n", "x").is_err());
    }
}
