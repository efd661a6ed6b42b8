//! Background threads run niced (`--background-nice`, `vigie_pipeline::priority`): a real
//! `vigie run` with a data dir, its threads read from `/proc` while it works.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use uuid::Uuid;

/// Nice values of the process's threads, by thread name (`/proc/PID/task/*/stat`).
fn thread_nices(pid: u32) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        // `tid (comm) state ppid …`: the name may hold spaces; fields resume after `)`.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // After the name: state is field 3, nice field 19.
        let nice: i64 = stat[close + 2..]
            .split(' ')
            .nth(16)
            .unwrap()
            .parse()
            .unwrap();
        out.entry(name).or_default().push(nice);
    }
    out
}

/// Starts vigie with `extra`, posts mentions until its checkpoint writer and undo keeper
/// exist, and returns (the main thread's nice, every thread's).
async fn observe(db: &TestDb, extra: &[&str]) -> (i64, BTreeMap<String, Vec<i64>>) {
    let tenant = tenants(db, 1, 1).remove(0);
    let mut args = vec!["--checkpoint-secs", "1"];
    args.extend_from_slice(extra);
    let v = Vigie::start(db, &args);
    let pid = v.pid();
    let threads = eventually(Duration::from_secs(30), "background threads", || {
        let v = &v;
        let tenant = &tenant;
        async move {
            let records: Vec<_> = (0..20)
                .map(|_| {
                    mention(
                        Uuid::new_v4(),
                        tenant.sources[0],
                        "love it",
                        &rfc3339(now_secs()),
                    )
                })
                .collect();
            let (status, _) = post(
                v,
                Some(&tenant.key),
                "application/x-ndjson",
                ndjson(&records),
            )
            .await;
            assert_eq!(status, 202);
            let t = thread_nices(pid);
            [
                "fjall:worker",
                "checkpoint-writ",
                "vigie-undo-keep",
                "timely:work-0",
            ]
            .iter()
            .all(|n| t.contains_key(*n))
            .then_some(t)
        }
    })
    .await;
    let main = threads["vigie"][0];
    (main, threads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_threads_run_niced_and_the_latency_path_does_not() {
    let db = TestDb::new().await;
    let (main, t) = observe(&db, &[]).await;
    let niced = (main + 10).min(19);
    for name in ["fjall:worker", "checkpoint-writ", "vigie-undo-keep"] {
        assert!(
            t[name].iter().all(|n| *n == niced),
            "{name} should run at nice {niced}: {t:?}"
        );
    }
    for name in ["timely:work-0", "tokio-rt-worker"] {
        assert!(
            t[name].iter().all(|n| *n == main),
            "{name} should keep nice {main}: {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_nice_zero_leaves_every_thread_at_the_process_priority() {
    let db = TestDb::new().await;
    let (main, t) = observe(&db, &["--background-nice", "0"]).await;
    for (name, nices) in &t {
        assert!(nices.iter().all(|n| *n == main), "{name}: {t:?}");
    }
}
