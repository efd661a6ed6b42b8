//! Scoring stage: each mention gets language, sentiment, emotions and virality from the
//! pure functions of `vigie-udfs`. Scoring is deterministic, so a retraction re-scores to
//! exactly the record it cancels.

use differential_dataflow::VecCollection;
use timely::progress::Timestamp;
use vigie_udfs::{Lang, ScoreConfig};

use super::records::{to_micros, MentionBody, MentionKey, Scored};

/// Scores one mention.
pub fn score_one(key: MentionKey, body: MentionBody, cfg: &ScoreConfig) -> Scored {
    let s = vigie_udfs::score(&body.text, cfg);
    let e = &body.engagement;
    let virality = vigie_udfs::virality(&vigie_udfs::Engagement {
        likes: e.likes,
        shares: e.shares,
        replies: e.replies,
        author_followers: e.author_followers,
    });
    Scored {
        key,
        lang: match s.lang {
            Lang::Other => 0,
            Lang::En => 1,
            Lang::Fr => 2,
        },
        label: crate::domain::SentimentLabel::from(s.sentiment.label).code(),
        score: to_micros(s.sentiment.score),
        confidence: to_micros(s.sentiment.confidence),
        emotions: s
            .emotions
            .0
            .map(|w| (w.clamp(0.0, 1.0) * 1000.0).round() as u16),
        virality: to_micros(virality),
        body,
    }
}

/// Language code of [`Scored::lang`] as a string.
pub fn lang_str(code: u8) -> &'static str {
    match code {
        1 => "en",
        2 => "fr",
        _ => "other",
    }
}

/// The scoring stage.
pub fn score<'s, T: Timestamp>(
    mentions: VecCollection<'s, T, (MentionKey, MentionBody)>,
    cfg: ScoreConfig,
) -> VecCollection<'s, T, Scored> {
    mentions.map(move |(key, body)| score_one(key, body, &cfg))
}
