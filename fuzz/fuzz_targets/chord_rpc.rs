//! The Chord RPC decoder (requests and responses) on arbitrary bytes: must never panic; what
//! decodes must re-encode to bytes that decode to the same message; decoded requests are then
//! handed to a node core of the same ring, which must answer without panicking; decoded
//! responses are fed to a joining node core as the answer to every RPC it sends (through
//! stabilize, fix-fingers, lookups and gets), which must go on without panicking. The same
//! bytes are also checked as authenticated frames (ring secret trailer), and decoded requests
//! are handed in once more as from an unauthenticated peer (the claim checks).
#![no_main]

use appnet_chord::Id;
use appnet_chord::node::{Node, Origin, Output, Params, RpcFailure};
use appnet_chord::wire::{self, NodeRef, Response, RingKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(prefix) = <[u8; 4]>::try_from(data.get(..4).unwrap_or(&[])) {
        let _ = wire::frame_len(prefix);
    }
    let key = RingKey::new(b"fuzzing ring secret");
    let _ = key.open_request(data);
    let _ = key.open_response(data, 0);
    if let Ok((bits, req)) = wire::decode_request(data) {
        let frame = wire::encode_request(bits, &req);
        assert_eq!(wire::decode_request(&frame[4..]).expect("re-decode"), (bits, req.clone()));
        let bits = if bits == 0 { 8 } else { bits };
        let me = NodeRef { id: Id::from_u64(1).masked(bits), addr: "127.0.0.1:1".parse().unwrap() };
        let mut node = Node::new(Params { bits, max_items: 64, ..Params::default() }, me, 0);
        let resp = node.handle_request(0, req.clone());
        let _ = wire::encode_response(bits, &resp);
        let peer = Origin::Peer("127.0.0.9".parse().unwrap());
        let _ = node.handle_request_from(1, peer, req);
        for _ in 0..64 {
            let Some(Output::Send { token, .. }) = node.poll_output() else { break };
            node.handle_reply(2, token, Err(RpcFailure::Unreachable));
        }
    }
    if let Ok((bits, resp)) = wire::decode_response(data) {
        let frame = wire::encode_response(bits, &resp);
        assert_eq!(wire::decode_response(&frame[4..]).expect("re-decode"), (bits, resp.clone()));
        answer_everything(bits, &resp);
    }
});

/// A node joining a ring through a peer that answers every RPC with `resp` (every fourth
/// round, the peers are unreachable instead), for a bounded number of timer rounds.
fn answer_everything(bits: u8, resp: &Response) {
    let bits = if bits == 0 { 8 } else { bits };
    let me = NodeRef { id: Id::from_u64(1).masked(bits), addr: "127.0.0.1:1".parse().unwrap() };
    let mut node = Node::new(Params { bits, max_items: 64, gc_ms: 5_000, ..Params::default() }, me, 0);
    node.join(0, "127.0.0.1:2".parse().unwrap());
    let mut now = 0;
    for round in 0..24u64 {
        for _ in 0..256 {
            let Some(Output::Send { token, .. }) = node.poll_output() else { break };
            let reply = if round % 4 == 3 { Err(RpcFailure::Unreachable) } else { Ok(resp.clone()) };
            node.handle_reply(now, token, reply);
        }
        while node.poll_event().is_some() {}
        let _token = match round % 3 {
            0 => node.lookup(now, Id::from_u64(round * 77).masked(bits)),
            1 => node.get(now, round.to_be_bytes().to_vec()),
            _ => node.lookup_recursive(now, Id::from_u64(round).masked(bits)),
        };
        let _ = node.stats(now);
        now = node.poll_timeout().unwrap_or(u64::MAX).clamp(now + 1, now + 60_000);
        node.handle_timeout(now);
    }
}
