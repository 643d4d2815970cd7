//! The Napster directory's command and reply lines, and the servent HTTP request heads, over
//! arbitrary bytes: never panic; what parses prints and parses back to itself; byte ranges
//! resolve inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_overlay::napster::wire::fuzz_line(data);
    appnet_overlay::http::request::fuzz_request(data);
});
