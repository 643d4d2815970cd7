//! Configuration of the authoritative server, shared by flags, TOML (`[dns]`) and the lab.

use crate::rrl::RrlConfig;
use crate::wire::tsig::{Key, Keyring, parse_key_file};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A zone served from a file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ZoneSource {
    /// The zone's name; `None` takes it from the file's `$ORIGIN`, else the file name
    /// (`example.com.zone`, `db.example.com`).
    #[serde(default)]
    pub name: Option<String>,
    pub file: PathBuf,
}

/// A zone this server is secondary for.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecondaryZone {
    pub name: String,
    /// The primary to transfer from (and accept NOTIFY from).
    pub primary: SocketAddr,
}

/// The authoritative server's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// UDP and TCP address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Zones served from files (this server is their primary).
    pub zones: Vec<ZoneSource>,
    /// Zones transferred from a primary.
    pub secondaries: Vec<SecondaryZone>,
    /// Where secondary zones are kept on disk (written crash-safely after each transfer), and
    /// the IXFR journal of every zone, primary zones included (`NAME.zone.journal`, written
    /// after each reload or transfer that changes the zone), so IXFR survives a restart.
    /// `None`: secondary zones and journals are kept in memory only.
    pub state_dir: Option<PathBuf>,
    /// Who may transfer our zones (AXFR/IXFR); others get REFUSED. Entries: `PREFIX`,
    /// `PREFIX key NAME` (also signed with that TSIG key) or `key NAME` (any address, signed).
    pub allow_transfer: Vec<String>,
    /// Secondaries to NOTIFY when a zone is reloaded with a higher serial.
    pub notify: Vec<SocketAddr>,
    /// TSIG keys as `NAME:ALGORITHM:BASE64SECRET` (hmac-sha1/-sha256/-sha384/-sha512).
    pub tsig_keys: Vec<String>,
    /// Files of TSIG keys in BIND's format (`key "NAME" { algorithm ...; secret "..."; };`).
    pub tsig_key_files: Vec<PathBuf>,
    /// The TSIG key to use with a remote server, `ADDR[:PORT] key NAME` (like BIND's `server`
    /// statement): our SOA/IXFR/AXFR queries to that primary and NOTIFYs to that secondary are
    /// signed with it, its answers and its NOTIFYs must be signed with it.
    pub server_keys: Vec<String>,
    /// Bytes of zone changes kept per zone for IXFR (older changes are answered with AXFR).
    pub journal_max_bytes: usize,
    /// UDP worker threads (up to four share a socket; the sockets share the port with
    /// SO_REUSEPORT); 0 = one per CPU. With one per CPU each is pinned to its own CPU.
    pub udp_workers: usize,
    /// Largest UDP response we send, and the EDNS payload size we advertise.
    pub max_udp_payload: u16,
    /// Seconds a TCP connection may wait for its next whole query (RFC 7766 §6.2.3), the first
    /// included; trickled bytes do not extend it.
    pub tcp_idle_timeout_secs: u64,
    /// Most TCP connections at once. When full, a newcomer takes the place of the connection
    /// that has waited longest for a query; it is refused only if every connection is busy.
    pub max_tcp_connections: usize,
    /// Most TCP connections from one address; 0 = an eighth of `max_tcp_connections`, 1 to 64
    /// (64 at the default cap), so one client cannot hold every connection.
    pub max_tcp_per_ip: usize,
    /// Response rate limiting.
    pub rrl: RrlConfig,
    /// Seconds between SOA checks that NOTIFYs may start for one secondary zone; NOTIFYs in
    /// between are folded into one check at the interval's end (0: no pacing).
    pub notify_min_interval_secs: u64,
    /// Sign the zone files at load with the keys in this directory (BIND's K*.key/.private, as
    /// `appnet dns keygen` writes), re-sign after each reload and before signatures expire.
    /// `None`: zones are served as they are (pre-signed zones included).
    pub dnssec_keys: Option<PathBuf>,
    /// Seconds a signature made online is valid; zones are re-signed (next serial) once less
    /// than a quarter of it is left.
    pub dnssec_validity_secs: u64,
    /// Sign online with NSEC3 (RFC 9276: no salt, 0 iterations) instead of NSEC.
    pub dnssec_nsec3: bool,
    /// RFC 2136 updates allowed, `ZONE=KEYNAME` (KEYNAME: a TSIG key given with `tsig_keys` or
    /// `tsig_key_files`); updates of other zones, unsigned or signed with another key are REFUSED.
    pub allow_update: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 10053)),
            zones: Vec::new(),
            secondaries: Vec::new(),
            state_dir: None,
            allow_transfer: Vec::new(),
            notify: Vec::new(),
            tsig_keys: Vec::new(),
            tsig_key_files: Vec::new(),
            server_keys: Vec::new(),
            journal_max_bytes: 16 << 20,
            udp_workers: 0,
            max_udp_payload: 1232,
            tcp_idle_timeout_secs: 10,
            max_tcp_connections: 512,
            max_tcp_per_ip: 0,
            rrl: RrlConfig::default(),
            notify_min_interval_secs: 1,
            dnssec_keys: None,
            dnssec_validity_secs: 14 * 86_400,
            dnssec_nsec3: false,
            allow_update: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// `allow_update` as (zone apex, key name), checked against the keyring.
    pub fn update_acl(&self, keys: &Keyring) -> Result<Vec<(crate::wire::name::NameBuf, String)>, String> {
        self.allow_update
            .iter()
            .map(|spec| {
                let (zone, key) = spec.split_once('=').ok_or_else(|| format!("--allow-update {spec:?}: want ZONE=KEYNAME"))?;
                let apex = crate::wire::name::from_text(zone.trim()).map_err(|e| format!("--allow-update {spec:?}: {e}"))?;
                if keys.by_text(key.trim()).is_none() {
                    return Err(format!("--allow-update {spec:?}: no TSIG key named {:?} (give it with --tsig-key or --tsig-key-file)", key.trim()));
                }
                Ok((crate::wire::name::to_lower(&apex), key.trim().to_string()))
            })
            .collect()
    }

    /// The online signing policy, when `dnssec_keys` is set.
    pub fn sign_policy(&self) -> Option<(PathBuf, crate::online::SignPolicy)> {
        let validity =
            u32::try_from(self.dnssec_validity_secs.clamp(3600, 0x7fff_ffff)).unwrap_or(0x7fff_ffff);
        self.dnssec_keys
            .clone()
            .map(|d| (d, crate::online::SignPolicy { validity_secs: validity, nsec3: self.dnssec_nsec3 }))
    }

    /// The timer bounds and NOTIFY pacing of secondary zones.
    pub fn secondary_params(&self) -> crate::secondary::Params {
        crate::secondary::Params {
            notify_min_interval: Duration::from_secs(self.notify_min_interval_secs),
            ..Default::default()
        }
    }

    /// The TCP idle timeout as a duration.
    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_timeout_secs.max(1))
    }

    /// The TCP connection policy: caps, and the idle timeout as the deadline for every whole
    /// query (the first one too).
    pub fn tcp_limits(&self) -> appnet_netkit::accept::ConnLimits {
        let max = self.max_tcp_connections.max(1);
        let per_ip = match self.max_tcp_per_ip {
            0 => appnet_netkit::accept::default_per_ip(max),
            n => n.min(max),
        };
        appnet_netkit::accept::ConnLimits {
            max_connections: max,
            max_per_ip: per_ip,
            request_timeout: self.tcp_idle_timeout(),
            idle_timeout: self.tcp_idle_timeout(),
        }
    }

    /// The TSIG keys of `tsig_keys` and `tsig_key_files`.
    pub fn keyring(&self) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for spec in &self.tsig_keys {
            keys.push(Key::parse_spec(spec)?);
        }
        for file in &self.tsig_key_files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the TSIG key file {}: {e}", file.display()))?;
            keys.extend(parse_key_file(&text).map_err(|e| format!("{}: {e}", file.display()))?);
        }
        Ok(Keyring::new(keys))
    }

    /// Number of UDP worker sockets to open.
    pub fn workers(&self) -> usize {
        if self.udp_workers > 0 {
            self.udp_workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

impl ZoneSource {
    /// A zone from the `--zone` flag's form: `NAME=FILE`, or `FILE` (also when the whole
    /// argument names an existing file, since file names may contain '=').
    pub fn from_arg(arg: &str) -> ZoneSource {
        match arg.split_once('=') {
            Some((name, file)) if !std::path::Path::new(arg).exists() => {
                ZoneSource { name: Some(name.to_string()), file: PathBuf::from(file) }
            }
            _ => ZoneSource { name: None, file: PathBuf::from(arg) },
        }
    }
}

impl DnsConfig {
    /// Adds a secondary zone from `ZONE=PRIMARY` or `ZONE=PRIMARY key NAME` (the `--secondary`
    /// flag's form); a key is recorded for that primary in `server_keys`.
    pub fn add_secondary(&mut self, spec: &str) -> Result<(), String> {
        let Some((zone, primary)) = spec.split_once('=') else {
            return Err(format!(
                "--secondary wants ZONE=PRIMARY (e.g. example.com=192.0.2.1:53), got {spec:?}"
            ));
        };
        let (primary, key) = crate::acl::split_keyed(primary)?;
        let primary =
            server_addr(primary).map_err(|e| format!("bad primary address in --secondary {spec}: {e}"))?;
        if let Some(key) = key {
            self.server_keys.push(format!("{primary} key {key}"));
        }
        self.secondaries.push(SecondaryZone { name: zone.to_string(), primary });
        Ok(())
    }

    /// Adds a NOTIFY target from `ADDR` or `ADDR key NAME` (the `--notify` flag's form).
    pub fn add_notify(&mut self, spec: &str) -> Result<(), String> {
        let (target, key) = crate::acl::split_keyed(spec)?;
        let target = server_addr(target).map_err(|e| format!("bad address in --notify {spec}: {e}"))?;
        if let Some(key) = key {
            self.server_keys.push(format!("{target} key {key}"));
        }
        self.notify.push(target);
        Ok(())
    }
}

/// A DNS server's address: `ADDR:PORT`, `[V6]:PORT`, or an address alone (`192.0.2.1`, `::1`,
/// `[::1]`) meaning port 53.
pub fn server_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => Err(format!("expected ADDR or ADDR:PORT, got {text:?}")),
    }
}

