//! Promotion of a peer to supernode: the policy an SN applies, the membership grant it hands
//! over and the handoff's cryptography.
//!
//! The grant is not the overlay secret: it is the overlay's keys for the current and the next
//! epoch (see [`super::overlay::epoch_key`]), so it expires by itself and must be renewed by
//! asking again. It travels in a `Promoted` answer sealed with ChaCha20-Poly1305 under
//! HKDF-SHA256(salt = the user's StoredKey, X25519(peer's ephemeral key, SN's ephemeral key),
//! info = "appnet skype promote" ‖ user). The peer's key is covered by its SCRAM-style proof,
//! so an active attacker cannot substitute its own without the user's ClientKey; an eavesdropper
//! sees two public keys and ciphertext.

use super::wire;
use ring::{aead, agreement, hkdf, hmac, rand::SystemRandom};
use std::net::SocketAddr;
use std::time::Duration;

/// Most epoch keys in one grant.
pub const MAX_GRANT_KEYS: usize = 4;
const INFO: &[u8] = b"appnet skype promote";

/// When an SN promotes a peer that asks (`Promote`): all must hold.
#[derive(Debug, Clone)]
pub struct PromotionPolicy {
    /// The peer must have been registered from the same address for at least this long.
    pub min_uptime: Duration,
    /// The overlay wants more SNs while it has fewer live ones than this.
    pub target_supernodes: usize,
}

impl Default for PromotionPolicy {
    fn default() -> Self {
        PromotionPolicy { min_uptime: Duration::from_secs(300), target_supernodes: 8 }
    }
}

/// What a promoted SN receives: the overlay's keys for some epochs and whom to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Length of an epoch in seconds (the overlay's key period).
    pub epoch_secs: u32,
    /// (epoch number, key) pairs; the grant is good until the last epoch ends.
    pub keys: Vec<(u64, [u8; 32])>,
    /// Live SNs to join.
    pub members: Vec<SocketAddr>,
}

/// Why a grant could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("the grant does not open under our key (tampered, or not for us)")]
    Open,
    #[error("malformed grant")]
    Malformed,
}

impl Grant {
    /// Unix seconds at which the last key's epoch ends.
    pub fn expires_unix(&self) -> u64 {
        let last = self.keys.iter().map(|(e, _)| *e).max().unwrap_or(0);
        last.saturating_add(1).saturating_mul(self.epoch_secs as u64)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = self.epoch_secs.to_be_bytes().to_vec();
        let keys = &self.keys[..self.keys.len().min(MAX_GRANT_KEYS)];
        out.push(keys.len() as u8);
        for (e, k) in keys {
            out.extend_from_slice(&e.to_be_bytes());
            out.extend_from_slice(k);
        }
        let members = &self.members[..self.members.len().min(wire::MAX_SNS)];
        let pong = wire::encode(0, &wire::Msg::Pong { sns: members.to_vec() });
        out.extend_from_slice(&pong);
        out
    }

    /// Decodes an opened grant (public for the fuzz target; never panics).
    pub fn decode(raw: &[u8]) -> Result<Grant, GrantError> {
        let take = |r: &mut &[u8], n: usize| -> Result<Vec<u8>, GrantError> {
            if r.len() < n {
                return Err(GrantError::Malformed);
            }
            let (h, t) = r.split_at(n);
            *r = t;
            Ok(h.to_vec())
        };
        let mut r = raw;
        let epoch_secs = u32::from_be_bytes(take(&mut r, 4)?.try_into().map_err(|_| GrantError::Malformed)?);
        let n = take(&mut r, 1)?[0] as usize;
        if n > MAX_GRANT_KEYS || epoch_secs == 0 {
            return Err(GrantError::Malformed);
        }
        let mut keys = Vec::with_capacity(n);
        for _ in 0..n {
            let e = u64::from_be_bytes(take(&mut r, 8)?.try_into().map_err(|_| GrantError::Malformed)?);
            let k: [u8; 32] = take(&mut r, 32)?.try_into().map_err(|_| GrantError::Malformed)?;
            keys.push((e, k));
        }
        match wire::decode(r) {
            Ok((_, wire::Msg::Pong { sns })) => Ok(Grant { epoch_secs, keys, members: sns }),
            _ => Err(GrantError::Malformed),
        }
    }
}

/// The tag a candidate puts in its ProbeAck: HMAC-SHA256(StoredKey, "appnet skype probe" ‖
/// nonce). The SN checks it against the user's StoredKey, so an SN that answers probes on the
/// same IP cannot answer for a user.
pub fn probe_tag(stored_key: &[u8; 32], nonce: &[u8; 16]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, stored_key));
    ctx.update(b"appnet skype probe");
    ctx.update(nonce);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Whether `tag` is [`probe_tag`] of `nonce` under `stored_key` (constant time).
