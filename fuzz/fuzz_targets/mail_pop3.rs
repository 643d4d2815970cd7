//! POP3 command lines and the RETR/TOP encoder over arbitrary bytes. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_mail::pop3::wire::fuzz(data);
});
