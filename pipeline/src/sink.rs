//! Turns the graph's changes into ClickHouse writes.
//!
//! Per dataflow time and key, the consolidated changes say what the row is now:
//! - a mention with +1 is written (version = time); a mention with only -1 is deleted;
//! - a trend key's +1 value is written; a key with only -1 went to zero and is written as
//!   a zero row, which `trends_current` hides.
//!
//! Rows are idempotent (natural key + version), so writing them again changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use vigie_sinks::alert::{AlertEvent, AlertRow, AlertType, KeyKind, Level};
use vigie_sinks::clickhouse::rows::{KeywordTrendRow, MentionRef, MentionRow, TrendRow};
use vigie_sinks::clickhouse::writer::BatchWriter;
use vigie_sinks::clickhouse::{ClickHouseConfig, SinkError};

use crate::graph::alerts::key_string;
use crate::graph::emit::SinkBatch;
use crate::graph::records::{
    AlertKey, AlertRecord, Change, KeywordTrendKey, Scored, Sums, TrendKey, WindowKey, MICROS,
};
use crate::graph::score::lang_str;
use crate::metrics::Metrics;

/// The row a scored mention is stored as.
pub fn mention_row(m: &Scored, version: u64) -> MentionRow {
    let e = &m.body.engagement;
    MentionRow {
        org_id: m.key.org,
        id: m.key.id,
        source_id: m.body.source,
        text: m.body.text.clone(),
        author: m.body.author.clone(),
        url: m.body.url.clone(),
        created_at: m.created_at_secs().clamp(0, i64::from(u32::MAX)) as u32,
        created_at_us: m.body.created_at_us.rem_euclid(1_000_000) as u32,
        likes: e.likes,
        shares: e.shares,
        replies: e.replies,
        author_followers: e.author_followers,
        lang: lang_str(m.lang).into(),
        sentiment: m.label,
        sentiment_score: f64::from(m.score) / MICROS,
        confidence: f64::from(m.confidence) / MICROS,
        emotions: m.emotion_names(),
        virality_score: f64::from(m.virality) / MICROS,
        keywords: m.body.keywords.clone(),
        story_id: m.story,
        analyzed_at: (version / 1000) as u32,
        version,
    }
}

/// The row a trend key's accumulated sums are stored as (all zeros when retracted).
pub fn trend_row(k: &TrendKey, s: &Sums, version: u64) -> TrendRow {
    let u = |x: i64| x.max(0) as u64;
    let e = &s.emotions;
    TrendRow {
        org_id: k.org,
        granularity: k.granularity.code(),
        bucket: k.bucket.clamp(0, i64::from(u32::MAX)) as u32,
        source_id: k.source,
        total: u(s.n),
        positive: u(s.positive),
        neutral: u(s.neutral),
        negative: u(s.negative),
        sentiment_sum: s.sentiment as f64 / MICROS,
        virality_sum: s.virality as f64 / MICROS,
        anger: u(e[0]),
        anticipation: u(e[1]),
        disgust: u(e[2]),
        fear: u(e[3]),
        joy: u(e[4]),
        sadness: u(e[5]),
        surprise: u(e[6]),
        trust: u(e[7]),
        top_emotions: s.top_emotions(),
        version,
    }
}

/// The event (webhook and stream payload) of an alert raised at dataflow time `version`.
pub fn alert_event(a: &AlertRecord, version: u64) -> AlertEvent {
    let at =
        |secs: i64| OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (key_kind, keyword) = match &a.key {
        AlertKey::Window(WindowKey::Org) => (KeyKind::Org, None),
        AlertKey::Window(WindowKey::Source(_)) => (KeyKind::Source, None),
        AlertKey::Window(WindowKey::Keyword(k)) => (KeyKind::Keyword, Some(k.clone())),
        AlertKey::Story(_) => (KeyKind::Story, None),
    };
    AlertEvent {
        id: a.id,
        org_id: a.org,
        kind: AlertType::from_code(a.kind).unwrap_or(AlertType::VolumeSpike),
        level: Level::from_code(a.level).unwrap_or(Level::Low),
        status: "NEW".to_string(),
        message: a.message.clone(),
        key_kind,
        key: key_string(a.org, &a.key),
        source_id: a.source,
        keyword,
        observed: a.observed as f64 / 1000.0,
        baseline: a.baseline as f64 / 1000.0,
        threshold: a.threshold as f64 / 1000.0,
        window_start: at(a.window_start),
        window_end: at(a.window_end),
        mention_ids: a.mention_ids.clone(),
        created_at: at((version / 1000) as i64),
        version,
    }
}

