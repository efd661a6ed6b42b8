//! Upsert stage: every live mention's latest body, as a collection of changes. A new body
//! retracts the previous one and `None` retracts the mention; an identical re-post changes
//! nothing.
//!
//! Where the latest bodies live ([`MentionStore`]):
//! - in memory (tests, benchmarks of the graph alone): a map;
//! - on disk (`vigie run`): an LSM keyspace (fjall) per worker. Every mention, however old,
//!   can still be corrected or deleted — the stage needs its previous body to retract
//!   exactly what it counted — yet the process's memory is bounded by the store's caches and
//!   write buffer, not by the history (about 470 bytes per live mention in memory, measured
//!   in benches/README.md). A lookup of a new mention is answered by the LSM's per-table
//!   filters without reading a block.
//!
//! Checkpoints (see [`super::checkpoint`]): the disk store is too large to copy at every
//! boundary, so every write also records, in the same atomic batch, the mention's previous
//! body under `(dataflow time, key)` in an *undo* keyspace (one per checkpoint interval).
//! At a boundary the store's journal is synced, so the store holds everything below it. A
//! restart from label `L` undoes, newest first, every write at a time at or above `L`, and
//! is then exactly the store of `L`. Undo keyspaces entirely below the newest usable label
//! are dropped. Without a usable label the directory is emptied and the log's replay
//! rebuilds it.
//!
//! Records are exchanged by [`MentionKey`], whose hash is its organisation's, so every
//! organisation's mentions and the stages after this one live on one worker.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::checkpoint::{frontier_time, CheckpointSpec, StageCheckpoint};
use super::ordered::{save_if_crossed, Checkpointed, TimeStash};
use super::records::{MentionBody, MentionKey};
use super::Upsert;

/// Block cache of the disk store, per worker.
const CACHE_BYTES: u64 = 32 << 20;
/// Write buffer (memtable) of the disk store, per worker.
const MEMTABLE_BYTES: u64 = 64 << 20;
/// Level-0 tables before they are merged into level 1, and the size ratio between levels.
/// Mention ids are random, so every merge into a level rewrites most of it: fewer merges
/// into level 1 (8 tables of 64 MiB rather than fjall's 4 of 32) and smaller steps
/// between levels (4 rather than 10) write each body fewer times. `store` bench, 3 M
/// mentions, one background thread: 6.0–6.2 CPU µs per mention instead of 6.5.
const L0_TABLES: u8 = 8;
const LEVEL_RATIO: f32 = 4.0;

/// One write: the mention, its new body (`None`: deleted) and its previous one.
pub type Write = (
    MentionKey,
    Option<Arc<MentionBody>>,
    Option<Arc<MentionBody>>,
);

/// The latest body of every live mention.
pub enum MentionStore {
    /// Everything in memory, keyed by (organisation, id): `MentionKey`'s own hash is only
    /// its organisation's (for the exchange), which would put an organisation's mentions in
    /// one hash bucket.
    Memory(HashMap<(uuid::Uuid, uuid::Uuid), Arc<MentionBody>>),
    /// An LSM keyspace under a directory of its own.
    Disk(Disk),
}

/// The on-disk store.
pub struct Disk {
    dir: PathBuf,
    db: fjall::Database,
    bodies: fjall::Keyspace,
    /// Undo keyspaces, oldest first, each with the label it starts at (it holds the
    /// previous bodies of writes at times from its label to the next one's).
    undo: VecDeque<(u64, fjall::Keyspace)>,
    /// Live mentions (for the gauge).
    live: i64,
    /// Tests: write the memtable out as a table after every this many batches, so reads
    /// go through tables, filters and compactions.
    flush_every: Option<u32>,
    batches: u32,
}

impl std::fmt::Debug for MentionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(m) => write!(f, "MentionStore::Memory({} mentions)", m.len()),
            Self::Disk(d) => write!(f, "MentionStore::Disk({} mentions)", d.live),
        }
    }
}

fn key_bytes(k: &MentionKey) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(k.org.as_bytes());
    b[16..].copy_from_slice(k.id.as_bytes());
    b
}

impl MentionStore {
    /// An in-memory store.
    pub fn memory() -> MentionStore {
        MentionStore::Memory(HashMap::new())
    }