pub fn probe_tag_ok(stored_key: &[u8; 32], nonce: &[u8; 16], tag: &[u8; 32]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, stored_key);
    let mut msg = b"appnet skype probe".to_vec();
    msg.extend_from_slice(nonce);
    hmac::verify(&key, &msg, tag).is_ok()
}

/// The peer's half of the handoff: an ephemeral X25519 key pair.
pub struct Handoff {
    private: agreement::EphemeralPrivateKey,
    public: [u8; 32],
}

fn aead_key(shared: &[u8], stored_key: &[u8; 32], user: &str) -> aead::LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, stored_key).extract(shared);
    let info = [INFO, user.as_bytes()];
    let okm = prk.expand(&info, &aead::CHACHA20_POLY1305).unwrap_or_else(|_| unreachable!("32-byte output"));
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

fn ephemeral() -> Option<(agreement::EphemeralPrivateKey, [u8; 32])> {
    let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &SystemRandom::new()).ok()?;
    let public: [u8; 32] = private.compute_public_key().ok()?.as_ref().try_into().ok()?;
    Some((private, public))
}

impl Handoff {
    /// A fresh key pair (None only if the system's random source fails).
    pub fn new() -> Option<Handoff> {
        let (private, public) = ephemeral()?;
        Some(Handoff { private, public })
    }

    /// The public key to put in the Promote.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// Opens the SN's `Promoted` answer with the user's StoredKey.
    pub fn open(
        self,
        their_public: &[u8; 32],
        stored_key: &[u8; 32],
        user: &str,
        sealed: &[u8],
    ) -> Result<Grant, GrantError> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, their_public);
        let key = agreement::agree_ephemeral(self.private, &peer, |s| aead_key(s, stored_key, user))
            .map_err(|_| GrantError::Open)?;
        let mut buf = sealed.to_vec();
        let nonce = aead::Nonce::assume_unique_for_key([0; 12]);
        let plain = key
            .open_in_place(nonce, aead::Aad::from(user.as_bytes()), &mut buf)
            .map_err(|_| GrantError::Open)?;
        Grant::decode(plain)
    }
}

/// The SN's half: seals `grant` for the peer whose ephemeral key is `their_public`; returns
/// our public key and the ciphertext. Each call uses a fresh key pair, so the all-zero AEAD
/// nonce is used once per key.
pub fn seal_grant(
    their_public: &[u8; 32],
    stored_key: &[u8; 32],
    user: &str,
    grant: &Grant,
) -> Option<([u8; 32], Vec<u8>)> {
    let (private, public) = ephemeral()?;
    let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, their_public);
    let key = agreement::agree_ephemeral(private, &peer, |s| aead_key(s, stored_key, user)).ok()?;
    let mut buf = grant.encode();
    let nonce = aead::Nonce::assume_unique_for_key([0; 12]);
    key.seal_in_place_append_tag(nonce, aead::Aad::from(user.as_bytes()), &mut buf).ok()?;
    Some((public, buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            epoch_secs: 600,
            keys: vec![(7, [1; 32]), (8, [2; 32])],
            members: vec!["192.0.2.1:33033".parse().unwrap(), "192.0.2.2:33033".parse().unwrap()],
        }
    }

    #[test]
    fn the_grant_opens_only_with_the_right_keys_and_user() {
        let stored = [9u8; 32];
        let h = Handoff::new().unwrap();
        let (sn_pub, sealed) = seal_grant(&h.public_key(), &stored, "carol", &grant()).unwrap();
        assert!(sealed.len() + 32 < wire::MAX_PAYLOAD);
        assert_eq!(h.open(&sn_pub, &stored, "carol", &sealed), Ok(grant()));
        assert_eq!(grant().expires_unix(), 9 * 600);
        // Another user's stored key, another name, another ephemeral key, a flipped bit: nothing.
        for (stored, user, flip) in
            [([8u8; 32], "carol", false), (stored, "dave", false), (stored, "carol", true)]
        {
            let h = Handoff::new().unwrap();
            let (sn_pub, mut sealed) = seal_grant(&h.public_key(), &[9u8; 32], "carol", &grant()).unwrap();
            if flip {
                sealed[3] ^= 1;
            }
            assert_eq!(h.open(&sn_pub, &stored, user, &sealed), Err(GrantError::Open));
        }
        let eve = Handoff::new().unwrap();
        assert_eq!(eve.open(&sn_pub, &stored, "carol", &sealed), Err(GrantError::Open));
    }

    #[test]
    fn a_truncated_grant_is_malformed_not_a_panic() {
        let raw = grant().encode();
        assert_eq!(Grant::decode(&raw), Ok(grant()));
        for n in 0..raw.len() {
            assert!(Grant::decode(&raw[..n]).is_err());
        }
    }
}
