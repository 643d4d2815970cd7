//! STUN messages and ChannelData frames from the network: decoding arbitrary bytes must never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = appnet_nat::stun::decode_datagram(data);
});
