//! The write-ahead log: ingest acknowledges a batch only after it is here, fsynced.
//!
//! Each epoch the router closes is appended as one record — `len: u32 LE`, `crc32: u32 LE`,
//! then `len` bytes of bincode `(time, upserts)` — and the file is synced once per epoch
//! (group commit: every request in the epoch shares one fsync). At start-up the log is
//! read back and replayed into the dataflow, so acknowledged mentions survive a crash and
//! the dataflow's state (live mentions, trends) is rebuilt; rows re-written by the replay
//! carry the same versions and values, so ClickHouse does not change.
//!
//! The log is a directory of segments named by their first epoch's time; a segment is
//! closed once it reaches `--wal-segment-bytes`. Closed segments whose epochs are all in
//! ClickHouse are compacted: records that changed nothing (identical re-posts, deletions of
//! absent mentions) are dropped and every effective change is kept at its time, which
//! replays to the same state ([`compact_epochs`]). The compacted head's fingerprints are
//! saved beside it (`compacted.prints`), so the next compaction copies the head as it is
//! and decodes only the segments after it.
//!
//! A torn tail (a crash mid-append: short header, short payload or bad checksum in the
//! last record of the last segment) is cut off. A bad record followed by good ones is
//! corruption: start-up fails and reports its offset instead of skipping it.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::graph::records::{MentionBody, MentionKey};

/// One logged epoch.
pub type LoggedEpoch = (u64, Vec<(MentionKey, Option<MentionBody>)>);

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading, writing or syncing failed.
    #[error("write-ahead log {path}: {source}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record in the middle of the log does not match its checksum.
    #[error("write-ahead log {path}: corrupted record at byte {offset} (valid records follow it); refusing to skip it")]
    Corrupted {
        /// The log file.
        path: PathBuf,
        /// Offset of the bad record.
        offset: u64,
    },
    /// A record could not be encoded.
    #[error("write-ahead log: cannot encode an epoch: {0}")]
    Encode(String),
}

/// A closed segment.
#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    max_time: u64,
    bytes: u64,
}

/// The log, open for appending: closed segments plus the active one.
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    closed: Vec<Segment>,
    active: Option<(File, PathBuf, u64)>, // file, path, bytes
    last_time: u64,
    /// A compaction running on its own thread.
    compacting: Option<std::thread::JoinHandle<Result<Compacted, WalError>>>,
}

const HEADER: usize = 8;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, first_time: u64) -> PathBuf {
    dir.join(format!("{first_time:020}.log"))
}

fn encode(time: u64, upserts: &[(MentionKey, Option<MentionBody>)]) -> Result<Vec<u8>, WalError> {
    let payload =
        bincode::serialize(&(time, upserts)).map_err(|e| WalError::Encode(e.to_string()))?;
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(&header(&payload, crc32fast::hash(&payload))?);
    record.extend_from_slice(&payload);
    Ok(record)
}

/// A record's header: the payload's length and CRC (the payload follows it).
fn header(payload: &[u8], crc: u32) -> Result<[u8; HEADER], WalError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| WalError::Encode("epoch larger than 4 GiB".into()))?;
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc.to_le_bytes());
    Ok(h)
}

/// One upsert inside a record's payload, as byte ranges: its key, and the whole upsert
/// (the key, then the body or its absence).
#[derive(Debug, Clone, PartialEq)]
struct RawUpsert {
    key: std::ops::Range<usize>,
    whole: std::ops::Range<usize>,
    live: bool,
}

