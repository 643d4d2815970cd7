//! The web server's own HPACK decoder (RFC 7541) over arbitrary header blocks: must never
//! panic, and the fields it yields must come from the block or the tables (bounded by what
//! one byte can reference).
#![no_main]

use appnet_web::h2core::hpack::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into two blocks, so the second is decoded against the
    // dynamic table the first one left.
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let mut d = Decoder::default();
    for block in [a, b] {
        let mut total = 0usize;
        let result = d.decode(block, |n, v| total += n.len() + v.len());
        if result.is_err() {
            break;
        }
        // A field is at most a table entry (< 4096) or a literal in the block; Huffman
        // expands a string at most 8/5 times.
        assert!(total <= (block.len() + 1) * 4096);
    }
});
