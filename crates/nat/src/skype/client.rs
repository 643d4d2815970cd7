//! The peer's side of the SN protocol: register a name (binding it the first time, proving the
//! password after) and look a user up. Requests are retransmitted at 250 ms, 500 ms, 1 s ...
//! until the timeout; answers are matched by transaction id.

use super::auth::ClientKey;
use super::sealing;
use super::wire::{self, Candidate, Msg, Proof};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Why a request to an SN failed.
#[derive(Debug, thiserror::Error)]
pub enum SnError {
    #[error("no answer from the supernode {0}")]
    Timeout(SocketAddr),
    #[error("supernode refused: {0} {1}")]
    Refused(u16, String),
    #[error("supernode {0} presents another key than before (man in the middle?): not binding the name")]
    KeyChanged(SocketAddr),
    #[error("supernode {0} sent an unusable X25519 key")]
    BadKey(SocketAddr),
    #[error("unexpected answer from the supernode")]
    Unexpected,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A user's entry as the directory answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub online: bool,
    pub candidates: Vec<Candidate>,
}

/// Sends `msg` to `sn` from `socket` and waits for the answer with the same transaction id.
pub async fn request(
    socket: &UdpSocket,
    sn: SocketAddr,
    msg: &Msg,
    timeout: Duration,
) -> Result<Msg, SnError> {
    let tid: u32 = rand::random();
    let raw = wire::encode(tid, msg);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rto = Duration::from_millis(250);
    let mut buf = vec![0u8; wire::MAX_DATAGRAM];
    while tokio::time::Instant::now() < deadline {
        socket.send_to(&raw, sn).await?;
        let until = (tokio::time::Instant::now() + rto).min(deadline);
        while let Ok(got) = tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await {
            let (n, from) = got?;
            if from != sn {
                continue;
            }
            match wire::decode(&buf[..n]) {
                Ok((t, Msg::Error { code, reason })) if t == tid => {
                    return Err(SnError::Refused(code, reason));
                }
                Ok((t, answer)) if t == tid => return Ok(answer),
                _ => continue,
            }
        }
        rto *= 2;
    }
    Err(SnError::Timeout(sn))
}

/// The SN keys a peer has seen, by the SN address it talks to (in memory): trust on first use,
/// as SSH. A first registration is sealed only to the key pinned for that SN.
#[derive(Debug, Default, Clone)]
pub struct Pins(HashMap<SocketAddr, [u8; 32]>);

impl Pins {
    /// Pins `key` for `sn` if none is; whether `key` is the one pinned.
    pub fn check(&mut self, sn: SocketAddr, key: [u8; 32]) -> bool {
        if self.0.len() >= 4 * wire::MAX_SNS && !self.0.contains_key(&sn) {
            return true;
        }
        *self.0.entry(sn).or_insert(key) == key
    }
}

/// Registers `user` with `candidates` at `sn`; binds the name with a fresh salt when it is
/// new. Returns the entry's lifetime in seconds. Trusts the SN's key on first use.
pub async fn register(
    socket: &UdpSocket,
    sn: SocketAddr,
    user: &str,
    password: &str,
    candidates: Vec<Candidate>,
    timeout: Duration,
) -> Result<u32, SnError> {
    register_pinned(socket, sn, user, password, candidates, timeout, &mut Pins::default()).await
}

/// [`register`], checking the SN's key against (and adding it to) `pins`: a first registration
/// is refused (nothing sent) when the SN presents another key than the one seen before.
pub async fn register_pinned(
    socket: &UdpSocket,
    sn: SocketAddr,
    user: &str,
    password: &str,
    candidates: Vec<Candidate>,
    timeout: Duration,
    pins: &mut Pins,
) -> Result<u32, SnError> {
    let Msg::Challenge { nonce, salt, sn_key } =
        request(socket, sn, &Msg::Hello { user: user.into() }, timeout).await?
    else {
        return Err(SnError::Unexpected);
    };
    let pinned = pins.check(sn, sn_key);
    let (salt, first) = match salt {
        Some(s) => (s, false),
        None => (rand::random(), true),
    };
    if first && !pinned {
        return Err(SnError::KeyChanged(sn));
    }
    let key = ClientKey::derive(password, &salt);
    let verifier = key.verifier(salt);
    let bind = match first {
        false => None,
        true => Some(sealing::seal_verifier(&sn_key, user, &verifier).ok_or(SnError::BadKey(sn))?),
    };
    let signed = wire::register_signed_part(user, bind.as_ref(), &candidates);
    let proof = Proof { nonce, proof: key.prove(&verifier.stored_key, &nonce, &signed) };
    match request(socket, sn, &Msg::Register { user: user.into(), proof, bind, candidates }, timeout).await? {
        Msg::Registered { lifetime } => Ok(lifetime),
        _ => Err(SnError::Unexpected),
    }
}

/// Looks `user` up at `sn`.
pub async fn lookup(
    socket: &UdpSocket,
    sn: SocketAddr,
    user: &str,
    timeout: Duration,
) -> Result<Found, SnError> {
    match request(socket, sn, &Msg::Lookup { user: user.into() }, timeout).await? {
        Msg::Found { online, candidates, .. } => Ok(Found { online, candidates }),
        _ => Err(SnError::Unexpected),
    }
}
