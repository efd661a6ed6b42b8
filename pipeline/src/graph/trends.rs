//! Trends stage: per (org, granularity, bucket, source), the accumulated [`Sums`] of the
//! mentions whose event time falls in the bucket.
//!
//! Each scored mention counts under one key per granularity, its sums (negated for a
//! retraction) being the key's *difference*; [`accumulate`] keeps each key's accumulated
//! value and reports it whenever it changes (retracting the previous value) — what DD's
//! `count_total` does over the exploded records, with state vigie can checkpoint. A
//! retracted or re-scored mention therefore updates every trend row it counted in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use differential_dataflow::difference::{IsZero, Multiply, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::chain::{Before, Chain, Changes};
use super::checkpoint::{frontier_time, CheckpointSpec, StageCheckpoint};
use super::cold::{sync, Bucketed, Cold, ColdIndex, Group};
use super::ordered::{save_if_crossed, Checkpointed};
use super::records::{KeywordTrendKey, Scored, Sums, TrendKey};
use super::{GaugeShare, StateGauges};
use crate::domain::Granularity;

/// A trend key at the hour, widened to every granularity: the same key with granularity
/// `g` and the bucket of `g` holding the hour. Days, weeks and months start on an hour, so
/// the bucket of the hour's start is the bucket of every time within the hour.
pub trait Widen: Bucketed + Sized {
    /// This key at granularity `g` (`self` is an hour key).
    fn at(&self, g: Granularity) -> Self;
}

impl Widen for TrendKey {
    fn at(&self, g: Granularity) -> Self {
        TrendKey {
            granularity: g,
            bucket: g.bucket_start(self.bucket),
            ..*self
        }
    }
}

impl Widen for KeywordTrendKey {
    fn at(&self, g: Granularity) -> Self {
        KeywordTrendKey {
            granularity: g,
            bucket: g.bucket_start(self.bucket),
            ..self.clone()
        }
    }
}

/// The trend keys a mention counts in, one per granularity.
pub fn trend_keys(m: &Scored) -> [TrendKey; 4] {
    let hour = hour_key(m);
    Granularity::ALL.map(|g| hour.at(g))
}

/// The trend key of a mention's hour (the trends stage widens it per time).
fn hour_key(m: &Scored) -> TrendKey {
    TrendKey {
        org: m.key.org,
        granularity: Granularity::Hour,
        bucket: Granularity::Hour.bucket_start(m.created_at_secs()),
        source: m.body.source,
    }
}

/// Accumulated sums per key: recent buckets in memory (ordered: keys' `Hash` covers only
/// their organisation), ended ones on disk when the stage has a directory.
struct Totals<K> {
    hot: BTreeMap<K, Sums>,
    cold: Option<Cold>,
    /// Keys whose total in memory changed (or left memory) since the last checkpoint.
    touched: BTreeSet<K>,
    chain: Chain,
}

impl<K: Serialize + DeserializeOwned + Ord + Clone + Bucketed> Totals<K> {
    /// The total of `k`, reading its group back from disk first when it is there.
    fn entry(&mut self, k: &K, time: u64, gauges: &StateGauges) -> &mut Sums {
        if let Some(cold) = &mut self.cold {
            cold.observe(k.granularity(), k.bucket());
            if !self.hot.contains_key(k) && cold.is_cold(k.group()) {
                for (k, s) in cold.revive::<K>(k.group(), time) {
                    self.touched.insert(k.clone());
                    self.hot.insert(k, s);
                }
                gauges.trend_revivals.fetch_add(1, Ordering::Relaxed);
            }
        }
        if !self.touched.contains(k) {
            self.touched.insert(k.clone());
        }
        self.hot.entry(k.clone()).or_default()
    }

    /// Reports the totals in memory and the groups on disk.
    fn report(&self, gauges: &StateGauges, shares: &mut [GaugeShare; 2]) {
        shares[0].report(&gauges.trend_totals, self.hot.len() as i64);
        let on_disk = self.cold.as_ref().map_or(0, Cold::groups);
        shares[1].report(&gauges.trend_groups_on_disk, on_disk as i64);
    }

    /// Moves the groups that ended long enough ago to disk, once per new hour.
    fn sweep(&mut self) {
        let Some(cold) = &mut self.cold else {
            return;
        };
        let Some(limit) = cold.due() else {
            return;
        };
        let mut due: BTreeMap<Group, Vec<(&K, &Sums)>> = BTreeMap::new();
        for (k, s) in &self.hot {
            let group = k.group();
            if group.end() <= limit {
                due.entry(group).or_default().push((k, s));
            }
        }
        let mut moved: Vec<K> = Vec::new();
        for (group, entries) in due {
            if cold.evict(group, &entries) {
                moved.extend(entries.into_iter().map(|(k, _)| k.clone()));
            }
        }
        for k in moved {
            self.hot.remove(&k);
            self.touched.insert(k);
        }
    }
}

