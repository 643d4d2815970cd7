//! Online signing for `dns serve --dnssec-keys DIR`, sans-IO: sign a zone when it is loaded or
//! reloaded, and decide from a `now` the driver passes in when its signatures must be refreshed
//! (the re-signed zone gets the next serial so secondaries follow by IXFR).

use crate::serial::Serial;
use crate::wire::dnssec::{DnssecError, SignOptions, ZoneKey, sign_zone};
use crate::wire::name::NameBuf;
use crate::wire::rrtype::code;
use crate::wire::zonefile::{Location, ZoneRecord};
use crate::zone::{Zone, ZoneError};

/// Signatures are made valid from an hour back (clock skew), for `validity` seconds from now.
pub const INCEPTION_SKEW_SECS: u32 = 3600;

/// How a served zone is signed.
#[derive(Debug, Clone, Copy)]
pub struct SignPolicy {
    /// Seconds a fresh signature is valid.
    pub validity_secs: u32,
    /// NSEC3 (RFC 9276 parameters) instead of NSEC.
    pub nsec3: bool,
}

impl SignPolicy {
    /// Re-sign once less than a quarter of the validity is left.
    pub fn refresh_margin(&self) -> u32 {
        self.validity_secs / 4
    }
}

/// Why online signing failed.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    #[error(transparent)]
    Dnssec(#[from] DnssecError),
    #[error(transparent)]
    Zone(#[from] ZoneError),
}

/// Every record of `zone` (for re-signing what is served).
pub fn zone_records(zone: &Zone) -> Vec<ZoneRecord> {
    let mut out = Vec::with_capacity(zone.record_count());
    for (owner, set) in zone.rrsets() {
        for rd in set.rdatas() {
            out.push(ZoneRecord {
                owner: NameBuf::from(owner),
                rtype: set.rtype,
                ttl: set.ttl,
                rdata: rd.to_vec(),
                at: Location::default(),
            });
        }
    }
    out
}

/// Signs `records` of the zone `apex` at time `now` (Unix seconds) and builds the zone.
pub fn sign_records(
    apex: &[u8],
    records: &[ZoneRecord],
    keys: &[ZoneKey],
    policy: SignPolicy,
    now: u64,
) -> Result<Zone, OnlineError> {
    let now32 = now as u32; // RRSIG times are serial-number arithmetic on 32 bits (RFC 4034 §3.1.5)
    let opts = SignOptions {
        nsec3: policy.nsec3,
        inception: now32.wrapping_sub(INCEPTION_SKEW_SECS),
        expiration: now32.wrapping_add(policy.validity_secs),
    };
    let signed = sign_zone(apex, records, keys, opts)?;
    Ok(Zone::from_records(apex, signed)?)
}

/// The expiration of the apex SOA's signature (all signatures of one pass share it).
pub fn expiration(zone: &Zone) -> Option<u32> {
    let node = zone.node(zone.apex())?;
    let sig = node.sigs(code::SOA)?.rdatas().next()?;
    // RRSIG rdata: type covered (2), algorithm, labels, original TTL (4), expiration (4).
    sig.get(8..12).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `zone` must be re-signed at `now`: unsigned, or less than the refresh margin left.
pub fn needs_resign(zone: &Zone, policy: SignPolicy, now: u64) -> bool {
    match expiration(zone) {
        None => true,
        Some(exp) => {
            let deadline = exp.wrapping_sub(policy.refresh_margin());
            !Serial(now as u32).is_older_than(Serial(deadline))
        }
    }
}

/// `records` with the apex SOA serial set to `serial`.
pub fn with_serial(apex: &[u8], mut records: Vec<ZoneRecord>, serial: u32) -> Vec<ZoneRecord> {
    for r in &mut records {
        if r.rtype == code::SOA && r.owner.as_ref() == apex {
            // SOA rdata: MNAME, RNAME (uncompressed names), then SERIAL.
            let mut off = 0;
            for _ in 0..2 {
                while off < r.rdata.len() && r.rdata[off] != 0 {
                    off += 1 + r.rdata[off] as usize;
                }
                off += 1;
            }
            if let Some(b) = r.rdata.get_mut(off..off + 4) {
                b.copy_from_slice(&serial.to_be_bytes());
            }
        }
    }
    records
}

/// The zone re-signed at `now` with the next serial (a new version for IXFR and NOTIFY).
pub fn resign(zone: &Zone, keys: &[ZoneKey], policy: SignPolicy, now: u64) -> Result<Zone, OnlineError> {
    let next = zone.soa().serial.wrapping_add(1);
    let records = with_serial(zone.apex(), zone_records(zone), next);
    sign_records(zone.apex(), &records, keys, policy, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dnssec::{Algorithm, generate_key, load_key};
    use crate::wire::name::from_text;
    use crate::wire::zonefile::{Includes, parse_text};

    const T0: u64 = 1_800_000_000;

    fn setup() -> (NameBuf, Vec<ZoneRecord>, Vec<ZoneKey>) {
        let apex = from_text("example.").unwrap();
        let g = generate_key(&apex, Algorithm::EcdsaP256Sha256, true, 0).unwrap();
        let keys = vec![load_key(&g.public, Some(&g.private)).unwrap()];
        let text = "$ORIGIN example.\n@ 60 SOA ns host 41 2 3 4 5\n@ 60 NS ns\nns 60 A 192.0.2.1\n";
        let recs = parse_text(text, "t", &apex, &Includes::Forbidden).unwrap();
        (apex, recs, keys)
    }

    #[test]
    fn signs_at_load_and_resigns_before_expiry_with_next_serial() {
        let (apex, recs, keys) = setup();
        let policy = SignPolicy { validity_secs: 86_400, nsec3: false };
        let zone = sign_records(&apex, &recs, &keys, policy, T0).unwrap();
        assert_eq!(expiration(&zone), Some((T0 + 86_400) as u32));
        assert_eq!(zone.soa().serial, 41);
        assert!(!needs_resign(&zone, policy, T0));
        assert!(!needs_resign(&zone, policy, T0 + 86_400 * 3 / 4 - 1));
        assert!(needs_resign(&zone, policy, T0 + 86_400 * 3 / 4));
        assert!(needs_resign(&zone, policy, T0 + 10 * 86_400));
        let later = T0 + 80_000;
        let again = resign(&zone, &keys, policy, later).unwrap();
        assert_eq!(again.soa().serial, 42);
        assert_eq!(expiration(&again), Some((later + 86_400) as u32));
        assert!(!needs_resign(&again, policy, later));
        // The re-signed zone has one SOA signature (old ones stripped, not accumulated).
        assert_eq!(again.node(&apex).unwrap().sigs(code::SOA).unwrap().rdatas().count(), 1);
    }

    #[test]
    fn unsigned_zone_needs_signing() {
        let (apex, recs, _) = setup();
        let zone = Zone::from_records(&apex, recs).unwrap();
        assert!(needs_resign(&zone, SignPolicy { validity_secs: 100, nsec3: true }, T0));
    }
}
