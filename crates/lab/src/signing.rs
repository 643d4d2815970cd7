//! DNSSEC for the lab: one key per signed zone in `--dir/keys` (generated on the first start,
//! reused after, private files 0600), the root's trust anchor written to `--dir/root.anchor`
//! (zone-file DS, as Unbound's `trust-anchor-file` and `appnet dns resolver --trust-anchor` read
//! it) and `--dir/root.anchor.conf` (BIND's `trust-anchors` statement, for `delv -a`), and the
//! registrar's TSIG key for the com server's RFC 2136 updates.
//!
//! The servers sign online with the whole key directory (`DnsConfig::dnssec_keys`), so each
//! parent publishes the DS of every child whose key is there: the chain root → TLD → zone
//! follows from the keys alone. The CDN's zone is answered dynamically and left unsigned (no key,
//! so no DS: an insecure delegation, as for most real CDNs).

use crate::topology::{Topology, ZoneSpec};
use crate::zones::fqdn;
use appnet_dns::wire::dnssec::{self, Algorithm};
use appnet_dns::wire::name::from_text;
use std::path::{Path, PathBuf};

/// Where the zone keys are kept under the lab directory.
pub const KEY_DIR: &str = "keys";
/// The root anchor (DS, zone-file format).
pub const ANCHOR_FILE: &str = "root.anchor";
/// The root anchor as BIND's `trust-anchors` statement (`delv -a`).
pub const ANCHOR_CONF: &str = "root.anchor.conf";
/// The registrar's TSIG key (tsig-keygen format).
pub const REGISTRAR_KEY_FILE: &str = "registrar.key";
/// The registrar's TSIG key name.
pub const REGISTRAR_KEY_NAME: &str = "registrar";

/// What [`prepare`] made ready.
#[derive(Debug, Clone)]
pub struct LabKeys {
    /// The key directory every primary signs with.
    pub key_dir: PathBuf,
    /// The root anchor file (DS records).
    pub anchor: PathBuf,
    /// The registrar's TSIG key file.
    pub registrar_key: PathBuf,
}

/// Whether the lab signs `zone` (every zone but the CDN's dynamic one).
pub fn is_signed(topo: &Topology, zone: &ZoneSpec) -> bool {
    topo.cdn.as_ref().is_none_or(|c| fqdn(&c.zone) != fqdn(&zone.name))
}

/// The BIND file stem prefix of a zone's keys (`Kcom+013+`, `K.+013+` for the root).
fn stem_prefix(zone: &str) -> String {
    let z = fqdn(zone);
    let z = if z == "." { z } else { z.trim_end_matches('.').to_string() };
    format!("K{z}+{:03}+", Algorithm::EcdsaP256Sha256.number())
}

