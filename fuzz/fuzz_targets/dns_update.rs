//! Any bytes as an RFC 2136 UPDATE: parsing and applying to a small zone answer with an rcode
//! or new records, never panic; whatever is accepted builds a zone.
#![no_main]

use appnet_dns::update::{apply, parse};
use appnet_dns::zone::Zone;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        Zone::from_text("com.", "$ORIGIN com.\n@ 60 SOA ns host 7 2 3 4 5\n@ 60 NS ns\nns 60 A 192.0.2.1\n")
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse(data) else { return };
    if let Ok(Some(records)) = apply(zone(), &req) {
        let _ = Zone::from_records(zone().apex(), records);
    }
});