impl<K: Serialize + DeserializeOwned + Ord + Clone + Bucketed> Checkpointed for Totals<K> {
    /// Totals in memory go to the chain (those changed since the last label, or all of
    /// them); the part holds the index of the groups on disk, whose files are synced first.
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        // Files moved to disk are synced before the part that lists them is written.
        let files = self.cold.as_mut().map(Cold::take_unsynced);
        let before = files
            .filter(|f| !f.is_empty())
            .map(|files| -> Before { Box::new(move || Ok(sync(&files)?)) });
        let full = self.chain.wants_full(self.touched.len());
        let link: Changes<&K, Sums> = if full {
            self.hot.iter().map(|(k, s)| (k, Some(s))).collect()
        } else {
            self.touched.iter().map(|k| (k, self.hot.get(k))).collect()
        };
        let entries = link.len();
        let small = self.cold.as_ref().map(Cold::index);
        let usable = self
            .chain
            .save(label, ckpt, &small, &link, (full, entries), before, None);
        self.touched.clear();
        if let (Some(cold), Some(usable)) = (&mut self.cold, usable) {
            cold.collect(usable);
        }
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        let hot = &mut self.hot;
        let index = self
            .chain
            .restore::<Vec<(K, Option<Sums>)>, Option<ColdIndex>>(ckpt, |link| {
                let n = link.len();
                for (k, s) in link {
                    match s {
                        Some(s) => hot.insert(k, s),
                        None => hot.remove(&k),
                    };
                }
                n
            });
        if let (Some(cold), Some(Some(index))) = (&mut self.cold, index) {
            cold.restore(index);
        }
    }

    fn forget_changes(&mut self) {
        self.touched.clear();
    }
}

/// Where a trends stage keeps its totals and reports their size.
#[derive(Debug, Clone, Default)]
pub struct TrendSpec {
    /// Directory under which the totals of long-ended buckets move to files, one
    /// subdirectory per stage (`None`: every total stays in memory).
    pub dir: Option<PathBuf>,
    /// Seconds after its group's end (on the latest hour bucket seen) a total moves there.
    pub horizon_secs: i64,
    /// Gauges the stage reports to.
    pub gauges: Arc<StateGauges>,
    /// Checkpoints to write and restore from.
    pub checkpoint: Option<Arc<CheckpointSpec>>,
}

/// Per time, each hour key's summed difference, with a capability for the time.
type Deltas<K> = BTreeMap<u64, (Capability<u64>, BTreeMap<K, Sums>)>;

