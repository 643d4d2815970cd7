//! The supernode (SN) protocol's datagrams: a 10-byte header (`SK`, version, kind, transaction
//! id) and a body of length-prefixed fields. Pure: bytes in, typed message out, never a panic on
//! hostile input; every count and length is capped here before anything is allocated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest datagram either side sends or accepts.
pub const MAX_DATAGRAM: usize = 1200;
/// Longest user name, in bytes.
pub const MAX_USER: usize = 64;
/// Most candidates in one entry.
pub const MAX_CANDIDATES: usize = 8;
/// Largest payload an SN forwards between two peers (a call offer or answer).
pub const MAX_PAYLOAD: usize = 900;
const MAGIC: &[u8; 2] = b"SK";
const VERSION: u8 = 1;

/// Why a datagram is not a valid SN message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("datagram larger than {MAX_DATAGRAM} bytes")]
    TooLong,
    #[error("truncated")]
    Short,
    #[error("not an SN message (magic or version)")]
    NotSn,
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("bad field: {0}")]
    Field(&'static str),
    #[error("bytes left after the message")]
    Trailing,
}

/// How a peer can be reached (RFC 8445 §5.1.1 candidate types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address of the peer's own interface.
    Host,
    /// The address a NAT maps it to, learnt from STUN.
    ServerReflexive,
    /// An address on a TURN relay.
    Relayed,
}

/// One transport address a peer offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub kind: CandidateKind,
    pub addr: SocketAddr,
}

/// A user's proof of its password (SCRAM-style, see [`super::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The challenge nonce the SN handed out.
    pub nonce: [u8; 16],
    /// ClientKey XOR HMAC(StoredKey, auth message).
    pub proof: [u8; 32],
}

/// What binds a name the first time: the salt and the stored key (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub salt: [u8; 16],
    pub stored_key: [u8; 32],
}

/// A first registration's verifier sealed to the SN's long-term X25519 key (see
/// [`super::sealing`]): the peer's ephemeral public key, then the salt and StoredKey encrypted
/// with ChaCha20-Poly1305 and its 16-byte tag. The clear form is never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedVerifier {
    pub ephemeral: [u8; 32],
    pub ciphertext: [u8; 64],
}

/// One SN protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Peer → SN: asks for a challenge before registering `user`.
    Hello { user: String },
    /// SN → peer: a fresh nonce, the salt when the name is already bound, and the public X25519
    /// key of the SN that will check the Register (a first registration seals its verifier to it).
    Challenge { nonce: [u8; 16], salt: Option<[u8; 16]>, sn_key: [u8; 32] },
    /// Peer → SN: publishes `candidates` for `user`, proving the password; `bind` carries the
    /// verifier, sealed to the SN's key, on the first registration of the name.
    Register { user: String, proof: Proof, bind: Option<SealedVerifier>, candidates: Vec<Candidate> },
    /// SN → peer: the entry is stored for `lifetime` seconds.
    Registered { lifetime: u32 },
    /// Peer → SN: who is `user` and how to reach it.
    Lookup { user: String },
    /// SN → peer: `user`'s candidates, when online.
    Found { user: String, online: bool, candidates: Vec<Candidate> },
    /// SN → peer: a refusal, with a SIP/STUN-like code (401, 403, 404, 429, 480).
    Error { code: u16, reason: String },
    /// Peer → SN: hand `payload` (an offer or answer: credentials and candidates) to `to`;
    /// `from` must be registered from the sending address.
    Forward { from: String, to: String, payload: Vec<u8> },
    /// SN → peer: `from` sent this through the SN.
    Deliver { from: String, payload: Vec<u8> },
    /// SN → peer: the payload went out to the callee's address.
    Forwarded,
    /// Peer → peer inside a Forward/Deliver payload: an offer (`answer` false) or answer for
    /// session `call`: the ICE-style short-term credentials and the candidates.
    Offer { call: u32, answer: bool, ufrag: String, pwd: String, candidates: Vec<Candidate> },
    /// Peer → SN: the keepalive; a peer whose SN stops answering it attaches to another SN.
    Ping,
    /// SN → peer: the answer to a Ping, with the live SNs of the overlay (at most
    /// [`MAX_SNS`]), so the peer knows where to go when its SN dies.
    Pong { sns: Vec<SocketAddr> },
    /// Peer → SN: make me a supernode at `sn` (my SN port). `public_key` is the peer's
    /// ephemeral X25519 key for the handoff; the proof (a fresh Challenge's nonce) covers the
    /// name, `sn` and the key, so nobody can substitute their own (see [`super::promotion`]).
    Promote { user: String, sn: SocketAddr, public_key: [u8; 32], proof: Proof },
    /// SN → a candidate's SN port, unsolicited: answer with this nonce if you can hear me.
    Probe { nonce: [u8; 16] },
    /// Candidate's SN port → SN: the probe's nonce, from the probed address, with
    /// HMAC-SHA256(the user's StoredKey, "appnet skype probe" ‖ nonce), so that only the
    /// candidate (not another SN that happens to listen there) can answer.
    ProbeAck { nonce: [u8; 16], tag: [u8; 32] },
    /// SN → peer: promotion granted; `sealed` is the membership grant encrypted under a key
    /// agreed from both ephemeral keys and bound to the user's credentials.
    Promoted { public_key: [u8; 32], sealed: Vec<u8> },
}

