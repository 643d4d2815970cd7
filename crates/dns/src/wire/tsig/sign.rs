//! The TSIG signing transaction (RFC 8945 §5): a request's MAC, the reply signed over it, and
//! multi-message TCP sequences where each message is digested with the previous MAC and only
//! the timers (§5.3.1). Time is always passed in (`now`, seconds since the epoch).

use super::key::{Algorithm, Key, Keyring};
use super::record::{CLASS_ANY, Fields, Malformed, append, error, find};
use crate::wire::name;
use ring::hmac;
use std::sync::Arc;

/// The fudge we sign with (seconds of clock difference allowed), as RFC 8945 recommends.
pub const FUDGE: u16 = 300;
/// Unsigned messages a transfer may carry between signed ones (RFC 8945 §5.3.1).
const MAX_UNSIGNED: usize = 99;

/// What goes into the MAC besides the message: the full variables (first message of an
/// exchange) or only the timers (later messages of a transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vars {
    Full,
    Timers,
}

/// Digests the message as it was before the TSIG was added: the original id, one record less.
fn digest_message(ctx: &mut hmac::Context, msg: &[u8], start: usize, original_id: u16) {
    let mut header = [0u8; 12];
    header.copy_from_slice(&msg[..12]);
    header[..2].copy_from_slice(&original_id.to_be_bytes());
    let ar = u16::from_be_bytes([header[10], header[11]]).saturating_sub(1);
    header[10..12].copy_from_slice(&ar.to_be_bytes());
    ctx.update(&header);
    ctx.update(&msg[12..start]);
}

fn digest_vars(ctx: &mut hmac::Context, key: &Key, vars: Vars, f: &Fields<'_>) {
    let time = &f.time.to_be_bytes()[2..];
    if vars == Vars::Full {
        ctx.update(&key.name);
        ctx.update(&CLASS_ANY.to_be_bytes());
        ctx.update(&0u32.to_be_bytes());
        ctx.update(&key.algorithm.wire_name());
        ctx.update(time);
        ctx.update(&f.fudge.to_be_bytes());
        ctx.update(&f.error.to_be_bytes());
        ctx.update(&(f.other.len() as u16).to_be_bytes());
        ctx.update(f.other);
    } else {
        ctx.update(time);
        ctx.update(&f.fudge.to_be_bytes());
    }
}

/// A context that starts with the prior MAC (a reply's request MAC, or the previous message's).
fn context_after(key: &Key, prior: Option<&[u8]>) -> hmac::Context {
    let mut ctx = key.context();
    if let Some(p) = prior {
        ctx.update(&(p.len() as u16).to_be_bytes());
        ctx.update(p);
    }
    ctx
}

fn sign_with(msg: &mut Vec<u8>, key: &Key, prior: Option<&[u8]>, vars: Vars, f: &Fields<'_>) -> Vec<u8> {
    if msg.len() < 12 {
        return Vec::new();
    }
    let mut ctx = context_after(key, prior);
    // The message has no TSIG yet: digest it whole (id and ARCOUNT as they stand).
    ctx.update(msg);
    digest_vars(&mut ctx, key, vars, f);
    let mac = ctx.sign().as_ref().to_vec();
    append(msg, key, &mac, f);
    mac
}

/// Signs a request (or the first message of an exchange we start): returns the MAC, which the
/// reply's signature covers (give it to [`Verifier::new`]).
pub fn sign_request(msg: &mut Vec<u8>, key: &Key, now: u64) -> Vec<u8> {
    sign_with(msg, key, None, Vars::Full, &Fields { time: now, fudge: FUDGE, error: 0, other: &[] })
}

/// Signs the replies of one exchange: a single reply, or every message of a transfer.
#[derive(Debug, Clone)]
pub struct Signer {
    key: Arc<Key>,
    prior: Vec<u8>,
    first: bool,
}

impl Signer {
    /// A signer for the replies to a request that carried `request_mac`.
    pub fn new(key: Arc<Key>, request_mac: Vec<u8>) -> Signer {
        Signer { key, prior: request_mac, first: true }
    }

    /// The key.
    pub fn key(&self) -> &Arc<Key> {
        &self.key
    }

    /// Signs the next reply message.
    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64) {
        self.sign_error(msg, now, 0, &[]);
    }

    /// Signs a reply carrying a TSIG error (BADTIME, with our time as other data).
    pub fn sign_error(&mut self, msg: &mut Vec<u8>, now: u64, error: u16, other: &[u8]) {
        let vars = if self.first { Vars::Full } else { Vars::Timers };
        let f = Fields { time: now, fudge: FUDGE, error, other };
        self.prior = sign_with(msg, &self.key, Some(&self.prior), vars, &f);
        self.first = false;
    }
}

