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
//! boundary, so every batch of writes also records, in the same atomic batch, the
//! mentions' previous bodies as one entry under `(dataflow time, sequence)` in an *undo*
//! keyspace (one per checkpoint interval).
//! At a boundary the store's journal is synced, so the store holds everything below it. A
//! restart from label `L` undoes, newest first, every write at a time at or above `L`, and
//! is then exactly the store of `L`. Undo keyspaces whose writes are all below the newest
//! usable label are dropped. Without a usable label the directory is emptied and the log's
//! replay rebuilds it.
//!
//! Creating and dropping a keyspace writes and syncs fjall's metadata and deletes a
//! directory (~5–13 ms each, `store` bench); a boundary stalls the worker's whole graph, so
//! both happen on a keeper thread: it keeps the next interval's keyspace created in advance
//! and drops the old ones. Keyspaces are therefore named by a sequence number, not by a
//! label; what a restart may roll back to is the `undo-from` file, raised before any drop.
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
/// Bloom filter of each of the disk store's memtables (1 MiB; vigie patch in
/// third_party/lsm-tree): a 64 MiB memtable holds ~200k–250k mentions, ~32–40 bits each.
/// Nearly every lookup is of a new mention; without the filter each searched the
/// memtable's skiplist (~18 levels of key comparisons, each a likely cache miss) before
/// the tables' filters said no — ~12 % of the dataflow worker's time under load.
const MEMTABLE_FILTER_BITS: u64 = 1 << 23;
/// Write buffer of an undo keyspace. Every memtable rotation may also rotate fjall's
/// journal (an fsync under the journal's lock, which the worker's batch commits wait for);
/// an interval's undo entries (~60 bytes per write: 15 MB at 50k writes/s over 5 s) mostly
/// fit, so a keyspace is usually dropped before it was ever flushed. (Table version
/// installs, compaction setup and keyspace creation no longer block the worker: the
/// patched fjall and lsm-tree under `third_party/`.)
const UNDO_MEMTABLE_BYTES: u64 = 32 << 20;
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
    /// Undo keyspaces, oldest first; the newest takes the writes.
    undo: VecDeque<Undo>,
    /// Creates keyspaces ahead and drops old ones off the worker's thread.
    keeper: Option<Keeper>,
    /// Sequence number of the next undo keyspace.
    next_undo: u64,
    /// Sequence number of the next batch's undo entry (after its time in the entry's key,
    /// so two batches at one time keep both).
    undo_seq: u64,
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
        // Opened on a thread of background priority: fjall's flush and compaction
        // threads, started by `open`, inherit it (`crate::priority`).
        let open = || {
            fjall::Database::builder(dir)
                .cache_size(CACHE_BYTES)
                // Synced at every checkpoint boundary; between them, vigie's own log has
                // everything and a restart rolls back to the last checkpoint.
                .manual_journal_persist(true)
                // Flushes and compactions on two background threads. Not one: fjall 3.1's only
                // worker can block forever sending a flush request into its own full queue (the
                // writers fill it with rotation requests under heavy writes; fjall PR #323) —
                // a 1 M chaos run in Fluvio mode stopped progressing with one, probably so. With
                // two, the first worker leaves compactions to the second (upstream, it put
                // them back on the shared queue and spun while the other compacted; patched
                // in third_party/fjall, VIGIE.md "Compaction lane").
                .worker_threads(2)
                .open()
        };
        let db = crate::priority::in_background("vigie-store-open", open)?;
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
                .memtable_filter_bits(MEMTABLE_FILTER_BITS)
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
            keeper: None,
            next_undo: 0,
            undo_seq: 0,
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
                if let Some(u) = d.undo.back_mut() {
                    u.last = Some(u.last.map_or(time, |l| l.max(time)));
                }
                let undo = d.undo.back().map(|u| &u.ks);
                let mut batch = d.db.batch();
                // One undo entry for the whole batch (not one per write: a second memtable
                // insert for every write was ~half of the store's memtable work).
                let mut undo_value = Vec::new();
                for (k, next, prev) in changes {
                    let key = key_bytes(&k);
                    if undo.is_some() {
                        push_undo(&mut undo_value, &key, prev.as_deref().map(encode));
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
                if let Some(undo) = undo {
                    let mut undo_key = [0u8; 16];
                    undo_key[..8].copy_from_slice(&time.to_be_bytes());
                    undo_key[8..].copy_from_slice(&d.undo_seq.to_be_bytes());
                    d.undo_seq += 1;
                    batch.insert(undo, undo_key, undo_value);
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

    /// A checkpoint boundary outside a dataflow (benchmarks, tests): what
    /// [`Checkpointed::save`] does to a disk store, dropping the undo entries below `usable`
    /// (the journal is not synced here).
    pub fn boundary(&mut self, usable: Option<u64>) -> anyhow::Result<()> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Disk(d) => d.boundary(usable),
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

/// Records (synced) `label` as the oldest the store under `dir` can roll back to.
fn write_floor(dir: &Path, label: u64) -> std::io::Result<()> {
    crate::files::replace(&dir.join(UNDO_FROM), label.to_string().as_bytes(), true)
}

/// The oldest label the store under `dir` can roll back to (`None`: no store there).
pub fn undo_from(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(UNDO_FROM))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Syncs the store's journal (on the checkpoint writer's thread) without holding fjall's
/// journal lock through an fsync: the worker's next write waits for that lock. fjall's own
/// `persist(SyncData)` fsyncs under it (0.05–105 ms per label in a 1 M e2e run at half
/// load, and a 40 ms wait seen in the worker's commit), so only the buffer's flush into
/// the file is done under the lock; the journal files are then fsynced through
/// descriptors of their own, which makes every write committed before the flush durable
/// (an fsync covers the file, whichever descriptor asks). Journals sealed before were
/// synced by fjall when it rotated them; a journal gone by the time it is opened had
/// been flushed into tables, which fjall syncs.
fn sync_journal(db: &fjall::Database, dir: &Path) -> anyhow::Result<()> {
    db.persist(fjall::PersistMode::Buffer)?;
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "jnl") {
            match std::fs::File::open(&path).and_then(|f| f.sync_data()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("syncing {}: {e}", path.display()),
            }
        }
    }
    Ok(())
}

