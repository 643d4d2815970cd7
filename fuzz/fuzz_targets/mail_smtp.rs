//! SMTP from both sides over arbitrary bytes: the server session (commands, DATA, AUTH) and
//! the client's reply parser. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_mail::smtp::fuzz::exercise(data);
});
