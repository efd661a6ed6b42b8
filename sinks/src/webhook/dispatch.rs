//! The delivery engine: fans alerts out to the matching endpoints of their organisation,
//! signs and POSTs them, retries what is worth retrying, logs every attempt and
//! dead-letters what could not be delivered.
//!
//! Isolation: every endpoint has its own bounded queue (`queue_per_endpoint` deliveries
//! queued or in progress) and its own limit of concurrent requests
//! (`max_in_flight_per_endpoint`); every request is cut off after `request_timeout`. A slow
//! or dead endpoint therefore only ever occupies its own slots, and [`DispatcherHandle::publish`]
//! never waits: a delivery that finds its endpoint's queue full is recorded as `dropped`
//! and dead-lettered at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use super::catalog::{all_webhooks, Format, WebhookRow};
use super::log::{self, DeadLetterRow, DeliveryRow, LogSender, Outcome};
use super::metrics::WebhookMetrics;
use super::{payload, WebhookError};
use crate::alert::AlertEvent;
use crate::clickhouse::catalog::now_version;
use crate::clickhouse::{ClickHouseConfig, SinkError};

/// Longest an endpoint reload from ClickHouse may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of a failed response's body kept in the error text.
const ERROR_BODY_MAX: usize = 256;
/// Bytes of a response body read at most (the rest is not waited for).
const DRAIN_MAX: usize = 64 * 1024;

/// How the dispatcher delivers.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Attempts per delivery, the first included (at least 1).
    pub max_attempts: u16,
    /// Backoff cap before the first retry; it doubles per retry (full jitter: the wait is
    /// uniform in `[0, cap]`).
    pub initial_backoff: Duration,
    /// Upper bound of the backoff cap, and of an honoured `Retry-After`.
    pub max_backoff: Duration,
    /// Longest one request may take, connection and response body included.
    pub request_timeout: Duration,
    /// Concurrent requests per endpoint.
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries per endpoint queued or in progress (retries waiting included); beyond
    /// it, new deliveries are dropped and dead-lettered.
    pub queue_per_endpoint: usize,
    /// How often the endpoint list is reloaded from ClickHouse.
    pub refresh: Duration,
    /// Delivery-log rows buffered in memory while ClickHouse is unreachable; beyond it the
    /// oldest are dropped. Batching follows the ClickHouse config's `batch_rows` and
    /// `flush_interval`, retries its `retry` policy.
    pub log_buffer_rows: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            max_in_flight_per_endpoint: 4,
            queue_per_endpoint: 1024,
            refresh: Duration::from_secs(5),
            log_buffer_rows: 100_000,
        }
    }
}

impl DispatcherConfig {
    /// The cap of the wait after failed attempt number `attempt` (1-based):
    /// `min(max_backoff, initial_backoff · 2^(attempt−1))`.
    pub fn backoff_cap(&self, attempt: u16) -> Duration {
        let doublings = u32::from(attempt.saturating_sub(1)).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// The wait after failed attempt `attempt`: uniform in `[0, backoff_cap(attempt)]`, but
    /// at least `retry_after` (capped at `max_backoff`) when the endpoint sent one.
    pub fn backoff(&self, attempt: u16, retry_after: Option<Duration>) -> Duration {
        let cap = self.backoff_cap(attempt);
        let jittered = Duration::from_micros(rand::rng().random_range(0..=cap.as_micros() as u64));
        match retry_after {
            Some(r) => jittered.max(r.min(self.max_backoff)),
            None => jittered,
        }
    }
}

/// Whether an HTTP status is worth retrying: 5xx, 429 Too Many Requests and 408 Request
/// Timeout. Every other non-2xx (other 4xx, 3xx — redirects are not followed) is final.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || status == 408 || (500..=599).contains(&status)
}

/// `Retry-After` in seconds, for a 429 or 503 (HTTP dates are not honoured).
pub fn retry_after(status: u16, value: Option<&str>) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Starts dispatchers.
#[derive(Debug)]
pub struct Dispatcher;