/// Why a signed message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TsigError {
    #[error("malformed TSIG record")]
    FormErr,
    #[error("unknown TSIG key or algorithm (BADKEY)")]
    BadKey,
    #[error("TSIG signature does not verify (BADSIG)")]
    BadSig,
    #[error("TSIG time {signed} is off by more than the fudge from ours {now} (BADTIME)")]
    BadTime { signed: u64, now: u64 },
    #[error("message not signed")]
    Unsigned,
    #[error("the other side answered {}", error_name(*.0))]
    Peer(u16),
}

/// The mnemonic of a TSIG error code.
pub fn error_name(code: u16) -> String {
    match code {
        error::BADSIG => "BADSIG".into(),
        error::BADKEY => "BADKEY".into(),
        error::BADTIME => "BADTIME".into(),
        error::BADTRUNC => "BADTRUNC".into(),
        n => format!("TSIG error {n}"),
    }
}

impl TsigError {
    /// The TSIG error code to answer with.
    pub fn code(&self) -> u16 {
        match self {
            TsigError::BadKey => error::BADKEY,
            TsigError::BadTime { .. } => error::BADTIME,
            _ => error::BADSIG,
        }
    }
}

fn mac_ok(key: &Key, computed: &[u8], got: &[u8]) -> bool {
    let full = key.algorithm.mac_len();
    // Truncated MACs (RFC 8945 §5.2.2.1): at least half, and at least 10 octets.
    if got.len() > full || got.len() < (full / 2).max(10) {
        return false;
    }
    // Constant time.
    computed[..got.len()].iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn time_ok(signed: u64, fudge: u16, now: u64) -> bool {
    signed.abs_diff(now) <= fudge as u64
}

/// A request whose signature checked out: sign the reply with [`Signer::new`]`(key, mac)`.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<Key>,
    pub mac: Vec<u8>,
}

/// A signed request that failed, and what to answer (RFC 8945 §5.2).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub error: TsigError,
    /// For BADTIME the reply is signed (the signature itself was good).
    pub signer: Option<Verified>,
}

/// Server side: checks the TSIG of a request against `keys` at time `now`. `Ok(None)`: the
/// request is not signed.
pub fn verify_request(keys: &Keyring, msg: &[u8], now: u64) -> Result<Option<Verified>, Rejected> {
    let reject = |error| Rejected { error, signer: None };
    let tsig = match find(msg) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(None),
        Err(Malformed) => return Err(reject(TsigError::FormErr)),
    };
    let Some(key) = keys.get(&tsig.key_name) else { return Err(reject(TsigError::BadKey)) };
    if Algorithm::from_wire(tsig.algorithm) != Some(key.algorithm) {
        return Err(reject(TsigError::BadKey));
    }
    let mut ctx = key.context();
    digest_message(&mut ctx, msg, tsig.start, tsig.original_id);
    let f = Fields { time: tsig.time_signed, fudge: tsig.fudge, error: tsig.error, other: tsig.other };
    digest_vars(&mut ctx, key, Vars::Full, &f);
    if !mac_ok(key, ctx.sign().as_ref(), tsig.mac) {
        return Err(reject(TsigError::BadSig));
    }
    let verified = Verified { key: key.clone(), mac: tsig.mac.to_vec() };
    if !time_ok(tsig.time_signed, tsig.fudge, now) {
        return Err(Rejected {
            error: TsigError::BadTime { signed: tsig.time_signed, now },
            signer: Some(verified),
        });
    }
    Ok(Some(verified))
}

/// Client side: checks the reply (or each message of a transfer) to a request we signed.
pub struct Verifier {
    key: Arc<Key>,
    prior: Vec<u8>,
    /// Digest of the unsigned messages since the last signed one.
    pending: Option<hmac::Context>,
    unsigned: usize,
    first: bool,
}

impl Verifier {
    /// A verifier for replies to a request signed with `key` whose MAC was `request_mac`.
    pub fn new(key: Arc<Key>, request_mac: Vec<u8>) -> Verifier {
        Verifier { key, prior: request_mac, pending: None, unsigned: 0, first: true }
    }

