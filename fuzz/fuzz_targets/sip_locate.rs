//! The RFC 3263 readers of NAPTR and SRV record data, and the SRV ordering, over arbitrary
//! bytes: never panic, and the ordering keeps only records that were read.
#![no_main]

use appnet_sip::locate::{Transport, order_srv, parse_naptr, parse_srv, select_naptr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let naptrs: Vec<_> = data.chunks(24).filter_map(parse_naptr).collect();
    let _ = select_naptr(&naptrs, &[Transport::Udp, Transport::Tcp, Transport::Tls], data.first() == Some(&0));
    let srvs: Vec<_> = data.chunks(16).filter_map(parse_srv).collect();
    let mut i = 0usize;
    let ordered = order_srv(&srvs, |total| {
        i += 1;
        u32::from(data.get(i % data.len().max(1)).copied().unwrap_or(0)).min(total)
    });
    assert!(ordered.len() <= srvs.len());
});
