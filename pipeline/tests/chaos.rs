//! The short chaos run of every CI build: SIGKILLs, a real ClickHouse server stopped (SIGTERM,
//! then SIGKILL) and started again, and a full write-ahead log under load, then exactly-once
//! checks (mentions, trends, alerts) — and the negative control, which must fail those checks
//! once idempotence is switched off. The full run (≥ 1 M mentions, ≥ 20 kills)
//! is documented in README.md.

mod common;

use std::process::Command;

fn chaos(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigie-chaos"))
        .args([
            "--vigie",
            env!("CARGO_BIN_EXE_vigie"),
            "--clickhouse-url",
            &common::clickhouse_url(),
        ])
        .args(args)
        .output()
        .expect("running vigie-chaos");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        stdout + &String::from_utf8_lossy(&out.stderr),
    )
}

/// The short run: 30k mentions, 5 kills, 2 outages; `extra` adds options.
fn short_run(extra: &[&str]) {
    let mut args = vec![
        "--mentions",
        "30000",
        "--kills",
        "5",
        "--outages",
        "2",
        "--connections",
        "2",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = chaos(&args);
    assert!(ok, "{out}");
    assert!(out.contains("PASS"), "{out}");
    assert!(
        out.contains("| 5 | 2 |"),
        "five kills and two outages happened: {out}"
    );
}

/// The negative control: 10k mentions, 2 kills, 1 outage, idempotence off; the harness
/// must see its checks fail.
fn negative_control(extra: &[&str]) {
    let mut args = vec![
        "--mentions",
        "10000",
        "--kills",
        "2",
        "--outages",
        "1",
        "--connections",
        "2",
        "--negative-control",
    ];
    args.extend_from_slice(extra);
    let (ok, out) = chaos(&args);
    assert!(ok, "{out}");
    assert!(out.contains("NEGATIVE CONTROL OK"), "{out}");
}

#[test]
fn short_chaos_run_loses_and_duplicates_nothing() {
    short_run(&[]);
}

#[test]
fn negative_control_the_checks_fail_without_idempotence() {
    negative_control(&[]);
}

/// The Fluvio cluster of the test run (`scripts/test.sh` starts one and sets
/// `VIGIE_TEST_FLUVIO`); a build with the `fluvio` feature must be tested against it.
#[cfg(feature = "fluvio")]
fn fluvio_sc() -> String {
    std::env::var("VIGIE_TEST_FLUVIO").expect(
        "VIGIE_TEST_FLUVIO must name a Fluvio SC (e.g. 127.0.0.1:9003) to test the `fluvio` feature; scripts/test.sh starts one",
    )
}

/// The same chaos with the log in Fluvio: every restart gets an empty data dir, so the
/// mentions, the trends and the alert state all come back from Fluvio; the log is
/// compacted into new generations while vigie is being killed.
#[cfg(feature = "fluvio")]
#[test]
fn short_chaos_run_with_the_log_in_fluvio_loses_and_duplicates_nothing() {
    short_run(&["--fluvio", &fluvio_sc()]);
}

#[cfg(feature = "fluvio")]
#[test]
fn negative_control_with_the_log_in_fluvio() {
    negative_control(&["--fluvio", &fluvio_sc()]);
}
