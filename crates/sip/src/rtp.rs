//! RTP (RFC 3550) for the user agent: packets, G.711 µ-law audio (a generated tone or a
//! WAV file) in 20 ms packets, and receiver statistics (packets, loss, interarrival jitter
//! computed as §6.4.1 and Appendix A.8 do).
//!
//! Pure code: the phone's driver owns the socket and the clock and passes arrival times in.

use std::time::Instant;
use thiserror::Error;

/// Static payload type of PCMU (RFC 3551 §6).
pub const PT_PCMU: u8 = 0;
/// G.711 clock rate.
pub const CLOCK_HZ: u32 = 8000;
/// Samples in one 20 ms packet at 8 kHz.
pub const SAMPLES_PER_PACKET: usize = 160;

/// Why a datagram is not an RTP packet we take.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("shorter than the RTP header")]
    Short,
    #[error("not RTP version 2")]
    Version,
    #[error("CSRC list, extension or padding runs past the packet")]
    Truncated,
}

/// One RTP packet (§5.1); CSRCs and header extensions are skipped on input, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl RtpPacket {
    /// The packet as bytes: a 12-byte header and the payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.payload.len());
        out.push(0x80);
        out.push(((self.marker as u8) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses a datagram (§5.1, padding per the P bit, extension per the X bit).
    pub fn parse(b: &[u8]) -> Result<RtpPacket, RtpError> {
        if b.len() < 12 {
            return Err(RtpError::Short);
        }
        if b[0] >> 6 != 2 {
            return Err(RtpError::Version);
        }
        let cc = (b[0] & 0x0f) as usize;
        let mut start = 12 + 4 * cc;
        if b.len() < start {
            return Err(RtpError::Truncated);
        }
        if b[0] & 0x10 != 0 {
            if b.len() < start + 4 {
                return Err(RtpError::Truncated);
            }
            let words = u16::from_be_bytes([b[start + 2], b[start + 3]]) as usize;
            start += 4 + 4 * words;
            if b.len() < start {
                return Err(RtpError::Truncated);
            }
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            let pad = b[b.len() - 1] as usize;
            if pad == 0 || end < start + pad {
                return Err(RtpError::Truncated);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7f,
            sequence: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b[start..end].to_vec(),
        })
    }
}

/// G.711 µ-law encoding of one 16-bit linear sample (ITU-T G.711, the classic bias-and-
/// segment algorithm).
pub fn ulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7i32;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// G.711 µ-law decoding to a 16-bit linear sample.
pub fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0f) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 { -magnitude as i16 } else { magnitude as i16 }
}

/// Why a WAV file cannot be played.
#[derive(Debug, Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("only 16-bit PCM (or 8-bit µ-law) WAV files are played, this is format {0}/{1} bits")]
    Format(u16, u16),
    #[error("no data chunk")]
    NoData,
}

/// Reads a WAV file's audio as 8 kHz mono 16-bit samples: 16-bit PCM or µ-law, any
/// channel count (the first channel is taken), resampled by nearest sample if not 8 kHz.
pub fn wav_samples(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let (mut fmt, mut data) = (None, None);
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        let body = &bytes[at + 8..(at + 8).saturating_add(len).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => fmt = Some(body),
            b"data" => data = Some(body),
            _ => {}
        }
        at = at.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    let fmt = fmt.ok_or(WavError::NotWav)?;
    let data = data.ok_or(WavError::NoData)?;
    let format = u16::from_le_bytes([fmt[0], fmt[1]]);
    let channels = u16::from_le_bytes([fmt[2], fmt[3]]).max(1) as usize;
    let rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]).max(1);
    let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
    let mono: Vec<i16> = match (format, bits) {
        (1, 16) => data.chunks_exact(2 * channels).map(|f| i16::from_le_bytes([f[0], f[1]])).collect(),
        (7, 8) => data.chunks_exact(channels).map(|f| ulaw_decode(f[0])).collect(),
        _ => return Err(WavError::Format(format, bits)),
    };
    if rate == CLOCK_HZ {
        return Ok(mono);
    }
    let n = (mono.len() as u64 * CLOCK_HZ as u64 / rate as u64) as usize;
    Ok((0..n)
        .map(|i| mono[((i as u64 * rate as u64 / CLOCK_HZ as u64) as usize).min(mono.len() - 1)])
        .collect())
}

