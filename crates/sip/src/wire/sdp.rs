//! The parts of SDP (RFC 4566) admission control needs: `b=AS`, `m=` and `a=rtpmap`.
//!
//! A call's cost is its offer's bandwidth: the sum of `b=AS` per media stream (or the
//! session-level `b=AS`), else the rate of each stream's first codec plus RTP/UDP/IPv4
//! overhead at 20 ms packets.

use thiserror::Error;

/// Why a body is not SDP we can cost.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("SDP body too large")]
    TooLarge,
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("bad SDP line {0}")]
    BadLine(usize),
    #[error("too many media streams")]
    TooManyMedia,
}

/// One m= section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
    /// b=AS in kbit/s for this stream.
    pub bandwidth_as: Option<u32>,
    /// (payload type, encoding name, clock rate) from a=rtpmap.
    pub rtpmaps: Vec<(u8, String, u32)>,
}

/// A parsed SDP description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdp {
    /// Connection address (c=IN IP4 x).
    pub connection: Option<String>,
    /// Session-level b=AS in kbit/s.
    pub bandwidth_as: Option<u32>,
    pub media: Vec<Media>,
}

const MAX_SDP: usize = 16 * 1024;
const MAX_MEDIA: usize = 16;

/// Parses an SDP body (lenient about lines it does not need, strict about those it does).
pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
    if body.len() > MAX_SDP {
        return Err(SdpError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
    let mut sdp = Sdp::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SdpError::BadLine(i + 1));
        };
        if kind.len() != 1 {
            return Err(SdpError::BadLine(i + 1));
        }
        match kind {
            "m" => {
                if sdp.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooManyMedia);
                }
                let mut it = value.split_whitespace();
                let (Some(k), Some(port), Some(proto)) = (it.next(), it.next(), it.next()) else {
                    return Err(SdpError::BadLine(i + 1));
                };
                let port = port.split('/').next().unwrap_or("");
                let port: u16 = port.parse().map_err(|_| SdpError::BadLine(i + 1))?;
                sdp.media.push(Media {
                    kind: k.to_string(),
                    port,
                    proto: proto.to_string(),
                    formats: it.take(64).map(str::to_string).collect(),
                    bandwidth_as: None,
                    rtpmaps: Vec::new(),
                });
            }
            "b" => {
                if let Some(v) = value.strip_prefix("AS:") {
                    let kbps: u32 = v.trim().parse().map_err(|_| SdpError::BadLine(i + 1))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.bandwidth_as = Some(kbps),
                        None => sdp.bandwidth_as = Some(kbps),
                    }
                }
            }
            "c" => {
                let addr = value.split_whitespace().nth(2).map(|a| a.split('/').next().unwrap_or(a));
                if sdp.connection.is_none() {
                    sdp.connection = addr.map(str::to_string);
                }
            }
            "a" => {
                if let Some(v) = value.strip_prefix("rtpmap:") {
                    let (pt, enc) = v.split_once(' ').ok_or(SdpError::BadLine(i + 1))?;
                    let pt: u8 = pt.trim().parse().map_err(|_| SdpError::BadLine(i + 1))?;
                    let mut e = enc.trim().split('/');
                    let name = e.next().unwrap_or("").to_string();
                    let rate: u32 = e.next().and_then(|r| r.parse().ok()).unwrap_or(8000);
                    if let Some(m) = sdp.media.last_mut()
                        && m.rtpmaps.len() < 64
                    {
                        m.rtpmaps.push((pt, name, rate));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(sdp)
}

/// Payload bit rate of a codec in kbit/s (static table of RFC 3551 plus common dynamic ones).
fn codec_payload_kbps(name: &str) -> u32 {
    match name.to_ascii_uppercase().as_str() {
        "PCMU" | "PCMA" | "G722" => 64,
        "G729" => 8,
        "GSM" => 13,
        "G723" => 6,
        "ILBC" => 15,
        "SPEEX" => 24,
        "OPUS" => 40,
        "L16" => 1411,
        "TELEPHONE-EVENT" => 0,
        _ => 64,
    }
}

/// Static payload types of RFC 3551 we cost without an rtpmap.
fn static_pt_name(pt: &str) -> Option<&'static str> {
    Some(match pt {
        "0" => "PCMU",
        "3" => "GSM",
        "4" => "G723",
        "8" => "PCMA",
        "9" => "G722",
        "18" => "G729",
        _ => return None,
    })
}

/// IPv4 (20) + UDP (8) + RTP (12) bytes per packet at 50 packets/s = 16 kbit/s.
const OVERHEAD_KBPS: u32 = 16;

impl Sdp {
    /// What one direction of this session costs in kbit/s (see the module docs).
    pub fn cost_kbps(&self) -> u32 {
        let active: Vec<&Media> = self.media.iter().filter(|m| m.port != 0).collect();
        if active.iter().any(|m| m.bandwidth_as.is_some()) || self.bandwidth_as.is_none() {
            active
                .iter()
                .map(|m| match m.bandwidth_as {
                    Some(kbps) => kbps,
                    None => media_codec_kbps(m),
                })
                .fold(0u32, u32::saturating_add)
        } else {
            self.bandwidth_as.unwrap_or(0)
        }
    }
}

fn media_codec_kbps(m: &Media) -> u32 {
    let Some(first) = m.formats.first() else { return 0 };
    let name = m
        .rtpmaps
        .iter()
        .find(|(pt, _, _)| pt.to_string() == *first)
        .map(|(_, n, _)| n.as_str())
        .or_else(|| static_pt_name(first))
        .unwrap_or("");
    codec_payload_kbps(name) + OVERHEAD_KBPS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_b_as_then_codec() {
        let offer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\nb=AS:100\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let s = parse(offer).unwrap();
        assert_eq!(s.connection.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.media[0].port, 4000);
        assert_eq!(s.cost_kbps(), 100);
        let plain = b"v=0\r\nm=audio 4000 RTP/AVP 18\r\n";
        assert_eq!(parse(plain).unwrap().cost_kbps(), 8 + 16);
        let pcmu = b"v=0\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000\r\n";
        assert_eq!(parse(pcmu).unwrap().cost_kbps(), 80);
        let session = b"v=0\r\nb=AS:30\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse(session).unwrap().cost_kbps(), 30);
        let disabled = b"v=0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(parse(disabled).unwrap().cost_kbps(), 0);
    }

    #[test]
    fn junk_is_an_error_not_a_panic() {
        for junk in [&b"m=audio x RTP"[..], b"b=AS:zz", b"nonsense", b"\xff\xfe", b"a=rtpmap:999 X"] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
        let many: String = (0..20).map(|_| "m=audio 1 RTP/AVP 0\r\n").collect();
        assert_eq!(parse(many.as_bytes()), Err(SdpError::TooManyMedia));
    }
}