    /// Checks the next message. Later messages of a transfer may be unsigned (up to 99 in a
    /// row); they are digested into the next signature.
    pub fn check(&mut self, msg: &[u8], now: u64) -> Result<(), TsigError> {
        let tsig = find(msg).map_err(|_| TsigError::FormErr)?;
        let Some(tsig) = tsig else {
            if self.first || self.unsigned >= MAX_UNSIGNED {
                return Err(TsigError::Unsigned);
            }
            let ctx = self.pending.get_or_insert_with(|| context_after(&self.key, Some(&self.prior)));
            ctx.update(msg);
            self.unsigned += 1;
            return Ok(());
        };
        if tsig.error != 0 && tsig.mac.is_empty() {
            return Err(TsigError::Peer(tsig.error));
        }
        if name::to_lower(&tsig.key_name) != self.key.name
            || Algorithm::from_wire(tsig.algorithm) != Some(self.key.algorithm)
        {
            return Err(TsigError::BadKey);
        }
        let mut ctx = self.pending.take().unwrap_or_else(|| context_after(&self.key, Some(&self.prior)));
        digest_message(&mut ctx, msg, tsig.start, tsig.original_id);
        let vars = if self.first { Vars::Full } else { Vars::Timers };
        let f = Fields { time: tsig.time_signed, fudge: tsig.fudge, error: tsig.error, other: tsig.other };
        digest_vars(&mut ctx, &self.key, vars, &f);
        if !mac_ok(&self.key, ctx.sign().as_ref(), tsig.mac) {
            return Err(TsigError::BadSig);
        }
        if tsig.error != 0 {
            return Err(TsigError::Peer(tsig.error));
        }
        if !time_ok(tsig.time_signed, tsig.fudge, now) {
            return Err(TsigError::BadTime { signed: tsig.time_signed, now });
        }
        self.prior = tsig.mac.to_vec();
        self.first = false;
        self.unsigned = 0;
        Ok(())
    }

    /// Whether the exchange may end here: the last message must have been signed.
    pub fn finish(&self) -> Result<(), TsigError> {
        if self.first || self.unsigned > 0 { Err(TsigError::Unsigned) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::build_query;
    use crate::wire::tsig::key::parse_key_file;
    use crate::wire::tsig::record::{Malformed, strip};

    const NOW: u64 = 1_700_000_000;

    fn key(name: &str) -> Key {
        Key::parse_spec(&format!("{name}:hmac-sha256:c2VjcmV0LXNlY3JldC1zZWNyZXQ=")).unwrap()
    }

    /// An unsigned answer-like message; `i` varies its question.
    fn reply(i: u8) -> Vec<u8> {
        let mut m =
            build_query(7, 0, &name::from_text(&format!("m{i}.example.com")).unwrap(), 252, false, None);
        m[2] |= 0x80;
        m
    }

    fn request(k: &Key) -> (Vec<u8>, Vec<u8>) {
        let mut msg = build_query(7, 0, &name::from_text("example.com").unwrap(), 252, false, None);
        let mac = sign_request(&mut msg, k, NOW);
        (msg, mac)
    }

    #[test]
    fn key_specs_and_files() {
        let a = Key::parse_spec("hmac-sha512:Name.:c2VjcmV0").unwrap();
        assert_eq!((a.name_text().as_str(), a.algorithm), ("name.", Algorithm::Sha512));
        let b = Key::parse_spec("name:hmac-sha1:c2VjcmV0").unwrap();
        assert_eq!(b.algorithm, Algorithm::Sha1);
        assert!(Key::parse_spec("name:hmac-md4:c2VjcmV0").is_err());
        assert!(Key::parse_spec("name:hmac-sha256:***").is_err());
        let file = "# made by tsig-keygen\nkey \"xfr-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n\
                    key other { algorithm hmac-sha384; secret \"c2VjcmV0\"; };";
        let keys = parse_key_file(file).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].algorithm, Algorithm::Sha384);
        assert!(parse_key_file("key x { algorithm hmac-sha256; };").is_err());
        // A base64 secret may contain "//" (and "#" is no base64, but quotes protect it too);
        // comments of every BIND kind around it are still comments.
        let tricky = "/* registrar */ key \"r\" { // the lab's\n algorithm hmac-sha256; # alg\n\
                      secret \"ab//cd+/ef==\"; };";
        let keys = parse_key_file(tricky).unwrap();
        assert_eq!((keys.len(), keys[0].name_text().as_str()), (1, "r."));
    }

    #[test]
    fn request_and_reply_round_trip() {
        let k = key("xfr");
        let ring = Keyring::new([k.clone()]);
        let (req, mac) = request(&k);
        let v = verify_request(&ring, &req, NOW + 10).unwrap().unwrap();
        assert_eq!(v.mac, mac);
        // The reply, signed over the request MAC, verifies on the client.
        let mut answer = reply(0);
        Signer::new(v.key, v.mac).sign(&mut answer, NOW + 11);
        let mut check = Verifier::new(Arc::new(k.clone()), mac.clone());
        check.check(&answer, NOW + 12).unwrap();
        check.finish().unwrap();
        assert_eq!(strip(&answer), reply(0));
        let reply = answer;
        // A reply signed for another request does not.
        let mut other = Verifier::new(Arc::new(k), vec![1; 32]);
        assert_eq!(other.check(&reply, NOW), Err(TsigError::BadSig));
    }