impl Dispatcher {
    /// Loads the endpoints from ClickHouse (if that fails, it starts with none and the
    /// periodic refresh keeps trying), starts the refresh and delivery-log tasks on the
    /// current Tokio runtime, and returns the handle alerts are published through.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if the TLS backend cannot initialise.
    pub async fn start(cfg: DispatcherConfig, ch: ClickHouseConfig) -> DispatcherHandle {
        let runtime = tokio::runtime::Handle::current();
        let metrics = Arc::new(WebhookMetrics::default());
        let log = log::start(&ch, cfg.log_buffer_rows, metrics.clone(), &runtime);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client (rustls) initialises");
        let shared = Arc::new(Shared {
            client: ch.client(),
            http,
            runtime: runtime.clone(),
            endpoints: RwLock::new(Arc::new(EndpointSet::default())),
            reload_lock: tokio::sync::Mutex::new(()),
            metrics,
            log,
            accepting: AtomicBool::new(true),
            stop: watch::Sender::new(Stop::Running),
            outstanding: watch::Sender::new(0),
            cfg,
        });
        let _ = shared.reload().await; // logged; the refresh retries
        runtime.spawn(refresh_loop(Arc::downgrade(&shared), shared.cfg.refresh));
        DispatcherHandle { shared }
    }
}

/// Publishes alerts to the dispatcher; cheap to clone (all clones share one dispatcher).
#[derive(Clone)]
pub struct DispatcherHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DispatcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherHandle")
            .field("endpoints", &self.endpoint_count())
            .finish_non_exhaustive()
    }
}

/// What [`DispatcherHandle::publish`] did with one alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Deliveries queued (matching endpoints with room).
    pub queued: usize,
    /// Deliveries dropped and dead-lettered (matching endpoints whose queue was full).
    pub dropped: usize,
}

/// What [`DispatcherHandle::shutdown`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Deliveries still unfinished at the timeout, cut off and dead-lettered.
    pub aborted: usize,
    /// Log rows that could not be written before the flush deadline (lost).
    pub log_rows_unwritten: u64,
}

impl DispatcherHandle {
    /// Queues `alert` for every matching endpoint: enabled, of the alert's organisation,
    /// `min_level` at most the alert's level, and the alert's type listed (or none
    /// listed). Never blocks and never awaits: callable from any thread. An endpoint whose
    /// queue is full gets a `dropped` attempt row and a dead letter instead.
    pub fn publish(&self, alert: Arc<AlertEvent>) -> Published {
        let s = &self.shared;
        let mut out = Published::default();
        let set = s.current();
        let Some(endpoints) = set.by_org.get(&alert.org_id) else {
            return out;
        };
        let mut bodies: HashMap<Format, Bytes> = HashMap::new();
        for ep in endpoints.iter().filter(|ep| ep.row.accepts(&alert)) {
            let body = bodies
                .entry(ep.format)
                .or_insert_with(|| Bytes::from(payload::body(ep.format, &alert)))
                .clone();
            let slot = if s.accepting.load(Ordering::Acquire) {
                ep.queue.clone().try_acquire_owned().map_err(|_| {
                    format!(
                        "dropped: queue full ({} deliveries pending for this endpoint)",
                        s.cfg.queue_per_endpoint
                    )
                })
            } else {
                Err("dropped: dispatcher is shutting down".to_string())
            };
            match slot {
                Ok(slot) => {
                    out.queued += 1;
                    WebhookMetrics::inc(&s.metrics.queued);
                    let pending = Pending::new(s);
                    s.runtime.spawn(deliver(
                        s.clone(),
                        ep.clone(),
                        alert.clone(),
                        body,
                        slot,
                        pending,
                    ));
                }
                Err(error) => {
                    out.dropped += 1;
                    let total = s.metrics.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Warn on the first drop and then at powers of two, not once per alert.
                    if total.is_power_of_two() {
                        tracing::warn!(webhook_id = %ep.row.id, org_id = %alert.org_id,
                            alert_id = %alert.id, dropped_total = total, "webhook delivery {error}");
                    }
                    s.log_attempt(
                        &ep.row,
                        &alert,
                        0,
                        now_secs(),
                        0,
                        Outcome::Dropped,
                        &error,
                        Duration::ZERO,
                    );
                    s.dead_letter(&ep.row, &alert, &body, 0, 0, &error);
                }
            }
        }
        out
    }

