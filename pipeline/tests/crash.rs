//! Crash recovery with a real process killed by SIGKILL mid-load: every acknowledged
//! mention is stored exactly once after restart, and trends still equal a recompute.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use uuid::Uuid;
use vigie_pipeline::verify::CutProxy as Proxy;

/// Posts batches until the server goes away; returns the ids of acknowledged records.
async fn load_until_killed(base: String, key: String, source: Uuid, acked: Arc<Mutex<Vec<Uuid>>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for round in 0u64.. {
        let ids: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
        let records: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                mention(
                    *id,
                    source,
                    if i % 2 == 0 {
                        "love it"
                    } else {
                        "awful, hate it"
                    },
                    &rfc3339(
                        1_790_000_000 + (round as i64 * 977 + i as i64 * 3_607) % (30 * 86_400),
                    ),
                )
            })
            .collect();
        let sent = client
            .post(format!("{base}/v1/mentions"))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .body(ndjson(&records))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => acked.lock().unwrap().extend(ids),
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mentions_survive_sigkill_and_are_counted_once() {
    let db = TestDb::new().await;
    let tenant = tenants(&db, 1, 1).remove(0);
    let source = tenant.sources[0];
    let dir = temp_data_dir();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..3u64 {
        let v = Vigie::start_in(&db, &dir, &[]);
        let load = tokio::spawn(load_until_killed(
            v.base.clone(),
            tenant.key.clone(),
            source,
            acked.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(700 + 400 * round)).await;
        v.crash();
        load.await.unwrap();
    }
    let acked: Vec<Uuid> = acked.lock().unwrap().clone();
    assert!(acked.len() > 200, "the load ran: {} acked", acked.len());

    // Restart; re-post some acknowledged ids (as a client retrying would): no double count.
    let v = Vigie::start_in(&db, &dir, &[]);
    let again: Vec<Value> = acked[..100]
        .iter()
        .map(|id| mention(*id, source, "love it", &rfc3339(1_790_000_000)))
        .collect();
    let (status, _) = post(
        &v,
        Some(&tenant.key),
        "application/x-ndjson",
        ndjson(&again),
    )
    .await;
    assert_eq!(status, 202);

    let stored = eventually(
        Duration::from_secs(60),
        "every acknowledged id stored",
        || async {
            let ids: std::collections::HashSet<String> =
                rows(&db, "SELECT toString(id) FROM mentions FINAL")
                    .await
                    .into_iter()
                    .map(|r| r[0].as_str().unwrap().to_string())
                    .collect();
            acked
                .iter()
                .all(|id| ids.contains(&id.to_string()))
                .then_some(ids.len())
        },
    )
    .await;
    let distinct = scalar(&db, "SELECT uniqExact(id) FROM mentions FINAL").await;
    assert_eq!(distinct as usize, stored, "no mention is stored twice");
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    drop(v);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_log_restores_the_same_state_after_restart() {
    let db = TestDb::new().await;
    let tenants = tenants(&db, 2, 2);
    let dir = temp_data_dir();
    let args = ["--wal-segment-bytes", "8000"];
    let v = Vigie::start_in(&db, &dir, &args);
    let ids = random_workload(&v, &tenants, 21, 1200).await;
    wait_for_ids(&db, &ids).await;
    // More epochs so the committed time passes the last segments: the log compacts in the
    // background, and a later epoch installs the result.
    eventually(Duration::from_secs(30), "the log was compacted", || async {
        tick(&v, &tenants[0]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = metrics_text(&v).await;
        (metric(&text, "vigie_wal_compactions_total") >= 1.0).then_some(())
    })
    .await;
    assert!(v.stop().success());

    // After a restart from the compacted log, the state is intact: re-posting or deleting
    // mentions from before the restart replaces or removes them instead of double-counting.
    let v = Vigie::start_in(&db, &dir, &args);
    let mut ids = random_workload(&v, &tenants, 21, 1200).await; // same seed: same ids, re-posted
    ids.sort();
    let before = scalar(&db, "SELECT count() FROM mentions FINAL").await as usize;
    assert!(before >= ids.len());
    settled_and_counted_once(&v, &db).await;
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    drop(v);
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits until ClickHouse has everything vigie was given (deletions are asynchronous
/// mutations there) and every stored mention is counted once in the day trends.
async fn settled_and_counted_once(v: &Vigie, db: &TestDb) {
    eventually(
        Duration::from_secs(60),
        "every stored mention counted once in the day trends",
        || async {
            let lag = metric(&metrics_text(v).await, "vigie_dataflow_lag_seconds");
            let total_day = scalar(
                db,
                "SELECT sum(total) FROM trends_current WHERE granularity = 'day'",
            )
            .await as usize;
            let stored = scalar(db, "SELECT count() FROM mentions FINAL").await as usize;
            (lag == 0.0 && total_day == stored).then_some(())
        },
    )
    .await;
}

/// Posts one mention (moves the dataflow time, so operators pass checkpoint boundaries).
async fn tick(v: &Vigie, tenant: &Tenant) {
    let (status, _) = post(
        v,
        Some(&tenant.key),
        "application/json",
        mention(
            Uuid::new_v4(),
            tenant.sources[0],
            "tick",
            "2026-11-20T10:00:00Z",
        )
        .to_string(),
    )
    .await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_vigie_restarts_from_a_checkpoint_and_replays_only_the_log_after_it() {
    let db = TestDb::new().await;
    let tenants = tenants(&db, 2, 2);
    let dir = temp_data_dir();
    let args = ["--checkpoint-secs", "1", "--workers", "2"];
    let v = Vigie::start_in(&db, &dir, &args);
    let ids = random_workload(&v, &tenants, 33, 1500).await;
    wait_for_ids(&db, &ids).await;
    // Pass a few boundaries with ClickHouse caught up (its progress is recorded every
    // half second), then keep posting so the stores are ahead of the last checkpoint.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        tick(&v, &tenants[0]).await;
    }
    let fed = metric(&metrics_text(&v).await, "vigie_dataflow_records_total");
    let more = random_workload(&v, &tenants, 34, 300).await;
    v.crash();

    let v = Vigie::start_in(&db, &dir, &args);
    let text = metrics_text(&v).await;
    let restored = metric(&text, "vigie_restored_checkpoint");
    let replayed = metric(&text, "vigie_replayed_records");
    assert!(restored > 0.0, "restored from a checkpoint");
    assert!(
        replayed < fed / 2.0,
        "only the log's tail is replayed: {replayed} of {fed} records"
    );
    eventually(
        Duration::from_secs(60),
        "the mentions posted before the kill stored",
        || async {
            let ids: std::collections::HashSet<String> =
                rows(&db, "SELECT toString(id) FROM mentions FINAL")
                    .await
                    .into_iter()
                    .map(|r| r[0].as_str().unwrap().to_string())
                    .collect();
            more.iter().all(|id| ids.contains(id)).then_some(())
        },
    )
    .await;
    // The restored state is exact: re-posting the first workload (same seed: same ids,
    // some re-scored or deleted) replaces instead of double-counting.
    random_workload(&v, &tenants, 33, 1500).await;
    settled_and_counted_once(&v, &db).await;
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    drop(v);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_answers_503_until_clickhouse_catches_up() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let proxy = Proxy::start(&db.cfg.url).await.unwrap();
    let v = Vigie::start_via(
        &db,
        &proxy.url,
        &["--wal-segment-bytes", "2000", "--wal-max-bytes", "20000"],
    );
    // The same ten mentions, re-posted as they are (a scraper's at-least-once repeats):
    // compaction can drop the repeats.
    let batch = |_round: usize| -> String {
        let recs: Vec<Value> = (0..10u128)
            .map(|i| {
                mention(
                    Uuid::from_u128(i + 1),
                    src,
                    &format!("love it {}", "x".repeat(50)),
                    "2026-11-20T10:00:00Z",
                )
            })
            .collect();
        ndjson(&recs)
    };
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", batch(0)).await;
    assert_eq!(status, 202);
    proxy.set_up(false);
    let mut round = 1;
    let full = loop {
        let resp = reqwest::Client::new()
            .post(v.url("/v1/mentions"))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .body(batch(round))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 503 {
            break resp;
        }
        assert_eq!(resp.status().as_u16(), 202);
        round += 1;
        assert!(round < 500, "the budget never filled");
    };
    assert_eq!(full.headers()["retry-after"], "1");
    let body: Value = full.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("disk budget"),
        "{body}"
    );

    proxy.set_up(true);
    eventually(Duration::from_secs(60), "ingest accepts again", || async {
        let (status, _) = post(&v, Some(&key), "application/x-ndjson", batch(round)).await;
        (status == 202).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the ten mentions, once each",
        || async {
            let n = scalar(&db, "SELECT count() FROM mentions FINAL").await;
            (n == 10.0).then_some(())
        },
    )
    .await;
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
}
