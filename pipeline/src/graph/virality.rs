//! Virality stage: each mention's story velocity, maintained incrementally in event time.
//!
//! A mention's velocity comes from its story's *heat*: the story's on-time mentions per
//! minute within an hour either side of the mention's minute, weighted by
//! `vigie_udfs::virality::heat_weight` (time decay), compared with its organisation's usual
//! volume (the mean hourly count of the 24 hours that end an hour before the mention's
//! hour). Virality is the noisy-OR of that velocity and the mention's engagement
//! (`vigie_udfs::virality`). When later mentions join a story, the earlier ones' velocity
//! and virality rise and the stage emits their updated records: that is what can turn an
//! old mention into a critical alert.
//!
//! Event time and lateness (per organisation; see [`super::ordered::EventClock`]):
//! - a mention inserted on time (event time ≥ watermark) joins its story; one inserted
//!   late keeps engagement-only virality, is counted in `vigie_late_mentions_total`, and
//!   still counts in trends;
//! - a retraction applies to the story counts only when on time;
//! - a re-post that keeps the event time and story (new engagement numbers, typically)
//!   is an in-place update: its velocity stays, its virality follows the new engagement;
//! - with lateness below an hour, a member's organisation rate is final when it joins,
//!   and its heat is final once the watermark is an hour past its minute. It is then
//!   *frozen* (its velocity is kept, if non-zero, so a later update or retraction of the
//!   mention reproduces it), and its minute's counts are dropped an hour later. State
//!   therefore spans about two hours of event time per organisation, whatever the history.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use differential_dataflow::VecCollection;
use uuid::Uuid;
use vigie_udfs::virality::{heat_weight, velocity, HEAT_HORIZON_MINUTES};

use super::chain::{self, apply_to, Chain, Changes};
use super::checkpoint::{CheckpointSpec, StageCheckpoint};
use super::frozen::{FrozenSaved, FrozenStore};
use super::ordered::{minute_of_us, ordered, Checkpointed, EventClock};
use super::records::Scored;
use super::{GaugeShare, StateGauges};

/// Options of the virality stage.
#[derive(Debug, Clone)]
pub struct ViralitySpec {
    /// Allowed lateness, microseconds.
    pub lateness_us: i64,
    /// Counts mentions inserted later than the allowed lateness.
    pub late: Arc<AtomicU64>,
    /// Where the state's size is reported.
    pub gauges: Arc<StateGauges>,
    /// Where final velocities of frozen mentions are spilled (emptied first, unless
    /// restoring a checkpoint; `None`: kept in memory). One directory per worker.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Checkpoints (`None`: none written, nothing restored).
    pub checkpoint: Option<Arc<CheckpointSpec>>,
}

const H: i64 = HEAT_HORIZON_MINUTES as i64;
const HOUR_US: i64 = 3_600_000_000;

/// Mean hourly count of the 24 hours `[hour − 25, hour − 1)`.
pub fn org_rate(hours: &BTreeMap<i64, u32>, hour: i64) -> f64 {
    let n: u64 = hours
        .range(hour - 25..hour - 1)
        .map(|(_, c)| u64::from(*c))
        .sum();
    n as f64 / 24.0
}

