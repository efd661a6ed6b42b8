//! End-to-end load: a generated corpus is posted over HTTP to a real `vigie run` and timed
//! until it is **visible in ClickHouse** (mentions, trends and alerts: every epoch below
//! `vigie_committed_epoch`), beside two references measured in the same run on the same
//! corpus — ClickHouse's own insert ceiling and a Python baseline of the original design.
//!
//! ```text
//! cargo build --release -p vigie-pipeline -p vigie-benches
//! VIGIE_TEST_CLICKHOUSE_URL=http://127.0.0.1:18123 target/release/e2e --mentions 1000000
//! ```
//!
//! Phases (each prints its own table row):
//! 1. **max**: the corpus posted by `--connections` (8) concurrent clients in NDJSON
//!    batches of `--batch` (1,000) mentions, as fast as vigie acknowledges them.
//! 2. **half** (`--then-half`): a fresh corpus of the same size at half the rate phase 1
//!    made visible — where freshness is judged.
//! 3. **incremental vs recompute**: 20 corrections of stored mentions, each timed until its
//!    trend rows are in ClickHouse; then the trends recomputed from scratch with SQL over
//!    `mentions FINAL`, timed, and checked equal to vigie's (`verify::trends_match`).
//!    With `--idle SECS`, SECS later with nothing to do: the process's RSS beside
//!    what its allocator holds (`vigie_allocator_*`); the same view is printed after a
//!    recovery, for a process that restored the same state instead of living through the
//!    load.
//! 4. **recovery** (`--recover`): vigie is killed (SIGKILL) and started again on the same
//!    data dir; time until it listens, and until a mention posted then is in ClickHouse
//!    (with everything acknowledged before: the committed epoch is a frontier). With
//!    `--under-load N`, N more mentions are posted at the max rate first and the kill
//!    comes as the last is acknowledged, while ClickHouse still lags. The stored count
//!    is then checked: every acknowledged mention once.
//! 5. **ceiling** (unless `--no-ceiling`): the phase-1 mentions, scored beforehand, inserted
//!    as `mentions` rows (RowBinary, batches of 100,000, 2 concurrent inserts) into a table
//!    of the same shape.
//! 6. **baseline** (unless `--no-baseline`): `benches/baseline/vader_worker.py` on the
//!    phase-1 corpus: one Python process scoring each mention with `vaderSentiment` and
//!    inserting batches of 5,000 rows of the same shape (the original design's worker).
//!
//! Freshness is ack → visible: the 202's `epoch` against `vigie_committed_epoch`, polled
//! every 20 ms. Alert latency is from the epoch of the update that raised an alert (the
//! alert's `version`: the wall-clock millisecond its epoch closed, before the log's fsync)
//! to the webhook's arrival at a receiver on 127.0.0.1, for the alerts the corpus's viral
//! complaints raise.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::Value;
use uuid::Uuid;
use vigie_benches::harness::{
    add_source, at_least_one, cli, clickhouse_pid, cpu_seconds, create_org, pct, receiver,
    rss_bytes, Arrivals, Target, Vigie,
};
use vigie_pipeline::gen::{Feed, Generator};
use vigie_sinks::clickhouse::rows::MentionRow;

/// End-to-end load against a real `vigie run`, beside ClickHouse's insert ceiling and a
/// Python baseline on the same corpus (benches/README.md).
#[derive(Debug, Parser)]
#[command(name = "e2e")]
struct Opts {
    #[command(flatten)]
    target: Target,
    /// Mentions per phase.
    #[arg(long, default_value_t = 1_000_000, value_parser = at_least_one())]
    mentions: usize,
    /// Mentions per NDJSON request.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one())]
    batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8, value_parser = at_least_one())]
    connections: usize,
    /// Organisations (three sources each).
    #[arg(long, default_value_t = 20, value_parser = at_least_one())]
    orgs: usize,
    /// `vigie run --workers`.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    workers: usize,
    /// Post the max phase at this many mentions/s instead of as fast as acknowledged.
    #[arg(long, value_name = "MENTIONS_PER_SEC")]
    rate: Option<f64>,
    /// Python interpreter of the baseline.
    #[arg(long, default_value = "python3")]
    python: String,
    /// A second phase of the same size at half the max phase's visible rate.
    #[arg(long)]
    then_half: bool,
    /// Seconds to wait after the load before reading the process's memory.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    idle: u64,
    /// Kill vigie (SIGKILL) and time its recovery on the same data dir.
    #[arg(long)]
    recover: bool,
    /// With --recover: post this many more mentions at the max rate and kill vigie as
    /// the last is acknowledged.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "recover")]
    under_load: usize,
    /// Skip ClickHouse's insert ceiling.
    #[arg(long)]
    no_ceiling: bool,
    /// Skip the Python baseline.
    #[arg(long)]
    no_baseline: bool,
}

