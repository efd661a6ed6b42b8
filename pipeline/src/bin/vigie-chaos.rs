//! The chaos harness: drives a load through a real `vigie run` while killing it with
//! SIGKILL, stopping and restarting the ClickHouse server (or cutting it off at a proxy),
//! and filling the write-ahead log's disk budget; then checks that every acknowledged
//! mention is stored exactly once, that trends equal a recompute, and that no alert was
//! raised twice. `--negative-control` switches idempotence off in vigie and expects the
//! checks to fail (exit 0 when they do).
//!
//! The load behaves like an at-least-once client: a batch is re-sent until acknowledged,
//! and every tenth batch is sent once more after its acknowledgement (a client that timed
//! out reading the answer).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use uuid::Uuid;
use vigie_pipeline::verify;
use vigie_sinks::clickhouse::{catalog, migrations, ClickHouseConfig};

/// Options.
#[derive(Debug, Parser)]
#[command(name = "vigie-chaos", about = "Exactly-once chaos harness for vigie")]
struct Opts {
    /// The vigie binary to run
    #[arg(long, default_value = "target/release/vigie")]
    vigie: PathBuf,
    /// How ClickHouse outages are staged: `restart` runs a private server
    /// (`clickhouse-server` from PATH, data in a temporary directory) and stops it —
    /// alternately SIGTERM and SIGKILL — then starts it again; `cut` uses the server at
    /// `--clickhouse-url` and cuts vigie's connections to it at a proxy
    #[arg(long, value_enum, default_value_t = OutageMode::Restart)]
    outages_by: OutageMode,
    /// ClickHouse to use with `--outages-by cut` (a fresh database is created and dropped)
    #[arg(
        long,
        env = "VIGIE_TEST_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    /// Mentions to acknowledge
    #[arg(long, default_value_t = 1_000_000)]
    mentions: u64,
    /// SIGKILLs of vigie, spread over the load
    #[arg(long, default_value_t = 20)]
    kills: u64,
    /// ClickHouse outages (1–3 s each), spread over the load
    #[arg(long, default_value_t = 3)]
    outages: u64,
    /// Mentions per request
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Concurrent clients
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Every this many restarts, vigie runs with a write-ahead log budget just above its
    /// current size, so the load fills it and gets 503s (0 = never)
    #[arg(long, default_value_t = 3)]
    tight_budget_every: u64,
    /// vigie's timely workers
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Switch idempotence off in vigie and expect the checks to fail
    #[arg(long)]
    negative_control: bool,
    /// Run vigie with its log in the Fluvio cluster whose SC is at this address (a vigie
    /// built with the `fluvio` feature); every restart then gets an empty data dir, so
    /// whatever comes back comes back from Fluvio
    #[arg(long)]
    fluvio: Option<String>,
    /// Keep the database when the checks fail (with `--outages-by cut`), to look into it
    #[arg(long)]
    keep_failed: bool,
}

/// How outages are staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutageMode {
    /// Stop and restart a private ClickHouse server.
    Restart,
    /// Cut connections at a proxy.
    Cut,
}

/// The ClickHouse the run uses, and how it goes away.
enum Outages {
    /// The server, its URL, and the thread stopping it during an outage (a clean stop can
    /// take seconds; the harness goes on meanwhile).
    Restart(
        Arc<Mutex<verify::LocalClickHouse>>,
        String,
        Option<std::thread::JoinHandle<()>>,
    ),
    Cut(verify::CutProxy, String),
}

impl Outages {
    /// Where vigie writes.
    fn vigie_url(&self) -> String {
        match self {
            Outages::Restart(_, url, _) => url.clone(),
            Outages::Cut(proxy, _) => proxy.url.clone(),
        }
    }

    /// Where the checks read (never through the proxy).
    fn check_url(&self) -> String {
        match self {
            Outages::Restart(_, url, _) | Outages::Cut(_, url) => url.clone(),
        }
    }

    /// Starts outage number `n` (from 1): odd ones SIGTERM the server, even ones SIGKILL it.
    fn begin(&mut self, n: u64) {
        match self {
            Outages::Restart(server, _, stopping) => {
                let server = server.clone();
                *stopping = Some(std::thread::spawn(move || {
                    if let Ok(mut s) = server.lock() {
                        s.stop(n.is_multiple_of(2));
                    }
                }));
            }
            Outages::Cut(proxy, _) => proxy.set_up(false),
        }
    }

