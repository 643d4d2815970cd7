//! Any text as a zone file, signed: the signer reports errors (bad RRsets, no SOA, ...), never
//! panics, whatever the zone holds (old signatures, NSEC3 records, delegations, glue).
#![no_main]

use appnet_dns::wire::dnssec::{Algorithm, SignOptions, ZoneKey, generate_key, load_key, sign_zone};
use appnet_dns::wire::name::from_text;
use appnet_dns::wire::zonefile::{Includes, parse_text};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[path = "shared/scanner_panics.rs"]
mod scanner_panics;
use scanner_panics::tolerate_scanner_panics;

fn key() -> &'static ZoneKey {
    static KEY: OnceLock<ZoneKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let apex = from_text("example.com").unwrap();
        let g = generate_key(&apex, Algorithm::Ed25519, true, 0).unwrap();
        load_key(&g.public, Some(&g.private)).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    tolerate_scanner_panics();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let apex = from_text("example.com").unwrap();
    let Ok(records) = parse_text(text, "fuzz", &apex, &Includes::Forbidden) else { return };
    let opts = SignOptions { nsec3: data.len() % 2 == 0, inception: 0, expiration: u32::MAX };
    let _ = sign_zone(&apex, &records, std::slice::from_ref(key()), opts);
});
