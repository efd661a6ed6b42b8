//! Pure scoring functions of vigie: language, sentiment, emotions, virality.
//!
//! No I/O, no global state, deterministic: the same text always gives bit-identical
//! scores, which the dataflow relies on (a retraction re-scores to exactly the record it
//! cancels). The dataflow and the Arroyo UDF plugins both call these functions.
//!
//! The lexicons are published resources (VADER, VADER-fr, AFINN-165, the French AFINN, the
//! Emoji Sentiment Ranking, optionally NRC EmoLex) plus vigie's curated entries, compiled into
//! one perfect-hash table at build time (`build.rs`, `lexicons/`); the rules are VADER's,
//! made bilingual (`sentiment.rs`). Scoring allocates nothing per token.
#![deny(missing_docs)]

mod lang;
mod lexicon;
mod norm;
#[cfg(feature = "onnx")]
pub mod onnx;
mod sentiment;
mod text;
pub mod virality;

/// Detected language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    /// English.
    En,
    /// French.
    Fr,
    /// Anything else (or not enough evidence).
    Other,
}

impl Lang {
    /// `en`, `fr` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
            Lang::Other => "other",
        }
    }
}

/// Sentiment label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// Negative.
    Negative,
    /// Neutral, or not confident enough to say.
    Neutral,
    /// Positive.
    Positive,
}

impl Label {
    /// `negative`, `neutral` or `positive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Negative => "negative",
            Label::Neutral => "neutral",
            Label::Positive => "positive",
        }
    }
}

/// Plutchik's eight basic emotions, in this order (index = discriminant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Emotion {
    /// Anger.
    Anger,
    /// Anticipation.
    Anticipation,
    /// Disgust.
    Disgust,
    /// Fear.
    Fear,
    /// Joy.
    Joy,
    /// Sadness.
    Sadness,
    /// Surprise.
    Surprise,
    /// Trust.
    Trust,
}

impl Emotion {
    /// All eight, in index order.
    pub const ALL: [Emotion; 8] = [
        Emotion::Anger,
        Emotion::Anticipation,
        Emotion::Disgust,
        Emotion::Fear,
        Emotion::Joy,
        Emotion::Sadness,
        Emotion::Surprise,
        Emotion::Trust,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Emotion::Anger => "anger",
            Emotion::Anticipation => "anticipation",
            Emotion::Disgust => "disgust",
            Emotion::Fear => "fear",
            Emotion::Joy => "joy",
            Emotion::Sadness => "sadness",
            Emotion::Surprise => "surprise",
            Emotion::Trust => "trust",
        }
    }

    /// Position in [`Emotion::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A sentiment score with its label and confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentiment {
    /// Score in [-1, 1].
    pub score: f64,
    /// Label (neutral inside the band or below the confidence threshold).
    pub label: Label,
    /// Confidence in [0, 1]: grows with the evidence (sentiment-bearing tokens, strength).
    pub confidence: f64,
}

/// Per-emotion weights in [0, 1], indexed by [`Emotion::index`]; 0 = absent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EmotionScores(pub [f32; 8]);

impl EmotionScores {
    /// Bit i set when emotion i is present.
    pub fn mask(&self) -> u8 {
        self.0
            .iter()
            .enumerate()
            .fold(0u8, |m, (i, w)| if *w > 0.0 { m | (1 << i) } else { m })
    }

    /// Present emotions, strongest first (ties in index order).
    pub fn present(&self) -> impl Iterator<Item = (Emotion, f32)> + '_ {
        let mut idx: Vec<usize> = (0..8).filter(|&i| self.0[i] > 0.0).collect();
        idx.sort_by(|&a, &b| self.0[b].total_cmp(&self.0[a]).then(a.cmp(&b)));
        idx.into_iter().map(|i| (Emotion::ALL[i], self.0[i]))
    }
}

/// Everything the scorer says about a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Language.
    pub lang: Lang,
    /// Sentiment.
    pub sentiment: Sentiment,
    /// Emotions.
    pub emotions: EmotionScores,
}

/// Tunables of the scorer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreConfig {
    /// Scores with |score| below this are neutral.
    pub neutral_band: f64,
    /// Scores with confidence below this are neutral.
    pub min_confidence: f64,
    /// Factor applied to a text whose last clause is a question (questions mostly ask
    /// rather than judge).
    pub question_damping: f64,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        // Chosen by a grid search on the tune halves of eval/data and the public English
        // sets (README.md, "Evaluation"); the holdout halves were not used.
        Self {
            neutral_band: 0.05,
            min_confidence: 0.3,
            question_damping: 0.1,
        }
    }
}

/// A reusable scorer: holds the token buffer so scoring allocates nothing once warm.
/// The free functions ([`score`], …) use one per thread.
#[derive(Debug, Default)]
pub struct Scorer {
    toks: Vec<text::Tok>,
}

