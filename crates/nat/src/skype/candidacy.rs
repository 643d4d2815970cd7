//! The peer's side of promotion (sans-IO): after `--promote-after` it asks its SN to make it a
//! supernode. Hello → Challenge (a fresh nonce and the salt) → `Promote` {its SN port, an
//! ephemeral X25519 key, a proof of the password over both} → the owner of its entry probes
//! the SN port unsolicited → `Promoted` (the grant, sealed, see [`super::promotion`]) or a
//! refusal. Once promoted it asks again every half epoch to renew the grant's keys.

use super::auth::ClientKey;
use super::promotion::{self, Grant, Handoff};
use super::wire::{self, Msg};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long one exchange may take before it is abandoned and tried again later.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

enum State {
    Idle,
    Challenge { tid: u32, since: Instant },
    Grant { tid: u32, since: Instant, handoff: Handoff, stored_key: [u8; 32] },
}

/// What an SN datagram meant for the candidacy.
#[derive(Debug)]
pub enum Step {
    /// Not about promotion.
    NotOurs,
    /// Send this to the SN.
    Send(Vec<u8>),
    /// The grant (first, or renewed).
    Granted(Grant),
    /// The SN said no (or the grant did not open); asked again later.
    Refused(u16, String),
}

/// A peer's candidacy to become an SN at `sn_addr`.
pub struct Candidacy {
    user: String,
    password: String,
    sn_addr: SocketAddr,
    retry: Duration,
    next_at: Instant,
    state: State,
    /// The user's StoredKey, once a Challenge gave the salt: it tags probe answers.
    stored_key: Option<[u8; 32]>,
}

impl Candidacy {
    /// Asks first `after` from `now`, and again `after` (at least 5 s) after a refusal.
    pub fn new(user: &str, password: &str, sn_addr: SocketAddr, after: Duration, now: Instant) -> Candidacy {
        Candidacy {
            user: user.into(),
            password: password.into(),
            sn_addr,
            retry: after.max(Duration::from_secs(5)),
            next_at: now + after,
            state: State::Idle,
            stored_key: None,
        }
    }

    /// The key probe answers are tagged with (known after the first Challenge).
    pub fn probe_key(&self) -> Option<[u8; 32]> {
        self.stored_key
    }

    /// The SN address the peer asks to be promoted at.
    pub fn sn_addr(&self) -> SocketAddr {
        self.sn_addr
    }

    /// The Hello to send to the SN when an exchange is due.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<u8>> {
        let stuck = match &self.state {
            State::Idle => false,
            State::Challenge { since, .. } | State::Grant { since, .. } => now > *since + EXCHANGE_TIMEOUT,
        };
        if stuck {
            self.state = State::Idle;
            self.next_at = now + self.retry;
        }
        if !matches!(self.state, State::Idle) || now < self.next_at {
            return None;
        }
        let tid = rand::random();
        self.state = State::Challenge { tid, since: now };
        Some(wire::encode(tid, &Msg::Hello { user: self.user.clone() }))
    }

    /// Feeds one datagram from the SN.
    pub fn on_sn(&mut self, tid: u32, msg: &Msg, now: Instant) -> Step {
        let ours = match &self.state {
            State::Idle => None,
            State::Challenge { tid: t, .. } | State::Grant { tid: t, .. } => Some(*t),
        };
        if ours != Some(tid) {
            return Step::NotOurs;
        }
        match (std::mem::replace(&mut self.state, State::Idle), msg) {
            (State::Challenge { since, .. }, Msg::Challenge { nonce, salt: Some(salt), .. }) => {
                let Some(handoff) = Handoff::new() else {
                    self.next_at = now + self.retry;
                    return Step::Refused(500, "no random source for the key exchange".into());
                };
                let key = ClientKey::derive(&self.password, salt);
                let stored_key = key.verifier(*salt).stored_key;
                self.stored_key = Some(stored_key);
                let public_key = handoff.public_key();
                let signed = wire::promote_signed_part(&self.user, self.sn_addr, &public_key);
                let proof = wire::Proof { nonce: *nonce, proof: key.prove(&stored_key, nonce, &signed) };
                self.state = State::Grant { tid, since, handoff, stored_key };
                Step::Send(wire::encode(
                    tid,
                    &Msg::Promote { user: self.user.clone(), sn: self.sn_addr, public_key, proof },
                ))
            }
            (State::Grant { handoff, stored_key, .. }, Msg::Promoted { public_key, sealed }) => {
                match handoff.open(public_key, &stored_key, &self.user, sealed) {
                    Ok(grant) => {
                        self.next_at = now + Duration::from_secs(grant.epoch_secs.max(2) as u64 / 2);
                        Step::Granted(grant)
                    }
                    Err(e) => {
                        self.next_at = now + self.retry;
                        Step::Refused(400, e.to_string())
                    }
                }
            }
            (_, Msg::Error { code, reason }) => {
                self.next_at = now + self.retry;
                Step::Refused(*code, reason.clone())
            }
            (state, _) => {
                self.state = state;
                Step::NotOurs
            }
        }
    }
}

/// The answer of a candidate's SN port to a probe, tagged with the user's StoredKey, if `raw`
/// is one.
pub fn answer_probe(raw: &[u8], stored_key: &[u8; 32]) -> Option<Vec<u8>> {
    match wire::decode(raw) {
        Ok((tid, Msg::Probe { nonce })) => {
            let tag = promotion::probe_tag(stored_key, &nonce);
            Some(wire::encode(tid, &Msg::ProbeAck { nonce, tag }))
        }
        _ => None,
    }
}
