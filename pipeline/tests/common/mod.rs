//! Test support: a fresh ClickHouse database per test (dropped after), the real `vigie`
//! binary started on a random loopback port, and polling helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;
use vigie_sinks::clickhouse::{migrations, ClickHouseConfig};

/// ClickHouse used by tests: `VIGIE_TEST_CLICKHOUSE_URL`, default the local server.
pub fn clickhouse_url() -> String {
    std::env::var("VIGIE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A database created for one test and dropped when the test ends.
pub struct TestDb {
    pub cfg: ClickHouseConfig,
}

impl TestDb {
    /// Creates and migrates a database with a random name.
    pub async fn new() -> TestDb {
        let name = format!("vigie_test_{}", Uuid::new_v4().simple());
        let cfg = ClickHouseConfig {
            url: clickhouse_url(),
            database: name,
            ..ClickHouseConfig::default()
        };
        migrations::migrate(&cfg)
            .await
            .expect("migrating the test database (is ClickHouse running? see README)");
        TestDb { cfg }
    }

    /// Creates an empty database (no schema).
    pub async fn empty() -> TestDb {
        let name = format!("vigie_test_{}", Uuid::new_v4().simple());
        let cfg = ClickHouseConfig {
            url: clickhouse_url(),
            database: name,
            ..ClickHouseConfig::default()
        };
        cfg.server_client()
            .query(&format!("CREATE DATABASE {}", cfg.database))
            .execute()
            .await
            .expect("creating a database");
        TestDb { cfg }
    }

    pub fn name(&self) -> &str {
        &self.cfg.database
    }

    pub fn client(&self) -> clickhouse::Client {
        self.cfg.client()
    }

    /// Runs `vigie <args…>` against this database and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_vigie"))
            .args([
                "--clickhouse-url",
                &self.cfg.url,
                "--database",
                self.name(),
                "--log",
                "warn",
            ])
            .args(args)
            .output()
            .expect("running vigie");
        assert!(
            out.status.success(),
            "vigie {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// `vigie org create NAME --json` → (org id, ingest key).
    pub fn create_org(&self, name: &str) -> (Uuid, String) {
        let v: Value = serde_json::from_str(&self.cli(&["org", "create", name, "--json"])).unwrap();
        (
            v["org_id"].as_str().unwrap().parse().unwrap(),
            v["ingest_key"].as_str().unwrap().to_string(),
        )
    }

    /// `vigie rules set --org ORG --json RULES`.
    pub fn set_rules(&self, org: Uuid, rules: &str) {
        self.cli(&["rules", "set", "--org", &org.to_string(), "--json", rules]);
    }

    /// `vigie source add … --json` → source id.
    pub fn add_source(&self, org: Uuid, name: &str) -> Uuid {
        let org = org.to_string();
        let out = self.cli(&[
            "source",
            "add",
            "--org",
            &org,
            "--type",
            "reddit",
            "--name",
            name,
            "--keywords",
            "acme,nimbus",
            "--json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["source_id"].as_str().unwrap().parse().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        migrations::drop_database_blocking(&self.cfg);
    }
}

/// A running `vigie run`, killed when dropped.
pub struct Vigie {
    child: Child,
    pub base: String,
    pub data_dir: std::path::PathBuf,
    keep_data_dir: bool,
}

/// A fresh temporary data directory.
pub fn temp_data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vigie-test-{}", Uuid::new_v4().simple()))
}

impl Vigie {
    /// Starts `vigie run` on a random port against `db`, with extra args and a fresh data dir.
    pub fn start(db: &TestDb, extra: &[&str]) -> Vigie {
        let mut v = Vigie::start_in(db, &temp_data_dir(), extra);
        v.keep_data_dir = false;
        v
    }

    /// Starts `vigie run` against `db` but through `url` (e.g. a [`Proxy`]).
    pub fn start_via(db: &TestDb, url: &str, extra: &[&str]) -> Vigie {
        let mut v = Vigie::spawn(url, db.name(), &temp_data_dir(), extra);
        v.keep_data_dir = false;
        v
    }

    /// Starts `vigie run` with the given data dir, which outlives the process.
    pub fn start_in(db: &TestDb, data_dir: &std::path::Path, extra: &[&str]) -> Vigie {
        Vigie::spawn(&db.cfg.url, db.name(), data_dir, extra)
    }

    fn spawn(url: &str, database: &str, data_dir: &std::path::Path, extra: &[&str]) -> Vigie {
        let data_dir = data_dir.to_path_buf();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigie"))
            .args([
                "--clickhouse-url",
                url,
                "--database",
                database,
                "--log",
                "warn",
            ])
            .args([
                "run",
                "--listen",
                "127.0.0.1:0",
                "--catalog-ttl-ms",
                "200",
                "--flush-interval-ms",
                "50",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting vigie run");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("vigie exited before listening")
                .unwrap();
            if let Some(url) = line.strip_prefix("vigie listening on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Vigie {
            child,
            base,
            data_dir,
            keep_data_dir: true,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The process id of `vigie run`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash.
    pub fn crash(mut self) {
        self.child.kill().expect("killing vigie");
        self.child.wait().expect("reaping vigie");
    }

    /// Sends SIGTERM and waits for a clean exit (drains everything to ClickHouse).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vigie did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The body of `GET /metrics`.
pub async fn metrics_text(v: &Vigie) -> String {
    reqwest::get(v.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

/// The value of an unlabelled metric in a Prometheus text body.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// The status of `GET path`.
pub async fn status_of(v: &Vigie, path: &str) -> u16 {
    reqwest::get(v.url(path))
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// POSTs a body to `/v1/mentions` → (status, JSON answer).
pub async fn post(
    v: &Vigie,
    key: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(v.url("/v1/mentions"))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("posting");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A valid wire record.
pub fn mention(id: Uuid, source: Uuid, text: &str, created_at: &str) -> Value {
    serde_json::json!({"id": id, "source_id": source, "text": text, "author": "@tester",
        "url": format!("https://example.com/p/{id}"), "created_at": created_at, "likes": 3, "shares": 1})
}

/// Records as an NDJSON body.
pub fn ndjson(records: &[Value]) -> String {
    records.iter().map(|r| r.to_string() + "\n").collect()
}

pub use vigie_pipeline::verify::{TRENDS_ORACLE_SQL, TRENDS_SQL};

/// Runs `sql` over ClickHouse's HTTP interface and returns the rows as JSON arrays.
pub async fn rows(db: &TestDb, sql: &str) -> Vec<Value> {
    let resp = reqwest::Client::new()
        .post(format!("{}/?database={}", db.cfg.url, db.name()))
        .body(format!("{sql} FORMAT JSONCompact"))
        .send()
        .await
        .expect("querying ClickHouse");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{sql}: {text}");
    let v: Value = serde_json::from_str(&text).expect("JSONCompact");
    // ClickHouse quotes 64-bit integers but not narrower ones; compare everything as text.
    let cell = |c: &Value| match c {
        Value::Number(n) => Value::String(n.to_string()),
        other => other.clone(),
    };
    v["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    Value::Array(
                        r.as_array()
                            .map(|cs| cs.iter().map(cell).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One number from a query; no row reads as 0 (e.g. no trend row yet = no mentions).
pub async fn scalar(db: &TestDb, sql: &str) -> f64 {
    let r = rows(db, sql).await;
    let Some(v) = r.first().map(|row| &row[0]) else {
        return 0.0;
    };
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{sql}: {v}"))
}

/// One organisation of a workload: name, id, key, sources.
pub struct Tenant {
    pub name: String,
    pub org: Uuid,
    pub key: String,
    pub sources: Vec<Uuid>,
}

/// Creates `orgs` organisations with `sources` sources each.
pub fn tenants(db: &TestDb, orgs: usize, sources: usize) -> Vec<Tenant> {
    (0..orgs)
        .map(|i| {
            let name = format!("org{i}");
            let (org, key) = db.create_org(&name);
            let sources = (0..sources)
                .map(|j| db.add_source(org, &format!("src{i}_{j}")))
                .collect();
            Tenant {
                name,
                org,
                key,
                sources,
            }
        })
        .collect()
}

const TEXTS: &[&str] = &[
    "I love this, amazing product 😍",
    "worst support ever, totally useless 😡",
    "Anyone tried the new version?",
    "J'adore, vraiment génial !",
    "Franchement c'est nul, très déçu",
    "not bad at all, quite good actually",
    "the update is terrible and the app crashes",
    "Livraison reçue hier.",
    "so happy with my purchase #win",
    "scared this will break again, afraid of losing data",
];

/// A random stream of inserts, re-scores (same id, new text), identical re-posts and
/// deletions, with event times spread over 40 days and arriving out of order. Returns the
/// ids that must be stored at the end (as strings, sorted). Deterministic for a seed.
pub async fn random_workload(v: &Vigie, tenants: &[Tenant], seed: u64, ops: usize) -> Vec<String> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    let mut rng = StdRng::seed_from_u64(seed);
    let base: i64 = 1_790_000_000; // 2026-09-21
    let mut live: BTreeMap<Uuid, (usize, Value)> = BTreeMap::new();
    let mut done = 0;
    let client = reqwest::Client::new();
    while done < ops {
        let t = rng.random_range(0..tenants.len());
        let n = rng.random_range(1..40).min(ops - done);
        let mut batch = Vec::new();
        for _ in 0..n {
            let roll = rng.random_range(0..100);
            let existing: Vec<Uuid> = live
                .iter()
                .filter(|(_, (ti, _))| *ti == t)
                .map(|(id, _)| *id)
                .collect();
            if roll < 15 && !existing.is_empty() {
                // Re-score: same id, new text and time.
                let id = existing[rng.random_range(0..existing.len())];
                let src = tenants[t].sources[rng.random_range(0..tenants[t].sources.len())];
                let ts = base + rng.random_range(0..40 * 86_400);
                let rec = mention(
                    id,
                    src,
                    TEXTS[rng.random_range(0..TEXTS.len())],
                    &rfc3339(ts),
                );
                live.insert(id, (t, rec.clone()));
                batch.push(rec);
            } else if roll < 25 && !existing.is_empty() {
                // Identical re-post.
                let id = existing[rng.random_range(0..existing.len())];
                batch.push(live[&id].1.clone());
            } else if roll < 38 && !existing.is_empty() {
                // Delete (flush the batch first so order is kept).
                if !batch.is_empty() {
                    post_ok(&client, v, &tenants[t].key, &batch).await;
                    batch.clear();
                }
                let id = existing[rng.random_range(0..existing.len())];
                let resp = client
                    .delete(v.url(&format!("/v1/mentions/{id}")))
                    .bearer_auth(&tenants[t].key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 202);
                live.remove(&id);
            } else {
                let id = Uuid::from_u128(rng.random());
                let src = tenants[t].sources[rng.random_range(0..tenants[t].sources.len())];
                let ts = base + rng.random_range(0..40 * 86_400);
                let mut rec = mention(
                    id,
                    src,
                    TEXTS[rng.random_range(0..TEXTS.len())],
                    &rfc3339(ts),
                );
                rec["shares"] = Value::from(rng.random_range(0..500u64));
                live.insert(id, (t, rec.clone()));
                batch.push(rec);
            }
            done += 1;
        }
        if !batch.is_empty() {
            post_ok(&client, v, &tenants[t].key, &batch).await;
        }
    }
    live.keys().map(|id| id.to_string()).collect()
}

async fn post_ok(client: &reqwest::Client, v: &Vigie, key: &str, batch: &[Value]) {
    let resp = client
        .post(v.url("/v1/mentions"))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(batch))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

/// RFC 3339 for seconds since the epoch.
pub fn rfc3339(secs: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

/// Waits until `mentions FINAL` holds exactly `ids`.
pub async fn wait_for_ids(db: &TestDb, ids: &[String]) {
    eventually(
        Duration::from_secs(60),
        "mentions FINAL equals the expected ids",
        || async {
            let got: Vec<String> = rows(db, "SELECT toString(id) FROM mentions FINAL ORDER BY id")
                .await
                .into_iter()
                .map(|r| r[0].as_str().unwrap().to_string())
                .collect();
            let mut want = ids.to_vec();
            want.sort();
            let mut got_sorted = got.clone();
            got_sorted.sort();
            (got_sorted == want).then_some(())
        },
    )
    .await;
}

/// Waits until `trends_current` equals the SQL recompute over `mentions FINAL`; on timeout,
/// fails showing the rows that differ.
pub async fn assert_trends_match_oracle(db: &TestDb, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut got = rows(db, TRENDS_SQL).await;
        let mut want = rows(db, TRENDS_ORACLE_SQL).await;
        got.sort_by_key(|r| r.to_string());
        want.sort_by_key(|r| r.to_string());
        if got == want {
            return got;
        }
        if Instant::now() > deadline {
            let key = |r: &Value| r.as_array().map(|c| c[..4].to_vec()).unwrap_or_default();
            let text = |r: Option<&Value>| r.map_or("(none)".to_string(), |r| r.to_string());
            let diffs: Vec<String> = got
                .iter()
                .filter(|r| !want.contains(r))
                .take(5)
                .map(|r| {
                    format!(
                        "trends_current: {}\nrecompute:      {}",
                        r,
                        text(want.iter().find(|w| key(w) == key(r)))
                    )
                })
                .collect();
            let missing: Vec<String> = want
                .iter()
                .filter(|w| !got.iter().any(|g| key(g) == key(w)))
                .take(5)
                .map(|w| w.to_string())
                .collect();
            panic!(
                "trends_current ({} rows) != recompute over mentions ({} rows)\n{}\nmissing from trends_current: {missing:?}",
                got.len(),
                want.len(),
                diffs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wall-clock seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A wire record at event time `t` (seconds) with `shares` shares, from an account of 300
/// followers: widely shared ones are viral on engagement alone.
pub fn shared_record(source: Uuid, text: &str, t: i64, shares: u64) -> Value {
    serde_json::json!({"id": Uuid::new_v4(), "source_id": source, "text": text, "author": "@a",
        "url": "https://forum.example/t/1", "created_at": rfc3339(t), "likes": 2,
        "shares": shares, "author_followers": 300})
}

/// Twenty-five angry, widely shared mentions of one story over the last 15 minutes: a
/// sentiment dip for its keyword and a critical negative viral mention.
pub fn angry_story(source: Uuid, now: i64) -> Vec<Value> {
    (0..25)
        .map(|i| {
            shared_record(
                source,
                "acme support is awful and dangerous, worst company ever",
                now - 900 + i * 30,
                40,
            )
        })
        .collect()
}
