//! A ClickHouse outage: ingest keeps acknowledging (keys and sources from its cache, records
//! into the write-ahead log), the sink retries, and everything lands once ClickHouse is back.

mod common;

use std::time::Duration;

use common::*;
use uuid::Uuid;
use vigie_pipeline::verify::CutProxy as Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_accepted_during_an_outage_land_when_clickhouse_returns() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let proxy = Proxy::start(&db.cfg.url).await.unwrap();
    let v = Vigie::start_via(&db, &proxy.url, &[]);

    let first: Vec<_> = (0..10)
        .map(|i| {
            mention(
                Uuid::new_v4(),
                src,
                &format!("love it {i}"),
                "2026-11-20T10:00:00Z",
            )
        })
        .collect();
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&first)).await;
    assert_eq!(status, 202);
    eventually(Duration::from_secs(20), "first batch stored", || async {
        (scalar(&db, "SELECT count() FROM mentions FINAL").await == 10.0).then_some(())
    })
    .await;

    proxy.set_up(false);
    tokio::time::sleep(Duration::from_millis(400)).await; // past the catalog TTL
    let during: Vec<_> = (0..40)
        .map(|i| {
            mention(
                Uuid::new_v4(),
                src,
                &format!("awful {i}"),
                "2026-11-20T11:00:00Z",
            )
        })
        .collect();
    for chunk in during.chunks(10) {
        let (status, body) = post(&v, Some(&key), "application/x-ndjson", ndjson(chunk)).await;
        assert_eq!(
            status, 202,
            "ingest keeps accepting during the outage: {body}"
        );
    }
    // An unknown key cannot be checked while ClickHouse is away: 503, not 401 or 500.
    let (status, _) = post(&v, Some("vk_unknown"), "application/json", "{}").await;
    assert_eq!(status, 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        scalar(&db, "SELECT count() FROM mentions FINAL").await,
        10.0
    );

    proxy.set_up(true);
    eventually(
        Duration::from_secs(60),
        "the outage's mentions stored",
        || async {
            (scalar(&db, "SELECT count() FROM mentions FINAL").await == 50.0).then_some(())
        },
    )
    .await;
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    let metrics = metrics_text(&v).await;
    let retries: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("vigie_clickhouse_retries_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(retries >= 1.0, "the sink retried: {retries}");
    assert!(v.stop().success());
}
