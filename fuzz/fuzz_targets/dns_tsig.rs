//! Any bytes as a signed message: finding the TSIG record, a server checking a request, and a
//! client checking a reply and a multi-message transfer. Never a panic.
#![no_main]

use appnet_dns::wire::tsig::{Key, Keyring, Verifier, find, strip, verify_request};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let key = Key::parse_spec("k:hmac-sha256:c2VjcmV0").unwrap();
    let _ = find(data);
    let _ = strip(data);
    let _ = verify_request(&Keyring::new([key.clone()]), data, 1_800_000_000);
    let mut v = Verifier::new(Arc::new(key), vec![0; 32]);
    // The same bytes as the first message, then as later ones (unsigned ones are digested).
    for _ in 0..3 {
        let _ = v.check(data, 1_800_000_000);
    }
    let _ = v.finish();
});
