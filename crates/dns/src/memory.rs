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

/// Huge-page size on x86-64 and aarch64 Linux (transparent huge pages).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `buf`'s allocated capacity with
/// transparent huge pages (`MADV_HUGEPAGE`; honoured when THP is in `madvise` or `always`
/// mode). For large, randomly read tables such as the answer cache: one TLB entry then covers
/// 2 MiB instead of 4 KiB, so a lookup that misses the CPU cache does not also walk the page
/// tables. Pages are still only committed when touched. A no-op elsewhere or on failure.
pub fn prefer_huge_pages(buf: &Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        let start = buf.as_ptr() as usize;
        let end = start + buf.capacity();
        let first = start.next_multiple_of(HUGE_PAGE);
        let last = end - end % HUGE_PAGE;
        if last > first {
            // SAFETY: the range lies inside `buf`'s own allocation; MADV_HUGEPAGE only changes
            // how the kernel backs those pages, never their contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, last - first, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}
