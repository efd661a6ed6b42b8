//! Compact, totally ordered records the dataflow moves around.
//!
//! Floats are carried as fixed-point integers (micro-units) so that sums are exact, a
//! retraction cancels its insertion bit for bit, and records can be `Ord`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Engagement, Granularity};

/// Identity of a mention: unique per organisation.
///
/// `Hash` covers only the organisation, so every record keyed by it is exchanged to the
/// worker that owns the organisation ("data exchanged by org").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MentionKey {
    /// Organisation.
    pub org: Uuid,
    /// Mention id.
    pub id: Uuid,
}

impl Hash for MentionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.org.hash(state);
    }
}

/// What a scraper said about a mention (everything but the derived scores).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MentionBody {
    /// Source.
    pub source: Uuid,
    /// Event time, microseconds since the epoch.
    pub created_at_us: i64,
    /// Text (shared: the record is copied by every stage and by arrangement merges, its
    /// strings are not).
    pub text: Arc<str>,
    /// Author.
    pub author: Arc<str>,
    /// Link.
    pub url: Arc<str>,
    /// Engagement numbers.
    pub engagement: Engagement,
    /// Keywords of the source the text matched, as the source spells them (decided at
    /// ingest from the source's keywords then, so a replay matches the same ones).
    pub keywords: Arc<[String]>,
}

/// Fixed-point scale of scores: 1.0 is 1_000_000.
pub const MICROS: f64 = 1_000_000.0;

/// Converts a score in [-1, 1] (or [0, 1]) to micro-units.
pub fn to_micros(x: f64) -> i32 {
    if x.is_finite() {
        (x.clamp(-1.0, 1.0) * MICROS).round() as i32
    } else {
        0
    }
}

/// Virality in [0, 100] as micro-units.
pub fn virality_micros(v: f64) -> i32 {
    if v.is_finite() {
        (v.clamp(0.0, 100.0) * MICROS).round() as i32
    } else {
        0
    }
}

/// A mention with its scores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Scored {
    /// Identity.
    pub key: MentionKey,
    /// As sent (shared: stages and arrangement merges copy the pointer, not the body).
    pub body: Arc<MentionBody>,
    /// Language code: 0 other, 1 en, 2 fr.
    pub lang: u8,
    /// -1 negative, 0 neutral, 1 positive.
    pub label: i8,
    /// Sentiment score, micro-units.
    pub score: i32,
    /// Confidence, micro-units.
    pub confidence: i32,
    /// Emotion weights in thousandths, indexed like `vigie_udfs::Emotion::ALL`.
    pub emotions: [u16; 8],
    /// Story (`vigie_udfs::virality::story_key`).
    pub story: u64,
    /// Velocity of the story around this mention, thousandths (0 until the virality stage).
    pub velocity: u16,
    /// Virality in [0, 100], micro-units (quantised to tenths of a point).
    pub virality: i32,
}

impl Scored {
    /// The engagement component of its virality, in [0, 1].
    pub fn engagement_score(&self) -> f64 {
        let e = &self.body.engagement;
        vigie_udfs::virality::engagement_score(&vigie_udfs::Engagement {
            likes: e.likes,
            shares: e.shares,
            replies: e.replies,
            author_followers: e.author_followers,
        })
    }

    /// The same mention with the given story velocity (thousandths) and the virality it
    /// implies.
    pub fn with_velocity(mut self, velocity: u16) -> Scored {
        self.velocity = velocity;
        self.virality = virality_micros(vigie_udfs::virality::combine(
            self.engagement_score(),
            velocity,
        ));
        self
    }

    /// Event time in whole seconds.
    pub fn created_at_secs(&self) -> i64 {
        self.body.created_at_us.div_euclid(1_000_000)
    }

    /// This mention's contribution to any trend it falls in.
    pub fn sums(&self) -> Sums {
        let mut emotions = [0i64; 8];
        for (slot, w) in emotions.iter_mut().zip(self.emotions) {
            *slot = i64::from(w > 0);
        }
        Sums {
            n: 1,
            positive: i64::from(self.label > 0),
            neutral: i64::from(self.label == 0),
            negative: i64::from(self.label < 0),
            sentiment: i64::from(self.score),
            virality: i64::from(self.virality),
            emotions,
        }
    }

    /// Emotion names present, strongest first (ties in Plutchik order).
    pub fn emotion_names(&self) -> Vec<std::borrow::Cow<'static, str>> {
        let mut present: Vec<(u16, usize)> = self
            .emotions
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .map(|(i, w)| (*w, i))
            .collect();
        present.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        present
            .into_iter()
            .map(|(_, i)| vigie_udfs::Emotion::ALL[i].as_str().into())
            .collect()
    }
}

/// Identity of a trend row. `Hash` covers only the organisation (see [`MentionKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TrendKey {
    /// Organisation.
    pub org: Uuid,
    /// Bucket size.
    pub granularity: Granularity,
    /// Bucket start, seconds since the epoch (UTC).
    pub bucket: i64,
    /// Source.
    pub source: Uuid,
}

impl Hash for TrendKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.org.hash(state);
    }
}

/// Identity of a keyword trend row. `Hash` covers only the organisation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeywordTrendKey {
    /// Organisation.
    pub org: Uuid,
    /// Bucket size.
    pub granularity: Granularity,
    /// Bucket start, seconds since the epoch (UTC).
    pub bucket: i64,
    /// Keyword, as its source spells it.
    pub keyword: String,
}

impl Hash for KeywordTrendKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.org.hash(state);
    }
}