    /// Reloads the endpoints from ClickHouse now; the number of enabled endpoints loaded.
    /// On error the last known set stays in use.
    pub async fn reload(&self) -> Result<usize, WebhookError> {
        self.shared.reload().await
    }

    /// Enabled endpoints currently loaded.
    pub fn endpoint_count(&self) -> usize {
        self.shared.current().enabled
    }

    /// The dispatcher's counters.
    pub fn metrics(&self) -> Arc<WebhookMetrics> {
        self.shared.metrics.clone()
    }

    /// Stops taking alerts (later `publish` calls on any clone drop them), lets queued and
    /// in-flight deliveries go on for up to `timeout` — a retry whose wait would end after
    /// that is dead-lettered at once instead — then cuts off whatever is left (recorded
    /// and dead-lettered), and flushes the delivery log for up to `timeout` more.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let s = self.shared;
        s.accepting.store(false, Ordering::Release);
        let deadline = after(timeout);
        s.stop.send_replace(Stop::Draining(deadline));
        let mut outstanding = s.outstanding.subscribe();
        let mut report = ShutdownReport::default();
        let drained = tokio::time::timeout_at(deadline, outstanding.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !drained {
            report.aborted = *outstanding.borrow();
            tracing::warn!(
                deliveries = report.aborted,
                "webhook deliveries unfinished at the shutdown timeout; cutting them off"
            );
            s.stop.send_replace(Stop::Abort);
            // Cut-off deliveries record their dead letters at once.
            let _ = tokio::time::timeout(Duration::from_secs(5), outstanding.wait_for(|n| *n == 0))
                .await;
        }
        report.log_rows_unwritten = s.log.flush(after(timeout)).await;
        report
    }
}

/// Where the dispatcher is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// Shutting down: no retry wait may end after this instant.
    Draining(Instant),
    /// Past the shutdown timeout: cut everything off.
    Abort,
}

struct Endpoint {
    row: WebhookRow,
    format: Format,
    /// Deliveries queued or in progress.
    queue: Arc<Semaphore>,
    /// Requests in flight.
    in_flight: Arc<Semaphore>,
}

#[derive(Default)]
struct EndpointSet {
    /// Enabled endpoints by organisation.
    by_org: HashMap<Uuid, Vec<Arc<Endpoint>>>,
    /// Every endpoint (enabled or not) by (organisation, id), so its slots survive being
    /// disabled and enabled again.
    by_key: HashMap<(Uuid, Uuid), Arc<Endpoint>>,
    enabled: usize,
}

impl EndpointSet {
    fn build(rows: Vec<WebhookRow>, old: &EndpointSet, cfg: &DispatcherConfig) -> EndpointSet {
        let mut set = EndpointSet::default();
        for row in rows {
            let Some(format) = row.body_format() else {
                tracing::warn!(webhook_id = %row.id, code = row.format,
                    "webhook has a format this build does not know; skipped");
                continue;
            };
            let key = (row.org_id, row.id);
            let (queue, in_flight) = match old.by_key.get(&key) {
                Some(e) => (e.queue.clone(), e.in_flight.clone()),
                None => (
                    Arc::new(Semaphore::new(cfg.queue_per_endpoint)),
                    Arc::new(Semaphore::new(cfg.max_in_flight_per_endpoint.max(1))),
                ),
            };
            let ep = Arc::new(Endpoint {
                row,
                format,
                queue,
                in_flight,
            });
            if ep.row.is_enabled() {
                set.enabled += 1;
                set.by_org.entry(key.0).or_default().push(ep.clone());
            }
            set.by_key.insert(key, ep);
        }
        set
    }
}

struct Shared {
    cfg: DispatcherConfig,
    client: clickhouse::Client,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
    endpoints: RwLock<Arc<EndpointSet>>,
    reload_lock: tokio::sync::Mutex<()>,
    metrics: Arc<WebhookMetrics>,
    log: LogSender,
    accepting: AtomicBool,
    stop: watch::Sender<Stop>,
    outstanding: watch::Sender<usize>,
}

/// Counts one delivery as outstanding for as long as it lives.
struct Pending {
    outstanding: watch::Sender<usize>,
    metrics: Arc<WebhookMetrics>,
}