/// Rows and deletions one batch of changes stands for.
#[derive(Debug, Default, PartialEq)]
pub struct Writes {
    /// Mention rows to write.
    pub mentions: Vec<MentionRow>,
    /// Mentions to delete.
    pub deletions: Vec<MentionRef>,
    /// Trend rows to write.
    pub trends: Vec<TrendRow>,
    /// Keyword trend rows to write.
    pub keyword_trends: Vec<KeywordTrendRow>,
    /// Alerts raised.
    pub alerts: Vec<AlertEvent>,
}

/// Interprets one consolidated batch of changes at `time`.
pub fn writes_for(time: u64, changes: &[(Change, isize)]) -> Writes {
    let mut out = Writes::default();
    let mut retracted = BTreeSet::new();
    let mut trend_new: BTreeMap<TrendKey, Sums> = BTreeMap::new();
    let mut trend_old: BTreeSet<TrendKey> = BTreeSet::new();
    let mut kw_new: BTreeMap<KeywordTrendKey, Sums> = BTreeMap::new();
    let mut kw_old: BTreeSet<KeywordTrendKey> = BTreeSet::new();
    for (change, diff) in changes {
        match change {
            Change::Mention(m) if *diff > 0 => out.mentions.push(mention_row(m, time)),
            Change::Mention(m) => {
                retracted.insert(m.key);
            }
            Change::Trend(k, s) if *diff > 0 => {
                trend_new.insert(*k, *s);
            }
            Change::Trend(k, _) => {
                trend_old.insert(*k);
            }
            Change::KeywordTrend(k, s) if *diff > 0 => {
                kw_new.insert(k.clone(), *s);
            }
            Change::KeywordTrend(k, _) => {
                kw_old.insert(k.clone());
            }
            Change::Alert(a) if *diff > 0 => out.alerts.push(alert_event(a, time)),
            Change::Alert(_) => {}
        }
    }
    // A retracted mention that is also written again changed; one that is not was deleted.
    // (Most batches retract nothing: the written keys are only gathered when one does.)
    if !retracted.is_empty() {
        for r in &out.mentions {
            retracted.remove(&crate::graph::records::MentionKey {
                org: r.org_id,
                id: r.id,
            });
        }
    }
    out.deletions = retracted
        .into_iter()
        .map(|k| MentionRef {
            org_id: k.org,
            id: k.id,
        })
        .collect();
    for k in trend_old.iter().filter(|k| !trend_new.contains_key(k)) {
        out.trends.push(trend_row(k, &Sums::default(), time));
    }
    out.trends
        .extend(trend_new.iter().map(|(k, s)| trend_row(k, s, time)));
    let keyword_row = |k: &KeywordTrendKey, s: &Sums| {
        let as_trend = TrendKey {
            org: k.org,
            granularity: k.granularity,
            bucket: k.bucket,
            source: uuid::Uuid::nil(),
        };
        KeywordTrendRow::from_trend(trend_row(&as_trend, s, time), k.keyword.clone())
    };
    for k in kw_old.iter().filter(|k| !kw_new.contains_key(k)) {
        out.keyword_trends.push(keyword_row(k, &Sums::default()));
    }
    out.keyword_trends
        .extend(kw_new.iter().map(|(k, s)| keyword_row(k, s)));
    out
}

/// Options of the sink task.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// ClickHouse connection and batching.
    pub clickhouse: ClickHouseConfig,
    /// Where rejected batches are written.
    pub dead_letter_dir: PathBuf,
    /// Timely workers sending batches (progress is the minimum over them).
    pub workers: usize,
    /// Where the committed time is recorded (read back at start-up as `skip_below`).
    pub progress_file: PathBuf,
    /// Batches of dataflow times below this are already in ClickHouse (a replay of the
    /// write-ahead log re-creates them with the same versions): they are not written again.
    pub skip_below: u64,
}

