//! vigie turns transparent huge pages off for itself (`vigie_pipeline::memory`) unless
//! `MIMALLOC_ALLOW_THP` is set: read from `/proc/PID/status` of a real process.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `THP_enabled` of a `vigie score` waiting on its stdin, started with `allow` as
/// `MIMALLOC_ALLOW_THP` (`None`: unset).
fn thp_enabled(allow: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigie"));
    cmd.arg("score")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("MIMALLOC_ALLOW_THP");
    if let Some(a) = allow {
        cmd.env("MIMALLOC_ALLOW_THP", a);
    }
    let mut child = cmd.spawn().expect("starting vigie score");
    // Once it blocks reading its stdin (`/proc/PID/syscall`: read, fd 0), `main` is past
    // the point where the flag is set.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap_or_default()
        .starts_with("0 0x0 ")
    {
        assert!(
            Instant::now() < deadline,
            "vigie score never waited on its stdin"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("this kernel shows THP_enabled in /proc/PID/status")
        .trim()
        .to_string();
    child.kill().unwrap();
    child.wait().unwrap();
    value
}

#[test]
fn vigie_runs_without_transparent_huge_pages() {
    assert_eq!(thp_enabled(None), "0");
}

#[test]
fn mimalloc_allow_thp_leaves_the_choice_to_the_allocator() {
    // mimalloc's own option: `1` keeps them, so the process's flag stays on.
    assert_eq!(thp_enabled(Some("1")), "1");
}