/// The `.key` file of `zone` in `dir` that has its `.private` beside it, if any.
fn existing_key(dir: &Path, zone: &str) -> Option<PathBuf> {
    let prefix = stem_prefix(zone);
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "key")
                && p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&prefix))
                && p.with_extension("private").exists()
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Ensures a key (a combined signing key: one ECDSA P-256 key with the SEP flag signs both the
/// DNSKEY set and the zone) for every signed zone, the anchors and the registrar key; returns
/// where they are. Keys already in `dir/keys` are kept, so the anchor survives restarts.
pub fn prepare(topo: &Topology, dir: &Path) -> std::io::Result<LabKeys> {
    let key_dir = dir.join(KEY_DIR);
    std::fs::create_dir_all(&key_dir)?;
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut root_key = None;
    for zone in topo.zones.iter().filter(|z| is_signed(topo, z)) {
        let path = match existing_key(&key_dir, &zone.name) {
            Some(p) => p,
            None => {
                let apex = from_text(&fqdn(&zone.name)).map_err(invalid)?;
                let key = dnssec::generate_key(&apex, Algorithm::EcdsaP256Sha256, true, unix_now())
                    .map_err(|e| invalid(e.to_string()))?;
                appnet_netkit::files::write_private(
                    &key_dir.join(format!("{}.private", key.stem)),
                    key.private.as_bytes(),
                )?;
                let public = key_dir.join(format!("{}.key", key.stem));
                appnet_netkit::files::write_private(&public, key.public.as_bytes())?;
                public
            }
        };
        if fqdn(&zone.name) == "." {
            root_key = Some(path);
        }
    }
    let anchor = dir.join(ANCHOR_FILE);
    if let Some(root) = root_key {
        let public = std::fs::read_to_string(&root)?;
        let ds = dnssec::ds_text(&public).map_err(|e| invalid(e.to_string()))?;
        let text =
            format!("; the appnet lab's root trust anchor (DS of the root key {})\n{ds}\n", root.display());
        appnet_netkit::files::write_atomic(&anchor, text.as_bytes())?;
        appnet_netkit::files::write_atomic(&dir.join(ANCHOR_CONF), bind_anchor(&ds).as_bytes())?;
    }
    let registrar_key = dir.join(REGISTRAR_KEY_FILE);
    if !registrar_key.exists() {
        // appnet's key-file reader takes "//" and "#" for comments even inside the quoted
        // secret, so draw secrets until the base64 has neither (a few draws at most).
        let mut secret = base64(&rand::random::<[u8; 32]>());
        for _ in 0..1000 {
            if !secret.contains("//") {
                break;
            }
            secret = base64(&rand::random::<[u8; 32]>());
        }
        let text = format!(
            "key \"{REGISTRAR_KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"
        );
        appnet_netkit::files::write_private(&registrar_key, text.as_bytes())?;
    }
    Ok(LabKeys { key_dir, anchor, registrar_key })
}

/// The DS line `. TTL IN DS TAG ALG TYPE HEX` as `trust-anchors { . static-ds TAG ALG TYPE "HEX"; };`.
fn bind_anchor(ds: &str) -> String {
    let f: Vec<&str> = ds.split_whitespace().collect();
    match f.iter().position(|w| *w == "DS") {
        Some(i) if f.len() >= i + 5 => format!(
            "trust-anchors {{\n\t{} static-ds {} {} {} \"{}\";\n}};\n",
            f[0],
            f[i + 1],
            f[i + 2],
            f[i + 3],
            f[i + 4..].concat()
        ),
        _ => String::new(),
    }
}

/// Standard base64 (RFC 4648) of a TSIG secret.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn keys_are_made_once_private_and_anchor_the_root() {
        let dir = appnet_netkit::harness::TempDir::new("lab-keys");
        let topo = Topology::default();
        let first = prepare(&topo, &dir).unwrap();
        let anchor = std::fs::read_to_string(&first.anchor).unwrap();
        assert!(anchor.contains(". 86400 IN DS ") || anchor.contains("IN DS"), "{anchor}");
        let conf = std::fs::read_to_string(dir.join(ANCHOR_CONF)).unwrap();
        assert!(conf.starts_with("trust-anchors {\n\t. static-ds "), "{conf}");
        let mut files: Vec<_> =
            std::fs::read_dir(&first.key_dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        // One key (two files) per zone, the CDN's excepted.
        assert_eq!(files.len(), 2 * (topo.zones.len() - 1));
        for f in files.iter().chain([&first.registrar_key]) {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600, "{}", f.display());
        }
        // A second start reuses them: same files, same anchor.
        prepare(&topo, &dir).unwrap();
        let mut again: Vec<_> =
            std::fs::read_dir(&first.key_dir).unwrap().map(|e| e.unwrap().path()).collect();
        again.sort();
        assert_eq!(files, again);
        assert_eq!(anchor, std::fs::read_to_string(&first.anchor).unwrap());
        let keys =
            appnet_dns::wire::tsig::parse_key_file(&std::fs::read_to_string(&first.registrar_key).unwrap());
        assert_eq!(keys.unwrap().len(), 1);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