    #[test]
    fn bad_key_bad_sig_bad_time_formerr() {
        let k = key("xfr");
        let (req, _) = request(&k);
        let unknown = Keyring::new([key("other")]);
        assert_eq!(verify_request(&unknown, &req, NOW).unwrap_err().error, TsigError::BadKey);
        let other_secret = Keyring::new([Key::parse_spec("xfr:hmac-sha256:b3RoZXI=").unwrap()]);
        assert_eq!(verify_request(&other_secret, &req, NOW).unwrap_err().error, TsigError::BadSig);
        let sha512 = Keyring::new([Key::parse_spec("xfr:hmac-sha512:c2VjcmV0LXNlY3JldC1zZWNyZXQ=").unwrap()]);
        assert_eq!(verify_request(&sha512, &req, NOW).unwrap_err().error, TsigError::BadKey);
        let ring = Keyring::new([k]);
        let mut tampered = req.clone();
        tampered[13] ^= 0x20; // the question name's case
        assert_eq!(verify_request(&ring, &tampered, NOW).unwrap_err().error, TsigError::BadSig);
        let late = verify_request(&ring, &req, NOW + 301).unwrap_err();
        assert_eq!(late.error, TsigError::BadTime { signed: NOW, now: NOW + 301 });
        assert!(late.signer.is_some(), "BADTIME answers are signed");
        assert!(verify_request(&ring, &req, NOW - 300).is_ok());
        let cut = &req[..req.len() - 3];
        assert!(verify_request(&ring, cut, NOW).is_err());
        let plain = build_query(1, 0, &name::from_text("a.").unwrap(), 1, false, None);
        assert!(verify_request(&ring, &plain, NOW).unwrap().is_none());
    }

    #[test]
    fn transfer_sequences_with_unsigned_messages_in_between() {
        let k = key("xfr");
        let ring = Keyring::new([k.clone()]);
        let (req, mac) = request(&k);
        let v = verify_request(&ring, &req, NOW).unwrap().unwrap();
        let mut signer = Signer::new(v.key, v.mac);
        let mut msgs: Vec<Vec<u8>> = (0..4u8).map(reply).collect();
        // Server signs the first and last only (RFC 8945 allows gaps; we sign every message).
        signer.sign(&mut msgs[0], NOW);
        let mut ctx = context_after(&k, Some(&signer.prior));
        ctx.update(&msgs[1]);
        ctx.update(&msgs[2]);
        let f = Fields { time: NOW, fudge: FUDGE, error: 0, other: &[] };
        ctx.update(&msgs[3]);
        digest_vars(&mut ctx, &k, Vars::Timers, &f);
        let last_mac = ctx.sign().as_ref().to_vec();
        append(&mut msgs[3], &k, &last_mac, &f);
        let mut check = Verifier::new(Arc::new(k.clone()), mac.clone());
        for m in &msgs[..3] {
            check.check(m, NOW).unwrap();
            assert!(m == &msgs[0] || check.finish().is_err(), "cannot end on an unsigned message");
        }
        check.check(&msgs[3], NOW).unwrap();
        check.finish().unwrap();
        // Every message signed, in order, verifies; out of order does not.
        let mut signer = Signer::new(Arc::new(k.clone()), mac.clone());
        let mut all: Vec<Vec<u8>> = msgs.iter().map(|m| strip(m)).collect();
        for m in &mut all {
            signer.sign(m, NOW);
        }
        let mut check = Verifier::new(Arc::new(k.clone()), mac.clone());
        all.iter().for_each(|m| check.check(m, NOW).unwrap());
        let mut check = Verifier::new(Arc::new(k), mac);
        check.check(&all[0], NOW).unwrap();
        assert_eq!(check.check(&all[2], NOW), Err(TsigError::BadSig));
    }

    #[test]
    fn misplaced_tsig_is_malformed_and_junk_never_panics() {
        let k = key("xfr");
        let (mut req, _) = request(&k);
        // Add an OPT-like record after the TSIG: TSIG is no longer last.
        req.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0, 0, 0]);
        req[11] += 1;
        assert_eq!(find(&req).unwrap_err(), Malformed);
        for n in 0..req.len() {
            let _ = find(&req[..n]);
            let _ = verify_request(&Keyring::new([k.clone()]), &req[..n], NOW);
        }
    }
}