impl Pending {
    fn new(s: &Shared) -> Pending {
        s.outstanding.send_modify(|n| *n += 1);
        s.metrics.pending.fetch_add(1, Ordering::Relaxed);
        Pending {
            outstanding: s.outstanding.clone(),
            metrics: s.metrics.clone(),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.metrics.pending.fetch_sub(1, Ordering::Relaxed);
        self.outstanding.send_modify(|n| *n -= 1);
    }
}

fn now_secs() -> u32 {
    (now_version() / 1_000_000) as u32
}

fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    Retryable {
        status: u16,
        error: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        status: u16,
        error: String,
    },
    Aborted,
}

impl Shared {
    fn current(&self) -> Arc<EndpointSet> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn reload(&self) -> Result<usize, WebhookError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, all_webhooks(&self.client))
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Network(format!(
                    "loading webhooks timed out after {LOAD_TIMEOUT:?}"
                ))
                .into())
            });
        let rows = match loaded {
            Ok(rows) => rows,
            Err(e) => {
                WebhookMetrics::inc(&self.metrics.refresh_errors);
                tracing::warn!(error = %e, "loading webhooks failed; keeping the last known endpoints");
                return Err(e);
            }
        };
        let set = EndpointSet::build(rows, &self.current(), &self.cfg);
        let enabled = set.enabled;
        self.metrics
            .endpoints
            .store(enabled as u64, Ordering::Relaxed);
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(enabled)
    }

    #[allow(clippy::too_many_arguments)]
    fn log_attempt(
        &self,
        ep: &WebhookRow,
        alert: &AlertEvent,
        attempt: u16,
        attempted_at: u32,
        status_code: u16,
        outcome: Outcome,
        error: &str,
        duration: Duration,
    ) {
        self.log.attempt(DeliveryRow {
            org_id: alert.org_id,
            webhook_id: ep.id,
            alert_id: alert.id,
            attempt,
            attempted_at,
            status_code,
            outcome: outcome.code(),
            error: error.to_string(),
            duration_ms: duration.as_millis().min(u128::from(u32::MAX)) as u32,
        });
    }

    fn dead_letter(
        &self,
        ep: &WebhookRow,
        alert: &AlertEvent,
        body: &[u8],
        attempts: u16,
        last_status: u16,
        last_error: &str,
    ) {
        WebhookMetrics::inc(&self.metrics.dead_lettered);
        self.log.dead_letter(DeadLetterRow {
            org_id: alert.org_id,
            webhook_id: ep.id,
            alert_id: alert.id,
            payload: String::from_utf8_lossy(body).into_owned(),
            attempts,
            last_status,
            last_error: last_error.to_string(),
            failed_at: now_secs(),
            version: now_version(),
        });
    }

    /// One signed POST.
    async fn send(
        &self,
        ep: &WebhookRow,
        alert: &AlertEvent,
        attempt: u16,
        body: &Bytes,
    ) -> Attempt {
        let mut req = self.http.post(&ep.url).body(body.clone());
        for (name, value) in payload::headers(&ep.secret, alert, attempt, unix_secs(), body) {
            req = req.header(name, value);
        }
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => {
                return Attempt::Retryable {
                    status: 0,
                    error: describe(e, self.cfg.request_timeout),
                    retry_after: None,
                }
            }
        };
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            body_snippet(resp).await; // read to the end: the connection goes back to the pool
            return Attempt::Delivered(status);
        }
        let retry_after = retry_after(
            status,
            resp.headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let mut error = format!("HTTP {status}");
        if resp.status().is_redirection() {
            error.push_str(" (redirects are not followed)");
        }
        let snippet = body_snippet(resp).await;
        if !snippet.is_empty() {
            error.push_str(": ");
            error.push_str(&snippet);
        }
        if retryable_status(status) {
            Attempt::Retryable {
                status,
                error,
                retry_after,
            }
        } else {
            Attempt::Permanent { status, error }
        }
    }
}

