//! HTTP/2 frame types, flags, error codes and settings (RFC 9113 §6, §7, RFC 9218 §7.1), and
//! emitting the frames the server sends.

pub use crate::h2_frames::FrameHeader;

/// DATA.
pub const DATA: u8 = 0x0;
/// HEADERS.
pub const HEADERS: u8 = 0x1;
/// PRIORITY (RFC 7540's scheme: accepted and ignored).
pub const PRIORITY: u8 = 0x2;
/// RST_STREAM.
pub const RST_STREAM: u8 = 0x3;
/// SETTINGS.
pub const SETTINGS: u8 = 0x4;
/// PUSH_PROMISE.
pub const PUSH_PROMISE: u8 = 0x5;
/// PING.
pub const PING: u8 = 0x6;
/// GOAWAY.
pub const GOAWAY: u8 = 0x7;
/// WINDOW_UPDATE.
pub const WINDOW_UPDATE: u8 = 0x8;
/// CONTINUATION.
pub const CONTINUATION: u8 = 0x9;
/// PRIORITY_UPDATE (RFC 9218 §7.1).
pub const PRIORITY_UPDATE: u8 = 0x10;

/// END_STREAM (DATA, HEADERS).
pub const END_STREAM: u8 = 0x1;
/// ACK (SETTINGS, PING).
pub const ACK: u8 = 0x1;
/// END_HEADERS (HEADERS, PUSH_PROMISE, CONTINUATION).
pub const END_HEADERS: u8 = 0x4;
/// PADDED (DATA, HEADERS).
pub const PADDED: u8 = 0x8;
/// PRIORITY flag (HEADERS).
pub const PRIORITY_FLAG: u8 = 0x20;

/// SETTINGS_HEADER_TABLE_SIZE.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
/// SETTINGS_ENABLE_PUSH.
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// SETTINGS_INITIAL_WINDOW_SIZE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE.
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
/// SETTINGS_MAX_HEADER_LIST_SIZE.
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
/// SETTINGS_NO_RFC7540_PRIORITIES (RFC 9218 §2.1).
pub const SETTINGS_NO_RFC7540_PRIORITIES: u16 = 0x9;

/// The largest flow-control window (RFC 9113 §6.9.1).
pub const MAX_WINDOW: i64 = 0x7fff_ffff;
/// The default frame size and window.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The default initial window (RFC 9113 §6.5.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

/// HTTP/2 error codes (RFC 9113 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Reason {
    /// NO_ERROR.
    NoError = 0x0,
    /// PROTOCOL_ERROR.
    Protocol = 0x1,
    /// INTERNAL_ERROR.
    Internal = 0x2,
    /// FLOW_CONTROL_ERROR.
    FlowControl = 0x3,
    /// STREAM_CLOSED.
    StreamClosed = 0x5,
    /// FRAME_SIZE_ERROR.
    FrameSize = 0x6,
    /// REFUSED_STREAM.
    Refused = 0x7,
    /// CANCEL.
    Cancel = 0x8,
    /// COMPRESSION_ERROR.
    Compression = 0x9,
    /// ENHANCE_YOUR_CALM.
    Calm = 0xb,
}

/// Appends a frame header.
pub fn head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&FrameHeader { len: len as u32, kind, flags, stream }.emit());
}

/// Appends a SETTINGS frame with `params`.
pub fn settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    head(out, params.len() * 6, SETTINGS, 0, 0);
    for (id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends a WINDOW_UPDATE.
pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

/// Appends an RST_STREAM.
pub fn rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// Appends a GOAWAY.
pub fn goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason) {
    head(out, 8, GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&(reason as u32).to_be_bytes());
}

/// Appends a header block as HEADERS (or PUSH_PROMISE with `promised`) and as many
/// CONTINUATION frames as `max_frame` requires.
pub fn header_block(
    out: &mut Vec<u8>,
    stream: u32,
    promised: Option<u32>,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let extra = if promised.is_some() { 4 } else { 0 };
    let first_len = block.len().min(max_frame - extra);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
    if end_stream && promised.is_none() {
        flags |= END_STREAM;
    }
    let kind = if promised.is_some() { PUSH_PROMISE } else { HEADERS };
    head(out, first.len() + extra, kind, flags, stream);
    if let Some(id) = promised {
        out.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let n = rest.len().min(max_frame);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        head(out, n, CONTINUATION, if rest.is_empty() { END_HEADERS } else { 0 }, stream);
        out.extend_from_slice(chunk);
    }
}
