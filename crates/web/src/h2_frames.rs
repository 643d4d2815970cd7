//! The RFC 9113 frame checker: an I/O wrapper in front of the `h2` crate that checks the
//! client's frame headers for the errors RFC 9113 gives specific codes that h2 reports
//! differently (mostly PROTOCOL_ERROR where FRAME_SIZE_ERROR or FLOW_CONTROL_ERROR is due), and
//! for HEADERS on a stream the client already closed (STREAM_CLOSED). On a violation nothing
//! more reaches h2; the checker waits for h2's current outgoing frame to end, writes GOAWAY
//! with the right code and closes. Everything else passes through untouched.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// HTTP/2 error codes the checker sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// PROTOCOL_ERROR.
    Protocol = 0x1,
    /// FLOW_CONTROL_ERROR.
    FlowControl = 0x3,
    /// STREAM_CLOSED.
    StreamClosed = 0x5,
    /// COMPRESSION_ERROR.
    Compression = 0x9,
    /// FRAME_SIZE_ERROR.
    FrameSize = 0x6,
}

const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;
/// Client streams remembered as closed (the oldest are forgotten beyond this).
const MAX_CLOSED: usize = 4096;
/// Largest header block checked here.
const MAX_BLOCK: usize = 256 * 1024;
/// SETTINGS_MAX_FRAME_SIZE of our side: h2's default, which `h2srv` keeps. Frames the checker
/// holds until complete (HEADERS, CONTINUATION, SETTINGS, GOAWAY) may not be longer, so a
/// 9-byte frame header cannot make the checker hold up to 16 MiB (RFC 9113 §4.2: FRAME_SIZE_ERROR,
/// a connection error for these frames).
const MAX_HELD_FRAME: u32 = 16_384;

/// A frame header (RFC 9113 §4.1), a view in the style of smoltcp's `wire` modules: parsed
/// from its 9 bytes into typed fields and emitted back, so the checker reads fields by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    /// Frame type (0x0 DATA, 0x1 HEADERS, ... 0x9 CONTINUATION).
    pub kind: u8,
    /// Type-specific flags.
    pub flags: u8,
    /// Stream identifier (31 bits; the reserved bit is dropped).
    pub stream: u32,
}

impl FrameHeader {
    /// Bytes in a frame header.
    pub const LEN: usize = HEADER_LEN;

    /// Reads a frame header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Reads the header at the start of a frame of at least [`FrameHeader::LEN`] bytes.
    pub fn of(frame: &[u8]) -> Option<FrameHeader> {
        frame.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).map(FrameHeader::parse)
    }

    /// Writes the header (a length beyond 24 bits is cut to its low 24 bits).
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let [_, l0, l1, l2] = self.len.to_be_bytes();
        let [s0, s1, s2, s3] = (self.stream & 0x7fff_ffff).to_be_bytes();
        [l0, l1, l2, self.kind, self.flags, s0, s1, s2, s3]
    }

    /// The payload length as a `usize`.
    pub fn payload_len(&self) -> usize {
        self.len as usize
    }
}

/// Gathers a frame header that may arrive split across reads or writes (both directions).
#[derive(Debug, Default)]
struct HeaderBytes {
    buf: [u8; HEADER_LEN],
    len: usize,
}

impl HeaderBytes {
    /// Takes what it needs of `data`: how many bytes it took, and the header once complete.
    fn push(&mut self, data: &[u8]) -> (usize, Option<FrameHeader>) {
        let n = (HEADER_LEN - self.len).min(data.len());
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len < HEADER_LEN {
            return (n, None);
        }
        self.len = 0;
        (n, Some(FrameHeader::parse(&self.buf)))
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The pure frame checker for the client → server direction.
#[derive(Debug)]
pub struct Inbound {
    preface_left: usize,
    header: HeaderBytes,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
    /// SETTINGS, HEADERS and CONTINUATION frames are held until complete so they can be checked.
    held: Option<Vec<u8>>,
    /// The header block being assembled (HEADERS + CONTINUATION): stream, is-trailer, bytes.
    block: Option<(u32, bool, Vec<u8>)>,
    /// Client streams with request headers received and not yet ended.
    open: HashSet<u32>,
    closed: HashSet<u32>,
    closed_order: VecDeque<u32>,
    last_stream: u32,
    /// A header block is open on this stream: only its CONTINUATION frames may follow.
    in_block: Option<u32>,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            preface_left: PREFACE_LEN,
            header: HeaderBytes::default(),
            payload_left: 0,
            held: None,
            block: None,
            open: HashSet::new(),
            closed: HashSet::new(),
            closed_order: VecDeque::new(),
            last_stream: 0,
            in_block: None,
        }
    }
}