/// Reads bincode's encoding of a [`LoggedEpoch`] without decoding it (fixed-width
/// little-endian integers; strings, byte strings and sequences prefixed by a `u64`
/// length; an option by a tag byte): the time, the count, then per upsert a
/// [`MentionKey`] (two UUIDs, as 16-byte strings) and an `Option<MentionBody>`. Returns
/// the upserts' ranges, or `None` if the payload is not such an encoding. Must follow
/// `MentionBody`'s fields: the tests compare it with bincode's output.
fn raw_upserts(payload: &[u8]) -> Option<Vec<RawUpsert>> {
    struct Walk<'a>(&'a [u8], usize);
    impl Walk<'_> {
        fn skip(&mut self, n: usize) -> Option<()> {
            let end = self.1.checked_add(n).filter(|e| *e <= self.0.len())?;
            self.1 = end;
            Some(())
        }
        fn u64(&mut self) -> Option<u64> {
            let at = self.1;
            self.skip(8)?;
            Some(u64::from_le_bytes(self.0[at..at + 8].try_into().ok()?))
        }
        fn string(&mut self) -> Option<()> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.skip(n)
        }
    }
    let mut w = Walk(payload, 0);
    w.skip(8)?; // time
    let n = usize::try_from(w.u64()?).ok()?;
    // Each upsert takes at least 49 bytes, so a bad count cannot reserve much.
    let mut out = Vec::with_capacity(n.min(payload.len() / 49));
    for _ in 0..n {
        let start = w.1;
        w.string()?; // org
        w.string()?; // id
        let key = start..w.1;
        let live = match w.0.get(w.1).copied()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        w.skip(1)?;
        if live {
            w.string()?; // source
            w.skip(8)?; // created_at_us
            w.string()?; // text
            w.string()?; // author
            w.string()?; // url
            w.skip(32)?; // engagement: four u64
            for _ in 0..w.u64()? {
                w.string()?; // a keyword
            }
        }
        out.push(RawUpsert {
            key,
            whole: start..w.1,
            live,
        });
    }
    (w.1 == payload.len()).then_some(out)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl Wal {
    /// Opens (or creates) the log under `dir`, returning it with every intact epoch in
    /// time order. Segments roll over at `segment_bytes`.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, Vec<LoggedEpoch>), WalError> {
        Self::open_from(dir, segment_bytes, 0)
    }

    /// Opens the log like [`Wal::open`], returning only the epochs at or after `from` (a
    /// restart from a checkpoint): segments whose successor starts at or before `from`
    /// hold only earlier epochs and are not read.
    pub fn open_from(
        dir: &Path,
        segment_bytes: u64,
        from: u64,
    ) -> Result<(Wal, Vec<LoggedEpoch>), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        finish_compaction(dir)?;
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        // Left-overs of an interrupted compaction.
        for p in names
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        {
            std::fs::remove_file(p).map_err(io(p))?;
        }
        names.retain(|p| p.extension().is_some_and(|e| e == "log"));
        names.sort();
        let mut epochs = Vec::new();
        let mut closed = Vec::new();
        let mut last_time = 0u64;
        let count = names.len();
        let first_times: Vec<Option<u64>> = names.iter().map(|p| first_time(p)).collect();
        for (i, path) in names.into_iter().enumerate() {
            let is_last = i + 1 == count;
            if let Some(next) = first_times
                .get(i + 1)
                .copied()
                .flatten()
                .filter(|n| *n <= from)
            {
                // Every epoch here is before `next`, so before `from`.
                let bytes = std::fs::metadata(&path).map_err(io(&path))?.len();
                last_time = last_time.max(next.saturating_sub(1));
                closed.push(Segment {
                    path,
                    max_time: next.saturating_sub(1),
                    bytes,
                });
                continue;
            }
            let (segment_epochs, good_len, total) = read_all(&path)?;
            if good_len < total {
                if !is_last {
                    return Err(WalError::Corrupted {
                        path,
                        offset: good_len,
                    });
                }
                tracing::warn!(path = %path.display(), cut = total - good_len, "cutting a torn record off the log's tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path))?;
                f.set_len(good_len).map_err(io(&path))?;
                f.sync_all().map_err(io(&path))?;
            }
            // A compaction interrupted after its rename leaves inputs it already covers:
            // their epochs are not newer than what was read, and are skipped.
            let fresh: Vec<LoggedEpoch> = segment_epochs
                .into_iter()
                .filter(|(t, _)| *t > last_time)
                .collect();
            let Some(newest) = fresh.last().map(|(t, _)| *t) else {
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            };
            last_time = newest;
            epochs.extend(fresh.into_iter().filter(|(t, _)| *t >= from));
            closed.push(Segment {
                path,
                max_time: last_time,
                bytes: good_len,
            });
        }
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                segment_bytes: segment_bytes.max(1),
                closed,
                active: None,
                last_time,
                compacting: None,
            },
            epochs,
        ))
    }

    /// Appends one epoch and syncs it to disk; rolls to a new segment when full.
    pub fn append(
        &mut self,
        time: u64,
        upserts: &[(MentionKey, Option<MentionBody>)],
    ) -> Result<(), WalError> {
        let record = encode(time, upserts)?;
        if self.active.is_none() {
            let path = segment_path(&self.dir, time);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            sync_dir(&self.dir)?;
            self.active = Some((file, path, 0));
        }
        let Some((file, path, bytes)) = self.active.as_mut() else {
            unreachable!("opened above")
        };
        file.write_all(&record).map_err(io(path))?;
        file.sync_data().map_err(io(path))?;
        *bytes += record.len() as u64;
        self.last_time = time;
        if *bytes >= self.segment_bytes {
            let (_, path, bytes) = self.active.take().unwrap_or_else(|| unreachable!());
            self.closed.push(Segment {
                path,
                max_time: time,
                bytes,
            });
        }
        Ok(())
    }

    /// Bytes in the log (all segments).
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.active.as_ref().map_or(0, |a| a.2)
    }

    /// Segments on disk.
    pub fn segments(&self) -> usize {
        self.closed.len() + usize::from(self.active.is_some())
    }

    /// Whether compacting below `committed` is worth it: at least two closed segments are
    /// below it and the ones after the first hold as much as the first (so each byte is
    /// rewritten a bounded number of times).
    pub fn compaction_due(&self, committed: u64) -> bool {
        let below: Vec<&Segment> = self
            .closed
            .iter()
            .take_while(|s| s.max_time < committed)
            .collect();
        below.len() >= 2
            && below[1..].iter().map(|s| s.bytes).sum::<u64>()
                >= below[0].bytes.max(self.segment_bytes)
    }

    /// Compaction of the closed segments whose epochs are all below `committed`
    /// (everything below it is in ClickHouse), run here: drops the records that changed
    /// nothing and keeps every effective change at its time ([`Compactor`]), so replaying
    /// the compacted log rebuilds the same state. Returns the bytes freed.
    pub fn compact(&mut self, committed: u64) -> Result<u64, WalError> {
        self.wait_compaction()?;
        match self.compaction_job(committed) {
            Some(job) => {
                let done = job.run()?;
                Ok(self.finish(done))
            }
            None => Ok(0),
        }
    }

    /// The same compaction on a thread of its own, so appends (and acknowledgements) go on
    /// meanwhile: starts one when none runs, and installs a finished one. Returns the
    /// bytes a finished compaction freed (0 otherwise).
    pub fn compact_in_background(&mut self, committed: u64) -> Result<u64, WalError> {
        if let Some(job) = &self.compacting {
            if !job.is_finished() {
                return Ok(0);
            }
            return self.wait_compaction();
        }
        if let Some(job) = self.compaction_job(committed) {
            let handle = std::thread::Builder::new()
                .name("wal-compaction".into())
                .spawn(move || {
                    crate::priority::lower_this_thread();
                    job.run()
                })
                .map_err(io(&self.dir))?;
            self.compacting = Some(handle);
        }
        Ok(0)
    }

    /// Whether a background compaction is running or waits to be installed.
    pub fn compacting(&self) -> bool {
        self.compacting.is_some()
    }

    /// Waits for a background compaction and installs it; returns the bytes it freed.
    fn wait_compaction(&mut self) -> Result<u64, WalError> {
        let Some(handle) = self.compacting.take() else {
            return Ok(0);
        };
        let done = handle.join().map_err(|_| WalError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other("the compaction thread panicked"),
        })??;
        Ok(self.finish(done))
    }

    fn compaction_job(&self, committed: u64) -> Option<CompactionJob> {
        let n = self
            .closed
            .iter()
            .take_while(|s| s.max_time < committed)
            .count();
        (n >= 2).then(|| CompactionJob {
            dir: self.dir.clone(),
            inputs: self.closed[..n].to_vec(),
        })
    }

    /// Installs a compaction's result in place of its inputs (always the first closed
    /// segments: appends only add segments after them).
    fn finish(&mut self, done: Compacted) -> u64 {
        let n = done.inputs;
        self.closed.splice(..n, std::iter::once(done.segment));
        done.before.saturating_sub(self.closed[0].bytes)
    }
}

/// A compaction's inputs (closed segments, oldest first).
struct CompactionJob {
    dir: PathBuf,
    inputs: Vec<Segment>,
}

/// A finished compaction: how many inputs it replaced, by what, and their size.
struct Compacted {
    inputs: usize,
    segment: Segment,
    before: u64,
}

