//! TSIG (RFC 8945): shared-secret signatures on DNS messages, for zone transfers and NOTIFY.
//!
//! Works on finished message bytes: [`sign`] appends a TSIG record (and bumps ARCOUNT),
//! [`find`] locates and reads the one a received message carries, [`verify_request`] checks a
//! request on the server side, and [`Verifier`] checks a reply or a multi-message transfer on
//! the client side (RFC 8945 §5.3.1: every message after the first is digested with the
//! previous MAC and only the timers). Time is always passed in (`now`, seconds since the epoch).
//! HMAC comes from `ring` (already in the tree for TLS).

use super::name::{self, NameBuf};
use domain::base::Message;
use domain::base::iana::Rtype;
use domain::base::name::ToName;
use ring::hmac;
use std::sync::Arc;

/// The TSIG record type.
pub const TYPE_TSIG: u16 = 250;
/// Class ANY, which TSIG records carry.
const CLASS_ANY: u16 = 255;
/// The fudge we sign with (seconds of clock difference allowed), as RFC 8945 recommends.
pub const FUDGE: u16 = 300;
/// Unsigned messages a transfer may carry between signed ones (RFC 8945 §5.3.1).
const MAX_UNSIGNED: usize = 99;

/// TSIG error codes (in the record's Error field; the header RCODE is NOTAUTH).
pub mod error {
    pub const BADSIG: u16 = 16;
    pub const BADKEY: u16 = 17;
    pub const BADTIME: u16 = 18;
    pub const BADTRUNC: u16 = 22;
}

/// The HMAC algorithms we sign and verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    const ALL: [Algorithm; 4] = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512];

    /// The algorithm's name as in configuration files (`hmac-sha256`).
    pub fn text(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "hmac-sha1",
            Algorithm::Sha256 => "hmac-sha256",
            Algorithm::Sha384 => "hmac-sha384",
            Algorithm::Sha512 => "hmac-sha512",
        }
    }

    /// Parses `hmac-sha256` (any case, trailing dot allowed).
    pub fn from_text(s: &str) -> Option<Algorithm> {
        let s = s.trim_end_matches('.').to_ascii_lowercase();
        Algorithm::ALL.into_iter().find(|a| a.text() == s)
    }

    /// The algorithm's name in wire format (lower case), as TSIG records carry it.
    pub fn wire_name(self) -> NameBuf {
        name::from_text(self.text()).unwrap_or_default()
    }

    fn from_wire(wire: &[u8]) -> Option<Algorithm> {
        let low = name::to_lower(wire);
        Algorithm::ALL.into_iter().find(|a| a.wire_name() == low)
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha384 => hmac::HMAC_SHA384,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Length of a full MAC.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha384 => 48,
            Algorithm::Sha512 => 64,
        }
    }
}

/// A named shared secret for one algorithm.
#[derive(Clone)]
pub struct Key {
    /// The key's name (lower-cased wire format).
    pub name: NameBuf,
    pub algorithm: Algorithm,
    secret: hmac::Key,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {})", self.name_text(), self.algorithm.text())
    }
}

impl Key {
    /// A key from its name, algorithm name and base64 secret.
    pub fn new(name_text: &str, algorithm: &str, secret_base64: &str) -> Result<Key, String> {
        let algorithm =
            Algorithm::from_text(algorithm).ok_or_else(|| format!("unknown TSIG algorithm {algorithm:?}"))?;
        let secret: Vec<u8> = domain::utils::base64::decode(secret_base64.trim())
            .map_err(|e| format!("TSIG key {name_text}: the secret is not base64 ({e})"))?;
        if secret.is_empty() {
            return Err(format!("TSIG key {name_text}: empty secret"));
        }
        let name = name::to_lower(&name::from_text(name_text)?);
        Ok(Key { name, algorithm, secret: hmac::Key::new(algorithm.ring(), &secret) })
    }

    /// Parses `NAME:ALGORITHM:SECRET` or, as `dig -y` takes it, `ALGORITHM:NAME:SECRET`
    /// (`NAME:SECRET` means hmac-sha256).
    pub fn parse_spec(spec: &str) -> Result<Key, String> {
        let parts: Vec<&str> = spec.splitn(3, ':').collect();
        match parts[..] {
            [a, n, s] if Algorithm::from_text(a).is_some() => Key::new(n, a, s),
            [n, a, s] => Key::new(n, a, s),
            [n, s] => Key::new(n, "hmac-sha256", s),
            _ => Err(format!("TSIG key wants NAME:ALGORITHM:SECRET, got {spec:?}")),
        }
    }

