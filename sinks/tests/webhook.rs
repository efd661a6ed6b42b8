//! The webhook dispatcher against a real ClickHouse (a fresh database per test, dropped
//! after) and real HTTP receivers on 127.0.0.1 that record every request and answer from a
//! script. Waits poll with generous deadlines; nothing relies on a fixed sleep.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;
use vigie_sinks::alert::{AlertEvent, AlertType, KeyKind, Level};
use vigie_sinks::clickhouse::retry::RetryPolicy;
use vigie_sinks::clickhouse::{migrations, ClickHouseConfig};
use vigie_sinks::webhook::{
    add_webhook, all_webhooks, list_webhooks, set_webhook_enabled, verify, DeadLetterRow,
    DeliveryRow, Dispatcher, DispatcherConfig, DispatcherHandle, Format, Outcome, WebhookError,
    WebhookRow,
};

// ---------------------------------------------------------------------------------------
// ClickHouse

fn url() -> String {
    std::env::var("VIGIE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A fresh, migrated database, dropped when the test ends.
struct Db(ClickHouseConfig);

impl Db {
    async fn new() -> Db {
        let cfg = ClickHouseConfig {
            url: url(),
            database: format!("vigie_test_{}", Uuid::new_v4().simple()),
            flush_interval: Duration::from_millis(100),
            retry: RetryPolicy {
                initial: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
            ..ClickHouseConfig::default()
        };
        migrations::migrate(&cfg).await.unwrap();
        Db(cfg)
    }

    fn client(&self) -> clickhouse::Client {
        self.0.client()
    }

    async fn attempts(&self, webhook: Uuid) -> Vec<DeliveryRow> {
        self.client()
            .query("SELECT ?fields FROM webhook_deliveries WHERE webhook_id = ? ORDER BY alert_id, attempt")
            .bind(webhook)
            .fetch_all::<DeliveryRow>()
            .await
            .unwrap()
    }

    async fn dead_letters(&self, webhook: Uuid) -> Vec<DeadLetterRow> {
        self.client()
            .query("SELECT ?fields FROM webhook_dead_letters FINAL WHERE webhook_id = ? ORDER BY alert_id")
            .bind(webhook)
            .fetch_all::<DeadLetterRow>()
            .await
            .unwrap()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        migrations::drop_database_blocking(&self.0);
    }
}

// ---------------------------------------------------------------------------------------
// Receivers

/// One request as the receiver saw it.
#[derive(Clone)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .unwrap()
    }
}

/// A scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: vec![],
    }
}

#[derive(Default)]
struct ReceiverState {
    seen: Mutex<HashMap<String, Vec<Seen>>>,
    /// Per path: answers in order; 200 once exhausted (or `always` if set).
    script: Mutex<HashMap<String, VecDeque<Reply>>>,
    always: Mutex<HashMap<String, Reply>>,
}

