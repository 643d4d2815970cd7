//! Supernode protocol datagrams from the network: decoding arbitrary bytes must never panic,
//! whatever decodes re-encodes to the same message, and the directory core answers or drops
//! any of it without panicking. SN-SN (overlay) datagrams too: arbitrary bytes are checked
//! against the overlay key (and the body decoded under a key the input itself is tagged with,
//! so the decoder is reached), whatever opens re-seals to the same message, and a supernode
//! core with the overlay on takes any of it. Promotion grants (after their AEAD) and probes
//! too, and sealed verifiers (a first registration's, a Store's) opened from arbitrary bytes.
#![no_main]

use appnet_nat::skype::directory::{Directory, DirectoryConfig};
use appnet_nat::skype::node::Node;
use appnet_nat::skype::overlay::{self, Overlay, OverlayConfig};
use appnet_nat::skype::promotion::Grant;
use appnet_nat::skype::sealing::{self, STORE_SEALED, SnKey};
use appnet_nat::skype::{candidacy, wire};
use libfuzzer_sys::fuzz_target;
use std::sync::Mutex;
use std::time::Instant;

static DIRECTORY: Mutex<Option<Directory>> = Mutex::new(None);
static NODE: Mutex<Option<Node>> = Mutex::new(None);
const SECRET: &[u8] = b"fuzz overlay secret, 16+ bytes";

fuzz_target!(|data: &[u8]| {
    if let Ok((tid, msg)) = wire::decode(data) {
        assert_eq!(wire::decode(&wire::encode(tid, &msg)), Ok((tid, msg)));
    }
    // A promotion grant as it comes out of its AEAD, and a candidate's SN port's probe answer.
    let _ = Grant::decode(data);
    let _ = candidacy::answer_probe(data, &[7; 32]);
    let key = overlay::key(SECRET);
    // A first registration's sealed verifier, and a Store's, from arbitrary bytes.
    if data.len() >= 96
        && let (Ok(ephemeral), Ok(ciphertext)) = (data[..32].try_into(), data[32..96].try_into())
        && let Some(sn) = SnKey::from_seed([9; 32])
    {
        let _ = sn.open("alice", &wire::SealedVerifier { ephemeral, ciphertext });
    }
    if let Some(Ok(sealed)) = data.get(..STORE_SEALED).map(<[u8; STORE_SEALED]>::try_from) {
        let _ = sealing::open_store(&key, "alice", &sealed);
    }
    // Tag the input with the key, so the body decoder sees arbitrary bytes past the HMAC.
    let tagged = overlay::tag_raw(&key, data);
    for raw in [data, &tagged[..]] {
        if let Ok((ts, nonce, msg)) = overlay::open(&key, raw) {
            assert_eq!(overlay::open(&key, &overlay::seal(&key, ts, nonce, &msg)), Ok((ts, nonce, msg)));
        }
    }
    let mut guard = DIRECTORY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = guard.get_or_insert_with(|| Directory::new(DirectoryConfig::default(), Instant::now()));
    let _ = dir.handle("192.0.2.1:5000".parse().unwrap(), data, Instant::now());
    let mut guard = NODE.lock().unwrap_or_else(|p| p.into_inner());
    let node = guard.get_or_insert_with(|| {
        let now = Instant::now();
        let me = "192.0.2.10:33033".parse().unwrap();
        let ov = Overlay::new(
            OverlayConfig::default(),
            me,
            Some(SECRET),
            vec!["192.0.2.11:33033".parse().unwrap()],
            now,
            0,
        );
        Node::new(Directory::new(DirectoryConfig::default(), now), ov)
    });
    let from = "192.0.2.11:33033".parse().unwrap();
    let _ = node.handle(from, data, Instant::now());
    let _ = node.handle(from, &tagged, Instant::now());
});
