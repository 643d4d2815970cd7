//! Push authentication, sans-IO: an HMAC-SHA256 of `"{timestamp}.{body}"` under a secret
//! shared by the content provider and its replicas, a timestamp window, and a replay memory of
//! the signatures accepted within that window. No clock is read here: callers pass `now`.
//!
//! Why HMAC over the body rather than a bearer token: the signature binds the exact list of
//! URLs and the time, so a captured request cannot be altered, and cannot be replayed after
//! the window (nor within it: the replay memory refuses a signature seen before). The secret
//! itself never crosses the network.

use ring::hmac;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// Header carrying the Unix time (seconds) the push was signed at.
pub const TIMESTAMP_HEADER: &str = "x-appnet-push-timestamp";
/// Header carrying `sha256=<hex>` of the HMAC.
pub const SIGNATURE_HEADER: &str = "x-appnet-push-signature";
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;

/// Why a push was refused before anything was fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No or malformed timestamp / signature header.
    #[error("missing or malformed {0} header")]
    Malformed(&'static str),
    /// The timestamp is further than the window from now (clock skew or an old capture).
    #[error("timestamp is {0} s away from this replica's clock (window {1} s): check both clocks")]
    Expired(u64, u64),
    /// The HMAC does not match this body and timestamp under the replica's secret.
    #[error("bad signature (is the secret the same on both sides?)")]
    BadSignature,
    /// This exact signed push was already accepted within the window.
    #[error("replayed push (this signature was already used)")]
    Replayed,
    /// The replay memory is full of unexpired signatures: too many pushes in one window.
    #[error("too many pushes within the window; retry later")]
    Busy,
}

impl AuthError {
    /// The HTTP status: 401 for what a correct signer would not send, 403 for a replay, 503
    /// when the replay memory is full.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Malformed(_) | AuthError::Expired(..) | AuthError::BadSignature => 401,
            AuthError::Replayed => 403,
            AuthError::Busy => 503,
        }
    }
}

/// The secret as an HMAC key.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl Secret {
    /// A secret from the raw bytes of a secret file (surrounding whitespace removed); `None`
    /// when shorter than [`MIN_SECRET`].
    pub fn new(raw: &[u8]) -> Option<Secret> {
        let s = raw.trim_ascii();
        (s.len() >= MIN_SECRET).then(|| Secret(hmac::Key::new(hmac::HMAC_SHA256, s)))
    }

    /// The signature header value (`sha256=<hex>`) for `body` signed at `timestamp`.
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.0, &message(timestamp, body));
        format!("sha256={}", hex(tag.as_ref()))
    }
}

