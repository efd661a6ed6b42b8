//! Checkpoints of the graph's state, so that a restart replays only the log's tail.
//!
//! **Labels.** The dataflow time is the ingest epoch in milliseconds. Every multiple of
//! `interval_ms` is a *boundary*; checkpoint `L` is the state of every stateful operator
//! after all dataflow times below `L` and none at or above it. Each operator writes its
//! part when its own input frontier (or the next time it applies) first reaches or passes
//! a boundary — no coordination between operators or workers is needed, because the
//! label is a property of the dataflow times, which are the same everywhere. An operator
//! that jumps over several boundaries writes only the newest (its state is the same for
//! all of them), so a label is *complete* only when every operator of every worker wrote
//! it: `<dir>/<label>/<stage>-<worker>.bin`.
//!
//! **Which one a restart uses.** Checkpoint `L` is *usable* when it is complete and every
//! time below `L` is in ClickHouse (`L ≤` the committed time recorded in the data dir): the
//! sink never needs an output the restored state will not produce again. A restart takes
//! the newest usable label, restores every operator from it and replays the log from `L`
//! (changes below the committed time are re-created but not written twice, as in a full
//! replay). With none usable — first start, another worker count or configuration, or a
//! checkpoint written by another vigie — state is rebuilt from the whole log, as before.
//!
//! **Files.** Written to a temporary name, synced, then renamed, so a crash mid-write
//! leaves an incomplete label, never a torn file. A failed write only makes its label
//! incomplete (logged). Older labels than the newest usable one are deleted by worker 0.
//! An operator only encodes its state at the boundary; writing, syncing and renaming
//! happen on a background thread ([`Writer`]), in the order the parts were queued, so the
//! dataflow does not wait for the disk (a label is complete once its last part lands) —
//! unless the writer is two labels behind: then a boundary waits for it, so encoded parts
//! never pile up in memory.
//!
//! The mention store is the one part too large to copy at every boundary: it keeps an undo
//! log instead (see [`super::upsert`]) and rolls back to the label at restart. The stages
//! with large maps (virality's live members and story counts, the windows' counted
//! mentions, the trends' totals in memory) encode only the entries changed since their
//! previous label, as links of a chain beside the labels (see [`super::chain`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Condvar, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Stateful operators that write a part of every checkpoint, per worker.
pub const STAGES: [&str; 6] = [
    "mentions",
    "virality",
    "windows",
    "alerts",
    "trends",
    "keyword-trends",
];

/// A part's write, run by the writer thread.
type Job = Box<dyn FnOnce() + Send>;

/// How many labels' parts may wait for the writer thread before a boundary waits for it.
const MAX_LABELS_QUEUED: usize = 2;

/// The thread that writes checkpoint parts, and what they cost.
#[derive(Debug, Default)]
pub struct Writer {
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    /// Parts queued and not yet written.
    pending: Arc<(Mutex<usize>, Condvar)>,
    /// Microseconds operators spent at boundaries (encoding state, the mention store's
    /// boundary work), per stage (in [`STAGES`] order): what a checkpoint costs the
    /// dataflow.
    pub stall_micros: [AtomicU64; STAGES.len()],
    /// Parts written.
    pub parts: AtomicU64,
    /// Microseconds the writer thread spent writing and syncing parts.
    pub write_micros: AtomicU64,
}

/// Counts one queued part as handled and wakes [`Writer::flush`].
fn finished(pending: &(Mutex<usize>, Condvar)) {
    let (count, done) = pending;
    *count.lock().expect("checkpoint writer") -= 1;
    done.notify_all();
}

