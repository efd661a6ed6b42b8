//! Trends stage: per (org, granularity, bucket, source), the accumulated [`Sums`] of the
//! mentions whose event time falls in the bucket.
//!
//! Each scored mention is exploded into one record per granularity whose *difference* is
//! the mention's sums; [`accumulate`] keeps each key's accumulated value and reports it
//! whenever it changes (retracting the previous value) — what DD's `count_total` does, with
//! state vigie can checkpoint. A retracted or re-scored mention therefore updates every
//! trend row it counted in.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::difference::{IsZero, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::checkpoint::{frontier_time, CheckpointSpec, StageCheckpoint};
use super::ordered::{save_if_crossed, Checkpointed, TimeStash};
use super::records::{KeywordTrendKey, Scored, Sums, TrendKey};
use crate::domain::Granularity;

/// The trend keys a mention counts in, one per granularity.
pub fn trend_keys(m: &Scored) -> [TrendKey; 4] {
    let t = m.created_at_secs();
    Granularity::ALL.map(|g| TrendKey {
        org: m.key.org,
        granularity: g,
        bucket: g.bucket_start(t),
        source: m.body.source,
    })
}

/// Accumulated sums per key (ordered: keys' `Hash` covers only their organisation).
struct Totals<K>(BTreeMap<K, Sums>);

impl<K: Serialize + DeserializeOwned + Ord> Checkpointed for Totals<K> {
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        ckpt.write(label, &self.0);
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        if let Some(totals) = ckpt.restored() {
            self.0 = totals;
        }
    }
}

/// Per key, the accumulated difference of `records`, as `(key, total)` with `+1`, whose
/// previous total is retracted when it changes (`count_total`'s output). Each dataflow
/// time is applied once the frontier has passed it, in time order.
pub fn accumulate<'s, K>(
    records: VecCollection<'s, u64, K, Sums>,
    name: &str,
    checkpoint: Option<(Arc<CheckpointSpec>, &'static str)>,
) -> VecCollection<'s, u64, (K, Sums)>
where
    K: ExchangeData + Ord + std::hash::Hash + Serialize + DeserializeOwned,
{
    let worker = records.inner.scope().index();
    let mut ckpt = checkpoint.map(|(spec, stage)| StageCheckpoint::new(spec, stage, worker));
    let mut totals = Totals(BTreeMap::new());
    if let Some(c) = &ckpt {
        totals.restore(c);
    }
    let mut stash: TimeStash<(K, Sums)> = TimeStash::default();
    let exchange = Exchange::new(|(k, _, _): &(K, u64, Sums)| k.hashed());
    records
        .inner
        .unary_frontier(exchange, name, move |_, _| {
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let least = cap.retain_least(0).expect("one output");
                    for (k, t, s) in data.drain(..) {
                        stash.push(&least, t, (k, s));
                    }
                });
                while let Some((time, cap, list)) = stash.pop_ready(frontier) {
                    save_if_crossed(&mut ckpt, &mut totals, time);
                    let mut deltas: BTreeMap<K, Sums> = BTreeMap::new();
                    for (k, s) in list {
                        deltas.entry(k).or_default().plus_equals(&s);
                    }
                    let mut out = Vec::with_capacity(2 * deltas.len());
                    for (k, delta) in deltas {
                        if delta.is_zero() {
                            continue;
                        }
                        let entry = totals.0.entry(k.clone()).or_default();
                        if !entry.is_zero() {
                            out.push(((k.clone(), *entry), time, -1));
                        }
                        entry.plus_equals(&delta);
                        if entry.is_zero() {
                            totals.0.remove(&k);
                        } else {
                            out.push(((k, *entry), time, 1));
                        }
                    }
                    if !out.is_empty() {
                        output.session(&cap).give_container(&mut out);
                    }
                }
                if let Some(t) = frontier_time(frontier) {
                    save_if_crossed(&mut ckpt, &mut totals, t);
                }
            }
        })
        .as_collection()
}

/// The trends stage: `(key, accumulated sums)`, updated incrementally.
pub fn trends<'s>(
    scored: VecCollection<'s, u64, Scored>,
    checkpoint: Option<Arc<CheckpointSpec>>,
) -> VecCollection<'s, u64, (TrendKey, Sums)> {
    let records = scored.explode(|m| {
        let sums = m.sums();
        trend_keys(&m).map(|k| (k, sums))
    });
    accumulate(records, "Trends", checkpoint.map(|c| (c, "trends")))
}

/// The keyword trends stage: per (org, granularity, bucket, keyword), the accumulated sums of
/// the mentions that matched the keyword (a mention counts once per keyword it matched).
pub fn keyword_trends<'s>(
    scored: VecCollection<'s, u64, Scored>,
    checkpoint: Option<Arc<CheckpointSpec>>,
) -> VecCollection<'s, u64, (KeywordTrendKey, Sums)> {
    let records = scored.filter(|m| !m.body.keywords.is_empty()).explode(|m| {
        let sums = m.sums();
        let t = m.created_at_secs();
        let mut keywords: Vec<&String> = m.body.keywords.iter().collect();
        keywords.sort();
        keywords.dedup();
        let mut out = Vec::with_capacity(keywords.len() * 4);
        for k in keywords {
            for g in Granularity::ALL {
                out.push((
                    KeywordTrendKey {
                        org: m.key.org,
                        granularity: g,
                        bucket: g.bucket_start(t),
                        keyword: k.clone(),
                    },
                    sums,
                ));
            }
        }
        out
    });
    accumulate(
        records,
        "KeywordTrends",
        checkpoint.map(|c| (c, "keyword-trends")),
    )
}
