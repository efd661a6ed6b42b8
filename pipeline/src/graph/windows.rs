//! Windows stage: sliding event-time windows per organisation, source and keyword, and the
//! windows in which a volume-spike or sentiment-dip condition holds.
//!
//! A window ends on a minute boundary `e` and covers the `window_minutes` minutes before
//! it (default 60). Its *baseline* is the `baseline_hours` clock hours (default 24) that end
//! at the start of the hour in which the window starts, so the two never overlap.
//! - spike: `count ≥ min_count` and `count > max(mean + k·σ, min_ratio · mean)`, with the
//!   mean and σ of the baseline's hourly counts scaled to the window's length;
//! - dip: `count ≥ min_count`, baseline count ≥ `min_count`, and the window's negative
//!   share exceeds the baseline's by more than `min_rise`.
//!
//! A key raises nothing until its first mention lies in its window's first baseline hour or
//! earlier (no cold-start alerts).
//!
//! The output is the set of windows whose condition holds, with their numbers, kept up to
//! date as data arrives (a retraction can remove a window from the set). Windows are
//! evaluated up to the minute of the organisation's newest event, eagerly: the window that
//! holds the newest mention is evaluated as soon as that mention is processed, so an alert
//! needs no window to close first.
//!
//! Event time: changes are classified late or on time exactly as in the virality stage;
//! late ones are left out of every window. With lateness below the shortest window, a
//! window is final once the watermark passes its end, and a baseline hour never changes
//! after the windows that use it are evaluated; state older than the longest window plus
//! the longest baseline behind the watermark is dropped, as are final windows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use differential_dataflow::VecCollection;
use uuid::Uuid;

use super::chain::{self, apply_to, Chain, Changes};
use super::checkpoint::{CheckpointSpec, StageCheckpoint};
use super::ordered::{minute_of_us, ordered, Checkpointed, EventClock};
use super::records::{Firing, MentionKey, Scored, WindowKey, WindowRule};
use super::{GaugeShare, StateGauges};
use crate::rules::{AlertRules, RuleBook, MAX_BASELINE_HOURS, MAX_WINDOW_MINUTES};

/// What the windows stage needs of a mention.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct WinRec {
    /// Identity.
    pub key: MentionKey,
    /// Event time, µs.
    pub t_us: i64,
    /// Source.
    pub source: Uuid,
    /// Matched keywords.
    pub keywords: Vec<String>,
    /// Whether its sentiment is negative.
    pub negative: bool,
}

impl WinRec {
    /// The projection of a scored mention (virality changes do not reach this stage).
    pub fn of(s: &Scored) -> WinRec {
        WinRec {
            key: s.key,
            t_us: s.body.created_at_us,
            source: s.body.source,
            keywords: s.body.keywords.to_vec(),
            negative: s.label < 0,
        }
    }

    /// The keys it counts under: the organisation, its source, each keyword.
    pub fn window_keys(&self) -> Vec<WindowKey> {
        let mut keys = Vec::with_capacity(2 + self.keywords.len());
        keys.push(WindowKey::Org);
        keys.push(WindowKey::Source(self.source));
        let mut kws: Vec<&String> = self.keywords.iter().collect();
        kws.sort();
        kws.dedup();
        keys.extend(kws.into_iter().map(|k| WindowKey::Keyword(k.clone())));
        keys
    }
}

/// Options of the windows stage.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Allowed lateness, microseconds.
    pub lateness_us: i64,
    /// Rules per organisation.
    pub rules: Arc<RuleBook>,
    /// Where the state's size is reported.
    pub gauges: Arc<StateGauges>,
    /// Checkpoints (`None`: none written, nothing restored).
    pub checkpoint: Option<Arc<CheckpointSpec>>,
}

/// Mentions kept per minute as alert samples.
const SAMPLES_PER_MINUTE: usize = 5;

/// Per-key counts.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// (mentions, negative) per minute index.
    pub minutes: BTreeMap<i64, (u32, u32)>,
    /// (mentions, negative) per hour index.
    pub hours: BTreeMap<i64, (u32, u32)>,
    /// Newest counted mentions per minute.
    recent: BTreeMap<i64, Vec<(i64, Uuid)>>,
    /// Minute of the first mention ever counted under the key.
    pub first: Option<i64>,
}

fn bump(map: &mut BTreeMap<i64, (u32, u32)>, k: i64, neg: bool, add: bool) {
    let e = map.entry(k).or_default();
    if add {
        e.0 += 1;
        e.1 += u32::from(neg);
    } else {
        e.0 = e.0.saturating_sub(1);
        e.1 = e.1.saturating_sub(u32::from(neg));
    }
    if e.0 == 0 {
        map.remove(&k);
    }
}