impl Writer {
    /// Queues `job`, first waiting while `limit` parts or more are queued and not yet
    /// written: a disk slower than the checkpoints holds the dataflow at its boundaries
    /// (counted as their stall) instead of letting encoded parts pile up in memory.
    fn submit(self: &Arc<Self>, job: Job, limit: usize) {
        {
            let (count, done) = &*self.pending;
            let mut n = count.lock().expect("checkpoint writer");
            while *n >= limit.max(1) {
                n = done.wait(n).expect("checkpoint writer");
            }
            *n += 1;
        }
        let mut queue = self.queue.lock().expect("checkpoint writer");
        let tx = queue.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let pending = self.pending.clone();
            let writer = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("checkpoint-writer".into())
                .spawn(move || {
                    crate::priority::lower_this_thread();
                    for job in rx {
                        let started = std::time::Instant::now();
                        // A part that panics is only a part not written (its label stays
                        // incomplete); the thread goes on, so `flush` never waits forever.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!(
                                "writing a checkpoint part panicked; its label stays incomplete"
                            );
                        }
                        if let Some(w) = writer.upgrade() {
                            w.write_micros
                                .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                            w.parts.fetch_add(1, Relaxed);
                        }
                        finished(&pending);
                    }
                })
                .expect("spawning the checkpoint writer");
            tx
        });
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            // The thread is gone (it could not be kept): write on this thread.
            *queue = None;
            drop(queue);
            job();
            finished(&self.pending);
        }
    }

    /// Waits until every queued part is written.
    pub fn flush(&self) {
        let (count, done) = &*self.pending;
        let mut n = count.lock().expect("checkpoint writer");
        while *n > 0 {
            n = done.wait(n).expect("checkpoint writer");
        }
    }

    /// Notes `micros` spent at a boundary by `stage`.
    pub fn stalled(&self, stage: &str, micros: u64) {
        if let Some(i) = STAGES.iter().position(|s| *s == stage) {
            self.stall_micros[i].fetch_add(micros, Relaxed);
        }
    }

    /// Prometheus text of the counters.
    pub fn render_prometheus(&self) -> String {
        let secs = |a: &AtomicU64| a.load(Relaxed) as f64 / 1e6;
        let mut stalls = String::new();
        for (stage, micros) in STAGES.iter().zip(&self.stall_micros) {
            stalls.push_str(&format!(
                "vigie_checkpoint_stall_seconds_total{{stage=\"{stage}\"}} {}\n",
                secs(micros)
            ));
        }
        format!(
            "# HELP vigie_checkpoint_stall_seconds_total Time the dataflow's operators spent at checkpoint boundaries (encoding their state; the mention store's boundary), per stage.\n\
             # TYPE vigie_checkpoint_stall_seconds_total counter\n\
             {stalls}\
             # HELP vigie_checkpoint_write_seconds_total Time the checkpoint writer thread spent writing and syncing parts.\n\
             # TYPE vigie_checkpoint_write_seconds_total counter\n\
             vigie_checkpoint_write_seconds_total {}\n\
             # HELP vigie_checkpoint_parts_total Checkpoint parts written (one per stateful operator, worker and label).\n\
             # TYPE vigie_checkpoint_parts_total counter\n\
             vigie_checkpoint_parts_total {}\n",
            secs(&self.write_micros),
            self.parts.load(Relaxed)
        )
    }
}

/// Where checkpoints go and which one the graph starts from.
#[derive(Debug, Clone)]
pub struct CheckpointSpec {
    /// Directory of labels (`DATA_DIR/checkpoints`).
    pub dir: PathBuf,
    /// Milliseconds between boundaries.
    pub interval_ms: u64,
    /// The label operators restore from (`None`: empty state).
    pub restore: Option<u64>,
    /// Where the sink records its committed time, and for which ClickHouse target.
    pub progress: Option<(PathBuf, String)>,
    /// Workers of the dataflow (a label is complete with every worker's part).
    pub workers: usize,
    /// The thread that writes the parts (shared by every operator).
    pub writer: Arc<Writer>,
}

impl CheckpointSpec {
    fn label_dir(&self, label: u64) -> PathBuf {
        self.dir.join(format!("{label:020}"))
    }

    fn file(&self, label: u64, stage: &str, worker: usize) -> PathBuf {
        self.label_dir(label).join(format!("{stage}-{worker}.bin"))
    }

    /// The time below which everything is in ClickHouse, as recorded on disk (what a
    /// restart will read).
    pub fn durable_committed(&self) -> u64 {
        self.progress
            .as_ref()
            .map_or(0, |(path, target)| crate::sink::read_progress(path, target))
    }

