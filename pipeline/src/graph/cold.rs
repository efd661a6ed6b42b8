//! Where the trends stages keep the totals of buckets that ended long ago, so that their
//! memory follows the recent buckets, not the history.
//!
//! A bucket's total can still change at any time (a correction or deletion of an old
//! mention must update every trend row it counted in), so totals are moved to disk, not
//! dropped. They move by *group*: the hour buckets of one day, or one day, week or month
//! bucket — of every organisation and source (or keyword) on the worker. Once a group has
//! ended more than a horizon ([`HORIZON`] by default) before the latest hour bucket seen, a *sweep* (run
//! when that clock passes into a new hour) writes its totals to one sorted file,
//! `<dir>/<granularity>-<group start>-<generation>.bin`, and drops them from memory.
//! Checkpoints do not sweep: a group read back stays in memory until the next sweep, so
//! that old mentions arriving one after another into it (a live feed's backfill) read
//! and write its file once an hour, not once per label.
//!
//! A group is either wholly in memory or wholly in its file: any change to a key of a
//! group on disk first reads the whole file back (*revives* the group); the next sweep
//! writes it again under a new generation. Files are never rewritten, so a checkpoint
//! lists the groups on disk with their generations ([`ColdIndex`]) and a restore deletes
//! every other file. A superseded file is deleted once no checkpoint that a restart may
//! still use lists it (at once without checkpoints).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::records::Sums;
use crate::domain::Granularity;

/// How long after its end a group moves to disk by default, measured on the latest hour
/// bucket seen.
pub const HORIZON: std::time::Duration = std::time::Duration::from_secs(2 * DAY as u64);

const DAY: i64 = 86_400;

/// The unit in which totals move to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Group {
    /// Granularity of its buckets.
    pub granularity: Granularity,
    /// Start (UTC seconds): the day of an hour group, else the bucket's own start.
    pub start: i64,
}

impl Group {
    /// The group of a bucket.
    pub fn of(granularity: Granularity, bucket: i64) -> Group {
        let start = match granularity {
            Granularity::Hour => Granularity::Day.bucket_start(bucket),
            _ => bucket,
        };
        Group { granularity, start }
    }

    /// End (UTC seconds, exclusive) of the group's last bucket.
    pub fn end(self) -> i64 {
        match self.granularity {
            Granularity::Hour | Granularity::Day => self.start + DAY,
            Granularity::Week => self.start + 7 * DAY,
            // A month has at most 31 days, and the next one at least 28.
            Granularity::Month => Granularity::Month.bucket_start(self.start + 31 * DAY),
        }
    }
}

/// A trend key's bucket (what decides where its total lives).
pub trait Bucketed {
    /// Bucket size.
    fn granularity(&self) -> Granularity;
    /// Bucket start, UTC seconds.
    fn bucket(&self) -> i64;
    /// The group the key moves to disk with.
    fn group(&self) -> Group {
        Group::of(self.granularity(), self.bucket())
    }
}

/// What a checkpoint keeps of the store: which groups are on disk, under which file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ColdIndex {
    /// Groups on disk, with the generation of the file holding each.
    pub groups: BTreeMap<Group, u64>,
    /// Generation of the next file written.
    pub next_generation: u64,
    /// End (UTC seconds) of the latest hour bucket seen.
    pub clock: i64,
    /// The clock at the last sweep.
    pub swept: i64,
    /// Files superseded by a revival, with the dataflow time at which it happened.
    pub superseded: Vec<(Group, u64, u64)>,
}

/// Totals of ended groups, on disk.
#[derive(Debug)]
pub struct Cold {
    dir: PathBuf,
    /// Seconds after its end a group moves to disk.
    horizon: i64,
    /// Without checkpoints a superseded file is deleted at once, and files are never
    /// synced (the directory is emptied at every start).
    checkpoints: bool,
    index: ColdIndex,
    /// Files written since the last checkpoint, not yet synced.
    unsynced: Vec<PathBuf>,
}

