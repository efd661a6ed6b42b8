//! The mention store (fjall, over the patched `third_party/lsm-tree`) stays readable and
//! writable while a new table version is being persisted.
//!
//! Upstream lsm-tree 3.1 writes and fsyncs the version file with the tree's version lock
//! held for writing, after every memtable flush and every compaction: the upsert stage's
//! reads and writes waited up to ~150 ms behind those fsyncs (benches/README.md, "What the
//! worker waits for"). The patch persists the version first and takes the lock only to
//! install it. Here a test hook parks the persist between writing the version file and
//! syncing it, and another thread reads and writes the keyspace meanwhile: with the lock
//! held through the persist, it would wait until the hook is released and the test fails.

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
    fn install(tree: &Path) -> Park {
        let armed = Arc::new(AtomicBool::new(false));
        let (entered_tx, entered) = mpsc::sync_channel(1);
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (tree, hook_armed) = (tree.to_path_buf(), armed.clone());
        lsm_tree::set_version_persist_hook(Some(Arc::new(move |folder: &Path| {
            if folder == tree && hook_armed.swap(false, Ordering::SeqCst) {
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
    /// reads and writes `ks` from a third thread while it is parked.
    fn while_persisting(
        &self,
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
        let reader = ks.clone();
        std::thread::spawn(move || {
            let mut found = 0;
            for i in 0..MENTIONS {
                found += usize::from(reader.get(key(i)).expect("read").is_some());
            }
            reader.insert(key(MENTIONS + 1), b"late").expect("write");
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
            panic!("reads and writes waited for the {what}'s version persist (the version lock is held through it)")
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
fn reads_and_writes_do_not_wait_for_a_flush_or_a_compaction_to_persist_its_version() {
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
    park.while_persisting(&ks, "flush", move || flushing.rotate_memtable_and_wait());
    assert_eq!(ks.table_count(), 1, "the flushed table is installed");

    // A compaction: a second table, then both merged into one.
    for i in 0..MENTIONS {
        ks.insert(key(i), (i + 1).to_be_bytes()).expect("insert");
    }
    ks.rotate_memtable_and_wait().expect("flush");
    assert_eq!(ks.table_count(), 2);
    let compacting = ks.clone();
    park.while_persisting(&ks, "compaction", move || compacting.major_compact());
    assert_eq!(ks.table_count(), 1, "the merged table replaced both");
    for i in [0, MENTIONS / 2, MENTIONS - 1] {
        let v = ks.get(key(i)).expect("read").expect("present");
        assert_eq!(&*v, (i + 1).to_be_bytes(), "the newer value won the merge");
    }
    lsm_tree::set_version_persist_hook(None);
}
