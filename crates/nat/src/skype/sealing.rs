//! Keeps password verifiers off the wire in the clear. A name's first registration carries its
//! verifier (salt and StoredKey); whoever holds a StoredKey and sees one later proof recovers
//! ClientKey (proof XOR HMAC(StoredKey, …)) and can register as the user. So:
//!
//! - each SN has a long-term X25519 key ([`SnKey`]) and advertises its public half in every
//!   Challenge; the peer seals a first registration's verifier to it with a fresh ephemeral key
//!   (X25519 → HKDF-SHA256, info "appnet skype bind" ‖ SN key ‖ user → ChaCha20-Poly1305, the
//!   user name as AAD), so only that SN opens it;
//! - SNs copying an entry to the other owner (`Store`) seal the verifier with ChaCha20-Poly1305
//!   under HMAC-SHA256(the datagram's epoch key, "appnet skype store"), with a random nonce and
//!   the user name as AAD.
//!
//! ring offers X25519 only as one-shot ephemeral keys, so the SN's long-term key is
//! x25519-dalek's `StaticSecret`; the peer's side stays on ring's ephemeral keys.

use super::wire::{SealedVerifier, Verifier};
use ring::{aead, agreement, hkdf, hmac, rand::SystemRandom};

const BIND_INFO: &[u8] = b"appnet skype bind";
const STORE_INFO: &[u8] = b"appnet skype store";
/// Bytes of a verifier in the clear (salt and StoredKey).
const PLAIN: usize = 16 + 32;
/// Bytes of a sealed verifier in a `Store`: nonce, ciphertext and tag.
pub const STORE_SEALED: usize = 12 + PLAIN + 16;

/// An SN's long-term X25519 key: peers seal first registrations to it.
#[derive(Clone)]
pub struct SnKey {
    secret: x25519_dalek::StaticSecret,
    public: [u8; 32],
}

impl SnKey {
    /// A key from a stored 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Option<SnKey> {
        let secret = x25519_dalek::StaticSecret::from(seed);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Some(SnKey { secret, public })
    }

    /// A fresh key (None only if the system's random source fails).
    pub fn generate() -> Option<SnKey> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut seed).ok()?;
        SnKey::from_seed(seed)
    }

    /// The public half, advertised in Challenges.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Opens a verifier a peer sealed to this key for `user`; None when it was not (tampered,
    /// another SN's key, another name).
    pub fn open(&self, user: &str, sealed: &SealedVerifier) -> Option<Verifier> {
        let shared = self.secret.diffie_hellman(&x25519_dalek::PublicKey::from(sealed.ephemeral));
        // A low-order point gives an all-zero secret anyone knows: refuse it, as ring does.
        if !shared.was_contributory() {
            return None;
        }
        let key = bind_key(shared.as_bytes(), &self.public, user);
        let mut buf = sealed.ciphertext.to_vec();
        let plain = key.open_in_place(zero_nonce(), aead::Aad::from(user.as_bytes()), &mut buf).ok()?;
        verifier_from(plain)
    }
}

fn zero_nonce() -> aead::Nonce {
    aead::Nonce::assume_unique_for_key([0; 12])
}

fn aead_key(ikm: &[u8], info: &[&[u8]]) -> aead::LessSafeKey {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(ikm);
    let okm = prk.expand(info, &aead::CHACHA20_POLY1305).unwrap_or_else(|_| unreachable!("32-byte output"));
    aead::LessSafeKey::new(aead::UnboundKey::from(okm))
}

fn bind_key(shared: &[u8], sn_public: &[u8; 32], user: &str) -> aead::LessSafeKey {
    aead_key(shared, &[BIND_INFO, sn_public, user.as_bytes()])
}

fn plain(v: &Verifier) -> Vec<u8> {
    let mut out = v.salt.to_vec();
    out.extend_from_slice(&v.stored_key);
    out
}

fn verifier_from(plain: &[u8]) -> Option<Verifier> {
    if plain.len() != PLAIN {
        return None;
    }
    Some(Verifier { salt: plain[..16].try_into().ok()?, stored_key: plain[16..].try_into().ok()? })
}