/// The zone name for a file: the explicit one, the file's first `$ORIGIN`, or its file name.
pub fn zone_name_for(source: &ZoneSource) -> Result<String, String> {
    if let Some(name) = &source.name {
        return Ok(name.clone());
    }
    if let Ok(text) = std::fs::read_to_string(&source.file) {
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("$ORIGIN").or_else(|| t.strip_prefix("$origin"))
                && let Some(name) = rest.split_whitespace().next()
            {
                return Ok(name.to_string());
            }
            if !t.is_empty() && !t.starts_with(';') && !t.starts_with('$') {
                break;
            }
        }
    }
    let file = source.file.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    let stem = file
        .strip_suffix(".zone")
        .or_else(|| file.strip_suffix(".db"))
        .or_else(|| file.strip_prefix("db."))
        .unwrap_or(file);
    if stem.is_empty() || !stem.contains('.') {
        return Err(format!(
            "cannot tell the zone name of {}: add $ORIGIN to the file or pass NAME=FILE",
            source.file.display()
        ));
    }
    Ok(stem.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_default_to_port_53() {
        let a = |t: &str| server_addr(t).unwrap().to_string();
        assert_eq!(a("192.0.2.1"), "192.0.2.1:53");
        assert_eq!(a("192.0.2.1:5353"), "192.0.2.1:5353");
        assert_eq!(a("::1"), "[::1]:53");
        assert_eq!(a("[::1]"), "[::1]:53");
        assert_eq!(a("[::1]:5353"), "[::1]:5353");
        for bad in ["", "ns1.example", "192.0.2.1:x", "[::1"] {
            assert!(server_addr(bad).unwrap_err().contains(&format!("{bad:?}")), "{bad}");
        }
    }

    #[test]
    fn secondary_and_notify_specs() {
        let mut c = DnsConfig::default();
        c.add_secondary("example.com=192.0.2.1:53").unwrap();
        c.add_secondary("example.net=[::1]:5353 key xfr").unwrap();
        c.add_notify("192.0.2.2 key xfr").unwrap();
        assert_eq!(
            c.secondaries[0],
            SecondaryZone { name: "example.com".into(), primary: "192.0.2.1:53".parse().unwrap() }
        );
        assert_eq!(c.secondaries[1].primary, "[::1]:5353".parse().unwrap());
        assert_eq!(c.notify, ["192.0.2.2:53".parse().unwrap()]);
        assert_eq!(c.server_keys, ["[::1]:5353 key xfr", "192.0.2.2:53 key xfr"]);
        assert!(c.add_secondary("example.com").unwrap_err().contains("ZONE=PRIMARY"));
        assert!(c.add_secondary("example.com=primary.example").is_err());
        assert!(c.add_notify("192.0.2.2 key").is_err());
    }

    #[test]
    fn zone_args() {
        assert_eq!(
            ZoneSource::from_arg("example.com=db.example"),
            ZoneSource { name: Some("example.com".into()), file: "db.example".into() }
        );
        assert_eq!(
            ZoneSource::from_arg("example.com.zone"),
            ZoneSource { name: None, file: "example.com.zone".into() }
        );
    }
}
