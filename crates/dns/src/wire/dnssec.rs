//! DNSSEC keys and zone signing (RFC 4033–4035, RFC 5155, RFC 9276), on top of `domain`'s
//! `unstable-sign` API, which stays inside this module.
//!
//! What `domain` does well and is used as is: key generation and the BIND `.private` format
//! (ring backend), NSEC and NSEC3 chain generation (RFC 9077 TTLs, glue and occluded names left
//! out), RRSIG generation over canonically sorted RRsets. What it lacks and is added here: the
//! key directory (`K<zone>+<alg>+<tag>.key/.private`), the DNSKEY RRset at the apex signed by
//! the KSKs, DS records at delegations whose child keys are known, DS digests, stripping an
//! already signed zone so it can be signed again, and plain-data in/out ([`ZoneRecord`]).

use super::name::{self, NameBuf};
use super::rrtype::code;
use super::zonefile::{Location, ZoneRecord};
use bytes::Bytes;
use domain::base::iana::{Class, Rtype};
use domain::base::name::{FlattenInto, Name, ParsedName};
use domain::base::rdata::{ComposeRecordData, ParseRecordData};
use domain::base::{Record, Ttl};
use domain::crypto::sign::{GenerateParams, KeyPair, SecretKeyBytes, generate};
use domain::dep::octseq::Parser;
use domain::dnssec::sign::SigningConfig;
use domain::dnssec::sign::denial::config::DenialConfig;
use domain::dnssec::sign::denial::nsec::GenerateNsecConfig;
use domain::dnssec::sign::denial::nsec3::GenerateNsec3Config;
use domain::dnssec::sign::keys::SigningKey;
use domain::dnssec::sign::records::{Rrset, SortedRecords};
use domain::dnssec::sign::signatures::rrsigs::sign_rrset;
use domain::dnssec::sign::traits::SignableZoneInPlace;
use domain::rdata::dnssec::Timestamp;
use domain::rdata::{Dnskey, Nsec3param, ZoneRecordData};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// DNSKEY flags of a zone-signing key (Zone Key bit).
pub const FLAGS_ZSK: u16 = 256;
/// DNSKEY flags of a key-signing key (Zone Key + Secure Entry Point).
pub const FLAGS_KSK: u16 = 257;
/// DNSKEY record type.
pub const DNSKEY: u16 = 48;
/// NSEC record type.
pub const NSEC: u16 = 47;
/// NSEC3 record type.
pub const NSEC3: u16 = 50;
/// NSEC3PARAM record type.
pub const NSEC3PARAM: u16 = 51;

/// Why a DNSSEC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DnssecError {
    #[error("unsupported algorithm {0:?} (use ecdsap256sha256 or ed25519)")]
    Algorithm(String),
    #[error("key generation failed: {0}")]
    Generate(String),
    #[error("bad key file: {0}")]
    KeyFile(String),
    #[error("{0}")]
    Io(String),
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("zone data: {0}")]
    Zone(String),
}

/// The signing algorithms `keygen` offers (RFC 8624 §3.1: the recommended ones ring can make).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Algorithm 13.
    EcdsaP256Sha256,
    /// Algorithm 15.
    Ed25519,
}

impl std::str::FromStr for Algorithm {
    type Err = DnssecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsap256sha256" | "13" | "ecdsa" => Ok(Algorithm::EcdsaP256Sha256),
            "ed25519" | "15" => Ok(Algorithm::Ed25519),
            other => Err(DnssecError::Algorithm(other.to_string())),
        }
    }
}

impl Algorithm {
    /// The IANA number (13, 15).
    pub fn number(self) -> u8 {
        match self {
            Algorithm::EcdsaP256Sha256 => 13,
            Algorithm::Ed25519 => 15,
        }
    }
}

/// A freshly generated key: the two BIND files' names and contents.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// `K<zone>+<alg>+<tag>` (the files are this plus `.key` and `.private`).
    pub stem: String,
    /// The `.key` file: a comment and one DNSKEY line.
    pub public: String,
    /// The `.private` file (secret: write it 0600).
    pub private: String,
    pub tag: u16,
}

/// RFC 4034 Appendix B key tag of DNSKEY rdata.
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        acc += if i & 1 == 0 { u32::from(*b) << 8 } else { u32::from(*b) };
    }
    acc += (acc >> 16) & 0xffff;
    (acc & 0xffff) as u16
}

