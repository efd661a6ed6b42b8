//! The dataflow graph: upserted mentions → score → trends → sinks.
//!
//! Stages are functions over collections, one per file; this module only wires them.
//! The dataflow time is the ingest epoch (milliseconds since the epoch, strictly
//! increasing); event time (`created_at`) is data and decides buckets.

pub mod emit;
pub mod records;
pub mod score;
pub mod trends;

use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use timely::dataflow::{Scope, Stream};

use records::{Change, MentionBody, MentionKey};

/// One input record: the mention's new body, or `None` to delete it, at a dataflow time.
pub type Upsert = (MentionKey, Option<MentionBody>, u64);

/// Builds the graph over a stream of upserts and returns every change for the sinks.
///
/// Upserts make ingest idempotent: re-posting a mention with the same id and body changes
/// nothing; a new body retracts the old scores; `None` retracts the mention everywhere.
pub fn build<'s>(
    upserts: Stream<'s, u64, Vec<Upsert>>,
    scoring: score::ScoringSpec,
) -> VecCollection<'s, u64, Change> {
    let mentions = arrange_from_upsert::<
        ValBuilder<MentionKey, MentionBody, u64, isize>,
        ValSpine<MentionKey, MentionBody, u64, isize>,
        MentionKey,
        MentionBody,
    >(upserts, "Mentions")
    .as_collection(|k, v| (*k, v.clone()));

    let scored = score::score(mentions, scoring);
    let trends = trends::trends(scored.clone());

    scored
        .map(Change::Mention)
        .concat(trends.map(|(k, s)| Change::Trend(k, s)))
}

/// Convenience for tests: the scope type the graph runs in.
pub type GraphScope<'s> = Scope<'s, u64>;
