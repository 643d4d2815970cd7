//! QRP ROUTE_TABLE_UPDATE payloads from a leaf, decoded and applied to a receiver's table in
//! sequence: never panics; bad sizes, order and lengths are refused, lookups stay in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    appnet_overlay::gnutella::qrp::fuzz_updates(data);
});
