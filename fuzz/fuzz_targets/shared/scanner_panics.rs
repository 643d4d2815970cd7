//! domain 0.12.3's zone scanner can panic on malformed text; appnet contains that with
//! `catch_unwind` and reports an error. libfuzzer-sys aborts on every panic in its hook, so the
//! DNS zone targets let panics located in that scanner unwind to our handler; any other panic
//! still aborts.

/// Installs the hook once per process.
pub fn tolerate_scanner_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_scanner = info.location().is_some_and(|l| l.file().contains("src/zonefile/inplace.rs"));
            if !in_scanner {
                fuzzer_hook(info);
            }
        }));
    });
}