const KEYWORDS: &str = "acme,nimbus,veloce,lumio,kestrel,orbea";

/// One request's worth of mentions.
struct Batch {
    feed: usize,
    body: String,
    n: usize,
}

struct Corpus {
    batches: Vec<Batch>,
    /// Mention id → batch index (for alert latency).
    batch_of: HashMap<u128, u32>,
    mentions: usize,
}

fn generate(gen: &mut Generator, feeds: &[Feed], n: usize, batch: usize) -> Corpus {
    let mut open: Vec<(String, usize, Vec<u128>)> =
        vec![(String::new(), 0, Vec::new()); feeds.len()];
    let mut batches = Vec::with_capacity(n / batch + feeds.len());
    let mut batch_of = HashMap::with_capacity(n);
    let close = |f: usize,
                 b: &mut (String, usize, Vec<u128>),
                 batches: &mut Vec<Batch>,
                 batch_of: &mut HashMap<u128, u32>| {
        let idx = batches.len() as u32;
        for id in b.2.drain(..) {
            batch_of.insert(id, idx);
        }
        batches.push(Batch {
            feed: f,
            body: std::mem::take(&mut b.0),
            n: std::mem::take(&mut b.1),
        });
    };
    for _ in 0..n {
        let (f, v) = gen.next(feeds);
        let id = Uuid::parse_str(v["id"].as_str().unwrap())
            .unwrap()
            .as_u128();
        let b = &mut open[f];
        b.0.push_str(&v.to_string());
        b.0.push('\n');
        b.1 += 1;
        b.2.push(id);
        if b.1 >= batch {
            close(f, b, &mut batches, &mut batch_of);
        }
    }
    for (f, b) in open.iter_mut().enumerate() {
        if b.1 > 0 {
            close(f, b, &mut batches, &mut batch_of);
        }
    }
    Corpus {
        batches,
        batch_of,
        mentions: n,
    }
}

#[derive(Default)]
struct Phase {
    name: String,
    mentions: usize,
    asked_rate: Option<f64>,
    ack_secs: f64,
    visible_secs: f64,
    refused: u64,
    fresh_ms: Vec<f64>,
    alert_ms: Vec<f64>,
    rss_max: u64,
    rss_end: u64,
    cpu_cores: f64,
    /// The ClickHouse server's CPU over the same time, when it runs on this machine.
    ch_cores: Option<f64>,
    ch_rows: u64,
    /// vigie's own latency histograms over the phase: what of the alert latency is
    /// inside vigie, and how slow its log's fsyncs were.
    server: String,
}

impl Phase {
    fn visible_rate(&self) -> f64 {
        self.mentions as f64 / self.visible_secs
    }
}

/// The value of an unlabelled metric in `/metrics` text.
fn metric<T: std::str::FromStr>(metrics: &str, name: &str) -> Option<T> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory beside what the allocator holds, from `/metrics`: RSS, the bytes
/// mimalloc has mapped, and its pages.
fn memory_view(metrics: &str) -> String {
    let mib = |name: &str| metric::<f64>(metrics, name).unwrap_or(0.0) / (1u64 << 20) as f64;
    format!(
        "RSS {:.0} MiB, allocator committed {:.0} MiB in {} pages ({} abandoned)",
        mib("process_resident_memory_bytes"),
        mib("vigie_allocator_committed_bytes"),
        metric::<u64>(metrics, "vigie_allocator_pages").unwrap_or(0),
        metric::<u64>(metrics, "vigie_allocator_pages_abandoned").unwrap_or(0)
    )
}

/// A histogram's cumulative bucket counts in `/metrics` text, by upper bound, then its count.
fn histogram(metrics: &str, name: &str) -> (Vec<(String, u64)>, u64) {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets = metrics
        .lines()
        .filter_map(|l| {
            let (le, n) = l.strip_prefix(&prefix)?.split_once("\"} ")?;
            Some((le.to_string(), n.trim().parse().ok()?))
        })
        .collect();
    (
        buckets,
        metric(metrics, &format!("{name}_count")).unwrap_or(0),
    )
}

/// How many of a histogram's observations between two `/metrics` texts were above
/// 50, 100 and 250 ms, as "N (> 50 ms: a, > 100 ms: b, > 250 ms: c)".
fn slow_share(before: &str, after: &str, name: &str) -> String {
    let ((b0, n0), (b1, n1)) = (histogram(before, name), histogram(after, name));
    let n = n1.saturating_sub(n0);
    let under = |le: &str| {
        let at = |b: &[(String, u64)]| b.iter().find(|(l, _)| l == le).map_or(0, |x| x.1);
        at(&b1).saturating_sub(at(&b0))
    };
    format!(
        "{n} (> 50 ms: {}, > 100 ms: {}, > 250 ms: {})",
        n - under("0.05").min(n),
        n - under("0.1").min(n),
        n - under("0.25").min(n)
    )
}

