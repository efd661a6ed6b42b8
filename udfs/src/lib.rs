//! Pure scoring functions of vigie: language, sentiment, emotions, virality.
//!
//! No I/O, no global state, deterministic: the same text always gives bit-identical
//! scores, which the dataflow relies on (a retraction re-scores to exactly the record it
//! cancels). The dataflow and the Arroyo UDF plugins both call these functions.
//!
//! This is the first scorer: a small curated English/French lexicon with VADER-style rules
//! (negation scope, intensifiers, contrast, capitals, exclamation, emoji). The scoring
//! issue replaces the lexicons with published ones and measures them.
#![deny(missing_docs)]

mod lexicon;
pub mod text;

use text::Token;

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
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            neutral_band: 0.05,
            min_confidence: 0.2,
        }
    }
}

/// Language from function words, lexicon hits and French diacritics.
pub fn detect_language(text: &str) -> Lang {
    let (tokens, _) = text::tokenize(text);
    detect_tokens(text, &tokens)
}

fn detect_tokens(text: &str, tokens: &[Token]) -> Lang {
    let (mut en, mut fr) = (0.0f32, 0.0f32);
    for t in tokens {
        if let Token::Word { norm, .. } = t {
            match lexicon::stopword(norm) {
                Some(Lang::En) => en += 1.0,
                Some(Lang::Fr) => fr += 1.0,
                _ => {}
            }
            if lexicon::en(norm).is_some() {
                en += 0.5;
            }
            if lexicon::fr(norm).is_some() {
                fr += 0.5;
            }
        }
    }
    fr += 0.5
        * text
            .chars()
            .filter(|c| {
                matches!(
                    c,
                    'é' | 'è' | 'ê' | 'à' | 'ç' | 'ù' | 'â' | 'î' | 'ô' | 'û' | 'É'
                )
            })
            .count() as f32;
    if en > fr && en >= 1.0 {
        Lang::En
    } else if fr > en && fr >= 1.0 {
        Lang::Fr
    } else {
        Lang::Other
    }
}

fn valence(token: &Token, lang: Lang) -> Option<f32> {
    match token {
        Token::Emoji(e) => lexicon::emoji(e),
        Token::Word { norm, .. } => match lang {
            Lang::En => lexicon::en(norm),
            Lang::Fr => lexicon::fr(norm),
            Lang::Other => None,
        },
        Token::Break => None,
    }
}

/// Sentiment of `text` read as `lang` (for [`Lang::Other`] only emoji and emoticons count).
pub fn sentiment(text: &str, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
    let (tokens, bangs) = text::tokenize(text);
    sentiment_tokens(&tokens, bangs, lang, cfg)
}

fn sentiment_tokens(tokens: &[Token], bangs: u32, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
    let all_caps = tokens
        .iter()
        .all(|t| matches!(t, Token::Word { caps: true, .. }) || !matches!(t, Token::Word { .. }));
    let mut before = 0.0f32; // sum before the last contrast word
    let mut after = 0.0f32;
    let mut contrast = false;
    let mut hits = 0u32;
    let mut negate_left = 0u32; // tokens still inside a negation's scope
    let mut boost = 1.0f32;
    for t in tokens {
        if let Token::Break = t {
            negate_left = 0;
            boost = 1.0;
            continue;
        }
        if let Token::Word { norm, .. } = t {
            if lexicon::is_contrast(norm, lang) {
                contrast = true;
                before += after;
                after = 0.0;
                negate_left = 0;
                continue;
            }
            if lexicon::is_negator(norm, lang) {
                negate_left = 3;
                continue;
            }
            if let Some(m) = lexicon::modifier(norm, lang) {
                boost *= m;
                continue;
            }
        }
        let Some(mut v) = valence(t, lang) else {
            negate_left = negate_left.saturating_sub(1);
            continue;
        };
        if let Token::Word { caps: true, .. } = t {
            if !all_caps {
                v += 0.733 * v.signum();
            }
        }
        v *= boost;
        boost = 1.0;
        if negate_left > 0 && matches!(t, Token::Word { .. }) {
            v *= -0.74;
        }
        negate_left = negate_left.saturating_sub(1);
        hits += 1;
        after += v;
    }
    let mut sum = if contrast {
        0.5 * before + 1.5 * after
    } else {
        after
    };
    if sum != 0.0 {
        sum += 0.292 * bangs as f32 * sum.signum();
    }
    let s = f64::from(sum);
    let score = if s == 0.0 {
        0.0
    } else {
        (s / (s * s + 15.0).sqrt()).clamp(-1.0, 1.0)
    };
    let confidence = if hits == 0 {
        0.0
    } else {
        1.0 - (-(0.6 * f64::from(hits) + 0.3 * s.abs())).exp()
    };
    let label = if confidence < cfg.min_confidence || score.abs() < cfg.neutral_band {
        Label::Neutral
    } else if score > 0.0 {
        Label::Positive
    } else {
        Label::Negative
    };
    Sentiment {
        score,
        label,
        confidence,
    }
}

