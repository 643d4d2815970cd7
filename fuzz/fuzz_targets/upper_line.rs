//! The uppercase server's input path: bounded line splitting of arbitrary bytes, then the
//! upper-casing rule. Must never panic and never hold more than the limit.
#![no_main]

use appnet_netkit::lines::{Line, read_line_bounded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut reader = tokio::io::BufReader::with_capacity(7, data);
        let mut line = Vec::new();
        for _ in 0..=data.len() {
            match read_line_bounded(&mut reader, &mut line, 64).await.expect("in-memory read") {
                Line::Complete => {
                    assert!(line.len() <= 64);
                    let _ = appnet_upper::transform::upper(&line);
                }
                Line::Eof | Line::TooLong => break,
            }
        }
    });
});
