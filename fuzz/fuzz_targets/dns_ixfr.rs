//! A secondary's zone-transfer input: any bytes as the TCP stream of an IXFR (or AXFR) answer
//! (2-byte length-framed messages), read record by record as `client::transfer` does, then
//! applied to our zone as the secondary does (incremental steps, or a full zone as the
//! successor of ours), and the result persisted as text and read back. Must never panic.
#![no_main]

use appnet_dns::client::{Transferred, XfrReader};
use appnet_dns::journal::{self, Journal};
use appnet_dns::wire::message;
use appnet_dns::wire::name::{ROOT, to_lower};
use appnet_dns::wire::zonefile::{Includes, Location, ZoneRecord, parse_text};
use appnet_dns::zone::Zone;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ZONE: &str = "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.2\n\
    www A 192.0.2.3\nmail MX 10 www\nsub NS ns.sub\nns.sub A 192.0.2.4\n";
const MAX_JOURNAL: usize = 64 * 1024;

#[path = "shared/scanner_panics.rs"]
mod scanner_panics;
use scanner_panics::tolerate_scanner_panics;

fn ours() -> &'static Zone {
    static Z: OnceLock<Zone> = OnceLock::new();
    Z.get_or_init(|| Zone::from_text("example.com", ZONE).expect("fuzz zone"))
}

/// What the secondary does with a finished transfer; the new zone, if any.
fn apply(cur: &Zone, result: Transferred) -> Option<Zone> {
    match result {
        Transferred::UpToDate => None,
        Transferred::Incremental(steps) => journal::apply(cur, &steps, MAX_JOURNAL).ok(),
        Transferred::Full(records) => {
            let at = Location { file: "AXFR".into(), line: 0 };
            let records = records
                .into_iter()
                .map(|r| ZoneRecord {
                    owner: to_lower(&r.owner),
                    rtype: r.rtype,
                    ttl: r.ttl,
                    rdata: r.rdata,
                    at: at.clone(),
                })
                .collect();
            let z = Zone::from_records(cur.apex(), records).ok()?;
            Some(journal::successor(Some(cur), z, MAX_JOURNAL))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    tolerate_scanner_panics();
    let cur = ours();
    let mut reader = XfrReader::new(Some(cur.soa().serial));
    let mut rest = data;
    let mut done = None;
    'stream: while let [a, b, tail @ ..] = rest {
        let len = u16::from_be_bytes([*a, *b]) as usize;
        let (msg, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let Ok(parsed) = message::parse(msg) else { return };
        for rec in parsed.answer {
            match reader.push(rec) {
                Err(_) => return,
                Ok(Some(r)) => {
                    done = Some(r);
                    break 'stream;
                }
                Ok(None) => {}
            }
        }
        if let Some(r) = reader.end_of_message() {
            done = Some(r);
            break;
        }
    }
    let Some(new) = done.and_then(|r| apply(cur, r)) else { return };
    // It answers IXFR to our own secondaries from the old serial.
    let _ = new.journal().since(cur.soa().serial);
    // The secondary persists zone and journal as text and reads them back at start.
    let printed = new.to_text();
    let back = parse_text(&printed, "printed", ROOT, &Includes::Forbidden).expect("printed zone reads back");
    assert_eq!(back.len(), new.record_count(), "{printed}");
    let _ = Journal::from_text(&new.journal().to_text(), new.apex(), new.soa().serial, MAX_JOURNAL);
});
