//! DHT input: KRPC datagrams (BEP 5) through the codec and through a live sans-IO node, which
//! must never panic and must re-encode what it decodes to the same message.
#![no_main]

use appnet_torrent::dht::Node;
use appnet_torrent::dht::krpc::Message;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        assert_eq!(Message::decode(&m.encode()).as_ref(), Ok(&m));
    }
    let now = Instant::now();
    let mut node = Node::new([7; 20], [1; 16], now);
    let from: SocketAddr = "127.0.0.1:6881".parse().expect("address");
    node.get_peers([9; 20], now);
    for chunk in data.split(|&b| b == 0xff).take(16) {
        node.handle(from, chunk, now);
    }
    node.tick(now + Duration::from_secs(4));
    while node.poll_transmit().is_some() {}
});