/// Appends one write's undo record to a batch's undo entry: the mention's key, then its
/// previous body (`None`: it was not live) as a flag and a length-prefixed encoding.
fn push_undo(out: &mut Vec<u8>, key: &[u8; 32], prev: Option<Vec<u8>>) {
    out.extend_from_slice(key);
    match prev {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&p);
        }
    }
}

/// One write as an undo entry records it: the mention's key and its previous body.
type UndoWrite<'a> = (&'a [u8], Option<&'a [u8]>);

/// The writes of a batch's undo entry, in write order.
fn read_undo(mut v: &[u8]) -> anyhow::Result<Vec<UndoWrite<'_>>> {
    let damaged = || anyhow::anyhow!("a damaged undo entry in the mention store");
    let mut out = Vec::new();
    while !v.is_empty() {
        let (key, rest) = v.split_at_checked(33).ok_or_else(damaged)?;
        let (key, live) = (&key[..32], key[32]);
        v = rest;
        let prev = match live {
            0 => None,
            1 => {
                let (len, rest) = v.split_at_checked(4).ok_or_else(damaged)?;
                let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                let (body, rest) = rest.split_at_checked(len).ok_or_else(damaged)?;
                v = rest;
                Some(body)
            }
            _ => return Err(damaged()),
        };
        out.push((key, prev));
    }
    Ok(out)
}

fn undo_keyspace(db: &fjall::Database, name: &str) -> fjall::Result<fjall::Keyspace> {
    db.keyspace(name, || {
        fjall::KeyspaceCreateOptions::default().max_memtable_size(UNDO_MEMTABLE_BYTES)
    })
}

/// An undo keyspace and the newest dataflow time written to it (`None`: none yet).
struct Undo {
    ks: fjall::Keyspace,
    last: Option<u64>,
}

/// Work for the keeper thread, in order.
enum KeeperJob {
    /// Create this keyspace and hand it back.
    Create(String),
    /// Raise `undo-from` to this label, then drop these keyspaces.
    Drop(u64, Vec<fjall::Keyspace>),
}

