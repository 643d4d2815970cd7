//! The SIP message parser over arbitrary bytes: never panics, and whatever parses
//! serialises to bytes that parse again, stably (see `appnet_sip::wire::check_round_trip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_sip::wire::check_round_trip(data);
});