impl Counts {
    /// Counts (`add`) or uncounts a mention.
    pub fn apply(&mut self, r: &WinRec, add: bool) {
        let minute = minute_of_us(r.t_us);
        if add {
            self.first = Some(self.first.map_or(minute, |f| f.min(minute)));
        }
        bump(&mut self.minutes, minute, r.negative, add);
        bump(&mut self.hours, minute.div_euclid(60), r.negative, add);
        let recent = self.recent.entry(minute).or_default();
        if add {
            recent.push((r.t_us, r.key.id));
            recent.sort_by(|a, b| b.cmp(a));
            recent.truncate(SAMPLES_PER_MINUTE);
        } else {
            recent.retain(|(_, id)| *id != r.key.id);
        }
        if recent.is_empty() {
            self.recent.remove(&minute);
        }
    }

    /// Mentions and negative mentions in minutes `[from, to)`.
    pub fn window(&self, from: i64, to: i64) -> (u64, u64) {
        self.minutes
            .range(from..to)
            .fold((0, 0), |(n, g), (_, (a, b))| {
                (n + u64::from(*a), g + u64::from(*b))
            })
    }

    /// Hourly (mentions, negative) of the `hours` hours before hour index `end`.
    pub fn baseline(&self, end: i64, hours: u32) -> Vec<(u64, u64)> {
        (end - i64::from(hours)..end)
            .map(|h| {
                self.hours
                    .get(&h)
                    .map_or((0, 0), |(a, b)| (u64::from(*a), u64::from(*b)))
            })
            .collect()
    }
}

/// Evaluates both rules on the window of `counts` ending at minute `end`: the firings.
pub fn evaluate(
    org: Uuid,
    key: &WindowKey,
    counts: &Counts,
    end: i64,
    rules: &AlertRules,
) -> Vec<Firing> {
    let w = i64::from(rules.window_minutes);
    let (n, neg) = counts.window(end - w, end);
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let base_end = (end - w).div_euclid(60);
    // No window alert before the key has a full baseline behind it (cold start).
    let warm = counts
        .first
        .is_some_and(|f| f < (base_end - i64::from(rules.baseline_hours)) * 60 + 60);
    if !warm {
        return out;
    }
    let base = counts.baseline(base_end, rules.baseline_hours);
    let hours = base.len() as f64;
    let hourly_mean = base.iter().map(|(a, _)| *a as f64).sum::<f64>() / hours;
    let var = base
        .iter()
        .map(|(a, _)| (*a as f64 - hourly_mean).powi(2))
        .sum::<f64>()
        / hours;
    // Hourly figures scaled to the window's length.
    let scale = w as f64 / 60.0;
    let mean = hourly_mean * scale;
    let sigma = var.sqrt() * scale;
    let milli = |x: f64| (x * 1000.0).round() as i64;
    let sample = || -> Vec<Uuid> {
        let mut ids = Vec::new();
        for (_, recent) in counts.recent.range(end - w..end).rev() {
            for (_, id) in recent {
                if ids.len() < SAMPLES_PER_MINUTE {
                    ids.push(*id);
                }
            }
        }
        ids
    };
    let spike = &rules.volume_spike;
    let threshold = mean + spike.k * sigma;
    let threshold = threshold.max(spike.min_ratio * mean);
    if spike.enabled && n >= u64::from(spike.min_count) && n as f64 > threshold {
        out.push(Firing {
            org,
            rule: WindowRule::Spike,
            key: key.clone(),
            end: end * 60,
            length: w * 60,
            observed: milli(n as f64),
            baseline: milli(mean),
            threshold: milli(threshold),
            sample: sample(),
        });
    }
    let dip = &rules.sentiment_dip;
    let base_n: u64 = base.iter().map(|(a, _)| a).sum();
    let base_neg: u64 = base.iter().map(|(_, b)| b).sum();
    if dip.enabled && n >= u64::from(dip.min_count) && base_n >= u64::from(dip.min_count) {
        let share = neg as f64 / n as f64;
        let base_share = base_neg as f64 / base_n as f64;
        if share - base_share > dip.min_rise {
            out.push(Firing {
                org,
                rule: WindowRule::Dip,
                key: key.clone(),
                end: end * 60,
                length: w * 60,
                observed: milli(share),
                baseline: milli(base_share),
                threshold: milli(base_share + dip.min_rise),
                sample: sample(),
            });
        }
    }
    out
}

