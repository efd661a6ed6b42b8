//! Scoring stage: each mention gets language, sentiment, emotions and virality from the
//! pure functions of `vigie-udfs`. Scoring is deterministic, so a retraction re-scores to
//! exactly the record it cancels.

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Operator;
use timely::progress::Timestamp;
use vigie_udfs::{Lang, ScoreConfig, Scores};

use std::sync::Arc;

use super::records::{to_micros, MentionBody, MentionKey, Scored};
use crate::scoring::{BatchScorer, ScorerChoice};

/// How the graph scores mentions; every worker builds its own scorer from it.
#[derive(Debug, Clone)]
pub struct ScoringSpec {
    /// The sentiment scorer.
    pub scorer: ScorerChoice,
    /// Thresholds of the lexicon scorer.
    pub config: ScoreConfig,
}

impl Default for ScoringSpec {
    fn default() -> Self {
        Self {
            scorer: ScorerChoice::Lexicon,
            config: ScoreConfig::default(),
        }
    }
}

/// Scores one mention with the lexicon scorer.
pub fn score_one(key: MentionKey, body: Arc<MentionBody>, cfg: &ScoreConfig) -> Scored {
    let s = vigie_udfs::score(&body.text, cfg);
    scored(key, body, &s)
}

/// The scored record of a mention, from its scores.
pub fn scored(key: MentionKey, body: Arc<MentionBody>, s: &Scores) -> Scored {
    let story = vigie_udfs::virality::story_key(&body.text);
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
        story,
        velocity: 0,
        virality: 0,
        body,
    }
    .with_velocity(0)
}

/// Language code of [`Scored::lang`] as a string.
pub fn lang_str(code: u8) -> &'static str {
    match code {
        1 => "en",
        2 => "fr",
        _ => "other",
    }
}

/// The scoring stage. The lexicon scorer runs record by record; a model scorer (ONNX)
/// runs on each batch of records the operator receives, in one call.
///
/// A scorer that cannot be built or fails on a batch stops the worker (a panic): its input
/// is in the write-ahead log, and dropping or mis-scoring a batch would break the exact
/// cancellation of later retractions.
pub fn score<'s, T: Timestamp>(
    mentions: VecCollection<'s, T, (MentionKey, Arc<MentionBody>)>,
    spec: ScoringSpec,
) -> VecCollection<'s, T, Scored> {
    let cfg = spec.config;
    if spec.scorer == ScorerChoice::Lexicon {
        return mentions.map(move |(key, body)| score_one(key, body, &cfg));
    }
    mentions
        .inner
        .unary(Pipeline, "ScoreBatched", move |_, _| {
            let mut scorer = BatchScorer::new(&spec.scorer, cfg)
                .unwrap_or_else(|e| panic!("cannot build the scorer: {e:#}"));
            move |input, output| {
                input.for_each(|time, data| {
                    let texts: Vec<&str> = data.iter().map(|((_, b), _, _)| &*b.text).collect();
                    let scores = scorer.score_batch(&texts).unwrap_or_else(|e| {
                        panic!("scoring a batch of {} failed: {e:#}", texts.len())
                    });
                    let mut out: Vec<(Scored, T, isize)> = data
                        .drain(..)
                        .zip(scores)
                        .map(|(((k, b), t, r), s)| (scored(k, b, &s), t, r))
                        .collect();
                    output.session(&time).give_container(&mut out);
                });
            }
        })
        .as_collection()
}