impl Cold {
    /// The store under `dir`, moving groups `horizon` seconds after their end: emptied,
    /// unless `keep` (a checkpoint restore, which then calls [`Cold::restore`]).
    pub fn open(
        dir: PathBuf,
        horizon: i64,
        keep: bool,
        checkpoints: bool,
    ) -> std::io::Result<Cold> {
        if !keep && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Cold {
            dir,
            horizon,
            checkpoints,
            index: ColdIndex::default(),
            unsynced: Vec::new(),
        })
    }

    fn path(&self, group: Group, generation: u64) -> PathBuf {
        file_path(&self.dir, group, generation)
    }

    /// Groups on disk.
    pub fn groups(&self) -> usize {
        self.index.groups.len()
    }

    /// The index, for a checkpoint.
    pub fn index(&self) -> &ColdIndex {
        &self.index
    }

    /// Notes a key's bucket (moves the clock).
    pub fn observe(&mut self, granularity: Granularity, bucket: i64) {
        if granularity == Granularity::Hour {
            self.index.clock = self.index.clock.max(bucket + 3600);
        }
    }

    /// Whether a group is on disk.
    pub fn is_cold(&self, group: Group) -> bool {
        self.index.groups.contains_key(&group)
    }

    /// Reads a group on disk back (it is then in memory only) at dataflow time `time`.
    /// A file that cannot be read stops the worker (a panic): it was written and synced
    /// by this store, so this is a damaged disk, and guessing would break exactness.
    pub fn revive<K: DeserializeOwned>(&mut self, group: Group, time: u64) -> Vec<(K, Sums)> {
        let Some(generation) = self.index.groups.remove(&group) else {
            return Vec::new();
        };
        let path = self.path(group, generation);
        let f = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("reading trend totals {}: {e}", path.display()));
        let entries = bincode::deserialize_from(std::io::BufReader::new(f))
            .unwrap_or_else(|e| panic!("decoding trend totals {}: {e}", path.display()));
        if self.checkpoints {
            self.index.superseded.push((group, generation, time));
        } else {
            let _ = std::fs::remove_file(&path);
        }
        entries
    }

    /// The end at or before which groups are due to move to disk, when the clock has
    /// passed into a new hour since the last sweep (`None` otherwise).
    pub fn due(&mut self) -> Option<i64> {
        (self.index.clock > self.index.swept).then(|| {
            self.index.swept = self.index.clock;
            self.index.clock - self.horizon
        })
    }

    /// Writes a group's totals (sorted by key) to a new file, not synced (see
    /// [`Cold::take_unsynced`]). On failure the group stays in memory (logged) and `false`
    /// is returned.
    pub fn evict<K: Serialize>(&mut self, group: Group, entries: &[(&K, &Sums)]) -> bool {
        let generation = self.index.next_generation;
        let path = self.path(group, generation);
        let written = (|| -> anyhow::Result<()> {
            crate::files::replace(&path, &bincode::serialize(entries)?, false)?;
            Ok(())
        })();
        match written {
            Ok(()) => {
                if self.checkpoints {
                    self.unsynced.push(path);
                }
                self.index.next_generation += 1;
                self.index.groups.insert(group, generation);
                true
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot move trend totals to disk; they stay in memory");
                false
            }
        }
    }

    /// The files written since the last call: a checkpoint that lists them must not
    /// exist before they are synced, which [`sync`] does on the checkpoint writer's thread.
    pub fn take_unsynced(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.unsynced)
    }

    /// Deletes the superseded files no restart can need: those superseded below `label`,
    /// the newest label a restart may use (labels only grow).
    pub fn collect(&mut self, label: u64) {
        let dir = &self.dir;
        self.index.superseded.retain(|&(group, generation, time)| {
            let keep = time >= label;
            if !keep {
                let _ = std::fs::remove_file(file_path(dir, group, generation));
            }
            keep
        });
    }

    /// Returns to a checkpoint's index and deletes every file it does not list (written
    /// after it, or superseded before it: no later restart uses an older label).
    pub fn restore(&mut self, mut index: ColdIndex) {
        index.superseded.clear();
        let listed: std::collections::HashSet<PathBuf> = index
            .groups
            .iter()
            .map(|(g, generation)| self.path(*g, *generation))
            .collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if !listed.contains(&path) {
                let _ = std::fs::remove_file(&path);
            }
        }
        for path in &listed {
            assert!(
                path.is_file(),
                "trend totals {} listed by the checkpoint are missing",
                path.display()
            );
        }
        self.index = index;
    }
}