impl Scorer {
    /// A scorer with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Language, sentiment and emotions in one pass over the tokens.
    pub fn score(&mut self, text: &str, cfg: &ScoreConfig) -> Scores {
        let st = text::tokenize(text, &mut self.toks);
        let (lang, _) = lang::detect(text, &st);
        let (sentiment, emotions) = sentiment::both(&self.toks, &st, lang, cfg);
        Scores {
            lang,
            sentiment,
            emotions,
        }
    }

    /// Language of `text`.
    pub fn detect_language(&mut self, text: &str) -> Lang {
        self.detect_language_traced(text).0
    }

    /// Language of `text`, and whether the trigram model (`whatlang`) had to be asked
    /// (function words and lexicon hits decide most texts without it).
    pub fn detect_language_traced(&mut self, text: &str) -> (Lang, bool) {
        let st = text::tokenize(text, &mut self.toks);
        lang::detect(text, &st)
    }

    /// Sentiment of `text` read as `lang` (for [`Lang::Other`] only emoji and emoticons
    /// count).
    pub fn sentiment(&mut self, text: &str, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
        let st = text::tokenize(text, &mut self.toks);
        sentiment::sentiment(&self.toks, &st, lang, cfg)
    }

    /// Emotions of `text` read as `lang`.
    pub fn emotions(&mut self, text: &str, lang: Lang) -> EmotionScores {
        let st = text::tokenize(text, &mut self.toks);
        sentiment::emotions(&self.toks, &st, lang)
    }
}

thread_local! {
    static SCORER: std::cell::RefCell<Scorer> = std::cell::RefCell::new(Scorer::new());
}

fn with_scorer<R>(f: impl FnOnce(&mut Scorer) -> R) -> R {
    SCORER.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scorer::new()), // re-entrant use: a fresh buffer
    })
}

/// Language of `text`: English, French or other.
pub fn detect_language(text: &str) -> Lang {
    with_scorer(|s| s.detect_language(text))
}

/// Sentiment of `text` read as `lang` (for [`Lang::Other`] only emoji and emoticons count).
pub fn sentiment(text: &str, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
    with_scorer(|s| s.sentiment(text, lang, cfg))
}

/// Emotions of `text` read as `lang`: weight = share of the strongest emotion's cues.
pub fn emotions(text: &str, lang: Lang) -> EmotionScores {
    with_scorer(|s| s.emotions(text, lang))
}

/// Language, sentiment and emotions in one pass over the tokens.
pub fn score(text: &str, cfg: &ScoreConfig) -> Scores {
    with_scorer(|s| s.score(text, cfg))
}

/// Engagement counts of a mention; all optional on the wire, 0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

