//! Any bytes as a UDP request through the answer cache: the cache key never panics, and for a
//! request it accepts, the cached answer patched for a request with another ID, RD and CD is
//! byte for byte what the full path answers that request.
#![no_main]

use appnet_dns::answer_cache::{AnswerCache, CacheKey};
use appnet_dns::respond::{Outcome, Policy, Transport, handle_at};
use appnet_dns::served::ServedZones;
use appnet_dns::zone::Zone;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const ZONE: &str = "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\n@ MX 10 mail\nns1 A 192.0.2.1\nmail A 192.0.2.2\n\
    www CNAME alias\nalias A 192.0.2.3\n*.wild TXT \"w\"\nsub NS ns.sub\nns.sub A 192.0.2.4\n\
    big TXT \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n\
    dn DNAME other.test.\n";

fn setup() -> &'static (ServedZones, Policy) {
    static C: OnceLock<(ServedZones, Policy)> = OnceLock::new();
    C.get_or_init(|| {
        let zone = Zone::from_text("example.com", ZONE).expect("fuzz zone");
        (ServedZones::new([Arc::new(zone)]), Policy::default())
    })
}

fn full(cat: &ServedZones, policy: &Policy, packet: &[u8]) -> Option<Vec<u8>> {
    let peer = "192.0.2.9".parse().unwrap();
    match handle_at(cat, policy, packet, Transport::Udp, peer, || 1_800_000_000, Vec::new()) {
        Outcome::Reply { bytes, .. } => Some(bytes),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let (cat, policy) = setup();
    let Some(key) = CacheKey::of(data, policy.max_udp_payload) else { return };
    let Some(first) = full(cat, policy, data) else { return };
    let mut cache = AnswerCache::new();
    cache.insert(&key, &first, appnet_dns::answer::Kind::Answer, 0);
    let mut other = data.to_vec();
    other[0] ^= 0x5a;
    other[2] ^= 0x01;
    other[3] ^= 0x10;
    let other_key = CacheKey::of(&other, policy.max_udp_payload).expect("same shape, same verdict");
    let mut out = Vec::new();
    assert!(cache.answer(&other_key, &other, &mut out).is_some());
    assert_eq!(Some(out), full(cat, policy, &other));
});