/// Syncs files written by [`Cold::evict`]; one already superseded and deleted is skipped.
pub fn sync(files: &[PathBuf]) -> std::io::Result<()> {
    for path in files {
        match std::fs::File::open(path) {
            Ok(f) => f.sync_data()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn file_path(dir: &Path, group: Group, generation: u64) -> PathBuf {
    dir.join(format!(
        "{}-{}-{generation}.bin",
        group.granularity.as_str(),
        group.start
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_end_where_their_last_bucket_ends() {
        // 2024-02-10T13:00:00Z, a Saturday in a leap February.
        let t = 1_707_570_000;
        let hour = Group::of(Granularity::Hour, Granularity::Hour.bucket_start(t));
        assert_eq!(hour.start, 1_707_523_200); // 2024-02-10T00:00:00Z
        assert_eq!(hour.end(), 1_707_609_600);
        let week = Group::of(Granularity::Week, Granularity::Week.bucket_start(t));
        assert_eq!(week.end() - week.start, 7 * DAY);
        let month = Group::of(Granularity::Month, Granularity::Month.bucket_start(t));
        assert_eq!(month.start, 1_706_745_600); // 2024-02-01
        assert_eq!(month.end(), 1_709_251_200); // 2024-03-01: 29 days later
        let dec = Group::of(Granularity::Month, 1_701_388_800); // 2023-12-01
        assert_eq!(dec.end(), 1_704_067_200); // 2024-01-01
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn superseded_files_go_once_no_usable_label_lists_them_and_a_restore_keeps_only_its_own() {
        let dir = std::env::temp_dir().join(format!("vigie-cold-{}", uuid::Uuid::new_v4()));
        let mut cold = Cold::open(dir.clone(), 3600, false, true).unwrap();
        let day = Group::of(Granularity::Day, 0);
        let total = Sums {
            n: 3,
            ..Sums::default()
        };
        assert!(cold.evict(day, &[(&7u32, &total)]));
        let at_label_10 = cold.index().clone();
        // A change at time 20 reads the group back; it moves to disk again under a new file.
        let back: Vec<(u32, Sums)> = cold.revive(day, 20);
        assert_eq!(back, vec![(7, total)]);
        assert!(!cold.is_cold(day));
        assert!(cold.evict(day, &[(&7u32, &total)]));
        assert_eq!(files(&dir), ["day-0-0.bin", "day-0-1.bin"]);
        // Label 10 lists the first file: kept while a restart may use label 20 or below.
        cold.collect(20);
        assert_eq!(files(&dir), ["day-0-0.bin", "day-0-1.bin"]);
        cold.collect(21);
        assert_eq!(files(&dir), ["day-0-1.bin"]);

        // A restore to a label whose file still exists deletes the later one.
        let mut again = Cold::open(dir.clone(), 3600, false, true).unwrap();
        assert!(
            files(&dir).is_empty(),
            "a start without a checkpoint empties the store"
        );
        assert!(again.evict(day, &[(&7u32, &total)]));
        let _: Vec<(u32, Sums)> = again.revive(day, 20);
        assert!(again.evict(day, &[(&8u32, &total)]));
        let mut restored = Cold::open(dir.clone(), 3600, true, true).unwrap();
        restored.restore(at_label_10);
        assert_eq!(files(&dir), ["day-0-0.bin"]);
        let back: Vec<(u32, Sums)> = restored.revive(day, 30);
        assert_eq!(back, vec![(7, total)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