impl CompactionJob {
    /// Streams the inputs record by record through a [`Compactor`] into a temporary file,
    /// which then replaces the first input by an atomic rename (memory: the compactor's
    /// fingerprints, not the log). A marker listing the other inputs is synced before the
    /// rename: a crash before they are all removed is finished at the next open.
    fn run(self) -> Result<Compacted, WalError> {
        let inputs = self.inputs;
        let n = inputs.len();
        let before: u64 = inputs.iter().map(|s| s.bytes).sum();
        let target = inputs[0].path.clone();
        let tmp = target.with_extension("log.tmp");
        let mut written = 0u64;
        let prints = self.dir.join(PRINTS);
        {
            let mut out = File::create(&tmp).map_err(io(&tmp))?;
            // The head is the previous compaction's output: with its fingerprints saved
            // beside it, it is copied as it is instead of decoded again.
            let head = &inputs[0].path;
            let (mut compactor, fresh) = match Compactor::load(&prints, content_id(head)?) {
                Some(c) => {
                    let mut src = File::open(head).map_err(io(head))?;
                    written += std::io::copy(&mut src, &mut out).map_err(io(&tmp))?;
                    (c, 1)
                }
                None => (Compactor::default(), 0),
            };
            let mut f = std::io::BufWriter::new(out);
            for seg in &inputs[fresh..] {
                let mut reader = Records::open(&seg.path)?;
                // Records are walked as bytes, not decoded: a record whose upserts all
                // change something is copied as it is, others are rebuilt from the
                // kept upserts' bytes.
                while let Some(upserts) = reader.next_record(raw_upserts)? {
                    let payload = reader.payload.as_slice();
                    let kept: Vec<&RawUpsert> = upserts
                        .iter()
                        .filter(|u| compactor.keep(payload, u))
                        .collect();
                    if kept.is_empty() {
                        continue;
                    }
                    let rebuilt;
                    let (payload, crc) = if kept.len() == upserts.len() {
                        (payload, reader.crc)
                    } else {
                        let mut p = Vec::with_capacity(payload.len());
                        p.extend_from_slice(&payload[..8]); // the epoch's time
                        p.extend_from_slice(&(kept.len() as u64).to_le_bytes());
                        for u in &kept {
                            p.extend_from_slice(&payload[u.whole.clone()]);
                        }
                        let crc = crc32fast::hash(&p);
                        rebuilt = p;
                        (rebuilt.as_slice(), crc)
                    };
                    f.write_all(&header(payload, crc)?)
                        .and_then(|()| f.write_all(payload))
                        .map_err(io(&tmp))?;
                    written += (HEADER + payload.len()) as u64;
                }
                if reader.offset < reader.total {
                    return Err(WalError::Corrupted {
                        path: seg.path.clone(),
                        offset: reader.offset,
                    });
                }
            }
            let f = f.into_inner().map_err(|e| WalError::Io {
                path: tmp.clone(),
                source: e.into_error(),
            })?;
            f.sync_all().map_err(io(&tmp))?;
            // Describes the output; until the output is renamed into place it matches no
            // segment and is ignored.
            compactor.save(&prints, content_id(&tmp)?)?;
        }
        let marker = self.dir.join(COMPACTING);
        let names: Vec<String> = inputs[1..]
            .iter()
            .filter_map(|s| s.path.file_name()?.to_str().map(String::from))
            .collect();
        std::fs::write(&marker, names.join("\n")).map_err(io(&marker))?;
        File::open(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io(&marker))?;
        sync_dir(&self.dir)?;
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&self.dir)?;
        for seg in &inputs[1..] {
            std::fs::remove_file(&seg.path).map_err(io(&seg.path))?;
        }
        std::fs::remove_file(&marker).map_err(io(&marker))?;
        sync_dir(&self.dir)?;
        tracing::info!(
            segments = n,
            before,
            after = written,
            "compacted the write-ahead log"
        );
        Ok(Compacted {
            inputs: n,
            segment: Segment {
                path: target,
                max_time: inputs[n - 1].max_time,
                bytes: written,
            },
            before,
        })
    }
}

/// Compaction of consecutive epochs from the start of the log: drops every record that
/// changed nothing when it was applied — a re-post of the body the mention already had, a
/// deletion of a mention that was not there — and keeps every other record at its time.
///
/// Superseded versions and deleted mentions are kept on purpose: the event-time stages
/// decide lateness, story velocity and window counts from the order in which versions
/// arrived, so only the same sequence of effective changes at the same times rebuilds the
/// state that was written to ClickHouse (a version dropped here could have counted in a
/// story that froze before it was replaced). The log therefore holds the effective history,
/// without the at-least-once repeats that scrapers and retries add.
pub fn compact_epochs(epochs: Vec<LoggedEpoch>) -> Vec<LoggedEpoch> {
    let mut compactor = Compactor::default();
    epochs
        .into_iter()
        .filter_map(|(time, upserts)| {
            let kept = compactor.epoch(upserts);
            (!kept.is_empty()).then_some((time, kept))
        })
        .collect()
}

/// The streaming form of [`compact_epochs`]: fed upserts in log order, keeps the ones
/// that change something. It remembers each live mention as 24 bytes — a 64-bit hash of
/// its key's encoding and a 128-bit fingerprint of its whole encoding, key and body (XXH3
/// under a seed drawn per compacted log) — not the body itself. Only dropping must be
/// exact, and an upsert is dropped only when its fingerprint equals the one remembered
/// under its key's hash: two keys sharing a hash make upserts kept (replaying one that
/// changes nothing is harmless), and a wrong drop needs two encodings of the same key
/// with equal 128-bit fingerprints. XXH3 is fast, not cryptographic; the seed stays in
/// the log's directory.
///
/// The compacted head's fingerprints are a vector sorted by key hash, as saved beside it:
/// 24 bytes per live mention, read straight from the file. They were a hash map: 33 bytes
/// per bucket with its padding and slack, ~550 MB at 10 M mentions by that count, more
/// while a rehash doubled it. What the segments being compacted change is in hash maps of
/// 16-byte fingerprints, one per [`PARTS`]th of the hash range: each grows on its own (a
/// rehash copies a 16th of them, not all at once), and `save` sorts and writes them one at
/// a time, the range's order being the file's (one sorted copy of all of them, beside the
/// maps, would be ~120 MB more at the peak of a compaction of 5 M new mentions by that count).
#[derive(Debug)]
pub struct Compactor {
    seed: u64,
    /// The head's fingerprints, sorted by key hash, each hash once.
    base: Vec<(u64, Print)>,
    /// What the upserts since the head changed, by key hash ([`DELETED`]: deleted), in
    /// [`PARTS`] maps by the hash's top four bits. A compaction with no saved head (the first,
    /// or after an upgrade) puts every key here.
    changes: Vec<std::collections::HashMap<u64, Print, Prehashed>>,
    /// Live mentions: the head's with the changes applied.
    live: u64,
}

/// The changes' maps, each for the key hashes of one value of their top four bits. (256
/// cost 40 % more time in the `ingest` bench's `log/compaction`, 20,000 upserts: many
/// small maps growing one by one.)
const PARTS: usize = 16;