/// Most SN addresses in a Pong.
pub const MAX_SNS: usize = 32;

impl Msg {
    fn kind(&self) -> u8 {
        match self {
            Msg::Hello { .. } => 1,
            Msg::Challenge { .. } => 2,
            Msg::Register { .. } => 3,
            Msg::Registered { .. } => 4,
            Msg::Lookup { .. } => 5,
            Msg::Found { .. } => 6,
            Msg::Error { .. } => 7,
            Msg::Forward { .. } => 8,
            Msg::Deliver { .. } => 9,
            Msg::Forwarded => 10,
            Msg::Offer { .. } => 11,
            Msg::Ping => 12,
            Msg::Pong { .. } => 13,
            Msg::Promote { .. } => 14,
            Msg::Probe { .. } => 15,
            Msg::ProbeAck { .. } => 16,
            Msg::Promoted { .. } => 17,
        }
    }
}

/// Whether `user` is a valid name: 1..=64 bytes of `a-z 0-9 . _ -`.
pub fn valid_user(user: &str) -> bool {
    (1..=MAX_USER).contains(&user.len())
        && user.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Encodes `msg` with transaction id `tid`.
pub fn encode(tid: u32, msg: &Msg) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(msg.kind());
    out.extend_from_slice(&tid.to_be_bytes());
    match msg {
        Msg::Hello { user } | Msg::Lookup { user } => put_str(&mut out, user),
        Msg::Challenge { nonce, salt, sn_key } => {
            out.extend_from_slice(nonce);
            put_opt(&mut out, salt.as_ref().map(|s| &s[..]));
            out.extend_from_slice(sn_key);
        }
        Msg::Register { user, proof, bind, candidates } => {
            put_str(&mut out, user);
            out.extend_from_slice(&proof.nonce);
            out.extend_from_slice(&proof.proof);
            put_bind(&mut out, bind.as_ref());
            put_candidates(&mut out, candidates);
        }
        Msg::Registered { lifetime } => out.extend_from_slice(&lifetime.to_be_bytes()),
        Msg::Found { user, online, candidates } => {
            put_str(&mut out, user);
            out.push(*online as u8);
            put_candidates(&mut out, candidates);
        }
        Msg::Error { code, reason } => {
            out.extend_from_slice(&code.to_be_bytes());
            put_str(&mut out, reason);
        }
        Msg::Forward { from, to, payload } => {
            put_str(&mut out, from);
            put_str(&mut out, to);
            put_payload(&mut out, payload);
        }
        Msg::Deliver { from, payload } => {
            put_str(&mut out, from);
            put_payload(&mut out, payload);
        }
        Msg::Forwarded => {}
        Msg::Offer { call, answer, ufrag, pwd, candidates } => {
            out.extend_from_slice(&call.to_be_bytes());
            out.push(*answer as u8);
            put_str(&mut out, ufrag);
            put_str(&mut out, pwd);
            put_candidates(&mut out, candidates);
        }
        Msg::Ping => {}
        Msg::Pong { sns } => {
            let sns = &sns[..sns.len().min(MAX_SNS)];
            out.push(sns.len() as u8);
            for sn in sns {
                put_addr(&mut out, *sn);
            }
        }
        Msg::Promote { user, sn, public_key, proof } => {
            put_str(&mut out, user);
            put_addr(&mut out, *sn);
            out.extend_from_slice(public_key);
            out.extend_from_slice(&proof.nonce);
            out.extend_from_slice(&proof.proof);
        }
        Msg::Probe { nonce } => out.extend_from_slice(nonce),
        Msg::ProbeAck { nonce, tag } => {
            out.extend_from_slice(nonce);
            out.extend_from_slice(tag);
        }
        Msg::Promoted { public_key, sealed } => {
            out.extend_from_slice(public_key);
            put_payload(&mut out, sealed);
        }
    }
    out
}

