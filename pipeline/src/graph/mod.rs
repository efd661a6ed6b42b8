//! The dataflow graph:
//!
//! ```text
//! upserts ─▶ mentions ─▶ score ─▶ virality ─┬─▶ trends ──────────────┐
//!                                           ├─▶ windows ─▶ alerts ───┼─▶ sinks
//!                                           └────────────(mentions)──┘
//! ```
//!
//! Stages are functions over collections, one per file; this module only wires them.
//! The dataflow time is the ingest epoch (milliseconds since the epoch, strictly
//! increasing); event time (`created_at`) is data and decides buckets and windows.

pub mod alerts;
pub mod chain;
pub mod checkpoint;
pub mod cold;
pub mod emit;
pub mod frozen;
pub mod ordered;
pub mod records;
pub mod score;
pub mod trends;
pub mod upsert;
pub mod virality;
pub mod windows;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::rules::RuleBook;

use differential_dataflow::VecCollection;
use timely::dataflow::{Scope, Stream};

use records::{Change, MentionBody, MentionKey};

/// One input record: the mention's new body, or `None` to delete it, at a dataflow time.
/// Bodies are shared (`Arc`): the upsert arrangement keeps every live mention and its merges
/// copy values, so a value is a pointer (profiled in benches/README.md, "Profile").
pub type Upsert = (MentionKey, Option<Arc<MentionBody>>, u64);

/// Sizes of the event-time stages' state, summed over workers (exported as `vigie_state_*`
/// gauges): what the watermark keeps bounded, and the one per-mention part that is not.
#[derive(Debug, Default)]
pub struct StateGauges {
    /// Live mentions (the upsert stage's store: on disk in `vigie run`).
    pub mentions: AtomicI64,
    /// Mentions whose story velocity can still change.
    pub live_members: AtomicI64,
    /// Stories with counts inside the horizon.
    pub stories: AtomicI64,
    /// Final non-zero velocities of frozen mentions held in memory (kept for later updates
    /// or deletions of their mentions; with a spill directory, only the hours still
    /// freezing and tombstones — the rest is on disk).
    pub frozen_velocities: AtomicI64,
    /// Window keys (organisation, source, keyword) with counts inside the horizon.
    pub window_keys: AtomicI64,
    /// Minute and hour buckets held by those keys.
    pub window_buckets: AtomicI64,
    /// Mentions counted in non-final windows.
    pub counted: AtomicI64,
    /// Non-final windows whose condition holds.
    pub firing: AtomicI64,
    /// Trend totals in memory (trends and keyword trends): the recent buckets, and older
    /// groups read back from disk until the next sweep.
    pub trend_totals: AtomicI64,
    /// Trend groups (a day of hour buckets, or a day, week or month) whose totals are on
    /// disk.
    pub trend_groups_on_disk: AtomicI64,
    /// Trend groups read back from disk since the start (a change to an old bucket).
    pub trend_revivals: AtomicI64,
}

/// One operator's contribution to a gauge: adds the change since its last report.
#[derive(Debug, Default)]
pub struct GaugeShare(i64);

impl GaugeShare {
    /// Reports `now` as this operator's value of `gauge`.
    pub fn report(&mut self, gauge: &AtomicI64, now: i64) {
        gauge.fetch_add(now - self.0, std::sync::atomic::Ordering::Relaxed);
        self.0 = now;
    }
}

/// Largest allowed lateness: it must stay below the shortest window
/// ([`crate::rules::MIN_WINDOW_MINUTES`]) and the hour the virality stage relies on.
pub const MAX_LATENESS: Duration = Duration::from_secs(10 * 60);

/// Everything the graph needs besides its input.
#[derive(Debug, Clone)]
pub struct GraphSpec {
    /// How mentions are scored.
    pub scoring: score::ScoringSpec,
    /// Allowed lateness of event times (at most [`MAX_LATENESS`]).
    pub lateness: Duration,
    /// Alert rules per organisation.
    pub rules: Arc<RuleBook>,
    /// Counts mentions later than the allowed lateness.
    pub late: Arc<AtomicU64>,
    /// Sizes of the event-time state.
    pub gauges: Arc<StateGauges>,
    /// Where the virality stage spills final velocities (`None`: memory). The runtime
    /// gives each worker a directory of its own below it.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Where the upsert stage keeps every live mention's body (`None`: memory). The
    /// runtime gives each worker a directory of its own below it.
    pub mention_dir: Option<std::path::PathBuf>,
    /// Where the trends stages move the totals of long-ended buckets (`None`: they stay
    /// in memory). The runtime gives each worker a directory of its own below it.
    pub trend_dir: Option<std::path::PathBuf>,
    /// How long after a trend group's end (on the latest hour bucket seen) its totals move
    /// to `trend_dir`.
    pub trend_horizon: Duration,
    /// Checkpoints of every stage's state (`None`: none; state comes from the whole log).
    pub checkpoint: Option<Arc<checkpoint::CheckpointSpec>>,
}