fn part(id: u64) -> usize {
    (id >> 60) as usize
}

/// A 128-bit fingerprint as two words (8-byte aligned: a `u128` would pad each entry to 32
/// bytes).
type Print = [u64; 2];

/// A deleted mention among the changes (an `Option<Print>` would take 24 bytes, not 16). A
/// body whose fingerprint is this value is remembered as [`ZERO_PRINT`] instead.
const DELETED: Print = [0, 0];
const ZERO_PRINT: Print = [0, 1];

/// Half the width of the slice of the sorted fingerprints searched first: key hashes are
/// uniform, so a hash's rank is within a few √n of `hash / 2^64 × n` (√n ≈ 3,200 at 10 M).
const NEAR: usize = 1 << 14;

impl Default for Compactor {
    fn default() -> Self {
        use std::hash::BuildHasher;
        Compactor {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u8),
            base: Vec::new(),
            changes: empty_changes(),
            live: 0,
        }
    }
}

fn empty_changes() -> Vec<std::collections::HashMap<u64, Print, Prehashed>> {
    (0..PARTS).map(|_| Default::default()).collect()
}

/// The compactor's maps are keyed by seeded hashes already: they index them after one
/// multiplication, not hashed again. (Not as they are: all of a map's keys share their top
/// bits, and the map takes its tags from the top bits.)
#[derive(Debug, Clone, Copy, Default)]
struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

/// See [`Prehashed`]: only `u64` keys.
#[derive(Debug, Default)]
struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used by `u64` keys; kept correct for any other.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The fingerprints of the compacted head of the log ([`Compactor::save`]).
const PRINTS: &str = "compacted.prints";
/// Version 3: XXH3 of the encodings, sorted by key hash (earlier versions — 1, SipHash of
/// the decoded values; 2, the same entries unsorted — are not read: the head is decoded
/// again, once).
const PRINTS_MAGIC: &[u8; 8] = b"VIGIEFP3";
/// Bytes at the end of a segment that identify its content, with its length.
const TAIL: u64 = 4096;

/// What identifies a segment's content for its saved fingerprints: its length and a CRC
/// of its last 4 KiB (a compaction's output ends with its last records, which no other
/// file of the log has).
fn content_id(path: &Path) -> Result<(u64, u32), WalError> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    let from = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut tail = Vec::with_capacity((len - from) as usize);
    f.read_to_end(&mut tail).map_err(io(path))?;
    Ok((len, crc32fast::hash(&tail)))
}

impl Compactor {
    /// The upserts of the next epoch that change something.
    pub fn epoch(
        &mut self,
        upserts: Vec<(MentionKey, Option<MentionBody>)>,
    ) -> Vec<(MentionKey, Option<MentionBody>)> {
        upserts
            .into_iter()
            .filter(|upsert| {
                // The same bytes as in a logged record, the key's first; should bincode
                // ever fail on them, the upsert is kept (keeping is always safe, dropping
                // must be exact).
                let (Ok(whole), Ok(key_len)) = (
                    bincode::serialize(upsert),
                    bincode::serialized_size(&upsert.0),
                ) else {
                    return true;
                };
                let raw = RawUpsert {
                    key: 0..key_len as usize,
                    whole: 0..whole.len(),
                    live: upsert.1.is_some(),
                };
                self.keep(&whole, &raw)
            })
            .collect()
    }

    /// Whether the upsert at `u` in `payload` changes something; remembers its effect.
    fn keep(&mut self, payload: &[u8], u: &RawUpsert) -> bool {
        use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};
        let id = xxh3_64_with_seed(&payload[u.key.clone()], self.seed);
        let before = self.get(id);
        let after = u.live.then(|| {
            let print = xxh3_128_with_seed(&payload[u.whole.clone()], self.seed);
            match [print as u64, (print >> 64) as u64] {
                DELETED => ZERO_PRINT,
                print => print,
            }
        });
        if before == after {
            return false;
        }
        self.record(id, before.is_some(), after);
        true
    }

    /// Remembers `after` under key hash `id`, whose mention was live or not before.
    fn record(&mut self, id: u64, was_live: bool, after: Option<Print>) {
        match (was_live, after.is_some()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        self.changes[part(id)].insert(id, after.unwrap_or(DELETED));
    }

    /// The fingerprint remembered under key hash `id`.
    fn get(&self, id: u64) -> Option<Print> {
        match self.changes[part(id)].get(&id) {
            Some(&DELETED) => None,
            Some(&print) => Some(print),
            None => self.in_base(id),
        }
    }

    /// The head's fingerprint under key hash `id`: searched near where a uniform hash
    /// ranks, then everywhere if it is not in that slice's range.
    fn in_base(&self, id: u64) -> Option<Print> {
        let n = self.base.len();
        if n == 0 {
            return None;
        }
        let guess = ((u128::from(id) * n as u128) >> 64) as usize;
        let mut lo = guess.saturating_sub(NEAR);
        let mut hi = (guess + NEAR).min(n);
        if self.base[lo].0 > id {
            lo = 0;
        }
        if self.base[hi - 1].0 < id {
            hi = n;
        }
        let near = &self.base[lo..hi];
        near.binary_search_by_key(&id, |e| e.0)
            .ok()
            .map(|i| near[i].1)
    }

    /// Saves the fingerprints as those of the segment with content `id`: magic, length,
    /// tail CRC, seed, count, 24-byte entries sorted by key hash, then a CRC of everything
    /// before it. Streamed to a new file and renamed; not synced — a torn or stale file
    /// fails its checks and the next compaction decodes the head instead.
    fn save(self, path: &Path, id: (u64, u32)) -> Result<(), WalError> {
        let Compactor {
            seed,
            base,
            changes,
            live,
        } = self;
        let new = path.with_extension("prints.new");
        let mut f = std::io::BufWriter::new(File::create(&new).map_err(io(&new))?);
        let mut crc = crc32fast::Hasher::new();
        let mut put = |bytes: &[u8]| {
            crc.update(bytes);
            f.write_all(bytes)
        };
        put(PRINTS_MAGIC).map_err(io(&new))?;
        put(&id.0.to_le_bytes()).map_err(io(&new))?;
        put(&id.1.to_le_bytes()).map_err(io(&new))?;
        put(&seed.to_le_bytes()).map_err(io(&new))?;
        put(&live.to_le_bytes()).map_err(io(&new))?;
        // A part's map is sorted, merged with the head's entries of its range and freed
        // before the next; the parts' ranges follow each other.
        let mut written = 0u64;
        let mut rest = base.as_slice();
        for (p, map) in changes.into_iter().enumerate() {
            let mut sorted: Vec<(u64, Print)> = map.into_iter().collect();
            sorted.sort_unstable_by_key(|c| c.0);
            let split = rest.partition_point(|e| part(e.0) <= p);
            let (range, after) = rest.split_at(split);
            rest = after;
            for (key, [low, high]) in merged(range, &sorted) {
                put(&key.to_le_bytes()).map_err(io(&new))?;
                put(&low.to_le_bytes()).map_err(io(&new))?;
                put(&high.to_le_bytes()).map_err(io(&new))?;
                written += 1;
            }
        }
        // The count in the header is kept as the changes came; a mismatch is a bug, and
        // `load` would refuse the file for it (its length).
        debug_assert_eq!(written, live, "live count and saved fingerprints differ");
        f.write_all(&crc.finalize().to_le_bytes())
            .and_then(|()| f.flush())
            .map_err(io(&new))?;
        drop(f);
        std::fs::rename(&new, path).map_err(io(path))
    }

    /// The fingerprints saved for the segment with content `id`, if they are intact, sorted
    /// and were saved for it. Streamed into a vector of their size.
    fn load(path: &Path, id: (u64, u32)) -> Option<Compactor> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut crc = crc32fast::Hasher::new();
        let mut take = |buf: &mut [u8]| -> Option<()> {
            r.read_exact(buf).ok()?;
            crc.update(buf);
            Some(())
        };
        let mut head = [0u8; 36];
        take(&mut head)?;
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
        let (seed, count) = (u64_at(20), u64_at(28));
        let fits = &head[..8] == PRINTS_MAGIC
            && u64_at(8) == id.0
            && u32::from_le_bytes(head[16..20].try_into().expect("4 bytes")) == id.1
            && count.checked_mul(24).and_then(|n| n.checked_add(40)) == Some(len);
        if !fits {
            return None;
        }
        let mut base = Vec::with_capacity(usize::try_from(count).ok()?);
        let mut entry = [0u8; 24];
        for _ in 0..count {
            take(&mut entry)?;
            let word = |i: usize| u64::from_le_bytes(entry[i..i + 8].try_into().expect("8 bytes"));
            let key = word(0);
            if base.last().is_some_and(|&(last, _)| last >= key) {
                return None;
            }
            base.push((key, [word(8), word(16)]));
        }
        let mut tail = [0u8; 4];
        r.read_exact(&mut tail).ok()?;
        (crc.finalize().to_le_bytes() == tail).then_some(Compactor {
            seed,
            live: base.len() as u64,
            base,
            changes: empty_changes(),
        })
    }
}

