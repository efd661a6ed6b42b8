//! Prometheus metrics with bounded labels (status codes, table names — never org ids).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use vigie_sinks::SinkMetrics;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if s <= *le {
                self.counts[i].fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{le}\"}} {}",
                self.counts[i].load(Relaxed)
            );
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Writes one unlabelled sample with its HELP and TYPE lines (`kind`: counter or gauge).
pub(crate) fn sample(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    v: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

/// HTTP statuses ingest answers with; the label set of `vigie_ingest_requests_total`.
const STATUSES: [u16; 10] = [202, 400, 401, 404, 405, 413, 415, 422, 500, 503];

/// All metrics of a running vigie.
#[derive(Default)]
pub struct Metrics {
    /// Mentions accepted by ingest.
    pub mentions_accepted: AtomicU64,
    /// Records rejected by validation.
    pub mentions_rejected: AtomicU64,
    /// Deletions accepted.
    pub deletions_accepted: AtomicU64,
    requests: [AtomicU64; STATUSES.len()],
    /// Time from request start to ack.
    pub ingest_latency: Histogram,
    /// Time to write one dataflow batch to ClickHouse.
    pub sink_batch_latency: Histogram,
    /// Time to append and fsync one epoch to the write-ahead log.
    pub wal_sync_latency: Histogram,
    wal_bytes: AtomicU64,
    /// Compactions of the write-ahead log.
    pub wal_compactions: AtomicU64,
    /// The checkpoint this run started from (0: none, the whole log was replayed).
    pub restored_checkpoint: AtomicU64,
    /// Upserts replayed from the log at start-up.
    pub replayed_records: AtomicU64,
    epochs: AtomicU64,
    dataflow_records: AtomicU64,
    queued_records: AtomicU64,
    dataflow_time: AtomicU64,
    committed_time: AtomicU64,
    /// The ClickHouse writer's counters.
    pub sink: Arc<SinkMetrics>,
    /// Mentions later than the allowed lateness (counted in trends, not in windows).
    pub late_mentions: Arc<AtomicU64>,
    /// Alerts raised (not counting replays of the write-ahead log).
    pub alerts_raised: AtomicU64,
    /// Sizes of the event-time stages' state.
    pub state: Arc<crate::graph::StateGauges>,
    /// Alerts stored but not pushed because the push channel was full.
    pub alerts_unpushed: Arc<AtomicU64>,
    /// Time from an alert's dataflow time (the ingest epoch of the mention that raised it)
    /// to its hand-off to webhooks and live streams.
    pub alert_latency: Histogram,
    /// Extra Prometheus text (the webhook dispatcher's and the live streams' metrics).
    pub extra: std::sync::Mutex<Vec<Arc<dyn Fn() -> String + Send + Sync>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Counts a request answered with `status`.
    pub fn count_request(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.requests[i].fetch_add(1, Relaxed);
        }
    }

    /// An epoch of `records` entered the dataflow.
    pub fn observe_epoch(&self, _records: usize) {
        self.epochs.fetch_add(1, Relaxed);
    }

    /// Records a worker fed into the graph.
    pub fn add_dataflow_records(&self, n: usize) {
        self.dataflow_records.fetch_add(n as u64, Relaxed);
    }

    /// Records routed to a worker's queue (`n` > 0) or taken from it into its graph.
    pub fn queue_records(&self, n: isize) {
        if n >= 0 {
            self.queued_records.fetch_add(n as u64, Relaxed);
        } else {
            self.queued_records
                .fetch_sub(n.unsigned_abs() as u64, Relaxed);
        }
    }

    /// Size of the write-ahead log.
    pub fn set_wal_bytes(&self, n: u64) {
        self.wal_bytes.store(n, Relaxed);
    }

    /// The latest dataflow time fed into the graph.
    pub fn set_dataflow_time(&self, t: u64) {
        self.dataflow_time.fetch_max(t, Relaxed);
    }

    /// The latest dataflow time whose changes ClickHouse acknowledged.
    pub fn set_committed_time(&self, t: u64) {
        self.committed_time.fetch_max(t, Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            sample(out, "counter", name, help, v)
        };
        counter(
            &mut out,
            "vigie_mentions_accepted_total",
            "Mentions accepted by ingest.",
            self.mentions_accepted.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_mentions_rejected_total",
            "Records rejected by validation.",
            self.mentions_rejected.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_deletions_accepted_total",
            "Mention deletions accepted.",
            self.deletions_accepted.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP vigie_ingest_requests_total Ingest requests by HTTP status.\n# TYPE vigie_ingest_requests_total counter");
        for (i, s) in STATUSES.iter().enumerate() {
            let _ = writeln!(
                out,
                "vigie_ingest_requests_total{{status=\"{s}\"}} {}",
                self.requests[i].load(Relaxed)
            );
        }
        self.ingest_latency.render(
            &mut out,
            "vigie_ingest_latency_seconds",
            "Time from request to acknowledgement.",
        );
        self.sink_batch_latency.render(
            &mut out,
            "vigie_sink_batch_seconds",
            "Time to write one dataflow batch to ClickHouse.",
        );
        self.wal_sync_latency.render(
            &mut out,
            "vigie_wal_sync_seconds",
            "Time to append and fsync one epoch to the write-ahead log.",
        );
        sample(
            &mut out,
            "gauge",
            "vigie_wal_bytes",
            "Size of the write-ahead log.",
            self.wal_bytes.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_wal_compactions_total",
            "Compactions of the write-ahead log.",
            self.wal_compactions.load(Relaxed),
        );
        sample(
            &mut out,
            "gauge",
            "vigie_restored_checkpoint",
            "The checkpoint (dataflow time) this run's state was restored from; 0: rebuilt from the whole log.",
            self.restored_checkpoint.load(Relaxed),
        );
        sample(
            &mut out,
            "gauge",
            "vigie_replayed_records",
            "Upserts replayed from the log at start-up.",
            self.replayed_records.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_dataflow_epochs_total",
            "Epochs (dataflow times) fed to the graph.",
            self.epochs.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_dataflow_records_total",
            "Upserts fed to the graph.",
            self.dataflow_records.load(Relaxed),
        );
        sample(
            &mut out,
            "gauge",
            "vigie_dataflow_queued_records",
            "Upserts routed to the dataflow workers and not yet taken into their graphs (bounded per worker: the router waits for room).",
            self.queued_records.load(Relaxed),
        );
        let fed = self.dataflow_time.load(Relaxed);
        let committed = self.committed_time.load(Relaxed);
        let lag = if committed >= fed {
            0.0
        } else {
            (fed - committed) as f64 / 1000.0
        };
        sample(
            &mut out,
            "gauge",
            "vigie_committed_epoch",
            "Every epoch below this is in ClickHouse (compare with the \"epoch\" of a 202).",
            committed,
        );
        sample(
            &mut out,
            "gauge",
            "vigie_dataflow_lag_seconds",
            "Dataflow time fed minus dataflow time written to ClickHouse.",
            lag,
        );
        counter(
            &mut out,
            "vigie_late_mentions_total",
            "Mentions later than the allowed lateness: in trends, not in windows.",
            self.late_mentions.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_alerts_raised_total",
            "Alerts raised.",
            self.alerts_raised.load(Relaxed),
        );
        counter(
            &mut out,
            "vigie_alerts_unpushed_total",
            "Alerts stored but not pushed to webhooks and streams (push channel full).",
            self.alerts_unpushed.load(Relaxed),
        );
        self.alert_latency.render(
            &mut out,
            "vigie_alert_latency_seconds",
            "From the ingest epoch of the mention that raised an alert to its hand-off to webhooks and streams.",
        );
        let st = &self.state;
        for (name, help, v) in [
            ("vigie_state_mentions", "Live mentions in the upsert stage's store (on disk in `vigie run`; grows with mentions).", &st.mentions),
            ("vigie_state_live_members", "Mentions whose story velocity can still change.", &st.live_members),
            ("vigie_state_stories", "Stories with counts inside the event-time horizon.", &st.stories),
            ("vigie_state_frozen_velocities", "Final non-zero velocities kept for later updates of their mentions (grows with mentions).", &st.frozen_velocities),
            ("vigie_state_window_keys", "Window keys with counts inside the horizon.", &st.window_keys),
            ("vigie_state_window_buckets", "Minute and hour buckets of the window keys.", &st.window_buckets),
            ("vigie_state_counted_mentions", "Mentions counted in non-final windows.", &st.counted),
            ("vigie_state_firing_windows", "Non-final windows whose rule condition holds.", &st.firing),
            ("vigie_state_trend_totals", "Trend totals in memory: recent buckets, and older ones read back from disk until the next sweep.", &st.trend_totals),
            ("vigie_state_trend_groups_on_disk", "Trend groups (a day of hour buckets, or a day, week or month) whose totals are on disk.", &st.trend_groups_on_disk),
        ] {
            sample(&mut out, "gauge", name, help, v.load(Relaxed));
        }
        sample(
            &mut out,
            "counter",
            "vigie_trend_revivals_total",
            "Trend groups read back from disk because an old bucket changed.",
            st.trend_revivals.load(Relaxed),
        );
        self.sink.render(&mut out);
        if let Some(rss) = crate::memory::resident_bytes() {
            sample(
                &mut out,
                "gauge",
                "process_resident_memory_bytes",
                "Resident memory of the vigie process.",
                rss,
            );
        }
        if let Some(a) = crate::memory::AllocatorStats::read() {
            a.render(&mut out);
        }
        if let Ok(extra) = self.extra.lock() {
            for f in extra.iter() {
                out.push_str(&f());
            }
        }
        out
    }
}
