//! Every ```sql block of README.md runs on the real ClickHouse (18.16 here; CI also runs
//! them on a current engine with scripts/chdb_check.py), against a database with data.

mod common;

use std::time::Duration;

use common::*;
use uuid::Uuid;

#[tokio::test]
async fn the_documented_bi_queries_run() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    // Low enough that the negative mentions below raise alerts for the alert queries.
    db.set_rules(org, r#"{"critical_mention": {"min_virality": 0}}"#);
    let v = Vigie::start(&db, &[]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let records: Vec<_> = (0..10)
        .map(|i| {
            mention(
                Uuid::new_v4(),
                src,
                &if i % 2 == 0 {
                    format!("love acme {i}")
                } else {
                    format!("acme is terrible, awful {i}")
                },
                &rfc3339(now - i * 3600),
            )
        })
        .collect();
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&records)).await;
    assert_eq!(status, 202);
    eventually(Duration::from_secs(20), "mentions stored", || async {
        (scalar(
            &db,
            "SELECT count() FROM trends_current WHERE granularity = 'hour'",
        )
        .await
            >= 10.0
            // The sink writes its tables concurrently: trend rows can be visible before
            // the mention rows they count.
            && scalar(&db, "SELECT count() FROM mentions FINAL").await >= 10.0
            && scalar(&db, "SELECT count() FROM alerts FINAL").await >= 1.0)
            .then_some(())
    })
    .await;

    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut ran = 0;
    for block in readme.split("```sql\n").skip(1) {
        let block = block.split("```").next().unwrap();
        for stmt in block.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            let sql: String = stmt
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            let sql = sql.replace("11111111-1111-1111-1111-111111111111", &org.to_string());
            let out = rows(&db, &sql).await;
            assert!(
                !out.is_empty(),
                "README query returned nothing on real data:\n{sql}"
            );
            ran += 1;
        }
    }
    assert!(ran >= 3, "README has its BI queries ({ran})");
}
