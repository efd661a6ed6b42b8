//! Alerts pushed by a real `vigie run`: a signed webhook delivery to a real local receiver
//! and the same alert on the organisation's SSE stream; the other organisation's webhook and
//! stream get nothing.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use uuid::Uuid;

/// One request a receiver got: headers (lowercased names) and the raw body.
#[derive(Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1 that answers 200 to every request.
async fn receiver() -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let headers: Vec<(String, String)> = head
                            .lines()
                            .skip(1)
                            .filter_map(|l| l.split_once(':'))
                            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                            .collect();
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k == "content-length")
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = buf[end + 4..end + 4 + len].to_vec();
                            buf.drain(..end + 4 + len);
                            let _ = tx.send(Received { headers, body });
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                                .await;
                            continue;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, rx)
}

/// Collects `event: alert` data lines of an SSE stream into a channel.
fn sse(url: String, key: String) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut stream = resp.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(bytes)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(str::trim))
                        .map(str::to_string)
                };
                if field("event:").as_deref() == Some("alert") {
                    let data = field("data:").unwrap();
                    let _ = tx.send(serde_json::from_str(&data).unwrap());
                }
            }
        }
    });
    rx
}

#[tokio::test]
async fn a_critical_alert_reaches_the_signed_webhook_and_the_sse_stream_of_its_org_only() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme inc");
    let source = db.add_source(org, "reddit");
    let (other, other_key) = db.create_org("other inc");
    let (hook, mut deliveries) = receiver().await;
    let (other_hook, mut other_deliveries) = receiver().await;
    for (o, url, secret) in [
        (org, &hook, "whsec_test_secret_one"),
        (other, &other_hook, "whsec_test_secret_two"),
    ] {
        let out = db.cli(&[
            "webhook",
            "add",
            "--org",
            &o.to_string(),
            "--url",
            url,
            "--secret",
            secret,
            "--min-level",
            "medium",
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(
            v["webhook_id"].as_str().unwrap().parse::<Uuid>().is_ok(),
            "{out}"
        );
    }
    db.set_rules(
        org,
        r#"{"volume_spike": {"enabled": false}, "sentiment_dip": {"enabled": false},
            "critical_mention": {"min_virality": 60}}"#,
    );
    let v = Vigie::start(&db, &[]);
    let mut stream = sse(v.url("/v1/alerts/stream"), key.clone());
    let mut other_stream = sse(v.url("/v1/alerts/stream"), other_key.clone());
    // Let both streams connect before anything is raised.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let now = now_secs();
    let (status, _) = post(
        &v,
        Some(&key),
        "application/x-ndjson",
        ndjson(&angry_story(source, now)),
    )
    .await;
    assert_eq!(status, 202);

    let got = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
        .await
        .expect("a webhook delivery within 30 s")
        .unwrap();
    // Signed as documented: v1 = HMAC-SHA256(secret, timestamp + "." + body).
    let ts = got.header("x-vigie-timestamp");
    let sig = got.header("x-vigie-signature");
    vigie_sinks::webhook::verify("whsec_test_secret_one", ts, sig, &got.body, now_secs(), 300)
        .expect("signature verifies");
    assert!(vigie_sinks::webhook::verify(
        "whsec_test_secret_two",
        ts,
        sig,
        &got.body,
        now_secs(),
        300
    )
    .is_err());
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    for field in [
        "id",
        "org_id",
        "level",
        "type",
        "message",
        "created_at",
        "mention_ids",
    ] {
        assert!(!body[field].is_null(), "{field} missing in {body}");
    }
    assert_eq!(body["org_id"], org.to_string());
    assert_eq!(body["type"], "critical_mention");
    assert_eq!(body["level"], "critical");
    assert_eq!(got.header("idempotency-key"), body["id"].as_str().unwrap());

    let live = tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("the alert on the SSE stream")
        .unwrap();
    assert_eq!(live["id"], body["id"]);
    // The stored row is the same alert (pushed first, written right after).
    eventually(Duration::from_secs(10), "the alert row", || async {
        let stored = rows(&db, "SELECT toString(id) FROM alerts FINAL").await;
        stored.iter().any(|r| r[0] == body["id"]).then_some(())
    })
    .await;

    // Nothing for the other organisation, on either channel.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(other_deliveries.try_recv().is_err());
    assert!(other_stream.try_recv().is_err());
    let text = metrics_text(&v).await;
    assert!(text.contains("vigie_webhook_"), "webhook metrics exported");
    assert!(text.contains("vigie_stream_"), "stream metrics exported");
}

/// A receiver that accepts connections and never answers.
async fn hanging_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    url
}

#[tokio::test]
async fn a_hanging_webhook_receiver_slows_neither_ingest_nor_the_streams() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme inc");
    let source = db.add_source(org, "reddit");
    let hook = hanging_receiver().await;
    db.cli(&[
        "webhook",
        "add",
        "--org",
        &org.to_string(),
        "--url",
        &hook,
        "--json",
    ]);
    db.set_rules(
        org,
        r#"{"volume_spike": {"enabled": false}, "sentiment_dip": {"enabled": false},
            "critical_mention": {"min_virality": 60}}"#,
    );
    let v = Vigie::start(&db, &[]);
    let mut stream = sse(v.url("/v1/alerts/stream"), key.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let now = now_secs();
    // Forty stories, each a negative, widely shared mention: forty critical alerts, each
    // one a delivery to the receiver that never answers.
    for i in 0..40 {
        let text = format!("acme scandal number {i}: awful, dangerous, worst company ever");
        let (status, _) = post(
            &v,
            Some(&key),
            "application/json",
            shared_record(source, &text, now - 60, 5000).to_string(),
        )
        .await;
        assert_eq!(
            status, 202,
            "ingest keeps acknowledging while the receiver hangs"
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    while ids.len() < 40 {
        let ev = tokio::time::timeout(Duration::from_secs(30), stream.recv())
            .await
            .expect("every alert reaches the stream while the webhook hangs")
            .unwrap();
        ids.insert(ev["id"].as_str().unwrap().to_string());
    }
    // Nothing was delivered, and the mentions are all stored.
    let text = metrics_text(&v).await;
    assert_eq!(metric(&text, "vigie_webhook_delivered_total"), 0.0);
    eventually(Duration::from_secs(20), "the mentions stored", || async {
        (scalar(&db, "SELECT count() FROM mentions FINAL").await == 40.0).then_some(())
    })
    .await;
}
