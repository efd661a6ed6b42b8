//! The shape of vigie's stateful event-time stages (virality, windows, alerts): a timely
//! operator that applies each dataflow time's consolidated changes, in time order, to state
//! it owns, and emits the differences of its output at that same time.
//!
//! Why not `reduce`: these stages keep *event-time* state (stories, minute and hour counts)
//! whose horizon moves with a watermark computed from the data, and evict what falls behind
//! it. DD's arrangements would keep every key forever unless fed retractions; here the
//! stage owns its memory and drops what can no longer change (DESIGN.md, "two clocks").
//!
//! Records reach the stage already partitioned by organisation (the mention arrangement
//! exchanges by `MentionKey`, whose hash is the organisation's), so the pact is `Pipeline`
//! and every organisation's state lives on one worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::{AsCollection, Data, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::checkpoint::{frontier_time, CheckpointSpec, StageCheckpoint};

/// Records waiting for the input frontier, per dataflow time, with a capability for it
/// (shared by [`ordered`] and the upsert stage, which apply each time's records in order).
pub struct TimeStash<D>(BTreeMap<u64, (Capability<u64>, Vec<D>)>);

impl<D> Default for TimeStash<D> {
    fn default() -> Self {
        Self(BTreeMap::new())
    }
}

impl<D> TimeStash<D> {
    /// Stashes `d` at time `t`, holding a capability for `t` delayed from `least`.
    pub fn push(&mut self, least: &Capability<u64>, t: u64, d: D) {
        self.0
            .entry(t)
            .or_insert_with(|| (least.delayed(&t), Vec::new()))
            .1
            .push(d);
    }

    /// The earliest stashed time the frontier has passed, with its capability and records.
    pub fn pop_ready(
        &mut self,
        frontier: &timely::progress::frontier::MutableAntichain<u64>,
    ) -> Option<(u64, Capability<u64>, Vec<D>)> {
        let entry = self.0.first_entry()?;
        if frontier.less_equal(entry.key()) {
            return None;
        }
        let (time, (cap, data)) = entry.remove_entry();
        Some((time, cap, data))
    }
}

/// A stage's state that checkpoints can save and restore (see [`super::checkpoint`]).
pub trait Checkpointed {
    /// Writes this state as the stage's part of checkpoint `label`.
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint);
    /// Replaces this (empty) state by the stage's part of the checkpoint restored from.
    fn restore(&mut self, ckpt: &StageCheckpoint);
    /// Forgets what the state tracks for its next checkpoint (the keys changed since the
    /// last one). Called at every time of a stage that takes no checkpoints, whose
    /// tracking would otherwise grow with every key it ever changed.
    fn forget_changes(&mut self) {}
}

/// Applies `logic(state, time, changes, out)` to every dataflow time's changes in time
/// order, once the input frontier has passed it; `out` holds the output's differences at
/// that time. With a checkpoint handle, `state` starts from the restored checkpoint and is
/// saved at every boundary the stage passes (before the first time at or above it).
///
/// With `consolidate`, the changes are consolidated first (needed where a projection makes
/// some changes cancel out; sorting wide records costs, so stages whose input never holds
/// cancelling pairs skip it — their logic must not depend on the order of the changes).
pub fn ordered<'s, D, O, S, L>(
    input: VecCollection<'s, u64, D>,
    name: &str,
    consolidate_input: bool,
    (mut state, checkpoints): (S, Option<(Arc<CheckpointSpec>, &'static str)>),
    mut logic: L,
) -> VecCollection<'s, u64, O>
where
    D: Data,
    O: Data,
    S: Checkpointed + 'static,
    L: FnMut(&mut S, u64, Vec<(D, isize)>, &mut Vec<(O, isize)>) + 'static,
{
    let mut stash: TimeStash<(D, isize)> = TimeStash::default();
    let worker = input.inner.scope().index();
    let mut ckpt = checkpoints.map(|(spec, stage)| StageCheckpoint::new(spec, stage, worker));
    if let Some(c) = &ckpt {
        state.restore(c);
    }
    input
        .inner
        .unary_frontier(Pipeline, name, move |_, _| {
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(least) = cap.retain_least(0) else {
                        return;
                    };
                    for (d, t, r) in data.drain(..) {
                        stash.push(&least, t, (d, r));
                    }
                });
                while let Some((time, cap, mut changes)) = stash.pop_ready(frontier) {
                    save_if_crossed(&mut ckpt, &mut state, time);
                    if consolidate_input {
                        consolidate(&mut changes);
                    }
                    let mut out = Vec::new();
                    logic(&mut state, time, changes, &mut out);
                    if !out.is_empty() {
                        output
                            .session(&cap)
                            .give_iterator(out.into_iter().map(|(o, r)| (o, time, r)));
                    }
                }
                if let Some(t) = frontier_time(frontier) {
                    save_if_crossed(&mut ckpt, &mut state, t);
                }
            }
        })
        .as_collection()
}

