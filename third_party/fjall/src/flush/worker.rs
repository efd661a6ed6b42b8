// Copyright (c) 2024-present, fjall-rs
// This source code is licensed under both the Apache 2.0 and MIT License
// (found in the LICENSE-* files in the repository)

use crate::{
    flush::Task, snapshot_tracker::SnapshotTracker, stats::Stats,
    write_buffer_manager::WriteBufferManager,
};
use lsm_tree::AbstractTree;

/// vigie patch: forgets the versions that the flush made old, now rather than at the next
/// rotation, when no snapshot is open.
///
/// The version before the flush still lists the flushed memtable as sealed, so the memtable
/// (64 MiB of entries for vigie's store) stayed in memory until the next rotation's GC.
/// That GC keeps the newest version below `seqno - 1` (`SnapshotTracker::pullup`), which is
/// the pre-flush one: the flush's version has sequence number `seqno - 1`. With no snapshot
/// open, reads take the latest version (`SeqNo::MAX`), and a snapshot opened from here on
/// reads at the visible sequence number or later, which finds the flush's version or a
/// newer one: the versions before it serve no reader. Readers still holding one hold it
/// through their own reference.
fn drop_flushed_versions(task: &Task, snapshot_tracker: &SnapshotTracker) {
    let Some(watermark) = snapshot_tracker.watermark_if_none_open() else {
        return;
    };
    let garbage = task
        .keyspace
        .tree
        .get_version_history_lock()
        .take_garbage(task.keyspace.path(), watermark);
    if let Err(e) = garbage.finish() {
        log::warn!(
            "Version history GC after a flush failed for keyspace {:?}: {e:?}",
            task.keyspace.name,
        );
    }
}

/// Runs flush logic.
pub fn run(
    task: &Task,
    write_buffer_manager: &WriteBufferManager,
    snapshot_tracker: &SnapshotTracker,
    _stats: &Stats,
) -> crate::Result<()> {
    log::debug!("Flushing keyspace {:?}", task.keyspace.name);

    let gc_watermark = snapshot_tracker.get_seqno_safe_to_gc();

    let flush_lock = task.keyspace.tree.get_flush_lock();

    match task
        .keyspace
        .tree
        .flush(&flush_lock, gc_watermark)
        .inspect_err(|e| {
            log::error!("Flush error: {e:?}");
        })? {
        Some(flushed_bytes) => {
            write_buffer_manager.free(flushed_bytes);

            log::debug!("Flush completed");

            drop_flushed_versions(task, snapshot_tracker);
        }
        None => {
            log::trace!("Flush did not return a table");
        }
    }

    Ok(())
}

/// vigie patch: tests of `drop_flushed_versions`.
#[cfg(test)]
mod tests {
    use crate::{AbstractTree, Database, KeyspaceCreateOptions, Readable};
    use std::time::{Duration, Instant};
    use test_log::test;

    /// Bytes of the memtables that some version still lists.
    fn memtables_held(ks: &crate::Keyspace) -> u64 {
        ks.tree.get_version_history_lock().memtable_size_sum()
    }

    fn fill(ks: &crate::Keyspace, from: u32) -> crate::Result<()> {
        for i in from..from + 1_000 {
            ks.insert(i.to_be_bytes(), [7u8; 100])?;
        }
        Ok(())
    }

    #[test]
    fn a_flushed_memtable_is_freed_at_its_flush_when_no_snapshot_is_open() -> crate::Result<()> {
        let folder = tempfile::tempdir()?;
        let db = Database::builder(&folder).open()?;
        let ks = db.keyspace("default", KeyspaceCreateOptions::default)?;
        fill(&ks, 0)?;
        assert!(memtables_held(&ks) > 100_000);

        ks.rotate_memtable_and_wait()?;
        // The flush's version is installed before its worker collects the old ones.
        let deadline = Instant::now() + Duration::from_secs(10);
        while memtables_held(&ks) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            memtables_held(&ks),
            0,
            "the flushed memtable is still listed by an old version"
        );
        assert_eq!(ks.tree.sealed_memtable_count(), 0);
        // What it held is read from the flushed table.
        assert_eq!(
            ks.get(5u32.to_be_bytes())?.as_deref(),
            Some(&[7u8; 100][..])
        );
        assert_eq!(ks.len()?, 1_000);
        Ok(())
    }

    #[test]
    fn an_open_snapshot_keeps_the_versions_it_may_read() -> crate::Result<()> {
        let folder = tempfile::tempdir()?;
        let db = Database::builder(&folder).open()?;
        let ks = db.keyspace("default", KeyspaceCreateOptions::default)?;
        fill(&ks, 0)?;
        let snapshot = db.snapshot();
        fill(&ks, 1_000)?;

        ks.rotate_memtable_and_wait()?;
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            memtables_held(&ks) > 0,
            "versions were dropped under an open snapshot"
        );
        assert_eq!(snapshot.len(&ks)?, 1_000);
        assert_eq!(ks.len()?, 2_000);

        drop(snapshot);
        fill(&ks, 2_000)?;
        ks.rotate_memtable_and_wait()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while memtables_held(&ks) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(memtables_held(&ks), 0, "the snapshot's versions outlived it");
        assert_eq!(ks.len()?, 3_000);
        Ok(())
    }
}
