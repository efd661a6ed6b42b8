//! Crash recovery with a real process killed by SIGKILL mid-load: every acknowledged
//! mention is stored exactly once after restart, and trends still equal a recompute.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use uuid::Uuid;

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
