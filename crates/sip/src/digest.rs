//! HTTP Digest for SIP (RFC 3261 §22, RFC 8760): MD5 and SHA-256 challenges, qop=auth with
//! nonce counts, nonces that expire and cannot be replayed, constant-time comparison.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The digest algorithms we offer, in the order of the challenges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The `algorithm=` token.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex of the hash of `data`.
    pub fn hex(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 => Sha256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// HA1 = H(username:realm:password).
    pub fn ha1(self, user: &str, realm: &str, password: &str) -> String {
        self.hex(&format!("{user}:{realm}:{password}"))
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials for our realm: challenge.
    Missing,
    /// The nonce is unknown or expired: challenge again with `stale=true`.
    Stale,
    /// Wrong password, replayed nonce count or malformed credentials.
    Denied,
}

/// Parsed `Authorization: Digest ...` parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
}

/// Parses the value of an Authorization header; `None` if it is not Digest.
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let rest = value.trim();
    let (scheme, rest) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Credentials::default();
    for part in crate::wire::split_list(rest) {
        let (k, v) = part.split_once('=')?;
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "username" => c.username = v,
            "realm" => c.realm = v,
            "nonce" => c.nonce = v,
            "uri" => c.uri = v,
            "response" => c.response = v.to_ascii_lowercase(),
            "algorithm" => c.algorithm = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            _ => {}
        }
    }
    (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
}

struct NonceState {
    issued: Instant,
    /// Highest nonce count seen; 0 before first use.
    last_nc: u32,
}

/// Nonces we issued: each expires after `lifetime`, each nonce count is accepted once and
/// in increasing order, a nonce used without qop is single-use. Bounded: the oldest are
/// forgotten first.
pub struct NonceStore {
    lifetime: Duration,
    capacity: usize,
    nonces: HashMap<String, NonceState>,
    order: VecDeque<String>,
}

impl NonceStore {
    /// A store of at most `capacity` live nonces valid for `lifetime`.
    pub fn new(lifetime: Duration, capacity: usize) -> Self {
        NonceStore { lifetime, capacity: capacity.max(1), nonces: HashMap::new(), order: VecDeque::new() }
    }

