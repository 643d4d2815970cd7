//! The SDP parser used by admission control over arbitrary bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = appnet_sip::wire::sdp::parse(data) {
        let _ = sdp.cost_kbps();
    }
});