/// A sine tone at `hz` (half full scale), `samples` long, at 8 kHz.
pub fn tone(hz: f64, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| (16000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / CLOCK_HZ as f64).sin()) as i16)
        .collect()
}

/// Cuts audio into 20 ms PCMU packets with consecutive sequence numbers and timestamps,
/// looping the audio when it is shorter than the call.
#[derive(Debug)]
pub struct Sender {
    audio: Vec<u8>,
    at: usize,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    first: bool,
    /// Packets sent so far.
    pub sent: u64,
}

impl Sender {
    /// A sender of `samples` (µ-law encoded once here) with random SSRC, sequence and
    /// timestamp starts (§5.1).
    pub fn new(samples: &[i16]) -> Sender {
        let mut audio: Vec<u8> = samples.iter().map(|s| ulaw_encode(*s)).collect();
        if audio.is_empty() {
            audio = vec![0xff; SAMPLES_PER_PACKET];
        }
        Sender {
            audio,
            at: 0,
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            first: true,
            sent: 0,
        }
    }

    /// The next 20 ms packet.
    pub fn next_packet(&mut self) -> RtpPacket {
        let mut payload = Vec::with_capacity(SAMPLES_PER_PACKET);
        while payload.len() < SAMPLES_PER_PACKET {
            let take = (SAMPLES_PER_PACKET - payload.len()).min(self.audio.len() - self.at);
            payload.extend_from_slice(&self.audio[self.at..self.at + take]);
            self.at = (self.at + take) % self.audio.len();
        }
        let p = RtpPacket {
            marker: self.first,
            payload_type: PT_PCMU,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.first = false;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
        self.sent += 1;
        p
    }
}

/// Receiver statistics of one source (§6.4.1, Appendix A.1 and A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub received: u64,
    base_seq: u32,
    /// Highest extended sequence number seen.
    max_seq: u32,
    started: bool,
    ssrc: u32,
    /// Interarrival jitter in timestamp units, scaled by 16 as A.8 keeps it.
    jitter_x16: u64,
    /// Previous transit time (arrival in timestamp units minus RTP timestamp).
    last_transit: Option<i64>,
    epoch: Option<Instant>,
}

