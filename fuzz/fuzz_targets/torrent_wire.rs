//! Peer wire input: framed messages with the length limit, their validation against a torrent,
//! handshakes and bitfields, and BEP 10 extension payloads (extension handshake, ut_metadata,
//! ut_pex) whether framed or raw. Must never panic.
#![no_main]

use appnet_torrent::bitfield::Bitfield;
use appnet_torrent::wire::ext::{ExtHandshake, MetadataMsg, Pex};
use appnet_torrent::wire::{HANDSHAKE_LEN, Handshake, Message};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(hs) = data.get(..HANDSHAKE_LEN) {
        let _ = Handshake::decode(hs.try_into().expect("68 bytes"));
    }
    extension_payload(&Bytes::copy_from_slice(data));
    let mut buf = BytesMut::from(data);
    while let Ok(Some(m)) = Message::decode(&mut buf, 64 * 1024) {
        let _ = m.validate(37, |i| if i == 36 { 1000 } else { 32768 });
        if let Message::Bitfield(b) = &m {
            let _ = Bitfield::from_bytes(b, 37);
        }
        if let Message::Extended { payload, .. } = &m {
            extension_payload(payload);
        }
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(Message::decode(&mut out, u32::MAX).ok().flatten(), Some(m));
    }
});

fn extension_payload(p: &Bytes) {
    if let Ok(h) = ExtHandshake::decode(p) {
        assert_eq!(ExtHandshake::decode(&h.encode()), Ok(h));
    }
    if let Ok(m) = MetadataMsg::decode(p) {
        assert_eq!(MetadataMsg::decode(&Bytes::from(m.encode())), Ok(m));
    }
    if let Ok(x) = Pex::decode(p) {
        assert_eq!(Pex::decode(&x.encode()), Ok(x));
    }
}
