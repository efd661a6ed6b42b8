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
//!   filters without reading a block. The directory is emptied at start: the write-ahead log's
//!   replay rebuilds it, like the rest of the graph's state.
//!
//! Records are exchanged by [`MentionKey`], whose hash is its organisation's, so every
//! organisation's mentions and the stages after this one live on one worker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::ordered::TimeStash;
use super::records::{MentionBody, MentionKey};
use super::Upsert;

/// Block cache of the disk store, per worker.
const CACHE_BYTES: u64 = 32 << 20;
/// Write buffer (memtable) of the disk store, per worker.
const MEMTABLE_BYTES: u64 = 32 << 20;

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
    db: fjall::Database,
    bodies: fjall::Keyspace,
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

    /// A store under `dir`, emptied first (its content is rebuilt by the log's replay).
    pub fn disk(dir: &Path) -> anyhow::Result<MentionStore> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let db = fjall::Database::builder(dir)
            .cache_size(CACHE_BYTES)
            // Durability comes from vigie's own log; the store is rebuilt from it.
            .manual_journal_persist(true)
            // Flushes and compactions in the background; with one thread, a long compaction
            // could leave memtables waiting and make writes (the timely worker) sleep.
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
                .filter_block_pinning_policy(fjall::config::PinningPolicy::all(true))
                .filter_block_partitioning_policy(fjall::config::PartitioningPolicy::all(false))
        })?;
        Ok(MentionStore::Disk(Disk {
            db,
            bodies,
            live: 0,
            flush_every: None,
            batches: 0,
        }))
    }

    /// A disk store that writes its memtable out after every `n` batches (tests).
    pub fn disk_flushing(dir: &Path, n: u32) -> anyhow::Result<MentionStore> {
        let mut s = Self::disk(dir)?;
        if let Self::Disk(d) = &mut s {
            d.flush_every = Some(n.max(1));
        }
        Ok(s)
    }

    /// The store a stage uses: on disk under `dir` when given, else in memory.
    pub fn open(dir: Option<&PathBuf>) -> MentionStore {
        match dir {
            Some(d) => MentionStore::disk(d)
                .unwrap_or_else(|e| panic!("cannot prepare {}: {e:#}", d.display())),
            None => MentionStore::memory(),
        }
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

    /// Applies one dataflow time's changes (at most one per mention), each with whether the
    /// mention was live before.
    pub fn apply(&mut self, changes: Vec<(MentionKey, Option<Arc<MentionBody>>, bool)>) {
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
                let mut batch = d.db.batch();
                for (k, next, was_live) in changes {
                    match next {
                        Some(b) => {
                            let bytes = bincode::serialize(&*b)
                                .unwrap_or_else(|e| panic!("encoding a mention: {e}"));
                            batch.insert(&d.bodies, key_bytes(&k), bytes);
                            d.live += i64::from(!was_live);
                        }
                        None => {
                            batch.remove(&d.bodies, key_bytes(&k));
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

/// The upsert stage over a store built by `store` on each worker. Each dataflow time is
/// applied once the input frontier has passed it, in time order; several upserts of one
/// mention at one time resolve to the largest (as DD's `arrange_from_upsert` does; the log
/// never holds two for one mention in an epoch).
pub fn upserted<'s, F>(
    upserts: Stream<'s, u64, Vec<Upsert>>,
    store: F,
    gauges: Arc<super::StateGauges>,
) -> VecCollection<'s, u64, (MentionKey, Arc<MentionBody>)>
where
    F: FnOnce() -> MentionStore + 'static,
{
    let exchange = Exchange::new(|u: &Upsert| u.0.hashed());
    let mut stash: TimeStash<(MentionKey, Option<Arc<MentionBody>>)> = TimeStash::default();
    let mut share = super::GaugeShare::default();
    upserts
        .unary_frontier(exchange, "Mentions", move |_, _| {
            let mut store = store();
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
                    list.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)));
                    list.dedup_by(|later, first| later.0 == first.0);
                    let mut out = Vec::with_capacity(list.len());
                    let mut writes = Vec::with_capacity(list.len());
                    for (key, next) in list {
                        let prev = store.get(&key);
                        if prev == next {
                            continue;
                        }
                        let was_live = prev.is_some();
                        if let Some(p) = prev {
                            out.push(((key, p), time, -1));
                        }
                        if let Some(n) = &next {
                            out.push(((key, n.clone()), time, 1));
                        }
                        writes.push((key, next, was_live));
                    }
                    store.apply(writes);
                    if !out.is_empty() {
                        output.session(&cap).give_container(&mut out);
                    }
                }
                share.report(&gauges.mentions, store.len());
            }
        })
        .as_collection()
}