    /// Queues one operator's part of checkpoint `label` for the writer thread: `state` is
    /// encoded now, and written after `before` (work that must be durable before the part
    /// exists) succeeds.
    pub fn write<S: Serialize>(
        &self,
        label: u64,
        stage: &'static str,
        worker: usize,
        state: &S,
        before: Option<Box<dyn FnOnce() -> anyhow::Result<()> + Send>>,
    ) {
        let path = self.file(label, stage, worker);
        let bytes = match bincode::serialize(state) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot encode a checkpoint part");
                return;
            }
        };
        let spec = self.clone();
        let limit = MAX_LABELS_QUEUED * STAGES.len() * self.workers;
        self.writer.submit(Box::new(move || {
            let result = (|| -> anyhow::Result<()> {
                if let Some(before) = before {
                    before()?;
                }
                std::fs::create_dir_all(spec.label_dir(label))?;
                crate::files::replace(&path, &bytes, true)?;
                Ok(())
            })();
            match result {
                Ok(()) => {
                    if worker == 0 && stage == STAGES[0] {
                        spec.prune();
                    }
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot write a checkpoint; a restart uses an older one or replays the whole log"
                ),
            }
        }), limit);
    }

    /// One operator's part of the checkpoint being restored (`None` when not restoring).
    /// A part that cannot be read stops the worker: the label was checked complete at
    /// start-up, so this is a damaged disk, and guessing would break exactness.
    pub fn read<S: DeserializeOwned>(&self, stage: &str, worker: usize) -> Option<S> {
        let label = self.restore?;
        let path = self.file(label, stage, worker);
        let f = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("reading checkpoint {}: {e}", path.display()));
        Some(
            bincode::deserialize_from(std::io::BufReader::new(f))
                .unwrap_or_else(|e| panic!("decoding checkpoint {}: {e}", path.display())),
        )
    }

    /// The newest usable label: complete, and not above the recorded committed time.
    pub fn latest_usable(&self) -> Option<u64> {
        let committed = self.durable_committed();
        labels(&self.dir)
            .into_iter()
            .rev()
            .filter(|l| *l <= committed)
            .find(|l| self.complete(*l))
    }

    /// Whether every operator of every worker wrote its part of `label`.
    pub fn complete(&self, label: u64) -> bool {
        STAGES
            .iter()
            .all(|stage| (0..self.workers.max(1)).all(|w| self.file(label, stage, w).is_file()))
    }

    /// Deletes labels older than the newest usable one.
    fn prune(&self) {
        let Some(keep) = self.latest_usable() else {
            return;
        };
        for label in labels(&self.dir).into_iter().filter(|l| *l < keep) {
            let _ = std::fs::remove_dir_all(self.label_dir(label));
        }
    }
}

/// Labels present under `dir`, ascending.
pub fn labels(dir: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// Tracks the boundaries one operator has passed.
#[derive(Debug, Clone, Copy)]
pub struct Boundaries {
    interval: u64,
    last: u64,
}

impl Boundaries {
    /// Starts after `restored` (the label restored from, or 0).
    pub fn new(interval_ms: u64, restored: u64) -> Self {
        Self {
            interval: interval_ms.max(1),
            last: restored,
        }
    }

    /// The newest boundary at or below `t` not yet passed, if any (and marks it passed).
    pub fn crossed(&mut self, t: u64) -> Option<u64> {
        let b = t / self.interval * self.interval;
        (b > self.last).then(|| {
            self.last = b;
            b
        })
    }
}

/// An operator's handle on checkpoints: its stage name, worker and boundaries.
#[derive(Debug, Clone)]
pub struct StageCheckpoint {
    spec: Arc<CheckpointSpec>,
    stage: &'static str,
    worker: usize,
    boundaries: Boundaries,
}

impl StageCheckpoint {
    /// The handle of `stage` on `worker`.
    pub fn new(spec: Arc<CheckpointSpec>, stage: &'static str, worker: usize) -> Self {
        let boundaries = Boundaries::new(spec.interval_ms, spec.restore.unwrap_or(0));
        Self {
            spec,
            stage,
            worker,
            boundaries,
        }
    }

    /// The restored state of this operator, when restarting from a checkpoint.
    pub fn restored<S: DeserializeOwned>(&self) -> Option<S> {
        self.spec.read(self.stage, self.worker)
    }

    /// The label to write before applying time `t` (or once the frontier reached `t`).
    pub fn crossed(&mut self, t: u64) -> Option<u64> {
        self.boundaries.crossed(t)
    }

    /// Queues this operator's part of `label` (see [`CheckpointSpec::write`]).
    pub fn write<S: Serialize>(&self, label: u64, state: &S) {
        self.spec.write(label, self.stage, self.worker, state, None);
    }

    /// Queues this operator's part of `label`, written once `before` succeeded.
    pub fn write_after<S: Serialize>(
        &self,
        label: u64,
        state: &S,
        before: Box<dyn FnOnce() -> anyhow::Result<()> + Send>,
    ) {
        self.spec
            .write(label, self.stage, self.worker, state, Some(before));
    }

    /// The checkpoints' options.
    pub fn spec(&self) -> &CheckpointSpec {
        &self.spec
    }

    /// The stage this handle writes for.
    pub fn stage(&self) -> &'static str {
        self.stage
    }

    /// Where this stage's checkpoint links go (see [`super::chain`]).
    pub fn chain_dir(&self) -> PathBuf {
        self.spec
            .dir
            .join("chains")
            .join(format!("{}-{}", self.stage, self.worker))
    }
}