/// Heat (thousandths) of a story's minute `x` from its per-minute counts.
pub fn heat(minutes: &BTreeMap<i64, u32>, x: i64) -> u64 {
    minutes
        .range(x - H..=x + H)
        .map(|(y, c)| u64::from(*c) * u64::from(heat_weight((x - y).unsigned_abs() as u32)))
        .sum()
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Member {
    /// The record as currently emitted.
    rec: Scored,
    minute: i64,
    rate: f64,
}

#[derive(Debug, Default)]
struct Story {
    minutes: BTreeMap<i64, u32>,
    live: BTreeMap<i64, Vec<Uuid>>,
}

#[derive(Debug, Default)]
struct Org {
    clock: EventClock,
    hours: BTreeMap<i64, u32>,
    stories: HashMap<u64, Story>,
    members: HashMap<Uuid, Member>,
    to_freeze: BTreeMap<i64, Vec<Uuid>>,
    to_drop: BTreeMap<i64, Vec<u64>>,
    /// Members and stories (their minute counts) changed since the last checkpoint.
    touched: HashSet<Uuid>,
    touched_stories: HashSet<u64>,
}

fn dec(map: &mut BTreeMap<i64, u32>, k: i64) {
    if let Some(c) = map.get_mut(&k) {
        *c -= 1;
        if *c == 0 {
            map.remove(&k);
        }
    }
}

impl Org {
    fn retract(
        &mut self,
        o: &Scored,
        lateness: i64,
        affected: &mut BTreeSet<(u64, i64)>,
        frozen: &mut FrozenStore,
    ) -> Scored {
        let id = o.key.id;
        if let Some(m) = self.members.remove(&id) {
            self.touched.insert(id);
            let story = self.stories.entry(m.rec.story).or_default();
            if let Some(ids) = story.live.get_mut(&m.minute) {
                ids.retain(|x| *x != id);
                if ids.is_empty() {
                    story.live.remove(&m.minute);
                }
            }
            if !self.clock.is_late(o.body.created_at_us, lateness) {
                dec(&mut story.minutes, m.minute);
                self.touched_stories.insert(m.rec.story);
                dec(&mut self.hours, o.body.created_at_us.div_euclid(HOUR_US));
                affected.insert((m.rec.story, m.minute));
            }
            m.rec
        } else {
            let v = frozen.remove(o.key.org, id, o.body.created_at_us);
            o.clone().with_velocity(v)
        }
    }
}

/// Per-worker state of the stage.
#[derive(Debug)]
struct State {
    orgs: HashMap<Uuid, Org>,
    frozen: FrozenStore,
    shares: [GaugeShare; 3],
    ticks: u64,
    chain: Chain,
}

impl State {
    fn apply(
        &mut self,
        changes: Vec<(Scored, isize)>,
        spec: &ViralitySpec,
        out: &mut Vec<(Scored, isize)>,
    ) {
        let lateness = spec.lateness_us;
        // Changes grouped by organisation and mention, consolidated per mention (cheap: a
        // mention has one or two changes at a time, where sorting all the wide records of
        // a time would not be).
        let mut grouped: BTreeMap<Uuid, BTreeMap<Uuid, Vec<(Scored, isize)>>> = BTreeMap::new();
        for (rec, diff) in changes {
            grouped
                .entry(rec.key.org)
                .or_default()
                .entry(rec.key.id)
                .or_default()
                .push((rec, diff));
        }
        for (org_id, keys) in grouped {
            let keys = keys.into_iter().filter_map(|(id, mut recs)| {
                if recs.len() > 1 {
                    differential_dataflow::consolidation::consolidate(&mut recs);
                }
                let mut slot: (Option<Scored>, Option<Scored>) = (None, None);
                for (rec, diff) in recs {
                    if diff < 0 {
                        slot.0 = Some(rec);
                    } else if diff > 0 {
                        slot.1 = Some(rec);
                    }
                }
                (slot.0.is_some() || slot.1.is_some()).then_some((id, slot))
            });
            let org = self.orgs.entry(org_id).or_default();
            let mut affected = BTreeSet::new();
            let mut fresh = BTreeSet::new();
            let mut seen = Vec::new();
            for (id, (old, new)) in keys {
                match (old, new) {
                    (Some(o), Some(n))
                        if o.body.created_at_us == n.body.created_at_us && o.story == n.story =>
                    {
                        // In place: same window membership, new engagement.
                        let (prev, v) = match org.members.get(&id) {
                            Some(m) => (m.rec.clone(), m.rec.velocity),
                            None => {
                                let v = self.frozen.get(org_id, id, o.body.created_at_us);
                                (o.with_velocity(v), v)
                            }
                        };
                        let next = n.with_velocity(v);
                        out.push((prev, -1));
                        out.push((next.clone(), 1));
                        if let Some(m) = org.members.get_mut(&id) {
                            m.rec = next;
                            org.touched.insert(id);
                        }
                    }
                    (old, new) => {
                        if let Some(o) = old {
                            out.push((
                                org.retract(&o, lateness, &mut affected, &mut self.frozen),
                                -1,
                            ));
                        }
                        if let Some(n) = new {
                            let t = n.body.created_at_us;
                            seen.push(t);
                            if org.clock.is_late(t, lateness) {
                                spec.late.fetch_add(1, Ordering::Relaxed);
                                out.push((n.with_velocity(0), 1));
                                continue;
                            }
                            let minute = minute_of_us(t);
                            let hour = t.div_euclid(HOUR_US);
                            let rate = org_rate(&org.hours, hour);
                            *org.hours.entry(hour).or_default() += 1;
                            let story = org.stories.entry(n.story).or_default();
                            *story.minutes.entry(minute).or_default() += 1;
                            org.touched_stories.insert(n.story);
                            org.touched.insert(id);
                            story.live.entry(minute).or_default().push(id);
                            org.to_freeze.entry(minute).or_default().push(id);
                            org.to_drop.entry(minute).or_default().push(n.story);
                            affected.insert((n.story, minute));
                            fresh.insert(id);
                            org.members.insert(
                                id,
                                Member {
                                    rec: n,
                                    minute,
                                    rate,
                                },
                            );
                        }
                    }
                }
            }
            for t in seen {
                org.clock.observe(t);
            }
            // Re-evaluate every live member within the heat horizon of a changed minute.
            let mut last_story = None;
            let mut minutes: BTreeSet<i64> = BTreeSet::new();
            let mut flush = |story_id: u64, minutes: &mut BTreeSet<i64>, org: &mut Org| {
                let Some(story) = org.stories.get(&story_id) else {
                    minutes.clear();
                    return;
                };
                for x in std::mem::take(minutes) {
                    let Some(ids) = story.live.get(&x) else {
                        continue;
                    };
                    let h = heat(&story.minutes, x);
                    for id in ids {
                        let Some(m) = org.members.get_mut(id) else {
                            continue;
                        };
                        let v = velocity(h, m.rate);
                        if fresh.contains(id) {
                            m.rec = m.rec.clone().with_velocity(v);
                            out.push((m.rec.clone(), 1));
                        } else if v != m.rec.velocity {
                            out.push((m.rec.clone(), -1));
                            m.rec = m.rec.clone().with_velocity(v);
                            out.push((m.rec.clone(), 1));
                            org.touched.insert(*id);
                        }
                    }
                }
            };
            for (story_id, m) in affected {
                if last_story.is_some_and(|s| s != story_id) {
                    flush(last_story.unwrap_or_default(), &mut minutes, org);
                }
                last_story = Some(story_id);
                if let Some(story) = org.stories.get(&story_id) {
                    minutes.extend(story.live.range(m - H..=m + H).map(|(x, _)| *x));
                }
            }
            if let Some(s) = last_story {
                flush(s, &mut minutes, org);
            }
            org.evict(org_id, lateness, &mut self.frozen);
        }
        self.ticks += 1;
        if self.ticks % 64 != 1 {
            return;
        }
        let (mut members, mut stories) = (0, 0);
        let frozen = self.frozen.in_memory() as i64;
        for o in self.orgs.values() {
            members += o.members.len() as i64;
            stories += o.stories.len() as i64;
        }
        let g = &spec.gauges;
        self.shares[0].report(&g.live_members, members);
        self.shares[1].report(&g.stories, stories);
        self.shares[2].report(&g.frozen_velocities, frozen);
    }
}

impl Org {
    /// Freezes members an hour behind the watermark and drops counts two hours behind.
    fn evict(&mut self, org_id: Uuid, lateness: i64, frozen: &mut FrozenStore) {
        if self.clock.max_us().is_none() {
            return;
        }
        let wm = self.clock.watermark(lateness);
        let wm_min = minute_of_us(wm);
        while let Some(entry) = self.to_freeze.first_entry() {
            if *entry.key() >= wm_min - H {
                break;
            }
            let (minute, ids) = entry.remove_entry();
            for id in ids {
                let Some(m) = self.members.get(&id) else {
                    continue;
                };
                if m.minute != minute {
                    continue;
                }
                let m = self.members.remove(&id).expect("present");
                self.touched.insert(id);
                frozen.freeze(org_id, id, m.rec.body.created_at_us, m.rec.velocity);
                if let Some(story) = self.stories.get_mut(&m.rec.story) {
                    story.live.remove(&minute);
                }
            }
        }
        frozen.seal(org_id, wm_min - H);
        while let Some(entry) = self.to_drop.first_entry() {
            if *entry.key() >= wm_min - 2 * H {
                break;
            }
            let (minute, stories) = entry.remove_entry();
            for s in stories {
                if let Some(story) = self.stories.get_mut(&s) {
                    if story.minutes.remove(&minute).is_some() {
                        self.touched_stories.insert(s);
                    }
                    story.live.remove(&minute);
                    if story.minutes.is_empty() && story.live.is_empty() {
                        self.stories.remove(&s);
                    }
                }
            }
        }
        let keep_from = wm.div_euclid(HOUR_US) - 25;
        self.hours = self.hours.split_off(&keep_from);
    }
}

/// The virality stage: scored mentions (engagement-only virality) → the same mentions with
/// their story velocity and final virality, updated as their stories grow.
pub fn virality<'s>(
    scored: VecCollection<'s, u64, Scored>,
    spec: ViralitySpec,
) -> VecCollection<'s, u64, Scored> {
    // Restoring a checkpoint keeps the spill directory (rolled back to the checkpoint by
    // `restore`); otherwise it is emptied and rebuilt by the log's replay.
    let restoring = spec
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.restore.is_some());
    let frozen = match &spec.spill_dir {
        Some(dir) if restoring => FrozenStore::reopen(dir.clone()),
        Some(dir) => FrozenStore::disk(dir.clone())
            .unwrap_or_else(|e| panic!("cannot prepare {}: {e}", dir.display())),
        None => FrozenStore::memory(),
    };
    let state = State {
        orgs: HashMap::new(),
        frozen,
        shares: Default::default(),
        ticks: 0,
        chain: Chain::default(),
    };
    let checkpoint = spec.checkpoint.clone().map(|c| (c, "virality"));
    // `apply` consolidates per mention itself (sorting whole records is costly).
    ordered(
        scored,
        "Virality",
        false,
        (state, checkpoint),
        move |state, _time, changes, out| state.apply(changes, &spec, out),
    )
}

