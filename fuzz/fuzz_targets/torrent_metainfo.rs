//! .torrent files and magnet links from anywhere: the raw bencode scanner, the metainfo parser
//! (whose output must write back to bytes with the same info hash) and magnet parsing.
#![no_main]

use appnet_torrent::Metainfo;
use appnet_torrent::metainfo::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_torrent::bencode::value_end(data, 0);
    if let Ok(m) = Metainfo::from_bytes(data) {
        let again = Metainfo::from_bytes(&m.to_bytes()).expect("written torrent parses");
        assert_eq!(again.info_hash, m.info_hash);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Magnet::parse(s);
    }
});
