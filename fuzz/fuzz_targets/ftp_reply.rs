//! The FTP client's reply reader over arbitrary server bytes (multi-line replies, the 227 and
//! 229 data addresses): must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_ftp::client::reply::read_reply_and_address(data);
});