/// The peer's side: seals `v` for `user` to the SN whose public key is `sn_public`, with a fresh
/// ephemeral key (so the all-zero AEAD nonce is used once per key). None only if the random
/// source fails or the SN's key is not a valid X25519 point.
pub fn seal_verifier(sn_public: &[u8; 32], user: &str, v: &Verifier) -> Option<SealedVerifier> {
    let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &SystemRandom::new()).ok()?;
    let ephemeral: [u8; 32] = private.compute_public_key().ok()?.as_ref().try_into().ok()?;
    let theirs = agreement::UnparsedPublicKey::new(&agreement::X25519, sn_public);
    let key = agreement::agree_ephemeral(private, &theirs, |s| bind_key(s, sn_public, user)).ok()?;
    let mut buf = plain(v);
    key.seal_in_place_append_tag(zero_nonce(), aead::Aad::from(user.as_bytes()), &mut buf).ok()?;
    Some(SealedVerifier { ephemeral, ciphertext: buf.try_into().ok()? })
}

fn store_key(epoch_key: &hmac::Key) -> Option<aead::LessSafeKey> {
    let k = hmac::sign(epoch_key, STORE_INFO);
    Some(aead::LessSafeKey::new(aead::UnboundKey::new(&aead::CHACHA20_POLY1305, k.as_ref()).ok()?))
}

/// Seals `v` for a `Store` to the other owner under the overlay's HMAC key of the datagram's
/// epoch: a random nonce, then ciphertext and tag.
pub fn seal_store(epoch_key: &hmac::Key, user: &str, v: &Verifier) -> [u8; STORE_SEALED] {
    let mut out = [0u8; STORE_SEALED];
    let Some(key) = store_key(epoch_key) else { return out };
    let nonce: [u8; 12] = rand::random();
    let mut buf = plain(v);
    out[..12].copy_from_slice(&nonce);
    if key
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(user.as_bytes()),
            &mut buf,
        )
        .is_ok()
        && buf.len() == STORE_SEALED - 12
    {
        out[12..].copy_from_slice(&buf);
    }
    out
}

/// Opens what [`seal_store`] sealed; None when it does not open.
pub fn open_store(epoch_key: &hmac::Key, user: &str, sealed: &[u8; STORE_SEALED]) -> Option<Verifier> {
    let key = store_key(epoch_key)?;
    let nonce: [u8; 12] = sealed[..12].try_into().ok()?;
    let mut buf = sealed[12..].to_vec();
    let plain = key
        .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(user.as_bytes()), &mut buf)
        .ok()?;
    verifier_from(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Verifier {
        Verifier { salt: [3; 16], stored_key: [4; 32] }
    }

    #[test]
    fn a_sealed_verifier_opens_only_at_its_sn_for_its_user() {
        let sn = SnKey::generate().unwrap();
        assert_eq!(
            SnKey::from_seed(sn.secret.to_bytes()).unwrap().public(),
            sn.public(),
            "the seed gives the same key"
        );
        let sealed = seal_verifier(&sn.public(), "alice", &v()).unwrap();
        assert_eq!(sn.open("alice", &sealed), Some(v()));
        assert_eq!(sn.open("alice", &sealed), Some(v()), "the long-term key opens more than once");
        assert_eq!(sn.open("bob", &sealed), None);
        assert_eq!(SnKey::generate().unwrap().open("alice", &sealed), None);
        let mut flipped = sealed.clone();
        flipped.ciphertext[5] ^= 1;
        assert_eq!(sn.open("alice", &flipped), None);
        // Nothing of the verifier shows in the sealed bytes.
        assert!(!sealed.ciphertext.windows(32).any(|w| w == v().stored_key));
    }

    #[test]
    fn a_stored_copy_opens_only_under_the_same_epoch_key_and_name() {
        let k = |b: u8| hmac::Key::new(hmac::HMAC_SHA256, &[b; 32]);
        let sealed = seal_store(&k(7), "alice", &v());
        assert_eq!(open_store(&k(7), "alice", &sealed), Some(v()));
        assert_eq!(open_store(&k(8), "alice", &sealed), None);
        assert_eq!(open_store(&k(7), "bob", &sealed), None);
        assert_ne!(seal_store(&k(7), "alice", &v()), sealed, "fresh nonce each time");
        assert!(!sealed.windows(32).any(|w| w == v().stored_key));
    }
}
