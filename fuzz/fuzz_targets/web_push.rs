//! The CDN push endpoint's body parser (the URL list a replica accepts once the signature
//! checks) and the push client's reply parser, over arbitrary bytes: must never panic.
#![no_main]

use appnet_web::proxy::push::wire::{parse_body, parse_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_body(data, 64);
    let _ = parse_reply(&String::from_utf8_lossy(data));
});
