//! The Gnutella descriptor framer and payload decoder over an arbitrary byte stream: never
//! panics; bad lengths are errors, not allocations.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_overlay::gnutella::wire::fuzz_descriptors(data);
});