    /// A store under `dir`, emptied first (its content is rebuilt by the log's replay),
    /// without an undo log (no checkpoints).
    pub fn disk(dir: &Path) -> anyhow::Result<MentionStore> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        Self::reopen(dir, None)
    }

    /// The store under `dir`. With `Some(label)` it keeps an undo log for checkpoints and
    /// is first rolled back to `label` (every write at a time at or above it undone; `0` on
    /// an empty store: nothing to undo); its live count is then set by the checkpoint's
    /// restore.
    pub fn reopen(dir: &Path, label: Option<u64>) -> anyhow::Result<MentionStore> {
        std::fs::create_dir_all(dir)?;
        let db = fjall::Database::builder(dir)
            .cache_size(CACHE_BYTES)
            // Synced at every checkpoint boundary; between them, vigie's own log has
            // everything and a restart rolls back to the last checkpoint.
            .manual_journal_persist(true)
            // Flushes and compactions on two background threads. Not one: fjall 3.1's only
            // worker can block forever sending a flush request into its own full queue (the
            // writers fill it with rotation requests under heavy writes; fjall PR #323) —
            // a 1 M chaos run in Fluvio mode stopped progressing with one, probably so. With
            // two, the first worker hands compaction requests back to the queue and spins
            // while the other compacts (`store` bench: ~7.4–7.8 CPU µs per mention at 3 M
            // against 6.5 with one thread); that is the price of not stalling.
            .worker_threads(2)
            .open()?;
        // Filters stay in memory, whole, on every level (~10 bits per mention past the
        // first level): a new mention's lookup then never reads a block. Unpinned, deeper
        // levels' filters were evicted from the cache as the store grew and reloaded on
        // every lookup (a simulated day's ingest took twice as long by the third day);
        // partitioned (fjall's default from the fourth level), they would not be pinned.
        // Indexes keep fjall's default (pinned on the first two levels): only lookups of
        // known mentions reach them.
        let bodies = db.keyspace("mentions", || {
            fjall::KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES)
                .compaction_strategy(Arc::new(
                    fjall::compaction::Leveled::default()
                        .with_l0_threshold(L0_TABLES)
                        .with_level_ratio_policy(vec![LEVEL_RATIO]),
                ))
                .filter_block_pinning_policy(fjall::config::PinningPolicy::all(true))
                .filter_block_partitioning_policy(fjall::config::PartitioningPolicy::all(false))
        })?;
        let mut disk = Disk {
            dir: dir.to_path_buf(),
            db,
            bodies,
            undo: VecDeque::new(),
            live: 0,
            flush_every: None,
            batches: 0,
        };
        if let Some(label) = label {
            disk.roll_back(label)?;
        }
        Ok(MentionStore::Disk(disk))
    }

    /// A disk store that writes its memtable out after every `n` batches (tests).
    pub fn disk_flushing(dir: &Path, n: u32) -> anyhow::Result<MentionStore> {
        let mut s = Self::disk(dir)?;
        if let Self::Disk(d) = &mut s {
            d.flush_every = Some(n.max(1));
        }
        Ok(s)
    }

    /// The store a stage uses: on disk under `dir` when given (rolled back to `restore`
    /// when restarting from a checkpoint, else emptied), else in memory.
    /// With `checkpoints`, it keeps an undo log.
    pub fn open(dir: Option<&PathBuf>, checkpoints: bool, restore: Option<u64>) -> MentionStore {
        let opened = match (dir, checkpoints, restore) {
            (None, _, _) => return MentionStore::memory(),
            (Some(d), true, Some(label)) => MentionStore::reopen(d, Some(label)),
            (Some(d), true, None) => std::fs::remove_dir_all(d)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(anyhow::Error::from)
                .and_then(|()| MentionStore::reopen(d, Some(0))),
            (Some(d), false, _) => MentionStore::disk(d),
        };
        opened.unwrap_or_else(|e| panic!("cannot open the mention store {}: {e:#}", d_of(dir)))
    }

    /// The latest body of a mention.
    ///
    /// A disk store that cannot be read stops the worker (a panic): its input is in the
    /// write-ahead log, and a wrong answer here would break the exact cancellation of
    /// later retractions.
    pub fn get(&self, key: &MentionKey) -> Option<Arc<MentionBody>> {
        match self {
            Self::Memory(m) => m.get(&(key.org, key.id)).cloned(),
            Self::Disk(d) => {
                let bytes = d
                    .bodies
                    .get(key_bytes(key))
                    .unwrap_or_else(|e| panic!("reading the mention store: {e}"))?;
                let body: MentionBody = bincode::deserialize(&bytes)
                    .unwrap_or_else(|e| panic!("a mention in the store does not decode: {e}"));
                Some(Arc::new(body))
            }
        }
    }

    /// Applies dataflow time `time`'s changes (at most one per mention), each with the
    /// mention's previous body.
    pub fn apply(&mut self, time: u64, changes: Vec<Write>) {
        match self {
            Self::Memory(m) => {
                for (k, next, _) in changes {
                    match next {
                        Some(b) => m.insert((k.org, k.id), b),
                        None => m.remove(&(k.org, k.id)),
                    };
                }
            }
            Self::Disk(d) => {
                if changes.is_empty() {
                    return;
                }
                let undo = d.undo.back().map(|u| &u.1);
                let mut batch = d.db.batch();
                for (k, next, prev) in changes {
                    let key = key_bytes(&k);
                    let mut undo_key = Vec::with_capacity(40);
                    undo_key.extend_from_slice(&time.to_be_bytes());
                    undo_key.extend_from_slice(&key);
                    // Empty: the mention was not live (an encoded body is never empty).
                    if let Some(undo) = undo {
                        batch.insert(
                            undo,
                            undo_key,
                            prev.as_deref().map(encode).unwrap_or_default(),
                        );
                    }
                    match next {
                        Some(b) => {
                            batch.insert(&d.bodies, key, encode(&b));
                            d.live += i64::from(prev.is_none());
                        }
                        None => {
                            batch.remove(&d.bodies, key);
                            d.live -= 1;
                        }
                    }
                }
                batch
                    .commit()
                    .unwrap_or_else(|e| panic!("writing the mention store: {e}"));
                d.batches += 1;
                if d.flush_every.is_some_and(|n| d.batches.is_multiple_of(n)) {
                    d.bodies
                        .rotate_memtable_and_wait()
                        .unwrap_or_else(|e| panic!("flushing the mention store: {e}"));
                }
            }
        }
    }

    /// A checkpoint boundary outside a dataflow (benchmarks): what [`Checkpointed::save`]
    /// does to a disk store at `label`, dropping the undo entries below `usable`.
    pub fn boundary(&mut self, label: u64, usable: Option<u64>) -> anyhow::Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Disk(d) => d.boundary(label, usable),
        }
    }

    /// Live mentions.
    pub fn len(&self) -> i64 {
        match self {
            Self::Memory(m) => m.len() as i64,
            Self::Disk(d) => d.live,
        }
    }

    /// Whether no mention is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn d_of(dir: Option<&PathBuf>) -> String {
    dir.map_or_else(String::new, |d| d.display().to_string())
}

