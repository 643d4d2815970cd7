//! Any text as a zone file: the reader and the checks report errors, never panic; whatever
//! loads can be printed and read back.
#![no_main]

use appnet_dns::wire::name::{ROOT, from_text};
use appnet_dns::wire::zonefile::{Includes, parse_text};
use appnet_dns::zone::{Zone, check};
use libfuzzer_sys::fuzz_target;

#[path = "shared/scanner_panics.rs"]
mod scanner_panics;
use scanner_panics::tolerate_scanner_panics;

fuzz_target!(|data: &[u8]| {
    tolerate_scanner_panics();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let apex = from_text("example.com").unwrap();
    let Ok(records) = parse_text(text, "fuzz", &apex, &Includes::Forbidden) else { return };
    let _ = check(&apex, &records);
    if let Ok(zone) = Zone::from_records(&apex, records) {
        let printed = zone.to_text();
        let back =
            parse_text(&printed, "printed", ROOT, &Includes::Forbidden).expect("printed zone reads back");
        assert_eq!(back.len(), zone.record_count(), "{printed}");
    }
});
