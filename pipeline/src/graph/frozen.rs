//! Where the virality stage keeps the final velocity of mentions that left the story
//! windows, so that a later re-post or deletion of such a mention re-emits or retracts
//! exactly what was emitted.
//!
//! Two implementations behind one interface:
//! - in memory (tests, benchmarks of the stage alone): a map per organisation;
//! - spilled to disk (`vigie run`): mentions freeze in event-time order, so the velocities
//!   of one organisation and one event-time hour are gathered in memory while that hour
//!   freezes, then written once as a sorted file `<dir>/<org>/<hour>.bin` (18-byte entries:
//!   id, velocity). A lookup knows the mention's event time, hence its file, and binary
//!   searches it. Memory holds only the hours still freezing and the tombstones of frozen
//!   mentions later deleted (or moved to another time or story), so it does not grow with
//!   the history. The directory is rebuilt from the write-ahead log at every start.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use uuid::Uuid;

const ENTRY: u64 = 18;
const HOUR_US: i64 = 3_600_000_000;

/// Final velocities of frozen mentions, per organisation.
#[derive(Debug)]
pub enum FrozenStore {
    /// Everything in memory.
    Memory(HashMap<(Uuid, Uuid), u16>),
    /// Sorted files per organisation and event-time hour.
    Disk(Spill),
}

/// The on-disk store.
#[derive(Debug)]
pub struct Spill {
    dir: PathBuf,
    /// Hours still freezing, per organisation: id → velocity.
    pending: HashMap<Uuid, BTreeMap<i64, HashMap<Uuid, u16>>>,
    /// (organisation, id, hour) of spilled entries no longer valid.
    tombstones: HashSet<(Uuid, Uuid, i64)>,
    /// Entries in files (for the gauge).
    spilled: u64,
    /// (organisation, hour) of every file written: a checkpoint lists them, so a restore
    /// deletes the files written after it.
    files: BTreeSet<(Uuid, i64)>,
}

/// A checkpoint of the store (owned, as read back).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum FrozenSaved {
    /// The in-memory store.
    Memory(HashMap<(Uuid, Uuid), u16>),
    /// The spill's memory part and the files it had written.
    Disk {
        /// Hours still freezing.
        pending: HashMap<Uuid, BTreeMap<i64, HashMap<Uuid, u16>>>,
        /// Spilled entries no longer valid.
        tombstones: HashSet<(Uuid, Uuid, i64)>,
        /// Entries in files.
        spilled: u64,
        /// Files written.
        files: BTreeSet<(Uuid, i64)>,
    },
}

/// A checkpoint of the store, borrowed for writing (encodes like [`FrozenSaved`]).
#[derive(Debug, serde::Serialize)]
pub enum FrozenSavedRef<'a> {
    /// See [`FrozenSaved::Memory`].
    Memory(&'a HashMap<(Uuid, Uuid), u16>),
    /// See [`FrozenSaved::Disk`].
    Disk {
        /// Hours still freezing.
        pending: &'a HashMap<Uuid, BTreeMap<i64, HashMap<Uuid, u16>>>,
        /// Spilled entries no longer valid.
        tombstones: &'a HashSet<(Uuid, Uuid, i64)>,
        /// Entries in files.
        spilled: u64,
        /// Files written.
        files: &'a BTreeSet<(Uuid, i64)>,
    },
}

impl FrozenStore {
    /// An in-memory store.
    pub fn memory() -> FrozenStore {
        FrozenStore::Memory(HashMap::new())
    }