fn committed_epoch(metrics: &str) -> Option<u64> {
    metric(metrics, "vigie_committed_epoch")
}

/// vigie's `/metrics` text.
async fn metrics(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .expect("vigie answers /metrics")
        .text()
        .await
        .unwrap_or_default()
}

/// Mentions stored in ClickHouse (`mentions FINAL`).
async fn stored_mentions(http: &reqwest::Client, ch: &str, db: &str) -> u64 {
    ch_query(
        http,
        ch,
        &format!("SELECT count() FROM {db}.mentions FINAL"),
    )
    .await
    .trim()
    .parse()
    .unwrap_or(0)
}

/// Waits until every epoch up to `epoch` is in ClickHouse (polling `/metrics` every `every`).
async fn wait_committed(http: &reqwest::Client, base: &str, epoch: u64, every: Duration) {
    loop {
        if committed_epoch(&metrics(http, base).await).is_some_and(|c| c > epoch) {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// Posts `corpus` over `connections` clients as fast as vigie acknowledges it (503s
/// retried); returns the newest epoch acknowledged.
async fn post_all(
    http: &reqwest::Client,
    base: &str,
    keys: &[String],
    corpus: Corpus,
    connections: usize,
) -> u64 {
    let batches = Arc::new(corpus.batches);
    let next = Arc::new(AtomicUsize::new(0));
    let newest = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (batches, next, newest) = (batches.clone(), next.clone(), newest.clone());
            let (http, base, keys) = (http.clone(), base.to_string(), keys.to_vec());
            tokio::spawn(async move {
                while let Some(b) = batches.get(next.fetch_add(1, Relaxed)) {
                    loop {
                        let r = http
                            .post(format!("{base}/v1/mentions"))
                            .bearer_auth(&keys[b.feed])
                            .header("content-type", "application/x-ndjson")
                            .body(b.body.clone())
                            .send()
                            .await
                            .expect("posting");
                        if r.status() == 202 {
                            let v: Value = r.json().await.unwrap_or_default();
                            newest.fetch_max(v["epoch"].as_u64().expect("an epoch"), Relaxed);
                            break;
                        }
                        assert_eq!(r.status(), 503, "{}", r.text().await.unwrap_or_default());
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a posting task");
    }
    newest.load(Relaxed)
}

async fn ch_query(http: &reqwest::Client, url: &str, sql: &str) -> String {
    let r = http
        .post(url)
        .body(sql.to_string())
        .send()
        .await
        .expect("ClickHouse answers");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "{sql}: {text}");
    text
}

async fn inserted_rows(http: &reqwest::Client, url: &str) -> u64 {
    ch_query(
        http,
        url,
        "SELECT value FROM system.events WHERE event = 'InsertedRows'",
    )
    .await
    .trim()
    .parse()
    .unwrap_or(0)
}

/// Acknowledged batches not yet visible: epoch → (ack instant, mentions).
type Pending = Arc<Mutex<BTreeMap<u64, Vec<(Instant, usize)>>>>;

struct Run<'a> {
    http: reqwest::Client,
    ch: &'a str,
    keys: &'a [String],
    connections: usize,
    hooks: Arrivals,
}

impl Run<'_> {
    /// Posts `corpus` (at `rate` mentions/s, or as fast as acknowledged) and waits until
    /// all of it is visible in ClickHouse.
    async fn phase(&self, name: &str, vigie: &Vigie, corpus: &Corpus, rate: Option<f64>) -> Phase {
        let base = vigie.base.clone();
        let next = Arc::new(AtomicUsize::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let pending: Pending = Arc::default();
        // (key, body, mentions, mentions before it).
        let mut before = 0usize;
        let batches: Arc<Vec<(String, String, usize, usize)>> = Arc::new(
            corpus
                .batches
                .iter()
                .map(|b| {
                    before += b.n;
                    (self.keys[b.feed].clone(), b.body.clone(), b.n, before - b.n)
                })
                .collect(),
        );
        let rows_before = inserted_rows(&self.http, self.ch).await;
        let cpu_before = cpu_seconds(vigie.pid());
        let ch_pid = clickhouse_pid(self.ch);
        let ch_cpu_before = ch_pid.map(cpu_seconds);
        let metrics_before = metrics(&self.http, &base).await;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..self.connections {
            let (next, acked, refused, pending, batches, base, http) = (
                next.clone(),
                acked.clone(),
                refused.clone(),
                pending.clone(),
                batches.clone(),
                base.clone(),
                self.http.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    let Some((key, body, n, before)) = batches.get(i) else {
                        return;
                    };
                    if let Some(rate) = rate {
                        // Batch i leaves when the mentions before it are due.
                        let due = started + Duration::from_secs_f64(*before as f64 / rate.max(1.0));
                        tokio::time::sleep_until(due.into()).await;
                    }
                    loop {
                        let resp = http
                            .post(format!("{base}/v1/mentions"))
                            .bearer_auth(key)
                            .header("content-type", "application/x-ndjson")
                            .body(body.clone())
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status() == 202 => {
                                let now = Instant::now();
                                let v: Value = r.json().await.unwrap_or_default();
                                assert_eq!(v["accepted"].as_u64(), Some(*n as u64), "{v}");
                                let epoch = v["epoch"].as_u64().expect("a 202 names its epoch");
                                pending
                                    .lock()
                                    .unwrap()
                                    .entry(epoch)
                                    .or_default()
                                    .push((now, *n));
                                acked.fetch_add(*n as u64, Relaxed);
                                break;
                            }
                            Ok(r) if r.status() == 503 => {
                                refused.fetch_add(1, Relaxed);
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Ok(r) => panic!(
                                "HTTP {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            ),
                            Err(e) => panic!("posting: {e}"),
                        }
                    }
                }
            }));
        }
        let total = corpus.mentions as u64;
        let pid = vigie.pid();
        let (mut visible, mut fresh_ms) = (0u64, Vec::with_capacity(corpus.batches.len()));
        let (mut rss_max, mut ack_secs) = (0u64, 0.0);
        let mut last_print = Instant::now();
        let mut last_visible = (Instant::now(), 0u64);
        let mut visible_secs = 0.0;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let acked_now = acked.load(Relaxed);
            if acked_now == total && ack_secs == 0.0 {
                ack_secs = started.elapsed().as_secs_f64();
            }
            let Ok(metrics) = self.http.get(format!("{base}/metrics")).send().await else {
                continue;
            };
            let Some(committed) = committed_epoch(&metrics.text().await.unwrap_or_default()) else {
                continue;
            };
            let now = Instant::now();
            {
                let mut p = pending.lock().unwrap();
                let rest = p.split_off(&committed);
                for (_, acks) in std::mem::replace(&mut *p, rest) {
                    for (at, n) in acks {
                        fresh_ms.push((now - at).as_secs_f64() * 1000.0);
                        visible += n as u64;
                    }
                }
            }
            if visible == total {
                visible_secs = started.elapsed().as_secs_f64();
            }
            if last_print.elapsed() >= Duration::from_secs(1) || visible == total {
                let rss = rss_bytes(pid);
                rss_max = rss_max.max(rss);
                let dt = last_visible.0.elapsed().as_secs_f64();
                eprintln!(
                    "[{name} {:>5.1}s] acked {acked_now:>9} visible {visible:>9} ({:>7.0}/s now) RSS {:>6.0} MiB CPU {:.2} cores{}",
                    started.elapsed().as_secs_f64(),
                    (visible - last_visible.1) as f64 / dt,
                    rss as f64 / 1048576.0,
                    (cpu_seconds(pid) - cpu_before) / started.elapsed().as_secs_f64(),
                    if refused.load(Relaxed) > 0 { format!(", {} × 503", refused.load(Relaxed)) } else { String::new() },
                );
                last_print = Instant::now();
                last_visible = (Instant::now(), visible);
            }
            if visible == total {
                break;
            }
        }
        for t in tasks {
            t.await.expect("a poster panicked");
        }
        let cpu_cores = (cpu_seconds(pid) - cpu_before) / visible_secs;
        let ch_cores = ch_pid
            .zip(ch_cpu_before)
            .map(|(p, before)| (cpu_seconds(p) - before) / visible_secs);
        let ch_rows = inserted_rows(&self.http, self.ch).await - rows_before;
        // Alerts raised by this corpus: from the epoch of the update that raised each (its
        // `version`, the wall-clock time the epoch closed) to the webhook's arrival.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut alert_ms: Vec<f64> = self
            .hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|(id, _)| {
                Uuid::parse_str(id).is_ok_and(|id| corpus.batch_of.contains_key(&id.as_u128()))
            })
            .map(|(_, a)| a.wall_ms.saturating_sub(a.version) as f64)
            .collect();
        fresh_ms.sort_by(f64::total_cmp);
        alert_ms.sort_by(f64::total_cmp);
        let metrics_after = metrics(&self.http, &base).await;
        let server = format!(
            "triggering epoch → alert handed to the push side (vigie_alert_latency_seconds): {}; log append + fsync per epoch (vigie_wal_sync_seconds): {}",
            slow_share(&metrics_before, &metrics_after, "vigie_alert_latency_seconds"),
            slow_share(&metrics_before, &metrics_after, "vigie_wal_sync_seconds"),
        );
        Phase {
            name: name.into(),
            mentions: corpus.mentions,
            asked_rate: rate,
            ack_secs,
            visible_secs,
            refused: refused.load(Relaxed),
            fresh_ms,
            alert_ms,
            rss_max,
            rss_end: rss_bytes(pid),
            cpu_cores,
            ch_cores,
            ch_rows,
            server,
        }
    }
}