/// The engagement component of virality in [0, 1] ([`virality::engagement_score`]): what a
/// mention's virality is before its story's velocity is known (the Arroyo `virality` UDF).
pub fn virality(e: &Engagement) -> f64 {
    virality::engagement_score(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Sentiment {
        score(text, &ScoreConfig::default()).sentiment
    }

    #[test]
    fn languages_are_told_apart() {
        assert_eq!(detect_language("I love this, it is the best"), Lang::En);
        assert_eq!(
            detect_language("Franchement c'est nul, très déçu"),
            Lang::Fr
        );
        assert_eq!(detect_language("😍😍"), Lang::Other);
        assert_eq!(detect_language(""), Lang::Other);
    }

    #[test]
    fn polarity_in_both_languages() {
        assert_eq!(s("I love this, amazing product").label, Label::Positive);
        assert_eq!(
            s("worst support ever, totally useless").label,
            Label::Negative
        );
        assert_eq!(s("J'adore, vraiment génial !").label, Label::Positive);
        assert_eq!(s("Franchement c'est nul, très déçu").label, Label::Negative);
        assert_eq!(
            s("Anyone know when it ships to Canada?").label,
            Label::Neutral
        );
    }

    #[test]
    fn unknown_languages_are_not_read_with_english_rules() {
        let x = score(
            "El servicio es terrible, nunca más lo compro",
            &ScoreConfig::default(),
        );
        assert_eq!(x.lang, Lang::Other);
        assert_eq!(x.sentiment.label, Label::Neutral);
        let x = score("Это ужасный сервис", &ScoreConfig::default());
        assert_eq!(x.lang, Lang::Other);
    }

    #[test]
    fn slang_and_idioms_in_both_languages() {
        assert_eq!(s("ngl this update is mid").label, Label::Negative);
        assert_eq!(s("wtf is this pricing").label, Label::Negative);
        assert_eq!(s("c'est relou ce bug").label, Label::Negative);
        assert_eq!(s("le nouveau forfait est top").label, Label::Positive);
        assert_eq!(s("c'est pas mal du tout").label, Label::Positive);
        assert_eq!(s("c'est pas terrible cette appli").label, Label::Negative);
        assert_eq!(s("rien à redire, service parfait").label, Label::Positive);
        assert_eq!(s("no complaints so far").label, Label::Positive);
    }

    #[test]
    fn elongations_are_read_and_emphasise() {
        assert_eq!(s("c'est nuuuul").label, Label::Negative);
        assert!(s("this is sooo goooood").score > s("this is good").score);
    }

    #[test]
    fn negation_flips_polarity_en() {
        assert!(s("this is good").score > 0.0);
        assert!(s("this is not good").score < 0.0);
        assert!(s("I never liked it").score < 0.0);
        // The scope ends at a clause break.
        assert!(s("not again. great product").score > 0.0);
    }

    #[test]
    fn ne_pas_flips_polarity_fr() {
        assert!(s("je suis content de ce produit").score > 0.0);
        assert!(s("je ne suis pas content de ce produit").score < 0.0);
        assert!(s("c'est pas terrible").score < 0.0);
        assert!(s("je n'aime pas du tout").score < 0.0);
        assert!(s("jamais déçu par ce service").score > 0.0);
    }

    #[test]
    fn accents_are_optional_in_french() {
        assert_eq!(
            s("très déçu du produit").score,
            s("tres decu du produit").score
        );
    }

    #[test]
    fn intensifiers_caps_and_bangs_strengthen() {
        let base = s("this is good").score;
        assert!(s("this is very good").score > base);
        assert!(s("this is GOOD").score > base);
        assert!(s("this is good!!!").score > base);
    }

    #[test]
    fn the_clause_after_but_weighs_more() {
        assert!(s("the design is good but the battery is terrible").score < 0.0);
        assert!(s("le design est nul mais la batterie est géniale").score > 0.0);
    }

    #[test]
    fn emoji_only_mentions_are_scored() {
        let sc = score("😍😍🔥", &ScoreConfig::default());
        assert_eq!(sc.lang, Lang::Other);
        assert_eq!(sc.sentiment.label, Label::Positive);
        assert_eq!(
            score("😡👎", &ScoreConfig::default()).sentiment.label,
            Label::Negative
        );
    }

    #[test]
    fn hashtag_words_are_scored() {
        assert!(s("new phone #LoveIt").score > 0.0);
        assert!(s("second outage this week #fail #worst").score < 0.0);
    }

    #[test]
    fn urls_and_mentions_are_ignored() {
        assert_eq!(s("@love see https://love.com/great"), s("see"));
    }

    #[test]
    fn empty_text_is_neutral_with_zero_confidence() {
        let x = s("");
        assert_eq!((x.score, x.label, x.confidence), (0.0, Label::Neutral, 0.0));
    }

    #[test]
    fn emoji_emotions_need_no_optional_lexicon() {
        let e = emotions("love it 😍 but a bit scared 😱", Lang::En);
        assert!(e.0[Emotion::Joy.index()] > 0.0);
        assert!(e.0[Emotion::Fear.index()] > 0.0);
        assert_eq!(
            emotions("🤮", Lang::Other).mask(),
            1 << Emotion::Disgust.index()
        );
    }

    #[cfg(feature = "nrc-emolex")]
    #[test]
    fn emolex_emotions_are_detected_weighted_and_negation_aware() {
        let e = emotions("so happy, love it 😍 but a bit afraid", Lang::En);
        let present: Vec<Emotion> = e.present().map(|(e, _)| e).collect();
        assert_eq!(present.first(), Some(&Emotion::Joy), "{e:?}");
        assert!(present.contains(&Emotion::Fear));
        assert_eq!(e.0[Emotion::Joy.index()], 1.0);
        assert_eq!(emotions("not happy", Lang::En).0[Emotion::Joy.index()], 0.0);
        assert!(emotions("très déçu et triste", Lang::Fr).0[Emotion::Sadness.index()] > 0.0);
    }

    #[test]
    fn virality_is_monotone_and_bounded() {
        assert_eq!(virality(&Engagement::default()), 0.0);
        let mut prev = 0.0;
        for k in 0..200u64 {
            let v = virality(&Engagement {
                likes: k * 10,
                shares: k,
                replies: k,
                author_followers: 1000,
            });
            assert!(v >= prev && (0.0..=1.0).contains(&v));
            prev = v;
        }
        let base = Engagement {
            likes: 5,
            shares: 5,
            replies: 5,
            author_followers: 5,
        };
        assert!(
            virality(&Engagement { shares: 6, ..base })
                > virality(&Engagement { likes: 6, ..base })
        );
    }

    #[test]
    fn never_panics_and_stays_in_bounds_on_odd_input() {
        let cfg = ScoreConfig::default();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet: Vec<char> = "aéZ !?.,'#@:)(😍😡👍\u{0}\u{200b}ÿ𝔘nepasnotgood"
            .chars()
            .collect();
        for len in 0..400 {
            let text: String = (0..len % 60)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let a = score(&text, &cfg);
            let b = score(&text, &cfg);
            assert_eq!(a, b, "deterministic");
            assert!(
                (-1.0..=1.0).contains(&a.sentiment.score)
                    && (0.0..=1.0).contains(&a.sentiment.confidence),
                "{text:?}"
            );
            assert!(a.emotions.0.iter().all(|w| (0.0..=1.0).contains(w)));
        }
    }
}