fn message(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut m = format!("{timestamp}.").into_bytes();
    m.extend_from_slice(body);
    m
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// The Unix time of `now` in seconds.
pub fn unix(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Checks signatures and remembers the accepted ones for the window.
pub struct Verifier {
    secret: Secret,
    window: Duration,
    max_seen: usize,
    /// Accepted signatures and when they may be forgotten.
    seen: HashMap<Vec<u8>, SystemTime>,
}

impl Verifier {
    /// A verifier accepting timestamps within `window` of now, remembering at most `max_seen`
    /// signatures.
    pub fn new(secret: Secret, window: Duration, max_seen: usize) -> Verifier {
        Verifier { secret, window, max_seen: max_seen.max(1), seen: HashMap::new() }
    }

    /// Verifies a push: its `timestamp` and `signature` header values and `body`, at `now`.
    /// On success the signature is remembered, so the same push is refused next time.
    pub fn verify(
        &mut self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), AuthError> {
        let ts: u64 =
            timestamp.and_then(|t| t.trim().parse().ok()).ok_or(AuthError::Malformed(TIMESTAMP_HEADER))?;
        let tag = signature
            .and_then(|s| s.trim().strip_prefix("sha256="))
            .and_then(unhex)
            .filter(|t| t.len() == 32)
            .ok_or(AuthError::Malformed(SIGNATURE_HEADER))?;
        let now_s = unix(now);
        let skew = now_s.abs_diff(ts);
        if skew > self.window.as_secs() {
            return Err(AuthError::Expired(skew, self.window.as_secs()));
        }
        // Constant-time comparison inside ring.
        hmac::verify(&self.secret.0, &message(ts, body), &tag).map_err(|_| AuthError::BadSignature)?;
        if self.seen.contains_key(&tag) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.max_seen {
            self.seen.retain(|_, until| *until > now);
            if self.seen.len() >= self.max_seen {
                return Err(AuthError::Busy);
            }
        }
        // Forgettable once its timestamp can no longer pass the window check.
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(ts) + self.window + Duration::from_secs(1);
        self.seen.insert(tag, until);
        Ok(())
    }

    /// Signatures remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(max: usize) -> Verifier {
        Verifier::new(Secret::new(b"0123456789abcdef-secret\n").unwrap(), Duration::from_secs(300), max)
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"  short \n").is_none());
        assert!(Secret::new(b"0123456789abcdef").is_some());
    }

    #[test]
    fn a_signed_push_passes_once() {
        let mut v = verifier(10);
        let s = Secret::new(b"0123456789abcdef-secret").unwrap();
        let sig = s.sign(1_000_000, b"http://a/x\n");
        assert_eq!(v.verify(Some("1000000"), Some(&sig), b"http://a/x\n", at(1_000_100)), Ok(()));
        assert_eq!(
            v.verify(Some("1000000"), Some(&sig), b"http://a/x\n", at(1_000_101)),
            Err(AuthError::Replayed)
        );
    }

    #[test]
    fn altered_body_timestamp_or_secret_fail() {
        let mut v = verifier(10);
        let s = Secret::new(b"0123456789abcdef-secret").unwrap();
        let sig = s.sign(1_000_000, b"http://a/x\n");
        let now = at(1_000_000);
        assert_eq!(v.verify(Some("1000000"), Some(&sig), b"http://a/y\n", now), Err(AuthError::BadSignature));
        assert_eq!(v.verify(Some("1000001"), Some(&sig), b"http://a/x\n", now), Err(AuthError::BadSignature));
        let other = Secret::new(b"another-secret-of-16").unwrap().sign(1_000_000, b"http://a/x\n");
        assert_eq!(
            v.verify(Some("1000000"), Some(&other), b"http://a/x\n", now),
            Err(AuthError::BadSignature)
        );
        assert_eq!(v.remembered(), 0);
    }

    #[test]
    fn timestamps_outside_the_window_are_expired() {
        let mut v = verifier(10);
        let s = Secret::new(b"0123456789abcdef-secret").unwrap();
        let sig = s.sign(1_000_000, b"b");
        assert_eq!(
            v.verify(Some("1000000"), Some(&sig), b"b", at(1_000_301)),
            Err(AuthError::Expired(301, 300))
        );
        assert_eq!(
            v.verify(Some("1000000"), Some(&sig), b"b", at(999_699)),
            Err(AuthError::Expired(301, 300))
        );
        assert_eq!(AuthError::Expired(1, 1).status(), 401);
    }

    #[test]
    fn junk_headers_are_malformed() {
        let mut v = verifier(10);
        let now = at(1_000_000);
        for (ts, sig) in [
            (None, Some("sha256=00")),
            (Some("x"), Some("sha256=00")),
            (Some("1000000"), None),
            (Some("1000000"), Some("md5=00")),
            (Some("1000000"), Some("sha256=zz")),
            (Some("1000000"), Some("sha256=0")),
            (Some("1000000"), Some("sha256=é")),
            (Some("1000000"), Some("sha256=0011")),
        ] {
            assert!(matches!(v.verify(ts, sig, b"", now), Err(AuthError::Malformed(_))), "{ts:?} {sig:?}");
        }
    }

    #[test]
    fn the_replay_memory_is_bounded_and_forgets_expired_signatures() {
        let mut v = verifier(2);
        let s = Secret::new(b"0123456789abcdef-secret").unwrap();
        for (i, body) in [b"a", b"b"].iter().enumerate() {
            let sig = s.sign(1_000_000, *body);
            assert_eq!(v.verify(Some("1000000"), Some(&sig), *body, at(1_000_000 + i as u64)), Ok(()));
        }
        let sig = s.sign(1_000_000, b"c");
        assert_eq!(v.verify(Some("1000000"), Some(&sig), b"c", at(1_000_010)), Err(AuthError::Busy));
        let sig = s.sign(1_000_400, b"c");
        assert_eq!(v.verify(Some("1000400"), Some(&sig), b"c", at(1_000_400)), Ok(()));
        assert_eq!(v.remembered(), 1);
    }
}
