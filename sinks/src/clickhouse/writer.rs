//! Batching, retrying writes of one table.
//!
//! Rows are buffered until `batch_rows` or `flush_interval`; a flush retries transient
//! errors with capped, jittered exponential backoff for as long as it takes (the caller is
//! blocked meanwhile, which is the backpressure the dataflow needs), and a permanent error
//! writes the batch to a dead-letter file and returns the server's code and message. A
//! batch is never dropped silently.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use clickhouse::{Row, RowOwned, RowWrite};
use serde::Serialize;

use super::retry::{classify, Retry};
use super::{ClickHouseConfig, SinkError};
use crate::metrics::{SinkMetrics, TableCounters};

/// A buffer of rows for one table and the policy to send it.
pub struct BatchWriter<T> {
    client: clickhouse::Client,
    table: &'static str,
    cfg: ClickHouseConfig,
    rows: Vec<T>,
    oldest: Option<Instant>,
    metrics: Arc<SinkMetrics>,
    dead_letter_dir: PathBuf,
}

impl<T> BatchWriter<T>
where
    T: Row + RowOwned + RowWrite + Serialize,
{
    /// A writer for `table`, counted under its name in [`SinkMetrics`] (or `other`).
    pub fn new(
        cfg: &ClickHouseConfig,
        table: &'static str,
        metrics: Arc<SinkMetrics>,
        dead_letter_dir: PathBuf,
    ) -> Self {
        Self {
            client: cfg.client(),
            table,
            cfg: cfg.clone(),
            rows: Vec::new(),
            oldest: None,
            metrics,
            dead_letter_dir,
        }
    }

    /// Buffers a row.
    pub fn push(&mut self, row: T) {
        if self.rows.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.rows.push(row);
    }

    /// Rows waiting to be sent.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// When the buffer must be flushed by age, if it holds anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.cfg.flush_interval)
    }

    /// True when the buffer is full or its oldest row is due.
    pub fn due(&self) -> bool {
        self.rows.len() >= self.cfg.batch_rows
            || self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    fn counters(&self) -> &TableCounters {
        self.metrics.table(self.table)
    }

    /// Sends the buffer (no-op when empty). Transient errors are retried until they pass;
    /// a permanent error dead-letters the batch and is returned.
    #[tracing::instrument(name = "clickhouse_insert", skip(self), fields(table = self.table, rows = self.rows.len()))]
    pub async fn flush(&mut self) -> Result<usize, SinkError> {
        if self.rows.is_empty() {
            return Ok(0);
        }
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            match self.insert_once().await {
                Ok(()) => {
                    let n = self.rows.len();
                    let c = self.counters();
                    c.rows.fetch_add(n as u64, Ordering::Relaxed);
                    c.inserts.fetch_add(1, Ordering::Relaxed);
                    c.insert_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    self.rows.clear();
                    self.oldest = None;
                    return Ok(n);
                }
                Err(e) => {
                    self.counters().errors.fetch_add(1, Ordering::Relaxed);
                    match classify(&e) {
                        Retry::Transient => {
                            let wait = self.cfg.retry.backoff(attempt);
                            tracing::warn!(error = %e, attempt, ?wait, "transient ClickHouse error; retrying");
                            self.counters().retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(wait).await;
                            attempt = attempt.saturating_add(1);
                        }
                        Retry::Permanent => {
                            let path = self.dead_letter()?;
                            tracing::error!(error = %e, path = %path.display(), rows = self.rows.len(),
                                "ClickHouse rejected a batch permanently; rows written to the dead-letter file");
                            self.counters()
                                .dead_lettered_batches
                                .fetch_add(1, Ordering::Relaxed);
                            self.rows.clear();
                            self.oldest = None;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    async fn insert_once(&self) -> Result<(), SinkError> {
        let mut insert = self.client.insert::<T>(self.table).await?;
        for row in &self.rows {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// Appends the buffered rows as NDJSON to `<dead_letter_dir>/<table>.ndjson`.
    fn dead_letter(&self) -> Result<PathBuf, SinkError> {
        std::fs::create_dir_all(&self.dead_letter_dir)?;
        let path = self.dead_letter_dir.join(format!("{}.ndjson", self.table));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut buf = Vec::new();
        for row in &self.rows {
            serde_json::to_writer(&mut buf, row).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        f.write_all(&buf)?;
        f.sync_all()?;
        Ok(path)
    }
}
