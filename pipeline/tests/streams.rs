//! Live alert streams (`GET /v1/alerts/stream`, SSE; `GET /v1/alerts/ws`, WebSocket) with
//! real clients (reqwest, tokio-tungstenite) against the ingest server started in-process on
//! 127.0.0.1:0, a real Registry and a real ClickHouse database per test.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;
use vigie_pipeline::ingest::registry::Registry;
use vigie_pipeline::ingest::stream::{AlertHub, HubConfig};
use vigie_pipeline::ingest::{serve, IngestState};
use vigie_pipeline::metrics::Metrics;
use vigie_pipeline::runtime::Submission;
use vigie_sinks::alert::{AlertEvent, AlertRow, AlertType, KeyKind, Level};
use vigie_sinks::clickhouse::catalog;

/// How long any single expected frame or message may take; generous for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The ingest server, in-process, with the hub it serves.
struct Server {
    addr: std::net::SocketAddr,
    hub: Arc<AlertHub>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    // Nobody reads submissions in these tests; kept so the channel stays open.
    _submissions: mpsc::Receiver<Submission>,
}

impl Server {
    async fn start(db: &TestDb, cfg: HubConfig) -> Server {
        let (tx, rx) = mpsc::channel(1);
        let hub = Arc::new(AlertHub::new(cfg, Some(db.client())));
        let state = Arc::new(IngestState {
            registry: Registry::new(db.client(), Duration::from_secs(60)),
            submissions: tx,
            metrics: Arc::new(Metrics::default()),
            body_limit: 1 << 20,
            clickhouse: db.cfg.clone(),
            ignore_client_ids: false,
            alerts: hub.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
            _submissions: rx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn publish(&self, ev: &AlertEvent) {
        self.hub.publish(Arc::new(ev.clone()));
    }

    async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Triggers the graceful shutdown and waits for the server to finish.
    async fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the server did not stop: open streams hold the shutdown")
            .unwrap();
    }
}

/// A labelled or unlabelled metric's value.
fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

async fn org(db: &TestDb, name: &str) -> (Uuid, String) {
    let (row, key) = catalog::create_org(&db.client(), name).await.unwrap();
    (row.id, key)
}

fn secs(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap()
}

/// An alert whose fields survive the round trip through an `AlertRow` (whole seconds).
fn alert(org: Uuid, version: u64, kind: AlertType, level: Level) -> AlertEvent {
    AlertEvent {
        id: Uuid::new_v4(),
        org_id: org,
        kind,
        level,
        status: "NEW".into(),
        message: format!("{} {} at {version}", level.as_str(), kind.as_str()),
        key_kind: KeyKind::Keyword,
        key: "acme".into(),
        source_id: None,
        keyword: Some("acme".into()),
        observed: 42.0,
        baseline: 7.5,
        threshold: 21.0,
        window_start: secs(1_790_000_000),
        window_end: secs(1_790_003_600),
        mention_ids: vec![Uuid::new_v4()],
        created_at: secs(1_790_003_601),
        version,
    }
}

fn low(org: Uuid, version: u64) -> AlertEvent {
    alert(org, version, AlertType::VolumeSpike, Level::Low)
}

/// The event id a client must see.
fn eid(ev: &AlertEvent) -> String {
    format!("{}-{}", ev.version, ev.id)
}

fn sorted(mut evs: Vec<AlertEvent>) -> Vec<AlertEvent> {
    evs.sort_by_key(|e| (e.version, e.id));
    evs
}

/// Writes alerts to the test database's `alerts` table, as the sink would.
async fn store(db: &TestDb, evs: &[AlertEvent]) {
    let mut insert = db.client().insert::<AlertRow>("alerts").await.unwrap();
    for ev in evs {
        assert_eq!(AlertEvent::from_row(&ev.row()).as_ref(), Some(ev));
        insert.write(&ev.row()).await.unwrap();
    }
    insert.end().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// SSE client

#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// An SSE client over reqwest's streamed body.
struct Sse {
    body: Body,
    buf: Vec<u8>,
}

async fn sse_get(
    srv: &Server,
    query: &str,
    key: Option<&str>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(srv.url(&format!("/v1/alerts/stream{query}")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    tokio::time::timeout(PATIENCE, req.send())
        .await
        .expect("no response headers")
        .expect("GET /v1/alerts/stream")
}

/// Opens a stream that must succeed.
async fn sse(srv: &Server, query: &str, key: Option<&str>, last_event_id: Option<&str>) -> Sse {
    let resp = sse_get(srv, query, key, last_event_id).await;
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Sse {
        body: Box::pin(resp.bytes_stream()),
        buf: Vec::new(),
    }
}

/// (status, JSON body) of a stream request that must fail.
async fn sse_error(
    srv: &Server,
    query: &str,
    key: Option<&str>,
    last: Option<&str>,
) -> (u16, Value) {
    let resp = sse_get(srv, query, key, last).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON error body"))
}

fn parse_frame(block: &str) -> Option<Frame> {
    let mut f = Frame {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut data_lines = Vec::new();
    for line in block.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => f.id = Some(value.to_string()),
            "event" => f.event = Some(value.to_string()),
            "data" => data_lines.push(value),
            _ => {}
        }
    }
    f.data = data_lines.join("\n");
    // Comments only (keep-alives, the opening comment) dispatch nothing.
    (f.event.is_some() || !f.data.is_empty()).then_some(f)
}

impl Sse {
    /// The next frame that carries an event; `None` when the server ended the stream.
    async fn try_frame(&mut self) -> Option<Frame> {
        let read = async {
            loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                    let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                    if let Some(f) = parse_frame(std::str::from_utf8(&block).unwrap()) {
                        return Some(f);
                    }
                    continue;
                }
                match self.body.next().await {
                    Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                    Some(Err(e)) => panic!("reading the SSE body: {e}"),
                    None => return None,
                }
            }
        };
        tokio::time::timeout(PATIENCE, read)
            .await
            .expect("no SSE frame in time")
    }

    async fn frame(&mut self) -> Frame {
        self.try_frame().await.expect("the SSE stream ended")
    }

    /// The next frame, which must be an alert: (id, alert).
    async fn alert(&mut self) -> (String, AlertEvent) {
        let f = self.frame().await;
        assert_eq!(f.event.as_deref(), Some("alert"), "{f:?}");
        let ev: AlertEvent = serde_json::from_str(&f.data).expect("AlertEvent JSON");
        (f.id.expect("alert frames have an id"), ev)
    }

    /// The next `want.len()` frames must be exactly these alerts, in this order.
    async fn expect(&mut self, want: &[AlertEvent]) {
        for (i, w) in want.iter().enumerate() {
            let (id, got) = self.alert().await;
            assert_eq!(
                (&id, &got),
                (&eid(w), w),
                "alert #{i} of {}: got {}",
                want.len(),
                got.message
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// WebSocket client

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `/v1/alerts/ws{query}`; `Err((status, body))` when the upgrade is refused.
async fn ws_connect(srv: &Server, query: &str, key: Option<&str>) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{}/v1/alerts/ws{query}", srv.addr)
        .into_client_request()
        .unwrap();
    if let Some(k) = key {
        req.headers_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| serde_json::from_slice(b).expect("a JSON error body"))
                .unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("WebSocket connect: {e}"),
    }
}

async fn ws(srv: &Server, query: &str, key: Option<&str>) -> Ws {
    match ws_connect(srv, query, key).await {
        Ok(ws) => ws,
        Err((status, body)) => panic!("WebSocket refused: {status} {body}"),
    }
}

/// The next JSON text message (pings and pongs skipped).
async fn ws_next(ws: &mut Ws) -> Value {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("no WebSocket message in time")
}

/// The next `want.len()` messages must be exactly these alerts, in this order.
async fn ws_expect(ws: &mut Ws, want: &[AlertEvent]) {
    for (i, w) in want.iter().enumerate() {
        let m = ws_next(ws).await;
        assert_eq!(m["type"], "alert", "{m}");
        let got: AlertEvent = serde_json::from_value(m["alert"].clone()).unwrap();
        assert_eq!(
            (m["id"].as_str().unwrap(), &got),
            (eid(w).as_str(), w),
            "alert #{i} of {}",
            want.len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// SSE

#[tokio::test]
async fn sse_sends_alert_frames_with_id_event_and_data() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let mut s = sse(&srv, "", Some(&key), None).await;
    let evs = [
        alert(a, 1_000, AlertType::CriticalMention, Level::Critical),
        alert(a, 1_000, AlertType::VolumeSpike, Level::Medium),
        alert(a, 2_000, AlertType::SentimentDip, Level::Low),
    ];
    for ev in &evs {
        srv.publish(ev);
    }
    for ev in &evs {
        let f = s.frame().await;
        assert_eq!(f.id, Some(eid(ev)));
        assert_eq!(f.event.as_deref(), Some("alert"));
        let data: Value = serde_json::from_str(&f.data).unwrap();
        assert_eq!(data, serde_json::to_value(ev).unwrap());
        assert_eq!(data["type"], ev.kind.as_str());
        assert_eq!(data["version"], ev.version);
    }
    let m = srv.metrics().await;
    assert_eq!(metric_value(&m, "vigie_stream_clients{kind=\"sse\"}"), 1.0);
    assert_eq!(
        metric_value(&m, "vigie_stream_events_sent_total{kind=\"sse\"}"),
        3.0
    );
    assert_eq!(metric_value(&m, "vigie_stream_events_published_total"), 3.0);
    assert_eq!(
        metric_value(&m, "vigie_stream_lagged_total{kind=\"sse\"}"),
        0.0
    );
    drop(s);
    // The server notices the closed connection at its next write at the latest.
    eventually(PATIENCE, "the SSE client is no longer counted", || async {
        srv.publish(&low(a, 3_000));
        let m = srv.metrics().await;
        (metric_value(&m, "vigie_stream_clients{kind=\"sse\"}") == 0.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn sse_requires_a_valid_key() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let (status, body) = sse_error(&srv, "", None, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, body) = sse_error(&srv, "", Some("vk_not_a_key"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, _) = sse_error(&srv, "?access_token=vk_not_a_key", None, None).await;
    assert_eq!(status, 401);
    let resp = reqwest::Client::new()
        .get(srv.url("/v1/alerts/stream"))
        .header("authorization", format!("Basic {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    // A valid key in a header that is malformed is not rescued by the query.
    let resp = reqwest::Client::new()
        .get(srv.url(&format!("/v1/alerts/stream?access_token={key}")))
        .header("authorization", "Bearer vk_not_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // Unauthenticated requests with bad parameters learn nothing about them.
    let (status, _) = sse_error(&srv, "?min_level=urgent", Some("vk_nope"), None).await;
    assert_eq!(status, 401);

    // The query token works (browsers' EventSource cannot set headers).
    let mut s = sse(&srv, &format!("?access_token={key}"), None, None).await;
    let ev = low(a, 1);
    srv.publish(&ev);
    s.expect(&[ev]).await;
}

#[tokio::test]
async fn sse_streams_are_isolated_between_orgs() {
    let db = TestDb::new().await;
    let (a, key_a) = org(&db, "acme").await;
    let (b, key_b) = org(&db, "globex").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let mut sa = sse(&srv, "", Some(&key_a), None).await;
    let mut sb = sse(&srv, &format!("?access_token={key_b}"), None, None).await;
    let (mut for_a, mut for_b) = (Vec::new(), Vec::new());
    for v in 1..=20u64 {
        let (owner, list) = if v % 3 == 0 {
            (b, &mut for_b)
        } else {
            (a, &mut for_a)
        };
        let ev = alert(owner, v, AlertType::CriticalMention, Level::Critical);
        srv.publish(&ev);
        list.push(ev);
    }
    // Markers last: a leaked event would show up before them.
    let (ma, mb) = (low(a, 100), low(b, 100));
    srv.publish(&ma);
    srv.publish(&mb);
    for_a.push(ma);
    for_b.push(mb);
    sa.expect(&for_a).await;
    sb.expect(&for_b).await;
    // Resuming does not cross organisations either.
    let mut rb = sse(&srv, "", Some(&key_b), Some(&eid(&for_a[0]))).await;
    let after: Vec<_> = for_b
        .iter()
        .filter(|e| e.version > for_a[0].version)
        .cloned()
        .collect();
    rb.expect(&after).await;
    let marker = low(b, 200);
    srv.publish(&low(a, 200));
    srv.publish(&marker);
    rb.expect(&[marker]).await;
}

#[tokio::test]
async fn sse_filters_by_level_and_type_and_rejects_bad_values() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let srv = Server::start(&db, HubConfig::default()).await;

    for (query, field) in [
        ("?min_level=urgent", "min_level"),
        ("?min_level=", "min_level"),
        ("?type=volume_spike,meltdown", "type"),
        ("?type=critical_mention&type=nope", "type"),
        ("?last_event_id=yesterday", "last_event_id"),
        ("?last_event_id=12-not-a-uuid", "last_event_id"),
    ] {
        let (status, body) = sse_error(&srv, query, Some(&key), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_parameter", "{query}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, body) = sse_error(&srv, "", Some(&key), Some("not-an-id")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("Last-Event-ID")),
        "{body}"
    );

    let queries = [
        "?min_level=medium",
        "?type=volume_spike,sentiment_dip",
        "?type=critical_mention&type=volume_spike&min_level=CRITICAL",
        "?type=sentiment_dip&min_level=low",
    ];
    let mut streams = Vec::new();
    for q in queries {
        streams.push(sse(&srv, q, Some(&key), None).await);
    }
    let mut all = Vec::new();
    let mut v = 0;
    for kind in AlertType::ALL {
        for level in Level::ALL {
            v += 1;
            all.push(alert(a, v, kind, level));
        }
    }
    // A marker that passes every filter but the last, then one for the last.
    all.push(alert(a, 100, AlertType::VolumeSpike, Level::Critical));
    all.push(alert(a, 101, AlertType::SentimentDip, Level::Low));
    for ev in &all {
        srv.publish(ev);
    }
    let keeps: [fn(&AlertEvent) -> bool; 4] = [
        |e| e.level >= Level::Medium,
        |e| matches!(e.kind, AlertType::VolumeSpike | AlertType::SentimentDip),
        |e| {
            e.level == Level::Critical
                && matches!(e.kind, AlertType::CriticalMention | AlertType::VolumeSpike)
        },
        |e| e.kind == AlertType::SentimentDip,
    ];
    for ((s, keep), q) in streams.iter_mut().zip(keeps).zip(queries) {
        let want: Vec<_> = all.iter().filter(|e| keep(e)).cloned().collect();
        assert!(!want.is_empty() && want.len() < all.len(), "{q}");
        let last = want.last().unwrap().version;
        assert!(last >= 100, "{q}: the test needs a marker at the end");
        s.expect(&want).await;
    }
}

#[tokio::test]
async fn sse_resumes_from_the_ring_without_gap_or_duplicate() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let (b, _) = org(&db, "globex").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let mut evs = Vec::new();
    for v in 1..=6u64 {
        let ev = low(a, v * 10);
        srv.publish(&ev);
        srv.publish(&low(b, v * 10 + 1));
        evs.push(ev);
    }
    // Header.
    let mut s = sse(&srv, "", Some(&key), Some(&eid(&evs[1]))).await;
    s.expect(&evs[2..]).await;
    let live = low(a, 100);
    srv.publish(&live);
    s.expect(std::slice::from_ref(&live)).await;
    // Query parameter, for clients that cannot set headers.
    let mut q = sse(
        &srv,
        &format!("?last_event_id={}", eid(&evs[3])),
        Some(&key),
        None,
    )
    .await;
    q.expect(&evs[4..]).await;
    q.expect(std::slice::from_ref(&live)).await;
    // The header (an EventSource reconnecting) wins over the URL's original resume point.
    let mut h = sse(
        &srv,
        &format!("?last_event_id={}", eid(&evs[0])),
        Some(&key),
        Some(&eid(&evs[4])),
    )
    .await;
    h.expect(&[evs[5].clone(), live.clone()]).await;
    // A resume point in the future sends nothing old, then live events.
    let mut f = sse(&srv, "", Some(&key), Some(&eid(&live))).await;
    let next = low(a, 110);
    srv.publish(&next);
    f.expect(std::slice::from_ref(&next)).await;
    let m = srv.metrics().await;
    assert_eq!(
        metric_value(&m, "vigie_stream_backfill_events_total{source=\"ring\"}"),
        4.0 + 3.0 + 2.0
    );
    assert_eq!(
        metric_value(
            &m,
            "vigie_stream_backfill_events_total{source=\"clickhouse\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn sse_resumes_from_clickhouse_once_the_ring_no_longer_covers_it() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let (b, _) = org(&db, "globex").await;
    let cfg = HubConfig {
        ring_size: 4,
        ..HubConfig::default()
    };
    let srv = Server::start(&db, cfg).await;
    // Versions 1..=20, several alerts sharing a version (ordered by id then), both orgs,
    // every level and type; the sink wrote them all, the hub published those from 11 on.
    let mut all = Vec::new();
    for v in 1..=20u64 {
        let n = if v % 4 == 0 { 3 } else { 1 };
        for i in 0..n {
            let kind = AlertType::ALL[(v as usize + i) % 3];
            let level = Level::ALL[(v as usize / 2 + i) % 3];
            all.push(alert(a, v, kind, level));
        }
        all.push(alert(b, v, AlertType::VolumeSpike, Level::Critical));
    }
    let all = sorted(all);
    store(&db, &all).await;
    for ev in all.iter().filter(|e| e.version >= 11) {
        srv.publish(ev);
    }
    let mine: Vec<_> = all.iter().filter(|e| e.org_id == a).cloned().collect();
    let from = mine.iter().position(|e| e.version == 4).unwrap() + 1; // inside version 4
    let cursor = eid(&mine[from - 1]);

    let mut s = sse(&srv, "", Some(&key), Some(&cursor)).await;
    s.expect(&mine[from..]).await;
    let live = low(a, 21);
    srv.publish(&live);
    s.expect(std::slice::from_ref(&live)).await;

    // Filters apply to the ClickHouse part too.
    let q = "?min_level=medium&type=volume_spike,critical_mention";
    let mut f = sse(&srv, q, Some(&key), Some(&cursor)).await;
    let want: Vec<_> = mine[from..]
        .iter()
        .filter(|e| e.level >= Level::Medium && e.kind != AlertType::SentimentDip)
        .cloned()
        .collect();
    assert!(want.len() > 3);
    f.expect(&want).await;
    let marker = alert(a, 22, AlertType::CriticalMention, Level::Critical);
    srv.publish(&low(a, 22));
    srv.publish(&marker);
    f.expect(&[marker]).await;

    let m = srv.metrics().await;
    assert!(
        metric_value(
            &m,
            "vigie_stream_backfill_events_total{source=\"clickhouse\"}"
        ) > 0.0
    );
    assert!(metric_value(&m, "vigie_stream_backfill_events_total{source=\"ring\"}") > 0.0);
}

#[tokio::test]
async fn sse_resume_after_a_restart_reads_clickhouse_then_skips_live_duplicates() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    // A fresh hub: the ring is empty, everything older is in ClickHouse.
    let srv = Server::start(&db, HubConfig::default()).await;
    let stored: Vec<_> = (1..=10u64).map(|v| low(a, v)).collect();
    store(&db, &stored).await;
    let mut s = sse(&srv, "", Some(&key), Some(&eid(&stored[4]))).await;
    s.expect(&stored[5..]).await;
    // Already sent by the backfill (the sink wrote it before the hub published it): skipped.
    srv.publish(&stored[8]);
    srv.publish(&stored[9]);
    let next = low(a, 11);
    srv.publish(&next);
    s.expect(std::slice::from_ref(&next)).await;
}

#[tokio::test]
async fn sse_resume_beyond_the_backfill_limit_reports_lag_and_can_continue() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let cfg = HubConfig {
        max_backfill: 5,
        ..HubConfig::default()
    };
    let srv = Server::start(&db, cfg).await;
    let stored: Vec<_> = (1..=12u64).map(|v| low(a, v)).collect();
    store(&db, &stored).await;

    let mut s = sse(&srv, "", Some(&key), Some(&eid(&stored[0]))).await;
    s.expect(&stored[1..6]).await;
    let f = s.frame().await;
    assert_eq!(f.event.as_deref(), Some("lagged"), "{f:?}");
    assert_eq!(
        f.id, None,
        "a lag notice must not move the client's Last-Event-ID"
    );
    let lag: Value = serde_json::from_str(&f.data).unwrap();
    assert_eq!(lag["missed"], 6, "{lag}");
    assert_eq!(lag["last_event_id"], eid(&stored[5]));
    // Live events still flow after the notice.
    let live = low(a, 100);
    srv.publish(&live);
    s.expect(std::slice::from_ref(&live)).await;

    // Resuming from the notice's id continues where the backfill stopped.
    let mut r = sse(&srv, "", Some(&key), Some(&eid(&stored[5]))).await;
    r.expect(&stored[6..11]).await;
    let f = r.frame().await;
    assert_eq!(f.event.as_deref(), Some("lagged"), "{f:?}");
    let lag: Value = serde_json::from_str(&f.data).unwrap();
    assert_eq!(lag["missed"], 2, "{lag}"); // stored[11] and the live one (ring)
    let mut r = sse(&srv, "", Some(&key), Some(&eid(&stored[10]))).await;
    r.expect(&[stored[11].clone(), live.clone()]).await;
    let m = srv.metrics().await;
    assert_eq!(
        metric_value(&m, "vigie_stream_lagged_total{kind=\"sse\"}"),
        2.0
    );
}

// ---------------------------------------------------------------------------------------
// Slow consumers

#[tokio::test]
async fn a_slow_consumer_neither_blocks_publish_nor_delays_others_and_is_told_it_lagged() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let cfg = HubConfig {
        broadcast_capacity: 16,
        ..HubConfig::default()
    };
    let srv = Server::start(&db, cfg).await;

    // Slow clients: connected, never read. Their socket buffers fill, then they lag.
    let slow_sse = sse(&srv, "", Some(&key), None).await;
    let slow_ws = ws(&srv, "", Some(&key)).await;

    // Fast clients, read continuously; they report every frame they get.
    let (fast_tx, mut fast_rx) = mpsc::unbounded_channel::<(&'static str, String)>();
    let mut fast_sse = sse(&srv, "", Some(&key), None).await;
    let tx = fast_tx.clone();
    tokio::spawn(async move {
        while let Some(f) = fast_sse.try_frame().await {
            let tag = f.event.clone().unwrap_or_default();
            let _ = tx.send(("sse", format!("{tag}:{}", f.id.unwrap_or_default())));
        }
    });
    let mut fast_ws = ws(&srv, "", Some(&key)).await;
    let tx = fast_tx;
    tokio::spawn(async move {
        loop {
            let m = ws_next(&mut fast_ws).await;
            let id = m["id"].as_str().unwrap_or_default().to_string();
            let _ = tx.send(("ws", format!("{}:{id}", m["type"].as_str().unwrap())));
        }
    });

    // ~16 MB of alerts: far more than the slow clients' socket buffers hold. Published in
    // batches the fast clients keep up with (half the broadcast capacity).
    let big = "x".repeat(8 * 1024);
    let total = 2_000u64;
    let mut published = Vec::new();
    let mut in_publish = Duration::ZERO;
    let mut slowest_batch = Duration::ZERO;
    for batch in 0..total / 8 {
        let started = Instant::now();
        for i in 0..8 {
            let mut ev = low(a, batch * 8 + i + 1);
            ev.message = big.clone();
            let t = Instant::now();
            srv.publish(&ev);
            in_publish += t.elapsed();
            published.push(format!("alert:{}", eid(&ev)));
        }
        let mut got = (0, 0);
        while got != (8, 8) {
            let (who, frame) = tokio::time::timeout(PATIENCE, fast_rx.recv())
                .await
                .expect("a fast client was delayed")
                .unwrap();
            let n = if who == "sse" { &mut got.0 } else { &mut got.1 };
            let want = &published[published.len() - 8 + *n];
            assert_eq!(&frame, want, "{who} client, batch {batch}");
            *n += 1;
        }
        slowest_batch = slowest_batch.max(started.elapsed());
    }
    assert!(
        in_publish < Duration::from_secs(5),
        "publishing {total} alerts took {in_publish:?}"
    );
    eprintln!("publish total {in_publish:?}, slowest batch round trip {slowest_batch:?}");

    // The slow clients now read: a lag notice, then the stream continues to the end.
    let last = published.last().unwrap().clone();
    let mut slow_sse = slow_sse;
    let mut lags = 0;
    let mut prev: Option<String> = None;
    loop {
        let f = slow_sse.frame().await;
        if f.event.as_deref() == Some("lagged") {
            let lag: Value = serde_json::from_str(&f.data).unwrap();
            assert!(lag["missed"].as_u64().unwrap() > 0, "{lag}");
            assert_eq!(lag["last_event_id"].as_str(), prev.as_deref(), "{lag}");
            lags += 1;
            continue;
        }
        let tag = format!("alert:{}", f.id.clone().unwrap());
        let pos = published.iter().position(|p| *p == tag).unwrap();
        if let Some(p) = &prev {
            let before = published
                .iter()
                .position(|x| *x == format!("alert:{p}"))
                .unwrap();
            assert!(pos > before, "out of order or duplicate");
        }
        prev = f.id;
        if tag == last {
            break;
        }
    }
    assert!(lags >= 1, "the slow SSE client was never told it lagged");

    let mut slow_ws = slow_ws;
    let mut ws_lags = 0;
    loop {
        let m = ws_next(&mut slow_ws).await;
        if m["type"] == "lagged" {
            assert!(m["missed"].as_u64().unwrap() > 0, "{m}");
            ws_lags += 1;
        } else if format!("alert:{}", m["id"].as_str().unwrap()) == last {
            break;
        }
    }
    assert!(
        ws_lags >= 1,
        "the slow WebSocket client was never told it lagged"
    );

    let m = srv.metrics().await;
    assert!(metric_value(&m, "vigie_stream_lagged_total{kind=\"sse\"}") >= 1.0);
    assert!(metric_value(&m, "vigie_stream_lagged_total{kind=\"ws\"}") >= 1.0);
    assert!(metric_value(&m, "vigie_stream_lagged_events_total{kind=\"sse\"}") > 0.0);
}

// ---------------------------------------------------------------------------------------
// WebSocket

#[tokio::test]
async fn ws_requires_a_valid_key_and_an_upgrade() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let (status, body) = ws_connect(&srv, "", None).await.err().unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, _) = ws_connect(&srv, "", Some("vk_not_a_key"))
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let (status, _) = ws_connect(&srv, "?access_token=vk_nope", None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let (status, body) = ws_connect(&srv, "?min_level=urgent", Some(&key))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("min_level")),
        "{body}"
    );
    let (status, body) = ws_connect(&srv, "?last_event_id=x", Some(&key))
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("last_event_id")),
        "{body}"
    );
    // Plain HTTP on the WebSocket route.
    let resp = reqwest::Client::new()
        .get(srv.url("/v1/alerts/ws"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 426);
    let resp = reqwest::get(srv.url("/v1/alerts/ws")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let mut w = ws(&srv, &format!("?access_token={key}"), None).await;
    let ev = low(a, 1);
    srv.publish(&ev);
    ws_expect(&mut w, &[ev]).await;
}

#[tokio::test]
async fn ws_isolates_orgs_and_filters() {
    let db = TestDb::new().await;
    let (a, key_a) = org(&db, "acme").await;
    let (b, key_b) = org(&db, "globex").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let mut wa = ws(&srv, "", Some(&key_a)).await;
    let mut wb = ws(&srv, &format!("?access_token={key_b}"), None).await;
    let mut wa_crit = ws(&srv, "?min_level=critical&type=sentiment_dip", Some(&key_a)).await;
    let mut all = Vec::new();
    let mut v = 0;
    for owner in [a, b] {
        for kind in AlertType::ALL {
            for level in Level::ALL {
                v += 1;
                all.push(alert(owner, v, kind, level));
            }
        }
    }
    // Interleave the organisations, then markers for each.
    all.sort_by_key(|e| (e.version % 9, e.org_id == b));
    for (i, ev) in all.iter_mut().enumerate() {
        ev.version = i as u64 + 1;
    }
    all.push(alert(a, 100, AlertType::SentimentDip, Level::Critical));
    all.push(alert(b, 100, AlertType::SentimentDip, Level::Critical));
    for ev in &all {
        srv.publish(ev);
    }
    let of = |o: Uuid| {
        all.iter()
            .filter(|e| e.org_id == o)
            .cloned()
            .collect::<Vec<_>>()
    };
    ws_expect(&mut wa, &of(a)).await;
    ws_expect(&mut wb, &of(b)).await;
    let crit: Vec<_> = of(a)
        .into_iter()
        .filter(|e| e.level == Level::Critical && e.kind == AlertType::SentimentDip)
        .collect();
    assert_eq!(crit.len(), 2);
    ws_expect(&mut wa_crit, &crit).await;
}

#[tokio::test]
async fn ws_resumes_from_the_ring_and_from_clickhouse() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let (b, _) = org(&db, "globex").await;
    let cfg = HubConfig {
        ring_size: 3,
        ..HubConfig::default()
    };
    let srv = Server::start(&db, cfg).await;
    let mut all = Vec::new();
    for v in 1..=10u64 {
        all.push(low(a, v));
        all.push(low(b, v));
    }
    let all = sorted(all);
    store(&db, &all).await;
    for ev in all.iter().filter(|e| e.version >= 5) {
        srv.publish(ev);
    }
    let mine: Vec<_> = all.iter().filter(|e| e.org_id == a).cloned().collect();
    // From ClickHouse (version 2 is long out of the three-event ring), then the ring.
    let mut w = ws(
        &srv,
        &format!("?last_event_id={}", eid(&mine[1])),
        Some(&key),
    )
    .await;
    ws_expect(&mut w, &mine[2..]).await;
    // From the ring only.
    let mut r = ws(
        &srv,
        &format!("?last_event_id={}", eid(&mine[8])),
        Some(&key),
    )
    .await;
    ws_expect(&mut r, &mine[9..]).await;
    let live = low(a, 11);
    srv.publish(&live);
    ws_expect(&mut w, std::slice::from_ref(&live)).await;
    ws_expect(&mut r, std::slice::from_ref(&live)).await;
    let m = srv.metrics().await;
    assert!(
        metric_value(
            &m,
            "vigie_stream_backfill_events_total{source=\"clickhouse\"}"
        ) > 0.0
    );
}

#[tokio::test]
async fn ws_answers_pings_and_closes() {
    let db = TestDb::new().await;
    let (_, key) = org(&db, "acme").await;
    let srv = Server::start(&db, HubConfig::default()).await;
    let mut w = ws(&srv, "", Some(&key)).await;
    w.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            match w.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                // The server's own keep-alive pings.
                Some(Ok(Message::Ping(_))) => continue,
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await
    .expect("a pong in time");
    assert_eq!(&pong[..], b"are you there");
    assert_eq!(
        metric_value(&srv.metrics().await, "vigie_stream_clients{kind=\"ws\"}"),
        1.0
    );
    w.close(None).await.unwrap();
    let end = tokio::time::timeout(PATIENCE, async {
        loop {
            match w.next().await {
                Some(Ok(Message::Close(_))) | None => return,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("after close: {e}"),
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the server did not answer the close");
    eventually(
        PATIENCE,
        "the WebSocket client is no longer counted",
        || async {
            let m = srv.metrics().await;
            (metric_value(&m, "vigie_stream_clients{kind=\"ws\"}") == 0.0).then_some(())
        },
    )
    .await;
    let m = srv.metrics().await;
    assert_eq!(
        metric_value(&m, "vigie_stream_dropped_clients_total{kind=\"ws\"}"),
        0.0
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let db = TestDb::new().await;
    let (a, key) = org(&db, "acme").await;
    let mut srv = Server::start(&db, HubConfig::default()).await;
    let mut s = sse(&srv, "", Some(&key), None).await;
    let mut w = ws(&srv, "", Some(&key)).await;
    let ev = low(a, 1);
    srv.publish(&ev);
    s.expect(std::slice::from_ref(&ev)).await;
    ws_expect(&mut w, std::slice::from_ref(&ev)).await;
    srv.shutdown().await;
    assert_eq!(s.try_frame().await, None, "the SSE stream did not end");
    let close = tokio::time::timeout(PATIENCE, async {
        loop {
            match w.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Ping(_))) => continue,
                other => panic!("expected a close, got {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame in time");
    assert_eq!(close, Some(1001));
}

#[tokio::test]
async fn vigie_run_serves_the_streams_and_stops_with_clients_connected() {
    let db = TestDb::new().await;
    let (_, key) = org(&db, "acme").await;
    let v = Vigie::start(&db, &[]);
    let resp = reqwest::Client::new()
        .get(v.url("/v1/alerts/stream?min_level=medium"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut s = Sse {
        body: Box::pin(resp.bytes_stream()),
        buf: Vec::new(),
    };
    let ws_url = v.url("/v1/alerts/ws").replacen("http://", "ws://", 1);
    let (mut w, _) = tokio_tungstenite::connect_async(format!("{ws_url}?access_token={key}"))
        .await
        .expect("WebSocket on vigie run");
    let m = metrics_text(&v).await;
    assert_eq!(metric_value(&m, "vigie_stream_clients{kind=\"sse\"}"), 1.0);
    assert_eq!(metric_value(&m, "vigie_stream_clients{kind=\"ws\"}"), 1.0);
    // SIGTERM: open streams must not hold the graceful shutdown.
    let status = tokio::task::spawn_blocking(move || v.stop()).await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(s.try_frame().await, None);
    let end = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(m)) = w.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the WebSocket was not closed");
}
