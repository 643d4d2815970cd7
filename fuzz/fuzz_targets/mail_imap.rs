//! IMAP client input: the fragmentizer (lines, literals, size cap) and imap-codec's command decoder. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_mail::imap::wire::fuzz(data);
});