/// An HTTP server on 127.0.0.1 recording requests by path and answering per its script.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn record(
    State(st): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    st.seen
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(Seen {
            headers,
            body,
            at: Instant::now(),
        });
    let scripted = st
        .script
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let r = scripted
        .or_else(|| st.always.lock().unwrap().get(&path).cloned())
        .unwrap_or_else(|| reply(200));
    let mut h = HeaderMap::new();
    for (k, v) in r.headers {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    (
        StatusCode::from_u16(r.status).unwrap(),
        h,
        "receiver says hi",
    )
        .into_response()
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn script(&self, path: &str, replies: Vec<Reply>) {
        self.state
            .script
            .lock()
            .unwrap()
            .insert(path.into(), replies.into());
    }

    fn always(&self, path: &str, r: Reply) {
        self.state.always.lock().unwrap().insert(path.into(), r);
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

/// A TCP listener that accepts connections and never answers (nor closes them).
struct Hanging {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Hanging {
    async fn start() -> Hanging {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held: Vec<TcpStream> = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        Hanging { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}/hang", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Polls `f` every 50 ms until it returns `Some`, or panics after `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const LONG: Duration = Duration::from_secs(30);

fn fast() -> DispatcherConfig {
    DispatcherConfig {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        request_timeout: Duration::from_secs(10),
        max_in_flight_per_endpoint: 4,
        queue_per_endpoint: 64,
        refresh: Duration::from_secs(3600), // tests reload explicitly
        log_buffer_rows: 10_000,
    }
}

fn alert(org: Uuid, level: Level, kind: AlertType) -> AlertEvent {
    AlertEvent {
        id: Uuid::new_v4(),
        org_id: org,
        kind,
        level,
        status: "NEW".into(),
        message: format!("{} {} for acme", level.as_str(), kind.as_str()),
        key_kind: KeyKind::Keyword,
        key: "acme".into(),
        source_id: None,
        keyword: Some("acme".into()),
        observed: 42.0,
        baseline: 3.5,
        threshold: 10.0,
        window_start: datetime!(2026-01-02 10:00 UTC),
        window_end: datetime!(2026-01-02 11:00 UTC),
        mention_ids: vec![Uuid::from_u128(11), Uuid::from_u128(12)],
        created_at: datetime!(2026-01-02 11:00:05 UTC),
        version: 1_767_351_605_000,
    }
}

async fn hook(
    db: &Db,
    org: Uuid,
    url: &str,
    min_level: Level,
    types: Vec<AlertType>,
    format: Format,
) -> WebhookRow {
    add_webhook(&db.client(), org, url, None, min_level, types, format)
        .await
        .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// HMAC-SHA256 written out from its definition (RFC 2104), independent of the crate's.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the Python verification snippet of WEBHOOKS.md on a received request; `None` when
/// there is no python3 on this machine.
fn python_verifies(secret: &str, seen: &Seen, body: &[u8]) -> Option<bool> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/WEBHOOKS.md"))
        .expect("WEBHOOKS.md");
    let start = doc
        .find("```python\n")
        .expect("a python block in WEBHOOKS.md")
        + 10;
    let snippet = &doc[start..start + doc[start..].find("```").unwrap()];
    let driver = r#"
import os, sys
body = open(sys.argv[1], "rb").read()
ok = verify_vigie_signature(os.environ["SECRET"], os.environ["TS"], os.environ["SIG"], body)
sys.exit(0 if ok else 3)
"#;
    let path = std::env::temp_dir().join(format!("vigie-body-{}", Uuid::new_v4().simple()));
    std::fs::write(&path, body).unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!("{snippet}\n{driver}"))
        .arg(&path)
        .env("SECRET", secret)
        .env("TS", seen.header("x-vigie-timestamp"))
        .env("SIG", seen.header("x-vigie-signature"))
        .output();
    let _ = std::fs::remove_file(&path);
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            eprintln!("python3 not runnable ({e}); the WEBHOOKS.md snippet was not checked");
            return None;
        }
    };
    match out.status.code() {
        Some(0) => Some(true),
        Some(3) => Some(false),
        _ => panic!(
            "the python snippet crashed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn outcomes(rows: &[DeliveryRow]) -> Vec<(u16, u16, Outcome)> {
    rows.iter()
        .map(|r| {
            (
                r.attempt,
                r.status_code,
                Outcome::from_code(r.outcome).unwrap(),
            )
        })
        .collect()
}

async fn rows_when(db: &Db, webhook: Uuid, n: usize) -> Vec<DeliveryRow> {
    eventually(&format!("{n} delivery rows"), LONG, || async {
        let rows = db.attempts(webhook).await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

async fn dead_letters_when(db: &Db, webhook: Uuid, n: usize) -> Vec<DeadLetterRow> {
    eventually(&format!("{n} dead letters"), LONG, || async {
        let rows = db.dead_letters(webhook).await;
        (rows.len() >= n).then_some(rows)
    })
    .await
}

async fn received(rx: &Receiver, path: &str, n: usize) -> Vec<Seen> {
    eventually(&format!("{n} requests on {path}"), LONG, || async {
        let seen = rx.seen(path);
        (seen.len() >= n).then_some(seen)
    })
    .await
}

async fn stop(d: DispatcherHandle) {
    let report = d.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.log_rows_unwritten, 0);
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_signed_and_carries_the_alert_json_or_a_slack_message() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    let org = Uuid::new_v4();
    let json = hook(&db, org, &rx.url("/json"), Level::Low, vec![], Format::Json).await;
    let slack = hook(
        &db,
        org,
        &rx.url("/slack"),
        Level::Low,
        vec![],
        Format::Slack,
    )
    .await;
    assert!(json.secret.starts_with("whsec_") && json.secret.len() == 6 + 64);
    assert_ne!(json.secret, slack.secret);
    let d = Dispatcher::start(fast(), db.0.clone()).await;
    assert_eq!(d.endpoint_count(), 2);

    let a = alert(org, Level::Critical, AlertType::VolumeSpike);
    let published = d.publish(Arc::new(a.clone()));
    assert_eq!((published.queued, published.dropped), (2, 0));

    let seen = received(&rx, "/json", 1).await.remove(0);
    assert_eq!(seen.header("content-type"), "application/json");
    assert_eq!(
        seen.header("user-agent"),
        concat!("vigie-webhooks/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(seen.header("idempotency-key"), a.id.to_string());
    assert_eq!(seen.header("x-vigie-event-id"), a.id.to_string());
    assert_eq!(seen.header("x-vigie-delivery-attempt"), "1");
    let ts = seen.header("x-vigie-timestamp");
    assert!((now() - ts.parse::<i64>().unwrap()).abs() < 60, "{ts}");
    let sig = seen.header("x-vigie-signature");
    // The crate's verifier …
    assert_eq!(
        verify(&json.secret, ts, sig, &seen.body, now(), 300),
        Ok(())
    );
    assert!(verify(&slack.secret, ts, sig, &seen.body, now(), 300).is_err());
    let mut tampered = seen.body.to_vec();
    tampered[1] ^= 1;
    assert!(verify(&json.secret, ts, sig, &tampered, now(), 300).is_err());
    // … an independent HMAC from its definition …
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&seen.body);
    assert_eq!(
        sig,
        format!("v1={}", hex(&hmac_sha256(json.secret.as_bytes(), &signed)))
    );
    // … and the Python snippet of WEBHOOKS.md.
    if let Some(ok) = python_verifies(&json.secret, &seen, &seen.body) {
        assert!(ok, "the documented Python check rejects a genuine request");
        assert_eq!(
            python_verifies(&json.secret, &seen, &tampered),
            Some(false),
            "the documented Python check accepts a tampered body"
        );
        assert_eq!(
            python_verifies(&slack.secret, &seen, &seen.body),
            Some(false)
        );
    }
    // The body is the AlertEvent JSON.
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["id"], a.id.to_string());
    assert_eq!(body["org_id"], org.to_string());
    assert_eq!(body["level"], "critical");
    assert_eq!(body["type"], "volume_spike");
    assert_eq!(body["message"], a.message);
    assert_eq!(body["created_at"], "2026-01-02T11:00:05Z");
    assert_eq!(
        body["mention_ids"],
        serde_json::json!([Uuid::from_u128(11), Uuid::from_u128(12)])
    );
    assert_eq!(serde_json::from_value::<AlertEvent>(body).unwrap(), a);

    // The Slack endpoint gets a Slack message, signed with its own secret.
    let s = received(&rx, "/slack", 1).await.remove(0);
    let ts = s.header("x-vigie-timestamp");
    assert_eq!(
        verify(
            &slack.secret,
            ts,
            s.header("x-vigie-signature"),
            &s.body,
            now(),
            300
        ),
        Ok(())
    );
    let msg: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    let text = msg["text"].as_str().unwrap();
    assert!(
        text.contains("[CRITICAL]") && text.contains(&a.message),
        "{text}"
    );
    let numbers = msg["attachments"][0]["blocks"].to_string();
    assert!(numbers.contains("*Observed*\\n42"), "{numbers}");
    assert!(
        numbers.contains(&Uuid::from_u128(11).to_string()),
        "{numbers}"
    );

    // Both attempts are logged as delivered.
    for w in [&json, &slack] {
        let rows = rows_when(&db, w.id, 1).await;
        assert_eq!(outcomes(&rows), [(1, 200, Outcome::Delivered)]);
        assert_eq!(rows[0].org_id, org);
        assert_eq!(rows[0].alert_id, a.id);
        assert_eq!(rows[0].error, "");
    }
    let m = d.metrics();
    assert_eq!(m.delivered.load(Ordering::Relaxed), 2);
    assert!(m
        .render_prometheus()
        .contains("vigie_webhook_delivered_total 2\n"));
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_delivered_under_one_idempotency_key() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    rx.script("/a", vec![reply(500), reply(502), reply(200)]);
    let org = Uuid::new_v4();
    let w = hook(&db, org, &rx.url("/a"), Level::Low, vec![], Format::Json).await;
    let d = Dispatcher::start(fast(), db.0.clone()).await;
    let a = alert(org, Level::Low, AlertType::SentimentDip);
    d.publish(Arc::new(a.clone()));

    let rows = rows_when(&db, w.id, 3).await;
    assert_eq!(
        outcomes(&rows),
        [
            (1, 500, Outcome::Retrying),
            (2, 502, Outcome::Retrying),
            (3, 200, Outcome::Delivered)
        ]
    );
    assert!(rows[0].error.contains("HTTP 500") && rows[0].error.contains("receiver says hi"));
    let seen = rx.seen("/a");
    assert_eq!(seen.len(), 3, "exactly three attempts");
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.header("idempotency-key"), a.id.to_string());
        assert_eq!(s.header("x-vigie-delivery-attempt"), (i + 1).to_string());
        // Every attempt is signed afresh and verifies.
        let ts = s.header("x-vigie-timestamp");
        assert_eq!(
            verify(
                &w.secret,
                ts,
                s.header("x-vigie-signature"),
                &s.body,
                now(),
                300
            ),
            Ok(())
        );
        assert_eq!(s.body, seen[0].body, "the same body on every attempt");
    }
    assert!(db.dead_letters(w.id).await.is_empty());
    let m = d.metrics();
    assert_eq!(m.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(m.retried.load(Ordering::Relaxed), 2);
    assert_eq!(m.failed.load(Ordering::Relaxed), 2);
    assert_eq!(m.dead_lettered.load(Ordering::Relaxed), 0);
    stop(d).await;
    assert_eq!(rx.seen("/a").len(), 3, "no attempt after the success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_always_fails_is_dead_lettered_after_max_attempts() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    rx.always("/down", reply(503));
    let org = Uuid::new_v4();
    let w = hook(&db, org, &rx.url("/down"), Level::Low, vec![], Format::Json).await;
    let d = Dispatcher::start(fast(), db.0.clone()).await;
    let a = alert(org, Level::Medium, AlertType::CriticalMention);
    d.publish(Arc::new(a.clone()));

    let dead = dead_letters_when(&db, w.id, 1).await;
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!((dl.org_id, dl.alert_id), (org, a.id));
    assert_eq!(dl.attempts, 4);
    assert_eq!(dl.last_status, 503);
    assert!(dl.last_error.contains("HTTP 503"), "{}", dl.last_error);
    assert_eq!(
        serde_json::from_str::<AlertEvent>(&dl.payload).unwrap(),
        a,
        "the payload is kept for replay"
    );
    let rows = rows_when(&db, w.id, 4).await;
    assert_eq!(
        outcomes(&rows),
        [
            (1, 503, Outcome::Retrying),
            (2, 503, Outcome::Retrying),
            (3, 503, Outcome::Retrying),
            (4, 503, Outcome::DeadLetter)
        ]
    );
    assert_eq!(rx.seen("/down").len(), 4);
    assert_eq!(d.metrics().dead_lettered.load(Ordering::Relaxed), 1);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_is_not_retried_and_is_dead_lettered() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    rx.always("/strict", reply(400));
    let org = Uuid::new_v4();
    let w = hook(
        &db,
        org,
        &rx.url("/strict"),
        Level::Low,
        vec![],
        Format::Json,
    )
    .await;
    let d = Dispatcher::start(fast(), db.0.clone()).await;
    let a = alert(org, Level::Low, AlertType::VolumeSpike);
    d.publish(Arc::new(a.clone()));

    let dead = dead_letters_when(&db, w.id, 1).await;
    assert_eq!((dead[0].attempts, dead[0].last_status), (1, 400));
    let rows = rows_when(&db, w.id, 1).await;
    assert_eq!(outcomes(&rows), [(1, 400, Outcome::Failed)]);
    // The delivery is finished (dead-lettered); shutting down waits for nothing more.
    stop(d).await;
    assert_eq!(rx.seen("/strict").len(), 1, "a 400 is never retried");
    assert_eq!(db.attempts(w.id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_of_a_429_is_honoured() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    rx.script(
        "/busy",
        vec![
            Reply {
                status: 429,
                headers: vec![("retry-after", "1")],
            },
            reply(200),
        ],
    );
    let org = Uuid::new_v4();
    let w = hook(&db, org, &rx.url("/busy"), Level::Low, vec![], Format::Json).await;
    let cfg = DispatcherConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(5),
        ..fast()
    };
    let d = Dispatcher::start(cfg, db.0.clone()).await;
    d.publish(Arc::new(alert(org, Level::Low, AlertType::VolumeSpike)));

    let seen = received(&rx, "/busy", 2).await;
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, before the 1 s Retry-After"
    );
    let rows = rows_when(&db, w.id, 2).await;
    assert_eq!(
        outcomes(&rows),
        [(1, 429, Outcome::Retrying), (2, 200, Outcome::Delivered)]
    );
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_delays_nothing_else_and_its_overflow_is_dropped() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    let hang = Hanging::start().await;
    let org = Uuid::new_v4();
    let stuck = hook(&db, org, &hang.url(), Level::Low, vec![], Format::Json).await;
    let ok = hook(&db, org, &rx.url("/ok"), Level::Low, vec![], Format::Json).await;
    let timeout = Duration::from_secs(8);
    let cfg = DispatcherConfig {
        max_attempts: 1,
        request_timeout: timeout,
        max_in_flight_per_endpoint: 2,
        queue_per_endpoint: 4,
        ..fast()
    };
    let d = Dispatcher::start(cfg, db.0.clone()).await;

    // Four alerts fill the stuck endpoint's queue; two of them are in flight.
    let t0 = Instant::now();
    for _ in 0..4 {
        let p = d.publish(Arc::new(alert(org, Level::Low, AlertType::VolumeSpike)));
        assert_eq!((p.queued, p.dropped), (2, 0));
    }
    received(&rx, "/ok", 4).await;
    let healthy_done = t0.elapsed();
    assert!(
        healthy_done < timeout / 2,
        "the healthy endpoint waited {healthy_done:?} behind the hanging one"
    );
    eventually("two hanging connections", LONG, || async {
        (hang.accepted() >= 2).then_some(())
    })
    .await;
    eventually("the healthy deliveries to finish", LONG, || async {
        (d.metrics().delivered.load(Ordering::Relaxed) == 4).then_some(())
    })
    .await;
    assert_eq!(hang.accepted(), 2, "at most max_in_flight requests at once");

    // Many more alerts: publish never waits; the stuck endpoint drops every one of them.
    assert!(
        t0.elapsed() < timeout,
        "precondition: the first hanging requests are still in flight"
    );
    let n = 200;
    let t1 = Instant::now();
    let mut ok_queued = 0;
    for _ in 0..n {
        let p = d.publish(Arc::new(alert(org, Level::Low, AlertType::VolumeSpike)));
        assert!(p.dropped >= 1, "the stuck endpoint's queue is full: {p:?}");
        ok_queued += p.queued;
    }
    let publishing = t1.elapsed();
    assert!(
        publishing < Duration::from_secs(1),
        "publishing {n} alerts took {publishing:?}"
    );
    assert!(ok_queued >= 4, "the healthy endpoint still takes alerts");
    received(&rx, "/ok", 4 + ok_queued).await;
    let healthy = rows_when(&db, ok.id, 4 + n).await;
    let count = |o: Outcome| healthy.iter().filter(|r| r.outcome == o.code()).count();
    assert_eq!(count(Outcome::Delivered), 4 + ok_queued);
    assert_eq!(count(Outcome::Dropped), n - ok_queued);

    let dropped = eventually("the dropped rows", LONG, || async {
        let rows: Vec<DeliveryRow> = db
            .attempts(stuck.id)
            .await
            .into_iter()
            .filter(|r| r.outcome == Outcome::Dropped.code())
            .collect();
        (rows.len() >= n).then_some(rows)
    })
    .await;
    assert_eq!(dropped.len(), n);
    assert!(dropped
        .iter()
        .all(|r| r.attempt == 0 && r.status_code == 0 && r.error.contains("queue full")));
    let m = d.metrics();
    assert_eq!(
        m.dropped.load(Ordering::Relaxed),
        (2 * n - ok_queued) as u64
    );

    // The hanging requests are cut off at the request timeout, two at a time.
    let cut = eventually(
        "the four timed-out attempts",
        Duration::from_secs(60),
        || async {
            let rows: Vec<DeliveryRow> = db
                .attempts(stuck.id)
                .await
                .into_iter()
                .filter(|r| r.outcome != Outcome::Dropped.code())
                .collect();
            (rows.len() >= 4).then_some(rows)
        },
    )
    .await;
    assert_eq!(cut.len(), 4);
    for r in &cut {
        assert_eq!((r.attempt, r.status_code), (1, 0));
        assert_eq!(Outcome::from_code(r.outcome), Some(Outcome::DeadLetter));
        assert!(r.error.contains("timed out"), "{}", r.error);
        assert!(r.duration_ms >= 7_000, "cut off after {} ms", r.duration_ms);
    }
    assert_eq!(hang.accepted(), 4);
    let dead = dead_letters_when(&db, stuck.id, n + 4).await;
    assert_eq!(dead.iter().filter(|d| d.attempts == 0).count(), n);
    assert_eq!(dead.iter().filter(|d| d.attempts == 1).count(), 4);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_go_only_to_their_organisation_and_through_the_filters() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    let all_a = hook(&db, org_a, &rx.url("/a"), Level::Low, vec![], Format::Json).await;
    let all_b = hook(&db, org_b, &rx.url("/b"), Level::Low, vec![], Format::Json).await;
    let crit_a = hook(
        &db,
        org_a,
        &rx.url("/crit"),
        Level::Critical,
        vec![],
        Format::Json,
    )
    .await;
    let spike_a = hook(
        &db,
        org_a,
        &rx.url("/spike"),
        Level::Low,
        vec![AlertType::VolumeSpike, AlertType::CriticalMention],
        Format::Json,
    )
    .await;
    assert_eq!(spike_a.types, ["critical_mention", "volume_spike"]);
    let off_a = hook(
        &db,
        org_a,
        &rx.url("/off"),
        Level::Low,
        vec![],
        Format::Json,
    )
    .await;
    set_webhook_enabled(&db.client(), org_a, off_a.id, false)
        .await
        .unwrap()
        .unwrap();
    let d = Dispatcher::start(fast(), db.0.clone()).await;
    assert_eq!(d.endpoint_count(), 4);

    let dip_a = alert(org_a, Level::Medium, AlertType::SentimentDip);
    let spike_crit_a = alert(org_a, Level::Critical, AlertType::VolumeSpike);
    let mention_b = alert(org_b, Level::Low, AlertType::CriticalMention);
    let other = alert(Uuid::new_v4(), Level::Critical, AlertType::VolumeSpike);
    assert_eq!(d.publish(Arc::new(dip_a.clone())).queued, 1); // /a
    assert_eq!(d.publish(Arc::new(spike_crit_a.clone())).queued, 3); // /a /crit /spike
    assert_eq!(d.publish(Arc::new(mention_b.clone())).queued, 1); // /b
    assert_eq!(d.publish(Arc::new(other)).queued, 0);

    let ids = |seen: Vec<Seen>| -> Vec<String> {
        let mut v: Vec<String> = seen
            .iter()
            .map(|s| s.header("x-vigie-event-id").to_string())
            .collect();
        v.sort();
        v
    };
    let mut both_a = vec![dip_a.id.to_string(), spike_crit_a.id.to_string()];
    both_a.sort();
    assert_eq!(ids(received(&rx, "/a", 2).await), both_a);
    assert_eq!(
        ids(received(&rx, "/b", 1).await),
        [mention_b.id.to_string()]
    );
    assert_eq!(
        ids(received(&rx, "/crit", 1).await),
        [spike_crit_a.id.to_string()]
    );
    assert_eq!(
        ids(received(&rx, "/spike", 1).await),
        [spike_crit_a.id.to_string()]
    );
    // Every delivery is logged and finished: nothing else can still arrive.
    for (w, n) in [(&all_a, 2), (&all_b, 1), (&crit_a, 1), (&spike_a, 1)] {
        let rows = rows_when(&db, w.id, n).await;
        assert!(rows.iter().all(|r| r.outcome == Outcome::Delivered.code()));
        assert!(rows.iter().all(|r| r.org_id == w.org_id));
    }
    stop(d).await;
    let body: serde_json::Value = serde_json::from_slice(&rx.seen("/b")[0].body).unwrap();
    assert_eq!(body["org_id"], org_b.to_string());
    assert_eq!(rx.seen("/b").len(), 1, "org B never sees org A's alerts");
    assert_eq!(rx.seen("/a").len(), 2, "org A never sees org B's alert");
    assert!(
        rx.seen("/off").is_empty(),
        "a disabled endpoint gets nothing"
    );
    assert!(db.attempts(off_a.id).await.is_empty());
    let total: u64 = db
        .client()
        .query("SELECT count() FROM webhook_deliveries")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(total, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_validates_scopes_by_organisation_and_reloads() {
    let db = Db::new().await;
    let c = db.client();
    let rx = Receiver::start().await;
    let (org_a, org_b) = (Uuid::new_v4(), Uuid::new_v4());
    for bad in ["ftp://example.com/hook", "not a url", "http://"] {
        let e = add_webhook(&c, org_a, bad, None, Level::Low, vec![], Format::Json)
            .await
            .expect_err(bad);
        assert!(matches!(e, WebhookError::InvalidUrl(_)), "{bad}: {e}");
        assert!(e.to_string().starts_with("invalid webhook URL"), "{e}");
    }
    let e = add_webhook(
        &c,
        org_a,
        &rx.url("/x"),
        Some("short".into()),
        Level::Low,
        vec![],
        Format::Json,
    )
    .await
    .expect_err("a short secret");
    assert!(matches!(e, WebhookError::InvalidSecret(_)), "{e}");
    assert!(
        all_webhooks(&c).await.unwrap().is_empty(),
        "nothing invalid was stored"
    );

    let own = "my-own-secret-0123456789".to_string();
    let a1 = add_webhook(
        &c,
        org_a,
        &rx.url("/a1"),
        Some(own.clone()),
        Level::Low,
        vec![],
        Format::Json,
    )
    .await
    .unwrap();
    assert_eq!(a1.secret, own);
    let a2 = hook(
        &db,
        org_a,
        &rx.url("/a2"),
        Level::Medium,
        vec![],
        Format::Slack,
    )
    .await;
    let b1 = hook(&db, org_b, &rx.url("/b1"), Level::Low, vec![], Format::Json).await;
    let listed: Vec<Uuid> = list_webhooks(&c, org_a)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&a1.id) && listed.contains(&a2.id));
    assert_eq!(list_webhooks(&c, org_b).await.unwrap(), vec![b1]);

    // Another organisation cannot touch A's endpoint.
    assert!(set_webhook_enabled(&c, org_b, a1.id, false)
        .await
        .unwrap()
        .is_none());
    assert!(list_webhooks(&c, org_a)
        .await
        .unwrap()
        .iter()
        .all(|w| w.enabled == 1));
    let off = set_webhook_enabled(&c, org_a, a1.id, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(off.enabled, 0);
    assert!(off.version > a1.version);
    let all = all_webhooks(&c).await.unwrap();
    assert_eq!(all.len(), 3, "disabled endpoints are listed too");
    assert_eq!(all.iter().find(|w| w.id == a1.id).unwrap().enabled, 0);

    let d = Dispatcher::start(fast(), db.0.clone()).await;
    assert_eq!(d.endpoint_count(), 2);
    let first = alert(org_a, Level::Medium, AlertType::VolumeSpike);
    assert_eq!(d.publish(Arc::new(first)).queued, 1);
    received(&rx, "/a2", 1).await;

    // Enabled again: a reload picks it up.
    set_webhook_enabled(&c, org_a, a1.id, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.reload().await.unwrap(), 3);
    let second = alert(org_a, Level::Medium, AlertType::VolumeSpike);
    assert_eq!(d.publish(Arc::new(second.clone())).queued, 2);
    let seen = received(&rx, "/a1", 1).await;
    assert_eq!(seen[0].header("x-vigie-event-id"), second.id.to_string());
    let ts = seen[0].header("x-vigie-timestamp");
    assert_eq!(
        verify(
            &own,
            ts,
            seen[0].header("x-vigie-signature"),
            &seen[0].body,
            now(),
            300
        ),
        Ok(()),
        "signed with the caller's secret"
    );

    // publish is plain sync code: a thread outside the runtime can call it.
    let from_thread = d.clone();
    let third = alert(org_a, Level::Critical, AlertType::SentimentDip);
    let sent = third.clone();
    let p = std::thread::spawn(move || from_thread.publish(Arc::new(sent)))
        .join()
        .unwrap();
    assert_eq!(p.queued, 2);
    let seen = received(&rx, "/a1", 2).await;
    assert_eq!(seen[1].header("x-vigie-event-id"), third.id.to_string());
    stop(d).await;
}

/// A TCP proxy to ClickHouse that can be switched off: new connections are refused and
/// open ones cut.
async fn switchable_proxy(target: String) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (down_tx, down_rx) = watch::channel(false);
    let target = target.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            if *down_rx.borrow() {
                continue; // dropped: connection closed
            }
            let target = target.clone();
            let mut down = down_rx.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = down.wait_for(|d| *d) => {}
                }
            });
        }
    });
    (format!("http://{addr}"), down_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_keeps_the_endpoints_and_buffers_the_log() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    let org = Uuid::new_v4();
    let w = hook(&db, org, &rx.url("/a"), Level::Low, vec![], Format::Json).await;
    let (proxy, down) = switchable_proxy(url()).await;
    let ch = ClickHouseConfig {
        url: proxy,
        ..db.0.clone()
    };
    let d = Dispatcher::start(fast(), ch).await;
    assert_eq!(d.endpoint_count(), 1);

    down.send_replace(true);
    assert!(d.reload().await.is_err(), "ClickHouse is unreachable");
    assert_eq!(d.endpoint_count(), 1, "the last known endpoints stay");
    let m = d.metrics();
    assert!(m.refresh_errors.load(Ordering::Relaxed) >= 1);

    let a = alert(org, Level::Low, AlertType::VolumeSpike);
    assert_eq!(d.publish(Arc::new(a.clone())).queued, 1);
    received(&rx, "/a", 1).await;
    eventually("the delivery to finish", LONG, || async {
        (m.delivered.load(Ordering::Relaxed) == 1).then_some(())
    })
    .await;
    // The writer keeps failing (and retrying) while the proxy is down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.log_rows_written.load(Ordering::Relaxed), 0);
    assert!(db.attempts(w.id).await.is_empty());

    down.send_replace(false);
    let rows = rows_when(&db, w.id, 1).await;
    assert_eq!(outcomes(&rows), [(1, 200, Outcome::Delivered)]);
    assert_eq!(rows[0].alert_id, a.id);
    // The row can be visible a moment before the writer counts it.
    eventually("the written row to be counted", LONG, || async {
        (m.log_rows_written.load(Ordering::Relaxed) == 1).then_some(())
    })
    .await;
    assert_eq!(m.log_rows_dropped.load(Ordering::Relaxed), 0);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_off_what_is_left_at_the_timeout_and_flushes_the_log() {
    let db = Db::new().await;
    let rx = Receiver::start().await;
    rx.always(
        "/busy",
        Reply {
            status: 503,
            headers: vec![("retry-after", "30")],
        },
    );
    let hang = Hanging::start().await;
    let org = Uuid::new_v4();
    let stuck = hook(&db, org, &hang.url(), Level::Low, vec![], Format::Json).await;
    let ok = hook(&db, org, &rx.url("/ok"), Level::Low, vec![], Format::Json).await;
    let busy = hook(&db, org, &rx.url("/busy"), Level::Low, vec![], Format::Json).await;
    let cfg = DispatcherConfig {
        request_timeout: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        max_in_flight_per_endpoint: 1,
        ..fast()
    };
    let d = Dispatcher::start(cfg, db.0.clone()).await;
    let other_handle = d.clone();
    for _ in 0..2 {
        let a = alert(org, Level::Low, AlertType::VolumeSpike);
        assert_eq!(d.publish(Arc::new(a)).queued, 3);
    }
    // ok: both delivered. busy: both failed once and wait 30 s (Retry-After). stuck: one
    // request hangs, the other alert waits for the endpoint's only slot.
    let m = d.metrics();
    eventually(
        "the healthy deliveries and the busy retries",
        LONG,
        || async {
            (m.delivered.load(Ordering::Relaxed) == 2 && m.retried.load(Ordering::Relaxed) == 2)
                .then_some(())
        },
    )
    .await;
    eventually("the hanging request", LONG, || async {
        (hang.accepted() == 1).then_some(())
    })
    .await;

    let t = Instant::now();
    let report = d.shutdown(Duration::from_secs(1)).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(report.aborted, 2, "the two stuck deliveries");
    assert_eq!(report.log_rows_unwritten, 0);
    assert_eq!(hang.accepted(), 1);
    assert_eq!(rx.seen("/busy").len(), 2, "no retry during the shutdown");

    // Flushed: every row is there without waiting.
    let delivered = db.attempts(ok.id).await;
    assert_eq!(
        outcomes(&delivered),
        [(1, 200, Outcome::Delivered), (1, 200, Outcome::Delivered)]
    );
    // Busy: the retry due in 30 s is given up on at once, keeping the last real answer.
    let rows = db.attempts(busy.id).await;
    let mut kinds: Vec<(u16, u16, Outcome)> = outcomes(&rows);
    kinds.sort_by_key(|k| (k.0, k.1));
    assert_eq!(
        kinds,
        [
            (1, 503, Outcome::Retrying),
            (1, 503, Outcome::Retrying),
            (2, 0, Outcome::DeadLetter),
            (2, 0, Outcome::DeadLetter)
        ]
    );
    let dead = db.dead_letters(busy.id).await;
    assert_eq!(dead.len(), 2);
    for dl in &dead {
        assert_eq!((dl.attempts, dl.last_status), (1, 503));
        assert!(
            dl.last_error.contains("HTTP 503") && dl.last_error.contains("shut down"),
            "{}",
            dl.last_error
        );
    }
    // Stuck: the hanging request is cut off; the queued one was never attempted.
    let rows = db.attempts(stuck.id).await;
    assert_eq!(
        outcomes(&rows),
        [(1, 0, Outcome::DeadLetter), (1, 0, Outcome::DeadLetter)]
    );
    let mut errors: Vec<&str> = rows.iter().map(|r| r.error.as_str()).collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            "dispatcher shut down before attempt 1",
            "dispatcher shut down during attempt 1"
        ]
    );
    let mut attempts: Vec<u16> = db
        .dead_letters(stuck.id)
        .await
        .iter()
        .map(|d| d.attempts)
        .collect();
    attempts.sort();
    assert_eq!(attempts, [0, 1]);

    // Once shut down, no clone takes alerts any more.
    let p = other_handle.publish(Arc::new(alert(org, Level::Low, AlertType::VolumeSpike)));
    assert_eq!((p.queued, p.dropped), (0, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_are_spoken_to_in_tls() {
    use tokio::io::AsyncReadExt;
    let db = Db::new().await;
    // Not a TLS server: it records the first byte the client sends, then hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_tx, mut first_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut b = [0u8; 1];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = first_tx.send(b[0]);
            }
        }
    });
    let org = Uuid::new_v4();
    let w = hook(
        &db,
        org,
        &format!("https://{addr}/hook"),
        Level::Low,
        vec![],
        Format::Json,
    )
    .await;
    let cfg = DispatcherConfig {
        max_attempts: 1,
        ..fast()
    };
    let d = Dispatcher::start(cfg, db.0.clone()).await;
    d.publish(Arc::new(alert(org, Level::Low, AlertType::VolumeSpike)));
    let first = tokio::time::timeout(LONG, first_rx.recv())
        .await
        .expect("the client connects")
        .unwrap();
    assert_eq!(first, 0x16, "a TLS handshake record (ClientHello)");
    let rows = rows_when(&db, w.id, 1).await;
    assert_eq!(outcomes(&rows), [(1, 0, Outcome::DeadLetter)]);
    assert!(
        !rows[0].error.contains("127.0.0.1"),
        "no URL in errors: {}",
        rows[0].error
    );
    stop(d).await;
}