    /// Ends the outage under way, if any.
    fn end(&mut self) -> anyhow::Result<()> {
        match self {
            Outages::Restart(server, _, stopping) => tokio::task::block_in_place(|| {
                if let Some(stop) = stopping.take() {
                    let _ = stop.join();
                }
                server
                    .lock()
                    .map_err(|_| anyhow::anyhow!("lock"))?
                    .restart()
                    .context("restarting ClickHouse")
            })?,
            Outages::Cut(proxy, _) => proxy.set_up(true),
        }
        Ok(())
    }
}

/// Every `CRITICAL_EVERY`-th mention (at offset `CRITICAL_AT`) is a negative, massively
/// shared post of its own story: it must raise exactly one critical-mention alert.
const CRITICAL_EVERY: u64 = 1_000;
const CRITICAL_AT: u64 = 500;
/// One mention in `LATE_EVERY` is dated anywhere in the 30 days before the load's clock
/// (late for the windows; it still counts in trends).
const LATE_EVERY: u64 = 20;
/// Event time of the load's clock at mention 0; it advances 100 ms per mention.
const T0: i64 = 1_790_000_000;

const TEXTS: &[&str] = &[
    "Just tried the new Acme app and honestly it's amazing 😍",
    "Worst experience with Acme ever, the phone broke after 2 days 😡",
    "Anyone know when the Acme bike ships?",
    "J'adore le nouveau casque Acme !!",
    "Franchement Acme c'est nul, service client injoignable",
    "not bad at all, quite good actually",
];

/// Shared state of the run.
struct Run {
    base: Mutex<Option<String>>,
    next_batch: AtomicU64,
    acked: Mutex<Vec<u64>>,
    acked_count: AtomicU64,
    refused_503: AtomicU64,
    /// Clients start no new batch while this many mentions or more are acknowledged: the
    /// point of the next kill or outage, so the load cannot finish while the controller is
    /// busy (restarting ClickHouse after an outage takes seconds) and skip the faults due.
    hold_at: AtomicU64,
}

