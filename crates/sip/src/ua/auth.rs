//! The client side of Digest (RFC 3261 §22.2, RFC 8760): answering a 401/407 challenge.

use crate::digest::Algorithm;
use crate::wire::{Message, split_list};

/// One challenge from `WWW-Authenticate` or `Proxy-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    pub qop_auth: bool,
}

/// Parses one challenge value; `None` if it is not a Digest challenge we can answer.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Challenge {
        realm: String::new(),
        nonce: String::new(),
        algorithm: Algorithm::Md5,
        opaque: None,
        qop_auth: false,
    };
    for part in split_list(rest) {
        let Some((k, v)) = part.split_once('=') else { continue };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "realm" => c.realm = v.to_string(),
            "nonce" => c.nonce = v.to_string(),
            "opaque" => c.opaque = Some(v.to_string()),
            "qop" => c.qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
            "algorithm" => {
                c.algorithm = match v.to_ascii_uppercase().as_str() {
                    "MD5" => Algorithm::Md5,
                    "SHA-256" => Algorithm::Sha256,
                    _ => return None,
                }
            }
            _ => {}
        }
    }
    (!c.nonce.is_empty()).then_some(c)
}

/// The strongest challenge a 401/407 offers: SHA-256 over MD5 (RFC 8760 §2.4), and the
/// header the answer goes in (`Authorization` or `Proxy-Authorization`).
pub fn best_challenge(resp: &Message) -> Option<(Challenge, &'static str)> {
    let (from, to) = match resp.code() {
        Some(401) => ("WWW-Authenticate", "Authorization"),
        Some(407) => ("Proxy-Authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let all: Vec<Challenge> = resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(from))
        .filter_map(|h| parse_challenge(&h.value))
        .collect();
    let best = all.iter().find(|c| c.algorithm == Algorithm::Sha256).or(all.first())?.clone();
    Some((best, to))
}

/// The credentials answering `c` for `method uri` (qop=auth when offered, with nonce count
/// `nc` and a fresh cnonce).
pub fn answer(c: &Challenge, user: &str, password: &str, method: &str, uri: &str, nc: u32) -> String {
    let alg = c.algorithm;
    let ha1 = alg.ha1(user, &c.realm, password);
    let ha2 = alg.hex(&format!("{method}:{uri}"));
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
        c.realm,
        c.nonce,
        alg.name()
    );
    if c.qop_auth {
        let cnonce: String = (0..8).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let nc = format!("{nc:08x}");
        let response = alg.hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce));
        v.push_str(&format!(", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    } else {
        let response = alg.hex(&format!("{ha1}:{}:{ha2}", c.nonce));
        v.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(o) = &c.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{NonceStore, parse_credentials};
    use std::time::{Duration, Instant};

    /// Our answers pass the registrar's own verifier, for both algorithms, and SHA-256 is
    /// preferred when offered second.
    #[test]
    fn answers_verify_against_the_server_side() {
        let now = Instant::now();
        let mut store = NonceStore::new(Duration::from_secs(60), 10);
        let mut resp = Message::request("REGISTER", "sip:umass.edu");
        resp.start = crate::wire::StartLine::Response { code: 401, reason: "Unauthorized".into() };
        for v in store.challenge("umass.edu", false, now) {
            resp.push("WWW-Authenticate", v);
        }
        let (c, header) = best_challenge(&resp).unwrap();
        assert_eq!((c.algorithm, header), (Algorithm::Sha256, "Authorization"));
        for (alg, nc) in [(Algorithm::Sha256, 1), (Algorithm::Md5, 2)] {
            let ch = Challenge { algorithm: alg, ..c.clone() };
            let creds =
                parse_credentials(&answer(&ch, "bob", "pw", "REGISTER", "sip:umass.edu", nc)).unwrap();
            let ha1 = |a: Algorithm| Some(a.ha1("bob", "umass.edu", "pw"));
            assert_eq!(store.verify(&creds, "REGISTER", ha1, now), Ok(()));
        }
        let wrong = parse_credentials(&answer(&c, "bob", "nope", "REGISTER", "sip:umass.edu", 3)).unwrap();
        assert!(store.verify(&wrong, "REGISTER", |a| Some(a.ha1("bob", "umass.edu", "pw")), now).is_err());
        assert!(parse_challenge("Basic realm=x").is_none());
        assert!(parse_challenge("Digest realm=\"x\", algorithm=SHA-512-256, nonce=1").is_none());
        assert!(parse_challenge("Digest ,,,=").is_none());
    }
}