fn scored_row(org: Uuid, v: &Value, version: u64) -> MentionRow {
    let text = v["text"].as_str().unwrap_or_default();
    let s = vigie_udfs::score(text, &vigie_udfs::ScoreConfig::default());
    let created = time::OffsetDateTime::parse(
        v["created_at"].as_str().unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_or(0, |t| t.unix_timestamp());
    let lower = text.to_lowercase();
    let mut emotions: Vec<(f32, &str)> =
        s.emotions.present().map(|(e, w)| (w, e.as_str())).collect();
    emotions.sort_by(|a, b| b.0.total_cmp(&a.0));
    MentionRow {
        org_id: org,
        id: Uuid::parse_str(v["id"].as_str().unwrap_or_default()).unwrap_or_default(),
        source_id: Uuid::parse_str(v["source_id"].as_str().unwrap_or_default()).unwrap_or_default(),
        text: text.into(),
        author: v["author"].as_str().unwrap_or_default().into(),
        url: v["url"].as_str().unwrap_or_default().into(),
        created_at: created as u32,
        created_at_us: 0,
        likes: v["likes"].as_u64().unwrap_or(0),
        shares: v["shares"].as_u64().unwrap_or(0),
        replies: v["replies"].as_u64().unwrap_or(0),
        author_followers: v["author_followers"].as_u64().unwrap_or(0),
        lang: s.lang.as_str().into(),
        sentiment: s.sentiment.label as i8,
        sentiment_score: s.sentiment.score,
        confidence: s.sentiment.confidence,
        emotions: emotions.into_iter().map(|(_, e)| e.into()).collect(),
        virality_score: 0.0,
        keywords: KEYWORDS
            .split(',')
            .filter(|k| lower.contains(k))
            .map(String::from)
            .collect::<Vec<_>>()
            .into(),
        story_id: 0,
        analyzed_at: (version / 1000) as u32,
        version,
    }
}

/// ClickHouse's insert ceiling: pre-scored rows of `mentions`' shape, RowBinary, batched.
async fn ceiling(ch: &str, db: &str, rows: Vec<MentionRow>) -> (usize, f64) {
    let http = reqwest::Client::new();
    ch_query(
        &http,
        ch,
        &format!("CREATE TABLE {db}.ceiling_mentions AS {db}.mentions"),
    )
    .await;
    let client = clickhouse::Client::default()
        .with_url(ch)
        .with_database(db)
        .with_validation(false);
    let n = rows.len();
    let chunks: Vec<Vec<MentionRow>> = {
        let mut it = rows.into_iter().peekable();
        let mut out = Vec::new();
        while it.peek().is_some() {
            out.push(it.by_ref().take(100_000).collect());
        }
        out
    };
    let queue = Arc::new(Mutex::new(chunks));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (queue, client) = (queue.clone(), client.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(chunk) = queue.lock().unwrap().pop() else {
                    return;
                };
                let mut insert = client
                    .insert::<MentionRow>("ceiling_mentions")
                    .await
                    .expect("insert");
                for r in &chunk {
                    insert.write(r).await.expect("row");
                }
                insert.end().await.expect("insert end");
            }
        }));
    }
    for t in tasks {
        t.await.expect("inserter");
    }
    (n, started.elapsed().as_secs_f64())
}

