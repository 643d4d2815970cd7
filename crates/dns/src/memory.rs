//! Giving memory back to the system after a zone load. Parsing a zone allocates millions of
//! small temporary objects; once the compact zone is built they are freed, but glibc keeps the
//! freed heap pages resident. `malloc_trim` returns them, so a server's resident size reflects
//! the zones it holds rather than the parser's peak.

/// Returns freed heap memory to the operating system (glibc only; elsewhere nothing to do).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers from us
    // and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