    /// A store under `dir`, emptied first (its content is rebuilt by the log's replay).
    pub fn disk(dir: PathBuf) -> std::io::Result<FrozenStore> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self::reopen(dir))
    }

    /// The store under `dir` as it is, to be rolled back by [`FrozenStore::restore`].
    pub fn reopen(dir: PathBuf) -> FrozenStore {
        FrozenStore::Disk(Spill {
            dir,
            pending: HashMap::new(),
            tombstones: HashSet::new(),
            spilled: 0,
            files: BTreeSet::new(),
        })
    }

    /// What a checkpoint keeps of the store.
    pub fn saved(&self) -> FrozenSavedRef<'_> {
        match self {
            Self::Memory(m) => FrozenSavedRef::Memory(m),
            Self::Disk(s) => FrozenSavedRef::Disk {
                pending: &s.pending,
                tombstones: &s.tombstones,
                spilled: s.spilled,
                files: &s.files,
            },
        }
    }

    /// Returns to a checkpoint: memory as saved, and on disk exactly the files written
    /// before it (later ones are deleted; the replay of the log after the checkpoint
    /// writes them again). A file is written once, when its hour has frozen, so the files
    /// the checkpoint lists are unchanged since.
    pub fn restore(&mut self, saved: FrozenSaved) {
        match (self, saved) {
            (Self::Memory(m), FrozenSaved::Memory(saved)) => *m = saved,
            (
                Self::Disk(s),
                FrozenSaved::Disk {
                    pending,
                    tombstones,
                    spilled,
                    files,
                },
            ) => {
                for org_dir in std::fs::read_dir(&s.dir).into_iter().flatten().flatten() {
                    let org = org_dir
                        .file_name()
                        .to_str()
                        .and_then(|n| Uuid::try_parse(n).ok());
                    for f in std::fs::read_dir(org_dir.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let path = f.path();
                        let hour = path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .and_then(|n| n.strip_suffix(".bin"))
                            .and_then(|h| h.parse::<i64>().ok());
                        let listed =
                            matches!((org, hour), (Some(o), Some(h)) if files.contains(&(o, h)));
                        if !listed {
                            std::fs::remove_file(&path).unwrap_or_else(|e| {
                                panic!("cannot roll back {}: {e}", path.display())
                            });
                        }
                    }
                }
                s.pending = pending;
                s.tombstones = tombstones;
                s.spilled = spilled;
                s.files = files;
            }
            _ => panic!("a checkpoint of the frozen velocities does not match the store's kind"),
        }
    }

    /// Records the final velocity of a mention with event time `t_us` (only non-zero ones
    /// are kept: zero is the answer for anything unknown).
    pub fn freeze(&mut self, org: Uuid, id: Uuid, t_us: i64, v: u16) {
        if v == 0 {
            return;
        }
        match self {
            Self::Memory(m) => {
                m.insert((org, id), v);
            }
            Self::Disk(s) => {
                s.pending
                    .entry(org)
                    .or_default()
                    .entry(t_us.div_euclid(HOUR_US))
                    .or_default()
                    .insert(id, v);
            }
        }
    }

    /// The final velocity of a frozen mention (0 when unknown).
    pub fn get(&self, org: Uuid, id: Uuid, t_us: i64) -> u16 {
        match self {
            Self::Memory(m) => m.get(&(org, id)).copied().unwrap_or(0),
            Self::Disk(s) => s.get(org, id, t_us.div_euclid(HOUR_US)),
        }
    }

    /// Forgets a frozen mention (deleted, or moved to another event time or story) and
    /// returns its velocity.
    pub fn remove(&mut self, org: Uuid, id: Uuid, t_us: i64) -> u16 {
        match self {
            Self::Memory(m) => m.remove(&(org, id)).unwrap_or(0),
            Self::Disk(s) => {
                let hour = t_us.div_euclid(HOUR_US);
                if let Some(v) = s
                    .pending
                    .get_mut(&org)
                    .and_then(|h| h.get_mut(&hour))
                    .and_then(|m| m.remove(&id))
                {
                    return v;
                }
                let v = s.get(org, id, hour);
                if v > 0 {
                    s.tombstones.insert((org, id, hour));
                }
                v
            }
        }
    }

    /// Writes the hours of `org` that have completely frozen: every minute before
    /// `frozen_below_minute` is frozen.
    pub fn seal(&mut self, org: Uuid, frozen_below_minute: i64) {
        let Self::Disk(s) = self else {
            return;
        };
        let Some(hours) = s.pending.get_mut(&org) else {
            return;
        };
        // Hour h is complete once every minute of it is frozen: (h + 1) * 60 <= below.
        let open = hours.split_off(&frozen_below_minute.div_euclid(60));
        let done = std::mem::replace(hours, open);
        for (hour, entries) in done {
            if entries.is_empty() {
                continue;
            }
            let n = entries.len() as u64;
            if let Err(e) = s.write(org, hour, entries) {
                // Without the file, a later update of these mentions would use velocity 0
                // and leave a residue in trends: stop rather than be wrong (the log has
                // everything; a restart rebuilds the directory).
                panic!(
                    "cannot write frozen velocities under {}: {e}",
                    s.dir.display()
                );
            }
            s.spilled += n;
            s.files.insert((org, hour));
        }
    }

    /// Entries kept (in memory, or on disk and pending).
    pub fn len(&self) -> u64 {
        match self {
            Self::Memory(m) => m.len() as u64,
            Self::Disk(s) => s.spilled + s.pending_len(),
        }
    }

    /// Entries held in memory.
    pub fn in_memory(&self) -> u64 {
        match self {
            Self::Memory(m) => m.len() as u64,
            Self::Disk(s) => s.tombstones.len() as u64 + s.pending_len(),
        }
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Spill {
    fn pending_len(&self) -> u64 {
        self.pending
            .values()
            .flat_map(|h| h.values())
            .map(|m| m.len() as u64)
            .sum()
    }

    fn path(&self, org: Uuid, hour: i64) -> PathBuf {
        self.dir
            .join(org.simple().to_string())
            .join(format!("{hour}.bin"))
    }

    fn write(&self, org: Uuid, hour: i64, entries: HashMap<Uuid, u16>) -> std::io::Result<()> {
        let path = self.path(org, hour);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // An hour can be sealed twice (late-ish members of an hour already written are
        // impossible: members are on time, and an hour is sealed once the watermark is an
        // hour past it). Merge with what is there anyway, to stay correct if it happens.
        let mut all: BTreeMap<Uuid, u16> = BTreeMap::new();
        if let Ok(old) = std::fs::read(&path) {
            for e in old.chunks_exact(ENTRY as usize) {
                let id = Uuid::from_bytes(e[..16].try_into().expect("16 bytes"));
                all.insert(id, u16::from_le_bytes([e[16], e[17]]));
            }
        }
        all.extend(entries);
        let mut buf = Vec::with_capacity(all.len() * ENTRY as usize);
        for (id, v) in all {
            buf.extend_from_slice(id.as_bytes());
            buf.extend_from_slice(&v.to_le_bytes());
        }
        crate::files::replace(&path, &buf, false)
    }

    fn get(&self, org: Uuid, id: Uuid, hour: i64) -> u16 {
        if let Some(v) = self
            .pending
            .get(&org)
            .and_then(|h| h.get(&hour))
            .and_then(|m| m.get(&id))
        {
            return *v;
        }
        if self.tombstones.contains(&(org, id, hour)) {
            return 0;
        }
        let Ok(f) = std::fs::File::open(self.path(org, hour)) else {
            return 0;
        };
        let n = f.metadata().map_or(0, |m| m.len()) / ENTRY;
        let (mut lo, mut hi) = (0u64, n);
        let mut e = [0u8; ENTRY as usize];
        while lo < hi {
            let mid = (lo + hi) / 2;
            if f.read_exact_at(&mut e, mid * ENTRY).is_err() {
                return 0;
            }
            let found = Uuid::from_bytes(e[..16].try_into().expect("16 bytes"));
            match found.cmp(&id) {
                std::cmp::Ordering::Equal => return u16::from_le_bytes([e[16], e[17]]),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spilled_velocities_are_found_by_event_time_and_can_be_removed() {
        let dir = std::env::temp_dir().join(format!("vigie-frozen-{}", Uuid::new_v4().simple()));
        let mut s = FrozenStore::disk(dir.clone()).unwrap();
        let org = Uuid::from_u128(7);
        let t = 10 * HOUR_US + 5;
        for i in 0..1000u128 {
            s.freeze(org, Uuid::from_u128(i * 7919), t, (i % 900 + 1) as u16);
        }
        s.freeze(org, Uuid::from_u128(5), t, 0); // zero: not kept
        assert_eq!(s.get(org, Uuid::from_u128(7919), t), 2);
        s.seal(org, 11 * 60); // hour 10 complete
        assert_eq!(s.in_memory(), 0);
        assert_eq!(s.len(), 1000);
        assert!(dir.join(org.simple().to_string()).join("10.bin").exists());
        for i in 0..1000u128 {
            assert_eq!(
                s.get(org, Uuid::from_u128(i * 7919), t),
                (i % 900 + 1) as u16
            );
        }
        assert_eq!(s.get(org, Uuid::from_u128(1), t), 0);
        assert_eq!(
            s.get(org, Uuid::from_u128(7919), t + HOUR_US),
            0,
            "another hour"
        );
        assert_eq!(s.remove(org, Uuid::from_u128(7919), t), 2);
        assert_eq!(s.get(org, Uuid::from_u128(7919), t), 0);
        assert_eq!(s.in_memory(), 1, "one tombstone");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
