//! Alerts as every consumer sees them: the JSON of webhooks and live streams
//! ([`AlertEvent`]) and the ClickHouse row ([`AlertRow`], table `alerts`).

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Alert severity, ordered: `low < medium < critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth a look.
    Low,
    /// Needs attention today.
    Medium,
    /// Needs attention now.
    Critical,
}

impl Level {
    /// All levels, lowest first.
    pub const ALL: [Level; 3] = [Self::Low, Self::Medium, Self::Critical];

    /// Lowercase name, as in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::Critical => "critical",
        }
    }

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::Critical => 3,
        }
    }

    /// The level of an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown level {s:?}; expected low, medium or critical"))
    }
}

/// The rule that raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// A negative mention whose virality crossed the threshold.
    CriticalMention,
    /// Volume in the last hour far above its trailing 24-hour baseline.
    VolumeSpike,
    /// Negative share in the last hour well above its trailing 24-hour baseline.
    SentimentDip,
}

impl AlertType {
    /// All types.
    pub const ALL: [AlertType; 3] = [Self::CriticalMention, Self::VolumeSpike, Self::SentimentDip];

    /// snake_case name, as in JSON and ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CriticalMention => "critical_mention",
            Self::VolumeSpike => "volume_spike",
            Self::SentimentDip => "sentiment_dip",
        }
    }

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::CriticalMention => 1,
            Self::VolumeSpike => 2,
            Self::SentimentDip => 3,
        }
    }

    /// The type of an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }
}

impl std::str::FromStr for AlertType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown alert type {s:?}; expected critical_mention, volume_spike or sentiment_dip"
                )
            })
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The whole organisation.
    Org,
    /// One source.
    Source,
    /// One keyword.
    Keyword,
    /// One story (same link or same normalised text).
    Story,
}

impl KeyKind {
    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Org => 1,
            Self::Source => 2,
            Self::Keyword => 3,
            Self::Story => 4,
        }
    }

    /// The kind of an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        [Self::Org, Self::Source, Self::Keyword, Self::Story]
            .into_iter()
            .find(|k| k.code() == code)
    }
}

/// An alert, as pushed to webhooks and live streams (the JSON body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Deterministic id of (rule, key, window): a replayed alert has the same id. Also the
    /// webhook idempotency key.
    pub id: Uuid,
    /// Organisation.
    pub org_id: Uuid,
    /// Rule that fired.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Severity.
    pub level: Level,
    /// Always `NEW` when raised.
    pub status: String,
    /// Human-readable summary with the numbers.
    pub message: String,
    /// What the alert is about.
    pub key_kind: KeyKind,
    /// The keyword, source id, story id, or the organisation id.
    pub key: String,
    /// Source concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_id: Option<Uuid>,
    /// Keyword concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub keyword: Option<String>,
    /// Observed value (mentions in the window, negative share, or virality).
    pub observed: f64,
    /// Baseline it was compared with (hourly mean, baseline negative share, or 0).
    pub baseline: f64,
    /// The threshold the observation crossed.
    pub threshold: f64,
    /// Event-time window the observation covers.
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    /// End of that window (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub window_end: OffsetDateTime,
    /// Mentions that triggered it (a sample for window rules, newest first).
    pub mention_ids: Vec<Uuid>,
    /// When vigie raised it.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The dataflow time that produced it (milliseconds since the epoch); orders events of
    /// live streams and is the row's version.
    pub version: u64,
}

fn secs(t: OffsetDateTime) -> u32 {
    t.unix_timestamp().clamp(0, i64::from(u32::MAX)) as u32
}

fn at(secs: u32) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::from(secs)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl AlertEvent {
    /// The row stored in `alerts`.
    pub fn row(&self) -> AlertRow {
        AlertRow {
            org_id: self.org_id,
            id: self.id,
            kind: self.kind.code(),
            level: self.level.code(),
            status: 1,
            key_kind: self.key_kind.code(),
            key: self.key.clone(),
            source_id: self.source_id.unwrap_or(Uuid::nil()),
            keyword: self.keyword.clone().unwrap_or_default(),
            message: self.message.clone(),
            observed: self.observed,
            baseline: self.baseline,
            threshold: self.threshold,
            window_start: secs(self.window_start),
            window_end: secs(self.window_end),
            mention_ids: self.mention_ids.clone(),
            created_at: secs(self.created_at),
            version: self.version,
        }
    }

    /// The event a stored row stands for (`None` for codes this build does not know).
    pub fn from_row(r: &AlertRow) -> Option<AlertEvent> {
        Some(AlertEvent {
            id: r.id,
            org_id: r.org_id,
            kind: AlertType::from_code(r.kind)?,
            level: Level::from_code(r.level)?,
            status: match r.status {
                1 => "NEW",
                2 => "ACKNOWLEDGED",
                3 => "IN_PROGRESS",
                4 => "RESOLVED",
                _ => "DISMISSED",
            }
            .to_string(),
            message: r.message.clone(),
            key_kind: KeyKind::from_code(r.key_kind)?,
            key: r.key.clone(),
            source_id: Some(r.source_id).filter(|s| !s.is_nil()),
            keyword: Some(r.keyword.clone()).filter(|k| !k.is_empty()),
            observed: r.observed,
            baseline: r.baseline,
            threshold: r.threshold,
            window_start: at(r.window_start),
            window_end: at(r.window_end),
            mention_ids: r.mention_ids.clone(),
            created_at: at(r.created_at),
            version: r.version,
        })
    }
}

/// A row of `alerts` (one per alert id when read with `FINAL` or `alerts_current`).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct AlertRow {
    /// Organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Alert id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// `Enum8` of [`AlertType`].
    #[serde(rename = "type")]
    pub kind: i8,
    /// `Enum8` of [`Level`].
    pub level: i8,
    /// `Enum8` status: NEW = 1 … DISMISSED = 5.
    pub status: i8,
    /// `Enum8` of [`KeyKind`].
    pub key_kind: i8,
    /// Keyword, source id, story id or organisation id.
    pub key: String,
    /// Source concerned (nil when none).
    #[serde(with = "clickhouse::serde::uuid")]
    pub source_id: Uuid,
    /// Keyword concerned (empty when none).
    pub keyword: String,
    /// Human-readable summary.
    pub message: String,
    /// Observed value.
    pub observed: f64,
    /// Baseline.
    pub baseline: f64,
    /// Threshold crossed.
    pub threshold: f64,
    /// Window start, seconds since the epoch.
    pub window_start: u32,
    /// Window end, seconds since the epoch.
    pub window_end: u32,
    /// Triggering mentions.
    #[serde(with = "clickhouse::serde::uuid_vec")]
    pub mention_ids: Vec<Uuid>,
    /// When raised, seconds since the epoch.
    pub created_at: u32,
    /// Row version: the dataflow time (ms) that raised it; status changes write a higher one.
    pub version: u64,
}