impl Inbound {
    /// The highest client stream id seen in a HEADERS frame (GOAWAY's last-stream-id).
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// Checks `data`, appending what may pass to h2 onto `out`; `Err` on a violation.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), ErrorCode> {
        while !data.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                out.extend_from_slice(&data[..n]);
                self.preface_left -= n;
                data = &data[n..];
                continue;
            }
            if let Some(buf) = &mut self.held {
                let n = self.payload_left.min(data.len());
                buf.extend_from_slice(&data[..n]);
                self.payload_left -= n;
                data = &data[n..];
                if self.payload_left == 0 {
                    let frame = self.held.take().unwrap_or_default();
                    self.check_held(&frame)?;
                    if FrameHeader::of(&frame).is_some_and(|h| h.kind != 0x7) {
                        out.extend_from_slice(&frame);
                    }
                }
                continue;
            }
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                out.extend_from_slice(&data[..n]);
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let (n, header) = self.header.push(data);
            data = &data[n..];
            if let Some(header) = header {
                self.frame(&header)?;
                let len = header.payload_len();
                if matches!(header.kind, 0x1 | 0x4 | 0x7 | 0x9) {
                    // Held: the header goes out with the payload once both are checked.
                    let mut buf = Vec::with_capacity(HEADER_LEN + len);
                    buf.extend_from_slice(&header.emit());
                    if len == 0 {
                        self.check_held(&buf)?;
                        if header.kind != 0x7 {
                            out.extend_from_slice(&buf);
                        }
                    } else {
                        self.held = Some(buf);
                    }
                } else {
                    out.extend_from_slice(&header.emit());
                }
                self.payload_left = len;
            }
        }
        Ok(())
    }

    fn frame(&mut self, h: &FrameHeader) -> Result<(), ErrorCode> {
        let FrameHeader { len, kind, flags, stream } = *h;
        // RFC 9113 §6.10: a header block is contiguous CONTINUATION frames on its own stream.
        match self.in_block {
            Some(open) if kind != 0x9 || stream != open => return Err(ErrorCode::Protocol),
            None if kind == 0x9 => return Err(ErrorCode::Protocol),
            _ => {}
        }
        if matches!(kind, 0x1 | 0x4 | 0x7 | 0x9) && len > MAX_HELD_FRAME {
            return Err(ErrorCode::FrameSize);
        }
        if matches!(kind, 0x1 | 0x9) {
            self.in_block = (flags & 0x4 == 0).then_some(stream);
        }
        match kind {
            // DATA: not after the client ended or reset the stream; END_STREAM ends it.
            0x0 => {
                if self.closed.contains(&stream) {
                    return Err(ErrorCode::StreamClosed);
                }
                if flags & 0x1 != 0 {
                    self.close(stream);
                }
            }
            // HEADERS on a stream the client already closed.
            0x1 => {
                if self.closed.contains(&stream) {
                    return Err(ErrorCode::StreamClosed);
                }
                self.last_stream = self.last_stream.max(stream);
            }
            0x2 if len != 5 => return Err(ErrorCode::FrameSize),
            0x3 => {
                if len != 4 {
                    return Err(ErrorCode::FrameSize);
                }
                self.close(stream);
            }
            0x4 if flags & 0x1 != 0 && len != 0 || len % 6 != 0 => return Err(ErrorCode::FrameSize),
            // A client never sends PUSH_PROMISE.
            0x5 => return Err(ErrorCode::Protocol),
            0x6 if len != 8 => return Err(ErrorCode::FrameSize),
            // GOAWAY from the client: checked, then kept from h2, which would otherwise close
            // the connection at once; the client closes it when it is done (RFC 9113 §6.8
            // lets the connection carry on, and a server opens no streams but pushes).
            0x7 if stream != 0 => return Err(ErrorCode::Protocol),
            0x7 if len < 8 => return Err(ErrorCode::FrameSize),
            0x8 if len != 4 => return Err(ErrorCode::FrameSize),
            _ => {}
        }
        Ok(())
    }

    /// Checks a complete held frame (SETTINGS values, header blocks).
    fn check_held(&mut self, frame: &[u8]) -> Result<(), ErrorCode> {
        let Some(FrameHeader { kind, flags, stream, .. }) = FrameHeader::of(frame) else { return Ok(()) };
        let payload = &frame[HEADER_LEN..];
        match kind {
            0x4 => check_settings(frame),
            0x1 => {
                let mut fragment = payload;
                if flags & 0x8 != 0 {
                    let pad = usize::from(*fragment.first().ok_or(ErrorCode::FrameSize)?);
                    if pad >= fragment.len() {
                        return Err(ErrorCode::Protocol);
                    }
                    fragment = &fragment[1..fragment.len() - pad];
                }
                if flags & 0x20 != 0 {
                    fragment = fragment.get(5..).ok_or(ErrorCode::FrameSize)?;
                }
                let trailer = self.open.contains(&stream);
                if flags & 0x1 != 0 {
                    self.open.remove(&stream);
                    self.close(stream);
                } else if !trailer {
                    self.open.insert(stream);
                }
                self.block = Some((stream, trailer, fragment.to_vec()));
                self.end_of_block(flags)
            }
            0x9 => {
                if let Some((s, _, block)) = &mut self.block
                    && *s == stream
                {
                    if block.len() + payload.len() > MAX_BLOCK {
                        self.block = None; // too big to check here; h2's own limits apply
                        return Ok(());
                    }
                    block.extend_from_slice(payload);
                }
                self.end_of_block(flags)
            }
            _ => Ok(()),
        }
    }

    fn end_of_block(&mut self, flags: u8) -> Result<(), ErrorCode> {
        if flags & 0x4 == 0 {
            return Ok(());
        }
        match self.block.take() {
            Some((_, trailer, block)) => hpack_check(&block, trailer),
            None => Ok(()),
        }
    }

    fn close(&mut self, stream: u32) {
        self.open.remove(&stream);
        if stream != 0 && self.closed.insert(stream) {
            self.closed_order.push_back(stream);
            if self.closed_order.len() > MAX_CLOSED
                && let Some(old) = self.closed_order.pop_front()
            {
                self.closed.remove(&old);
            }
        }
    }
}

