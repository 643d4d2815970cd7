//! TSIG keys (RFC 8945 §4.1 key name and algorithm, plus the shared secret): parsing them from
//! specs and BIND-style key files, and the keyring a server looks them up in.

use crate::wire::name::{self, NameBuf};
use ring::hmac;
use std::sync::Arc;

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

    pub(super) fn from_wire(wire: &[u8]) -> Option<Algorithm> {
        let low = name::to_lower(wire);
        Algorithm::ALL.into_iter().find(|a| a.wire_name() == low)
    }

    pub(super) fn ring(self) -> hmac::Algorithm {
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

    pub(super) fn context(&self) -> hmac::Context {
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

/// `text` with BIND's comments (`#` and `//` to the end of the line, `/* ... */`) replaced by
/// spaces; inside double quotes nothing is a comment (a base64 secret may contain `//`).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            quoted = c != '"';
            out.push(c);
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                out.push(c);
            }
            '#' => skip_line(&mut chars, &mut out),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut out),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Drops the rest of the line (the newline itself is kept as a separator).
fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
    out.push('\n');
}

/// Reads the keys of a BIND-style key file (what `tsig-keygen` and `ddns-confgen` print, also
/// accepted by Knot's `keymgr` import): `key "NAME" { algorithm ALG; secret "BASE64"; };`.
pub fn parse_key_file(text: &str) -> Result<Vec<Key>, String> {
    // Comments out, then tokens split on whitespace, braces, semicolons and quotes.
    let cleaned = strip_comments(text);
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