/// BIND's file-name form of a zone (`example.com`, `.` for the root).
fn stem_zone(zone: &[u8]) -> String {
    let t = name::to_text(zone);
    if t == "." { t } else { t.trim_end_matches('.').to_string() }
}

/// Generates one key for `zone` (wire format), a KSK if `ksk`. `now` (Unix seconds) goes into
/// the `Created:` line as BIND writes it.
pub fn generate_key(zone: &[u8], alg: Algorithm, ksk: bool, now: u64) -> Result<GeneratedKey, DnssecError> {
    let params = match alg {
        Algorithm::EcdsaP256Sha256 => GenerateParams::EcdsaP256Sha256,
        Algorithm::Ed25519 => GenerateParams::Ed25519,
    };
    let flags = if ksk { FLAGS_KSK } else { FLAGS_ZSK };
    let (secret, dnskey) = generate(&params, flags).map_err(|e| DnssecError::Generate(e.to_string()))?;
    let mut rdata = Vec::new();
    dnskey.compose_rdata(&mut rdata).map_err(|_| DnssecError::Generate("compose".into()))?;
    let tag = key_tag(&rdata);
    let owner = name::to_text(zone);
    let kind = if ksk { "key-signing" } else { "zone-signing" };
    let public = format!(
        "; This is a {kind} key, keyid {tag}, for {owner}\n{owner} IN DNSKEY {}\n",
        dnskey_presentation(&dnskey)
    );
    let mut private = secret.display_as_bind().to_string();
    let stamp = bind_time(now);
    private.push_str(&format!("Created: {stamp}\nPublish: {stamp}\nActivate: {stamp}\n"));
    let stem = format!("K{}+{:03}+{:05}", stem_zone(zone), alg.number(), tag);
    Ok(GeneratedKey { stem, public, private, tag })
}

fn dnskey_presentation<O: AsRef<[u8]>>(k: &Dnskey<O>) -> String {
    use base64_lite::encode;
    format!("{} {} {} {}", k.flags(), k.protocol(), k.algorithm().to_int(), encode(k.public_key().as_ref()))
}

/// `YYYYMMDDHHMMSS` in UTC, as BIND's key timing lines and RRSIG times are written.
pub fn bind_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// An RRSIG record as a zone-file line with its times as `YYYYMMDDHHmmSS` (RFC 4034 §3.2), the
/// form every server reads (NSD rejects the plain-seconds form). `None` for malformed rdata.
pub fn rrsig_text(owner: &[u8], ttl: u32, rdata: &[u8]) -> Option<String> {
    if rdata.len() < 18 {
        return None;
    }
    let covered = u16::from_be_bytes([rdata[0], rdata[1]]);
    let (alg, labels) = (rdata[2], rdata[3]);
    let orig_ttl = u32::from_be_bytes([rdata[4], rdata[5], rdata[6], rdata[7]]);
    let exp = u32::from_be_bytes([rdata[8], rdata[9], rdata[10], rdata[11]]);
    let inc = u32::from_be_bytes([rdata[12], rdata[13], rdata[14], rdata[15]]);
    let tag = u16::from_be_bytes([rdata[16], rdata[17]]);
    let rest = &rdata[18..];
    let mut end = 0;
    while end < rest.len() && rest[end] != 0 {
        end += 1 + rest[end] as usize;
    }
    if end >= rest.len() {
        return None;
    }
    let signer = &rest[..=end];
    let sig = &rest[end + 1..];
    Some(format!(
        "{} {ttl} IN RRSIG {} {alg} {labels} {orig_ttl} {} {} {tag} {} {}",
        name::to_zone_text(owner),
        super::rrtype::type_name(covered),
        bind_time(u64::from(exp)),
        bind_time(u64::from(inc)),
        name::to_zone_text(signer),
        base64_lite::encode(sig)
    ))
}

