//! Tracker input: HTTP announce query strings, BEP 15 UDP packets, and (client side) tracker
//! replies. Must never panic.
#![no_main]

use appnet_torrent::tracker::proto::{Announce, AnnounceReply};
use appnet_torrent::tracker::udp;
use appnet_torrent::urlenc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = udp::Request::decode(data);
    let _ = udp::Reply::decode(data, false);
    let _ = udp::Reply::decode(data, true);
    let _ = AnnounceReply::decode(data);
    if let Ok(q) = std::str::from_utf8(data)
        && let Some(pairs) = urlenc::parse_query(q)
        && let Ok(a) = Announce::from_query(&pairs)
    {
        let back = Announce::from_query(&urlenc::parse_query(&a.to_query()).expect("our query parses"));
        assert_eq!(back.ok().map(|b| b.info_hash), Some(a.info_hash));
    }
});
