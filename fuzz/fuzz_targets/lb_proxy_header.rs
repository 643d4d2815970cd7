//! PROXY protocol v1/v2 header parsing over arbitrary bytes: must never panic, and a parsed
//! header never claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = appnet_lb::proxy_protocol::parse(data) {
        assert!(used <= data.len());
    }
});