/// A DNSKEY read from a `.key` file (and its secret, if the `.private` file was there).
pub struct ZoneKey {
    /// Owner (the zone), lower-cased wire format.
    pub owner: NameBuf,
    pub flags: u16,
    pub algorithm: u8,
    pub tag: u16,
    /// DNSKEY rdata (wire).
    pub rdata: Vec<u8>,
    /// The signing half; `None` for a public key only (a child's key used for its DS).
    signer: Option<SigningKey<Bytes, KeyPair>>,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ZoneKey({} flags {} alg {} tag {})",
            name::to_text(&self.owner),
            self.flags,
            self.algorithm,
            self.tag
        )
    }
}

impl ZoneKey {
    /// True for a key with the Secure Entry Point bit (a KSK).
    pub fn is_ksk(&self) -> bool {
        self.flags & 1 == 1
    }
    /// True when the secret half was loaded.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }
}

fn parse_public(text: &str) -> Result<(NameBuf, Dnskey<Bytes>, u32), DnssecError> {
    let rec = domain::dnssec::common::parse_from_bind::<Bytes>(text)
        .map_err(|e| DnssecError::KeyFile(e.to_string()))?;
    let owner = name::to_lower(rec.owner().as_slice());
    Ok((owner, rec.data().clone(), rec.ttl().as_secs()))
}

/// Reads a key from the text of its `.key` file and, if given, its `.private` file.
pub fn load_key(public: &str, private: Option<&str>) -> Result<ZoneKey, DnssecError> {
    let (owner, dnskey, _ttl) = parse_public(public)?;
    let mut rdata = Vec::new();
    dnskey.compose_rdata(&mut rdata).map_err(|_| DnssecError::KeyFile("compose".into()))?;
    let signer = match private {
        None => None,
        Some(p) => {
            let secret =
                SecretKeyBytes::parse_from_bind(p).map_err(|e| DnssecError::KeyFile(e.to_string()))?;
            let pair =
                KeyPair::from_bytes(&secret, &dnskey).map_err(|e| DnssecError::KeyFile(e.to_string()))?;
            let owner_name = Name::<Bytes>::from_octets(Bytes::copy_from_slice(&owner))
                .map_err(|e| DnssecError::KeyFile(e.to_string()))?;
            Some(SigningKey::new(owner_name, dnskey.flags(), pair))
        }
    };
    Ok(ZoneKey {
        flags: dnskey.flags(),
        algorithm: dnskey.algorithm().to_int(),
        tag: key_tag(&rdata),
        owner,
        rdata,
        signer,
    })
}

/// Reads every `K*.key` file in `dir` (with its `.private` when present). Unreadable or
/// malformed files are errors naming the file.
pub fn load_keys_dir(dir: &Path) -> Result<Vec<ZoneKey>, DnssecError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DnssecError::Io(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "key")
                && p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with('K'))
        })
        .collect();
    paths.sort();
    let mut keys = Vec::new();
    for p in paths {
        let public =
            std::fs::read_to_string(&p).map_err(|e| DnssecError::Io(format!("{}: {e}", p.display())))?;
        let private_path = p.with_extension("private");
        let private = match std::fs::read_to_string(&private_path) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(DnssecError::Io(format!("{}: {e}", private_path.display()))),
        };
        keys.push(
            load_key(&public, private.as_deref())
                .map_err(|e| DnssecError::KeyFile(format!("{}: {e}", p.display())))?,
        );
    }
    Ok(keys)
}

/// DS rdata (RFC 4509: SHA-256, digest type 2) for a DNSKEY of `owner`.
pub fn ds_rdata(owner: &[u8], key: &ZoneKey) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&name::to_lower(owner));
    ctx.update(&key.rdata);
    let digest = ctx.finish();
    let mut out = Vec::with_capacity(4 + 32);
    out.extend_from_slice(&key.tag.to_be_bytes());
    out.push(key.algorithm);
    out.push(2);
    out.extend_from_slice(digest.as_ref());
    out
}

/// The DS record line (zone-file text) for the key in a `.key` file's text.
pub fn ds_text(public: &str) -> Result<String, DnssecError> {
    let (_, _, ttl) = parse_public(public)?;
    let key = load_key(public, None)?;
    let rdata = ds_rdata(&key.owner, &key);
    let ttl = if ttl == 0 { 3600 } else { ttl };
    Ok(super::zonefile::record_text(&key.owner, code::DS, ttl, &rdata))
}

