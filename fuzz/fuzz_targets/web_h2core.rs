//! The web server's own HTTP/2 connection core over arbitrary client bytes: must never panic,
//! must decide the same way whether the bytes arrive at once or in small reads, and whatever
//! it writes must be whole frames.
#![no_main]

use appnet_web::h2_frames::FrameHeader;
use appnet_web::h2core::conn::PREFACE;
use appnet_web::h2core::{Conn, Event, Limits};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

/// Feeds `input` in chunks of `step`, then answers every request with a body of a few
/// frames, and returns the request streams seen, whether the connection failed, and the bytes
/// written.
fn run(input: &[u8], step: usize, now: Instant) -> (Vec<u32>, bool, Vec<u8>) {
    let mut c = Conn::new(Limits { max_streams: 8, max_header_list: 4096, ..Limits::default() }, now);
    let mut seen = Vec::new();
    for chunk in input.chunks(step) {
        c.recv(chunk, now);
        while let Some(ev) = c.poll_event() {
            if let Event::Request { stream, .. } | Event::Refuse { stream, .. } = ev {
                seen.push(stream);
            }
        }
    }
    let failed = c.is_failed();
    for &stream in &seen {
        c.send_headers(stream, 200, &http::HeaderMap::new(), false);
        c.send_data(stream, Bytes::from_static(&[0u8; 40_000]), true);
    }
    let mut out = Vec::new();
    c.take_output(1 << 20, &mut out);
    (seen, failed, out.concat())
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, frames)) = data.split_first() else { return };
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(frames);
    let now = Instant::now();
    let whole = run(&input, input.len(), now);
    let split = run(&input, usize::from(step % 32) + 1, now);
    assert_eq!(whole.0, split.0);
    assert_eq!(whole.1, split.1);
    // The output is a sequence of whole frames.
    let mut rest = &whole.2[..];
    while let Some(h) = FrameHeader::of(rest) {
        let end = FrameHeader::LEN + h.payload_len();
        assert!(rest.len() >= end, "a partial frame was written");
        rest = &rest[end..];
    }
    assert!(rest.is_empty());
});
