//! Peer wire input: framed messages with the length limit, their validation against a torrent,
//! handshakes and bitfields. Must never panic.
#![no_main]

use appnet_torrent::bitfield::Bitfield;
use appnet_torrent::wire::{HANDSHAKE_LEN, Handshake, Message};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(hs) = data.get(..HANDSHAKE_LEN) {
        let _ = Handshake::decode(hs.try_into().expect("68 bytes"));
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(m)) = Message::decode(&mut buf, 64 * 1024) {
        let _ = m.validate(37, |i| if i == 36 { 1000 } else { 32768 });
        if let Message::Bitfield(b) = &m {
            let _ = Bitfield::from_bytes(b, 37);
        }
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(Message::decode(&mut out, u32::MAX).ok().flatten(), Some(m));
    }
});
