//! The lab page's request router over arbitrary request heads: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_lab::ui::server::route_head(data);
});
