//! The oracle test: a random stream with insertions, re-scores, identical re-posts,
//! deletions and out-of-order event times goes through the running pipeline; afterwards
//! the trends read from ClickHouse equal a plain SQL `GROUP BY` over the mentions table,
//! for every granularity.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn trends_equal_a_batch_recompute_over_mentions_after_a_random_stream() {
    let db = TestDb::new().await;
    let tenants = tenants(&db, 2, 3);
    let v = Vigie::start(&db, &[]);
    let ids = random_workload(&v, &tenants, 7, 1500).await;
    assert!(
        ids.len() > 500,
        "the workload keeps most mentions: {}",
        ids.len()
    );
    wait_for_ids(&db, &ids).await;

    let trends = assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    for g in ["1", "2", "3", "4"] {
        let n: u64 = trends
            .iter()
            .filter(|r| r[1].as_str() == Some(g))
            .map(|r| r[4].as_str().and_then(|s| s.parse::<u64>().ok()).unwrap())
            .sum();
        assert_eq!(
            n as usize,
            ids.len(),
            "granularity {g} counts every stored mention once"
        );
    }
    // Every granularity is present and buckets are proper.
    let per_gran = rows(
        &db,
        "SELECT toInt8(granularity) AS g, count() FROM trends_current GROUP BY g ORDER BY g",
    )
    .await;
    assert_eq!(per_gran.len(), 4, "{per_gran:?}");

    // A clean shutdown exits 0.
    assert!(v.stop().success());
}
