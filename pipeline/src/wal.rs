//! The write-ahead log: ingest acknowledges a batch only after it is here, fsynced.
//!
//! Each epoch the router closes is appended as one record — `len: u32 LE`, `crc32: u32 LE`,
//! then `len` bytes of bincode `(time, upserts)` — and the file is synced once per epoch
//! (group commit: every request in the epoch shares one fsync). At start-up the log is
//! read back and replayed into the dataflow, so acknowledged mentions survive a crash and
//! the dataflow's state (live mentions, trends) is rebuilt; rows re-written by the replay
//! carry the same versions and values, so ClickHouse does not change.
//!
//! A torn tail (a crash mid-append: short header, short payload or bad checksum in the
//! last record) is cut off. A bad record followed by good ones is corruption: start-up
//! fails and reports its offset instead of skipping it.

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

/// The log, open for appending.
pub struct Wal {
    path: PathBuf,
    file: File,
    bytes: u64,
}

const HEADER: usize = 8;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Wal {
    /// Opens (or creates) the log under `dir`, returning it with every intact epoch in order.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<LoggedEpoch>), WalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join("mentions.wal");
        let (epochs, good_len) = if path.exists() {
            read_all(&path)?
        } else {
            (Vec::new(), 0)
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        if len > good_len {
            tracing::warn!(path = %path.display(), cut = len - good_len, "cutting a torn record off the log's tail");
            file.set_len(good_len).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let mut wal = Wal {
            path,
            file,
            bytes: good_len,
        };
        use std::io::Seek;
        wal.file
            .seek(std::io::SeekFrom::End(0))
            .map_err(io(&wal.path))?;
        Ok((wal, epochs))
    }

    /// Appends one epoch and syncs it to disk.
    pub fn append(
        &mut self,
        time: u64,
        upserts: &[(MentionKey, Option<MentionBody>)],
    ) -> Result<(), WalError> {
        let payload =
            bincode::serialize(&(time, upserts)).map_err(|e| WalError::Encode(e.to_string()))?;
        let len = u32::try_from(payload.len())
            .map_err(|_| WalError::Encode("epoch larger than 4 GiB".into()))?;
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        self.file.write_all(&record).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.bytes += record.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Reads every intact record; returns them and the length of the intact prefix.
fn read_all(path: &Path) -> Result<(Vec<LoggedEpoch>, u64), WalError> {
    let file = File::open(path).map_err(io(path))?;
    let total = file.metadata().map_err(io(path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut epochs = Vec::new();
    let mut offset = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        match read_exact_or_eof(&mut r, &mut header).map_err(io(path))? {
            0 => return Ok((epochs, offset)),
            n if n < HEADER => return Ok((epochs, offset)), // torn header
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if offset + HEADER as u64 + len > total {
            return Ok((epochs, offset)); // torn payload
        }
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).map_err(io(path))?;
        let end = offset + HEADER as u64 + len;
        let decoded = (crc32fast::hash(&payload) == crc)
            .then(|| bincode::deserialize::<LoggedEpoch>(&payload).ok())
            .flatten();
        match decoded {
            Some(epoch) => epochs.push(epoch),
            // The last record may be torn; anything before the end is corruption.
            None if end == total => return Ok((epochs, offset)),
            None => {
                return Err(WalError::Corrupted {
                    path: path.to_path_buf(),
                    offset,
                })
            }
        }
        offset = end;
    }
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
    use crate::domain::Engagement;
    use uuid::Uuid;

    fn epoch(i: u128) -> Vec<(MentionKey, Option<MentionBody>)> {
        let key = MentionKey {
            org: Uuid::from_u128(1),
            id: Uuid::from_u128(i),
        };
        let body = MentionBody {
            source: Uuid::from_u128(2),
            created_at_us: 1_790_000_000_000_000,
            text: format!("mention {i}"),
            author: "@a".into(),
            url: "https://e.com".into(),
            engagement: Engagement::default(),
        };
        vec![
            (key, Some(body)),
            (
                MentionKey {
                    org: Uuid::from_u128(1),
                    id: Uuid::from_u128(i + 1000),
                },
                None,
            ),
        ]
    }

    fn tmp() -> PathBuf {
        std::env::temp_dir().join(format!("vigie-wal-{}", Uuid::new_v4().simple()))
    }

    #[test]
    fn epochs_come_back_in_order_after_reopening() {
        let dir = tmp();
        let (mut wal, old) = Wal::open(&dir).unwrap();
        assert!(old.is_empty());
        for i in 0..10 {
            wal.append(100 + i as u64, &epoch(i)).unwrap();
        }
        drop(wal);
        let (_, back) = Wal::open(&dir).unwrap();
        assert_eq!(back.len(), 10);
        assert_eq!(back[3], (103, epoch(3)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.append(1, &epoch(1)).unwrap();
        wal.append(2, &epoch(2)).unwrap();
        let full = wal.bytes();
        drop(wal);
        let path = dir.join("mentions.wal");
        for cut in [full - 1, full - 20, full - 60] {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(cut.max(1)).unwrap();
            let (mut wal, back) = Wal::open(&dir).unwrap();
            assert_eq!(back, vec![(1, epoch(1))], "cut at {cut}");
            wal.append(2, &epoch(2)).unwrap();
            assert_eq!(wal.bytes(), full);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_corrupted_record_in_the_middle_is_reported() {
        let dir = tmp();
        let (mut wal, _) = Wal::open(&dir).unwrap();
        wal.append(1, &epoch(1)).unwrap();
        wal.append(2, &epoch(2)).unwrap();
        drop(wal);
        let path = dir.join("mentions.wal");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = Wal::open(&dir).err().expect("corruption must be reported");
        assert!(
            matches!(err, WalError::Corrupted { offset: 0, .. }),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