/// An organisation's state. Serialised (for checkpoints) without the counted mentions,
/// which go to the stage's checkpoint chain, nor their index by minute, rebuilt from them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Org {
    clock: EventClock,
    keys: BTreeMap<WindowKey, Counts>,
    #[serde(skip)]
    counted: HashMap<Uuid, WinRec>,
    #[serde(skip)]
    counted_by_minute: BTreeMap<i64, Vec<Uuid>>,
    firing: BTreeMap<(WindowRule, WindowKey, i64), Firing>,
    /// Windows are evaluated up to this end minute (exclusive end of the newest minute).
    evaluated_to: Option<i64>,
    /// Counted mentions changed since the last checkpoint.
    #[serde(skip)]
    touched: HashSet<Uuid>,
}

impl Org {
    fn count(&mut self, r: &WinRec, add: bool, affected: &mut BTreeSet<(WindowKey, i64)>) {
        let minute = minute_of_us(r.t_us);
        for k in r.window_keys() {
            // A key stays once seen (its first minute decides when it may alert); keys are
            // few — the organisation, its sources and keywords.
            self.keys.entry(k.clone()).or_default().apply(r, add);
            affected.insert((k, minute));
        }
        self.touched.insert(r.key.id);
        if add {
            self.counted.insert(r.key.id, r.clone());
            self.counted_by_minute
                .entry(minute)
                .or_default()
                .push(r.key.id);
        } else {
            self.counted.remove(&r.key.id);
        }
    }

    fn set(
        &mut self,
        org: Uuid,
        key: &WindowKey,
        end: i64,
        rules: &AlertRules,
        out: &mut Vec<(Firing, isize)>,
    ) {
        let now = self
            .keys
            .get(key)
            .map(|c| evaluate(org, key, c, end, rules))
            .unwrap_or_default();
        for rule in [WindowRule::Spike, WindowRule::Dip] {
            let new = now.iter().find(|f| f.rule == rule);
            let slot = (rule, key.clone(), end);
            let old = self.firing.get(&slot);
            if old == new {
                continue;
            }
            if let Some(o) = self.firing.remove(&slot) {
                out.push((o, -1));
            }
            if let Some(n) = new {
                out.push((n.clone(), 1));
                self.firing.insert(slot, n.clone());
            }
        }
    }

    fn evict(&mut self, lateness: i64) {
        if self.clock.max_us().is_none() {
            return;
        }
        let wm_min = minute_of_us(self.clock.watermark(lateness));
        // Final windows: their end is at or behind the watermark.
        self.firing.retain(|(_, _, end), _| *end > wm_min);
        let keep_minutes = wm_min - i64::from(MAX_WINDOW_MINUTES) - 1;
        let keep_hours = keep_minutes.div_euclid(60) - i64::from(MAX_BASELINE_HOURS) - 1;
        for c in self.keys.values_mut() {
            c.minutes = c.minutes.split_off(&keep_minutes);
            c.recent = c.recent.split_off(&keep_minutes);
            c.hours = c.hours.split_off(&keep_hours);
        }
        while let Some(entry) = self.counted_by_minute.first_entry() {
            if *entry.key() >= wm_min - 1 {
                break;
            }
            let (minute, ids) = entry.remove_entry();
            for id in ids {
                // Only where it is still counted at that minute (it may have moved since).
                if self
                    .counted
                    .get(&id)
                    .is_some_and(|r| minute_of_us(r.t_us) == minute)
                {
                    self.counted.remove(&id);
                    self.touched.insert(id);
                }
            }
        }
    }
}

/// A mention's retracted and inserted records at one time.
type OldNew = (Option<WinRec>, Option<WinRec>);

#[derive(Default)]
struct State {
    orgs: HashMap<Uuid, Org>,
    shares: [GaugeShare; 4],
    ticks: u64,
    chain: Chain,
}

