//! The product's data model: Organization (tenant), User, Source, Mention, Alert, Action,
//! Report, Trend. These are the types the API and the sinks speak; the dataflow's own
//! compact records live in [`crate::graph::records`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// A tenant. Every read and write is scoped to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Organisation id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What a user may do inside their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// Reads and works on mentions, alerts and actions.
    User,
    /// Also manages sources, users and keys.
    Admin,
}

/// A person using vigie; emails are unique across the installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub id: Uuid,
    /// Organisation the user belongs to.
    pub org_id: Uuid,
    /// Unique, lowercased email.
    pub email: String,
    /// Password hash (never the password); never serialised to API responses.
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// Kinds of places mentions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Reddit.
    Reddit,
    /// X / Twitter.
    Twitter,
    /// Discord.
    Discord,
    /// News sites.
    News,
    /// Forums.
    Forum,
    /// Anything else.
    Other,
}

impl SourceType {
    /// All types, in `Enum8` order.
    pub const ALL: [SourceType; 6] = [
        Self::Reddit,
        Self::Twitter,
        Self::Discord,
        Self::News,
        Self::Forum,
        Self::Other,
    ];

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Reddit => 1,
            Self::Twitter => 2,
            Self::Discord => 3,
            Self::News => 4,
            Self::Forum => 5,
            Self::Other => 6,
        }
    }

    /// The type for an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Lowercase name, as on the wire and in ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reddit => "reddit",
            Self::Twitter => "twitter",
            Self::Discord => "discord",
            Self::News => "news",
            Self::Forum => "forum",
            Self::Other => "other",
        }
    }
}

impl std::str::FromStr for SourceType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown source type {s:?}; expected one of reddit, twitter, discord, news, forum, other"))
    }
}

/// A place an organisation watches for its keywords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Source id.
    pub id: Uuid,
    /// Owning organisation.
    pub org_id: Uuid,
    /// Kind of source.
    #[serde(rename = "type")]
    pub kind: SourceType,
    /// Display name.
    pub name: String,
    /// Keywords watched.
    pub keywords: Vec<String>,
    /// Mentions of inactive sources are rejected at ingest.
    pub is_active: bool,
}

/// Sentiment label; the neutral band is decided by the scorer's confidence and score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SentimentLabel {
    /// Negative.
    Negative,
    /// Neutral (or not confident enough to say).
    Neutral,
    /// Positive.
    Positive,
}

impl SentimentLabel {
    /// The `Enum8` value stored in ClickHouse (-1, 0, 1).
    pub fn code(self) -> i8 {
        match self {
            Self::Negative => -1,
            Self::Neutral => 0,
            Self::Positive => 1,
        }
    }
}

impl From<vigie_udfs::Label> for SentimentLabel {
    fn from(l: vigie_udfs::Label) -> Self {
        match l {
            vigie_udfs::Label::Negative => Self::Negative,
            vigie_udfs::Label::Neutral => Self::Neutral,
            vigie_udfs::Label::Positive => Self::Positive,
        }
    }
}

/// Engagement numbers a scraper may know.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Engagement {
    /// Likes / upvotes.
    pub likes: u64,
    /// Shares / retweets.
    pub shares: u64,
    /// Replies / comments.
    pub replies: u64,
    /// Followers of the author.
    pub author_followers: u64,
}

/// A mention as stored: what the scraper sent plus what vigie derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// Mention id (the client's idempotency key when it supplied one).
    pub id: Uuid,
    /// Owning organisation (from the ingest key).
    pub org_id: Uuid,
    /// Source.
    pub source_id: Uuid,
    /// Text.
    pub text: String,
    /// Author.
    pub author: String,
    /// Link to the original.
    pub url: String,
    /// Event time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Engagement numbers (0 when unknown).
    #[serde(flatten)]
    pub engagement: Engagement,
    /// Detected language (`en`, `fr`, `other`).
    pub lang: String,
    /// Sentiment label.
    pub sentiment: SentimentLabel,
    /// Sentiment score in [-1, 1].
    pub sentiment_score: f64,
    /// Emotions present, strongest first.
    pub emotions: Vec<String>,
    /// Virality in [0, 1].
    pub virality_score: f64,
    /// When vigie scored it.
    #[serde(with = "time::serde::rfc3339")]
    pub analyzed_at: OffsetDateTime,
}

/// Trend granularities: bucket sizes of the trend table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// Hour buckets.
    Hour,
    /// UTC day buckets.
    Day,
    /// ISO weeks (starting Monday, UTC).
    Week,
    /// Calendar months (UTC).
    Month,
}

