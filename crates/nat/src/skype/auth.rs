//! Directory-entry authentication, SCRAM-style (RFC 5802 in spirit): the SNs keep only a salt
//! and StoredKey = SHA-256(ClientKey), where ClientKey = HMAC(PBKDF2(password, salt), "Client
//! Key"). A registration proves the password with ClientKey XOR HMAC(StoredKey, nonce ‖ signed
//! bytes); the SN recovers ClientKey and checks its hash. Neither the password nor ClientKey ever
//! crosses the wire, and what the SNs store does not let anyone register as the user.

use super::wire::Verifier;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

/// PBKDF2 rounds (RFC 7677 asks for at least 4096).
pub const ITERATIONS: u32 = 4096;

/// A user's secret, derived once from the password and salt.
#[derive(Clone)]
pub struct ClientKey([u8; 32]);

impl ClientKey {
    /// PBKDF2-HMAC-SHA256 of the password, then HMAC with "Client Key".
    pub fn derive(password: &str, salt: &[u8; 16]) -> ClientKey {
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, password.as_bytes(), &mut salted);
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        ClientKey(key)
    }

    /// What the SNs store to check later proofs: the salt and SHA-256(ClientKey).
    pub fn verifier(&self, salt: [u8; 16]) -> Verifier {
        Verifier { salt, stored_key: sha256(&self.0) }
    }

    /// The proof for `nonce` over `signed` (the message's bytes that must not change).
    pub fn prove(&self, stored_key: &[u8; 32], nonce: &[u8; 16], signed: &[u8]) -> [u8; 32] {
        let sig = signature(stored_key, nonce, signed);
        let mut proof = [0u8; 32];
        for (i, p) in proof.iter_mut().enumerate() {
            *p = self.0[i] ^ sig[i];
        }
        proof
    }
}

/// Checks a proof against the stored key, in constant time.
pub fn check(stored_key: &[u8; 32], nonce: &[u8; 16], signed: &[u8], proof: &[u8; 32]) -> bool {
    let sig = signature(stored_key, nonce, signed);
    let mut client_key = [0u8; 32];
    for (i, c) in client_key.iter_mut().enumerate() {
        *c = proof[i] ^ sig[i];
    }
    sha256(&client_key).iter().zip(stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn signature(stored_key: &[u8; 32], nonce: &[u8; 16], signed: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, stored_key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(nonce);
    ctx.update(signed);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_proves_and_nothing_else_does() {
        let salt = [5u8; 16];
        let key = ClientKey::derive("secret", &salt);
        let v = key.verifier(salt);
        let nonce = [1u8; 16];
        let proof = key.prove(&v.stored_key, &nonce, b"candidates");
        assert!(check(&v.stored_key, &nonce, b"candidates", &proof));
        assert!(!check(&v.stored_key, &nonce, b"other candidates", &proof));
        assert!(!check(&v.stored_key, &[2u8; 16], b"candidates", &proof));
        let wrong = ClientKey::derive("guess", &salt);
        assert!(!check(
            &v.stored_key,
            &nonce,
            b"candidates",
            &wrong.prove(&v.stored_key, &nonce, b"candidates")
        ));
        // Knowing only the stored key (what an SN holds) does not give a valid proof.
        let forged = ClientKey(v.stored_key);
        assert!(!check(
            &v.stored_key,
            &nonce,
            b"candidates",
            &forged.prove(&v.stored_key, &nonce, b"candidates")
        ));
    }
}