/// The bytes a [`Proof`] in a Promote covers besides the nonce: the name, the SN address and
/// the ephemeral key.
pub fn promote_signed_part(user: &str, sn: SocketAddr, public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = b"promote".to_vec();
    put_str(&mut out, user);
    put_addr(&mut out, sn);
    out.extend_from_slice(public_key);
    out
}

/// Writes an address: 4 or 6, the octets, the port (the overlay uses the same form).
pub(crate) fn put_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

fn put_payload(out: &mut Vec<u8>, p: &[u8]) {
    let p = &p[..p.len().min(MAX_PAYLOAD)];
    out.extend_from_slice(&(p.len() as u16).to_be_bytes());
    out.extend_from_slice(p);
}

/// The bytes a [`Proof`] in a Register covers besides the nonce: everything after the proof
/// field (the verifier and the candidates), so an SN cannot be fed altered candidates.
pub fn register_signed_part(user: &str, bind: Option<&SealedVerifier>, candidates: &[Candidate]) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, user);
    put_bind(&mut out, bind);
    put_candidates(&mut out, candidates);
    out
}

/// Flag 2 and the sealed verifier, or 0. Flag 1 was the verifier in the clear: refused.
fn put_bind(out: &mut Vec<u8>, bind: Option<&SealedVerifier>) {
    match bind {
        Some(v) => {
            out.push(2);
            out.extend_from_slice(&v.ephemeral);
            out.extend_from_slice(&v.ciphertext);
        }
        None => out.push(0),
    }
}

/// Decodes one datagram into its transaction id and message.
pub fn decode(buf: &[u8]) -> Result<(u32, Msg), WireError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(WireError::TooLong);
    }
    let mut r = Reader(buf);
    if r.take(2)? != MAGIC || r.u8()? != VERSION {
        return Err(WireError::NotSn);
    }
    let kind = r.u8()?;
    let tid = u32::from_be_bytes(r.array()?);
    let msg = match kind {
        1 => Msg::Hello { user: r.user()? },
        2 => Msg::Challenge { nonce: r.array()?, salt: r.opt()?, sn_key: r.array()? },
        3 => {
            let user = r.user()?;
            let proof = Proof { nonce: r.array()?, proof: r.array()? };
            let bind = match r.u8()? {
                0 => None,
                1 => {
                    return Err(WireError::Field("verifier in the clear (refused: seal it to the SN's key)"));
                }
                2 => Some(SealedVerifier { ephemeral: r.array()?, ciphertext: r.array()? }),
                _ => return Err(WireError::Field("verifier flag")),
            };
            Msg::Register { user, proof, bind, candidates: r.candidates()? }
        }
        4 => Msg::Registered { lifetime: u32::from_be_bytes(r.array()?) },
        5 => Msg::Lookup { user: r.user()? },
        6 => {
            let user = r.user()?;
            let online = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Field("online flag")),
            };
            Msg::Found { user, online, candidates: r.candidates()? }
        }
        7 => {
            let code = u16::from_be_bytes(r.array()?);
            let reason = r.string()?;
            Msg::Error { code, reason }
        }
        8 => Msg::Forward { from: r.user()?, to: r.user()?, payload: r.payload()? },
        9 => Msg::Deliver { from: r.user()?, payload: r.payload()? },
        10 => Msg::Forwarded,
        11 => {
            let call = u32::from_be_bytes(r.array()?);
            let answer = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Field("answer flag")),
            };
            let (ufrag, pwd) = (r.string()?, r.string()?);
            if !(4..=64).contains(&ufrag.len()) || !(16..=128).contains(&pwd.len()) {
                return Err(WireError::Field("ICE credentials"));
            }
            Msg::Offer { call, answer, ufrag, pwd, candidates: r.candidates()? }
        }
        12 => Msg::Ping,
        13 => {
            let n = r.u8()? as usize;
            if n > MAX_SNS {
                return Err(WireError::Field("too many supernodes"));
            }
            let mut sns = Vec::with_capacity(n);
            for _ in 0..n {
                sns.push(r.addr()?);
            }
            Msg::Pong { sns }
        }
        14 => {
            let user = r.user()?;
            let sn = r.addr()?;
            let public_key = r.array()?;
            Msg::Promote { user, sn, public_key, proof: Proof { nonce: r.array()?, proof: r.array()? } }
        }
        15 => Msg::Probe { nonce: r.array()? },
        16 => Msg::ProbeAck { nonce: r.array()?, tag: r.array()? },
        17 => Msg::Promoted { public_key: r.array()?, sealed: r.payload()? },
        k => return Err(WireError::Kind(k)),
    };
    if !r.0.is_empty() {
        return Err(WireError::Trailing);
    }
    Ok((tid, msg))
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(v);
        }
        None => out.push(0),
    }
}

