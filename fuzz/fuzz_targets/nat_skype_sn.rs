//! Supernode protocol datagrams from the network: decoding arbitrary bytes must never panic,
//! whatever decodes re-encodes to the same message, and the directory core answers or drops
//! any of it without panicking.
#![no_main]

use appnet_nat::skype::directory::{Directory, DirectoryConfig};
use appnet_nat::skype::wire;
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;
use std::time::Instant;

static DIRECTORY: Mutex<Option<Directory>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    if let Ok((tid, msg)) = wire::decode(data) {
        assert_eq!(wire::decode(&wire::encode(tid, &msg)), Ok((tid, msg)));
    }
    let mut guard = DIRECTORY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = guard.get_or_insert_with(|| Directory::new(DirectoryConfig::default(), Instant::now()));
    let _ = dir.handle("192.0.2.1:5000".parse().unwrap(), data, Instant::now());
});