/// The committed time recorded in `path` for `target` (0 when there is none, or when it
/// was recorded for another ClickHouse database: then nothing is assumed written).
pub fn read_progress(path: &std::path::Path, target: &str) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    match text.trim().rsplit_once(' ') {
        Some((recorded_for, t)) if recorded_for == target => t.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Records the committed time for `target` (write to a temporary file, then rename).
fn write_progress(path: &std::path::Path, target: &str, committed: u64) -> std::io::Result<()> {
    crate::files::replace(path, format!("{target} {committed}\n").as_bytes(), false)
}

/// What progress records are keyed by: the ClickHouse URL and database.
pub fn progress_target(cfg: &ClickHouseConfig) -> String {
    format!("{}/{}", cfg.url.trim_end_matches('/'), cfg.database).replace(' ', "%20")
}

/// Where raised alerts are handed (webhook dispatcher, live streams); must not block.
pub type AlertPublisher = Arc<dyn Fn(Arc<AlertEvent>) + Send + Sync>;

/// Hands every alert the graph raises to `publishers`, as soon as it is raised: before its
/// row is written (consumers dedupe on the id; a crash before the write re-raises the same
/// alert from the write-ahead log).
pub async fn push_alerts(
    mut rx: mpsc::Receiver<(AlertRecord, u64)>,
    publishers: Vec<AlertPublisher>,
    metrics: Arc<Metrics>,
) {
    while let Some((a, time)) = rx.recv().await {
        let event = Arc::new(alert_event(&a, time));
        metrics
            .alerts_raised
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        metrics
            .alert_latency
            .observe(Duration::from_millis(now_ms.saturating_sub(time)));
        for p in &publishers {
            p(event.clone());
        }
    }
}

/// Consumes the graph's batches until the channel closes, then flushes everything.
///
/// After each flush, every dataflow time below the minimum of the workers'
/// `complete_below` is in ClickHouse; that time is published on `committed` (the
/// write-ahead log compacts what lies below it).
pub async fn run(
    cfg: SinkConfig,
    mut rx: mpsc::Receiver<SinkBatch>,
    metrics: Arc<Metrics>,
    committed: watch::Sender<u64>,
) {
    let ch = &cfg.clickhouse;
    let mut keyword_trends = BatchWriter::<KeywordTrendRow>::new(
        ch,
        "keyword_trends",
        metrics.sink.clone(),
        cfg.dead_letter_dir.clone(),
    );
    let mut alerts = BatchWriter::<AlertRow>::new(
        ch,
        "alerts",
        metrics.sink.clone(),
        cfg.dead_letter_dir.clone(),
    );
    let mut mentions = BatchWriter::<MentionRow>::new(
        ch,
        "mentions",
        metrics.sink.clone(),
        cfg.dead_letter_dir.clone(),
    );
    let mut trends = BatchWriter::<TrendRow>::new(
        ch,
        "trends",
        metrics.sink.clone(),
        cfg.dead_letter_dir.clone(),
    );
    let client = ch.client();
    let mut deletions: Vec<MentionRef> = Vec::new();
    let mut complete = vec![0u64; cfg.workers.max(1)];
    let mut last_progress_write = Instant::now();
    loop {
        let deadline = [
            mentions.deadline(),
            trends.deadline(),
            keyword_trends.deadline(),
            alerts.deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let next = match deadline {
            // `None` when a buffer is due before the next batch arrives.
            Some(d) => tokio::time::timeout_at(d.into(), rx.recv()).await.ok(),
            None => Some(rx.recv().await),
        };
        let closed = matches!(next, Some(None));
        if let Some(Some(batch)) = next {
            if let Some(c) = complete.get_mut(batch.worker) {
                *c = (*c).max(batch.complete_below);
            }
            let replayed = batch.time < cfg.skip_below;
            let w = if replayed {
                Writes::default()
            } else {
                writes_for(batch.time, &batch.changes)
            };
            for r in w.mentions {
                mentions.push(r);
            }
            for r in w.trends {
                trends.push(r);
            }
            for r in w.keyword_trends {
                keyword_trends.push(r);
            }
            deletions.extend(w.deletions);
            for a in w.alerts {
                alerts.push(a.row());
            }
        }
        let must_flush = closed
            || mentions.due()
            || trends.due()
            || keyword_trends.due()
            || alerts.due()
            || !deletions.is_empty();
        if must_flush {
            let started = Instant::now();
            // The four tables are written concurrently: a flush takes as long as its
            // slowest insert, not their sum (~100 ms each on 18.16 with the machine busy).
            // Mention rows still go before the deletions, so a deletion never precedes the
            // insert it removes.
            let mention_writes = async {
                report(mentions.flush().await);
                if !deletions.is_empty() {
                    report(delete_mentions(&client, ch, &deletions, &metrics).await);
                    deletions.clear();
                }
            };
            let (_, t, k, a) = tokio::join!(
                mention_writes,
                trends.flush(),
                keyword_trends.flush(),
                alerts.flush()
            );
            report(t);
            report(k);
            report(a);
            metrics.sink_batch_latency.observe(started.elapsed());
        }
        if mentions.is_empty()
            && trends.is_empty()
            && keyword_trends.is_empty()
            && deletions.is_empty()
            && alerts.is_empty()
        {
            let done = complete.iter().copied().min().unwrap_or(0);
            metrics.set_committed_time(done);
            let advanced = committed.send_if_modified(|c| {
                let advanced = done > *c;
                *c = (*c).max(done);
                advanced
            });
            if advanced && last_progress_write.elapsed() >= Duration::from_millis(500) || closed {
                if let Err(e) = write_progress(
                    &cfg.progress_file,
                    &progress_target(&cfg.clickhouse),
                    *committed.borrow(),
                ) {
                    tracing::warn!(error = %e, "cannot record progress; a restart rewrites more rows");
                }
                last_progress_write = Instant::now();
            }
        }
        if closed {
            break;
        }
    }
}

fn report(r: Result<usize, SinkError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "ClickHouse write failed permanently");
    }
}