/// The fingerprints of a head (`base`) with sorted `changes` applied, sorted by key hash.
fn merged<'a>(
    base: &'a [(u64, Print)],
    changes: &'a [(u64, Print)],
) -> impl Iterator<Item = (u64, Print)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || loop {
        match (base.get(i).copied(), changes.get(j).copied()) {
            (None, None) => return None,
            (Some(b), Some((k, _))) if b.0 < k => {
                i += 1;
                return Some(b);
            }
            (Some(b), None) => {
                i += 1;
                return Some(b);
            }
            (b, Some((k, change))) => {
                // A change replaces (or deletes) the head's entry of the same hash.
                if b.is_some_and(|b| b.0 == k) {
                    i += 1;
                }
                j += 1;
                if change != DELETED {
                    return Some((k, change));
                }
            }
        }
    })
}

/// Marker of a compaction between its rename and the removal of its other inputs.
const COMPACTING: &str = "compacting";

/// The first epoch's time of a segment, from its name.
fn first_time(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Finishes or forgets an interrupted compaction: when its result was not renamed into
/// place (the temporary file is still there) its inputs are intact and the marker is
/// dropped; otherwise the inputs the marker lists are removed.
fn finish_compaction(dir: &Path) -> Result<(), WalError> {
    let marker = dir.join(COMPACTING);
    let Ok(list) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let renamed = !std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "tmp"));
    if renamed {
        for name in list.lines().filter(|l| !l.is_empty()) {
            let p = dir.join(name);
            if p.exists() {
                std::fs::remove_file(&p).map_err(io(&p))?;
            }
        }
    }
    std::fs::remove_file(&marker).map_err(io(&marker))?;
    sync_dir(dir)
}

/// A segment read record by record.
struct Records {
    path: PathBuf,
    reader: BufReader<File>,
    /// End of the last good record.
    offset: u64,
    total: u64,
    /// The last good record's payload and CRC.
    payload: Vec<u8>,
    crc: u32,
}

impl Records {
    fn open(path: &Path) -> Result<Records, WalError> {
        let file = File::open(path).map_err(io(path))?;
        let total = file.metadata().map_err(io(path))?.len();
        Ok(Records {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            offset: 0,
            total,
            payload: Vec::new(),
            crc: 0,
        })
    }

    /// The next intact epoch; `None` at the end or at a torn tail (then `offset < total`).
    /// A bad record followed by more bytes is [`WalError::Corrupted`].
    fn next_epoch(&mut self) -> Result<Option<LoggedEpoch>, WalError> {
        self.next_record(|payload| bincode::deserialize::<LoggedEpoch>(payload).ok())
    }

    /// Reads the next record into `payload` and `crc`; it is intact when its checksum
    /// matches and `read` makes something of its payload, which is returned. `None` at
    /// the end or at a torn tail; a bad record followed by more bytes is corruption.
    fn next_record<T>(
        &mut self,
        read: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Result<Option<T>, WalError> {
        let path = &self.path;
        let mut header = [0u8; HEADER];
        match read_exact_or_eof(&mut self.reader, &mut header).map_err(io(path))? {
            n if n < HEADER => return Ok(None), // end, or a torn header
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if self.offset + HEADER as u64 + len > self.total {
            return Ok(None); // torn payload
        }
        self.payload.clear();
        self.payload.resize(len as usize, 0);
        self.reader
            .read_exact(&mut self.payload)
            .map_err(io(path))?;
        self.crc = crc;
        let end = self.offset + HEADER as u64 + len;
        let decoded = (crc32fast::hash(&self.payload) == crc)
            .then(|| read(&self.payload))
            .flatten();
        match decoded {
            Some(epoch) => {
                self.offset = end;
                Ok(Some(epoch))
            }
            // The last record may be torn; anything before the end is corruption.
            None if end == self.total => Ok(None),
            None => Err(WalError::Corrupted {
                path: path.clone(),
                offset: self.offset,
            }),
        }
    }
}

/// Reads every intact record; returns them, the length of the intact prefix and the
/// file's length. A bad record followed by good ones is [`WalError::Corrupted`].
fn read_all(path: &Path) -> Result<(Vec<LoggedEpoch>, u64, u64), WalError> {
    let mut records = Records::open(path)?;
    let mut epochs = Vec::new();
    while let Some(epoch) = records.next_epoch()? {
        epochs.push(epoch);
    }
    Ok((epochs, records.offset, records.total))
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::records::fixtures::{body, key};
    use uuid::Uuid;

    fn epoch(i: u128) -> Vec<(MentionKey, Option<MentionBody>)> {
        vec![
            (key(i), Some(body(&format!("mention {i}")))),
            (key(i + 1000), None),
        ]
    }

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("vigie-wal-{}", Uuid::new_v4().simple()))
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        assert_eq!(logs.len(), 1, "{logs:?}");
        logs.remove(0)
    }

