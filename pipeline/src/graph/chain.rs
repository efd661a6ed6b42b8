//! Incremental checkpoints of a stage's large maps, so that a boundary costs what changed
//! since the previous one, not the whole state.
//!
//! A stage with a [`Chain`] writes, at each label, a *link*: one file
//! `<checkpoints>/chains/<stage>-<worker>/<label>.bin` holding either every entry of its
//! maps (a *full* link) or only the entries changed since its previous label (`None` for a
//! removed key). Its part of the label then holds its small state and the list of links a
//! restore reads, in order: the last full link and every link after it. A full link is
//! written again once the changes written since the last one outnumber its entries (or
//! after [`MAX_LINKS`] links), so a restore reads at most about twice the state, and the
//! encoding work per entry changed stays bounded (amortised) however long the chain runs.
//!
//! A stage whose links are maps of changes ([`Link`]) can leave the full links to the
//! writer thread: it then encodes only its changes at every label (a full link only for
//! the first label or after a failed write), and when a full link is due, the writer
//! thread builds it from the chain's links on disk plus those changes ([`merge`]). Encoding
//! the virality stage's whole state took ~125 ms of the dataflow's thread at 1 M mentions,
//! and every epoch behind that boundary waited for it.
//!
//! Links are written (and synced) by the checkpoint writer thread before the part that
//! lists them, so a complete label's links are on disk. The writer thread runs its work in
//! order, so a merge finds every link it reads on disk. A link is deleted once the newest
//! usable label no longer lists it (labels only grow, and so do the chains' starts). A
//! restore deletes every link its label does not list: those written after it, and older
//! ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::checkpoint::StageCheckpoint;

/// Longest chain: a full link is written at the latest every this many labels (a quiet
/// stage's chain would otherwise grow by an empty link per label, forever).
pub const MAX_LINKS: usize = 32;

/// Work the writer thread must finish before a part is written.
pub type Before = Box<dyn FnOnce() -> anyhow::Result<()> + Send>;

/// Builds a full link from the chain's links (files, in order, the first a full one) and
/// the newest changes (encoded): [`merge`] for the stage's [`Link`] type.
pub type Merge = fn(&[PathBuf], &[u8]) -> anyhow::Result<Vec<u8>>;

/// A link the writer thread can merge: changes to maps, applied in order to an
/// accumulator, then written out whole.
pub trait Link: Serialize + DeserializeOwned {
    /// The maps being rebuilt.
    type Acc: Default;
    /// Applies a link (a key's `None` removes it).
    fn apply(acc: &mut Self::Acc, link: Self);
    /// Every entry of `acc`, as a full link.
    fn full(acc: Self::Acc) -> Self;
}

impl<K, V> Link for Vec<(K, Option<V>)>
where
    K: std::hash::Hash + Eq + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    type Acc = std::collections::HashMap<K, V>;
    fn apply(acc: &mut Self::Acc, link: Self) {
        apply_to(acc, link);
    }
    fn full(acc: Self::Acc) -> Self {
        acc.into_iter().map(|(k, v)| (k, Some(v))).collect()
    }
}

impl<A: Link, B: Link> Link for (A, B) {
    type Acc = (A::Acc, B::Acc);
    fn apply(acc: &mut Self::Acc, (a, b): Self) {
        A::apply(&mut acc.0, a);
        B::apply(&mut acc.1, b);
    }
    fn full((a, b): Self::Acc) -> Self {
        (A::full(a), B::full(b))
    }
}

/// The writer thread's [`Merge`] for links of type `L`.
pub fn merge<L: Link>(chain: &[PathBuf], newest: &[u8]) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let mut acc = L::Acc::default();
    for path in chain {
        let f = std::fs::File::open(path)
            .with_context(|| format!("reading checkpoint link {}", path.display()))?;
        let link: L = bincode::deserialize_from(std::io::BufReader::new(f))
            .with_context(|| format!("decoding checkpoint link {}", path.display()))?;
        L::apply(&mut acc, link);
    }
    L::apply(&mut acc, bincode::deserialize(newest)?);
    Ok(bincode::serialize(&L::full(acc))?)
}

/// A stage's part of a label when it keeps a chain.
#[derive(Serialize, Deserialize)]
struct Part<S> {
    /// Labels of the links a restore reads, in order (the first is a full link).
    links: Vec<u64>,
    small: S,
}

