//! Ingest over real HTTP against the real binary and a real ClickHouse database.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use uuid::Uuid;

const T0: &str = "2026-11-20T10:15:00Z";

async fn stored_mentions(db: &TestDb) -> f64 {
    scalar(db, "SELECT count() FROM mentions FINAL").await
}

async fn wait_mentions(db: &TestDb, n: f64) {
    eventually(
        Duration::from_secs(20),
        &format!("{n} mentions stored"),
        || async { (stored_mentions(db).await == n).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn missing_or_unknown_key_is_401() {
    let db = TestDb::new().await;
    let v = Vigie::start(&db, &[]);
    let (status, body) = post(&v, None, "application/json", "{}").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    let (status, _) = post(&v, Some("vk_not_a_key"), "application/json", "{}").await;
    assert_eq!(status, 401);
    let resp = reqwest::Client::new()
        .post(v.url("/v1/mentions"))
        .header("authorization", "Basic abc")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn every_documented_status_code() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let v = Vigie::start(&db, &["--body-limit", "4096"]);
    let good = mention(Uuid::new_v4(), src, "I love this", T0);

    // 415: wrong content type, unsupported encoding.
    let (status, body) = post(&v, Some(&key), "text/plain", good.to_string()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let resp = reqwest::Client::new()
        .post(v.url("/v1/mentions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);

    // 413: over the body limit, with or without Content-Length.
    let big = json!({"text": "x".repeat(5000)}).to_string();
    let (status, body) = post(&v, Some(&key), "application/json", big.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok(big[..3000].to_string()), Ok(big[3000..].to_string())];
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, _) = post(&v, Some(&key), "application/json", stream).await;
    assert_eq!(status, 413);

    // 400: not JSON at all (JSON and NDJSON framings).
    let (status, body) = post(&v, Some(&key), "application/json", "{not json").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", "hello\nworld\n").await;
    assert_eq!(status, 400);

    // 422: JSON, but no valid record; each error names index and field.
    let mut no_text = good.clone();
    no_text.as_object_mut().unwrap().remove("text");
    let mut bad_time = good.clone();
    bad_time["created_at"] = json!("last tuesday");
    let (status, body) = post(
        &v,
        Some(&key),
        "application/json",
        json!([no_text, bad_time]).to_string(),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(
        body["errors"][0],
        json!({"index": 0, "field": "text", "reason": "is required"})
    );
    assert_eq!(body["errors"][1]["field"], "created_at");

    // 202.
    let (status, body) = post(&v, Some(&key), "application/json", good.to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(0))
    );

    // 404 and 405 are JSON too; bad ids in the path are 400 naming the field.
    let resp = reqwest::get(v.url("/v1/nothing")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = reqwest::Client::new()
        .put(v.url("/v1/mentions"))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(resp.status().as_u16(), 404 | 405),
        "{}",
        resp.status()
    );
    let resp = reqwest::Client::new()
        .delete(v.url("/v1/mentions/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "id");

    // Health, readiness, metrics.
    assert_eq!(status_of(&v, "/healthz").await, 200);
    assert_eq!(status_of(&v, "/readyz").await, 200);
    let metrics = metrics_text(&v).await;
    assert!(
        metrics.contains("vigie_mentions_accepted_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vigie_ingest_requests_total{status=\"415\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("vigie_clickhouse_rows_total{table=\"mentions\"}"));
    wait_mentions(&db, 1.0).await;
}

#[tokio::test]
async fn mixed_ndjson_batch_keeps_the_valid_lines() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let disabled = db.add_source(org, "old forum");
    db.cli(&[
        "source",
        "disable",
        "--org",
        &org.to_string(),
        "--id",
        &disabled.to_string(),
    ]);
    let (other_org, _) = db.create_org("other");
    let foreign = db.add_source(other_org, "not yours");
    let v = Vigie::start(&db, &[]);

    let mut lines = vec![
        mention(Uuid::new_v4(), src, "great product, love it", T0).to_string(),
        "{broken json".to_string(),
        mention(Uuid::new_v4(), disabled, "from a disabled source", T0).to_string(),
        mention(Uuid::new_v4(), foreign, "someone else's source", T0).to_string(),
        json!({"source_id": src, "text": "no author", "url": "https://e.com", "created_at": T0})
            .to_string(),
        mention(
            Uuid::new_v4(),
            src,
            "terrible support, very disappointed",
            "2026-11-19T08:00:00+02:00",
        )
        .to_string(),
    ];
    lines.push(String::new());
    let (status, body) = post(&v, Some(&key), "application/x-ndjson", lines.join("\n")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 4);
    let fields: Vec<(u64, &str)> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        vec![
            (1, "(record)"),
            (2, "source_id"),
            (3, "source_id"),
            (4, "author")
        ]
    );
    assert_eq!(body["errors"][1]["reason"], "source is disabled");
    wait_mentions(&db, 2.0).await;
    // The organisation comes from the key: nothing landed in the other organisation.
    let foreign_rows = scalar(
        &db,
        &format!("SELECT count() FROM mentions FINAL WHERE org_id = '{other_org}'"),
    )
    .await;
    assert_eq!(foreign_rows, 0.0);
}

#[tokio::test]
async fn gzip_bodies_are_accepted() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let v = Vigie::start(&db, &[]);
    let records: Vec<Value> = (0..50)
        .map(|i| mention(Uuid::new_v4(), src, &format!("nice one {i}"), T0))
        .collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(ndjson(&records).as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let resp = reqwest::Client::new()
        .post(v.url("/v1/mentions"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 50);
    wait_mentions(&db, 50.0).await;
    let resp = reqwest::Client::new()
        .post(v.url("/v1/mentions"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body("definitely not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn reposting_the_same_ids_does_not_count_twice() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let v = Vigie::start(&db, &[]);
    let records: Vec<Value> = (0..20)
        .map(|i| mention(Uuid::new_v4(), src, &format!("love it {i}"), T0))
        .collect();
    for _ in 0..3 {
        let (status, body) = post(&v, Some(&key), "application/x-ndjson", ndjson(&records)).await;
        assert_eq!((status, body["accepted"].as_u64()), (202, Some(20)));
    }
    // One more distinct mention as a marker: once it is in, everything before it is too.
    let marker = mention(Uuid::new_v4(), src, "marker", T0);
    post(&v, Some(&key), "application/json", marker.to_string()).await;
    wait_mentions(&db, 21.0).await;
    let sql = "SELECT total FROM trends_current WHERE granularity = 'day'";
    eventually(Duration::from_secs(20), "day trend = 21", || async {
        (scalar(&db, sql).await == 21.0).then_some(())
    })
    .await;
    assert_eq!(
        scalar(&db, "SELECT count() FROM mentions FINAL").await,
        21.0
    );
}

#[tokio::test]
async fn deleting_a_mention_removes_it_from_mentions_and_trends() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let v = Vigie::start(&db, &[]);
    let keep = Uuid::new_v4();
    let spam = Uuid::new_v4();
    let records = vec![
        mention(keep, src, "love it", T0),
        mention(spam, src, "BUY CHEAP PILLS terrible scam", T0),
    ];
    post(&v, Some(&key), "application/x-ndjson", ndjson(&records)).await;
    wait_mentions(&db, 2.0).await;

    let (_, other_key) = db.create_org("other");
    let resp = reqwest::Client::new()
        .delete(v.url(&format!("/v1/mentions/{spam}")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "deleting is idempotent and scoped: another org's delete is a no-op"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stored_mentions(&db).await,
        2.0,
        "another organisation cannot delete our mention"
    );

    let resp = reqwest::Client::new()
        .delete(v.url(&format!("/v1/mentions/{spam}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    wait_mentions(&db, 1.0).await;
    let left = rows(&db, "SELECT toString(id) FROM mentions FINAL").await;
    assert_eq!(left[0][0], keep.to_string());
    for g in ["hour", "day", "week", "month"] {
        let sql = format!("SELECT total FROM trends_current WHERE granularity = '{g}'");
        eventually(
            Duration::from_secs(10),
            &format!("{g} trend back to 1"),
            || async { (scalar(&db, &sql).await == 1.0).then_some(()) },
        )
        .await;
    }
}
