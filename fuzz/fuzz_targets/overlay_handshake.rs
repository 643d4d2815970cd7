//! The Gnutella 0.6 handshake parser over arbitrary bytes: never panics, stays within its
//! size limits, and what it accepts encodes and parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| appnet_overlay::gnutella::handshake::fuzz_handshake(data));