/// The links a stage has written, and when to write a full one.
#[derive(Debug, Default)]
pub struct Chain {
    /// Links since the last full one (that one first).
    links: Vec<u64>,
    /// Entries in the last full link.
    full_len: usize,
    /// Entries in the links written after it.
    changed_since_full: usize,
    /// The first link of each label this stage wrote (or restored from) that may still
    /// become the newest usable one.
    firsts: BTreeMap<u64, u64>,
    /// Links on disk.
    files: BTreeSet<u64>,
    /// Links the writer thread could not write: a part listing one is not written, and
    /// the next link is a full one.
    failed: Arc<Mutex<BTreeSet<u64>>>,
}

fn link_path(dir: &Path, label: u64) -> PathBuf {
    dir.join(format!("{label:020}.bin"))
}

impl Chain {
    /// Whether the next link should be a full one, given how many entries changed since
    /// the previous label.
    pub fn wants_full(&self, changed: usize) -> bool {
        self.must_be_full() || self.full_due(changed)
    }

    /// For a stage that passes a [`Merge`] to [`Self::save`]: whether it must encode a
    /// full link itself (the chain is empty, or a link it lists could not be written),
    /// as the writer thread cannot build one from the links on disk.
    pub fn must_be_full(&self) -> bool {
        let failed = self.failed.lock().expect("checkpoint chain");
        self.links.is_empty() || self.links.iter().any(|l| failed.contains(l))
    }

    /// Whether a full link is due: the changes since the last one outnumber its entries,
    /// or the chain is at its longest.
    fn full_due(&self, changed: usize) -> bool {
        self.links.len() >= MAX_LINKS || self.changed_since_full + changed > self.full_len
    }

    /// Queues this stage's part of `label`: `link` (every entry when `full`, else the
    /// changes; `entries` of them) goes to its own file, synced, before the part (`small`
    /// and the links to read); `before`, when given, runs first and must succeed. Then
    /// deletes the links no restart can need any more, and returns the newest usable label
    /// it went by (for the stage's other files).
    ///
    /// With `merge` (the stage's [`Merge`] and how many entries its full link would have
    /// now), a full link that is due while `link` holds only changes is built by the
    /// writer thread from the chain's links and `link`, and written as this label's link.
    #[allow(clippy::too_many_arguments)]
    pub fn save<D: Serialize, S: Serialize>(
        &mut self,
        label: u64,
        ckpt: &StageCheckpoint,
        small: &S,
        link: &D,
        (full, entries): (bool, usize),
        before: Option<Before>,
        merge: Option<(Merge, usize)>,
    ) -> Option<u64> {
        let dir = ckpt.chain_dir();
        let path = link_path(&dir, label);
        let bytes = match bincode::serialize(link) {
            Ok(b) => b,
            Err(e) => {
                // The caller forgets its changes once this returns: start again from a
                // full link.
                tracing::warn!(path = %path.display(), error = %e, "cannot encode a checkpoint link");
                self.links.clear();
                return None;
            }
        };
        let merging = match merge {
            Some((merge, live)) if !full && self.full_due(entries) => {
                let chain: Vec<PathBuf> = self.links.iter().map(|l| link_path(&dir, *l)).collect();
                self.links.clear();
                self.full_len = live;
                self.changed_since_full = 0;
                Some((merge, chain))
            }
            _ => None,
        };
        if full {
            self.links.clear();
            self.full_len = entries;
            self.changed_since_full = 0;
        } else if merging.is_none() {
            self.changed_since_full += entries;
        }
        self.links.push(label);
        self.files.insert(label);
        self.firsts.insert(label, self.links[0]);
        let (links, failed) = (self.links.clone(), self.failed.clone());
        ckpt.write_after(
            label,
            &Part {
                links: self.links.clone(),
                small,
            },
            Box::new(move || {
                // Any failure before the link is on disk leaves it missing: later parts
                // that list it must not be written either.
                let written = before.map_or(Ok(()), |before| before()).and_then(|()| {
                    let bytes = match merging {
                        Some((merge, chain)) => merge(&chain, &bytes)?,
                        None => bytes,
                    };
                    std::fs::create_dir_all(&dir)?;
                    crate::files::replace(&path, &bytes, true)?;
                    Ok(())
                });
                let mut failed = failed.lock().expect("checkpoint chain");
                if written.is_err() {
                    failed.insert(label);
                }
                written?;
                if let Some(l) = links.iter().find(|l| failed.contains(l)) {
                    anyhow::bail!("checkpoint link {l} it lists could not be written");
                }
                Ok(())
            }),
        );
        let usable = ckpt.spec().latest_usable();
        if let Some(usable) = usable {
            self.collect(&ckpt.chain_dir(), usable);
        }
        usable
    }

