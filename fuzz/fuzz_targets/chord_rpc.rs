//! The Chord RPC decoder (requests and responses) on arbitrary bytes: must never panic; what
//! decodes must re-encode to bytes that decode to the same message; decoded requests are then
//! handed to a node core of the same ring, which must answer without panicking.
#![no_main]

use appnet_chord::node::{Node, Params};
use appnet_chord::wire::{self, NodeRef};
use appnet_chord::Id;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(prefix) = <[u8; 4]>::try_from(data.get(..4).unwrap_or(&[])) {
        let _ = wire::frame_len(prefix);
    }
    if let Ok((bits, req)) = wire::decode_request(data) {
        let frame = wire::encode_request(bits, &req);
        assert_eq!(wire::decode_request(&frame[4..]).expect("re-decode"), (bits, req.clone()));
        let bits = if bits == 0 { 8 } else { bits };
        let me = NodeRef { id: Id::from_u64(1).masked(bits), addr: "127.0.0.1:1".parse().unwrap() };
        let mut node = Node::new(Params { bits, max_items: 64, ..Params::default() }, me, 0);
        let resp = node.handle_request(0, req);
        let _ = wire::encode_response(bits, &resp);
        while node.poll_output().is_some() {}
    }
    if let Ok((bits, resp)) = wire::decode_response(data) {
        let frame = wire::encode_response(bits, &resp);
        assert_eq!(wire::decode_response(&frame[4..]).expect("re-decode"), (bits, resp));
    }
});
