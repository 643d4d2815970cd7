//! get_peers tokens (BEP 5): SHA-1 of the requester's IP and a secret that rotates every five
//! minutes; tokens from the current and the previous secret are accepted, so a token lives 5–10
//! minutes and only the address it was given to can announce with it.

use sha1::{Digest, Sha1};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How often the secret changes.
pub const ROTATE: Duration = Duration::from_secs(5 * 60);
/// Token length in bytes (a prefix of the SHA-1).
pub const TOKEN_LEN: usize = 8;

/// The rotating secret.
#[derive(Debug, Clone)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated: Instant,
}

fn make(ip: Ipv4Addr, secret: &[u8; 16]) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(ip.octets());
    h.update(secret);
    h.finalize()[..TOKEN_LEN].to_vec()
}

impl Tokens {
    /// Starts with `secret` (random in real use).
    pub fn new(secret: [u8; 16], now: Instant) -> Tokens {
        Tokens { current: secret, previous: secret, rotated: now }
    }

    /// Rotates to `fresh` if the current secret is old enough.
    pub fn tick(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 16]) {
        if now.saturating_duration_since(self.rotated) >= ROTATE {
            self.previous = self.current;
            self.current = fresh();
            self.rotated = now;
        }
    }

    /// The token to hand `ip`.
    pub fn issue(&self, ip: Ipv4Addr) -> Vec<u8> {
        make(ip, &self.current)
    }

    /// Whether `token` was issued to `ip` under the current or previous secret.
    pub fn valid(&self, ip: Ipv4Addr, token: &[u8]) -> bool {
        token == make(ip, &self.current) || token == make(ip, &self.previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_one_rotation_and_bind_the_ip() {
        let t0 = Instant::now();
        let mut t = Tokens::new([1; 16], t0);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let tok = t.issue(a);
        assert!(t.valid(a, &tok));
        assert!(!t.valid(Ipv4Addr::new(10, 0, 0, 2), &tok));
        t.tick(t0 + Duration::from_secs(10), || [2; 16]);
        assert_eq!(t.issue(a), tok, "no rotation before five minutes");
        t.tick(t0 + ROTATE, || [2; 16]);
        assert!(t.valid(a, &tok), "previous secret still accepted");
        t.tick(t0 + ROTATE * 2, || [3; 16]);
        assert!(!t.valid(a, &tok), "two rotations later the token is dead");
    }
}