impl Granularity {
    /// All granularities, in `Enum8` order.
    pub const ALL: [Granularity; 4] = [Self::Hour, Self::Day, Self::Week, Self::Month];

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Hour => 1,
            Self::Day => 2,
            Self::Week => 3,
            Self::Month => 4,
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// Start (UTC, seconds since the epoch) of the bucket holding `t` (seconds since the epoch).
    pub fn bucket_start(self, t: i64) -> i64 {
        const HOUR: i64 = 3600;
        const DAY: i64 = 86_400;
        match self {
            Self::Hour => t.div_euclid(HOUR) * HOUR,
            Self::Day => t.div_euclid(DAY) * DAY,
            // 1970-01-01 was a Thursday; Mondays are 4 days later modulo 7.
            Self::Week => {
                let days = t.div_euclid(DAY);
                (days - (days + 3).rem_euclid(7)) * DAY
            }
            Self::Month => {
                let days = t.div_euclid(DAY);
                let (y, m, _) = civil_from_days(days);
                days_from_civil(y, m, 1) * DAY
            }
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Day count since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One trend row: the state of a (org, granularity, bucket, source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Organisation.
    pub org_id: Uuid,
    /// Bucket size.
    pub granularity: Granularity,
    /// Bucket start (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub bucket: OffsetDateTime,
    /// Source.
    pub source_id: Uuid,
    /// Mentions.
    pub total: u64,
    /// Positive mentions.
    pub positive: u64,
    /// Neutral mentions.
    pub neutral: u64,
    /// Negative mentions.
    pub negative: u64,
    /// Average sentiment score.
    pub avg_sentiment: f64,
    /// Average virality.
    pub avg_virality: f64,
    /// Most frequent emotions, most frequent first.
    pub top_emotions: Vec<String>,
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    /// Worth a look.
    Low,
    /// Needs attention today.
    Medium,
    /// Needs attention now.
    Critical,
}

/// What raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A negative mention going viral.
    CriticalMention,
    /// Volume far above its trailing baseline.
    VolumeSpike,
    /// Average sentiment well below its trailing baseline.
    SentimentDip,
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    /// Just raised.
    New,
    /// Someone saw it.
    Acknowledged,
    /// Being handled.
    InProgress,
    /// Dealt with.
    Resolved,
    /// Not worth acting on.
    Dismissed,
}

/// An alert raised for an organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic id (rule, key, window), so a replayed alert is the same alert.
    pub id: Uuid,
    /// Organisation.
    pub org_id: Uuid,
    /// Rule that fired.
    pub kind: AlertKind,
    /// Severity.
    pub level: AlertLevel,
    /// Status.
    pub status: AlertStatus,
    /// Source concerned, if one.
    pub source_id: Option<Uuid>,
    /// Mention concerned, if one.
    pub mention_id: Option<Uuid>,
    /// Human-readable summary.
    pub message: String,
    /// When it was raised.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// Kinds of response to a mention or alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A public reply.
    Response,
    /// A private message to the author.
    PrivateMessage,
    /// An article or post.
    Article,
}

/// A response someone is assigned to carry out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Action id.
    pub id: Uuid,
    /// Organisation.
    pub org_id: Uuid,
    /// Kind.
    pub kind: ActionKind,
    /// Mention it answers, if any.
    pub mention_id: Option<Uuid>,
    /// Alert it answers, if any.
    pub alert_id: Option<Uuid>,
    /// User assigned.
    pub assigned_to: Option<Uuid>,
    /// What to say or do.
    pub content: String,
    /// When it was done.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

/// A generated report (PDF) over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Report id.
    pub id: Uuid,
    /// Organisation.
    pub org_id: Uuid,
    /// Title.
    pub title: String,
    /// Period start.
    #[serde(with = "time::serde::rfc3339")]
    pub period_start: OffsetDateTime,
    /// Period end.
    #[serde(with = "time::serde::rfc3339")]
    pub period_end: OffsetDateTime,
    /// When it was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn bucket(g: Granularity, t: OffsetDateTime) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(g.bucket_start(t.unix_timestamp())).unwrap()
    }

    #[test]
    fn buckets_start_on_utc_boundaries() {
        let t = datetime!(2026-11-25 13:47:12 UTC); // a Wednesday
        assert_eq!(
            bucket(Granularity::Hour, t),
            datetime!(2026-11-25 13:00 UTC)
        );
        assert_eq!(bucket(Granularity::Day, t), datetime!(2026-11-25 0:00 UTC));
        assert_eq!(bucket(Granularity::Week, t), datetime!(2026-11-23 0:00 UTC));
        assert_eq!(
            bucket(Granularity::Month, t),
            datetime!(2026-11-01 0:00 UTC)
        );
        let before_epoch = datetime!(1969-12-31 23:59:59 UTC);
        assert_eq!(
            bucket(Granularity::Month, before_epoch),
            datetime!(1969-12-01 0:00 UTC)
        );
        assert_eq!(
            bucket(Granularity::Week, before_epoch),
            datetime!(1969-12-29 0:00 UTC)
        );
    }

    #[test]
    fn week_and_month_buckets_match_the_calendar_for_every_day_of_four_years() {
        let mut t = datetime!(2024-01-01 12:00 UTC);
        while t < datetime!(2028-01-01 0:00 UTC) {
            let w = bucket(Granularity::Week, t);
            assert_eq!(w.weekday(), time::Weekday::Monday);
            assert!(t - w < time::Duration::days(7) && w <= t);
            let m = bucket(Granularity::Month, t);
            assert_eq!((m.year(), m.month(), m.day()), (t.year(), t.month(), 1));
            t += time::Duration::hours(13);
        }
    }

    #[test]
    fn source_types_round_trip() {
        for t in SourceType::ALL {
            assert_eq!(SourceType::from_code(t.code()), Some(t));
            assert_eq!(t.as_str().parse::<SourceType>(), Ok(t));
        }
        assert!("myspace".parse::<SourceType>().is_err());
    }
}