/// A link of the stage's checkpoint chain: members, and stories' minute counts, by
/// organisation (see [`super::chain`]).
type Link = (
    Vec<((Uuid, Uuid), Option<Member>)>,
    Vec<((Uuid, u64), Option<BTreeMap<i64, u32>>)>,
);

/// The rest of the stage's checkpoint: each organisation's clock and hourly counts, the
/// operator's tick count and the frozen velocities' memory part.
type Small = (
    Vec<(Uuid, EventClock, BTreeMap<i64, u32>)>,
    u64,
    FrozenSaved,
);

impl Checkpointed for State {
    /// Members and stories' counts go to the chain (what changed since the last label, or
    /// all of them); the indexes by minute are rebuilt from them at a restore.
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        // Full links are built by the writer thread (`chain::merge`) unless the chain
        // cannot be read back.
        let full = self.chain.must_be_full();
        let mut members: Changes<(Uuid, Uuid), Member> = Vec::new();
        let mut stories: Changes<(Uuid, u64), BTreeMap<i64, u32>> = Vec::new();
        for (&org, o) in &self.orgs {
            let minutes = |s: &u64| {
                o.stories
                    .get(s)
                    .map(|st| &st.minutes)
                    .filter(|m| !m.is_empty())
            };
            if full {
                members.extend(o.members.iter().map(|(id, m)| ((org, *id), Some(m))));
                stories.extend(
                    o.stories
                        .keys()
                        .filter_map(|s| Some(((org, *s), Some(minutes(s)?)))),
                );
            } else {
                members.extend(o.touched.iter().map(|id| ((org, *id), o.members.get(id))));
                stories.extend(o.touched_stories.iter().map(|s| ((org, *s), minutes(s))));
            }
        }
        let entries = members.len() + stories.len();
        let live = self
            .orgs
            .values()
            .map(|o| o.members.len() + o.stories.len())
            .sum();
        let small: Vec<(Uuid, &EventClock, &BTreeMap<i64, u32>)> = self
            .orgs
            .iter()
            .map(|(id, o)| (*id, &o.clock, &o.hours))
            .collect();
        self.chain.save(
            label,
            ckpt,
            &(small, self.ticks, self.frozen.saved()),
            &(members, stories),
            (full, entries),
            None,
            Some((chain::merge::<Link>, live)),
        );
        self.forget_changes();
    }

    fn forget_changes(&mut self) {
        for o in self.orgs.values_mut() {
            o.touched.clear();
            o.touched_stories.clear();
        }
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        let mut members: HashMap<(Uuid, Uuid), Member> = HashMap::new();
        let mut stories: HashMap<(Uuid, u64), BTreeMap<i64, u32>> = HashMap::new();
        let Some((orgs, ticks, frozen)) = self.chain.restore::<Link, Small>(ckpt, |(m, s)| {
            apply_to(&mut members, m) + apply_to(&mut stories, s)
        }) else {
            return;
        };
        for (id, clock, hours) in orgs {
            let o = self.orgs.entry(id).or_default();
            o.clock = clock;
            o.hours = hours;
        }
        for ((org, s), minutes) in stories {
            let o = self.orgs.entry(org).or_default();
            for &minute in minutes.keys() {
                o.to_drop.entry(minute).or_default().push(s);
            }
            o.stories.entry(s).or_default().minutes = minutes;
        }
        for ((org, id), m) in members {
            let o = self.orgs.entry(org).or_default();
            let story = o.stories.entry(m.rec.story).or_default();
            story.live.entry(m.minute).or_default().push(id);
            o.to_freeze.entry(m.minute).or_default().push(id);
            o.members.insert(id, m);
        }
        self.ticks = ticks;
        self.frozen.restore(frozen);
    }
}
