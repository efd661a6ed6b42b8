//! CPU priority of vigie's background threads.
//!
//! The dataflow worker closes epochs and raises alerts; the Tokio runtime acknowledges
//! posts and writes ClickHouse. Both are on the latency path. The threads that only keep
//! up in the background — the mention store's flushes and compactions (fjall's workers),
//! the log's compaction, the checkpoint writer, the undo keeper — run at a lower priority
//! (a higher nice value, `--background-nice`, 10 by default), so the scheduler lets them
//! preempt the worker less: recorded on two cores, fjall's flushes were the largest
//! preemptor of the worker in the half-load benchmark, whose alert tail queued behind it
//! (benches/README.md, section "2026-12-07 (afternoon)"). They still get every idle cycle; at
//! full load they get a smaller share, which RocksDB's `LowerThreadPoolCPUPriority`
//! also trades.
//!
//! On Linux the nice value belongs to a thread, and threads inherit their creator's:
//! [`lower_this_thread`] is called first thing by vigie's own background threads, and
//! [`in_background`] runs the store's open on a thread of that priority so that the pool
//! fjall starts there inherits it. Raising one's own nice value needs no privilege.
//! Elsewhere (not Linux) both do nothing but run their work.

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::OnceLock;

/// Default of `--background-nice`.
pub const DEFAULT_BACKGROUND_NICE: i32 = 10;

static BACKGROUND_NICE: AtomicI32 = AtomicI32::new(DEFAULT_BACKGROUND_NICE);

/// The nice value background priority is counted from: that of the first thread to ask
/// (in `vigie run`, the one that calls [`set_background_nice`] at start-up).
static BASE_NICE: OnceLock<i32> = OnceLock::new();

fn base_nice() -> i32 {
    *BASE_NICE.get_or_init(|| {
        #[cfg(target_os = "linux")]
        if let Ok(n) = this_thread_nice() {
            return n;
        }
        0
    })
}

/// Sets how much higher background threads' nice value is than the process's (0: the
/// same priority; clamped to 0..=19). Threads started before keep theirs.
pub fn set_background_nice(n: i32) {
    base_nice();
    BACKGROUND_NICE.store(n.clamp(0, 19), Relaxed);
}

/// The current `--background-nice`.
pub fn background_nice() -> i32 {
    BACKGROUND_NICE.load(Relaxed)
}

/// Lowers the calling thread's CPU priority to the process's nice value plus
/// [`background_nice`] (at most 19), unless it is already that low: a background thread
/// started by another one is not lowered twice. Failure is logged, not fatal: the thread
/// only runs as before.
pub fn lower_this_thread() {
    let n = background_nice();
    if n == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = renice_this_thread((base_nice() + n).min(19)) {
        tracing::warn!(error = %e, "could not lower a background thread's priority");
    }
}

/// Runs `f` on a new thread of background priority and returns its result: threads that
/// `f` starts inherit that priority (fjall's worker pool, started by its `open`). When no
/// thread can be started, `f` runs on the calling thread at its priority (logged).
pub fn in_background<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> T {
    on_thread(std::thread::Builder::new().name(name.into()), f)
}

/// [`in_background`] on a thread that `builder` makes.
fn on_thread<T: Send>(builder: std::thread::Builder, f: impl FnOnce() -> T + Send) -> T {
    // Taken by whichever thread runs it: the new one, or this one if none could start.
    let work = std::sync::Mutex::new(Some(f));
    let take = || {
        work.lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("run once")
    };
    std::thread::scope(|s| {
        let spawned = builder.spawn_scoped(s, || {
            lower_this_thread();
            take()()
        });
        match spawned {
            Ok(handle) => match handle.join() {
                Ok(v) => v,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not start a background thread; running its work on this one, at this one's priority");
                take()()
            }
        }
    })
}

/// The calling thread's nice value (Linux: per thread).
#[cfg(target_os = "linux")]
pub fn this_thread_nice() -> std::io::Result<i32> {
    // SAFETY: plain syscalls on the calling thread's id; `getpriority` can return -1
    // legitimately, so errno is cleared first and checked after.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        if nice == -1 && *libc::__errno_location() != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(nice)
    }
}

#[cfg(target_os = "linux")]
fn renice_this_thread(target: i32) -> std::io::Result<()> {
    if this_thread_nice()? >= target {
        return Ok(());
    }
    // SAFETY: `setpriority` on the calling thread's id; raising one's nice value is
    // always permitted.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, target) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn background_threads_and_what_they_start_run_niced_and_their_creator_does_not() {
        let before = this_thread_nice().unwrap();
        set_background_nice(DEFAULT_BACKGROUND_NICE);
        let (own, child, nested) = in_background("niced", || {
            let own = this_thread_nice().unwrap();
            let child = std::thread::spawn(|| this_thread_nice().unwrap())
                .join()
                .unwrap();
            // A background thread started by a background thread: not lowered twice.
            let nested = in_background("nested", || this_thread_nice().unwrap());
            (own, child, nested)
        });
        let expected = (before + DEFAULT_BACKGROUND_NICE).min(19);
        assert_eq!(own, expected, "the background thread");
        assert_eq!(child, expected, "a thread it started");
        assert_eq!(nested, expected, "a background thread it started");
        assert_eq!(
            this_thread_nice().unwrap(),
            before,
            "the caller keeps its priority"
        );
    }

    #[test]
    fn work_whose_thread_cannot_start_runs_on_the_caller() {
        let before = this_thread_nice().unwrap();
        set_background_nice(DEFAULT_BACKGROUND_NICE);
        // No stack of 2^62 bytes can be mapped: the spawn fails.
        let builder = std::thread::Builder::new().stack_size(1 << 62);
        let caller = std::thread::current().id();
        let (ran_on, nice) = on_thread(builder, || {
            (std::thread::current().id(), this_thread_nice().unwrap())
        });
        assert_eq!(ran_on, caller, "the work ran on the calling thread");
        assert_eq!(nice, before, "at the caller's priority");
    }
}
