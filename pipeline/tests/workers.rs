//! `--workers 2` gives the same ClickHouse contents as `--workers 1`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Replaces each organisation and source id by its name, so two databases compare.
fn canonical(rows: Vec<Value>, names: &HashMap<String, String>) -> Vec<Value> {
    let mut out: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            Value::Array(
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| match c.as_str().and_then(|s| names.get(s)) {
                        Some(name) => Value::String(name.clone()),
                        None => c.clone(),
                    })
                    .collect(),
            )
        })
        .collect();
    out.sort_by_key(|r| r.to_string());
    out
}

async fn run(workers: &str) -> (Vec<Value>, Vec<Value>) {
    let db = TestDb::new().await;
    let tenants = tenants(&db, 3, 2);
    let mut names = HashMap::new();
    for t in &tenants {
        names.insert(t.org.to_string(), t.name.clone());
        for (j, s) in t.sources.iter().enumerate() {
            names.insert(s.to_string(), format!("{}_src{j}", t.name));
        }
    }
    let v = Vigie::start(&db, &["--workers", workers]);
    let ids = random_workload(&v, &tenants, 11, 800).await;
    wait_for_ids(&db, &ids).await;
    assert_trends_match_oracle(&db, Duration::from_secs(30)).await;
    let mentions = rows(
        &db,
        "SELECT toString(org_id), toString(id), toString(source_id), text, created_at, lang, sentiment, \
         sentiment_score, emotions, virality_score FROM mentions FINAL",
    )
    .await;
    let trends = rows(&db, TRENDS_SQL).await;
    (canonical(mentions, &names), canonical(trends, &names))
}

#[tokio::test]
async fn two_workers_store_the_same_as_one() {
    let (m1, t1) = run("1").await;
    let (m2, t2) = run("2").await;
    assert!(!m1.is_empty() && !t1.is_empty());
    assert_eq!(m1.len(), m2.len());
    assert_eq!(m1, m2);
    assert_eq!(t1, t2);
}
