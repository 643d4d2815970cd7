//! Any bytes as a DNS request (UDP and TCP paths, including transfers and NOTIFY), and as a
//! response for the client-side parser: never a panic, replies within their size limits. The
//! zone has a journal, so IXFR requests reach the incremental answer too.
#![no_main]

use appnet_dns::acl::TransferAcl;
use appnet_dns::catalog::Catalog;
use appnet_dns::respond::{Outcome, Policy, Transport, handle_at};
use appnet_dns::wire::message::parse;
use appnet_dns::wire::tsig::{Key, Keyring};
use appnet_dns::zone::Zone;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const ZONE: &str = "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\n@ MX 10 mail\nns1 A 192.0.2.1\nmail A 192.0.2.2\n\
    www CNAME alias\nalias A 192.0.2.3\n*.wild TXT \"w\"\nsub NS ns.sub\nns.sub A 192.0.2.4\n\
    big TXT \"0123456789012345678901234567890123456789012345678901234567890123456789\"\n\
    big TXT \"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij\"\n\
    _s._tcp SRV 0 0 1 mail\nloop CNAME loop\ndn DNAME other.test.\ndn2 DNAME www\nself DNAME self\n\
    long DNAME aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.\n";

fn catalog() -> &'static (Catalog, Policy) {
    static C: OnceLock<(Catalog, Policy)> = OnceLock::new();
    C.get_or_init(|| {
        // The zone carries a journal from serial 0, so IXFR from 0 is answered incrementally.
        let older = ZONE.replace("h 1 2 3 4 5", "h 0 2 3 4 5").replace("192.0.2.2", "192.0.2.20");
        let older = Zone::from_text("example.com", &older).expect("older fuzz zone");
        let zone = Zone::from_text("example.com", ZONE).expect("fuzz zone");
        let zone = appnet_dns::journal::successor(Some(&older), zone, 64 * 1024);
        assert_eq!(zone.journal().len(), 1);
        // A key the fuzzer can name (signed requests take the TSIG path up to the MAC check).
        let keys = Keyring::new([Key::parse_spec("k:hmac-sha256:c2VjcmV0").unwrap()]);
        let allow = TransferAcl::parse(&["0.0.0.0/0", "key k"], &keys).unwrap();
        // Updates have their own target (dns_update); here they are refused like any unsigned one.
        let policy = Policy { max_udp_payload: 1232, allow_transfer: allow, keys, allow_update: Vec::new() };
        (Catalog::new([Arc::new(zone)]), policy)
    })
}

fuzz_target!(|data: &[u8]| {
    let (cat, policy) = catalog();
    let peer = "192.0.2.9".parse().unwrap();
    for transport in [Transport::Udp, Transport::Tcp] {
        match handle_at(cat, policy, data, transport, peer, || 1_800_000_000, Vec::new()) {
            Outcome::Reply { bytes, .. } => {
                let limit = if transport == Transport::Udp { 1232 } else { 65535 };
                assert!(bytes.len() <= limit, "reply of {} bytes over the limit", bytes.len());
                parse(&bytes).expect("our own replies parse");
            }
            Outcome::Transfer(t) => {
                for m in t.messages(16384) {
                    assert!(m.len() <= 16384);
                }
            }
            Outcome::Update { ok, fail, .. } => {
                parse(&ok).expect("our own update replies parse");
                parse(&fail).expect("our own update replies parse");
            }
            Outcome::Notify { .. } | Outcome::Ignore => {}
        }
    }
    let _ = parse(data);
});