/// How to sign a zone.
#[derive(Debug, Clone, Copy)]
pub struct SignOptions {
    /// NSEC3 (RFC 9276: SHA-1, 0 iterations, no salt, no opt-out) instead of NSEC.
    pub nsec3: bool,
    /// RRSIG inception, Unix seconds.
    pub inception: u32,
    /// RRSIG expiration, Unix seconds.
    pub expiration: u32,
}

type DRecord = Record<Name<Bytes>, ZoneRecordData<Bytes, Name<Bytes>>>;

fn to_domain(r: &ZoneRecord) -> Result<DRecord, DnssecError> {
    let owner = Name::<Bytes>::from_octets(Bytes::copy_from_slice(&r.owner))
        .map_err(|e| DnssecError::Zone(format!("{}: {e}", r.at)))?;
    let bytes = Bytes::copy_from_slice(&r.rdata);
    let mut parser = Parser::from_ref(&bytes);
    let parsed =
        ZoneRecordData::<Bytes, ParsedName<Bytes>>::parse_rdata(Rtype::from_int(r.rtype), &mut parser)
            .map_err(|e| DnssecError::Zone(format!("{}: {e}", r.at)))?
            .ok_or_else(|| DnssecError::Zone(format!("{}: unparsable record data", r.at)))?;
    let data: ZoneRecordData<Bytes, Name<Bytes>> = parsed.flatten_into();
    Ok(Record::new(owner, Class::IN, Ttl::from_secs(r.ttl), data))
}

fn from_domain<D: ComposeRecordData>(owner: &Name<Bytes>, rtype: Rtype, ttl: Ttl, data: &D) -> ZoneRecord {
    let mut rdata = Vec::new();
    // Composing into a Vec cannot fail.
    let _ = data.compose_rdata(&mut rdata);
    ZoneRecord {
        owner: name::to_lower(owner.as_slice()),
        rtype: rtype.to_int(),
        ttl: ttl.as_secs(),
        rdata,
        at: Location { file: "signer".into(), line: 0 },
    }
}

/// Records a signer replaces: signatures, denial chains and the apex DNSKEY/CDS/CDNSKEY set.
fn is_signer_output(r: &ZoneRecord, apex: &[u8]) -> bool {
    matches!(r.rtype, code::RRSIG | NSEC | NSEC3 | NSEC3PARAM)
        || (r.owner.as_ref() == apex && matches!(r.rtype, DNSKEY | 59 | 60))
}

