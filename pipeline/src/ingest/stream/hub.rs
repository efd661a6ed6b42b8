//! The alert hub: fan-out of published alerts to live subscribers, a ring of recent events
//! for resume, and ClickHouse backfill when the ring no longer covers a resume point.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use uuid::Uuid;
use vigie_sinks::alert::{AlertEvent, AlertRow, AlertType, Level};

/// Sizes and intervals of an [`AlertHub`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// Recent events kept in memory for resume (all organisations together).
    pub ring_size: usize,
    /// Events a live subscriber may fall behind before it lags.
    pub broadcast_capacity: usize,
    /// Interval of keep-alives: SSE comments and WebSocket pings.
    pub keep_alive: Duration,
    /// Most events one resume sends before going live; beyond it the client gets a
    /// `lagged` notice and can resume again from the last id it received.
    pub max_backfill: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            ring_size: 4096,
            broadcast_capacity: 1024,
            keep_alive: Duration::from_secs(15),
            max_backfill: 10_000,
        }
    }
}

/// The id of a stream event, `"{version}-{alert id}"`; events are ordered by
/// (version, alert id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// The dataflow time (ms) that produced the event: [`AlertEvent::version`].
    pub version: u64,
    /// The alert id.
    pub id: Uuid,
}

impl EventId {
    /// The id of an event.
    pub fn of(ev: &AlertEvent) -> Self {
        Self {
            version: ev.version,
            id: ev.id,
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.version, self.id.hyphenated())
    }
}

impl FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an event id; expected <version>-<alert uuid>");
        let (version, id) = s.trim().split_once('-').ok_or_else(bad)?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self {
            version: version.parse().map_err(|_| bad())?,
            id: Uuid::parse_str(id).map_err(|_| bad())?,
        })
    }
}

/// Which events of its organisation a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only events at this level or above (all when `None`).
    pub min_level: Option<Level>,
    /// Only events of these types (all when empty).
    pub types: Vec<AlertType>,
}

impl AlertFilter {
    /// Whether `ev` passes the filter (the organisation is checked separately).
    pub fn matches(&self, ev: &AlertEvent) -> bool {
        self.min_level.is_none_or(|min| ev.level >= min)
            && (self.types.is_empty() || self.types.contains(&ev.kind))
    }
}

/// The kind of a live-stream client, a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Server-Sent Events.
    Sse,
    /// WebSocket.
    Ws,
}

impl ClientKind {
    const ALL: [ClientKind; 2] = [Self::Sse, Self::Ws];

    fn label(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// An alert of the subscriber's organisation that passed its filter.
    Alert(EventId, Arc<AlertEvent>),
    /// Events were skipped: the subscriber fell behind the live broadcast, or a resume had
    /// more than [`HubConfig::max_backfill`] events. Resuming from `last_event_id` (the
    /// last event this subscription yielded, if any) fills the gap.
    Lagged {
        /// Events skipped. After a live lag, an upper bound: it counts the broadcast
        /// messages of every organisation the subscriber missed.
        missed: u64,
        /// The last event yielded before the gap.
        last_event_id: Option<EventId>,
    },
}

/// Why a subscription could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The resume point is older than the ring and no ClickHouse client is configured.
    #[error("the resume point is older than the events kept in memory")]
    NotCovered,
    /// The ClickHouse backfill failed.
    #[error("reading alerts from ClickHouse failed: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
}

#[derive(Debug, Default)]
struct KindMetrics {
    connected: AtomicU64,
    connections: AtomicU64,
    sent: AtomicU64,
    lagged: AtomicU64,
    missed: AtomicU64,
    dropped: AtomicU64,
}

/// Reads one counter of a [`KindMetrics`].
type Getter = fn(&KindMetrics) -> &AtomicU64;

#[derive(Debug, Default)]
struct StreamMetrics {
    published: AtomicU64,
    kinds: [KindMetrics; 2],
    backfill_ring: AtomicU64,
    backfill_clickhouse: AtomicU64,
}

/// The ring and the broadcast sender, behind one lock so that a subscriber's snapshot of
/// the ring and its receiver meet exactly: every event is in one or the other.
struct Fanout {
    ring: VecDeque<Arc<AlertEvent>>,
    /// `None` once the hub is closed.
    tx: Option<broadcast::Sender<Arc<AlertEvent>>>,
}

/// Fans alerts out to live-stream subscribers; shared by the dataflow (which publishes)
/// and the SSE and WebSocket handlers (which subscribe).
pub struct AlertHub {
    cfg: HubConfig,
    clickhouse: Option<clickhouse::Client>,
    fanout: Mutex<Fanout>,
    metrics: Arc<StreamMetrics>,
}

