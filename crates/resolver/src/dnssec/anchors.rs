//! Trust anchors: the DS and DNSKEY records validation starts from. The IANA root anchors are
//! built in; files in zone-file format (Unbound's `trust-anchor-file`, the output of
//! `appnet dns ds` or `dnssec-dsfromkey`) replace them, which is how the lab and private
//! hierarchies bring their own root.

use appnet_dns::wire::dnssec::DNSKEY;
use appnet_dns::wire::name::{self, NameBuf, is_at_or_below};
use appnet_dns::wire::verify::{DS, ds_matches};
use appnet_dns::wire::zonefile::{Includes, parse_text};
use std::path::Path;

/// The IANA root trust anchors (root-anchors.xml): KSK-2017 (key tag 20326) and KSK-2024 (key
/// tag 38696), as DS records with SHA-256 digests.
pub const IANA_ROOT: &str =
    ". 86400 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D
. 86400 IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16
";

/// Why anchors could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{0}")]
    File(String),
    #[error("{0}: no DS or DNSKEY record in it")]
    Empty(String),
}

/// One anchored zone: the DS and DNSKEY rdata trusted for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Anchor {
    /// The zone (lower-cased wire format).
    pub zone: NameBuf,
    /// Trusted DS rdata.
    pub ds: Vec<Vec<u8>>,
    /// Trusted DNSKEY rdata.
    pub dnskeys: Vec<Vec<u8>>,
}

impl Anchor {
    /// Whether DNSKEY rdata `key` is trusted by this anchor (listed, or digested by a DS).
    pub fn trusts(&self, key: &[u8]) -> bool {
        self.dnskeys.iter().any(|k| k[..] == key[..])
            || self.ds.iter().any(|ds| ds_matches(&self.zone, key, ds) == Some(true))
    }
}

/// The anchors validation starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    anchors: Vec<Anchor>,
}

impl TrustAnchors {
    /// Anchors given as data (tests, fuzzing, a caller with its own store).
    pub fn new(anchors: Vec<Anchor>) -> TrustAnchors {
        TrustAnchors { anchors }
    }

    /// The built-in IANA root anchors.
    pub fn iana() -> TrustAnchors {
        TrustAnchors::from_text(IANA_ROOT, "built-in root anchor").unwrap_or_default()
    }

    /// The anchors in `files` (all of them together), or the IANA root when `files` is empty.
    pub fn load(files: &[impl AsRef<Path>]) -> Result<TrustAnchors, AnchorError> {
        if files.is_empty() {
            return Ok(TrustAnchors::iana());
        }
        let mut all = TrustAnchors::default();
        for f in files {
            let f = f.as_ref();
            let text =
                std::fs::read_to_string(f).map_err(|e| AnchorError::File(format!("{}: {e}", f.display())))?;
            all.merge(TrustAnchors::from_text(&text, &f.display().to_string())?);
        }
        Ok(all)
    }

    /// Anchors from zone-file text (DS and DNSKEY records; other types are ignored).
    pub fn from_text(text: &str, label: &str) -> Result<TrustAnchors, AnchorError> {
        let records = parse_text(text, label, name::ROOT, &Includes::Forbidden)
            .map_err(|e| AnchorError::File(e.to_string()))?;
        let mut out = TrustAnchors::default();
        for r in records.iter().filter(|r| r.rtype == DS || r.rtype == DNSKEY) {
            let zone = name::to_lower(&r.owner);
            let i = match out.anchors.iter().position(|a| a.zone == zone) {
                Some(i) => i,
                None => {
                    out.anchors.push(Anchor { zone, ..Anchor::default() });
                    out.anchors.len() - 1
                }
            };
            let a = &mut out.anchors[i];
            if r.rtype == DS { a.ds.push(r.rdata.clone()) } else { a.dnskeys.push(r.rdata.clone()) }
        }
        if out.anchors.is_empty() {
            return Err(AnchorError::Empty(label.to_string()));
        }
        Ok(out)
    }

    fn merge(&mut self, other: TrustAnchors) {
        for a in other.anchors {
            match self.anchors.iter_mut().find(|b| b.zone == a.zone) {
                Some(b) => {
                    b.ds.extend(a.ds);
                    b.dnskeys.extend(a.dnskeys);
                }
                None => self.anchors.push(a),
            }
        }
    }

    /// The anchor closest above (or at) `name` (lower-cased), if any covers it.
    pub fn closest(&self, name: &[u8]) -> Option<&Anchor> {
        self.anchors.iter().filter(|a| is_at_or_below(name, &a.zone)).max_by_key(|a| a.zone.len())
    }

    /// The anchored zones.
    pub fn zones(&self) -> impl Iterator<Item = &[u8]> {
        self.anchors.iter().map(|a| &a.zone[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iana_root_anchor_has_both_ksks() {
        let a = TrustAnchors::iana();
        let root = a.closest(name::ROOT).expect("a root anchor");
        let tags: Vec<u16> = root.ds.iter().map(|d| u16::from_be_bytes([d[0], d[1]])).collect();
        assert_eq!(tags, [20326, 38696]);
        let www = name::from_text("www.example.com.").unwrap();
        assert_eq!(a.closest(&www).map(|a| a.zone.clone()), Some(NameBuf::from(name::ROOT)));
    }

    #[test]
    fn files_hold_ds_and_dnskey_for_any_zone_and_the_closest_wins() {
        let text = "example.com. 3600 IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n\
                    example.com. IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n";
        let a = TrustAnchors::from_text(text, "t").unwrap();
        let www = name::from_text("www.example.com.").unwrap();
        let got = a.closest(&www).unwrap();
        assert_eq!((got.ds.len(), got.dnskeys.len()), (1, 1));
        assert!(a.closest(&name::from_text("example.org.").unwrap()).is_none());
        assert!(TrustAnchors::from_text("example.com. IN A 192.0.2.1\n", "t").is_err());
    }
}