/// Signs the zone `apex` (wire) given as `records`: strips old DNSSEC data, adds the DNSKEY
/// RRset (all keys of the zone), DS at each delegation whose child has keys in `keys` (and no
/// DS yet), the NSEC or NSEC3 chain and RRSIGs. ZSKs sign the zone and KSKs the DNSKEY RRset;
/// with only one kind of key it signs both (a CSK).
pub fn sign_zone(
    apex: &[u8],
    records: &[ZoneRecord],
    keys: &[ZoneKey],
    opts: SignOptions,
) -> Result<Vec<ZoneRecord>, DnssecError> {
    let apex = name::to_lower(apex);
    let own: Vec<&ZoneKey> = keys.iter().filter(|k| k.owner == apex).collect();
    let signers: Vec<&ZoneKey> = own.iter().copied().filter(|k| k.can_sign()).collect();
    if signers.is_empty() {
        return Err(DnssecError::Sign(format!(
            "no private key for {} in the key directory",
            name::to_text(&apex)
        )));
    }
    let soa = records
        .iter()
        .find(|r| r.rtype == code::SOA && r.owner == apex)
        .ok_or_else(|| DnssecError::Zone("no SOA at the apex".into()))?;
    let key_ttl = soa.ttl;
    let mut input: Vec<ZoneRecord> =
        records.iter().filter(|r| !is_signer_output(r, &apex)).cloned().collect();
    // DNSKEY RRset.
    for k in &own {
        input.push(ZoneRecord {
            owner: apex.clone(),
            rtype: DNSKEY,
            ttl: key_ttl,
            rdata: k.rdata.clone(),
            at: soa.at.clone(),
        });
    }
    // DS at delegations whose child keys we hold (KSKs, or all keys if the child has none).
    let cuts: BTreeSet<NameBuf> = input
        .iter()
        .filter(|r| r.rtype == code::NS && r.owner != apex && name::is_at_or_below(&r.owner, &apex))
        .map(|r| r.owner.clone())
        .collect();
    let have_ds: HashSet<NameBuf> =
        input.iter().filter(|r| r.rtype == code::DS).map(|r| r.owner.clone()).collect();
    for cut in &cuts {
        if have_ds.contains(cut) {
            continue;
        }
        let child: Vec<&ZoneKey> = keys.iter().filter(|k| &k.owner == cut).collect();
        let sep: Vec<&ZoneKey> = if child.iter().any(|k| k.is_ksk()) {
            child.iter().copied().filter(|k| k.is_ksk()).collect()
        } else {
            child
        };
        let ttl = input.iter().find(|r| &r.owner == cut && r.rtype == code::NS).map_or(key_ttl, |r| r.ttl);
        for k in sep {
            input.push(ZoneRecord {
                owner: cut.clone(),
                rtype: code::DS,
                ttl,
                rdata: ds_rdata(cut, k),
                at: soa.at.clone(),
            });
        }
    }
    // Drop exact duplicates (same owner, type, data): the signer rejects them.
    let mut seen = HashSet::new();
    input.retain(|r| seen.insert((r.owner.clone(), r.rtype, r.rdata.clone())));
    // RFC 2181 §5.2: one TTL per RRset; the signer requires it. Use the first one seen.
    let mut ttl_of: std::collections::HashMap<(NameBuf, u16), u32> = std::collections::HashMap::new();
    for r in &mut input {
        let t = *ttl_of.entry((r.owner.clone(), r.rtype)).or_insert(r.ttl);
        r.ttl = t;
    }

    let mut sorted: SortedRecords<Name<Bytes>, ZoneRecordData<Bytes, Name<Bytes>>> = SortedRecords::default();
    for r in &input {
        // Duplicates were removed above; insert only fails for a duplicate.
        let _ = sorted.insert(to_domain(r)?);
    }
    let apex_name = Name::<Bytes>::from_octets(Bytes::copy_from_slice(&apex))
        .map_err(|e| DnssecError::Zone(e.to_string()))?;
    let denial = if opts.nsec3 {
        DenialConfig::Nsec3(
            GenerateNsec3Config::new(Nsec3param::default()).without_assuming_dnskeys_will_be_added(),
        )
    } else {
        DenialConfig::Nsec(GenerateNsecConfig::new().without_assuming_dnskeys_will_be_added())
    };
    let config =
        SigningConfig::new(denial, Timestamp::from(opts.inception), Timestamp::from(opts.expiration));
    let has_ksk = signers.iter().any(|k| k.is_ksk());
    let has_zsk = signers.iter().any(|k| !k.is_ksk());
    let zone_signers: Vec<&SigningKey<Bytes, KeyPair>> = signers
        .iter()
        .filter(|k| !(has_ksk && has_zsk && k.is_ksk()))
        .filter_map(|k| k.signer.as_ref())
        .collect();
    let key_signers: Vec<&SigningKey<Bytes, KeyPair>> = signers
        .iter()
        .filter(|k| !(has_ksk && has_zsk) || k.is_ksk())
        .filter_map(|k| k.signer.as_ref())
        .collect();
    sorted.sign_zone(&apex_name, &config, &zone_signers).map_err(|e| DnssecError::Sign(e.to_string()))?;

    let mut out: Vec<ZoneRecord> =
        sorted.iter().map(|r| from_domain(r.owner(), r.rtype(), r.ttl(), r.data())).collect();
    // The apex DNSKEY RRset, signed by the KSKs.
    let dnskeys: Vec<DRecord> =
        sorted.iter().filter(|r| r.rtype() == Rtype::DNSKEY && r.owner() == &apex_name).cloned().collect();
    let mut dnskeys = dnskeys;
    dnskeys.sort_by(|a, b| {
        use domain::base::cmp::CanonicalOrd;
        a.data().canonical_cmp(b.data())
    });
    if let Ok(rrset) = Rrset::new_from_owned(&dnskeys) {
        for k in key_signers {
            let sig =
                sign_rrset(k, &rrset, Timestamp::from(opts.inception), Timestamp::from(opts.expiration))
                    .map_err(|e| DnssecError::Sign(e.to_string()))?;
            out.push(from_domain(sig.owner(), Rtype::RRSIG, sig.ttl(), sig.data()));
        }
    }
    Ok(out)
}