/// A thread that creates undo keyspaces before they are needed and drops old ones, so a
/// checkpoint boundary only swaps handles. Dropped with its store: it finishes its queue
/// and is joined (the database stays locked until then).
struct Keeper {
    jobs: Option<std::sync::mpsc::Sender<KeeperJob>>,
    created: std::sync::mpsc::Receiver<fjall::Result<fjall::Keyspace>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    /// Starts the thread and asks it for keyspace `first`.
    fn start(db: fjall::Database, dir: PathBuf, first: String) -> Keeper {
        let (jobs, todo) = std::sync::mpsc::channel::<KeeperJob>();
        let (done, created) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vigie-undo-keeper".into())
            .spawn(move || {
                crate::priority::lower_this_thread();
                for job in todo {
                    match job {
                        KeeperJob::Create(name) => {
                            if done.send(undo_keyspace(&db, &name)).is_err() {
                                return;
                            }
                        }
                        KeeperJob::Drop(from, old) => {
                            // The floor rises before anything it covers is gone: a crash
                            // in between leaves undo entries no restart will use.
                            if let Err(e) = write_floor(&dir, from) {
                                tracing::warn!(error = %e, dir = %dir.display(), "cannot record the mention store's undo floor; keeping its undo keyspaces");
                                continue;
                            }
                            for ks in old {
                                if let Err(e) = db.delete_keyspace(ks) {
                                    tracing::warn!(error = %e, dir = %dir.display(), "cannot drop an undo keyspace of the mention store (the next restart drops it)");
                                }
                            }
                        }
                    }
                }
            })
            .expect("spawning the mention store's undo keeper");
        let _ = jobs.send(KeeperJob::Create(first));
        Keeper {
            jobs: Some(jobs),
            created,
            thread: Some(thread),
        }
    }

