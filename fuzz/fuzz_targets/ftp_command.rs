//! The FTP server's command reader over arbitrary client bytes (Telnet sequences, verbs,
//! PORT/EPRT addresses, REST offsets, paths): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_ftp::wire::parse_line(data);
});