pub(crate) fn put_candidates(out: &mut Vec<u8>, cands: &[Candidate]) {
    let cands = &cands[..cands.len().min(MAX_CANDIDATES)];
    out.push(cands.len() as u8);
    for c in cands {
        out.push(match c.kind {
            CandidateKind::Host => 0,
            CandidateKind::ServerReflexive => 1,
            CandidateKind::Relayed => 2,
        });
        put_addr(out, c.addr);
    }
}

/// Reads a candidate list (as [`put_candidates`] writes it) from the front of `r`.
pub(crate) fn get_candidates(r: &mut &[u8]) -> Result<Vec<Candidate>, WireError> {
    let mut reader = Reader(r);
    let out = reader.candidates()?;
    *r = reader.0;
    Ok(out)
}

/// Reads a user name (as [`encode`] writes it) from the front of `r`.
pub(crate) fn get_user(r: &mut &[u8]) -> Result<String, WireError> {
    let mut reader = Reader(r);
    let out = reader.user()?;
    *r = reader.0;
    Ok(out)
}

/// Reads an address (as [`put_addr`] writes it) from the front of `r`.
pub(crate) fn get_addr(r: &mut &[u8]) -> Result<SocketAddr, WireError> {
    let mut reader = Reader(r);
    let out = reader.addr()?;
    *r = reader.0;
    Ok(out)
}