    /// Queues `job`; hands it back if the thread is gone.
    fn send(&self, job: KeeperJob) -> Result<(), KeeperJob> {
        match &self.jobs {
            Some(j) => j.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Disk {
    /// Undoes every write at a time at or above `label`, newest first, then starts a
    /// fresh undo keyspace at `label`.
    fn roll_back(&mut self, label: u64) -> anyhow::Result<()> {
        if let Some(from) = undo_from(&self.dir) {
            anyhow::ensure!(
                from <= label || label == 0,
                "the mention store can roll back to {from} at the earliest, not {label}"
            );
        }
        // By sequence number: a newer keyspace holds newer writes.
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
        self.next_undo = undo.last().map_or(0, |u| u.0 + 1);
        let mut undone = 0u64;
        for (_, name) in undo.iter().rev() {
            let ks = self.db.keyspace(name, Default::default)?;
            let mut batch = self.db.batch();
            for guard in ks.range(label.to_be_bytes()..).rev() {
                let (k, v) = guard.into_inner()?;
                // `(time, sequence)`: a batch's writes (`push_undo`); `(time, key)`: one
                // write, as stores written before batch entries hold them.
                let writes = match k.len() {
                    16 => read_undo(&v)?,
                    40 => vec![(&k[8..], (!v.is_empty()).then_some(&v[..]))],
                    n => anyhow::bail!("an undo entry of the mention store has a {n}-byte key"),
                };
                // Last write first: the state before the batch wins.
                for (key, prev) in writes.into_iter().rev() {
                    match prev {
                        None => batch.remove(&self.bodies, key),
                        Some(p) => batch.insert(&self.bodies, key, p),
                    }
                    undone += 1;
                }
            }
            batch.commit()?;
            self.db.delete_keyspace(ks)?;
        }
        if undone > 0 {
            tracing::info!(undone, label, dir = %self.dir.display(), "rolled the mention store back to its checkpoint");
        }
        let ks = self.new_undo_keyspace()?;
        self.undo.push_back(Undo { ks, last: None });
        self.db.persist(fjall::PersistMode::SyncAll)?;
        write_floor(&self.dir, label)?;
        self.keeper = Some(Keeper::start(
            self.db.clone(),
            self.dir.clone(),
            self.next_name(),
        ));
        Ok(())
    }

    fn next_name(&mut self) -> String {
        self.next_undo += 1;
        format!("{UNDO_PREFIX}{:020}", self.next_undo - 1)
    }

    fn new_undo_keyspace(&mut self) -> fjall::Result<fjall::Keyspace> {
        let name = self.next_name();
        undo_keyspace(&self.db, &name)
    }

    /// At a boundary: switches to the undo keyspace of the next interval and drops those
    /// whose writes are all below the newest usable label `usable`. The journal is synced
    /// by the checkpoint writer before it writes this store's part (`CheckpointSpec::write`):
    /// the store then holds everything below the label (and maybe more, which the undo log
    /// covers).
    fn boundary(&mut self, usable: Option<u64>) -> anyhow::Result<()> {
        // The keyspace asked for at the last boundary (created by now: an interval is
        // seconds long); made here if the keeper failed.
        let ready = self.keeper.as_ref().and_then(|k| k.created.recv().ok());
        let ks = match ready {
            Some(Ok(ks)) => ks,
            Some(Err(e)) => {
                tracing::warn!(error = %e, dir = %self.dir.display(), "the undo keeper could not create a keyspace; creating it here");
                self.new_undo_keyspace()?
            }
            None => self.new_undo_keyspace()?,
        };
        self.undo.push_back(Undo { ks, last: None });
        let name = self.next_name();
        if self
            .keeper
            .as_ref()
            .is_none_or(|k| k.send(KeeperJob::Create(name)).is_err())
        {
            self.keeper = None;
        }
        let Some(usable) = usable else {
            return Ok(());
        };
        // Every keyspace but the newest whose writes are all below `usable`: no restart
        // rolls back below `usable` once the floor says so.
        let newest = self.undo.len() - 1;
        let mut old = Vec::new();
        let mut kept = VecDeque::with_capacity(self.undo.len());
        for (i, u) in std::mem::take(&mut self.undo).into_iter().enumerate() {
            if i < newest && u.last.is_none_or(|l| l < usable) {
                old.push(u.ks);
            } else {
                kept.push_back(u);
            }
        }
        self.undo = kept;
        if old.is_empty() {
            return Ok(());
        }
        let job = KeeperJob::Drop(usable, old);
        let unsent = match &self.keeper {
            Some(k) => k.send(job).err(),
            None => Some(job),
        };
        if let Some(KeeperJob::Drop(from, old)) = unsent {
            write_floor(&self.dir, from)?;
            for ks in old {
                self.db.delete_keyspace(ks)?;
            }
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
                match d.boundary(usable) {
                    Ok(()) => {
                        let (db, dir) = (d.db.clone(), d.dir.clone());
                        ckpt.write_after(label, &d.live, Box::new(move || sync_journal(&db, &dir)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::records::fixtures::key;
    use rand::{rngs::StdRng, Rng, SeedableRng};
    use std::collections::BTreeMap;
    use uuid::Uuid;

    type Snapshot = BTreeMap<u128, Option<String>>;

    fn body(text: &str) -> Arc<MentionBody> {
        Arc::new(crate::graph::records::fixtures::body(text))
    }

    fn read(store: &MentionStore, keys: u128) -> Snapshot {
        (0..keys)
            .map(|i| (i, store.get(&key(i)).map(|b| b.text.to_string())))
            .collect()
    }

    /// Times `from..to`, a boundary before every fifth (the newest usable label `lag`
    /// labels behind it), random inserts, edits and deletes of `keys` mentions; returns the
    /// store's content before each label.
    fn run(
        store: &mut MentionStore,
        rng: &mut StdRng,
        from: u64,
        to: u64,
        keys: u128,
        lag: u64,
    ) -> BTreeMap<u64, Snapshot> {
        let mut at = BTreeMap::new();
        for t in from..to {
            if t % 5 == 0 {
                at.insert(t, read(store, keys));
                store.boundary(t.checked_sub(5 * lag)).expect("boundary");
            }
            let mut seen = std::collections::HashSet::new();
            let mut writes: Vec<Write> = Vec::new();
            for _ in 0..rng.random_range(1..30) {
                let i = rng.random_range(0..keys);
                let next = (rng.random_range(0..4) > 0).then(|| body(&format!("{i} at {t}")));
                if seen.insert(i) {
                    writes.push((key(i), next, store.get(&key(i))));
                }
            }
            store.apply(t, writes);
        }
        at
    }

    /// The undo log rolls the disk store back to any label at or above its floor — with
    /// keyspaces created and dropped by the keeper thread — and refuses one below it.
    #[test]
    fn rolls_back_to_a_label_and_refuses_one_below_its_floor() {
        let dir = std::env::temp_dir().join(format!("vigie-undo-{}", Uuid::new_v4().simple()));
        let mut rng = StdRng::seed_from_u64(5);
        let keys = 60;
        let mut store = MentionStore::open(Some(&dir), true, None);
        let at = run(&mut store, &mut rng, 1, 61, keys, 2);
        drop(store);
        // The last boundary (60) had label 50 usable: entries below it may be gone.
        assert_eq!(undo_from(&dir), Some(50));
        let kept = std::fs::read_dir(dir.join("keyspaces"))
            .expect("keyspaces")
            .count();
        assert!(
            kept <= 6,
            "old undo keyspaces not dropped: {kept} keyspaces"
        );
        assert!(
            MentionStore::reopen(&dir, Some(45)).is_err(),
            "rolled back below the floor"
        );

        let mut store = MentionStore::open(Some(&dir), true, Some(55));
        assert_eq!(read(&store, keys), at[&55], "store at label 55");
        // The same times again, other writes; then back to 50, which is still above the
        // floor, and which this second run's writes must not have disturbed.
        let again = run(&mut store, &mut rng, 55, 80, keys, 1);
        drop(store);
        let store = MentionStore::open(Some(&dir), true, Some(70));
        assert_eq!(read(&store, keys), again[&70], "store at label 70");
        drop(store);
        std::fs::remove_dir_all(&dir).expect("cleaning up");
    }

    /// Two batches at one dataflow time are both undone, and an undo entry of the former
    /// layout (one write under `(time, key)`) is still read.
    #[test]
    fn rolls_back_two_batches_at_one_time_and_entries_of_the_former_layout() {
        // Writes at times 10 (two batches) and 12 (one batch, and one write recorded the
        // former way: key 4, not live before it).
        let written = || {
            let dir = std::env::temp_dir().join(format!("vigie-undo-{}", Uuid::new_v4().simple()));
            let mut store = MentionStore::open(Some(&dir), true, None);
            store.apply(10, vec![(key(1), Some(body("one")), None)]);
            store.apply(10, vec![(key(2), Some(body("two")), None)]);
            let one = store.get(&key(1));
            store.apply(
                12,
                vec![
                    (key(1), Some(body("one, edited")), one),
                    (key(3), Some(body("three")), None),
                ],
            );
            let MentionStore::Disk(d) = &store else {
                panic!("a disk store")
            };
            let mut old_key = 12u64.to_be_bytes().to_vec();
            old_key.extend_from_slice(&key_bytes(&key(4)));
            let mut batch = d.db.batch();
            let undo = &d.undo.back().expect("an undo keyspace").ks;
            batch.insert(undo, old_key, Vec::<u8>::new());
            batch.insert(&d.bodies, key_bytes(&key(4)), encode(&body("four")));
            batch.commit().expect("writing");
            assert_eq!(read(&store, 5).values().flatten().count(), 4);
            dir
        };

        let dir = written();
        let store = MentionStore::open(Some(&dir), true, Some(12));
        let at_12: Snapshot = [(1, Some("one")), (2, Some("two"))]
            .into_iter()
            .map(|(i, t)| (i, t.map(str::to_string)))
            .chain([(0, None), (3, None), (4, None)])
            .collect();
        assert_eq!(read(&store, 5), at_12, "store at label 12");
        drop(store);
        std::fs::remove_dir_all(&dir).expect("cleaning up");

        let dir = written();
        let store = MentionStore::open(Some(&dir), true, Some(10));
        assert!(
            read(&store, 5).values().all(Option::is_none),
            "store at label 10"
        );
        drop(store);
        std::fs::remove_dir_all(&dir).expect("cleaning up");
    }

    #[test]
    fn a_damaged_undo_entry_is_an_error_not_a_panic() {
        let mut v = Vec::new();
        push_undo(&mut v, &[7; 32], Some(b"body".to_vec()));
        push_undo(&mut v, &[8; 32], None);
        let writes = read_undo(&v).expect("well formed");
        assert_eq!(
            writes,
            vec![(&[7u8; 32][..], Some(&b"body"[..])), (&[8u8; 32][..], None)]
        );
        for cut in 1..v.len() {
            if cut != 41 {
                assert!(read_undo(&v[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
}
