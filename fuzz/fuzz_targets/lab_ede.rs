//! The DNSSEC scene's reader of Extended DNS Errors (RFC 8914) over arbitrary replies: must
//! never panic, whatever the counts, names and option lengths say.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_lab::dnssec_scene::extended_errors(data);
});