/// The first time of the frontier (`None`: the input is finished).
pub fn frontier_time(frontier: &timely::progress::frontier::MutableAntichain<u64>) -> Option<u64> {
    frontier.frontier().iter().next().copied()
}

/// Chooses the label a start restores from and sets `spec.restore`; without one, empties
/// the checkpoints and the state directories (`state_dirs`: the stores' parents) so the
/// log's replay rebuilds everything. A label is chosen only when it is usable, written with
/// the same `fingerprint` (format, workers, lateness, scoring: what the state depends on),
/// and every worker's mention store under `mention_dir` can still roll back to it.
pub fn prepare(
    spec: &mut CheckpointSpec,
    fingerprint: &str,
    mention_dir: &Path,
    state_dirs: &[&Path],
) -> anyhow::Result<Option<u64>> {
    let config = spec.dir.join("config");
    let same = std::fs::read_to_string(&config).is_ok_and(|c| c == fingerprint);
    let label = same.then(|| spec.latest_usable()).flatten().filter(|l| {
        (0..spec.workers.max(1)).all(|w| {
            crate::graph::upsert::undo_from(&mention_dir.join(format!("worker-{w}")))
                .is_some_and(|from| from <= *l)
        })
    });
    match label {
        Some(l) => {
            for newer in labels(&spec.dir).into_iter().filter(|x| *x > l) {
                std::fs::remove_dir_all(spec.label_dir(newer))?;
            }
        }
        None => {
            for dir in state_dirs.iter().copied().chain([spec.dir.as_path()]) {
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
            }
            std::fs::create_dir_all(&spec.dir)?;
            std::fs::write(&config, fingerprint)?;
        }
    }
    spec.restore = label;
    Ok(label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// With `limit` parts queued and not written, the next part waits until one is written.
    #[test]
    fn a_part_waits_while_the_writer_is_limit_parts_behind() {
        let writer = Arc::new(Writer::default());
        let (open, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let written = Arc::new(AtomicU64::new(0));
        let job = |gate: Arc<Mutex<mpsc::Receiver<()>>>, written: Arc<AtomicU64>| -> Job {
            Box::new(move || {
                gate.lock().unwrap().recv().unwrap();
                written.fetch_add(1, Relaxed);
            })
        };
        writer.submit(job(gate.clone(), written.clone()), 2);
        writer.submit(job(gate.clone(), written.clone()), 2);
        let queued = Arc::new(AtomicBool::new(false));
        let third = {
            let (writer, queued) = (writer.clone(), queued.clone());
            let job = job(gate.clone(), written.clone());
            std::thread::spawn(move || {
                writer.submit(job, 2);
                queued.store(true, Relaxed);
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !queued.load(Relaxed),
            "a third part was queued while two waited for the writer"
        );
        open.send(()).unwrap();
        third.join().unwrap();
        assert!(queued.load(Relaxed));
        open.send(()).unwrap();
        open.send(()).unwrap();
        writer.flush();
        assert_eq!(written.load(Relaxed), 3);
    }
}