/// Saves `state` when `t` is at or past a boundary not yet saved. Called before applying
/// time `t` and once the frontier reached `t`: everything below the boundary is applied
/// then, and nothing at or above it. Without checkpoints, the state forgets what it
/// tracked for them instead ([`Checkpointed::forget_changes`]).
pub fn save_if_crossed<S: Checkpointed>(ckpt: &mut Option<StageCheckpoint>, state: &mut S, t: u64) {
    match ckpt {
        Some(c) => {
            if let Some(label) = c.crossed(t) {
                let started = std::time::Instant::now();
                state.save(label, c);
                c.spec()
                    .writer
                    .stalled(c.stage(), started.elapsed().as_micros() as u64);
            }
        }
        None => state.forget_changes(),
    }
}

/// Minute index of a time in microseconds since the epoch.
pub fn minute_of_us(t_us: i64) -> i64 {
    t_us.div_euclid(60_000_000)
}

/// Per-organisation event clock: the largest event time seen and the allowed lateness.
/// A change is *late* when its event time is below `max − lateness` as it stood before the
/// dataflow time that carries it (so the order of records inside one time never matters).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct EventClock {
    max_us: Option<i64>,
}

impl EventClock {
    /// The watermark (µs) for a lateness (µs): `max − lateness`, or `i64::MIN` before any
    /// data.
    pub fn watermark(&self, lateness_us: i64) -> i64 {
        self.max_us.map_or(i64::MIN, |m| m - lateness_us)
    }

    /// Whether a change at `t_us` is late.
    pub fn is_late(&self, t_us: i64, lateness_us: i64) -> bool {
        t_us < self.watermark(lateness_us)
    }

    /// Notes an inserted record's event time.
    pub fn observe(&mut self, t_us: i64) {
        self.max_us = Some(self.max_us.map_or(t_us, |m| m.max(t_us)));
    }

    /// The largest event time seen.
    pub fn max_us(&self) -> Option<i64> {
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    use differential_dataflow::input::InputSession;

    use super::*;

    /// Tracks every change it applies for its next checkpoint, as the stages do, and
    /// records the most it ever held.
    struct Tracking {
        tracked: usize,
        most: Arc<AtomicUsize>,
    }

    impl Checkpointed for Tracking {
        fn save(&mut self, _label: u64, _ckpt: &StageCheckpoint) {
            self.tracked = 0;
        }
        fn restore(&mut self, _ckpt: &StageCheckpoint) {}
        fn forget_changes(&mut self) {
            self.tracked = 0;
        }
    }

    /// Without checkpoints nothing drains a stage's tracking, which then grew with every
    /// key ever changed (the virality and windows stages kept every mention id they saw:
    /// hundreds of MiB after 10 M mentions in `windows_rss --graph 1`).
    #[test]
    fn a_stage_without_checkpoints_holds_at_most_one_times_changes_for_them() {
        let most = Arc::new(AtomicUsize::new(0));
        let seen = most.clone();
        timely::execute_directly(move |worker| {
            let mut input: InputSession<u64, u64, isize> = InputSession::new();
            let probe = worker.dataflow(|scope| {
                let state = Tracking {
                    tracked: 0,
                    most: seen.clone(),
                };
                ordered(
                    input.to_collection(scope),
                    "Tracking",
                    false,
                    (state, None),
                    |s: &mut Tracking,
                     _t,
                     changes: Vec<(u64, isize)>,
                     _out: &mut Vec<(u64, isize)>| {
                        s.tracked += changes.len();
                        s.most.fetch_max(s.tracked, Relaxed);
                    },
                )
                .probe()
                .0
            });
            for t in 0..100u64 {
                for i in 0..10 {
                    input.insert(t * 10 + i);
                }
                input.advance_to(t + 1);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
            }
        });
        assert_eq!(most.load(Relaxed), 10, "one time's changes, not all 1,000");
    }
}