    /// The key name as text (with the final dot).
    pub fn name_text(&self) -> String {
        name::to_text(&self.name)
    }

    fn context(&self) -> hmac::Context {
        hmac::Context::with_key(&self.secret)
    }
}

/// The keys a server knows, looked up by name.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<Arc<Key>>,
}

impl Keyring {
    /// A keyring of `keys`; a later key with the same name replaces an earlier one.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Keyring {
        let mut ring = Keyring::default();
        for k in keys {
            ring.keys.retain(|o| o.name != k.name);
            ring.keys.push(Arc::new(k));
        }
        ring
    }

    /// The key called `name` (wire format, any case).
    pub fn get(&self, name_wire: &[u8]) -> Option<&Arc<Key>> {
        let low = name::to_lower(name_wire);
        self.keys.iter().find(|k| k.name == low)
    }

    /// The key called `name` (text).
    pub fn by_text(&self, name_text: &str) -> Option<&Arc<Key>> {
        self.get(&name::from_text(name_text).ok()?)
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads the keys of a BIND-style key file (what `tsig-keygen` and `ddns-confgen` print, also
/// accepted by Knot's `keymgr` import): `key "NAME" { algorithm ALG; secret "BASE64"; };`.
pub fn parse_key_file(text: &str) -> Result<Vec<Key>, String> {
    // Comments out, then tokens split on whitespace, braces, semicolons and quotes.
    let cleaned: String = text
        .lines()
        .map(|l| {
            let l = l.split('#').next().unwrap_or_default();
            l.split("//").next().unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut tokens = cleaned
        .split(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"'))
        .filter(|t| !t.is_empty())
        .peekable();
    let mut keys = Vec::new();
    while let Some(t) = tokens.next() {
        if t != "key" {
            return Err(format!("expected `key`, found {t:?}"));
        }
        let name = tokens.next().ok_or("key without a name")?;
        let (mut alg, mut secret) = (None, None);
        while let Some(&t) = tokens.peek() {
            match t {
                "algorithm" => {
                    tokens.next();
                    alg = tokens.next();
                }
                "secret" => {
                    tokens.next();
                    secret = tokens.next();
                }
                "key" => break,
                other => return Err(format!("key {name}: unexpected {other:?}")),
            }
        }
        let alg = alg.ok_or_else(|| format!("key {name}: no algorithm"))?;
        let secret = secret.ok_or_else(|| format!("key {name}: no secret"))?;
        keys.push(Key::new(name, alg, secret)?);
    }
    Ok(keys)
}

/// The TSIG record of a received message, borrowed from it.
#[derive(Debug, Clone)]
pub struct TsigRecord<'a> {
    /// Where the record starts (the message without it is `msg[..start]`).
    pub start: usize,
    /// The key name (wire format, as sent).
    pub key_name: NameBuf,
    /// The algorithm name (wire format).
    pub algorithm: &'a [u8],
    pub time_signed: u64,
    pub fudge: u16,
    pub mac: &'a [u8],
    pub original_id: u16,
    pub error: u16,
    pub other: &'a [u8],
}

/// A message whose TSIG record is broken or misplaced (answer FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The TSIG record of `msg` if it has one. It must be the last record of the additional
/// section and the only one (RFC 8945 §5.1); otherwise the message is malformed.
pub fn find(msg: &[u8]) -> Result<Option<TsigRecord<'_>>, Malformed> {
    let m = Message::from_octets(msg).map_err(|_| Malformed)?;
    if m.header_counts().arcount() == 0 {
        return Ok(None);
    }
    let mut section = m.additional().map_err(|_| Malformed)?;
    let mut found = None;
    loop {
        let start = section.pos();
        let Some(rec) = section.next() else { break };
        let rec = rec.map_err(|_| Malformed)?;
        if found.is_some() {
            return Err(Malformed); // TSIG not last
        }
        if rec.rtype() == Rtype::from_int(TYPE_TSIG) {
            let mut owner = Vec::new();
            let _ = rec.owner().compose(&mut owner);
            found = Some((start, owner.into_boxed_slice()));
        }
    }
    let Some((start, key_name)) = found else { return Ok(None) };
    read_record(msg, start, key_name).map(Some).ok_or(Malformed)
}

fn read_record(msg: &[u8], start: usize, key_name: NameBuf) -> Option<TsigRecord<'_>> {
    let mut p = skip_name(msg, start)?;
    let fixed = msg.get(p..p + 10)?;
    let class = u16::from_be_bytes([fixed[2], fixed[3]]);
    let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
    p += 10;
    let rdata = msg.get(p..p + rdlen)?;
    if class != CLASS_ANY || p + rdlen != msg.len() {
        return None;
    }
    // Algorithm name, uncompressed.
    let mut q = 0;
    loop {
        let len = *rdata.get(q)? as usize;
        if len > 63 {
            return None;
        }
        q += 1 + len;
        if len == 0 {
            break;
        }
    }
    let algorithm = &rdata[..q];
    let rest = rdata.get(q..q + 10)?;
    let time_signed = rest[..6].iter().fold(0u64, |acc, &b| (acc << 8) | b as u64);
    let fudge = u16::from_be_bytes([rest[6], rest[7]]);
    let mac_len = u16::from_be_bytes([rest[8], rest[9]]) as usize;
    q += 10;
    let mac = rdata.get(q..q + mac_len)?;
    q += mac_len;
    let tail = rdata.get(q..q + 6)?;
    let original_id = u16::from_be_bytes([tail[0], tail[1]]);
    let error = u16::from_be_bytes([tail[2], tail[3]]);
    let other_len = u16::from_be_bytes([tail[4], tail[5]]) as usize;
    q += 6;
    let other = rdata.get(q..q + other_len)?;
    if q + other_len != rdata.len() {
        return None;
    }
    Some(TsigRecord { start, key_name, algorithm, time_signed, fudge, mac, original_id, error, other })
}

/// Skips a (possibly compressed) name starting at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2).filter(|&e| e <= msg.len()),
            l if l > 63 => return None,
            l => pos += 1 + l as usize,
        }
    }
}