impl ReceiverStats {
    /// Accounts one packet that arrived at `arrival`.
    pub fn on_packet(&mut self, p: &RtpPacket, arrival: Instant) {
        let epoch = *self.epoch.get_or_insert(arrival);
        if !self.started || p.ssrc != self.ssrc {
            // A new source restarts the statistics (§8.2: SSRC change).
            *self = ReceiverStats { epoch: Some(epoch), ..Default::default() };
            self.started = true;
            self.ssrc = p.ssrc;
            self.base_seq = p.sequence as u32;
            self.max_seq = p.sequence as u32;
        } else {
            // Extend the 16-bit sequence number with the cycle count (A.1).
            let cycles = self.max_seq & 0xffff_0000;
            let low = self.max_seq as u16;
            let delta = p.sequence.wrapping_sub(low);
            if delta != 0 && delta < 0x8000 {
                let ext =
                    if p.sequence < low { cycles.wrapping_add(0x1_0000) } else { cycles } | p.sequence as u32;
                self.max_seq = ext;
            }
        }
        self.received += 1;
        let arrival_ts = (arrival.duration_since(epoch).as_secs_f64() * CLOCK_HZ as f64) as i64;
        let transit = arrival_ts - p.timestamp as i64;
        if let Some(last) = self.last_transit {
            // J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16, in the integer form of A.8.
            let d = (transit - last).unsigned_abs();
            let d = d.min(u32::MAX as u64);
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Packets expected from the first to the highest sequence number (A.3).
    pub fn expected(&self) -> u64 {
        if !self.started { 0 } else { (self.max_seq.wrapping_sub(self.base_seq)) as u64 + 1 }
    }

    /// Packets lost (expected minus received, never negative here).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        (self.jitter_x16 >> 4) as f64 * 1000.0 / CLOCK_HZ as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn packet_round_trip_and_junk() {
        let mut s = Sender::new(&tone(440.0, 400));
        let p = s.next_packet();
        assert!(p.marker && p.payload.len() == 160);
        assert_eq!(RtpPacket::parse(&p.to_bytes()).unwrap(), p);
        let q = s.next_packet();
        assert_eq!(q.sequence, p.sequence.wrapping_add(1));
        assert_eq!(q.timestamp, p.timestamp.wrapping_add(160));
        assert!(!q.marker);
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::Short));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version));
        assert_eq!(RtpPacket::parse(&[0x8f; 20]), Err(RtpError::Truncated));
        let mut padded = p.to_bytes();
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 200;
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::Truncated));
    }

    #[test]
    fn ulaw_known_values_and_round_trip() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(ulaw_encode(32767), 0x80);
        assert_eq!(ulaw_encode(-32768), 0x00);
        for s in [-30000i16, -1000, -100, 0, 100, 1000, 8000, 30000] {
            let back = ulaw_decode(ulaw_encode(s)) as i32;
            let err = (back - s as i32).abs();
            assert!(err <= (s as i32).abs() / 16 + 8, "{s} -> {back}");
        }
    }

    #[test]
    fn wav_pcm16_and_junk() {
        let samples = tone(1000.0, 800);
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + 1600u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&[1, 0, 1, 0]);
        w.extend_from_slice(&16000u32.to_le_bytes());
        w.extend_from_slice(&32000u32.to_le_bytes());
        w.extend_from_slice(&[2, 0, 16, 0]);
        w.extend_from_slice(b"data");
        w.extend_from_slice(&1600u32.to_le_bytes());
        for s in &samples {
            w.extend_from_slice(&s.to_le_bytes());
        }
        // 16 kHz is resampled to 8 kHz: half the samples, every other one.
        let got = wav_samples(&w).unwrap();
        assert_eq!(got.len(), 400);
        assert_eq!(got[3], samples[6]);
        assert!(wav_samples(b"RIFF....WAVE").is_err());
        assert!(wav_samples(b"junk").is_err());
        let mut truncated = w.clone();
        truncated.truncate(40);
        assert!(wav_samples(&truncated).is_err(), "no data chunk header");
        let mut short = w.clone();
        short.truncate(50);
        assert!(wav_samples(&short).is_ok_and(|s| s.len() == 1), "a cut data chunk plays what is there");
    }

    #[test]
    fn stats_count_loss_and_jitter() {
        let t0 = Instant::now();
        let mut s = Sender::new(&tone(440.0, 160));
        let mut r = ReceiverStats::default();
        for i in 0..50u32 {
            let p = s.next_packet();
            if i == 10 || i == 11 {
                continue; // lost
            }
            // Even packets on time, odd ones 10 ms late: jitter converges toward 80 ts units.
            let late = if i % 2 == 1 { 10 } else { 0 };
            r.on_packet(&p, t0 + Duration::from_millis(20 * i as u64 + late));
        }
        assert_eq!(r.received, 48);
        assert_eq!(r.expected(), 50);
        assert_eq!(r.lost(), 2);
        assert!(r.jitter_ms() > 5.0 && r.jitter_ms() <= 10.0, "{}", r.jitter_ms());
        // On-time packets have no jitter.
        let mut s = Sender::new(&[]);
        let mut r = ReceiverStats::default();
        for i in 0..20u64 {
            r.on_packet(&s.next_packet(), t0 + Duration::from_millis(20 * i));
        }
        assert_eq!(r.lost(), 0);
        assert!(r.jitter_ms() < 0.5);
    }

    #[test]
    fn sequence_wraps() {
        let t0 = Instant::now();
        let mut r = ReceiverStats::default();
        for (i, seq) in [65534u16, 65535, 0, 1, 3].into_iter().enumerate() {
            let p = RtpPacket {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: 160 * i as u32,
                ssrc: 7,
                payload: vec![],
            };
            r.on_packet(&p, t0 + Duration::from_millis(20 * i as u64));
        }
        assert_eq!(r.expected(), 6);
        assert_eq!(r.lost(), 1);
    }
}