    /// Mints a fresh random nonce.
    pub fn issue(&mut self, now: Instant) -> String {
        let nonce: String = (0..16).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        while self.nonces.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.nonces.remove(&old);
                }
                None => break,
            }
        }
        self.nonces.insert(nonce.clone(), NonceState { issued: now, last_nc: 0 });
        self.order.push_back(nonce.clone());
        nonce
    }

    /// The two WWW-Authenticate values for `realm`: MD5 first (what most phones read),
    /// then SHA-256 (RFC 8760), sharing one nonce.
    pub fn challenge(&mut self, realm: &str, stale: bool, now: Instant) -> Vec<String> {
        let nonce = self.issue(now);
        let stale = if stale { ", stale=true" } else { "" };
        [Algorithm::Md5, Algorithm::Sha256]
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    a.name()
                )
            })
            .collect()
    }

    /// Checks credentials against the user's HA1 for the algorithm they chose. `ha1` maps
    /// an algorithm to the stored HA1 (None: unknown user).
    pub fn verify(
        &mut self,
        c: &Credentials,
        method: &str,
        ha1: impl Fn(Algorithm) -> Option<String>,
        now: Instant,
    ) -> Result<(), AuthError> {
        let alg = match c.algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("MD5") => Algorithm::Md5,
            Some("SHA-256") => Algorithm::Sha256,
            _ => return Err(AuthError::Denied),
        };
        let Some(state) = self.nonces.get(&c.nonce) else { return Err(AuthError::Stale) };
        if now.duration_since(state.issued) >= self.lifetime {
            self.nonces.remove(&c.nonce);
            return Err(AuthError::Stale);
        }
        // Unknown user: same work and same answer as a wrong password.
        let ha1 = ha1(alg).unwrap_or_else(|| alg.hex("no such user"));
        let ha2 = alg.hex(&format!("{method}:{}", c.uri));
        let (expected, nc) = match c.qop.as_deref() {
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (&c.nc, &c.cnonce) else { return Err(AuthError::Denied) };
                let n = u32::from_str_radix(nc, 16).map_err(|_| AuthError::Denied)?;
                (alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce)), Some(n))
            }
            Some(_) => return Err(AuthError::Denied),
            None => (alg.hex(&format!("{ha1}:{}:{ha2}", c.nonce)), None),
        };
        if !bool::from(expected.as_bytes().ct_eq(c.response.as_bytes())) {
            return Err(AuthError::Denied);
        }
        let state = self.nonces.get_mut(&c.nonce).ok_or(AuthError::Stale)?;
        match nc {
            Some(n) if n > state.last_nc => state.last_nc = n,
            Some(_) => return Err(AuthError::Denied),
            None => {
                if state.last_nc != 0 {
                    return Err(AuthError::Denied);
                }
                state.last_nc = u32::MAX;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5's example, computed with its values.
    #[test]
    fn rfc2617_example_response() {
        let ha1 = Algorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let ha2 = Algorithm::Md5.hex("GET:/dir/index.html");
        let r = Algorithm::Md5
            .hex(&format!("{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"));
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    fn answer(ch: &str, alg: Algorithm, nc: &str, password: &str) -> Credentials {
        let nonce = ch.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
        let ha1 = alg.ha1("bob", "umass.edu", password);
        let ha2 = alg.hex("REGISTER:sip:umass.edu");
        let response = alg.hex(&format!("{ha1}:{nonce}:{nc}:xyz:auth:{ha2}"));
        let v = format!(
            "Digest username=\"bob\", realm=\"umass.edu\", nonce=\"{nonce}\", uri=\"sip:umass.edu\", response=\"{response}\", algorithm={}, cnonce=\"xyz\", qop=auth, nc={nc}",
            alg.name()
        );
        parse_credentials(&v).unwrap()
    }

    #[test]
    fn md5_and_sha256_nonce_counts_replay_and_expiry() {
        let t0 = Instant::now();
        let mut store = NonceStore::new(Duration::from_secs(300), 100);
        let ch = store.challenge("umass.edu", false, t0);
        assert!(ch[0].contains("algorithm=MD5") && ch[1].contains("algorithm=SHA-256"));
        let ha1 = |a: Algorithm| Some(a.ha1("bob", "umass.edu", "pw"));
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let ch = store.challenge("umass.edu", false, t0);
            let c = answer(&ch[0], alg, "00000001", "pw");
            assert_eq!(store.verify(&c, "REGISTER", ha1, t0), Ok(()));
            assert_eq!(store.verify(&c, "REGISTER", ha1, t0), Err(AuthError::Denied), "replay");
            let c2 = answer(&ch[0], alg, "00000002", "pw");
            assert_eq!(store.verify(&c2, "REGISTER", ha1, t0), Ok(()));
            let wrong = answer(&ch[0], alg, "00000003", "nope");
            assert_eq!(store.verify(&wrong, "REGISTER", ha1, t0), Err(AuthError::Denied));
            assert_eq!(store.verify(&c2, "INVITE", ha1, t0), Err(AuthError::Denied));
        }
        let ch = store.challenge("umass.edu", false, t0);
        let c = answer(&ch[0], Algorithm::Md5, "00000001", "pw");
        assert_eq!(store.verify(&c, "REGISTER", ha1, t0 + Duration::from_secs(300)), Err(AuthError::Stale));
        let mut forged = c.clone();
        forged.nonce = "00".into();
        assert_eq!(store.verify(&forged, "REGISTER", ha1, t0), Err(AuthError::Stale));
    }

    #[test]
    fn store_is_bounded_and_junk_is_refused() {
        let t0 = Instant::now();
        let mut store = NonceStore::new(Duration::from_secs(300), 3);
        let first = store.issue(t0);
        for _ in 0..10 {
            store.issue(t0);
        }
        assert!(store.nonces.len() <= 3 && !store.nonces.contains_key(&first));
        assert!(parse_credentials("Basic Ym9iOnB3").is_none());
        assert!(parse_credentials("Digest garbage").is_none());
        assert!(parse_credentials("Digest username=\"a\"").is_none());
    }
}