/// Writes a length-prefixed string.
pub(crate) fn put_user(out: &mut Vec<u8>, s: &str) {
    put_str(out, s)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| WireError::Field("UTF-8"))
    }

    fn user(&mut self) -> Result<String, WireError> {
        let s = self.string()?;
        if valid_user(&s) { Ok(s) } else { Err(WireError::Field("user name")) }
    }

    fn opt<const N: usize>(&mut self) -> Result<Option<[u8; N]>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.array()?)),
            _ => Err(WireError::Field("option flag")),
        }
    }

    fn payload(&mut self) -> Result<Vec<u8>, WireError> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        if n > MAX_PAYLOAD {
            return Err(WireError::Field("payload too long"));
        }
        Ok(self.take(n)?.to_vec())
    }

    fn candidates(&mut self) -> Result<Vec<Candidate>, WireError> {
        let n = self.u8()? as usize;
        if n > MAX_CANDIDATES {
            return Err(WireError::Field("too many candidates"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = match self.u8()? {
                0 => CandidateKind::Host,
                1 => CandidateKind::ServerReflexive,
                2 => CandidateKind::Relayed,
                _ => return Err(WireError::Field("candidate kind")),
            };
            out.push(Candidate { kind, addr: self.addr()? });
        }
        Ok(out)
    }

    fn addr(&mut self) -> Result<SocketAddr, WireError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(WireError::Field("address family")),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Msg> {
        let cands = vec![
            Candidate { kind: CandidateKind::Host, addr: "10.1.0.2:5000".parse().unwrap() },
            Candidate { kind: CandidateKind::ServerReflexive, addr: "100.64.0.11:5000".parse().unwrap() },
            Candidate { kind: CandidateKind::Relayed, addr: "[2001:db8::1]:49152".parse().unwrap() },
        ];
        let proof = Proof { nonce: [7; 16], proof: [9; 32] };
        vec![
            Msg::Hello { user: "alice".into() },
            Msg::Challenge { nonce: [1; 16], salt: None, sn_key: [8; 32] },
            Msg::Challenge { nonce: [1; 16], salt: Some([2; 16]), sn_key: [8; 32] },
            Msg::Register { user: "bob".into(), proof: proof.clone(), bind: None, candidates: cands.clone() },
            Msg::Register {
                user: "bob".into(),
                proof,
                bind: Some(SealedVerifier { ephemeral: [3; 32], ciphertext: [4; 64] }),
                candidates: Vec::new(),
            },
            Msg::Registered { lifetime: 300 },
            Msg::Lookup { user: "a.b_c-9".into() },
            Msg::Found { user: "bob".into(), online: true, candidates: cands },
            Msg::Found { user: "bob".into(), online: false, candidates: Vec::new() },
            Msg::Error { code: 401, reason: "Unauthorized".into() },
            Msg::Forward { from: "alice".into(), to: "bob".into(), payload: vec![1, 2, 3] },
            Msg::Deliver { from: "alice".into(), payload: vec![0; MAX_PAYLOAD] },
            Msg::Forwarded,
            Msg::Offer {
                call: 9,
                answer: true,
                ufrag: "abcd".into(),
                pwd: "0123456789abcdef0123".into(),
                candidates: vec![Candidate {
                    kind: CandidateKind::Relayed,
                    addr: "192.0.2.1:50000".parse().unwrap(),
                }],
            },
            Msg::Ping,
            Msg::Promote {
                user: "carol".into(),
                sn: "192.0.2.7:33033".parse().unwrap(),
                public_key: [5; 32],
                proof: Proof { nonce: [6; 16], proof: [8; 32] },
            },
            Msg::Probe { nonce: [3; 16] },
            Msg::ProbeAck { nonce: [4; 16], tag: [2; 32] },
            Msg::Promoted { public_key: [1; 32], sealed: vec![9; 200] },
            Msg::Pong { sns: vec![] },
            Msg::Pong {
                sns: vec!["192.0.2.1:33033".parse().unwrap(), "[2001:db8::2]:33033".parse().unwrap()],
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for (i, m) in samples().into_iter().enumerate() {
            let raw = encode(i as u32, &m);
            assert!(raw.len() <= MAX_DATAGRAM);
            assert_eq!(decode(&raw), Ok((i as u32, m)));
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_or_another_valid_message() {
        for m in samples() {
            let raw = encode(1, &m);
            for n in 0..raw.len() {
                assert!(decode(&raw[..n]).is_err(), "{m:?} cut at {n}");
            }
            for i in 0..raw.len() {
                for bit in 0..8 {
                    let mut b = raw.clone();
                    b[i] ^= 1 << bit;
                    if let Ok((tid, back)) = decode(&b) {
                        assert_eq!(decode(&encode(tid, &back)), Ok((tid, back)));
                    }
                }
            }
        }
    }

    #[test]
    fn a_verifier_in_the_clear_is_refused() {
        let mut raw = encode(1, &Msg::Hello { user: "bob".into() });
        raw[3] = 3;
        raw.extend_from_slice(&[0; 48]);
        raw.push(1);
        raw.extend_from_slice(&[0; 48]);
        raw.push(0);
        assert_eq!(
            decode(&raw),
            Err(WireError::Field("verifier in the clear (refused: seal it to the SN's key)"))
        );
        raw[8 + 4 + 48] = 0;
        raw.truncate(8 + 4 + 48 + 1);
        raw.push(0);
        assert!(matches!(decode(&raw), Ok((_, Msg::Register { bind: None, .. }))));
    }

    #[test]
    fn bad_names_and_oversized_input_are_refused() {
        for user in ["", "Alice", "a b", "é", &"x".repeat(65)] {
            let mut raw = b"SK\x01\x05\0\0\0\0".to_vec();
            raw.push(user.len() as u8);
            raw.extend_from_slice(user.as_bytes());
            assert!(decode(&raw).is_err(), "{user:?}");
        }
        assert_eq!(decode(&vec![0; MAX_DATAGRAM + 1]), Err(WireError::TooLong));
        let mut raw = encode(0, &Msg::Found { user: "bob".into(), online: true, candidates: Vec::new() });
        *raw.last_mut().unwrap() = 200;
        assert!(decode(&raw).is_err());
    }
}