/// Bytes of the log, as the running vigie reports them (`vigie_wal_bytes`).
async fn reported_log_bytes(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("vigie_wal_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

/// Bytes of the write-ahead log on disk.
fn wal_bytes(data_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(data_dir.join(vigie_pipeline::app::WAL_DIR))
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn spawn_vigie(
    opts: &Opts,
    vigie_ch_url: &str,
    db: &str,
    data_dir: &std::path::Path,
    budget: u64,
) -> anyhow::Result<(Child, String)> {
    let mut cmd = Command::new(&opts.vigie);
    cmd.args([
        "--clickhouse-url",
        vigie_ch_url,
        "--database",
        db,
        "--log",
        "warn,vigie_pipeline::fluvio_log=info",
    ])
    .args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--catalog-ttl-ms",
        "1000",
        "--flush-interval-ms",
        "100",
    ])
    .args([
        "--workers",
        &opts.workers.to_string(),
        "--wal-segment-bytes",
        &(256u64 << 10).to_string(),
    ])
    .args(["--wal-max-bytes", &budget.to_string()])
    .arg("--data-dir")
    .arg(data_dir)
    .args(opts.fluvio.iter().flat_map(|f| ["--fluvio", f]))
    .args([
        "--fluvio-topic",
        &format!("vigie-chaos-{}", &db[db.len() - 12..]),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if opts.negative_control {
        cmd.env("VIGIE_UNSAFE_IGNORE_CLIENT_IDS", "1");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", opts.vigie.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines.next().context("vigie exited before listening")??;
        if let Some(url) = line.strip_prefix("vigie listening on ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, base))
}

fn is_critical(n: u64) -> bool {
    n % CRITICAL_EVERY == CRITICAL_AT
}

fn record(n: u64, org_salt: u128, sources: &[Uuid]) -> serde_json::Value {
    let critical = is_critical(n);
    // Event times follow the load's clock (±30 s of jitter, well within the lateness), but
    // for one mention in LATE_EVERY, which is up to 30 days old.
    let at = if n % LATE_EVERY == 7 {
        T0 - ((n * 7_919) % (30 * 86_400)) as i64
    } else {
        T0 + (n / 10) as i64 + ((n * 7_919) % 61) as i64 - 30
    };
    json!({
        "id": Uuid::from_u128(org_salt ^ u128::from(n)),
        "source_id": sources[(n % sources.len() as u64) as usize],
        // A critical mention shares its own link: its story is that link, no other's.
        "text": if critical {
            format!("{} https://example.com/m/{n}", TEXTS[1])
        } else {
            TEXTS[(n % TEXTS.len() as u64) as usize].to_string()
        },
        "author": format!("@user{}", n % 997),
        // The url names the logical mention: the checks count by it, so a mention stored
        // under two ids (idempotence broken) shows up as a duplicate. It is also the
        // link critical mentions share.
        "url": format!("https://example.com/m/{n}"),
        "created_at": time::OffsetDateTime::from_unix_timestamp(at)
            .map(|t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default())
            .unwrap_or_default(),
        "likes": n % 40, "shares": if critical { 5_000 } else { n % 7 },
    })
}

async fn client_loop(
    run: Arc<Run>,
    opts_batch: u64,
    target: u64,
    key: String,
    salt: u128,
    sources: Vec<Uuid>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    loop {
        while run.acked_count.load(Ordering::SeqCst) >= run.hold_at.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let b = run.next_batch.fetch_add(1, Ordering::SeqCst);
        if b * opts_batch >= target {
            return;
        }
        let ns: Vec<u64> = (b * opts_batch..((b + 1) * opts_batch).min(target)).collect();
        let body: String = ns
            .iter()
            .map(|n| record(*n, salt, &sources).to_string() + "\n")
            .collect();
        let sends = if b % 10 == 9 { 2 } else { 1 };
        for send in 0..sends {
            loop {
                let base = run.base.lock().ok().and_then(|b| b.clone());
                let Some(base) = base else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let sent = http
                    .post(format!("{base}/v1/mentions"))
                    .bearer_auth(&key)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().as_u16() == 202 => break,
                    Ok(r) if r.status().as_u16() == 503 => {
                        run.refused_503.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if send == 0 {
                run.acked_count.fetch_add(ns.len() as u64, Ordering::SeqCst);
                if let Ok(mut a) = run.acked.lock() {
                    a.extend(&ns);
                }
            }
        }
    }
}

async fn count(http: &reqwest::Client, url: &str, db: &str, sql: &str) -> anyhow::Result<u64> {
    let rows = verify::sorted_rows(http, url, db, sql)
        .await
        .map_err(anyhow::Error::msg)?;
    rows.first()
        .and_then(|r| r.trim().parse().ok())
        .context("a count")
}

/// What the alert checks found.
#[derive(Debug)]
struct AlertCheck {
    /// Rows of `alerts FINAL`.
    rows: u64,
    /// Acknowledged critical mentions …
    critical_acked: u64,
    /// … and how many of them are named by exactly one critical-mention alert.
    critical_alerted: u64,
    /// Alerts stored twice (two rows of one id) plus critical mentions alerted more than once.
    twice: u64,
}

/// Every acknowledged critical mention must be named by exactly one critical-mention alert
/// (a replay raising it again under another id would name it twice), and `alerts FINAL`
/// must hold one row per id. `id_to_n` maps stored mention ids to logical mentions.
async fn check_alerts(
    http: &reqwest::Client,
    url: &str,
    db: &str,
    acked: &[u64],
    id_to_n: &std::collections::HashMap<String, u64>,
) -> anyhow::Result<AlertCheck> {
    let rows = count(http, url, db, "SELECT count() FROM alerts FINAL").await?;
    let ids = count(http, url, db, "SELECT uniqExact(id) FROM alerts FINAL").await?;
    let named = verify::sorted_rows(
        http,
        url,
        db,
        "SELECT toString(arrayJoin(mention_ids)) FROM alerts FINAL WHERE type = 'critical_mention'",
    )
    .await
    .map_err(anyhow::Error::msg)?;
    let mut times: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    for id in named {
        if let Some(n) = id_to_n.get(&id) {
            *times.entry(*n).or_default() += 1;
        }
    }
    let critical: Vec<u64> = acked.iter().copied().filter(|n| is_critical(*n)).collect();
    Ok(AlertCheck {
        rows,
        critical_acked: critical.len() as u64,
        critical_alerted: critical.iter().filter(|n| times.get(n) == Some(&1)).count() as u64,
        twice: (rows - ids) + times.values().filter(|t| **t > 1).count() as u64,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let db = format!("vigie_chaos_{}", Uuid::new_v4().simple());
    let mut outages_of = match opts.outages_by {
        OutageMode::Restart => {
            let dir =
                std::env::temp_dir().join(format!("vigie-chaos-ch-{}", Uuid::new_v4().simple()));
            let server = verify::LocalClickHouse::start(&dir).context(
                "starting a private ClickHouse server (is clickhouse-server installed?)",
            )?;
            let url = server.url.clone();
            Outages::Restart(Arc::new(Mutex::new(server)), url, None)
        }
        OutageMode::Cut => Outages::Cut(
            verify::CutProxy::start(&opts.clickhouse_url).await?,
            opts.clickhouse_url.clone(),
        ),
    };
    let ch = ClickHouseConfig {
        url: outages_of.check_url(),
        database: db.clone(),
        ..ClickHouseConfig::default()
    };
    migrations::migrate(&ch)
        .await
        .context("migrating the chaos database")?;
    let client = ch.client();
    let (org, key) = catalog::create_org(&client, "chaos").await?;
    let mut sources = Vec::new();
    for name in ["reddit", "x", "news"] {
        sources.push(
            catalog::add_source(&client, org.id, 1, name, vec!["acme".into()])
                .await?
                .id,
        );
    }
    let data_dir = std::env::temp_dir().join(format!("vigie-chaos-{}", Uuid::new_v4().simple()));
    let vigie_ch_url = outages_of.vigie_url();

    let run = Arc::new(Run {
        base: Mutex::new(None),
        next_batch: AtomicU64::new(0),
        acked: Mutex::new(Vec::new()),
        acked_count: AtomicU64::new(0),
        refused_503: AtomicU64::new(0),
        hold_at: AtomicU64::new(u64::MAX),
    });
    const ROOMY: u64 = 64 << 30;
    let (mut child, base) = spawn_vigie(&opts, &vigie_ch_url, &db, &data_dir, ROOMY)?;
    *run.base.lock().map_err(|_| anyhow::anyhow!("lock"))? = Some(base);
    let salt = Uuid::new_v4().as_u128() & !0xFFFF_FFFF_FFFF_FFFFu128;
    let clients: Vec<_> = (0..opts.connections)
        .map(|_| {
            tokio::spawn(client_loop(
                run.clone(),
                opts.batch,
                opts.mentions,
                key.clone(),
                salt,
                sources.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let (mut kills, mut outages, mut max_recovery) = (0u64, 0u64, Duration::ZERO);
    let http = reqwest::Client::new();
    let mut last_progress = (0u64, Instant::now());
    let mut outage_ends: Option<Instant> = None;
    let (mut tight_now, mut refused_at_restart) = (false, 0u64);
    let mut restarted_at: Option<Instant> = None;
    // The acknowledged count at which a fault due at `f` of the load happens.
    let at = |f: f64| (f * opts.mentions as f64).ceil() as u64;
    while run.acked_count.load(Ordering::SeqCst) < opts.mentions {
        let acked_now = run.acked_count.load(Ordering::SeqCst);
        if acked_now > last_progress.0 {
            last_progress = (acked_now, Instant::now());
            // Recovery: from a restart to the first acknowledgement after it (the log has
            // been replayed into the dataflow by then).
            if let Some(t) = restarted_at.take() {
                max_recovery = max_recovery.max(t.elapsed());
            }
        }
        // A tight budget stalls the load with 503s until the next restart. (Only then: a
        // restart replaying a long log also makes no progress for a while, and must not be
        // killed for it.)
        let stalled = tight_now
            && last_progress.1.elapsed() > Duration::from_secs(3)
            && outage_ends.is_none()
            && run.refused_503.load(Ordering::Relaxed) > refused_at_restart;
        if stalled
            || (kills < opts.kills && acked_now >= at((kills + 1) as f64 / (opts.kills + 1) as f64))
        {
            let old_base = run.base.lock().map_err(|_| anyhow::anyhow!("lock"))?.take();
            let fluvio_bytes = match (&opts.fluvio, old_base) {
                (Some(_), Some(b)) => reported_log_bytes(&http, &b).await,
                _ => None,
            };
            child.kill()?;
            child.wait()?;
            kills += 1;
            let tight =
                opts.tight_budget_every > 0 && kills % opts.tight_budget_every == 0 && !stalled;
            if opts.fluvio.is_some() {
                // The log is in Fluvio: nothing local survives the crash.
                let _ = std::fs::remove_dir_all(&data_dir);
            }
            let budget = if tight {
                fluvio_bytes.unwrap_or_else(|| wal_bytes(&data_dir)) + (1 << 20)
            } else {
                ROOMY
            };
            tight_now = tight;
            refused_at_restart = run.refused_503.load(Ordering::Relaxed);
            let t = Instant::now();
            let (c, base) = spawn_vigie(&opts, &vigie_ch_url, &db, &data_dir, budget)?;
            child = c;
            restarted_at = Some(t);
            last_progress = (acked_now, Instant::now());
            *run.base.lock().map_err(|_| anyhow::anyhow!("lock"))? = Some(base);
        } else if outage_ends.is_none()
            && outages < opts.outages
            && acked_now >= at((outages as f64 + 0.5) / (opts.outages + 1) as f64)
        {
            // ClickHouse goes away for 1–3 s; kills may happen meanwhile (crash during flush).
            outages += 1;
            outages_of.begin(outages);
            outage_ends = Some(Instant::now() + Duration::from_millis(1000 + 1000 * (outages % 3)));
        }
        if outage_ends.is_some_and(|t| Instant::now() >= t) {
            outages_of.end()?;
            outage_ends = None;
            last_progress = (acked_now, Instant::now());
        }
        // Hold the clients at the next fault's point until it has happened.
        let next_kill =
            (kills < opts.kills).then(|| at((kills + 1) as f64 / (opts.kills + 1) as f64));
        let next_outage = (outage_ends.is_none() && outages < opts.outages)
            .then(|| at((outages as f64 + 0.5) / (opts.outages + 1) as f64));
        let hold = next_kill.into_iter().chain(next_outage).min();
        run.hold_at
            .store(hold.unwrap_or(u64::MAX), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3600) {
            bail!("the load did not finish within an hour");
        }
    }
    if outage_ends.is_some() {
        outages_of.end()?;
    }
    for c in clients {
        c.await?;
    }
    let load_time = started.elapsed();

    // Drain: wait until ClickHouse holds at least every acknowledged mention.
    let acked: Vec<u64> = run
        .acked
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    let check_url = outages_of.check_url();
    let url = &check_url;
    loop {
        let stored = count(&http, url, &db, "SELECT uniqExact(url) FROM mentions FINAL").await?;
        if stored >= acked.len() as u64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let trends settle behind the mentions.
    let mut trends = Err(String::new());
    for _ in 0..60 {
        trends = verify::trends_match(&http, url, &db).await;
        if trends.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stored_rows = count(&http, url, &db, "SELECT count() FROM mentions FINAL").await?;
    let stored_urls = count(&http, url, &db, "SELECT uniqExact(url) FROM mentions FINAL").await?;
    // Stored mention id → logical mention (the number in its url).
    let id_to_n: std::collections::HashMap<String, u64> = verify::sorted_rows(
        &http,
        url,
        &db,
        "SELECT toString(id), url FROM mentions FINAL",
    )
    .await
    .map_err(anyhow::Error::msg)?
    .into_iter()
    .filter_map(|row| {
        let (id, u) = row.split_once('\t')?;
        Some((id.to_string(), u.rsplit('/').next()?.parse().ok()?))
    })
    .collect();
    let stored_set: std::collections::HashSet<u64> = id_to_n.values().copied().collect();
    let lost = acked.iter().filter(|n| !stored_set.contains(n)).count() as u64;
    let duplicated = stored_rows - stored_urls;
    let alerts = check_alerts(&http, url, &db, &acked, &id_to_n).await?;
    let _ = child.kill();
    let _ = child.wait();

    println!("| acked | stored | lost | duplicated | kills | outages | 503s | max recovery (restart → first ack) | load time | trends = recompute | alerts | critical mentions alerted | alerts raised twice |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {} | {} | {} | {:.0} ms | {:.1} s | {} | {} | {} / {} | {} |",
        acked.len(),
        stored_rows,
        lost,
        duplicated,
        kills,
        outages,
        run.refused_503.load(Ordering::Relaxed),
        max_recovery.as_secs_f64() * 1000.0,
        load_time.as_secs_f64(),
        match &trends {
            Ok(n) => format!("yes ({n} rows)"),
            Err(e) => format!("NO: {e}"),
        },
        alerts.rows,
        alerts.critical_alerted,
        alerts.critical_acked,
        alerts.twice,
    );
    let passed = lost == 0
        && duplicated == 0
        && trends.is_ok()
        && alerts.twice == 0
        && alerts.critical_alerted == alerts.critical_acked;
    if passed || !opts.keep_failed || opts.outages_by == OutageMode::Restart {
        migrations::drop_database_blocking(&ch);
    } else {
        println!("kept database {db} at {url}");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    match (opts.negative_control, passed) {
        (false, true) => {
            println!(
                "PASS: every acknowledged mention stored exactly once; trends equal the recompute; every critical mention alerted once, no alert raised twice"
            );
            Ok(())
        }
        (false, false) => bail!(
            "FAIL: lost {lost}, duplicated {duplicated}, trends {:?}, alerts {alerts:?}",
            trends.err()
        ),
        (true, false) => {
            println!("NEGATIVE CONTROL OK: with idempotence off the checks fail (lost {lost}, duplicated {duplicated})");
            Ok(())
        }
        (true, true) => {
            bail!("NEGATIVE CONTROL FAILED: idempotence was off but the checks still passed")
        }
    }
}
