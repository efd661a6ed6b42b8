//! Alerts end to end: a real `vigie run` on a real ClickHouse raises spike, dip and
//! critical-mention alerts from posted mentions, stores them once, links them to their
//! mentions, and raises no second alert after a crash and a replay of its log.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use uuid::Uuid;

/// A quiet day (about 3 mentions an hour, in event-time order so none is late).
fn quiet_history(source: Uuid, now: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut t = now - 26 * 3600;
    let mut i = 0;
    while t < now - 1800 {
        let text = if i % 2 == 0 {
            format!("acme delivery arrived on time, thanks #{i}")
        } else {
            format!("using nimbus and acme today, all fine #{i}")
        };
        out.push(shared_record(source, &text, t, 0));
        t += 1200;
        i += 1;
    }
    out
}

async fn alerts(db: &TestDb) -> Vec<Value> {
    rows(
        db,
        "SELECT toString(id), toString(type), toString(level), toString(key_kind), key, keyword, message, \
         observed, baseline, length(mention_ids), toString(status) FROM alerts FINAL ORDER BY type, key_kind, key",
    )
    .await
}

async fn alert_count(db: &TestDb) -> (f64, f64) {
    let r = rows(db, "SELECT count(), uniqExact(id) FROM alerts FINAL").await;
    (
        r[0][0]
            .as_str()
            .map_or_else(|| r[0][0].as_f64().unwrap(), |s| s.parse().unwrap()),
        r[0][1]
            .as_str()
            .map_or_else(|| r[0][1].as_f64().unwrap(), |s| s.parse().unwrap()),
    )
}

#[tokio::test]
async fn a_spike_is_alerted_once_even_after_a_crash_and_a_replay() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme inc");
    let source = db.add_source(org, "reddit");
    db.set_rules(
        org,
        r#"{"volume_spike": {"k": 3, "min_count": 15}, "sentiment_dip": {"enabled": false},
            "critical_mention": {"enabled": false}}"#,
    );
    let data_dir = temp_data_dir();
    let v = Vigie::start_in(&db, &data_dir, &[]);
    let now = now_secs();
    let history = quiet_history(source, now);
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&history)).await;
    assert_eq!(status, 202);
    // A burst: 40 mentions of one story in the last 10 minutes.
    let burst: Vec<Value> = (0..40)
        .map(|i| {
            shared_record(
                source,
                "acme blender exploded in my kitchen",
                now - 600 + i * 15,
                3,
            )
        })
        .collect();
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&burst)).await;
    assert_eq!(status, 202);

    let found = eventually(
        Duration::from_secs(30),
        "spike alerts in ClickHouse",
        || async {
            let a = alerts(&db).await;
            (a.len() >= 3).then_some(a)
        },
    )
    .await;
    // One alert per key: the organisation, the source and the keyword 'acme' (the burst
    // does not mention 'nimbus').
    let kinds: Vec<(&str, &str, &str)> = found
        .iter()
        .map(|a| {
            (
                a[1].as_str().unwrap(),
                a[3].as_str().unwrap(),
                a[5].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("volume_spike", "org", ""),
            ("volume_spike", "source", ""),
            ("volume_spike", "keyword", "acme"),
        ],
        "{found:#?}"
    );
    let keyword = &found[2];
    let message = keyword[6].as_str().unwrap();
    assert!(
        message.starts_with("Mentions of 'acme' up ") && message.contains("x in the last hour ("),
        "{message}"
    );
    assert_eq!(keyword[10].as_str().unwrap(), "NEW");
    assert!(
        keyword[9]
            .as_u64()
            .unwrap_or_else(|| keyword[9].as_str().unwrap().parse().unwrap())
            > 0
    );
    // Linked mentions exist. The sink writes a flush's tables concurrently, so the alerts
    // can be readable an insert before the mentions they link (README, "Sink"): wait for
    // every mention first.
    eventually(Duration::from_secs(30), "every mention stored", || async {
        let n = scalar(&db, "SELECT count() FROM mentions FINAL").await as usize;
        (n == history.len() + burst.len()).then_some(())
    })
    .await;
    let linked = scalar(
        &db,
        "SELECT count() FROM mentions FINAL WHERE id IN (SELECT arrayJoin(mention_ids) FROM alerts FINAL)",
    )
    .await;
    assert!(linked >= 1.0, "alerts link to stored mentions");
    // Keywords and stories were recorded, and the burst's story made its mentions viral.
    let acme = scalar(
        &db,
        "SELECT count() FROM mentions FINAL WHERE has(keywords, 'acme')",
    )
    .await;
    assert_eq!(acme as usize, history.len() + burst.len());
    let viral = scalar(
        &db,
        "SELECT min(virality_score) FROM mentions FINAL WHERE text = 'acme blender exploded in my kitchen'",
    )
    .await;
    let quiet = scalar(
        &db,
        "SELECT max(virality_score) FROM mentions FINAL WHERE text != 'acme blender exploded in my kitchen'",
    )
    .await;
    assert!(viral > quiet, "burst virality {viral} vs quiet {quiet}");

    // Crash, restart on the same log: the replay raises the same alerts, not new ones.
    let before = alert_count(&db).await;
    v.crash();
    // Forget what was committed: the replay rewrites every row, alerts included, so only
    // deterministic alert ids keep one row per alert.
    let _ = std::fs::remove_file(data_dir.join("committed"));
    let v = Vigie::start_in(&db, &data_dir, &[]);
    // Posting the burst again (a client retrying with the same ids) changes nothing either.
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&burst)).await;
    assert_eq!(status, 202);
    // More mentions of the same story within the cooldown: no second alert.
    let more: Vec<Value> = (0..20)
        .map(|i| {
            shared_record(
                source,
                "acme blender exploded in my kitchen",
                now - 60 + i,
                3,
            )
        })
        .collect();
    let (status, _) = post(&v, Some(&key), "application/x-ndjson", ndjson(&more)).await;
    assert_eq!(status, 202);
    eventually(
        Duration::from_secs(30),
        "the new mentions stored",
        || async {
            let n = scalar(&db, "SELECT count() FROM mentions FINAL").await as usize;
            (n == history.len() + burst.len() + more.len()).then_some(())
        },
    )
    .await;
    // Stopped cleanly, everything is flushed: still the same alerts, and trends per keyword
    // equal a recompute from the stored mentions, every granularity.
    let stopped = v.stop();
    assert!(stopped.success());
    assert_eq!(alert_count(&db).await, before);
    assert_eq!(before.0, before.1);
    for (granularity, start) in [
        ("hour", "toStartOfHour"),
        ("day", "toStartOfDay"),
        ("week", "toMonday"),
        ("month", "toStartOfMonth"),
    ] {
        let kept = rows(
            &db,
            &format!(
                "SELECT toString(toDateTime(bucket)), keyword, total, negative, round(virality_sum, 2) FROM keyword_trends_current \
                 WHERE granularity = '{granularity}' ORDER BY bucket, keyword"
            ),
        )
        .await;
        let recomputed = rows(
            &db,
            &format!(
                "SELECT toString(toDateTime({start}(created_at))), kw, count(), countIf(sentiment = 'negative'), round(sum(virality_score), 2) \
                 FROM mentions FINAL ARRAY JOIN keywords AS kw GROUP BY {start}(created_at), kw ORDER BY {start}(created_at), kw"
            ),
        )
        .await;
        assert!(!kept.is_empty());
        assert_eq!(kept, recomputed, "keyword trends per {granularity}");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test]
