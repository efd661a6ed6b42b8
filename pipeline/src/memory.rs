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

/// What the allocator (mimalloc, vigie's global allocator) holds, from its statistics.
///
/// Read at every `/metrics` scrape, beside the process's resident memory. Only the
/// figures mimalloc keeps in a release build are given: what it has mapped and reserved,
/// and its pages. (Its counts of live bytes need a statistics build, and in such a build
/// they came out above the resident memory in vigie's runs: not exported.)
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes mapped read/write.
    pub committed: u64,
    /// Bytes of address space reserved.
    pub reserved: u64,
    /// Pages (runs of blocks of one size class) in use.
    pub pages: u64,
    /// Pages no thread owns: full ones (mimalloc 3 abandons a page when it fills, so any
    /// thread can reuse its freed blocks) and those of ended threads.
    pub pages_abandoned: u64,
    /// Bytes handed back to the kernel so far.
    pub purged_total: u64,
}

#[derive(serde::Deserialize)]
struct Count {
    current: i64,
}

#[derive(serde::Deserialize)]
struct Json {
    committed: Count,
    reserved: Count,
    pages: Count,
    pages_abandoned: Count,
    /// Counters are plain numbers (their total).
    purged: i64,
}

impl AllocatorStats {
    /// The allocator's current statistics (`None` if mimalloc gives none).
    pub fn read() -> Option<Self> {
        // mimalloc writes its JSON into our buffer (it allocates nothing then) and zeroes
        // the rest; a buffer too small gives `NULL`.
        let mut buf = vec![0u8; 64 << 10];
        // SAFETY: the buffer is valid for `buf.len()` bytes for the call; mimalloc writes a
        // NUL-terminated string inside it or returns NULL.
        let out = unsafe { libmimalloc_sys::mi_stats_get_json(buf.len(), buf.as_mut_ptr().cast()) };
        if out.is_null() {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0)?;
        let j: Json = serde_json::from_slice(&buf[..end]).ok()?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Some(Self {
            committed: n(j.committed.current),
            reserved: n(j.reserved.current),
            pages: n(j.pages.current),
            pages_abandoned: n(j.pages_abandoned.current),
            purged_total: n(j.purged),
        })
    }

    /// Prometheus text of these statistics (`vigie_allocator_*`).
    pub fn render(&self, out: &mut String) {
        for (name, kind, help, v) in [
            (
                "vigie_allocator_committed_bytes",
                "gauge",
                "Bytes the allocator (mimalloc) has mapped read/write.",
                self.committed,
            ),
            (
                "vigie_allocator_reserved_bytes",
                "gauge",
                "Bytes of address space the allocator has reserved.",
                self.reserved,
            ),
            (
                "vigie_allocator_pages",
                "gauge",
                "Allocator pages (runs of blocks of one size) in use.",
                self.pages,
            ),
            (
                "vigie_allocator_pages_abandoned",
                "gauge",
                "Allocator pages no thread owns (full ones, and those of ended threads).",
                self.pages_abandoned,
            ),
            (
                "vigie_allocator_purged_bytes_total",
                "counter",
                "Bytes the allocator has handed back to the kernel.",
                self.purged_total,
            ),
        ] {
            crate::metrics::sample(out, kind, name, help, v);
        }
    }
}

/// The process's resident memory in bytes (`/proc/self/statm`; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_stats_follow_a_large_allocation() {
        // Tests run on the system allocator, so mimalloc is asked directly.
        let before = AllocatorStats::read().expect("mimalloc gives statistics");
        let size = 32 << 20;
        // SAFETY: a plain allocation, written within its size, freed below.
        let p = unsafe { libmimalloc_sys::mi_malloc(size) }.cast::<u8>();
        assert!(!p.is_null());
        unsafe { std::ptr::write_bytes(p, 1, size) };
        let during = AllocatorStats::read().unwrap();
        assert!(
            during.committed >= before.committed + size as u64,
            "{before:?} → {during:?}"
        );
        assert!(during.reserved >= during.committed, "{during:?}");
        let mut text = String::new();
        during.render(&mut text);
        let line = text
            .lines()
            .find(|l| l.starts_with("vigie_allocator_committed_bytes "))
            .unwrap();
        assert_eq!(
            line,
            format!("vigie_allocator_committed_bytes {}", during.committed)
        );
        unsafe { libmimalloc_sys::mi_free(p.cast()) };
    }

    #[test]
    fn resident_bytes_are_read() {
        let rss = resident_bytes().expect("/proc/self/statm");
        assert!(rss > 1 << 20, "{rss}");
    }
}