fn encode(b: &MentionBody) -> Vec<u8> {
    bincode::serialize(b).unwrap_or_else(|e| panic!("encoding a mention: {e}"))
}

const UNDO_PREFIX: &str = "undo-";
/// File naming the oldest label the store can roll back to.
const UNDO_FROM: &str = "undo-from";

/// The oldest label the store under `dir` can roll back to (`None`: no store there).
pub fn undo_from(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(UNDO_FROM))
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Disk {
    fn undo_keyspace(&self, label: u64) -> fjall::Result<fjall::Keyspace> {
        self.db.keyspace(&format!("{UNDO_PREFIX}{label:020}"), || {
            fjall::KeyspaceCreateOptions::default().max_memtable_size(8 << 20)
        })
    }

    /// Undoes every write at a time at or above `label`, newest first, then starts a
    /// fresh undo keyspace at `label`.
    fn roll_back(&mut self, label: u64) -> anyhow::Result<()> {
        let mut undo: Vec<(u64, String)> = self
            .db
            .list_keyspace_names()
            .iter()
            .filter_map(|n| {
                let n: &str = n.as_ref();
                let l = n.strip_prefix(UNDO_PREFIX)?.parse().ok()?;
                Some((l, n.to_string()))
            })
            .collect();
        undo.sort_unstable();
        if let Some(&(oldest, _)) = undo.first() {
            anyhow::ensure!(
                oldest <= label || label == 0,
                "the mention store can roll back to {oldest} at the earliest, not {label}"
            );
        }
        let mut undone = 0u64;
        for (_, name) in undo.iter().rev() {
            let ks = self.db.keyspace(name, Default::default)?;
            let mut batch = self.db.batch();
            for guard in ks.range(label.to_be_bytes()..).rev() {
                let (k, prev) = guard.into_inner()?;
                let key = &k[8..];
                if prev.is_empty() {
                    batch.remove(&self.bodies, key);
                } else {
                    batch.insert(&self.bodies, key, prev);
                }
                undone += 1;
            }
            batch.commit()?;
            self.db.delete_keyspace(ks)?;
        }
        if undone > 0 {
            tracing::info!(undone, label, dir = %self.dir.display(), "rolled the mention store back to its checkpoint");
        }
        let ks = self.undo_keyspace(label)?;
        self.undo.push_back((label, ks));
        self.db.persist(fjall::PersistMode::SyncAll)?;
        std::fs::write(self.dir.join(UNDO_FROM), label.to_string())?;
        Ok(())
    }

    /// At boundary `label`: opens the undo keyspace of the next interval and drops those
    /// entirely below the newest usable label `usable`. The journal is synced by the
    /// checkpoint writer before it writes this store's part (`CheckpointSpec::write`): the store
    /// then holds everything below `label` (and maybe more, which the undo log covers).
    fn boundary(&mut self, label: u64, usable: Option<u64>) -> anyhow::Result<()> {
        let ks = self.undo_keyspace(label)?;
        self.undo.push_back((label, ks));
        let Some(usable) = usable else {
            return Ok(());
        };
        let mut dropped = false;
        while self.undo.len() > 1 && self.undo[1].0 <= usable {
            let (_, ks) = self.undo.pop_front().expect("two keyspaces");
            self.db.delete_keyspace(ks)?;
            dropped = true;
        }
        if dropped {
            let from = self.undo.front().map_or(label, |u| u.0);
            crate::files::replace(
                &self.dir.join(UNDO_FROM),
                from.to_string().as_bytes(),
                false,
            )?;
        }
        Ok(())
    }
}