/// Emotions of `text` read as `lang`: weight = share of the strongest emotion's cues.
pub fn emotions(text: &str, lang: Lang) -> EmotionScores {
    let (tokens, _) = text::tokenize(text);
    emotions_tokens(&tokens, lang)
}

fn emotions_tokens(tokens: &[Token], lang: Lang) -> EmotionScores {
    let mut counts = [0f32; 8];
    let mut negate_left = 0u32;
    for t in tokens {
        let cue = match t {
            Token::Break => {
                negate_left = 0;
                continue;
            }
            Token::Word { norm, .. } if lexicon::is_negator(norm, lang) => {
                negate_left = 3;
                continue;
            }
            Token::Word { norm, .. } => lexicon::emotion(norm, lang),
            Token::Emoji(e) => lexicon::emotion(e, lang),
        };
        if let Some(e) = cue {
            // A negated cue ("not happy") is not evidence of the emotion.
            if negate_left == 0 || matches!(t, Token::Emoji(_)) {
                counts[e.index()] += 1.0;
            }
        }
        negate_left = negate_left.saturating_sub(1);
    }
    let max = counts.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        for c in counts.iter_mut() {
            *c /= max;
        }
    }
    EmotionScores(counts)
}

/// Language, sentiment and emotions in one pass over the tokens.
pub fn score(text: &str, cfg: &ScoreConfig) -> Scores {
    let (tokens, bangs) = text::tokenize(text);
    let lang = detect_tokens(text, &tokens);
    Scores {
        lang,
        sentiment: sentiment_tokens(&tokens, bangs, lang, cfg),
        emotions: emotions_tokens(&tokens, lang),
    }
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

/// Virality in [0, 1]: a saturating function of weighted engagement (shares weigh most)
/// and of the author's reach (log of followers); 0 when everything is 0; monotone
/// non-decreasing in each input.
pub fn virality(e: &Engagement) -> f64 {
    let engagement = 3.0 * e.shares as f64 + 1.5 * e.replies as f64 + e.likes as f64;
    let interaction = 1.0 - (-engagement / 200.0).exp();
    let reach = ((e.author_followers as f64).ln_1p() / 1e7f64.ln_1p()).min(1.0);
    (0.8 * interaction + 0.2 * reach).clamp(0.0, 1.0)
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
    fn negation_flips_polarity_en() {
        assert!(s("this is good").score > 0.0);
        assert!(s("this is not good").score < 0.0);
    }

    #[test]
    fn ne_pas_flips_polarity_fr() {
        assert!(s("je suis content de ce produit").score > 0.0);
        assert!(s("je ne suis pas content de ce produit").score < 0.0);
        assert!(s("c'est pas terrible").score < 0.0);
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
    fn emotions_are_detected_and_weighted() {
        let e = emotions("so happy, love it 😍 but a bit scared", Lang::En);
        let present: Vec<Emotion> = e.present().map(|(e, _)| e).collect();
        assert_eq!(present, vec![Emotion::Joy, Emotion::Fear]);
        assert_eq!(e.0[Emotion::Joy.index()], 1.0);
        assert_eq!(
            e.mask(),
            (1 << Emotion::Joy.index()) | (1 << Emotion::Fear.index())
        );
        assert_eq!(emotions("not happy", Lang::En).mask(), 0);
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
                author_followers: k * 1000,
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
