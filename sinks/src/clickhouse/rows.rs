//! One struct per table, field for field with `migrations/0001_init.sql`.
//!
//! Times are `DateTime` seconds (`u32`), enums are `Enum8` (`i8`), as RowBinary encodes them.

use std::borrow::Cow;
use std::sync::Arc;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A row of `organizations`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct OrgRow {
    /// Organisation id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created_at: u32,
    /// Row version (microseconds since the epoch at write time).
    pub version: u64,
}

/// A row of `api_keys`: only the SHA-256 of an ingest key is stored.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ApiKeyRow {
    /// Lowercase hex SHA-256 of the key.
    pub key_hash: String,
    /// The organisation the key belongs to.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Creation time, seconds since the epoch.
    pub created_at: u32,
    /// 1 once revoked.
    pub revoked: u8,
    /// Row version.
    pub version: u64,
}

/// A row of `sources`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SourceRow {
    /// Owning organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Source id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// `Enum8` value of the source type (reddit = 1 … other = 6).
    #[serde(rename = "type")]
    pub kind: i8,
    /// Display name.
    pub name: String,
    /// Keywords watched on this source.
    pub keywords: Vec<String>,
    /// 0 once disabled: ingest then rejects its mentions.
    pub is_active: u8,
    /// Creation time, seconds since the epoch.
    pub created_at: u32,
    /// Row version.
    pub version: u64,
}

/// A row of `mentions`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MentionRow {
    /// Owning organisation (decided by the ingest key, never by the record).
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Mention id (client-supplied idempotency key or generated).
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// Source it was seen on.
    #[serde(with = "clickhouse::serde::uuid")]
    pub source_id: Uuid,
    /// Text as posted (shared with the mention's body: a row copies a pointer).
    pub text: Arc<str>,
    /// Author handle.
    pub author: Arc<str>,
    /// Link to the original.
    pub url: Arc<str>,
    /// Event time, whole seconds since the epoch.
    pub created_at: u32,
    /// Sub-second part of the event time, microseconds.
    pub created_at_us: u32,
    /// Likes (0 when unknown).
    pub likes: u64,
    /// Shares/retweets (0 when unknown).
    pub shares: u64,
    /// Replies (0 when unknown).
    pub replies: u64,
    /// Followers of the author (0 when unknown).
    pub author_followers: u64,
    /// Detected language: `en`, `fr` or `other` (a constant: no allocation per row).
    pub lang: Cow<'static, str>,
    /// `Enum8`: -1 negative, 0 neutral, 1 positive.
    pub sentiment: i8,
    /// Sentiment score in [-1, 1].
    pub sentiment_score: f64,
    /// Confidence of the sentiment in [0, 1].
    pub confidence: f64,
    /// Emotions present, strongest first (names are constants).
    pub emotions: Vec<Cow<'static, str>>,
    /// Virality in [0, 100] (README, "Virality"); rises as later mentions join its story.
    pub virality_score: f64,
    /// Keywords of its source that the text matched (folded), in the source's order.
    pub keywords: Arc<[String]>,
    /// Story it belongs to (hash of its normalised link, or of its normalised text).
    pub story_id: u64,
    /// When the pipeline scored it (the ingest batch time), seconds since the epoch.
    pub analyzed_at: u32,
    /// Dataflow time that produced the row.
    pub version: u64,
}

/// A row of `trends`: the accumulated sums of one (org, granularity, bucket, source).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TrendRow {
    /// Organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// `Enum8`: 1 hour, 2 day, 3 week, 4 month.
    pub granularity: i8,
    /// Bucket start (UTC), seconds since the epoch.
    pub bucket: u32,
    /// Source.
    #[serde(with = "clickhouse::serde::uuid")]
    pub source_id: Uuid,
    /// Mentions in the bucket (0 when the last one was retracted).
    pub total: u64,
    /// Positive mentions.
    pub positive: u64,
    /// Neutral mentions.
    pub neutral: u64,
    /// Negative mentions.
    pub negative: u64,
    /// Sum of sentiment scores (average = sum / total).
    pub sentiment_sum: f64,
    /// Sum of virality scores.
    pub virality_sum: f64,
    /// Mentions expressing anger.
    pub anger: u64,
    /// … anticipation.
    pub anticipation: u64,
    /// … disgust.
    pub disgust: u64,
    /// … fear.
    pub fear: u64,
    /// … joy.
    pub joy: u64,
    /// … sadness.
    pub sadness: u64,
    /// … surprise.
    pub surprise: u64,
    /// … trust.
    pub trust: u64,
    /// Up to three most frequent emotions, most frequent first.
    pub top_emotions: Vec<String>,
    /// Dataflow time that produced the row.
    pub version: u64,
}

/// A row of `keyword_trends`: a [`TrendRow`] per keyword instead of per source.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct KeywordTrendRow {
    /// Organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// `Enum8`: 1 hour, 2 day, 3 week, 4 month.
    pub granularity: i8,
    /// Bucket start (UTC), seconds since the epoch.
    pub bucket: u32,
    /// Keyword, as its source spells it.
    pub keyword: String,
    /// Mentions in the bucket that matched the keyword (0 when the last one was retracted).
    pub total: u64,
    /// Positive mentions.
    pub positive: u64,
    /// Neutral mentions.
    pub neutral: u64,
    /// Negative mentions.
    pub negative: u64,
    /// Sum of sentiment scores (average = sum / total).
    pub sentiment_sum: f64,
    /// Sum of virality scores.
    pub virality_sum: f64,
    /// Mentions per emotion, in Plutchik order (anger, anticipation, disgust, fear, joy,
    /// sadness, surprise, trust).
    pub emotions: Vec<u64>,
    /// Up to three most frequent emotions, most frequent first.
    pub top_emotions: Vec<String>,
    /// Dataflow time that produced the row.
    pub version: u64,
}

impl KeywordTrendRow {
    /// The keyword row with the values of a trend row.
    pub fn from_trend(t: TrendRow, keyword: String) -> KeywordTrendRow {
        KeywordTrendRow {
            org_id: t.org_id,
            granularity: t.granularity,
            bucket: t.bucket,
            keyword,
            total: t.total,
            positive: t.positive,
            neutral: t.neutral,
            negative: t.negative,
            sentiment_sum: t.sentiment_sum,
            virality_sum: t.virality_sum,
            emotions: vec![
                t.anger,
                t.anticipation,
                t.disgust,
                t.fear,
                t.joy,
                t.sadness,
                t.surprise,
                t.trust,
            ],
            top_emotions: t.top_emotions,
            version: t.version,
        }
    }
}

/// The `(org_id, id)` of a mention to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MentionRef {
    /// Organisation.
    pub org_id: Uuid,
    /// Mention id.
    pub id: Uuid,
}