    /// The state a sequence of epochs leaves: each key's last body.
    fn state(epochs: &[LoggedEpoch]) -> std::collections::BTreeMap<MentionKey, MentionBody> {
        let mut m = std::collections::BTreeMap::new();
        for (_, ups) in epochs {
            for (k, b) in ups {
                match b {
                    Some(b) => m.insert(*k, b.clone()),
                    None => m.remove(k),
                };
            }
        }
        m
    }

    /// Upserts with every field varied: empty and multi-byte strings, keywords or none,
    /// large numbers, deletions.
    fn varied(seed: u64, n: usize) -> Vec<(MentionKey, Option<MentionBody>)> {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next = move || rng.random::<u64>();
        let long = "long text ".repeat(40);
        let words = ["", "a", "été 🚀", "https://e.com/x?y=1", long.as_str()];
        (0..n)
            .map(|_| {
                let k = MentionKey {
                    org: Uuid::from_u128(u128::from(next())),
                    id: Uuid::from_u128(u128::from(next()) << 64 | u128::from(next())),
                };
                if next() % 5 == 0 {
                    return (k, None);
                }
                let pick = |r: u64| words[(r % words.len() as u64) as usize];
                let mut b = body(pick(next()));
                b.author = pick(next()).into();
                b.url = pick(next()).into();
                b.source = Uuid::from_u128(u128::from(next()));
                b.created_at_us = next() as i64;
                b.keywords = (0..next() % 4).map(|_| pick(next()).to_string()).collect();
                b.engagement = crate::domain::Engagement {
                    likes: next(),
                    shares: next() % 10,
                    replies: 0,
                    author_followers: u64::MAX,
                };
                (k, Some(b))
            })
            .collect()
    }

    #[test]
    fn raw_upserts_finds_what_bincode_wrote() {
        for seed in 1..50u64 {
            let ups = varied(seed, (seed % 7) as usize * 3);
            let payload = bincode::serialize(&(seed, &ups)).unwrap();
            let raw = raw_upserts(&payload).expect("a logged epoch's encoding");
            assert_eq!(raw.len(), ups.len());
            for (r, u) in raw.iter().zip(&ups) {
                assert_eq!(payload[r.whole.clone()], bincode::serialize(u).unwrap()[..]);
                assert_eq!(
                    payload[r.key.clone()],
                    bincode::serialize(&u.0).unwrap()[..]
                );
                assert_eq!(r.live, u.1.is_some());
            }
            // Anything cut short or followed by more bytes is not an epoch.
            if !ups.is_empty() {
                assert_eq!(raw_upserts(&payload[..payload.len() - 1]), None);
            }
            let mut longer = payload.clone();
            longer.push(0);
            assert_eq!(raw_upserts(&longer), None);
        }
    }

