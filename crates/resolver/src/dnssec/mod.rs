//! DNSSEC validation (RFC 4033–4035, RFC 5155) for the resolver: trust anchors
//! ([`anchors`]), the sans-IO validator ([`validate`]: records in, verdict out) and the
//! denial-of-existence proofs it checks ([`denial`]). The driver ([`crate::driver`]) resolves
//! the DS and DNSKEY RRsets the validator asks for; the responder sets AD on secure answers and
//! answers bogus ones SERVFAIL with an Extended DNS Error (RFC 8914).

pub mod anchors;
pub mod denial;
pub mod validate;

pub use anchors::TrustAnchors;
pub use validate::{Ctx, KeyCache, Poll, Validation, ZoneState};

/// RFC 8914 Extended DNS Error info-codes the validator gives.
pub mod ede {
    /// 6: DNSSEC Bogus.
    pub const DNSSEC_BOGUS: u16 = 6;
    /// 7: Signature Expired.
    pub const SIGNATURE_EXPIRED: u16 = 7;
    /// 8: Signature Not Yet Valid.
    pub const SIGNATURE_NOT_YET_VALID: u16 = 8;
    /// 9: DNSKEY Missing.
    pub const DNSKEY_MISSING: u16 = 9;
    /// 10: RRSIGs Missing.
    pub const RRSIGS_MISSING: u16 = 10;
    /// 12: NSEC Missing.
    pub const NSEC_MISSING: u16 = 12;
}

/// An Extended DNS Error: the info-code and a short text for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ede {
    pub code: u16,
    pub text: String,
}

impl Ede {
    /// An error with `code` (see [`ede`]) and `text`.
    pub fn new(code: u16, text: &str) -> Ede {
        Ede { code, text: text.to_string() }
    }
}

/// The validation state of an answer (RFC 4035 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// A chain of trust from an anchor verifies every RRset and denial: AD may be set.
    Secure,
    /// Proven unsigned (or under no anchor): served without AD.
    Insecure,
    /// Should have verified and did not: SERVFAIL with this Extended DNS Error.
    Bogus(Ede),
}

/// Resource limits against KeyTrap-style work (CVE-2023-50387, CVE-2023-50868).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Signature checks one question may cause, chain of trust included.
    pub max_verifications: usize,
    /// Failed signature checks one question may cause.
    pub max_failures: usize,
    /// DNSKEYs with the same key tag and algorithm tried for one RRSIG.
    pub max_keys_per_tag: usize,
    /// RRSIGs tried for one RRset.
    pub max_sigs_per_rrset: usize,
    /// RRsets validated in one answer.
    pub max_rrsets: usize,
    /// NSEC3 iterations accepted; above this a denial is insecure (RFC 9276 §3.2).
    pub max_nsec3_iterations: u16,
    /// Seconds a bogus verdict (and a broken zone's state) is cached.
    pub bogus_ttl: u32,
    /// DS/DNSKEY lookups one validation may ask for.
    pub max_lookups: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_verifications: 32,
            max_failures: 16,
            max_keys_per_tag: 4,
            max_sigs_per_rrset: 8,
            max_rrsets: 64,
            max_nsec3_iterations: 100,
            bogus_ttl: 60,
            max_lookups: 32,
        }
    }
}
