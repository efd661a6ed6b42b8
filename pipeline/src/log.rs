//! Where accepted epochs are kept until their effects are in ClickHouse: the local
//! write-ahead log under the data dir (default), or a Fluvio topic (`--fluvio`, cargo
//! feature `fluvio`). Ingest acknowledges an epoch only once it is in one of them; at
//! start-up the log is replayed into the dataflow; below the committed time it is compacted.

use crate::graph::records::{MentionBody, MentionKey};
use crate::wal::Wal;

/// The log the router appends to.
pub enum MentionLog {
    /// Segments under `DATA_DIR/wal-v2/`, fsynced per epoch.
    Local(Wal),
    /// A Fluvio topic; an epoch is durable once Fluvio acknowledged it.
    #[cfg(feature = "fluvio")]
    Fluvio(Box<crate::fluvio_log::FluvioLog>),
}

impl MentionLog {
    /// Appends one epoch; returns once it is durable.
    pub async fn append(
        &mut self,
        time: u64,
        upserts: &[(MentionKey, Option<MentionBody>)],
    ) -> Result<(), String> {
        match self {
            MentionLog::Local(wal) => {
                tokio::task::block_in_place(|| wal.append(time, upserts)).map_err(|e| e.to_string())
            }
            #[cfg(feature = "fluvio")]
            MentionLog::Fluvio(log) => log
                .append(time, upserts)
                .await
                .map_err(|e| format!("{e:#}")),
        }
    }

    /// Bytes the log holds (what `--wal-max-bytes` bounds).
    pub fn bytes(&self) -> u64 {
        match self {
            MentionLog::Local(wal) => wal.bytes(),
            #[cfg(feature = "fluvio")]
            MentionLog::Fluvio(log) => log.bytes(),
        }
    }

    /// Whether compacting below `committed` is worth it now (or a background compaction
    /// waits to be installed).
    pub fn compaction_due(&self, committed: u64) -> bool {
        match self {
            MentionLog::Local(wal) => wal.compacting() || wal.compaction_due(committed),
            #[cfg(feature = "fluvio")]
            MentionLog::Fluvio(log) => log.compaction_due(committed),
        }
    }

    /// Compacts what is below `committed` (the local log: starts a compaction in the
    /// background, or installs a finished one); returns the bytes freed.
    pub async fn compact(&mut self, committed: u64) -> Result<u64, String> {
        match self {
            // On a thread of its own: appends and acknowledgements go on meanwhile.
            MentionLog::Local(wal) => wal
                .compact_in_background(committed)
                .map_err(|e| e.to_string()),
            #[cfg(feature = "fluvio")]
            MentionLog::Fluvio(log) => log.compact(committed).await.map_err(|e| format!("{e:#}")),
        }
    }
}