impl fmt::Debug for AlertHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertHub")
            .field("cfg", &self.cfg)
            .field("clickhouse", &self.clickhouse.is_some())
            .finish_non_exhaustive()
    }
}

impl AlertHub {
    /// A hub; `clickhouse` (a client on vigie's database) serves resumes older than the
    /// ring. Sizes of zero are raised to one.
    pub fn new(cfg: HubConfig, clickhouse: Option<clickhouse::Client>) -> Self {
        let cfg = HubConfig {
            ring_size: cfg.ring_size.max(1),
            broadcast_capacity: cfg.broadcast_capacity.max(1),
            max_backfill: cfg.max_backfill.max(1),
            ..cfg
        };
        let (tx, _) = broadcast::channel(cfg.broadcast_capacity);
        Self {
            fanout: Mutex::new(Fanout {
                ring: VecDeque::with_capacity(cfg.ring_size),
                tx: Some(tx),
            }),
            cfg,
            clickhouse,
            metrics: Arc::default(),
        }
    }

    /// The configuration (after the minimums of [`AlertHub::new`]).
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Publishes an alert to every live subscriber and to the resume ring. Never waits:
    /// a subscriber that does not keep up lags, it never slows the publisher.
    ///
    /// Publish in (version, id) order; an event older than the newest published one is
    /// still delivered live, but a subscriber resuming past it will not see it again.
    pub fn publish(&self, ev: Arc<AlertEvent>) {
        let key = EventId::of(&ev);
        let mut f = self.fanout.lock().unwrap_or_else(PoisonError::into_inner);
        let pos = if f.ring.back().is_none_or(|b| EventId::of(b) <= key) {
            f.ring.len()
        } else {
            f.ring.partition_point(|e| EventId::of(e) <= key)
        };
        f.ring.insert(pos, ev.clone());
        while f.ring.len() > self.cfg.ring_size {
            f.ring.pop_front();
        }
        if let Some(tx) = &f.tx {
            // An error only means nobody is listening.
            let _ = tx.send(ev);
        }
        drop(f);
        self.metrics.published.fetch_add(1, Relaxed);
    }

    /// Ends every subscription once it has yielded what it already holds (a server about
    /// to shut down calls it, since open streams would otherwise hold the shutdown). Later
    /// events still reach the ring, not live subscribers.
    pub fn close(&self) {
        self.fanout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tx
            .take();
    }

    /// Opens a subscription to `org`'s events that pass `filter`. With `after`, it first
    /// yields the events after that id (from the ring, or from ClickHouse for the part the
    /// ring no longer holds), then live events, without gap or duplicate between them.
    pub async fn subscribe(
        &self,
        kind: ClientKind,
        org: Uuid,
        filter: AlertFilter,
        after: Option<EventId>,
    ) -> Result<Subscription, ResumeError> {
        let wanted = |e: &AlertEvent| e.org_id == org && filter.matches(e);
        let (rx, ring_part, ring_front) = {
            let f = self.fanout.lock().unwrap_or_else(PoisonError::into_inner);
            let rx = match &f.tx {
                Some(tx) => tx.subscribe(),
                // Closed: a receiver that ends once the backfill is sent.
                None => broadcast::channel(1).1,
            };
            let ring_part: Vec<Arc<AlertEvent>> = match after {
                None => Vec::new(),
                Some(after) => f
                    .ring
                    .iter()
                    .filter(|e| EventId::of(e) > after && wanted(e))
                    .cloned()
                    .collect(),
            };
            (rx, ring_part, f.ring.front().map(|e| EventId::of(e)))
        };
        let mut backlog = VecDeque::new();
        let mut lag = None;
        if let Some(after) = after {
            // The ring holds every event from its front on; older ones are in ClickHouse.
            let (older, older_total) = match ring_front {
                Some(front) if after >= front => (Vec::new(), 0),
                upto => {
                    let client = self.clickhouse.as_ref().ok_or(ResumeError::NotCovered)?;
                    let max = self.cfg.max_backfill;
                    let rows = backfill(client, org, &filter, after, upto, max as u64 + 1).await?;
                    // More than fit: count them, for the lag notice.
                    let total = if rows.len() > max {
                        count(client, org, &filter, after, upto)
                            .await?
                            .max(rows.len() as u64)
                    } else {
                        rows.len() as u64
                    };
                    (rows, total)
                }
            };
            let total = older_total + ring_part.len() as u64;
            let max = self.cfg.max_backfill;
            let from_clickhouse = older.len().min(max);
            backlog.extend(older.into_iter().chain(ring_part).take(max));
            self.metrics
                .backfill_clickhouse
                .fetch_add(from_clickhouse as u64, Relaxed);
            self.metrics
                .backfill_ring
                .fetch_add((backlog.len() - from_clickhouse) as u64, Relaxed);
            let missed = total.saturating_sub(backlog.len() as u64);
            if missed > 0 {
                lag = Some(missed);
            }
        }
        let m = &self.metrics.kinds[kind.index()];
        m.connected.fetch_add(1, Relaxed);
        m.connections.fetch_add(1, Relaxed);
        Ok(Subscription {
            kind,
            org,
            filter,
            // Live events up to the end of the backfill were sent by it (the sink may have
            // written some to ClickHouse before the backfill read them).
            skip_upto: backlog.back().map(|e| EventId::of(e)).or(after),
            backlog,
            backfill_lag: lag,
            rx,
            last_sent: after,
            failed: false,
            metrics: self.metrics.clone(),
        })
    }