/// Everything a trend row accumulates. It is the *difference type* of the trend
/// collection: adding a mention adds its `Sums`, retracting it adds the negation, so
/// trends are maintained without keeping mentions per key (DESIGN.md, "aggregates as
/// differences").
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Sums {
    /// Mentions.
    pub n: i64,
    /// Positive mentions.
    pub positive: i64,
    /// Neutral mentions.
    pub neutral: i64,
    /// Negative mentions.
    pub negative: i64,
    /// Sum of sentiment scores, micro-units.
    pub sentiment: i64,
    /// Sum of virality, micro-units.
    pub virality: i64,
    /// Mentions per emotion, indexed like `vigie_udfs::Emotion::ALL`.
    pub emotions: [i64; 8],
}

impl Sums {
    /// Up to three emotions with the highest counts, most frequent first.
    pub fn top_emotions(&self) -> Vec<String> {
        let mut idx: Vec<usize> = (0..8).filter(|&i| self.emotions[i] > 0).collect();
        idx.sort_by(|&a, &b| self.emotions[b].cmp(&self.emotions[a]).then(a.cmp(&b)));
        idx.into_iter()
            .take(3)
            .map(|i| vigie_udfs::Emotion::ALL[i].as_str().to_string())
            .collect()
    }
}

impl IsZero for Sums {
    fn is_zero(&self) -> bool {
        *self == Sums::default()
    }
}

impl Semigroup for Sums {
    fn plus_equals(&mut self, rhs: &Self) {
        self.n += rhs.n;
        self.positive += rhs.positive;
        self.neutral += rhs.neutral;
        self.negative += rhs.negative;
        self.sentiment += rhs.sentiment;
        self.virality += rhs.virality;
        for (a, b) in self.emotions.iter_mut().zip(rhs.emotions) {
            *a += b;
        }
    }
}

impl Monoid for Sums {
    fn zero() -> Self {
        Sums::default()
    }
}

impl Abelian for Sums {
    fn negate(&mut self) {
        *self = self.multiply(&-1);
    }
}

impl Multiply<isize> for Sums {
    type Output = Sums;
    fn multiply(self, rhs: &isize) -> Sums {
        let k = *rhs as i64;
        Sums {
            n: self.n * k,
            positive: self.positive * k,
            neutral: self.neutral * k,
            negative: self.negative * k,
            sentiment: self.sentiment * k,
            virality: self.virality * k,
            emotions: self.emotions.map(|e| e * k),
        }
    }
}

/// What a window rule or an alert is about, inside one organisation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WindowKey {
    /// The whole organisation.
    Org,
    /// One source.
    Source(Uuid),
    /// One keyword (as the source spells it).
    Keyword(String),
}

/// Window rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WindowRule {
    /// Volume spike.
    Spike,
    /// Sentiment dip.
    Dip,
}

/// A window whose rule condition holds, with its numbers (the windows stage's output: the
/// set of such windows, maintained incrementally).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Firing {
    /// Organisation.
    pub org: Uuid,
    /// Rule whose condition holds.
    pub rule: WindowRule,
    /// What is counted.
    pub key: WindowKey,
    /// Window end (exclusive), seconds since the epoch, on a minute boundary.
    pub end: i64,
    /// Window length, seconds.
    pub length: i64,
    /// Observed value, thousandths (mentions, or negative share).
    pub observed: i64,
    /// Baseline, thousandths (hourly mean, or baseline negative share).
    pub baseline: i64,
    /// Threshold the observation crossed, thousandths.
    pub threshold: i64,
    /// Some of the counted mentions, newest first.
    pub sample: Vec<Uuid>,
}

/// An alert raised by the graph (never retracted: an alert, once raised, stays).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Deterministic id of (organisation, rule, key, window).
    pub id: Uuid,
    /// Organisation.
    pub org: Uuid,
    /// `vigie_sinks::alert::AlertType` code.
    pub kind: i8,
    /// `vigie_sinks::alert::Level` code.
    pub level: i8,
    /// What it is about.
    pub key: AlertKey,
    /// Source concerned, if one.
    pub source: Option<Uuid>,
    /// Observed value, thousandths.
    pub observed: i64,
    /// Baseline, thousandths.
    pub baseline: i64,
    /// Threshold, thousandths.
    pub threshold: i64,
    /// Event-time window start, seconds.
    pub window_start: i64,
    /// Event-time window end (exclusive), seconds.
    pub window_end: i64,
    /// Triggering mentions.
    pub mention_ids: Vec<Uuid>,
    /// Human-readable summary.
    pub message: String,
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertKey {
    /// A window key.
    Window(WindowKey),
    /// A story.
    Story(u64),
}

/// What the graph hands to the sinks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Change {
    /// A scored mention (+1 present, -1 retracted).
    Mention(Scored),
    /// The accumulated sums of a trend row (+1 current value, -1 previous value).
    Trend(TrendKey, Sums),
    /// The accumulated sums of a keyword trend row.
    KeywordTrend(KeywordTrendKey, Sums),
    /// A raised alert (+1 only).
    Alert(AlertRecord),
}

/// Mentions for unit tests: one organisation, one source.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{MentionBody, MentionKey};
    use crate::domain::Engagement;
    use uuid::Uuid;

    /// Mention `i` of organisation 1.
    pub fn key(i: u128) -> MentionKey {
        MentionKey {
            org: Uuid::from_u128(1),
            id: Uuid::from_u128(i),
        }
    }

    /// A body of source 2 with `text`.
    pub fn body(text: &str) -> MentionBody {
        MentionBody {
            source: Uuid::from_u128(2),
            created_at_us: 1_790_000_000_000_000,
            text: text.into(),
            author: "@a".into(),
            url: "https://e.com".into(),
            engagement: Engagement::default(),
            keywords: Vec::new().into(),
        }
    }
}