/// Checks SETTINGS values (header included in `frame`).
fn check_settings(frame: &[u8]) -> Result<(), ErrorCode> {
    for s in frame[HEADER_LEN..].chunks_exact(6) {
        let id = u16::from_be_bytes([s[0], s[1]]);
        let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
        match id {
            0x2 if value > 1 => return Err(ErrorCode::Protocol),
            0x4 if value > 0x7fff_ffff => return Err(ErrorCode::FlowControl),
            0x5 if !(16_384..=16_777_215).contains(&value) => return Err(ErrorCode::Protocol),
            _ => {}
        }
    }
    Ok(())
}

/// Walks an HPACK header block's structure (RFC 7541 §6): integers and string lengths must fit
/// in the block (COMPRESSION_ERROR otherwise). In trailers, a pseudo-header field (a static
/// table name 1–14 or a literal name starting with ':') is a PROTOCOL_ERROR. Table contents and
/// Huffman codes are left to h2's decoder.
pub fn hpack_check(block: &[u8], trailer: bool) -> Result<(), ErrorCode> {
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b & 0x80 != 0 {
            let index = hpack_int(block, &mut i, 7)?;
            if index == 0 {
                return Err(ErrorCode::Compression);
            }
            if trailer && index <= 14 {
                return Err(ErrorCode::Protocol);
            }
        } else if b & 0xe0 == 0x20 {
            hpack_int(block, &mut i, 5)?;
        } else {
            let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
            let index = hpack_int(block, &mut i, prefix)?;
            if index == 0 {
                let (huffman, name) = hpack_string(block, &mut i)?;
                let pseudo = match name.first() {
                    Some(&c) if huffman => c & 0xfe == 0xb8, // ':' is 1011100 in the Huffman code
                    Some(&c) => c == b':',
                    None => false,
                };
                if trailer && pseudo {
                    return Err(ErrorCode::Protocol);
                }
            } else if trailer && index <= 14 {
                return Err(ErrorCode::Protocol);
            }
            hpack_string(block, &mut i)?;
        }
    }
    Ok(())
}