impl Default for GraphSpec {
    fn default() -> Self {
        Self {
            scoring: score::ScoringSpec::default(),
            lateness: Duration::from_secs(5 * 60),
            rules: Arc::new(RuleBook::default()),
            late: Arc::new(AtomicU64::new(0)),
            gauges: Arc::new(StateGauges::default()),
            spill_dir: None,
            mention_dir: None,
            trend_dir: None,
            trend_horizon: cold::HORIZON,
            checkpoint: None,
        }
    }
}

/// The graph's stages' outputs.
pub struct Stages<'s> {
    /// Scored mentions with their final virality.
    pub mentions: VecCollection<'s, u64, records::Scored>,
    /// Trend rows' accumulated sums.
    pub trends: VecCollection<'s, u64, (records::TrendKey, records::Sums)>,
    /// Keyword trend rows' accumulated sums.
    pub keyword_trends: VecCollection<'s, u64, (records::KeywordTrendKey, records::Sums)>,
    /// Windows whose spike or dip condition holds.
    pub firings: VecCollection<'s, u64, records::Firing>,
    /// Raised alerts.
    pub alerts: VecCollection<'s, u64, records::AlertRecord>,
}

/// The upsert stage (see [`upsert`]): every live mention's latest body, as a collection.
pub fn upserted<'s>(
    upserts: Stream<'s, u64, Vec<Upsert>>,
    spec: &GraphSpec,
) -> VecCollection<'s, u64, (MentionKey, Arc<MentionBody>)> {
    let dir = spec.mention_dir.clone();
    let restore = spec.checkpoint.as_ref().and_then(|c| c.restore);
    let checkpoints = spec.checkpoint.is_some();
    upsert::upserted(
        upserts,
        move || upsert::MentionStore::open(dir.as_ref(), checkpoints, restore),
        spec.gauges.clone(),
        spec.checkpoint.clone(),
    )
}

/// Builds every stage over a stream of upserts.
///
/// Upserts make ingest idempotent: re-posting a mention with the same id and body changes
/// nothing; a new body retracts the old scores; `None` retracts the mention everywhere.
pub fn stages<'s>(upserts: Stream<'s, u64, Vec<Upsert>>, spec: GraphSpec) -> Stages<'s> {
    let mentions = upserted(upserts, &spec);

    let lateness_us = spec.lateness.min(MAX_LATENESS).as_micros() as i64;
    let scored = score::score(mentions, spec.scoring);
    let scored = virality::virality(
        scored,
        virality::ViralitySpec {
            lateness_us,
            late: spec.late,
            gauges: spec.gauges.clone(),
            spill_dir: spec.spill_dir.clone(),
            checkpoint: spec.checkpoint.clone(),
        },
    );
    let trend_spec = trends::TrendSpec {
        dir: spec.trend_dir.clone(),
        horizon_secs: spec.trend_horizon.as_secs() as i64,
        gauges: spec.gauges.clone(),
        checkpoint: spec.checkpoint.clone(),
    };
    let trends = trends::trends(scored.clone(), trend_spec.clone());
    let keyword_trends = trends::keyword_trends(scored.clone(), trend_spec);
    let firings = windows::windows(
        scored.clone(),
        windows::WindowSpec {
            lateness_us,
            rules: spec.rules.clone(),
            gauges: spec.gauges.clone(),
            checkpoint: spec.checkpoint.clone(),
        },
    );
    let alerts = alerts::alerts(
        firings.clone(),
        scored.clone(),
        alerts::AlertSpec {
            rules: spec.rules,
            checkpoint: spec.checkpoint.clone(),
        },
    );
    Stages {
        mentions: scored,
        trends,
        keyword_trends,
        firings,
        alerts,
    }
}

/// Builds the graph over a stream of upserts and returns every change for the sinks.
pub fn build<'s>(
    upserts: Stream<'s, u64, Vec<Upsert>>,
    spec: GraphSpec,
) -> VecCollection<'s, u64, Change> {
    let s = stages(upserts, spec);
    s.mentions
        .map(Change::Mention)
        .concat(s.trends.map(|(k, s)| Change::Trend(k, s)))
        .concat(s.keyword_trends.map(|(k, s)| Change::KeywordTrend(k, s)))
        .concat(s.alerts.map(Change::Alert))
}

/// Convenience for tests: the scope type the graph runs in.
pub type GraphScope<'s> = Scope<'s, u64>;