    /// Prometheus text exposition of the stream metrics (names prefixed `vigie_stream_`).
    pub fn render_prometheus(&self) -> String {
        let m = &self.metrics;
        let mut out = String::with_capacity(2048);
        let mut family = |name: &str, kind: &str, help: &str, get: Getter| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for k in ClientKind::ALL {
                let v = get(&m.kinds[k.index()]).load(Relaxed);
                let _ = writeln!(out, "{name}{{kind=\"{}\"}} {v}", k.label());
            }
        };
        family(
            "vigie_stream_clients",
            "gauge",
            "Live-stream clients connected now.",
            |k| &k.connected,
        );
        family(
            "vigie_stream_connections_total",
            "counter",
            "Live-stream connections opened.",
            |k| &k.connections,
        );
        family(
            "vigie_stream_events_sent_total",
            "counter",
            "Alerts sent to live-stream clients (backfill included).",
            |k| &k.sent,
        );
        family(
            "vigie_stream_lagged_total",
            "counter",
            "Lag notices sent: a client fell behind and skipped events.",
            |k| &k.lagged,
        );
        family(
            "vigie_stream_lagged_events_total",
            "counter",
            "Events skipped by lagging clients (broadcast messages, all organisations).",
            |k| &k.missed,
        );
        family(
            "vigie_stream_dropped_clients_total",
            "counter",
            "Clients lost with undelivered events or on a connection error.",
            |k| &k.dropped,
        );
        let _ = writeln!(
            out,
            "# HELP vigie_stream_events_published_total Alerts published to the hub.\n\
             # TYPE vigie_stream_events_published_total counter\n\
             vigie_stream_events_published_total {}",
            m.published.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP vigie_stream_backfill_events_total Events sent by resumes, by where they were read.\n\
             # TYPE vigie_stream_backfill_events_total counter\n\
             vigie_stream_backfill_events_total{{source=\"ring\"}} {}\n\
             vigie_stream_backfill_events_total{{source=\"clickhouse\"}} {}",
            m.backfill_ring.load(Relaxed),
            m.backfill_clickhouse.load(Relaxed)
        );
        out
    }
}

/// The shared WHERE clause of the backfill queries; binds in order: org, after (version,
/// id), then optionally the upper bound, the level and the types.
fn backfill_sql(select: &str, filter: &AlertFilter, upto: bool, tail: &str) -> String {
    // ClickHouse orders UUIDs by their halves, not byte-wise; the text form orders like
    // `Uuid`'s `Ord`.
    let mut sql =
        format!("{select} FROM alerts FINAL WHERE org_id = ? AND (version, toString(id)) > (?, ?)");
    if upto {
        sql.push_str(" AND (version, toString(id)) < (?, ?)");
    }
    if filter.min_level.is_some() {
        sql.push_str(" AND toInt8(level) >= ?");
    }
    if !filter.types.is_empty() {
        sql.push_str(" AND has(?, toInt8(type))");
    }
    sql.push_str(tail);
    sql
}

fn bind_backfill(
    mut q: clickhouse::query::Query,
    org: Uuid,
    filter: &AlertFilter,
    after: EventId,
    upto: Option<EventId>,
) -> clickhouse::query::Query {
    q = q
        .bind(org)
        .bind(after.version)
        .bind(after.id.hyphenated().to_string());
    if let Some(upto) = upto {
        q = q.bind(upto.version).bind(upto.id.hyphenated().to_string());
    }
    if let Some(min) = filter.min_level {
        q = q.bind(min.code());
    }
    if !filter.types.is_empty() {
        q = q.bind(filter.types.iter().map(|t| t.code()).collect::<Vec<i8>>());
    }
    q
}

/// `org`'s events in (after, upto), oldest first, at most `limit`.
async fn backfill(
    client: &clickhouse::Client,
    org: Uuid,
    filter: &AlertFilter,
    after: EventId,
    upto: Option<EventId>,
    limit: u64,
) -> Result<Vec<Arc<AlertEvent>>, clickhouse::error::Error> {
    let sql = backfill_sql(
        "SELECT ?fields",
        filter,
        upto.is_some(),
        " ORDER BY version, toString(id) LIMIT ?",
    );
    let rows = bind_backfill(client.query(&sql), org, filter, after, upto)
        .bind(limit)
        .fetch_all::<AlertRow>()
        .await?;
    Ok(rows
        .iter()
        .filter_map(AlertEvent::from_row)
        .map(Arc::new)
        .collect())
}

/// How many of `org`'s events are in (after, upto).
async fn count(
    client: &clickhouse::Client,
    org: Uuid,
    filter: &AlertFilter,
    after: EventId,
    upto: Option<EventId>,
) -> Result<u64, clickhouse::error::Error> {
    let sql = backfill_sql("SELECT count()", filter, upto.is_some(), "");
    bind_backfill(client.query(&sql), org, filter, after, upto)
        .fetch_one::<u64>()
        .await
}

/// One subscriber's view of the hub: its backfill, then live events of its organisation.
/// Dropping it disconnects the subscriber.
pub struct Subscription {
    kind: ClientKind,
    org: Uuid,
    filter: AlertFilter,
    backlog: VecDeque<Arc<AlertEvent>>,
    backfill_lag: Option<u64>,
    rx: broadcast::Receiver<Arc<AlertEvent>>,
    skip_upto: Option<EventId>,
    last_sent: Option<EventId>,
    failed: bool,
    metrics: Arc<StreamMetrics>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("kind", &self.kind)
            .field("org", &self.org)
            .field("filter", &self.filter)
            .field("backlog", &self.backlog.len())
            .field("last_sent", &self.last_sent)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next item: backfill first, then live events; `None` once the hub is gone.
    /// Cancel-safe: an item is consumed only when this returns it.
    pub async fn next(&mut self) -> Option<StreamItem> {
        let m = &self.metrics.kinds[self.kind.index()];
        if let Some(ev) = self.backlog.pop_front() {
            let id = EventId::of(&ev);
            self.last_sent = Some(id);
            m.sent.fetch_add(1, Relaxed);
            return Some(StreamItem::Alert(id, ev));
        }
        if let Some(missed) = self.backfill_lag.take() {
            m.lagged.fetch_add(1, Relaxed);
            return Some(StreamItem::Lagged {
                missed,
                last_event_id: self.last_sent,
            });
        }
        loop {
            match self.rx.recv().await {
                Ok(ev) => {
                    let id = EventId::of(&ev);
                    if ev.org_id != self.org
                        || !self.filter.matches(&ev)
                        || self.skip_upto.is_some_and(|s| id <= s)
                    {
                        continue;
                    }
                    self.last_sent = Some(id);
                    m.sent.fetch_add(1, Relaxed);
                    return Some(StreamItem::Alert(id, ev));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    m.lagged.fetch_add(1, Relaxed);
                    m.missed.fetch_add(missed, Relaxed);
                    return Some(StreamItem::Lagged {
                        missed,
                        last_event_id: self.last_sent,
                    });
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The id of the last event this subscription yielded (or its resume point).
    pub fn last_event_id(&self) -> Option<EventId> {
        self.last_sent
    }

    /// Records that the connection failed (counted as dropped when the subscription ends).
    pub fn mark_failed(&mut self) {
        self.failed = true;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let m = &self.metrics.kinds[self.kind.index()];
        m.connected.fetch_sub(1, Relaxed);
        if self.failed || !self.backlog.is_empty() || !self.rx.is_empty() {
            m.dropped.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_reject_garbage() {
        let id = EventId {
            version: 1_790_000_000_123,
            id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
        };
        let s = id.to_string();
        assert_eq!(s, "1790000000123-00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(s.parse::<EventId>(), Ok(id));
        for bad in [
            "",
            "12",
            "-00112233-4455-6677-8899-aabbccddeeff",
            "x-1",
            "+1-00112233-4455-6677-8899-aabbccddeeff",
            "1-nope",
        ] {
            assert!(bad.parse::<EventId>().is_err(), "{bad}");
        }
    }
}
