//! The mention store (the patched `third_party/fjall` and `third_party/lsm-tree`) stays
//! readable and writable while another thread persists a new table version: after a flush,
//! a compaction, or the creation or deletion of a keyspace (the upsert stage's undo
//! keyspaces, on its keeper thread).
//!
//! Upstream, lsm-tree 3.1 writes and fsyncs the version file with the tree's version lock
//! held for writing, and fjall 3.1 creates and deletes a keyspace with its keyspace map
//! locked for writing: the upsert stage's reads and batch commits waited up to ~150 ms
//! behind those fsyncs (benches/README.md, "What the worker waits for"). The patches take
//! those locks only to install the result. Here a test hook parks a version persist
//! between writing the file and syncing it, and another thread reads and commits batches
//! meanwhile: with a lock held through the persist, it would wait until the hook is
//! released and the test fails.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MENTIONS: u32 = 2_000;

fn key(i: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(b"org1");
    k[4..].copy_from_slice(&i.to_be_bytes());
    k
}

/// Parks the next version persist of the tree under `tree`, once armed.
struct Park {
    armed: Arc<AtomicBool>,
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Park {
    /// Parks the next persist, once armed, of a version of any tree under `dir`.
    fn install(dir: &Path) -> Park {
        let armed = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (dir, hook_armed) = (dir.to_path_buf(), armed.clone());
        lsm_tree::set_version_persist_hook(Some(Arc::new(move |folder: &Path| {
            if folder.starts_with(&dir) && hook_armed.swap(false, Ordering::SeqCst) {
                entered_tx.send(()).expect("test is waiting");
                // Released by the test, or after a minute if it failed first.
                let _ = release_rx
                    .lock()
                    .expect("one persist at a time")
                    .recv_timeout(Duration::from_secs(60));
            }
        })));
        Park {
            armed,
            entered,
            release,
        }
    }

    /// Runs `change` on a thread of its own with the next version persist parked, and
    /// reads `ks` and commits a batch to it from a third thread while it is parked.
    fn while_persisting(
        &self,
        db: &fjall::Database,
        ks: &fjall::Keyspace,
        what: &str,
        change: impl FnOnce() -> fjall::Result<()> + Send + 'static,
    ) {
        self.armed.store(true, Ordering::SeqCst);
        let changer = std::thread::spawn(change);
        self.entered
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the {what} never persisted a version"));

        let (done_tx, done) = mpsc::channel();
        let (reader, db) = (ks.clone(), db.clone());
        std::thread::spawn(move || {
            let mut found = 0;
            for i in 0..MENTIONS {
                found += usize::from(reader.get(key(i)).expect("read").is_some());
            }
            let mut batch = db.batch();
            batch.insert(&reader, key(MENTIONS + 1), b"late");
            batch.commit().expect("write");
            let late = reader.get(key(MENTIONS + 1)).expect("read").is_some();
            let _ = done_tx.send((found, late));
        });
        let seen = done.recv_timeout(Duration::from_secs(10));
        self.release.send(()).expect("hook is parked");
        changer
            .join()
            .expect("no panic")
            .expect("the change succeeded");
        let (found, late) = seen.unwrap_or_else(|_| {
            panic!("reads and writes waited for the {what}'s version persist (a lock the store needs is held through it)")
        });
        assert_eq!(
            found, MENTIONS as usize,
            "every mention readable during the {what}"
        );
        assert!(late, "a write during the {what} is readable");
    }
}

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn reads_and_writes_do_not_wait_for_another_thread_to_persist_a_version() {
    let dir = Dir(std::env::temp_dir().join(format!("vigie-store-lock-{}", uuid::Uuid::new_v4())));
    let db = fjall::Database::builder(&dir.0)
        .manual_journal_persist(true)
        .open()
        .expect("open");
    let ks = db
        .keyspace("mentions", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let park = Park::install(ks.path());

    // A flush: the memtable becomes a table, installed as a new version.
    for i in 0..MENTIONS {
        ks.insert(key(i), i.to_be_bytes()).expect("insert");
    }
    let flushing = ks.clone();
    park.while_persisting(&db, &ks, "flush", move || {
        flushing.rotate_memtable_and_wait()
    });
    assert_eq!(ks.table_count(), 1, "the flushed table is installed");

    // A compaction: a second table, then both merged into one.
    for i in 0..MENTIONS {
        ks.insert(key(i), (i + 1).to_be_bytes()).expect("insert");
    }
    ks.rotate_memtable_and_wait().expect("flush");
    assert_eq!(ks.table_count(), 2);
    let compacting = ks.clone();
    park.while_persisting(&db, &ks, "compaction", move || compacting.major_compact());
    assert_eq!(ks.table_count(), 1, "the merged table replaced both");
    for i in [0, MENTIONS / 2, MENTIONS - 1] {
        let v = ks.get(key(i)).expect("read").expect("present");
        assert_eq!(&*v, (i + 1).to_be_bytes(), "the newer value won the merge");
    }

    // Keyspaces created and deleted, as the keeper does with undo keyspaces: any version
    // persisted under the database's directory is parked (the new keyspace's tree, the
    // metadata's ingestion).
    let park = Park::install(&dir.0);
    let creating = db.clone();
    park.while_persisting(&db, &ks, "keyspace creation", move || {
        creating
            .keyspace("undo-1", fjall::KeyspaceCreateOptions::default)
            .map(drop)
    });
    let undo = db
        .keyspace("undo-1", fjall::KeyspaceCreateOptions::default)
        .expect("created");
    let deleting = db.clone();
    park.while_persisting(&db, &ks, "keyspace deletion", move || {
        deleting.delete_keyspace(undo)
    });
    assert!(!db.keyspace_exists("undo-1"), "the keyspace is deleted");
    lsm_tree::set_version_persist_hook(None);
}
