//! Any text as a zone file: the reader and the checks report errors, never panic; whatever
//! loads can be printed and read back.
#![no_main]

use appnet_dns::wire::name::{ROOT, from_text};
use appnet_dns::wire::zonefile::{Includes, parse_text};
use appnet_dns::zone::{Zone, check};
use libfuzzer_sys::fuzz_target;

/// domain 0.12.3's zone scanner can panic on malformed text; appnet contains that with
/// `catch_unwind` and reports an error. libfuzzer-sys aborts on every panic in its hook, so
/// let panics located in that scanner unwind to our handler; any other panic still aborts.
fn tolerate_scanner_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_scanner = info.location().is_some_and(|l| l.file().contains("src/zonefile/inplace.rs"));
            if !in_scanner {
                fuzzer_hook(info);
            }
        }));
    });
}

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