/// What goes into the MAC besides the message: the full variables (first message of an
/// exchange) or only the timers (later messages of a transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vars {
    Full,
    Timers,
}

/// The fields of the TSIG record being signed or checked.
#[derive(Debug, Clone, Copy)]
struct Fields<'a> {
    time: u64,
    fudge: u16,
    error: u16,
    other: &'a [u8],
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

/// Appends a TSIG record with `mac` to `msg` (bumping ARCOUNT).
fn append(msg: &mut Vec<u8>, key: &Key, mac: &[u8], f: &Fields<'_>) {
    let original_id = u16::from_be_bytes([msg[0], msg[1]]);
    let alg = key.algorithm.wire_name();
    msg.extend_from_slice(&key.name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = alg.len() + 16 + mac.len() + f.other.len();
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(&alg);
    msg.extend_from_slice(&f.time.to_be_bytes()[2..]);
    msg.extend_from_slice(&f.fudge.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&f.error.to_be_bytes());
    msg.extend_from_slice(&(f.other.len() as u16).to_be_bytes());
    msg.extend_from_slice(f.other);
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Bytes a TSIG record with `key` adds to a message (for leaving room when building it).
pub fn record_size(key: &Key) -> usize {
    key.name.len() + 10 + key.algorithm.wire_name().len() + 16 + key.algorithm.mac_len() + 6
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

/// Appends an unsigned TSIG record carrying `error` (BADKEY, BADSIG: RFC 8945 §5.3.2), naming
/// the key and algorithm the request used.
pub fn append_unsigned_error(msg: &mut Vec<u8>, request: &TsigRecord<'_>, now: u64, error: u16) {
    let original_id = u16::from_be_bytes([msg[0], msg[1]]);
    msg.extend_from_slice(&request.key_name);
    msg.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    msg.extend_from_slice(&CLASS_ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    let rdlen = request.algorithm.len() + 16;
    msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
    msg.extend_from_slice(request.algorithm);
    msg.extend_from_slice(&now.to_be_bytes()[2..]);
    msg.extend_from_slice(&request.fudge.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes());
    let ar = u16::from_be_bytes([msg[10], msg[11]]).wrapping_add(1);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
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

/// Removes the TSIG record from a verified message (so it parses as the plain message).
pub fn strip(msg: &[u8]) -> Vec<u8> {
    match find(msg) {
        Ok(Some(t)) => {
            let mut out = msg[..t.start].to_vec();
            out[..2].copy_from_slice(&t.original_id.to_be_bytes());
            let ar = u16::from_be_bytes([out[10], out[11]]).saturating_sub(1);
            out[10..12].copy_from_slice(&ar.to_be_bytes());
            out
        }
        _ => msg.to_vec(),
    }
}

/// Seconds since the Unix epoch, for the drivers (the cores take `now` as an argument).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::message::build_query;

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