/// A reqwest error as text: its chain of causes, never the URL (it may hold a token).
fn describe(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The start of a response body, as one printable line. Reads on (discarding) up to
/// [`DRAIN_MAX`] bytes, so that a connection whose answer was short can be reused.
async fn body_snippet(mut resp: reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read <= DRAIN_MAX {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                let room = ERROR_BODY_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&kept)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `now + d`, saturating far in the future instead of overflowing.
fn after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Resolves once the dispatcher is past its shutdown timeout.
async fn aborted(stop: &mut watch::Receiver<Stop>) {
    if stop.wait_for(|s| *s == Stop::Abort).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits until `wake`; false when shutdown means the wait must not be kept.
async fn wait_backoff(wake: Instant, stop: &mut watch::Receiver<Stop>) -> bool {
    loop {
        match *stop.borrow_and_update() {
            Stop::Abort => return false,
            Stop::Draining(deadline) if wake > deadline => return false,
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => return true,
            changed = stop.changed() => if changed.is_err() {
                tokio::time::sleep_until(wake).await;
                return true;
            },
        }
    }
}

/// Delivers one alert to one endpoint, retrying as configured; holds `_slot` (its place in
/// the endpoint's queue) and `_pending` until done.
async fn deliver(
    s: Arc<Shared>,
    first: Arc<Endpoint>,
    alert: Arc<AlertEvent>,
    body: Bytes,
    _slot: OwnedSemaphorePermit,
    _pending: Pending,
) {
    let mut stop = s.stop.subscribe();
    let max_attempts = s.cfg.max_attempts.max(1);
    let key = (first.row.org_id, first.row.id);
    let mut ep = first;
    let mut last_status = 0u16;
    let mut last_error = String::new();
    let mut attempt: u16 = 1;
    loop {
        if attempt > 1 {
            // A retry goes to the endpoint as it is now (URL or secret may have changed),
            // and not at all if it was disabled or removed meanwhile.
            let current = s.current().by_key.get(&key).cloned();
            match current {
                Some(cur) if cur.row.is_enabled() && cur.row.org_id == alert.org_id => ep = cur,
                _ => {
                    let error = format!("endpoint disabled or removed before attempt {attempt}");
                    s.log_attempt(
                        &ep.row,
                        &alert,
                        attempt,
                        now_secs(),
                        0,
                        Outcome::Failed,
                        &error,
                        Duration::ZERO,
                    );
                    s.dead_letter(&ep.row, &alert, &body, attempt - 1, last_status, &error);
                    return;
                }
            }
        }
        let permit = tokio::select! {
            biased;
            _ = aborted(&mut stop) => None,
            p = ep.in_flight.clone().acquire_owned() => p.ok(),
        };
        // A slot freed by the shutdown cut-off is not used for a new request.
        let permit = permit.filter(|_| *stop.borrow() != Stop::Abort);
        let Some(permit) = permit else {
            // Still waiting for a slot at the shutdown timeout: never attempted.
            let error = format!("dispatcher shut down before attempt {attempt}");
            s.log_attempt(
                &ep.row,
                &alert,
                attempt,
                now_secs(),
                0,
                Outcome::DeadLetter,
                &error,
                Duration::ZERO,
            );
            let last = if attempt > 1 {
                format!("{last_error}; {error}")
            } else {
                error
            };
            s.dead_letter(&ep.row, &alert, &body, attempt - 1, last_status, &last);
            return;
        };
        let attempted_at = now_secs();
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            _ = aborted(&mut stop) => Attempt::Aborted,
            r = s.send(&ep.row, &alert, attempt, &body) => r,
        };
        drop(permit);
        let took = started.elapsed();
        let (status, error, retry_after) = match result {
            Attempt::Delivered(status) => {
                WebhookMetrics::inc(&s.metrics.delivered);
                s.log_attempt(
                    &ep.row,
                    &alert,
                    attempt,
                    attempted_at,
                    status,
                    Outcome::Delivered,
                    "",
                    took,
                );
                return;
            }
            Attempt::Permanent { status, error } => {
                WebhookMetrics::inc(&s.metrics.failed);
                tracing::warn!(webhook_id = %ep.row.id, alert_id = %alert.id, attempt, %error,
                    "webhook delivery failed permanently; dead-lettered");
                s.log_attempt(
                    &ep.row,
                    &alert,
                    attempt,
                    attempted_at,
                    status,
                    Outcome::Failed,
                    &error,
                    took,
                );
                s.dead_letter(&ep.row, &alert, &body, attempt, status, &error);
                return;
            }
            Attempt::Aborted => {
                let error = format!("dispatcher shut down during attempt {attempt}");
                s.log_attempt(
                    &ep.row,
                    &alert,
                    attempt,
                    attempted_at,
                    0,
                    Outcome::DeadLetter,
                    &error,
                    took,
                );
                s.dead_letter(&ep.row, &alert, &body, attempt, 0, &error);
                return;
            }
            Attempt::Retryable {
                status,
                error,
                retry_after,
            } => (status, error, retry_after),
        };
        WebhookMetrics::inc(&s.metrics.failed);
        last_status = status;
        last_error = error;
        if attempt >= max_attempts {
            tracing::warn!(webhook_id = %ep.row.id, alert_id = %alert.id, attempt, error = %last_error,
                "webhook delivery out of attempts; dead-lettered");
            s.log_attempt(
                &ep.row,
                &alert,
                attempt,
                attempted_at,
                status,
                Outcome::DeadLetter,
                &last_error,
                took,
            );
            s.dead_letter(&ep.row, &alert, &body, attempt, status, &last_error);
            return;
        }
        let wait = s.cfg.backoff(attempt, retry_after);
        let wake = after(wait);
        let deadline = match *stop.borrow() {
            Stop::Running => None,
            Stop::Draining(deadline) => Some(deadline),
            Stop::Abort => Some(Instant::now()),
        };
        if let Some(deadline) = deadline {
            if wake > deadline {
                let error = format!("{last_error}; not retried: dispatcher shutting down");
                s.log_attempt(
                    &ep.row,
                    &alert,
                    attempt,
                    attempted_at,
                    status,
                    Outcome::DeadLetter,
                    &error,
                    took,
                );
                s.dead_letter(&ep.row, &alert, &body, attempt, status, &error);
                return;
            }
        }
        s.log_attempt(
            &ep.row,
            &alert,
            attempt,
            attempted_at,
            status,
            Outcome::Retrying,
            &last_error,
            took,
        );
        WebhookMetrics::inc(&s.metrics.retried);
        tracing::debug!(webhook_id = %ep.row.id, alert_id = %alert.id, attempt, ?wait, error = %last_error,
            "webhook delivery failed; retrying");
        if !wait_backoff(wake, &mut stop).await {
            let error = format!("dispatcher shut down before attempt {}", attempt + 1);
            s.log_attempt(
                &ep.row,
                &alert,
                attempt + 1,
                now_secs(),
                0,
                Outcome::DeadLetter,
                &error,
                Duration::ZERO,
            );
            s.dead_letter(
                &ep.row,
                &alert,
                &body,
                attempt,
                last_status,
                &format!("{last_error}; {error}"),
            );
            return;
        }
        attempt += 1;
    }
}

async fn refresh_loop(shared: Weak<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: start() just loaded
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        if !s.accepting.load(Ordering::Acquire) {
            return;
        }
        let _ = s.reload().await; // logged and counted; the last set stays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let cfg = DispatcherConfig {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            ..DispatcherConfig::default()
        };
        let caps: Vec<u64> = (1..=12)
            .map(|a| cfg.backoff_cap(a).as_millis() as u64)
            .collect();
        assert_eq!(
            caps,
            [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000]
        );
        assert_eq!(cfg.backoff_cap(u16::MAX), Duration::from_secs(300));
        let mut below_half = 0;
        for _ in 0..1000 {
            let d = cfg.backoff(3, None);
            assert!(d <= Duration::from_secs(2), "{d:?}");
            below_half += usize::from(d < Duration::from_secs(1));
        }
        // Full jitter: about half the waits fall below half the cap.
        assert!((300..700).contains(&below_half), "{below_half}");
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_max_backoff() {
        let cfg = DispatcherConfig {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(5),
            ..DispatcherConfig::default()
        };
        for _ in 0..100 {
            let d = cfg.backoff(1, Some(Duration::from_secs(1)));
            assert_eq!(d, Duration::from_secs(1));
        }
        assert_eq!(
            cfg.backoff(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(5)
        );
        assert_eq!(retry_after(429, Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(503, Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(500, Some("2")), None, "only 429 and 503");
        assert_eq!(
            retry_after(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(retry_after(429, None), None);
    }

    #[test]
    fn only_server_errors_rate_limits_and_timeouts_are_retried() {
        for s in [500, 502, 503, 504, 599, 429, 408] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 301, 302, 307, 100] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
