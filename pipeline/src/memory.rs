//! Process-wide memory settings, applied once at start.
//!
//! **Transparent huge pages off.** With the kernel's THP set to `always` (Debian's and
//! most distributions' default), every first touch of a 2 MiB-aligned range of anonymous
//! memory faults in a whole huge page, which the kernel zeroes. The allocator (mimalloc)
//! hands memory it has not used for a second back to the kernel, and the next growth of a
//! large buffer (an HTTP body, a log or sink batch, a checkpoint part) faults and zeroes
//! 2 MiB again: page faults were ~5 % of vigie's CPU samples under load, most of them
//! zeroing huge pages. With THP off for the process, the same 1 M e2e max phase took
//! 17.1–22.3 CPU µs per mention against 20.5–25.0 (five alternated pairs), and less memory
//! (benches/README.md, "2026-12-07 (evening)").
//!
//! The setting is the process's (`prctl(PR_SET_THP_DISABLE)`): it applies to every later
//! fault of every mapping, and is what mimalloc itself does for `MIMALLOC_ALLOW_THP=0`.
//! Setting `MIMALLOC_ALLOW_THP` (to anything) leaves the choice to mimalloc instead.

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` is set.
/// Returns whether they are off now. A failure (another OS, an old kernel) is not an
/// error: vigie runs as before.
pub fn no_transparent_huge_pages() -> bool {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return false;
    }
    disable_thp()
}

#[cfg(target_os = "linux")]
fn disable_thp() -> bool {
    // SAFETY: prctl with integer arguments only; it changes a flag of this process's
    // memory map and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn disable_thp() -> bool {
    false
}