    #[test]
    fn a_compacted_log_replays_what_compact_epochs_keeps() {
        // Epochs that re-post, change, delete and re-create the same mentions.
        let pool = varied(7, 40);
        let epochs: Vec<LoggedEpoch> = (1..=60u64)
            .map(|t| {
                let ups = (0..12)
                    .map(|i| pool[((t * 7 + i * 13) % pool.len() as u64) as usize].clone())
                    .collect();
                (t, ups)
            })
            .collect();
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 2000).unwrap();
        for (t, ups) in &epochs {
            wal.append(*t, ups).unwrap();
        }
        wal.append(61, &[]).unwrap();
        assert!(wal.compact(61).unwrap() > 0, "the repeats were dropped");
        drop(wal);
        let (_, mut back) = Wal::open(&dir, 2000).unwrap();
        assert_eq!(back.pop(), Some((61, vec![])), "the active segment's epoch");
        let expected = compact_epochs(epochs.clone());
        assert!(expected.iter().map(|e| e.1.len()).sum::<usize>() < 60 * 12);
        assert!(back == expected, "the compacted log differs");
        assert_eq!(state(&back), state(&epochs));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn epochs_come_back_in_order_across_segments_after_reopening() {
        let dir = tmp();
        let (mut wal, old) = Wal::open(&dir, 300).unwrap();
        assert!(old.is_empty());
        for i in 0..10 {
            wal.append(100 + i as u64, &epoch(i)).unwrap();
        }
        assert!(
            wal.segments() > 2,
            "small segments roll over: {}",
            wal.segments()
        );
        drop(wal);
        let (_, back) = Wal::open(&dir, 300).unwrap();
        assert_eq!(back.len(), 10);
        assert_eq!(back[3], (103, epoch(3)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_kept() {
        for cut_back in [1u64, 20, 60] {
            let dir = tmp();
            let (mut wal, _) = Wal::open(&dir, u64::MAX).unwrap();
            wal.append(1, &epoch(1)).unwrap();
            wal.append(2, &epoch(2)).unwrap();
            let full = wal.bytes();
            drop(wal);
            let f = OpenOptions::new()
                .write(true)
                .open(only_segment(&dir))
                .unwrap();
            f.set_len(full - cut_back).unwrap();
            let (mut wal, back) = Wal::open(&dir, u64::MAX).unwrap();
            assert_eq!(back, vec![(1, epoch(1))], "cut {cut_back} bytes");
            wal.append(2, &epoch(2)).unwrap();
            drop(wal);
            let (_, back) = Wal::open(&dir, u64::MAX).unwrap();
            assert_eq!(back, vec![(1, epoch(1)), (2, epoch(2))]);
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_corrupted_record_in_the_middle_is_reported() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, u64::MAX).unwrap();
        wal.append(1, &epoch(1)).unwrap();
        wal.append(2, &epoch(2)).unwrap();
        drop(wal);
        let path = only_segment(&dir);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = Wal::open(&dir, u64::MAX)
            .err()
            .expect("corruption must be reported");
        assert!(
            matches!(err, WalError::Corrupted { offset: 0, .. }),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn compaction_drops_what_changed_nothing_and_keeps_every_change_at_its_time() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 200).unwrap();
        let mut t = 10;
        // Five mentions, then nineteen rounds of at-least-once repeats: the same bodies again
        // and a deletion of a mention that never existed.
        for round in 0..20u128 {
            let mut ups: Vec<_> = (0..5u128)
                .map(|i| (key(i), Some(body(&format!("v0 of {i}")))))
                .collect();
            if round > 0 {
                ups.push((key(99), None));
            }
            wal.append(t, &ups).unwrap();
            t += 1;
        }
        // Then one real edit and one real deletion.
        wal.append(t, &[(key(0), Some(body("v1 of 0"))), (key(1), None)])
            .unwrap();
        drop(wal);
        let (mut wal, all) = Wal::open(&dir, 200).unwrap();
        let before = wal.bytes();
        let freed = wal.compact(u64::MAX).unwrap();
        assert!(
            freed > 0 && wal.bytes() < before / 4,
            "{} of {before}",
            wal.bytes()
        );
        drop(wal);
        let (_, compacted) = Wal::open(&dir, 200).unwrap();
        assert_eq!(state(&compacted), state(&all));
        // The five first posts at their first time, then the edit and the deletion.
        assert_eq!(compacted.len(), 2, "{compacted:?}");
        assert_eq!((compacted[0].0, compacted[0].1.len()), (10, 5));
        assert_eq!(
            compacted[1],
            (t, vec![(key(0), Some(body("v1 of 0"))), (key(1), None)])
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_interrupted_compaction_replays_the_same_state() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 100).unwrap();
        for t in 1..=30u64 {
            wal.append(
                t,
                &[(key(u128::from(t % 4)), Some(body(&format!("at {t}"))))],
            )
            .unwrap();
        }
        drop(wal);
        let (_, all) = Wal::open(&dir, 100).unwrap();
        // Simulate a crash after the rename but before the other inputs were removed:
        // compact a copy, then put the inputs back beside the result.
        let copy = tmp();
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
        let (mut wal, _) = Wal::open(&dir, 100).unwrap();
        wal.compact(u64::MAX).unwrap();
        drop(wal);
        for e in std::fs::read_dir(&copy).unwrap() {
            let p = e.unwrap().path();
            let target = dir.join(p.file_name().unwrap());
            if !target.exists() {
                std::fs::copy(&p, target).unwrap();
            }
        }
        let (_, back) = Wal::open(&dir, 100).unwrap();
        assert_eq!(state(&back), state(&all));
        assert!(back.windows(2).all(|w| w[0].0 < w[1].0));
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::remove_dir_all(copy).unwrap();
    }

    #[test]
    fn open_from_reads_only_the_segments_a_checkpoint_still_needs() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 1).unwrap(); // one epoch per segment
        for t in 1..=20u64 {
            wal.append(t * 10, &epoch(t as u128)).unwrap();
        }
        drop(wal);
        // A segment no longer needed is not even opened: make one unreadable as proof.
        let third = segment_path(&dir, 30);
        std::fs::write(&third, b"garbage that is not a record").unwrap();
        let (mut wal, tail) = Wal::open_from(&dir, 1, 115).unwrap();
        let times: Vec<u64> = tail.iter().map(|e| e.0).collect();
        assert_eq!(times, (12..=20).map(|t| t * 10).collect::<Vec<_>>());
        wal.append(210, &epoch(21)).unwrap();
        drop(wal);
        // Reading from the start does open it (and reports the damage).
        assert!(matches!(
            Wal::open(&dir, 1),
            Err(WalError::Corrupted { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_compaction_interrupted_after_its_rename_is_finished_at_open() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 1).unwrap();
        for t in 1..=4u64 {
            wal.append(t, &epoch(t as u128)).unwrap();
        }
        drop(wal);
        let (mut wal, all) = Wal::open(&dir, 1).unwrap();
        let second = segment_path(&dir, 2);
        let copy = std::fs::read(&second).unwrap();
        wal.compact(4).unwrap(); // merges the segments of times 1, 2 and 3
        drop(wal);
        let (_, compacted) = Wal::open(&dir, 1).unwrap();
        // As if the process died before removing the second input.
        std::fs::write(&second, &copy).unwrap();
        std::fs::write(dir.join(COMPACTING), "00000000000000000002.log\n").unwrap();
        let (_, back) = Wal::open_from(&dir, 1, 3).unwrap();
        assert!(!second.exists(), "the leftover input is removed");
        assert!(!dir.join(COMPACTING).exists());
        let from_3: Vec<LoggedEpoch> = compacted.into_iter().filter(|e| e.0 >= 3).collect();
        assert_eq!(back, from_3);
        // Before the rename (the result still a temporary file), the inputs are kept.
        std::fs::write(dir.join("00000000000000000001.log.tmp"), b"partial").unwrap();
        std::fs::write(dir.join(COMPACTING), "00000000000000000004.log\n").unwrap();
        let (_, back) = Wal::open(&dir, 1).unwrap();
        assert_eq!(state(&back), state(&all));
        assert!(segment_path(&dir, 4).exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Epoch `t` of a log that re-posts the same five mentions, whose bodies change every
    /// 10 epochs.
    fn repeats(t: u64) -> Vec<(MentionKey, Option<MentionBody>)> {
        (0..5u128)
            .map(|i| (key(i), Some(body(&format!("v{} of {i}", t / 10)))))
            .collect()
    }

    #[test]
    fn a_background_compaction_lets_appends_go_on_and_keeps_every_change() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 300).unwrap();
        // Repeats of the same five bodies, then appends while the compaction runs.
        for t in 1..=40u64 {
            wal.append(t, &repeats(t)).unwrap();
        }
        let before = wal.bytes();
        wal.compact_in_background(41).unwrap();
        assert!(wal.compacting(), "a compaction started");
        let mut t = 41;
        while wal.compacting() {
            wal.append(t, &epoch(t as u128)).unwrap();
            t += 1;
            wal.compact_in_background(41).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(wal.bytes() < before + (t - 41) * 400, "space was freed");
        drop(wal);
        let (_, back) = Wal::open(&dir, 300).unwrap();
        let mut all: Vec<LoggedEpoch> = (1..=40u64).map(|t| (t, repeats(t))).collect();
        all.extend((41..t).map(|t| (t, epoch(t as u128))));
        assert_eq!(state(&back), state(&all));
        // Only the epochs where a body changed are left of the first 40.
        let kept: Vec<u64> = back.iter().map(|e| e.0).filter(|t| *t <= 40).collect();
        assert_eq!(kept, vec![1, 10, 20, 30, 40]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// The log after a second compaction of `dir` (its first one done), which appends
    /// re-posts of the head's bodies, a change and a new mention.
    fn second_compaction(dir: &Path) -> Vec<LoggedEpoch> {
        let (mut wal, _) = Wal::open(dir, 300).unwrap();
        for t in 41..=60u64 {
            let mut ups: Vec<_> = (0..5u128)
                .map(|i| (key(i), Some(body(&format!("v4 of {i}")))))
                .collect();
            if t == 50 {
                ups[0].1 = Some(body("changed"));
                ups.push((key(9), Some(body("new"))));
            }
            wal.append(t, &ups).unwrap();
        }
        wal.append(61, &epoch(61)).unwrap(); // closes the segment of 60
        wal.compact(61).unwrap();
        drop(wal);
        Wal::open(dir, 300).unwrap().1
    }

    #[test]
    fn a_compaction_copies_the_head_and_reads_its_fingerprints_instead_of_decoding_it() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir, 300).unwrap();
        for t in 1..=40u64 {
            wal.append(t, &repeats(t)).unwrap();
        }
        wal.compact(41).unwrap();
        drop(wal);
        assert!(
            dir.join(PRINTS).exists(),
            "the first compaction saved its fingerprints"
        );
        let copy = |name: &str| {
            let to = dir.with_extension(name);
            std::fs::create_dir_all(&to).unwrap();
            for e in std::fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
            to
        };
        let (without, emptied, torn) = (copy("without"), copy("emptied"), copy("torn"));
        let older = copy("older");
        std::fs::remove_file(without.join(PRINTS)).unwrap();
        // A file of an earlier version (2: the same entries, unsorted) is not read: were this
        // one (knowing no mention) read, the head's bodies would look new.
        Compactor::default()
            .save(
                &older.join(PRINTS),
                content_id(&only_segment(&older)).unwrap(),
            )
            .unwrap();
        let mut bytes = std::fs::read(older.join(PRINTS)).unwrap();
        bytes[..8].copy_from_slice(b"VIGIEFP2");
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]).to_le_bytes();
        bytes[body..].copy_from_slice(&crc);
        std::fs::write(older.join(PRINTS), bytes).unwrap();
        // Valid for the head, but knowing no mention: the head's bodies look new.
        let head = only_segment(&emptied);
        Compactor::default()
            .save(&emptied.join(PRINTS), content_id(&head).unwrap())
            .unwrap();
        let bytes = std::fs::read(torn.join(PRINTS)).unwrap();
        std::fs::write(torn.join(PRINTS), &bytes[..bytes.len() - 10]).unwrap();

        let with_prints = second_compaction(&dir);
        let times = |log: &[LoggedEpoch]| log.iter().map(|e| e.0).collect::<Vec<_>>();
        // The re-posts of the head's last bodies are dropped; the change, the new mention
        // and the change back (51) kept, as decoding the head gives.
        assert_eq!(times(&with_prints), vec![1, 10, 20, 30, 40, 50, 51, 61]);
        assert_eq!(with_prints, second_compaction(&without));
        assert_eq!(
            with_prints,
            second_compaction(&torn),
            "a torn file is ignored"
        );
        assert_eq!(with_prints, second_compaction(&older));
        // The saved fingerprints are what the compaction used.
        assert_eq!(
            times(&second_compaction(&emptied)),
            vec![1, 10, 20, 30, 40, 41, 50, 51, 61]
        );
        for d in [dir, without, emptied, torn, older] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    impl Compactor {
        /// Remembers `after` under `id`, as an upsert that changed it would.
        fn change(&mut self, id: u64, after: Option<Print>) {
            let was_live = self.get(id).is_some();
            self.record(id, was_live, after);
        }
    }

    #[test]
    fn the_heads_sorted_fingerprints_are_found_and_merged_with_the_changes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        // Uniform hashes and the extremes, where the first search's slice is at an end.
        let mut keys: Vec<u64> = (0..200_000).map(|_| rng.random()).collect();
        keys.extend([0, 1, u64::MAX - 1, u64::MAX]);
        keys.sort_unstable();
        keys.dedup();
        let print = |k: u64| [k.rotate_left(7), !k];
        let mut c = Compactor {
            base: keys.iter().map(|&k| (k, print(k))).collect(),
            live: keys.len() as u64,
            ..Compactor::default()
        };
        for &k in &keys {
            assert_eq!(c.in_base(k), Some(print(k)), "{k}");
        }
        // Absent hashes between and beside the present ones.
        for w in keys.windows(2).step_by(97) {
            if w[1] - w[0] > 1 {
                assert_eq!(c.in_base(w[0] + 1), None);
            }
        }
        // Hashes far from their uniform rank: a head whose keys all sit at one end.
        let skewed = Compactor {
            base: (0..50_000u64).map(|k| (k * 3, print(k))).collect(),
            ..Compactor::default()
        };
        assert_eq!(skewed.in_base(49_999 * 3), Some(print(49_999)));
        assert_eq!(skewed.in_base(u64::MAX), None);
        assert_eq!(skewed.in_base(4), None);

        // Changes: some head entries replaced, some deleted, new ones; the merge is the
        // head with them applied, sorted.
        let mut model: std::collections::BTreeMap<u64, Print> =
            keys.iter().map(|&k| (k, print(k))).collect();
        for (i, &k) in keys.iter().enumerate().step_by(11) {
            let change = (i % 2 == 0).then_some([i as u64, 1]);
            c.change(k, change);
            match change {
                Some(p) => model.insert(k, p),
                None => model.remove(&k),
            };
        }
        for _ in 0..5_000 {
            let k: u64 = rng.random();
            c.change(k, Some([k, 2]));
            model.insert(k, [k, 2]);
        }
        let fresh: u64 = rng.random();
        c.change(fresh, Some([fresh, 3]));
        c.change(fresh, None); // deleted before it was ever saved
        model.remove(&fresh);
        for (&k, &v) in model.iter().step_by(13) {
            assert_eq!(c.get(k), Some(v));
        }
        assert_eq!(c.get(fresh), None);
        let seed = c.seed;

        // Saved and loaded, the merge is the new head.
        let dir = tmp();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PRINTS);
        c.save(&path, (1, 2)).unwrap();
        let loaded = Compactor::load(&path, (1, 2)).expect("saved prints load");
        assert!(loaded
            .base
            .iter()
            .copied()
            .eq(model.iter().map(|(k, v)| (*k, *v))));
        assert!(loaded.changes.iter().all(|m| m.is_empty()));
        assert_eq!(loaded.live, model.len() as u64);
        assert_eq!(loaded.seed, seed);
        assert!(
            Compactor::load(&path, (1, 3)).is_none(),
            "another segment's prints"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