/// Incremental vs recompute: `k` corrections of stored mentions (new text, so new scores),
/// each timed from its post until its trend rows are in ClickHouse; then the trends
/// recomputed from scratch over `mentions FINAL` with plain SQL (the oracle of the tests),
/// timed, and compared with what vigie keeps.
async fn corrections(
    http: &reqwest::Client,
    vigie: &Vigie,
    keys: &[String],
    corpus: &Corpus,
    ch: &str,
    db: &str,
    k: usize,
) -> (Vec<f64>, f64, Result<usize, String>) {
    let mut took = Vec::new();
    for b in corpus
        .batches
        .iter()
        .step_by((corpus.batches.len() / k).max(1))
        .take(k)
    {
        let mut v: Value = serde_json::from_str(b.body.lines().next().unwrap()).unwrap();
        v["text"] = Value::String(format!(
            "{} — edit: awful, broken, never again 😡",
            v["text"].as_str().unwrap_or_default()
        ));
        let sent = Instant::now();
        let r = http
            .post(format!("{}/v1/mentions", vigie.base))
            .bearer_auth(&keys[b.feed])
            .json(&v)
            .send()
            .await
            .expect("posting a correction");
        assert_eq!(r.status(), 202);
        let epoch = r.json::<Value>().await.unwrap()["epoch"].as_u64().unwrap();
        wait_committed(http, &vigie.base, epoch, Duration::from_millis(2)).await;
        took.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    let started = Instant::now();
    let rows = vigie_pipeline::verify::sorted_rows(
        http,
        ch,
        db,
        vigie_pipeline::verify::TRENDS_ORACLE_SQL,
    )
    .await
    .expect("recomputing trends");
    let recompute = started.elapsed().as_secs_f64();
    eprintln!("recompute: {} trend rows", rows.len());
    let matched = vigie_pipeline::verify::trends_match(http, ch, db).await;
    (took, recompute, matched)
}

fn fmt_ms(v: &[f64]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    format!(
        "{:.0} / {:.0} / {:.0} ms",
        pct(v, 0.5),
        pct(v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
}

#[tokio::main]
async fn main() {
    let opts = Opts::parse();
    let Target {
        vigie,
        clickhouse: ch,
    } = opts.target;
    let (n, batch, connections, orgs) = (opts.mentions, opts.batch, opts.connections, opts.orgs);
    let (workers, rate, python) = (opts.workers.to_string(), opts.rate, opts.python);
    let db = format!("vigie_e2e_{}", Uuid::new_v4().simple());
    let http = reqwest::Client::new();

    eprintln!("setting up {orgs} organisations × 3 sources in {db}");
    cli(&vigie, &ch, &db, &["migrate"]);
    let mut feeds = Vec::new();
    let mut keys = Vec::new();
    let mut org_ids = Vec::new();
    let hooks: Arrivals = Arc::default();
    let hook_url = receiver(hooks.clone()).await;
    for o in 0..orgs {
        let (org_id, key) = create_org(&vigie, &ch, &db, &format!("bench-{o}"));
        let mut sources = Vec::new();
        for kind in [("twitter", "x"), ("reddit", "r"), ("news", "n")] {
            let s = add_source(&vigie, &ch, &db, &org_id, kind, KEYWORDS);
            sources.push(Uuid::parse_str(&s).unwrap());
        }
        cli(
            &vigie,
            &ch,
            &db,
            &[
                "webhook", "add", "--org", &org_id, "--url", &hook_url, "--json",
            ],
        );
        feeds.push(Feed {
            key: key.clone(),
            sources,
        });
        keys.push(key);
        org_ids.push(Uuid::parse_str(&org_id).unwrap());
    }

    eprintln!("generating {n} mentions");
    let mut gen = Generator::live(7, 30.0);
    let corpus = generate(&mut gen, &feeds, n, batch);
    let second = opts.then_half.then(|| generate(&mut gen, &feeds, n, batch));
    let bytes: usize = corpus.batches.iter().map(|b| b.body.len()).sum();
    eprintln!(
        "{} batches, {:.0} bytes per mention on the wire",
        corpus.batches.len(),
        bytes as f64 / n as f64
    );

    let data_dir = std::env::temp_dir().join(format!("vigie-e2e-{}", Uuid::new_v4().simple()));
    let extra = ["--workers", workers.as_str()];
    let run = Run {
        http: http.clone(),
        ch: &ch,
        keys: &keys,
        connections,
        hooks: hooks.clone(),
    };
    let mut vigie_run = Vigie::start(&vigie, &ch, &db, &data_dir, &extra);
    let mut phases = vec![run.phase("max", &vigie_run, &corpus, rate).await];
    if let Some(second) = &second {
        let half = phases[0].visible_rate() / 2.0;
        hooks.lock().unwrap().clear();
        phases.push(run.phase("half", &vigie_run, second, Some(half)).await);
    }
    let stored = stored_mentions(&http, &ch, &db).await;
    let expected = phases.iter().map(|p| p.mentions as u64).sum::<u64>();
    assert_eq!(stored, expected, "mentions in ClickHouse");

    eprintln!("corrections, then the trends recomputed over {expected} mentions");
    let (corrected, recompute, matched) =
        corrections(&http, &vigie_run, &keys, &corpus, &ch, &db, 20).await;

    // What checkpoints cost the dataflow over the phases and corrections (before any kill).
    let checkpoints = {
        let m = metrics(&http, &vigie_run.base).await;
        let value = |name: &str| metric::<f64>(&m, name).unwrap_or(0.0);
        // Per stage: `vigie_checkpoint_stall_seconds_total{stage="…"} secs`.
        let stalls: Vec<(String, f64)> = m
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("vigie_checkpoint_stall_seconds_total{stage=\"")?;
                let (stage, v) = rest.split_once("\"} ")?;
                Some((stage.to_string(), v.trim().parse().ok()?))
            })
            .collect();
        (
            stalls,
            value("vigie_checkpoint_write_seconds_total"),
            value("vigie_checkpoint_parts_total"),
        )
    };
    // With `--idle SECS`: what the process holds once the load is over (`memory_view`).
    let idle_secs = opts.idle;
    let idle = if idle_secs > 0 {
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        Some(memory_view(&metrics(&http, &vigie_run.base).await))
    } else {
        None
    };
    let mut recovery = None;
    let mut backlog = None;
    if opts.recover {
        // With `--under-load N`: N more mentions posted at the max rate, and the kill
        // the moment the last is acknowledged, while ClickHouse lags behind.
        let burst = opts.under_load;
        if burst > 0 {
            let b = generate(&mut gen, &feeds, burst, batch);
            let newest = post_all(&http, &vigie_run.base, &keys, b, connections).await;
            let committed = committed_epoch(&metrics(&http, &vigie_run.base).await).unwrap_or(0);
            backlog = Some((burst, newest.saturating_sub(committed)));
        }
        vigie_run.kill();
        let t0 = Instant::now();
        vigie_run = Vigie::start(&vigie, &ch, &db, &data_dir, &extra);
        let listening = t0.elapsed().as_secs_f64();
        let probe = generate(&mut gen, &feeds, 1, 1);
        let b = &probe.batches[0];
        let epoch = loop {
            let r = http
                .post(format!("{}/v1/mentions", vigie_run.base))
                .bearer_auth(&keys[b.feed])
                .header("content-type", "application/x-ndjson")
                .body(b.body.clone())
                .send()
                .await
                .expect("posting the probe");
            if r.status() == 202 {
                break r.json::<Value>().await.unwrap()["epoch"].as_u64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let acked = t0.elapsed().as_secs_f64();
        wait_committed(&http, &vigie_run.base, epoch, Duration::from_millis(20)).await;
        let caught_up = t0.elapsed().as_secs_f64();
        let m = metrics(&http, &vigie_run.base).await;
        let gauge = |name: &str| metric::<u64>(&m, name).unwrap_or(0);
        let restored = (
            gauge("vigie_restored_checkpoint"),
            gauge("vigie_replayed_records"),
        );
        let stored = stored_mentions(&http, &ch, &db).await;
        let want = expected + backlog.map_or(0, |b| b.0 as u64) + 1;
        assert_eq!(
            stored, want,
            "after recovery, every acknowledged mention once"
        );
        recovery = Some((
            listening,
            acked,
            caught_up,
            rss_bytes(vigie_run.pid()),
            restored,
            memory_view(&m),
        ));
    }
    vigie_run.kill();
    let _ = std::fs::remove_dir_all(&data_dir);

    let ceiling_result = if opts.no_ceiling {
        None
    } else {
        let version = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let rows: Vec<MentionRow> = corpus
            .batches
            .iter()
            .flat_map(|b| {
                let org = org_ids[b.feed];
                b.body
                    .lines()
                    .map(move |l| (org, serde_json::from_str::<Value>(l).unwrap()))
                    .collect::<Vec<_>>()
            })
            .map(|(org, v)| scored_row(org, &v, version))
            .collect();
        eprintln!("ceiling: inserting {} pre-scored rows", rows.len());
        Some(ceiling(&ch, &db, rows).await)
    };

    let baseline = if opts.no_baseline {
        None
    } else {
        let path = std::env::temp_dir().join(format!(
            "vigie-e2e-corpus-{}.ndjson",
            Uuid::new_v4().simple()
        ));
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for b in &corpus.batches {
                for l in b.body.lines() {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    v["org_id"] = Value::String(org_ids[b.feed].to_string());
                    writeln!(f, "{v}").unwrap();
                }
            }
        }
        eprintln!("baseline: {python} benches/baseline/vader_worker.py on {n} mentions");
        let out = std::process::Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/baseline/vader_worker.py"
            ))
            .args(["--clickhouse", &ch, "--database", &db, "--input"])
            .arg(&path)
            .output()
            .expect("running the Python baseline");
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "baseline: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("the baseline prints JSON");
        Some((
            v["mentions"].as_u64().unwrap_or(0),
            v["seconds"].as_f64().unwrap_or(f64::NAN),
        ))
    };

    println!();
    println!("corpus: {n} mentions per phase, {orgs} organisations × 3 sources, NDJSON batches of {batch}, {connections} connections, vigie --workers {workers}");
    println!("| phase | mentions | asked | acked in | visible in | visible mentions/s | ack → visible p50 / p99 / max | triggering epoch → webhook p50 / p99 / max (alerts) | vigie RSS max / end | vigie CPU | ClickHouse CPU | ClickHouse rows/s | 503s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &phases {
        println!(
            "| {} | {} | {} | {:.1} s | {:.1} s | **{:.0}** | {} | {} ({}) | {:.0} / {:.0} MiB | {:.2} cores ({:.1} µs per mention) | {} | {:.0} | {} |",
            p.name,
            p.mentions,
            p.asked_rate.map_or("max".into(), |r| format!("{r:.0}/s")),
            p.ack_secs,
            p.visible_secs,
            p.visible_rate(),
            fmt_ms(&p.fresh_ms),
            fmt_ms(&p.alert_ms),
            p.alert_ms.len(),
            p.rss_max as f64 / 1048576.0,
            p.rss_end as f64 / 1048576.0,
            p.cpu_cores,
            p.cpu_cores * p.visible_secs * 1e6 / p.mentions as f64,
            p.ch_cores.map_or("—".into(), |c| format!(
                "{c:.2} cores ({:.1} µs per mention)",
                c * p.visible_secs * 1e6 / p.mentions as f64
            )),
            p.ch_rows as f64 / p.visible_secs,
            p.refused
        );
    }
    for p in &phases {
        println!("{} phase, inside vigie: {}", p.name, p.server);
    }
    let vigie_rate = phases[0].visible_rate();
    println!(
        "incremental vs recompute: a correction reaches the trend rows in ClickHouse in p50 {:.0} / max {:.0} ms ({} corrections, post → committed); recomputing the trends over all {expected} mentions with SQL (mentions FINAL) takes **{recompute:.1} s**; vigie's trends equal that recompute: {}",
        pct(&corrected, 0.5),
        corrected.last().copied().unwrap_or(f64::NAN),
        corrected.len(),
        match &matched {
            Ok(rows) => format!("yes ({rows} rows)"),
            Err(e) => format!("NO: {e}"),
        }
    );
    let (stalls, written, parts) = checkpoints;
    if parts > 0.0 {
        let stall: f64 = stalls.iter().map(|(_, s)| s).sum();
        let by_stage: Vec<String> = stalls
            .iter()
            .map(|(stage, s)| format!("{stage} {:.0}", s * 1e3))
            .collect();
        println!(
            "checkpoints: {parts:.0} parts written; the dataflow's operators spent {:.0} ms at boundaries ({:.2} ms per part; by stage, ms: {}), the writer thread {:.0} ms writing and syncing",
            stall * 1e3,
            stall * 1e3 / parts,
            by_stage.join(", "),
            written * 1e3
        );
    }
    if let Some(view) = idle {
        println!("{idle_secs} s after the load, idle: {view}");
    }
    if let Some((listening, acked, caught_up, rss, (label, replayed), view)) = recovery {
        let from = if label > 0 {
            format!("restored from the checkpoint of {label}, {replayed} records replayed")
        } else {
            format!("no checkpoint, the whole log replayed ({replayed} records)")
        };
        let load = backlog.map_or(String::new(), |(n, ms)| {
            format!(", killed right after the last of {n} more mentions posted at the max rate was acknowledged, ClickHouse {ms} ms behind")
        });
        println!(
            "recovery with {expected} mentions of history{load} ({from}): listening after {listening:.2} s, a new mention acked after {acked:.2} s and in ClickHouse (with everything acknowledged before the kill) after **{caught_up:.2} s**; RSS then {:.0} MiB; every acknowledged mention stored once",
            rss as f64 / 1048576.0
        );
        println!("after recovery: {view}");
    }
    if let Some((rows, secs)) = ceiling_result {
        let r = rows as f64 / secs;
        println!(
            "ClickHouse insert ceiling: {rows} pre-scored mention rows in {secs:.1} s = **{r:.0} rows/s**; vigie / ceiling = **{:.2}**",
            vigie_rate / r
        );
    }
    if let Some((rows, secs)) = baseline {
        let r = rows as f64 / secs;
        println!(
            "Python baseline (vaderSentiment, batches of 5,000): {rows} mentions in {secs:.1} s = **{r:.0} mentions/s**; vigie / baseline = **{:.2}**",
            vigie_rate / r
        );
    }
    let _ = ch_query(&http, &ch, &format!("DROP DATABASE IF EXISTS {db}")).await;
}
