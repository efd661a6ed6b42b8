//! Alert latency end to end: a mention is posted to a real `vigie run`; the time until its
//! alert reaches (a) a webhook receiver on 127.0.0.1 and (b) an SSE client is measured,
//! mention after mention, optionally under a steady background load.
//!
//! ```text
//! cargo build --release -p vigie-pipeline -p vigie-benches
//! VIGIE_TEST_CLICKHOUSE_URL=http://127.0.0.1:18123 \
//!   target/release/alert_latency --alerts 300 --background 5000
//! ```
//!
//! Each triggering mention is a negative, widely shared post of a new story, so the
//! critical-mention rule raises one alert per mention. Posting waits for the ack (the
//! write-ahead log's fsync), so "post → webhook" includes ingest, the log, the dataflow,
//! the dispatcher and the HTTP delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;
use vigie_benches::harness::{
    add_source, at_least_one, cli, create_org, pct, receiver, Arrivals, Target, Vigie,
};

/// Alert latency against a real `vigie run`: mention posted → webhook and SSE event.
#[derive(Debug, Parser)]
#[command(name = "alert_latency")]
struct Opts {
    #[command(flatten)]
    target: Target,
    /// Triggering mentions to post, one after the other.
    #[arg(long, default_value_t = 200, value_parser = at_least_one())]
    alerts: usize,
    /// Background load beside them, in mentions/s (0: none).
    #[arg(long, value_name = "MENTIONS_PER_SEC", default_value_t = 0)]
    background: u64,
}

/// When each SSE event arrived, by the first mention id of its alert.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn sse(url: String, key: String, arrivals: Seen) {
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let mut stream = resp.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(bytes)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = text.find("\n\n") {
                let at = Instant::now();
                let frame: String = text.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) {
                    let v: Value = serde_json::from_str(data.trim()).unwrap_or_default();
                    if let Some(m) = v["mention_ids"][0].as_str() {
                        arrivals.lock().unwrap().insert(m.to_string(), at);
                    }
                }
            }
        }
    });
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let Target {
        vigie,
        clickhouse: ch,
    } = opts.target;
    let (n, background) = (opts.alerts, opts.background);
    let db = format!("vigie_bench_{}", Uuid::new_v4().simple());
    cli(&vigie, &ch, &db, &["migrate"]);
    let (org_id, key) = create_org(&vigie, &ch, &db, "bench");
    let source = add_source(&vigie, &ch, &db, &org_id, ("twitter", "x"), "acme");
    cli(
        &vigie,
        &ch,
        &db,
        &[
            "rules",
            "set",
            "--org",
            &org_id,
            "--json",
            r#"{"volume_spike": {"enabled": false}, "sentiment_dip": {"enabled": false}, "critical_mention": {"min_virality": 50}}"#,
        ],
    );
    let hooks: Arrivals = Arc::default();
    let streamed: Seen = Arc::default();
    let hook_url = receiver(hooks.clone()).await;
    cli(
        &vigie,
        &ch,
        &db,
        &[
            "webhook", "add", "--org", &org_id, "--url", &hook_url, "--json",
        ],
    );
    let data_dir = std::env::temp_dir().join(format!("vigie-bench-{}", Uuid::new_v4().simple()));
    let vigie_run = Vigie::start(&vigie, &ch, &db, &data_dir, &[]);
    let base = vigie_run.base.clone();
    sse(
        format!("{base}/v1/alerts/stream"),
        key.clone(),
        streamed.clone(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = reqwest::Client::new();
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load_started = Instant::now();
    if background > 0 {
        let (client, base, key, source) =
            (client.clone(), base.clone(), key.clone(), source.clone());
        let acked = acked.clone();
        tokio::spawn(async move {
            let batch = 250u64;
            let every = Duration::from_secs_f64(batch as f64 / background as f64);
            let mut tick = tokio::time::interval(every);
            let mut i = 0u64;
            loop {
                tick.tick().await;
                let body: String = (0..batch)
                    .map(|_| {
                        i += 1;
                        json!({"source_id": source, "text": format!("acme order {i} arrived, fine"), "author": "@bg",
                            "url": "https://x.example/s/1", "created_at": rfc3339(now_secs())}).to_string() + "\n"
                    })
                    .collect();
                let ok = client
                    .post(format!("{base}/v1/mentions"))
                    .bearer_auth(&key)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 202);
                if ok {
                    acked.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let mut to_hook = Vec::new();
    let mut to_sse = Vec::new();
    let mut ack = Vec::new();
    for i in 0..n {
        let id = Uuid::new_v4().to_string();
        let body = json!({"id": id, "source_id": source, "author": "@angry", "url": "https://x.example/s/2",
            "text": format!("acme scandal {i}: awful, dangerous, worst company ever"),
            "created_at": rfc3339(now_secs()), "shares": 3000, "likes": 9000, "author_followers": 500});
        let sent = Instant::now();
        let resp = client
            .post(format!("{base}/v1/mentions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            202,
            "{}",
            resp.text().await.unwrap_or_default()
        );
        ack.push(sent.elapsed().as_secs_f64() * 1000.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let h = hooks.lock().unwrap().get(&id).map(|a| a.at);
            let s = streamed.lock().unwrap().get(&id).copied();
            if let (Some(h), Some(s)) = (h, s) {
                to_hook.push((h - sent).as_secs_f64() * 1000.0);
                to_sse.push((s - sent).as_secs_f64() * 1000.0);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "alert {i} not delivered within 10 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    for v in [&mut to_hook, &mut to_sse, &mut ack] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    let achieved = acked.load(std::sync::atomic::Ordering::Relaxed) as f64
        / load_started.elapsed().as_secs_f64();
    println!(
        "alerts: {n}, background load: {background} mentions/s asked, {achieved:.0}/s acknowledged"
    );
    for (name, v) in [
        ("post → ack", &ack),
        ("post → webhook received", &to_hook),
        ("post → SSE event", &to_sse),
    ] {
        println!(
            "{name:<26} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for l in metrics.lines().filter(|l| {
        l.starts_with("vigie_alert_latency_seconds_bucket")
            || l.starts_with("vigie_webhook_delivered")
    }) {
        println!("{l}");
    }
    vigie_run.kill();
    let _ = std::fs::remove_dir_all(&data_dir);
    let _ = reqwest::Client::new()
        .post(&ch)
        .body(format!("DROP DATABASE IF EXISTS {db}"))
        .send()
        .await;
}