fn hpack_int(block: &[u8], i: &mut usize, prefix: u8) -> Result<u64, ErrorCode> {
    let mask = (1u16 << prefix) as u8 - 1;
    let first = *block.get(*i).ok_or(ErrorCode::Compression)?;
    *i += 1;
    let mut value = u64::from(first & mask);
    if value < u64::from(mask) {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let b = *block.get(*i).ok_or(ErrorCode::Compression)?;
        *i += 1;
        value += u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        if shift > 28 {
            return Err(ErrorCode::Compression);
        }
    }
}

fn hpack_string<'a>(block: &'a [u8], i: &mut usize) -> Result<(bool, &'a [u8]), ErrorCode> {
    let huffman = block.get(*i).ok_or(ErrorCode::Compression)? & 0x80 != 0;
    let len = hpack_int(block, i, 7)? as usize;
    let s = block.get(*i..*i + len).ok_or(ErrorCode::Compression)?;
    *i += len;
    Ok((huffman, s))
}

/// A GOAWAY frame.
pub fn goaway(last_stream: u32, code: ErrorCode) -> Vec<u8> {
    let mut f = FrameHeader { len: 8, kind: 0x7, flags: 0, stream: 0 }.emit().to_vec();
    f.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&(code as u32).to_be_bytes());
    f
}

/// Tracks frame boundaries in the server → client stream, so a GOAWAY is never written into
/// the middle of one of h2's frames.
#[derive(Debug, Default)]
struct Outbound {
    header: HeaderBytes,
    payload_left: usize,
}

impl Outbound {
    fn at_boundary(&self) -> bool {
        self.header.is_empty() && self.payload_left == 0
    }

    fn written(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let (n, header) = self.header.push(data);
            data = &data[n..];
            if let Some(h) = header {
                self.payload_left = h.payload_len();
            }
        }
    }
}

/// The checker around an HTTP/2 connection's byte stream.
pub struct H2FrameCheck<IO> {
    io: IO,
    inbound: Inbound,
    outbound: Outbound,
    pass: Vec<u8>,
    pass_pos: usize,
    buf: Vec<u8>,
    /// A GOAWAY waiting for a frame boundary, and how much of it is written.
    goaway: Option<(Vec<u8>, usize)>,
    done: bool,
}