    /// Deletes the links older than the first one `usable` (the newest usable label)
    /// lists: no restart reads them.
    fn collect(&mut self, dir: &Path, usable: u64) {
        let Some(&first) = self.firsts.get(&usable) else {
            return;
        };
        self.firsts = self.firsts.split_off(&usable);
        self.failed
            .lock()
            .expect("checkpoint chain")
            .retain(|l| *l >= first);
        let keep = self.files.split_off(&first);
        for old in std::mem::replace(&mut self.files, keep) {
            let _ = std::fs::remove_file(link_path(dir, old));
        }
    }

    /// When restoring, reads this stage's part of the label: hands every link to `apply`
    /// in order and returns the small state; deletes the links the label does not list.
    /// A link or part that cannot be read stops the worker (a panic), as a part does (see
    /// [`StageCheckpoint::restored`]).
    pub fn restore<D: DeserializeOwned, S: DeserializeOwned>(
        &mut self,
        ckpt: &StageCheckpoint,
        mut apply: impl FnMut(D) -> usize,
    ) -> Option<S> {
        let label = ckpt.spec().restore?;
        let part: Part<S> = ckpt.restored()?;
        let dir = ckpt.chain_dir();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let listed = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".bin")?.parse::<u64>().ok())
                .is_some_and(|l| part.links.contains(&l));
            if !listed {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for (i, &l) in part.links.iter().enumerate() {
            let path = link_path(&dir, l);
            let f = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("reading checkpoint link {}: {e}", path.display()));
            let link: D = bincode::deserialize_from(std::io::BufReader::new(f))
                .unwrap_or_else(|e| panic!("decoding checkpoint link {}: {e}", path.display()));
            let n = apply(link);
            if i == 0 {
                self.full_len = n;
            } else {
                self.changed_since_full += n;
            }
        }
        self.files = part.links.iter().copied().collect();
        self.firsts = BTreeMap::from([(label, part.links.first().copied().unwrap_or(label))]);
        self.links = part.links;
        Some(part.small)
    }
}

/// The changes to a map since the previous label, or all of it: `(key, Some(value))` for
/// a key present, `(key, None)` for one removed.
pub type Changes<'a, K, V> = Vec<(K, Option<&'a V>)>;