impl Checkpointed for MentionStore {
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        match self {
            Self::Memory(m) => {
                let all: Vec<(&(uuid::Uuid, uuid::Uuid), &MentionBody)> =
                    m.iter().map(|(k, v)| (k, &**v)).collect();
                ckpt.write(label, &all);
            }
            Self::Disk(d) => {
                let usable = ckpt.spec().latest_usable();
                match d.boundary(label, usable) {
                    Ok(()) => {
                        let db = d.db.clone();
                        ckpt.write_after(
                            label,
                            &d.live,
                            Box::new(move || Ok(db.persist(fjall::PersistMode::SyncData)?)),
                        )
                    }
                    // The checkpoint stays incomplete; the store keeps its undo entries.
                    Err(e) => {
                        tracing::warn!(error = %e, label, "cannot checkpoint the mention store")
                    }
                }
            }
        }
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        match self {
            Self::Memory(m) => {
                if let Some(all) = ckpt.restored::<Vec<((uuid::Uuid, uuid::Uuid), MentionBody)>>() {
                    *m = all.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
                }
            }
            Self::Disk(d) => {
                if let Some(live) = ckpt.restored::<i64>() {
                    d.live = live;
                }
            }
        }
    }
}

/// The upsert stage over a store built by `store` on each worker. Each dataflow time is
/// applied once the input frontier has passed it, in time order; several upserts of one
/// mention at one time resolve to the largest (as DD's `arrange_from_upsert` does; the log
/// never holds two for one mention in an epoch).
pub fn upserted<'s, F>(
    upserts: Stream<'s, u64, Vec<Upsert>>,
    store: F,
    gauges: Arc<super::StateGauges>,
    checkpoint: Option<Arc<CheckpointSpec>>,
) -> VecCollection<'s, u64, (MentionKey, Arc<MentionBody>)>
where
    F: FnOnce() -> MentionStore + 'static,
{
    let exchange = Exchange::new(|u: &Upsert| u.0.hashed());
    let mut stash: TimeStash<(MentionKey, Option<Arc<MentionBody>>)> = TimeStash::default();
    let mut share = super::GaugeShare::default();
    let worker = upserts.scope().index();
    let mut ckpt = checkpoint.map(|spec| StageCheckpoint::new(spec, "mentions", worker));
    upserts
        .unary_frontier(exchange, "Mentions", move |_, _| {
            let mut store = store();
            if let Some(c) = &ckpt {
                store.restore(c);
            }
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let least = cap
                        .retain_least(0)
                        .expect("the upsert stage has one output");
                    for (k, v, t) in data.drain(..) {
                        stash.push(&least, t, (k, v));
                    }
                });
                while let Some((time, cap, mut list)) = stash.pop_ready(frontier) {
                    save_if_crossed(&mut ckpt, &mut store, time);
                    list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
                    list.dedup_by(|later, first| later.0 == first.0);
                    let mut out = Vec::with_capacity(list.len());
                    let mut writes = Vec::with_capacity(list.len());
                    for (key, next) in list {
                        let prev = store.get(&key);
                        if prev == next {
                            continue;
                        }
                        if let Some(p) = &prev {
                            out.push(((key, p.clone()), time, -1));
                        }
                        if let Some(n) = &next {
                            out.push(((key, n.clone()), time, 1));
                        }
                        writes.push((key, next, prev));
                    }
                    store.apply(time, writes);
                    if !out.is_empty() {
                        output.session(&cap).give_container(&mut out);
                    }
                }
                if let Some(t) = frontier_time(frontier) {
                    save_if_crossed(&mut ckpt, &mut store, t);
                }
                share.report(&gauges.mentions, store.len());
            }
        })
        .as_collection()
}
