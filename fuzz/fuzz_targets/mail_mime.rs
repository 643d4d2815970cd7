//! Messages as IMAP FETCH sees them: mail-parser's MIME tree, ENVELOPE, BODYSTRUCTURE and section ranges. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_mail::imap::mime::fuzz(data);
});