/// Per key, the accumulated sums of the mentions counted under it, as `(key, total)` with
/// `+1`, whose previous total is retracted when it changes (`count_total`'s output over
/// the mentions exploded into `(key, sums)` records). `hour_keys` gives a mention's keys
/// at the hour; each counts at every granularity ([`Widen`]). Each dataflow time is
/// applied once the frontier has passed it, in time order. `stage` names the checkpoint
/// part and the stage's directory under `spec.dir`.
///
/// The mentions are summed per hour key as they arrive, and widened per time, so a time
/// holds one `Sums` per hour key it touched, not one record per mention and granularity:
/// materialising those records (and the vectors holding them) was the largest part of both
/// trends stages, most of it page faults as the vectors grew (profile of the max phase,
/// benches/README.md).
pub fn accumulate<'s, K, E>(
    scored: VecCollection<'s, u64, Scored>,
    mut hour_keys: E,
    name: &str,
    stage: &'static str,
    spec: TrendSpec,
) -> VecCollection<'s, u64, (K, Sums)>
where
    K: ExchangeData + Ord + std::hash::Hash + Serialize + DeserializeOwned + Widen,
    E: FnMut(&Scored, &mut Vec<K>) + 'static,
{
    let worker = scored.inner.scope().index();
    let mut ckpt = spec
        .checkpoint
        .map(|spec| StageCheckpoint::new(spec, stage, worker));
    let restoring = ckpt.as_ref().is_some_and(|c| c.spec().restore.is_some());
    let cold = spec.dir.map(|dir| {
        let dir = dir.join(stage);
        Cold::open(dir.clone(), spec.horizon_secs, restoring, ckpt.is_some())
            .unwrap_or_else(|e| panic!("cannot prepare {}: {e}", dir.display()))
    });
    let mut totals = Totals {
        hot: BTreeMap::new(),
        cold,
        touched: BTreeSet::new(),
        chain: Chain::default(),
    };
    if let Some(c) = &ckpt {
        totals.restore(c);
    }
    let gauges = spec.gauges;
    let mut shares: [GaugeShare; 2] = Default::default();
    let mut stash: Deltas<K> = BTreeMap::new();
    let mut mention_keys: Vec<K> = Vec::new();
    // A key's hash is its organisation's, as is a mention's: each mention goes to the
    // worker holding its keys' totals.
    let exchange = Exchange::new(|(m, _, _): &(Scored, u64, isize)| m.key.hashed());
    scored
        .inner
        .unary_frontier(exchange, name, move |_, _| {
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let least = cap.retain_least(0).expect("one output");
                    for (m, t, r) in data.drain(..) {
                        hour_keys(&m, &mut mention_keys);
                        if mention_keys.is_empty() {
                            continue;
                        }
                        let sums = m.sums().multiply(&r);
                        let deltas = &mut stash
                            .entry(t)
                            .or_insert_with(|| (least.delayed(&t), BTreeMap::new()))
                            .1;
                        for k in mention_keys.drain(..) {
                            deltas.entry(k).or_default().plus_equals(&sums);
                        }
                    }
                });
                while let Some(entry) = stash.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, hours)) = entry.remove_entry();
                    save_if_crossed(&mut ckpt, &mut totals, time);
                    let mut deltas: BTreeMap<K, Sums> = BTreeMap::new();
                    for (k, sums) in hours {
                        for g in Granularity::ALL {
                            deltas.entry(k.at(g)).or_default().plus_equals(&sums);
                        }
                    }
                    let mut out = Vec::with_capacity(2 * deltas.len());
                    for (k, delta) in deltas {
                        if delta.is_zero() {
                            continue;
                        }
                        let entry = totals.entry(&k, time, &gauges);
                        if !entry.is_zero() {
                            out.push(((k.clone(), *entry), time, -1));
                        }
                        entry.plus_equals(&delta);
                        if entry.is_zero() {
                            totals.hot.remove(&k);
                        } else {
                            out.push(((k, *entry), time, 1));
                        }
                    }
                    totals.sweep();
                    totals.report(&gauges, &mut shares);
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

impl Bucketed for TrendKey {
    fn granularity(&self) -> Granularity {
        self.granularity
    }
    fn bucket(&self) -> i64 {
        self.bucket
    }
}

impl Bucketed for KeywordTrendKey {
    fn granularity(&self) -> Granularity {
        self.granularity
    }
    fn bucket(&self) -> i64 {
        self.bucket
    }
}

/// The trends stage: `(key, accumulated sums)`, updated incrementally. With a directory,
/// the totals of long-ended buckets move to files under it (see [`super::cold`]).
pub fn trends<'s>(
    scored: VecCollection<'s, u64, Scored>,
    spec: TrendSpec,
) -> VecCollection<'s, u64, (TrendKey, Sums)> {
    accumulate(
        scored,
        |m, keys| keys.push(hour_key(m)),
        "Trends",
        "trends",
        spec,
    )
}

/// The keyword trends stage: per (org, granularity, bucket, keyword), the accumulated sums of
/// the mentions that matched the keyword (a mention counts once per keyword it matched).
pub fn keyword_trends<'s>(
    scored: VecCollection<'s, u64, Scored>,
    spec: TrendSpec,
) -> VecCollection<'s, u64, (KeywordTrendKey, Sums)> {
    let mut words: Vec<usize> = Vec::new();
    accumulate(
        scored,
        move |m, keys| {
            // Each keyword once, however often the source lists it.
            let keywords = &m.body.keywords;
            words.clear();
            words.extend(0..keywords.len());
            words.sort_unstable_by(|&a, &b| keywords[a].cmp(&keywords[b]));
            words.dedup_by(|a, b| keywords[*a] == keywords[*b]);
            let hour = Granularity::Hour.bucket_start(m.created_at_secs());
            for k in words.iter().map(|&i| &keywords[i]) {
                keys.push(KeywordTrendKey {
                    org: m.key.org,
                    granularity: Granularity::Hour,
                    bucket: hour,
                    keyword: k.clone(),
                });
            }
        },
        "KeywordTrends",
        "keyword-trends",
        spec,
    )
}