/// Minimal standard base64 (RFC 4648) for DNSKEY presentation.
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(data: &[u8]) -> String {
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::zonefile::{Includes, parse_text};

    const ZONE: &str = "$ORIGIN example.com.\n$TTL 3600\n\
@ IN SOA ns1 host 1 7200 3600 1209600 300\n\
@ IN NS ns1\n\
ns1 IN A 192.0.2.1\n\
www IN A 192.0.2.2\n\
*.wild IN TXT \"w\"\n\
sub IN NS ns.sub\n\
ns.sub IN A 192.0.2.3\n";

    fn origin() -> NameBuf {
        name::from_text("example.com.").unwrap()
    }

    fn keypair(zone: &[u8], alg: Algorithm, ksk: bool) -> ZoneKey {
        let g = generate_key(zone, alg, ksk, 1_700_000_000).unwrap();
        assert!(g.public.contains(&format!("keyid {}", g.tag)));
        let k = load_key(&g.public, Some(&g.private)).unwrap();
        assert_eq!(k.tag, g.tag);
        k
    }

    #[test]
    fn key_tag_agrees_with_domain_and_bind_file_name() {
        // Our RFC 4034 Appendix B key tag equals domain's, and is the one in the file name
        // (interop/dnssec.sh checks it against BIND's dnssec-dsfromkey too).
        let g = generate_key(&origin(), Algorithm::Ed25519, false, 0).unwrap();
        let (_, dnskey, _) = parse_public(&g.public).unwrap();
        assert_eq!(dnskey.key_tag(), g.tag);
        assert!(g.stem.ends_with(&format!("+015+{:05}", g.tag)), "{}", g.stem);
    }

    #[test]
    fn zone_keys_can_be_shared_between_threads() {
        // The fuzz target (and the server's re-sign task) keep loaded keys in statics / Arcs.
        fn shareable<T: Send + Sync>() {}
        shareable::<ZoneKey>();
    }

    #[test]
    fn rrsig_text_reads_back_identically() {
        let recs = parse_text(ZONE, "t", &origin(), &Includes::Forbidden).unwrap();
        let keys = vec![keypair(&origin(), Algorithm::EcdsaP256Sha256, true)];
        let out = sign_zone(
            &origin(),
            &recs,
            &keys,
            SignOptions { nsec3: false, inception: 1_700_000_000, expiration: 1_800_000_000 },
        )
        .unwrap();
        let sig = out.iter().find(|r| r.rtype == code::RRSIG).unwrap();
        let line = rrsig_text(&sig.owner, sig.ttl, &sig.rdata).unwrap();
        assert!(line.contains(" 20270115080000 20231114221320 "), "{line}");
        let back = parse_text(&line, "t", name::ROOT, &Includes::Forbidden).unwrap();
        assert_eq!(back[0].rdata, sig.rdata);
        assert!(rrsig_text(&sig.owner, 1, &sig.rdata[..10]).is_none());
    }

    #[test]
    fn bind_time_formats_utc() {
        assert_eq!(bind_time(0), "19700101000000");
        assert_eq!(bind_time(1_700_000_000), "20231114221320");
    }

    #[test]
    fn signs_with_nsec_and_nsec3() {
        let recs = parse_text(ZONE, "t", &origin(), &Includes::Forbidden).unwrap();
        let keys = vec![
            keypair(&origin(), Algorithm::EcdsaP256Sha256, true),
            keypair(&origin(), Algorithm::EcdsaP256Sha256, false),
            keypair(&name::from_text("sub.example.com.").unwrap(), Algorithm::Ed25519, true),
        ];
        for nsec3 in [false, true] {
            let out = sign_zone(
                &origin(),
                &recs,
                &keys,
                SignOptions { nsec3, inception: 1, expiration: 2_000_000_000 },
            )
            .unwrap();
            let count = |t: u16| out.iter().filter(|r| r.rtype == t).count();
            assert_eq!(count(DNSKEY), 2);
            assert_eq!(count(code::DS), 1, "DS at sub from the child's KSK");
            assert!(count(if nsec3 { NSEC3 } else { NSEC }) >= 4);
            // No RRSIG over glue or the delegation NS.
            let glue = name::from_text("ns.sub.example.com.").unwrap();
            assert!(!out.iter().any(|r| r.rtype == code::RRSIG && r.owner == glue));
            // The DNSKEY RRset is signed by the KSK only, the A record by the ZSK only.
            let sigs_over = |t: u16, owner: &[u8]| {
                out.iter()
                    .filter(|r| {
                        r.rtype == code::RRSIG && r.owner.as_ref() == owner && r.rdata[..2] == t.to_be_bytes()
                    })
                    .count()
            };
            assert_eq!(sigs_over(DNSKEY, &origin()), 1);
            assert_eq!(sigs_over(code::A, &name::from_text("www.example.com.").unwrap()), 1);
            // Signing the signed output again gives the same set of non-signature records.
            let again = sign_zone(
                &origin(),
                &out,
                &keys,
                SignOptions { nsec3, inception: 1, expiration: 2_000_000_000 },
            )
            .unwrap();
            assert_eq!(again.len(), out.len());
        }
    }

    #[test]
    fn signing_without_private_key_fails() {
        let recs = parse_text(ZONE, "t", &origin(), &Includes::Forbidden).unwrap();
        let g = generate_key(&origin(), Algorithm::Ed25519, false, 0).unwrap();
        let keys = vec![load_key(&g.public, None).unwrap()];
        assert!(
            sign_zone(&origin(), &recs, &keys, SignOptions { nsec3: false, inception: 1, expiration: 2 })
                .is_err()
        );
    }

    #[test]
    fn odd_zones_are_signed_or_refused_without_panic() {
        let keys = vec![keypair(&origin(), Algorithm::Ed25519, true)];
        let zones = [
            "$ORIGIN example.com.\n@ 60 IN A 192.0.2.1\n",
            "$ORIGIN example.com.\n@ 60 IN SOA a b 1 2 3 4 5\nx 60 IN NSEC3 1 0 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A\n",
            "$ORIGIN example.com.\n@ 60 IN SOA a b 1 2 3 4 5\nother.org. 60 IN A 192.0.2.1\nx 60 IN TYPE999 \\# 0\n",
            "$ORIGIN example.com.\n@ 60 IN SOA a b 1 2 3 4 5\nx 60 IN A 192.0.2.1\nx 30 IN A 192.0.2.2\nx 60 IN A 192.0.2.1\n",
            "$ORIGIN example.com.\n@ 60 IN SOA a b 1 2 3 4 5\na.b.c.d 60 IN NS ns\na.b.c.d.e.f 60 IN A 192.0.2.1\n",
        ];
        for z in zones {
            let recs = parse_text(z, "t", &origin(), &Includes::Forbidden).unwrap();
            let _ = sign_zone(
                &origin(),
                &recs,
                &keys,
                SignOptions { nsec3: true, inception: 0, expiration: u32::MAX },
            );
            let _ = sign_zone(
                &origin(),
                &recs,
                &keys,
                SignOptions { nsec3: false, inception: 0, expiration: u32::MAX },
            );
        }
        let no_soa = parse_text(zones[0], "t", &origin(), &Includes::Forbidden).unwrap();
        assert!(
            sign_zone(&origin(), &no_soa, &keys, SignOptions { nsec3: false, inception: 0, expiration: 1 })
                .is_err()
        );
    }

    #[test]
    fn ds_text_is_a_ds_record() {
        let g = generate_key(&origin(), Algorithm::EcdsaP256Sha256, true, 0).unwrap();
        let ds = ds_text(&g.public).unwrap();
        assert!(ds.starts_with("example.com. 3600 IN DS "), "{ds}");
        assert!(ds.contains(&format!("DS {} 13 2 ", g.tag)), "{ds}");
    }

    #[test]
    fn junk_key_files_are_errors() {
        for junk in ["", "x", "example. IN DNSKEY", "example. IN A 1.2.3.4", "\u{0}\u{1}"] {
            assert!(load_key(junk, None).is_err());
            assert!(ds_text(junk).is_err());
        }
        let g = generate_key(&origin(), Algorithm::Ed25519, false, 0).unwrap();
        assert!(
            load_key(&g.public, Some("Private-key-format: v1.2\nAlgorithm: 15\nPrivateKey: !!\n")).is_err()
        );
    }
}
