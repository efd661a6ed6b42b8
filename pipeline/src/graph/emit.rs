//! Hands the graph's output to the sinks, one complete and consolidated batch per
//! dataflow time, once the frontier has passed that time.
//!
//! The channel is bounded and the send blocks the worker: a slow ClickHouse slows the
//! dataflow instead of growing memory.

use std::collections::BTreeMap;

use differential_dataflow::consolidation::consolidate;
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::records::Change;

/// All changes of one worker at one dataflow time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBatch {
    /// Timely worker index.
    pub worker: usize,
    /// Dataflow time (the ingest epoch, milliseconds since the epoch).
    pub time: u64,
    /// Consolidated changes: +1 new state, -1 retracted state (empty for a progress-only
    /// batch).
    pub changes: Vec<(Change, isize)>,
    /// This worker has sent everything for dataflow times below this one.
    pub complete_below: u64,
}

/// Installs the emit operator at the end of the graph. Changes of dataflow times below
/// `skip_below` are already in ClickHouse (a replay of the log at start-up re-creates them)
/// and are dropped here; only progress is reported for them.
pub fn emit<'s>(
    changes: VecCollection<'s, u64, Change>,
    worker: usize,
    skip_below: u64,
    tx: tokio::sync::mpsc::Sender<SinkBatch>,
) {
    let mut stash: BTreeMap<u64, Vec<(Change, isize)>> = BTreeMap::new();
    let mut reported = 0u64;
    changes
        .inner
        .sink(Pipeline, "Emit", move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for (change, time, diff) in data.drain(..) {
                    if time >= skip_below {
                        stash.entry(time).or_default().push((change, diff));
                    }
                }
            });
            while let Some(entry) = stash.first_entry() {
                if frontier.less_equal(entry.key()) {
                    break;
                }
                let (time, mut changes) = entry.remove_entry();
                consolidate(&mut changes);
                if changes.is_empty() {
                    continue;
                }
                // Stash entries leave in time order, so everything up to `time` is out.
                reported = reported.max(time + 1);
                let batch = SinkBatch {
                    worker,
                    time,
                    changes,
                    complete_below: reported,
                };
                if tx.blocking_send(batch).is_err() {
                    // The sink is gone (shutdown); nothing more can be delivered.
                    stash.clear();
                    return;
                }
            }
            // Progress without changes: tell the sink how far this worker is complete, so
            // it can record what the write-ahead log no longer needs. An empty frontier (the
            // input closed at shutdown) reports nothing more: progress names real times only.
            let Some(frontier) = frontier.frontier().iter().next().copied() else {
                return;
            };
            let complete = stash
                .first_key_value()
                .map_or(frontier, |(t, _)| frontier.min(*t));
            if complete > reported {
                reported = complete;
                let batch = SinkBatch {
                    worker,
                    time: complete,
                    changes: Vec::new(),
                    complete_below: complete,
                };
                if tx.blocking_send(batch).is_err() {
                    stash.clear();
                }
            }
        });
}