/// Applies a link read back to `map`; returns its entries.
pub fn apply_to<K: std::hash::Hash + Eq, V>(
    map: &mut std::collections::HashMap<K, V>,
    link: Vec<(K, Option<V>)>,
) -> usize {
    let n = link.len();
    for (k, v) in link {
        match v {
            Some(v) => {
                map.insert(k, v);
            }
            None => {
                map.remove(&k);
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::graph::checkpoint::{CheckpointSpec, Writer, STAGES};

    fn spec(dir: &Path, restore: Option<u64>) -> Arc<CheckpointSpec> {
        Arc::new(CheckpointSpec {
            dir: dir.to_path_buf(),
            interval_ms: 10,
            restore,
            progress: Some((dir.join("progress"), "t".into())),
            workers: 1,
            writer: Arc::new(Writer::default()),
        })
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    fn links_on_disk(ckpt: &StageCheckpoint) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(ckpt.chain_dir())
            .into_iter()
            .flatten()
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".bin")?
                    .parse()
                    .ok()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Edits ten keys of `map` at `label`, removes one and adds one; returns the keys touched.
    fn edit(map: &mut HashMap<u32, String>, label: u64) -> Vec<u32> {
        let l = label as u32;
        let mut touched: Vec<u32> = (l..l + 10).map(|k| k % 120).collect();
        for k in &touched {
            map.insert(*k, format!("v{k}@{label}"));
        }
        map.remove(&(l % 97));
        touched.push(l % 97);
        touched
    }

    /// Saves `map` at `label`: the changed keys, or all of it when the chain wants a full link.
    fn save(
        chain: &mut Chain,
        ckpt: &StageCheckpoint,
        label: u64,
        map: &HashMap<u32, String>,
        touched: &[u32],
    ) -> bool {
        let full = chain.wants_full(touched.len());
        let link: Changes<u32, String> = if full {
            map.iter().map(|(k, v)| (*k, Some(v))).collect()
        } else {
            touched.iter().map(|k| (*k, map.get(k))).collect()
        };
        let n = link.len();
        chain.save(label, ckpt, &label, &link, (full, n), None, None);
        full
    }

    fn restore(dir: &Path, label: u64) -> (Chain, HashMap<u32, String>) {
        let ckpt = StageCheckpoint::new(spec(dir, Some(label)), "windows", 0);
        let mut chain = Chain::default();
        let mut map = HashMap::new();
        let small: u64 = chain
            .restore(&ckpt, |link: Vec<(u32, Option<String>)>| {
                apply_to(&mut map, link)
            })
            .expect("a part");
        assert_eq!(small, label);
        (chain, map)
    }

    #[test]
    fn a_restore_reads_the_last_full_link_and_the_changes_after_it() {
        let dir = std::env::temp_dir().join(format!("vigie-chain-{}", uuid::Uuid::new_v4()));
        let ckpt = StageCheckpoint::new(spec(&dir, None), "windows", 0);
        let mut chain = Chain::default();
        let mut map: HashMap<u32, String> = (0..100).map(|k| (k, format!("v{k}"))).collect();
        let mut at = HashMap::new();
        let mut fulls = Vec::new();
        for label in (10..=200).step_by(10) {
            let touched = edit(&mut map, label);
            if save(&mut chain, &ckpt, label, &map, &touched) {
                fulls.push(label);
            }
            at.insert(label, map.clone());
        }
        ckpt.spec().writer.flush();
        assert!(
            fulls.len() >= 2 && fulls[0] == 10,
            "full links rewritten as changes pile up: {fulls:?}"
        );
        // No label is usable (nothing committed): every link stays.
        assert_eq!(links_on_disk(&ckpt).len(), 20);
        // (Each restore deletes the links its label does not list: one per copy.)
        for label in [10, 50, 120, 200] {
            let copy = dir.with_extension(label.to_string());
            copy_dir(&dir, &copy);
            let (_, back) = restore(&copy, label);
            assert_eq!(back, at[&label], "label {label}");
            std::fs::remove_dir_all(&copy).unwrap();
        }
        // A restore deletes the links its label does not list (later ones, older ones).
        let (chain, _) = restore(&dir, 120);
        let first = *fulls.iter().rfind(|f| **f <= 120).unwrap();
        assert_eq!(
            links_on_disk(&ckpt),
            (first..=120).step_by(10).collect::<Vec<_>>()
        );
        assert_eq!(chain.links.first(), Some(&first));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_writer_thread_builds_the_full_links_from_the_chain_and_the_changes() {
        type L = Vec<(u32, Option<String>)>;
        let dir = std::env::temp_dir().join(format!("vigie-chain-{}", uuid::Uuid::new_v4()));
        let ckpt = StageCheckpoint::new(spec(&dir, None), "windows", 0);
        let mut chain = Chain::default();
        let mut map: HashMap<u32, String> = (0..100).map(|k| (k, format!("v{k}"))).collect();
        let mut at = HashMap::new();
        let (mut by_worker, mut merged) = (Vec::new(), Vec::new());
        for label in (10..=300u64).step_by(10) {
            let touched = edit(&mut map, label);
            let full = chain.must_be_full();
            let link: Changes<u32, String> = if full {
                map.iter().map(|(k, v)| (*k, Some(v))).collect()
            } else {
                touched.iter().map(|k| (*k, map.get(k))).collect()
            };
            let n = link.len();
            chain.save(
                label,
                &ckpt,
                &label,
                &link,
                (full, n),
                None,
                Some((merge::<L>, map.len())),
            );
            if full {
                by_worker.push(label);
            } else if chain.links == [label] {
                merged.push(label);
            }
            at.insert(label, map.clone());
        }
        ckpt.spec().writer.flush();
        assert_eq!(by_worker, [10], "only the first full link is the worker's");
        assert!(
            merged.len() >= 2,
            "full links merged by the writer: {merged:?}"
        );
        // A merged link alone is the whole map of its label, removals left out.
        for &label in &merged {
            let f = std::fs::File::open(link_path(&ckpt.chain_dir(), label)).unwrap();
            let link: L = bincode::deserialize_from(std::io::BufReader::new(f)).unwrap();
            assert!(link.iter().all(|(_, v)| v.is_some()));
            let mut alone = HashMap::new();
            apply_to(&mut alone, link);
            assert_eq!(alone, at[&label], "merged link {label}");
        }
        for label in [10, 50, merged[0], merged[0] + 10, 300] {
            let copy = dir.with_extension(label.to_string());
            copy_dir(&dir, &copy);
            let (chain, back) = restore(&copy, label);
            assert_eq!(back, at[&label], "label {label}");
            assert!(chain.links.len() <= MAX_LINKS);
            std::fs::remove_dir_all(&copy).unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_go_once_the_newest_usable_label_does_not_list_them() {
        let dir = std::env::temp_dir().join(format!("vigie-chain-{}", uuid::Uuid::new_v4()));
        let ckpt = StageCheckpoint::new(spec(&dir, None), "windows", 0);
        let mut chain = Chain::default();
        let mut map: HashMap<u32, String> = HashMap::new();
        let mut fulls = Vec::new();
        for label in (10..=300u64).step_by(10) {
            let k = label as u32 % 7;
            map.insert(k, format!("{label}"));
            if save(&mut chain, &ckpt, label, &map, &[k]) {
                fulls.push(label);
            }
            ckpt.spec().writer.flush();
            // The other stages' parts, and the sink's progress up to this label.
            for stage in STAGES.iter().filter(|s| **s != "windows") {
                let d = dir.join(format!("{label:020}"));
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(format!("{stage}-0.bin")), b"").unwrap();
            }
            std::fs::write(dir.join("progress"), format!("t {label}\n")).unwrap();
        }
        // One more label makes 300 the newest usable one at save time.
        map.insert(99, "x".into());
        save(&mut chain, &ckpt, 310, &map, &[99]);
        ckpt.spec().writer.flush();
        let first = *fulls.last().unwrap();
        let on_disk = links_on_disk(&ckpt);
        assert_eq!(
            on_disk.first(),
            Some(&first),
            "older links deleted: {on_disk:?} (full links {fulls:?})"
        );
        assert_eq!(on_disk.last(), Some(&310));
        let (_, back) = restore(&dir, 310);
        assert_eq!(back, map);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_not_written_keeps_the_labels_listing_it_incomplete_and_the_next_is_full() {
        let dir = std::env::temp_dir().join(format!("vigie-chain-{}", uuid::Uuid::new_v4()));
        let ckpt = StageCheckpoint::new(spec(&dir, None), "windows", 0);
        let part = |label: u64| dir.join(format!("{label:020}")).join("windows-0.bin");
        let mut chain = Chain::default();
        let mut map: HashMap<u32, String> = (0..50).map(|k| (k, "a".into())).collect();
        assert!(save(&mut chain, &ckpt, 10, &map, &[]));
        ckpt.spec().writer.flush();
        // The links' directory becomes a file: the next link cannot be written.
        std::fs::remove_dir_all(ckpt.chain_dir()).unwrap();
        std::fs::write(ckpt.chain_dir(), b"").unwrap();
        map.insert(1, "b".into());
        assert!(!save(&mut chain, &ckpt, 20, &map, &[1]));
        ckpt.spec().writer.flush();
        assert!(part(10).is_file());
        assert!(
            !part(20).is_file(),
            "a part listing a missing link is not written"
        );
        std::fs::remove_file(ckpt.chain_dir()).unwrap();
        map.insert(2, "c".into());
        assert!(
            chain.wants_full(1),
            "the chain starts again from a full link"
        );
        assert!(save(&mut chain, &ckpt, 30, &map, &[2]));
        ckpt.spec().writer.flush();
        assert!(part(30).is_file());
        // Work that must precede the link (a trends stage's file sync) fails: the same.
        map.insert(3, "d".into());
        let link: Changes<u32, String> = vec![(3, map.get(&3))];
        let failing: Before = Box::new(|| anyhow::bail!("sync failed"));
        chain.save(40, &ckpt, &40u64, &link, (false, 1), Some(failing), None);
        ckpt.spec().writer.flush();
        assert!(!part(40).is_file());
        assert!(chain.wants_full(0));
        assert!(save(&mut chain, &ckpt, 50, &map, &[]));
        ckpt.spec().writer.flush();
        let (_, back) = restore(&dir, 50);
        assert_eq!(back, map);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
