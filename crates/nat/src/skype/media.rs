//! Datagrams between two peers once their checks selected a path: text messages and the
//! voice-like stream, each tagged with an HMAC under the session key (both sides' ICE passwords,
//! exchanged through the SNs), so nobody else can speak in the call. Pure codec.

use ring::{digest, hmac};

const MAGIC: &[u8; 3] = b"SKM";
const TAG: usize = 8;
/// Largest text message, in bytes.
pub const MAX_TEXT: usize = 1000;

/// One media datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// A text message.
    Text(String),
    /// A voice packet: sequence number, the sender's clock in microseconds, and the samples.
    Voice { seq: u32, sent_us: u64, samples: Vec<u8> },
    /// The receiver returns a voice packet's timestamp so the sender measures the round trip.
    Echo { sent_us: u64 },
    /// The sender's stream is over after `sent` packets: the receiver answers with a Report.
    End { sent: u32 },
    /// What the receiver got of the stream.
    Report { received: u32 },
}

/// The session key: SHA-256 of the offer's and the answer's passwords.
pub fn session_key(offer_pwd: &str, answer_pwd: &str) -> hmac::Key {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(offer_pwd.as_bytes());
    ctx.update(b"\0");
    ctx.update(answer_pwd.as_bytes());
    hmac::Key::new(hmac::HMAC_SHA256, ctx.finish().as_ref())
}

/// Whether a datagram looks like media (rather than STUN).
pub fn is_media(raw: &[u8]) -> bool {
    raw.starts_with(MAGIC)
}

/// Encodes `m` for session `call` under `key`.
pub fn encode(key: &hmac::Key, call: u32, m: &Media) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&call.to_be_bytes());
    match m {
        Media::Text(t) => {
            out.push(1);
            out.extend_from_slice(&t.as_bytes()[..t.len().min(MAX_TEXT)]);
        }
        Media::Voice { seq, sent_us, samples } => {
            out.push(2);
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&sent_us.to_be_bytes());
            out.extend_from_slice(&samples[..samples.len().min(MAX_TEXT)]);
        }
        Media::Echo { sent_us } => {
            out.push(3);
            out.extend_from_slice(&sent_us.to_be_bytes());
        }
        Media::End { sent } => {
            out.push(4);
            out.extend_from_slice(&sent.to_be_bytes());
        }
        Media::Report { received } => {
            out.push(5);
            out.extend_from_slice(&received.to_be_bytes());
        }
    }
    let tag = hmac::sign(key, &out);
    out.extend_from_slice(&tag.as_ref()[..TAG]);
    out
}

/// The session a media datagram belongs to (before its key is known).
pub fn call_of(raw: &[u8]) -> Option<u32> {
    let b = raw.get(3..7)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Checks the tag and decodes; `None` for anything forged, truncated or unknown.
pub fn decode(key: &hmac::Key, raw: &[u8]) -> Option<Media> {
    if !is_media(raw) || raw.len() < 8 + TAG {
        return None;
    }
    let (body, tag) = raw.split_at(raw.len() - TAG);
    let want = hmac::sign(key, body);
    if want.as_ref()[..TAG].iter().zip(tag).fold(0u8, |a, (x, y)| a | (x ^ y)) != 0 {
        return None;
    }
    let kind = *body.get(7)?;
    let rest = body.get(8..)?;
    let u32_at = |i: usize| rest.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |i: usize| {
        rest.get(i..i + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    };
    match kind {
        1 if rest.len() <= MAX_TEXT => String::from_utf8(rest.to_vec()).ok().map(Media::Text),
        2 if rest.len() <= 12 + MAX_TEXT => {
            Some(Media::Voice { seq: u32_at(0)?, sent_us: u64_at(4)?, samples: rest.get(12..)?.to_vec() })
        }
        3 if rest.len() == 8 => Some(Media::Echo { sent_us: u64_at(0)? }),
        4 if rest.len() == 4 => Some(Media::End { sent: u32_at(0)? }),
        5 if rest.len() == 4 => Some(Media::Report { received: u32_at(0)? }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let key = session_key("offer-password-123", "answer-password-456");
        let other = session_key("offer-password-123", "guessed");
        let all = [
            Media::Text("hello bob".into()),
            Media::Voice { seq: 7, sent_us: 123_456, samples: vec![0x55; 160] },
            Media::Echo { sent_us: 99 },
            Media::End { sent: 250 },
            Media::Report { received: 249 },
        ];
        for m in all {
            let raw = encode(&key, 42, &m);
            assert_eq!(call_of(&raw), Some(42));
            assert_eq!(decode(&key, &raw), Some(m.clone()));
            assert_eq!(decode(&other, &raw), None);
            for n in 0..raw.len() {
                assert_eq!(decode(&key, &raw[..n]), None);
            }
        }
    }
}
