//! The delivery log (`webhook_deliveries`, one row per attempt) and the dead letters
//! (`webhook_dead_letters`), written in batches by one background task.
//!
//! Deliveries hand rows over with a non-blocking `try_send` on a bounded channel; the task
//! drains the channel continuously into a bounded buffer, also while an insert is under way
//! or ClickHouse is down (it retries with the ClickHouse config's backoff). Beyond the
//! bound the oldest rows are dropped — attempt rows before dead letters, which carry the
//! payload — with a warning and `log_rows_dropped`. Nothing here ever blocks a delivery.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use super::metrics::WebhookMetrics;
use crate::clickhouse::retry::RetryPolicy;
use crate::clickhouse::{ClickHouseConfig, SinkError};

/// Longest a single insert may take before it counts as failed.
const INSERT_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of one delivery attempt (`Enum8` `outcome` of `webhook_deliveries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// Failed (network error, timeout, 5xx, 429, 408); another attempt is scheduled.
    Retrying,
    /// Failed permanently (another 4xx, a redirect, the endpoint disabled meanwhile): not
    /// retried; the delivery is dead-lettered.
    Failed,
    /// Failed and out of attempts (or the dispatcher stopped before the next one): the
    /// delivery is dead-lettered.
    DeadLetter,
    /// Never attempted: the endpoint's queue was full. Attempt number 0; dead-lettered.
    Dropped,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 5] = [
        Self::Delivered,
        Self::Retrying,
        Self::Failed,
        Self::DeadLetter,
        Self::Dropped,
    ];

    /// snake_case name, as in ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::DeadLetter => "dead_letter",
            Self::Dropped => "dropped",
        }
    }

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Delivered => 1,
            Self::Retrying => 2,
            Self::Failed => 3,
            Self::DeadLetter => 4,
            Self::Dropped => 5,
        }
    }

    /// The outcome of an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.code() == code)
    }
}

/// A row of `webhook_deliveries`: one attempt.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct DeliveryRow {
    /// Organisation of the alert and the endpoint.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Endpoint.
    #[serde(with = "clickhouse::serde::uuid")]
    pub webhook_id: Uuid,
    /// Alert (also the `Idempotency-Key`).
    #[serde(with = "clickhouse::serde::uuid")]
    pub alert_id: Uuid,
    /// 1-based attempt number (0 for a dropped delivery).
    pub attempt: u16,
    /// When the attempt started, seconds since the epoch.
    pub attempted_at: u32,
    /// HTTP status, 0 when there was no response (network error, timeout, not attempted).
    pub status_code: u16,
    /// `Enum8` of [`Outcome`].
    pub outcome: i8,
    /// What went wrong (empty when delivered).
    pub error: String,
    /// Time from sending to the end of the response, milliseconds.
    pub duration_ms: u32,
}

/// A row of `webhook_dead_letters`: a delivery given up on, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    /// Organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Endpoint.
    #[serde(with = "clickhouse::serde::uuid")]
    pub webhook_id: Uuid,
    /// Alert.
    #[serde(with = "clickhouse::serde::uuid")]
    pub alert_id: Uuid,
    /// The body that was (or would have been) sent, in the endpoint's format.
    pub payload: String,
    /// Attempts made (0 when dropped).
    pub attempts: u16,
    /// Status of the last attempt (0 when no response).
    pub last_status: u16,
    /// Error of the last attempt.
    pub last_error: String,
    /// When it was given up on, seconds since the epoch.
    pub failed_at: u32,
    /// Row version (microseconds since the epoch).
    pub version: u64,
}

pub(crate) enum LogMsg {
    Attempt(DeliveryRow),
    DeadLetter(DeadLetterRow),
    /// Write everything buffered (until the deadline), answer with the rows left unwritten,
    /// and stop.
    Flush(Instant, oneshot::Sender<u64>),
}

/// The delivery side of the log: never blocks.
#[derive(Clone)]
pub(crate) struct LogSender {
    tx: mpsc::Sender<LogMsg>,
    metrics: Arc<WebhookMetrics>,
}

impl LogSender {
    pub(crate) fn attempt(&self, row: DeliveryRow) {
        self.send(LogMsg::Attempt(row));
    }

    pub(crate) fn dead_letter(&self, row: DeadLetterRow) {
        self.send(LogMsg::DeadLetter(row));
    }

    fn send(&self, msg: LogMsg) {
        if self.tx.try_send(msg).is_err() {
            note_dropped(&self.metrics, 1, "webhook log channel full or closed");
        }
    }

    /// Asks the writer to flush and stop; the rows it could not write by `deadline`.
    pub(crate) async fn flush(&self, deadline: Instant) -> u64 {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(LogMsg::Flush(deadline, tx)).await.is_err() {
            return 0; // already stopped
        }
        rx.await.unwrap_or(0)
    }
}

fn note_dropped(metrics: &WebhookMetrics, n: u64, why: &str) {
    let before = metrics
        .log_rows_dropped
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    // Warn on the first loss and then at powers of two, not once per row.
    let after = before + n;
    if before == 0 || (before.leading_zeros() != after.leading_zeros()) {
        tracing::warn!(dropped_total = after, "{why}: webhook log rows dropped");
    }
}

/// Buffered rows of both tables, bounded together.
#[derive(Default)]
struct Buffer {
    attempts: VecDeque<DeliveryRow>,
    dead: VecDeque<DeadLetterRow>,
}

impl Buffer {
    fn len(&self) -> usize {
        self.attempts.len() + self.dead.len()
    }

    /// Drops the oldest rows beyond `max` (attempt rows first); how many were dropped.
    fn trim(&mut self, max: usize) -> usize {
        let mut dropped = 0;
        while self.len() > max {
            if self.attempts.pop_front().is_none() {
                self.dead.pop_front();
            }
            dropped += 1;
        }
        dropped
    }
}

/// Starts the writer task; returns its sender.
pub(crate) fn start(
    ch: &ClickHouseConfig,
    max_rows: usize,
    metrics: Arc<WebhookMetrics>,
    runtime: &tokio::runtime::Handle,
) -> LogSender {
    let max_rows = max_rows.max(1);
    let (tx, rx) = mpsc::channel(max_rows.min(16_384));
    let writer = Writer {
        client: ch.client(),
        rx,
        closed: false,
        flush: None,
        metrics: metrics.clone(),
        max_rows,
        batch_rows: ch.batch_rows.max(1),
        flush_interval: ch.flush_interval,
        retry: ch.retry,
        buf: Buffer::default(),
        since: None,
        failures: 0,
        retry_at: None,
    };
    runtime.spawn(writer.run());
    LogSender { tx, metrics }
}

struct Writer {
    client: clickhouse::Client,
    rx: mpsc::Receiver<LogMsg>,
    closed: bool,
    flush: Option<(Instant, oneshot::Sender<u64>)>,
    metrics: Arc<WebhookMetrics>,
    max_rows: usize,
    batch_rows: usize,
    flush_interval: Duration,
    retry: RetryPolicy,
    buf: Buffer,
    /// When the buffer last became non-empty (or was last written with rows left over).
    since: Option<Instant>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Writer {
    async fn run(mut self) {
        loop {
            if let Some((deadline, done)) = self.flush.take() {
                let left = self.final_flush(deadline).await;
                let _ = done.send(left);
                return;
            }
            if self.closed {
                // Every sender is gone without a flush request: write what is left.
                self.final_flush(Instant::now() + INSERT_TIMEOUT).await;
                return;
            }
            let wake = self.next_write();
            tokio::select! {
                msg = self.rx.recv() => self.accept(msg),
                _ = sleep_until_opt(wake) => self.write_once().await,
            }
        }
    }

    fn accept(&mut self, msg: Option<LogMsg>) {
        match msg {
            Some(LogMsg::Attempt(r)) => self.buf.attempts.push_back(r),
            Some(LogMsg::DeadLetter(r)) => self.buf.dead.push_back(r),
            Some(LogMsg::Flush(deadline, done)) => self.flush = Some((deadline, done)),
            None => self.closed = true,
        }
        if self.since.is_none() && self.buf.len() > 0 {
            self.since = Some(Instant::now());
        }
        let dropped = self.buf.trim(self.max_rows);
        if dropped > 0 {
            note_dropped(
                &self.metrics,
                dropped as u64,
                "webhook log buffer full (ClickHouse unreachable?)",
            );
        }
    }

    fn next_write(&self) -> Option<Instant> {
        if self.buf.len() == 0 {
            return None;
        }
        if let Some(at) = self.retry_at {
            return Some(at);
        }
        if self.buf.len() >= self.batch_rows {
            return Some(Instant::now());
        }
        Some(self.since.unwrap_or_else(Instant::now) + self.flush_interval)
    }

    /// Writes one batch of each table, receiving meanwhile.
    async fn write_once(&mut self) {
        self.write_once_within(INSERT_TIMEOUT).await
    }

    async fn write_once_within(&mut self, timeout: Duration) {
        let n = self.buf.dead.len().min(self.batch_rows);
        let dead: Vec<DeadLetterRow> = self.buf.dead.drain(..n).collect();
        let n = self.buf.attempts.len().min(self.batch_rows);
        let attempts: Vec<DeliveryRow> = self.buf.attempts.drain(..n).collect();
        let write = write_batches(self.client.clone(), dead, attempts, timeout);
        tokio::pin!(write);
        let (dead, attempts, result) = loop {
            tokio::select! {
                r = &mut write => break r,
                msg = self.rx.recv(), if !self.closed => self.accept(msg),
            }
        };
        match result {
            Ok(written) => {
                self.metrics
                    .log_rows_written
                    .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
                if self.failures > 0 {
                    tracing::info!(
                        failures = self.failures,
                        "webhook log rows written again after ClickHouse errors"
                    );
                }
                self.failures = 0;
                self.retry_at = None;
                // Leftovers (more than a batch arrived) are due at once.
                self.since = (self.buf.len() > 0).then(|| {
                    let now = Instant::now();
                    now.checked_sub(self.flush_interval).unwrap_or(now)
                });
            }
            Err((written, e)) => {
                self.metrics
                    .log_rows_written
                    .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
                // Put the unwritten batch back in front, oldest first, then re-bound.
                for r in dead.into_iter().rev() {
                    self.buf.dead.push_front(r);
                }
                for r in attempts.into_iter().rev() {
                    self.buf.attempts.push_front(r);
                }
                let dropped = self.buf.trim(self.max_rows);
                if dropped > 0 {
                    note_dropped(
                        &self.metrics,
                        dropped as u64,
                        "webhook log buffer full (ClickHouse unreachable?)",
                    );
                }
                let wait = self.retry.backoff(self.failures);
                self.failures = self.failures.saturating_add(1);
                self.retry_at = Instant::now().checked_add(wait);
                tracing::warn!(error = %e, buffered = self.buf.len(), ?wait,
                    "writing webhook log rows failed; retrying");
            }
        }
    }

    /// Drains the channel and writes until empty or `deadline`; the rows left unwritten
    /// (counted as dropped).
    async fn final_flush(&mut self, deadline: Instant) -> u64 {
        while let Ok(msg) = self.rx.try_recv() {
            self.accept(Some(msg));
        }
        self.retry_at = None;
        loop {
            if self.buf.len() == 0 {
                return 0;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Some(at) = self.retry_at {
                if at >= deadline {
                    break;
                }
                tokio::time::sleep_until(at).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.write_once_within(left.min(INSERT_TIMEOUT)).await;
        }
        let left = self.buf.len() as u64;
        self.metrics
            .log_rows_dropped
            .fetch_add(left, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            rows = left,
            "webhook log rows not written before the shutdown deadline"
        );
        left
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

type WriteResult = Result<u64, (u64, SinkError)>;

/// Inserts the dead letters, then the attempt rows. Returns what was not written (empty
/// vectors when everything was) and the rows written or the error.
async fn write_batches(
    client: clickhouse::Client,
    mut dead: Vec<DeadLetterRow>,
    mut attempts: Vec<DeliveryRow>,
    timeout: Duration,
) -> (Vec<DeadLetterRow>, Vec<DeliveryRow>, WriteResult) {
    let mut written = 0u64;
    if !dead.is_empty() {
        match with_timeout(timeout, insert_dead(&client, &dead)).await {
            Ok(()) => {
                written += dead.len() as u64;
                dead.clear();
            }
            Err(e) => return (dead, attempts, Err((written, e))),
        }
    }
    if !attempts.is_empty() {
        match with_timeout(timeout, insert_attempts(&client, &attempts)).await {
            Ok(()) => {
                written += attempts.len() as u64;
                attempts.clear();
            }
            Err(e) => return (dead, attempts, Err((written, e))),
        }
    }
    (dead, attempts, Ok(written))
}

async fn with_timeout(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<(), SinkError>>,
) -> Result<(), SinkError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(SinkError::Network(format!(
            "insert timed out after {timeout:?}"
        )))
    })
}

async fn insert_dead(client: &clickhouse::Client, rows: &[DeadLetterRow]) -> Result<(), SinkError> {
    let mut insert = client
        .insert::<DeadLetterRow>("webhook_dead_letters")
        .await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await?;
    Ok(())
}

async fn insert_attempts(
    client: &clickhouse::Client,
    rows: &[DeliveryRow],
) -> Result<(), SinkError> {
    let mut insert = client.insert::<DeliveryRow>("webhook_deliveries").await?;
    for r in rows {
        insert.write(r).await?;
    }
    insert.end().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u16) -> DeliveryRow {
        DeliveryRow {
            org_id: Uuid::nil(),
            webhook_id: Uuid::nil(),
            alert_id: Uuid::nil(),
            attempt: n,
            attempted_at: 0,
            status_code: 0,
            outcome: Outcome::Retrying.code(),
            error: String::new(),
            duration_ms: 0,
        }
    }

    fn dead(n: u16) -> DeadLetterRow {
        DeadLetterRow {
            org_id: Uuid::nil(),
            webhook_id: Uuid::nil(),
            alert_id: Uuid::nil(),
            payload: String::new(),
            attempts: n,
            last_status: 0,
            last_error: String::new(),
            failed_at: 0,
            version: 0,
        }
    }

    #[test]
    fn the_buffer_drops_oldest_attempt_rows_first() {
        let mut b = Buffer::default();
        for i in 0..5 {
            b.attempts.push_back(attempt(i));
        }
        b.dead.push_back(dead(1));
        b.dead.push_back(dead(2));
        assert_eq!(b.trim(4), 3);
        let kept: Vec<u16> = b.attempts.iter().map(|r| r.attempt).collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(b.dead.len(), 2);
        assert_eq!(b.trim(1), 3);
        assert!(b.attempts.is_empty());
        assert_eq!(b.dead[0].attempts, 2, "the newest dead letter is kept");
    }

    #[test]
    fn outcomes_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_code(o.code()), Some(o));
        }
        assert_eq!(Outcome::DeadLetter.as_str(), "dead_letter");
    }
}