async fn a_sentiment_dip_and_a_critical_mention_are_alerted() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme inc");
    let source = db.add_source(org, "reddit");
    db.set_rules(
        org,
        r#"{"volume_spike": {"enabled": false}, "sentiment_dip": {"min_rise": 0.3, "min_count": 10},
            "critical_mention": {"min_virality": 60}}"#,
    );
    let v = Vigie::start(&db, &[]);
    let now = now_secs();
    let (status, _) = post(
        &v,
        Some(&key),
        "application/x-ndjson",
        ndjson(&quiet_history(source, now)),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _) = post(
        &v,
        Some(&key),
        "application/x-ndjson",
        ndjson(&angry_story(source, now)),
    )
    .await;
    assert_eq!(status, 202);
    let found = eventually(
        Duration::from_secs(30),
        "dip and critical alerts",
        || async {
            let a = alerts(&db).await;
            let types: Vec<&str> = a.iter().map(|r| r[1].as_str().unwrap()).collect();
            (types.contains(&"critical_mention") && types.contains(&"sentiment_dip")).then_some(a)
        },
    )
    .await;
    let critical: Vec<&Value> = found
        .iter()
        .filter(|a| a[1] == "critical_mention")
        .collect();
    // One per story per cooldown, however many of its mentions are viral.
    assert_eq!(critical.len(), 1, "{found:#?}");
    assert_eq!(critical[0][2], "critical");
    assert_eq!(critical[0][3], "story");
    let msg = critical[0][6].as_str().unwrap();
    assert!(
        msg.starts_with("Negative mention going viral (virality "),
        "{msg}"
    );
    let dip = found
        .iter()
        .find(|a| a[1] == "sentiment_dip" && a[3] == "keyword")
        .unwrap();
    let msg = dip[6].as_str().unwrap();
    assert!(
        msg.starts_with("Negative share of mentions of 'acme' at "),
        "{msg}"
    );
    let text = metrics_text(&v).await;
    assert!(metric(&text, "vigie_alerts_raised_total") >= 2.0);
}

#[tokio::test]
async fn rules_are_validated_and_stored_per_organisation() {
    let db = TestDb::new().await;
    let (a, _) = db.create_org("a");
    let (b, _) = db.create_org("b");
    db.cli(&[
        "rules",
        "set",
        "--org",
        &a.to_string(),
        "--json",
        r#"{"volume_spike": {"k": 2.5}}"#,
    ]);
    let got: Value =
        serde_json::from_str(&db.cli(&["rules", "get", "--org", &a.to_string()])).unwrap();
    assert_eq!(got["volume_spike"]["k"], 2.5);
    let other: Value =
        serde_json::from_str(&db.cli(&["rules", "get", "--org", &b.to_string()])).unwrap();
    assert_eq!(other["volume_spike"]["k"], 3.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args([
            "--clickhouse-url",
            &db.cfg.url,
            "--database",
            db.name(),
            "rules",
            "set",
            "--org",
        ])
        .arg(a.to_string())
        .args(["--json", r#"{"window_minutes": 5}"#])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("window_minutes"));
}