impl State {
    fn apply(
        &mut self,
        changes: Vec<(WinRec, isize)>,
        spec: &WindowSpec,
        out: &mut Vec<(Firing, isize)>,
    ) {
        let lateness = spec.lateness_us;
        let mut by_org: BTreeMap<Uuid, BTreeMap<Uuid, OldNew>> = BTreeMap::new();
        for (rec, diff) in changes {
            let slot = by_org
                .entry(rec.key.org)
                .or_default()
                .entry(rec.key.id)
                .or_default();
            if diff < 0 {
                slot.0 = Some(rec);
            } else {
                slot.1 = Some(rec);
            }
        }
        for (org_id, keys) in by_org {
            let rules = spec.rules.get(org_id);
            let org = self.orgs.entry(org_id).or_default();
            let mut affected = BTreeSet::new();
            let mut seen = Vec::new();
            for (id, (old, new)) in keys {
                if let Some(o) = old {
                    let counted = org.counted.get(&id) == Some(&o);
                    if counted && !org.clock.is_late(o.t_us, lateness) {
                        org.count(&o, false, &mut affected);
                    } else {
                        // Late: the window keeps it (a ghost), but it can't be retracted twice.
                        if org.counted.remove(&id).is_some() {
                            org.touched.insert(id);
                        }
                    }
                }
                if let Some(n) = new {
                    seen.push(n.t_us);
                    if !org.clock.is_late(n.t_us, lateness) {
                        org.count(&n, true, &mut affected);
                    }
                }
            }
            for t in seen {
                org.clock.observe(t);
            }
            let Some(max) = org.clock.max_us() else {
                continue;
            };
            let top = minute_of_us(max) + 1;
            let w = i64::from(rules.window_minutes);
            let mut to_eval: BTreeSet<(WindowKey, i64)> = BTreeSet::new();
            for (k, m) in affected {
                for e in m + 1..=(m + w).min(top) {
                    to_eval.insert((k.clone(), e));
                }
            }
            // The newest minute moved on: windows ending between the previous top and up
            // to one window length after it still hold older data, and have not been
            // evaluated yet (windows further on hold only this time's data: `affected`).
            if let Some(e0) = org.evaluated_to.filter(|e0| *e0 < top) {
                for (k, c) in &org.keys {
                    if c.minutes.range(e0 + 1 - w..top).next().is_none() {
                        continue; // no data in any of these windows: none fires
                    }
                    for e in e0 + 1..=(e0 + w).min(top) {
                        to_eval.insert((k.clone(), e));
                    }
                }
            }
            org.evaluated_to = Some(org.evaluated_to.map_or(top, |e0| e0.max(top)));
            for (k, e) in to_eval {
                org.set(org_id, &k, e, &rules, out);
            }
            org.evict(lateness);
        }
        self.ticks += 1;
        if self.ticks % 64 != 1 {
            return;
        }
        let (mut keys, mut buckets, mut counted, mut firing) = (0, 0, 0, 0);
        for o in self.orgs.values() {
            keys += o.keys.len() as i64;
            buckets += o
                .keys
                .values()
                .map(|c| (c.minutes.len() + c.hours.len()) as i64)
                .sum::<i64>();
            counted += o.counted.len() as i64;
            firing += o.firing.len() as i64;
        }
        let g = &spec.gauges;
        self.shares[0].report(&g.window_keys, keys);
        self.shares[1].report(&g.window_buckets, buckets);
        self.shares[2].report(&g.counted, counted);
        self.shares[3].report(&g.firing, firing);
    }
}

/// The windows stage: final scored mentions → the set of windows whose spike or dip
/// condition holds.
pub fn windows<'s>(
    scored: VecCollection<'s, u64, Scored>,
    spec: WindowSpec,
) -> VecCollection<'s, u64, Firing> {
    let checkpoint = spec.checkpoint.clone().map(|c| (c, "windows"));
    ordered(
        scored.map(|s| WinRec::of(&s)),
        "Windows",
        true,
        (State::default(), checkpoint),
        move |state, _time, changes, out| state.apply(changes, &spec, out),
    )
}

/// A link of the counted mentions' chain.
type CountedLink = Vec<((Uuid, Uuid), Option<WinRec>)>;

impl Checkpointed for State {
    /// Counted mentions go to the chain (what changed since the last label, or all of
    /// them); the rest of each organisation's state is small and written whole.
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        // Full links are built by the writer thread (`chain::merge`) unless the chain
        // cannot be read back.
        let full = self.chain.must_be_full();
        let live = self.orgs.values().map(|o| o.counted.len()).sum();
        let mut counted: Changes<(Uuid, Uuid), WinRec> = Vec::new();
        for (&org, o) in &self.orgs {
            if full {
                counted.extend(o.counted.iter().map(|(id, r)| ((org, *id), Some(r))));
            } else {
                counted.extend(o.touched.iter().map(|id| ((org, *id), o.counted.get(id))));
            }
        }
        let entries = counted.len();
        self.chain.save(
            label,
            ckpt,
            &(&self.orgs, self.ticks),
            &counted,
            (full, entries),
            None,
            Some((chain::merge::<CountedLink>, live)),
        );
        self.forget_changes();
    }

    fn forget_changes(&mut self) {
        for o in self.orgs.values_mut() {
            o.touched.clear();
        }
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        let mut counted: HashMap<(Uuid, Uuid), WinRec> = HashMap::new();
        let Some((orgs, ticks)) = self
            .chain
            .restore::<CountedLink, (HashMap<Uuid, Org>, u64)>(ckpt, |link| {
                apply_to(&mut counted, link)
            })
        else {
            return;
        };
        self.orgs = orgs;
        self.ticks = ticks;
        for ((org, id), r) in counted {
            let o = self.orgs.entry(org).or_default();
            o.counted_by_minute
                .entry(minute_of_us(r.t_us))
                .or_default()
                .push(id);
            o.counted.insert(id, r);
        }
    }
}
