//! Who may transfer our zones, and which TSIG key goes with which remote server. Entries read
//! like BIND's `allow-transfer { 192.0.2.0/24; key xfr; };` and `server ... { keys ...; }`,
//! one per string: `PREFIX`, `PREFIX key NAME` (that address *and* signed with that key) or
//! `key NAME` (any address, signed with that key).

use crate::wire::name::{self, NameBuf};
use crate::wire::tsig::{Key, Keyring};
use appnet_netkit::acl::AccessList;
use std::net::IpAddr;
use std::sync::Arc;

/// Splits `THING key NAME` into `THING` and the key name (`THING` may be empty).
pub fn split_keyed(spec: &str) -> Result<(&str, Option<&str>), String> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    match words[..] {
        [thing] => Ok((thing, None)),
        ["key", key] => Ok(("", Some(key))),
        [thing, "key", key] => Ok((thing, Some(key))),
        _ => Err(format!("expected ADDR, ADDR key NAME or key NAME, got {spec:?}")),
    }
}

/// One allow-transfer entry.
#[derive(Debug, Clone)]
struct Rule {
    /// None: any address.
    prefix: Option<AccessList>,
    /// Some: the request must be signed with this key (lower-cased wire name).
    key: Option<NameBuf>,
}

/// The allow-transfer list.
#[derive(Debug, Clone, Default)]
pub struct TransferAcl {
    rules: Vec<Rule>,
}

impl TransferAcl {
    /// Parses the entries; every key named must be in `keys`.
    pub fn parse<S: AsRef<str>>(items: &[S], keys: &Keyring) -> Result<TransferAcl, String> {
        let mut rules = Vec::new();
        for item in items {
            let (prefix, key) = split_keyed(item.as_ref())?;
            let prefix = if prefix.is_empty() { None } else { Some(AccessList::parse(&[prefix])?) };
            let key = match key {
                Some(k) => Some(
                    keys.by_text(k)
                        .ok_or_else(|| format!("allow-transfer names the unknown TSIG key {k:?}"))?
                        .name
                        .clone(),
                ),
                None => None,
            };
            rules.push(Rule { prefix, key });
        }
        Ok(TransferAcl { rules })
    }

    /// Whether `ip`, whose request was signed with `key` (verified), may transfer.
    pub fn allows(&self, ip: IpAddr, key: Option<&[u8]>) -> bool {
        self.rules.iter().any(|r| {
            r.prefix.as_ref().is_none_or(|p| p.contains(ip))
                && r.key.as_deref().is_none_or(|k| key.is_some_and(|got| name::to_lower(got)[..] == *k))
        })
    }

    /// Whether the list is empty (nobody may transfer).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The key to use with each remote server (primaries we transfer from, secondaries we NOTIFY),
/// like BIND's `server ADDR { keys NAME; };`.
#[derive(Debug, Clone, Default)]
pub struct ServerKeys {
    entries: Vec<(IpAddr, Option<u16>, Arc<Key>)>,
}

impl ServerKeys {
    /// Parses `ADDR key NAME` or `ADDR:PORT key NAME` entries.
    pub fn parse<S: AsRef<str>>(items: &[S], keys: &Keyring) -> Result<ServerKeys, String> {
        let mut entries = Vec::new();
        for item in items {
            let (addr, key) = split_keyed(item.as_ref())?;
            let key =
                key.ok_or_else(|| format!("server key entry wants ADDR key NAME, got {:?}", item.as_ref()))?;
            let key = keys.by_text(key).ok_or_else(|| format!("unknown TSIG key {key:?}"))?.clone();
            let (ip, port) = if let Ok(sa) = addr.parse::<std::net::SocketAddr>() {
                (sa.ip(), Some(sa.port()))
            } else {
                (addr.parse::<IpAddr>().map_err(|_| format!("bad server address {addr:?}"))?, None)
            };
            entries.push((appnet_netkit::acl::canonical(ip), port, key));
        }
        Ok(ServerKeys { entries })
    }

    /// The key for `server` (an entry with its port first, then one for any port).
    pub fn for_server(&self, server: std::net::SocketAddr) -> Option<&Arc<Key>> {
        let ip = appnet_netkit::acl::canonical(server.ip());
        let exact = self.entries.iter().find(|(i, p, _)| *i == ip && *p == Some(server.port()));
        exact.or_else(|| self.entries.iter().find(|(i, p, _)| *i == ip && p.is_none())).map(|(_, _, k)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keyring {
        Keyring::new([Key::parse_spec("xfr:hmac-sha256:c2VjcmV0c2VjcmV0").unwrap()])
    }

    #[test]
    fn keyed_entries() {
        let acl = TransferAcl::parse(&["127.0.0.1", "192.0.2.0/24 key xfr", "key xfr."], &keys()).unwrap();
        let xfr = name::from_text("XFR").unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let net: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(acl.allows(lo, None));
        assert!(!acl.allows(net, None));
        assert!(acl.allows(net, Some(&xfr)));
        assert!(acl.allows(other, Some(&xfr)));
        assert!(!acl.allows(other, None));
        let only_keyed = TransferAcl::parse(&["192.0.2.0/24 key xfr"], &keys()).unwrap();
        assert!(!only_keyed.allows(other, Some(&xfr)));
        assert!(TransferAcl::parse(&["10.0.0.0/8 key nope"], &keys()).is_err());
        assert!(TransferAcl::parse(&["10.0.0.0/8 key"], &keys()).is_err());
    }

    #[test]
    fn server_keys_by_address_and_port() {
        let sk = ServerKeys::parse(&["127.0.0.1:5300 key xfr"], &keys()).unwrap();
        assert!(sk.for_server("127.0.0.1:5300".parse().unwrap()).is_some());
        assert!(sk.for_server("127.0.0.1:53".parse().unwrap()).is_none());
        let any = ServerKeys::parse(&["127.0.0.1 key xfr"], &keys()).unwrap();
        assert!(any.for_server("127.0.0.1:53".parse().unwrap()).is_some());
    }
}
