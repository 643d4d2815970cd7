//! The CDN's DNS answering over arbitrary request bytes from arbitrary resolver addresses:
//! must never panic, and every reply must parse as a DNS response.
#![no_main]

use appnet_dns::wire::message;
use appnet_web::cdn::config::{CdnConfig, Network, Replica};
use appnet_web::cdn::policy::{Health, Table};
use appnet_web::cdn::respond::{CdnZone, answer};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use std::sync::OnceLock;

fn setup() -> &'static (CdnZone, Table) {
    static S: OnceLock<(CdnZone, Table)> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = CdnConfig {
            replicas: vec![
                Replica { name: "a".into(), addr: "127.0.20.1".parse().unwrap(), check: None },
                Replica { name: "b".into(), addr: "::1".parse().unwrap(), check: None },
            ],
            networks: vec![Network { prefix: "127.0.4.0/24".into(), replicas: vec!["b".into(), "a".into()] }],
            nameservers: vec![("ns1.akamai.net".into(), "127.0.3.1".parse().unwrap())],
            ..CdnConfig::default()
        };
        (CdnZone::new(&cfg).unwrap(), Table::new(&cfg).unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (zone, table) = setup();
    let peer = match data.first() {
        Some(b) => IpAddr::from([127, 0, 4, *b]),
        None => IpAddr::from([192, 0, 2, 1]),
    };
    let health = [Health::default(), Health::default()];
    for tcp in [false, true] {
        if let Some((reply, _)) = answer(zone, table, &health, data, peer, tcp) {
            assert!(message::parse(&reply).is_ok());
            if !tcp {
                assert!(reply.len() <= 1232, "UDP replies stay within our EDNS size");
            }
        }
    }
});