/// Removes mentions with a mutation (`ALTER TABLE … DELETE`), retrying transient errors.
async fn delete_mentions(
    client: &clickhouse::Client,
    cfg: &ClickHouseConfig,
    refs: &[MentionRef],
    metrics: &Metrics,
) -> Result<usize, SinkError> {
    use std::sync::atomic::Ordering::Relaxed;
    use vigie_sinks::clickhouse::retry::{classify, Retry};
    for chunk in refs.chunks(500) {
        // Placeholders only; every value is bound.
        let cond = vec!["(org_id = ? AND id = ?)"; chunk.len()].join(" OR ");
        let sql = format!("ALTER TABLE mentions DELETE WHERE {cond}");
        let mut attempt = 0;
        loop {
            let mut q = client.query(&sql);
            for r in chunk {
                q = q.bind(r.org_id).bind(r.id);
            }
            match q.execute().await.map_err(SinkError::from) {
                Ok(()) => break,
                Err(e) if classify(&e) == Retry::Transient => {
                    metrics.sink.mentions.retries.fetch_add(1, Relaxed);
                    let wait = cfg.retry.backoff(attempt);
                    tracing::warn!(error = %e, ?wait, "transient error deleting mentions; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        metrics
            .sink
            .mentions_deleted
            .fetch_add(chunk.len() as u64, Relaxed);
    }
    Ok(refs.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::records::fixtures::{body, key};
    use crate::graph::score::score_one;

    #[test]
    fn a_mention_retracted_and_not_written_again_is_deleted() {
        let m = |i: u128, text: &str| {
            Change::Mention(score_one(
                key(i),
                Arc::new(body(text)),
                &vigie_udfs::ScoreConfig::default(),
            ))
        };
        let changes = vec![
            (m(1, "new"), 1),
            (m(2, "before"), -1),
            (m(2, "after"), 1),
            (m(3, "gone"), -1),
            (m(4, "also gone"), -1),
        ];
        let w = writes_for(7, &changes);
        let written: Vec<_> = w.mentions.iter().map(|r| (r.id, &*r.text)).collect();
        assert_eq!(
            written,
            vec![(key(1).id, "new"), (key(2).id, "after")],
            "the new and the changed mention are written"
        );
        let deleted: Vec<_> = w.deletions.iter().map(|r| (r.org_id, r.id)).collect();
        assert_eq!(
            deleted,
            vec![(key(3).org, key(3).id), (key(4).org, key(4).id)],
            "only mentions with nothing written again are deleted"
        );
        assert!(writes_for(8, &changes[..1]).deletions.is_empty());
    }

    #[test]
    fn progress_is_only_trusted_for_the_database_it_was_recorded_for() {
        let dir =
            std::env::temp_dir().join(format!("vigie-progress-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("committed");
        assert_eq!(read_progress(&path, "http://a:8123/vigie"), 0);
        write_progress(&path, "http://a:8123/vigie", 42).unwrap();
        assert_eq!(read_progress(&path, "http://a:8123/vigie"), 42);
        assert_eq!(read_progress(&path, "http://a:8123/other"), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