impl<IO> H2FrameCheck<IO> {
    /// Wraps a connection whose first client bytes are the HTTP/2 preface.
    pub fn new(io: IO) -> H2FrameCheck<IO> {
        H2FrameCheck {
            io,
            inbound: Inbound::default(),
            outbound: Outbound::default(),
            pass: Vec::new(),
            pass_pos: 0,
            buf: vec![0; 16 * 1024],
            goaway: None,
            done: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> H2FrameCheck<IO> {
    /// Writes the pending GOAWAY if we are between frames; Ready(()) once it is out (or gone).
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some((frame, pos)) = &mut self.goaway else { return Poll::Ready(()) };
        if !self.outbound.at_boundary() {
            return Poll::Pending;
        }
        while *pos < frame.len() {
            match Pin::new(&mut self.io).poll_write(cx, &frame[*pos..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => *pos += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        // The transport may gather writes: the GOAWAY counts as sent once it is flushed.
        // (A failed flush means the peer is gone: then we are done all the same.)
        if Pin::new(&mut self.io).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        self.goaway = None;
        self.done = true;
        Poll::Ready(())
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for H2FrameCheck<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pass_pos < this.pass.len() {
                let n = (this.pass.len() - this.pass_pos).min(buf.remaining());
                buf.put_slice(&this.pass[this.pass_pos..this.pass_pos + n]);
                this.pass_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.done {
                return Poll::Ready(Ok(()));
            }
            if this.goaway.is_some() {
                ready!(this.poll_goaway(cx));
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
            this.pass.clear();
            this.pass_pos = 0;
            if let Err(code) = this.inbound.feed(&this.buf[..n], &mut this.pass) {
                tracing::debug!(?code, "HTTP/2 frame violation; sending GOAWAY");
                // What passed the checks before the bad frame still goes to h2 first.
                this.goaway = Some((goaway(this.inbound.last_stream(), code), 0));
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> H2FrameCheck<IO> {
    /// Before h2 writes: refuses once the connection is done, and sends a pending GOAWAY first
    /// when h2's output is between frames (after which h2 may not write any more).
    fn poll_before_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.done {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if self.goaway.is_some() && self.outbound.at_boundary() {
            ready!(self.poll_goaway(cx));
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        Poll::Ready(Ok(()))
    }

    /// After h2 wrote: a pending GOAWAY goes out as soon as the output reaches a frame boundary.
    fn after_write(&mut self, cx: &mut Context<'_>) {
        if self.goaway.is_some() && self.outbound.at_boundary() {
            let _ = self.poll_goaway(cx);
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for H2FrameCheck<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_before_write(cx))?;
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, data))?;
        this.outbound.written(&data[..n]);
        this.after_write(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = FrameHeader { len: payload.len() as u32, kind, flags, stream }.emit().to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_headers_parse_and_emit() {
        let bytes = [0x01, 0x02, 0x03, 0x1, 0x25, 0x80, 0, 0, 7];
        let h = FrameHeader::parse(&bytes);
        assert_eq!(
            h,
            FrameHeader { len: 0x010203, kind: 0x1, flags: 0x25, stream: 7 },
            "reserved bit dropped"
        );
        assert_eq!(h.emit(), [0x01, 0x02, 0x03, 0x1, 0x25, 0, 0, 0, 7]);
        for h in [
            FrameHeader { len: 0, kind: 0x4, flags: 0x1, stream: 0 },
            FrameHeader { len: 0xff_ffff, kind: 0x9, flags: 0x4, stream: 0x7fff_ffff },
        ] {
            assert_eq!(FrameHeader::parse(&h.emit()), h);
        }
        assert_eq!(FrameHeader::of(&bytes[..8]), None);
        // Split anywhere, the accumulator yields the same header once.
        for cut in 0..=9 {
            let mut acc = HeaderBytes::default();
            let (a, first) = acc.push(&bytes[..cut]);
            let (b, second) = acc.push(&bytes[cut..]);
            assert_eq!(a + b, 9);
            assert_eq!(first.or(second), Some(h));
            assert!(first.is_none() || cut == 9);
            assert!(acc.is_empty());
        }
    }

    fn run(frames: &[Vec<u8>]) -> (Result<(), ErrorCode>, usize) {
        let mut input = PREFACE.to_vec();
        for f in frames {
            input.extend_from_slice(f);
        }
        let mut g = Inbound::default();
        let mut out = Vec::new();
        // Byte by byte: the checker must not depend on how reads split the stream.
        for b in &input {
            if let Err(e) = g.feed(std::slice::from_ref(b), &mut out) {
                return (Err(e), out.len());
            }
        }
        (Ok(()), out.len())
    }

    #[test]
    fn good_frames_pass_unchanged() {
        let frames = vec![
            frame(0x4, 0, 0, &[0, 4, 0, 1, 0, 0]),
            frame(0x4, 1, 0, &[]),
            frame(0x1, 0x5, 1, &[0x82, 0x86, 0x84]),
            frame(0x8, 0, 0, &[0, 0, 1, 0]),
            frame(0x6, 0, 0, &[0; 8]),
            frame(0x1, 0x4, 3, &[0x82]),
            frame(0x0, 0x1, 3, b"body"),
        ];
        let total: usize = PREFACE.len() + frames.iter().map(Vec::len).sum::<usize>();
        assert_eq!(run(&frames), (Ok(()), total));
    }

    #[test]
    fn violations_get_their_codes() {
        assert_eq!(run(&[frame(0x6, 0, 0, &[0; 6])]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x8, 0, 0, &[0; 3])]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x3, 0, 1, &[0; 5])]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x2, 0, 1, &[0; 4])]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x4, 0, 0, &[0; 5])]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x4, 1, 0, &[0; 6])]).0, Err(ErrorCode::FrameSize));
        // A frame the checker holds, announced longer than our SETTINGS_MAX_FRAME_SIZE: refused at
        // its header, before anything of it is held or passed on.
        for kind in [0x1, 0x4, 0x7] {
            let mut head = frame(kind, 0x4, if kind == 0x1 { 1 } else { 0 }, &[]);
            head[..3].copy_from_slice(&[0x00, 0x40, 0x01]); // 16 385 bytes
            assert_eq!(run(&[head]), (Err(ErrorCode::FrameSize), PREFACE.len()));
        }
        let mut head = frame(0x9, 0x4, 1, &[]);
        head[..3].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert_eq!(run(&[frame(0x1, 0x1, 1, &[0x82]), head]).0, Err(ErrorCode::FrameSize));
        assert_eq!(run(&[frame(0x4, 0, 0, &[0, 4, 0x80, 0, 0, 0])]).0, Err(ErrorCode::FlowControl));
        assert_eq!(run(&[frame(0x4, 0, 0, &[0, 2, 0, 0, 0, 2])]).0, Err(ErrorCode::Protocol));
        assert_eq!(run(&[frame(0x4, 0, 0, &[0, 5, 0, 0, 0x3f, 0xff])]).0, Err(ErrorCode::Protocol));
        // HEADERS again on a stream the client ended, or reset.
        assert_eq!(
            run(&[frame(0x1, 0x5, 1, &[0x82]), frame(0x1, 0x5, 1, &[0x82])]).0,
            Err(ErrorCode::StreamClosed)
        );
        assert_eq!(
            run(&[frame(0x1, 0x4, 1, &[0x82]), frame(0x3, 0, 1, &[0, 0, 0, 8]), frame(0x1, 0x5, 1, &[0x82])])
                .0,
            Err(ErrorCode::StreamClosed)
        );
        assert_eq!(
            run(&[frame(0x1, 0x5, 1, &[0x82]), frame(0x0, 0x1, 1, b"late")]).0,
            Err(ErrorCode::StreamClosed)
        );
        // Trailers after data are fine, unless they carry a pseudo-header.
        let get = [0x82, 0x86, 0x84]; // :method GET, :scheme http, :path /
        let trailer = [0x40, 0x01, b'x', 0x01, b'y']; // x: y
        assert_eq!(
            run(&[frame(0x1, 0x4, 1, &get), frame(0x0, 0, 1, b"d"), frame(0x1, 0x5, 1, &trailer)]).0,
            Ok(())
        );
        assert_eq!(run(&[frame(0x1, 0x4, 1, &get), frame(0x1, 0x5, 1, &[0x83])]).0, Err(ErrorCode::Protocol));
        assert_eq!(
            run(&[frame(0x1, 0x4, 1, &get), frame(0x1, 0x5, 1, &[0x40, 0x02, b':', b'm', 0x00])]).0,
            Err(ErrorCode::Protocol)
        );
        // Truncated header blocks, also split over CONTINUATION.
        assert_eq!(run(&[frame(0x1, 0x5, 1, &[0x40])]).0, Err(ErrorCode::Compression));
        assert_eq!(
            run(&[frame(0x1, 0x1, 1, &[0x40, 0x05]), frame(0x9, 0x4, 1, b"ab")]).0,
            Err(ErrorCode::Compression)
        );
        assert_eq!(run(&[frame(0x1, 0x1, 1, &[0x40, 0x01]), frame(0x9, 0x4, 1, b"a\x01b")]).0, Ok(()));
        // CONTINUATION must follow an open header block on the same stream, and nothing else may.
        assert_eq!(run(&[frame(0x9, 0x4, 1, &[0x82])]).0, Err(ErrorCode::Protocol));
        assert_eq!(run(&[frame(0x1, 0x1, 1, &[0x82]), frame(0x0, 0x1, 1, b"x")]).0, Err(ErrorCode::Protocol));
        assert_eq!(
            run(&[frame(0x1, 0x1, 1, &[0x82]), frame(0x9, 0x4, 3, &[0x82])]).0,
            Err(ErrorCode::Protocol)
        );
        assert_eq!(run(&[frame(0x5, 0x4, 1, &[0, 0, 0, 2, 0x82])]).0, Err(ErrorCode::Protocol));
        // A client's GOAWAY is checked and kept from h2.
        let goaway_frame = frame(0x7, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(run(std::slice::from_ref(&goaway_frame)), (Ok(()), PREFACE.len()));
        assert_eq!(run(&[frame(0x7, 0, 1, &[0; 8])]).0, Err(ErrorCode::Protocol));
        // Padding and priority fields are skipped.
        assert_eq!(run(&[frame(0x1, 0x2d, 1, &[2, 0, 0, 0, 0, 16, 0x82, 0, 0])]).0, Ok(()));
    }

    #[test]
    fn a_violation_holds_back_the_bad_frame() {
        let ok = frame(0x6, 0, 0, &[0; 8]);
        let (res, passed) = run(&[ok.clone(), frame(0x6, 0, 0, &[0; 2])]);
        assert_eq!(res, Err(ErrorCode::FrameSize));
        assert_eq!(passed, PREFACE.len() + ok.len());
        assert_eq!(goaway(7, ErrorCode::FrameSize), vec![0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 6]);
    }

    #[tokio::test]
    async fn vectored_writes_keep_a_goaway_between_frames() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut peer) = tokio::io::duplex(1 << 16);
        let mut gate = H2FrameCheck::new(ours);
        let data = frame(0x0, 0x1, 1, &[7u8; 100]);
        let (head, payload) = data.split_at(HEADER_LEN);
        let mut sent = 0;
        // The GOAWAY is queued while the DATA frame is half written.
        let slices = [io::IoSlice::new(head), io::IoSlice::new(&payload[..40])];
        sent += gate.write_vectored(&slices).await.unwrap();
        assert!(sent < data.len());
        gate.goaway = Some((goaway(1, ErrorCode::Protocol), 0));
        for _ in 0..data.len() {
            if sent == data.len() {
                break;
            }
            let rest = &data[sent..];
            let (a, b) = rest.split_at(rest.len() / 2);
            sent += gate.write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)]).await.unwrap();
        }
        assert_eq!(sent, data.len());
        assert!(gate.done, "the GOAWAY went out once the frame was complete");
        assert!(gate.write_vectored(&[io::IoSlice::new(b"x")]).await.is_err(), "nothing after GOAWAY");
        drop(gate);
        let mut wire = Vec::new();
        peer.read_to_end(&mut wire).await.unwrap();
        let mut want = data.clone();
        want.extend_from_slice(&goaway(1, ErrorCode::Protocol));
        assert_eq!(wire, want);
    }
}
