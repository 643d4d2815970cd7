//! The web server's HTTP/2 frame gate (client → server bytes before h2) over arbitrary input:
//! the frame checker and the HPACK structure walk. Must never panic, and must decide the same
//! way (same verdict, same bytes passed on) whether the bytes arrive at once or in small reads.
#![no_main]

use appnet_web::h2_frames::{Inbound, hpack_check};
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&step, frames)) = data.split_first() else { return };
    let _ = hpack_check(frames, false);
    let _ = hpack_check(frames, true);
    // The preface is passed through unchecked (h2 checks it): start after it.
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(frames);

    let mut whole = Inbound::default();
    let mut out_whole = Vec::new();
    let verdict_whole = whole.feed(&input, &mut out_whole);

    let mut split = Inbound::default();
    let mut out_split = Vec::new();
    let mut verdict_split = Ok(());
    for chunk in input.chunks(usize::from(step % 32) + 1) {
        verdict_split = split.feed(chunk, &mut out_split);
        if verdict_split.is_err() {
            break;
        }
    }
    assert_eq!(verdict_whole, verdict_split);
    if verdict_whole.is_ok() {
        assert_eq!(out_whole, out_split);
        assert_eq!(whole.last_stream(), split.last_stream());
    }
    assert!(out_whole.len() <= input.len());
});
