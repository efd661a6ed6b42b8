//! Sentiment and emotions from the tokens, with VADER's rules (Hutto & Gilbert, 2014) made
//! bilingual: valences on VADER's -4..4 scale, boosters and diminishers within three
//! tokens (damped with distance), capitals, negation within three tokens (×-0.74), contrast
//! ("but", "mais": 0.5× before, 1.5× after), `!`/`?` emphasis, and the normalisation
//! `x / sqrt(x² + 15)`. Additions: elongations emphasise, clause breaks end a negation's
//! scope, phrases that contain their negation ("pas mal") are not negated again, questions
//! are damped, and a confidence decides the neutral band.

use crate::lexicon::{self, lang_flag, CONTRAST_EN, NEG_EN, NEG_INSIDE_EN, NONE};
use crate::text::{Kind, Stats, Tok, CAPS, ELONG};
use crate::{EmotionScores, Label, Lang, ScoreConfig, Sentiment};

const C_INCR: f32 = 0.733;
const N_SCALAR: f32 = -0.74;
const ELONG_INCR: f32 = 0.293;
const BOOST_DECAY: [f32; 3] = [1.0, 0.95, 0.9];
/// Texts in an unknown language are judged on emoji alone: less sure.
const OTHER_LANG_CONFIDENCE: f64 = 0.6;

/// Slot of the language in lexicon entries (`None`: emoji only).
fn slot(lang: Lang) -> Option<usize> {
    match lang {
        Lang::En => Some(0),
        Lang::Fr => Some(1),
        Lang::Other => None,
    }
}

/// What the three tokens before `i` do to it: the booster sums (for sentiment, with
/// capitals counted only when not the whole text is in capitals; for emotions, always)
/// and whether it is negated.
#[inline]
fn modifiers(toks: &[Tok], i: usize, s: usize, all_caps: bool) -> (f32, f32, bool) {
    let (mut boost, mut boost_emo) = (0.0, 0.0);
    let mut negated = false;
    for (d, decay) in BOOST_DECAY.iter().enumerate() {
        let Some(j) = i.checked_sub(d + 1) else { break };
        let p = &toks[j];
        if p.kind != Kind::Word {
            break; // clause breaks and emoji end the scope
        }
        if p.entry == NONE {
            continue;
        }
        let e = lexicon::entry(p.entry);
        let b = e.boost(s);
        if b != 0.0 {
            let b = b * decay;
            let capped = if p.flags & CAPS != 0 {
                b + C_INCR.copysign(b)
            } else {
                b
            };
            boost += if all_caps { b } else { capped };
            boost_emo += capped;
        }
        if e.flags & lang_flag(NEG_EN, s) != 0 {
            negated = true;
        }
    }
    (boost, boost_emo, negated)
}

/// Sentiment of the tokens read as `lang`.
pub(crate) fn sentiment(toks: &[Tok], st: &Stats, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
    analyse::<true, false>(toks, st, lang, cfg).0
}

/// Emotions of the tokens read as `lang`: each cue counts once (boosted cues a little
/// more), negated cues not at all; weights are relative to the strongest emotion.
pub(crate) fn emotions(toks: &[Tok], st: &Stats, lang: Lang) -> EmotionScores {
    analyse::<false, true>(toks, st, lang, &ScoreConfig::default()).1
}

/// Sentiment and emotions of the tokens read as `lang`, in one pass.
pub(crate) fn both(
    toks: &[Tok],
    st: &Stats,
    lang: Lang,
    cfg: &ScoreConfig,
) -> (Sentiment, EmotionScores) {
    analyse::<true, true>(toks, st, lang, cfg)
}

/// One pass over the tokens for the sentiment (`SENT`) and the emotions (`EMO`); what is
/// not asked for is returned empty.
#[inline(always)]
fn analyse<const SENT: bool, const EMO: bool>(
    toks: &[Tok],
    st: &Stats,
    lang: Lang,
    cfg: &ScoreConfig,
) -> (Sentiment, EmotionScores) {
    let slot = slot(lang);
    let all_caps = st.words > 1 && st.caps_words == st.words;
    let (mut before, mut after) = (0f32, 0f32);
    let (mut pos, mut neg) = (0f32, 0f32);
    let mut hits = 0u32;
    let mut counts = [0f32; 8];
    for (i, t) in toks.iter().enumerate() {
        if t.kind == Kind::Break || t.entry == NONE {
            continue;
        }
        let e = lexicon::entry(t.entry);
        // Sentiment: whether the token has a valence, and that valence modified; emotions:
        // its mask and weight.
        let (valued, v, mask, weight) = match (t.kind, slot) {
            (Kind::Emoji, _) => {
                let v = e.val(2);
                (v != 0.0, v, e.emo[2], 1.0)
            }
            (Kind::Word, Some(s)) => {
                let mut v = 0.0;
                if SENT {
                    if e.flags & lang_flag(CONTRAST_EN, s) != 0 {
                        before += after;
                        after = 0.0;
                    } else {
                        // Emoticon-like words ("xd") have a language-independent valence.
                        v = if e.has_val(s) { e.val(s) } else { e.val(2) };
                    }
                }
                let mask = if EMO { e.emo[s] | e.emo[2] } else { 0 };
                let valued = v != 0.0;
                if !valued && mask == 0 {
                    continue;
                }
                let (boost, boost_emo, negated) = modifiers(toks, i, s, all_caps);
                let neg_inside = e.flags & lang_flag(NEG_INSIDE_EN, s) != 0;
                if valued {
                    v += boost * v.signum();
                    if t.flags & CAPS != 0 && !all_caps {
                        v += C_INCR.copysign(v);
                    }
                    if t.flags & ELONG != 0 {
                        v += ELONG_INCR.copysign(v);
                    }
                    if negated && !neg_inside {
                        v *= N_SCALAR;
                    }
                }
                if negated && !neg_inside {
                    (valued, v, 0, 0.0) // "not happy" is no evidence of joy
                } else {
                    (valued, v, mask, 1.0 + boost_emo.max(0.0))
                }
            }
            _ => continue,
        };
        if SENT && valued {
            hits += 1;
            if v > 0.0 {
                pos += v;
            } else {
                neg -= v;
            }
            after += v;
        }
        if EMO && mask != 0 {
            for (k, c) in counts.iter_mut().enumerate() {
                if mask & (1 << k) != 0 {
                    *c += weight;
                }
            }
        }
    }
    let sentiment = if SENT {
        finish_sentiment(st, lang, cfg, before, after, pos, neg, hits)
    } else {
        Sentiment {
            score: 0.0,
            label: Label::Neutral,
            confidence: 0.0,
        }
    };
    if EMO {
        let max = counts.iter().copied().fold(0.0f32, f32::max);
        if max > 0.0 {
            for c in counts.iter_mut() {
                *c /= max;
            }
        }
    }
    (sentiment, EmotionScores(counts))
}

/// The sentiment from the pass's sums: contrast weighting, punctuation emphasis, question
/// damping, normalisation, confidence and label.
#[allow(clippy::too_many_arguments)]
fn finish_sentiment(
    st: &Stats,
    lang: Lang,
    cfg: &ScoreConfig,
    before: f32,
    after: f32,
    pos: f32,
    neg: f32,
    hits: u32,
) -> Sentiment {
    let mut sum = if before != 0.0 {
        0.5 * before + 1.5 * after
    } else {
        after
    };
    // VADER's punctuation emphasis.
    if sum != 0.0 {
        let mut ep = 0.292 * st.bangs.min(4) as f32;
        if st.questions > 1 {
            ep += if st.questions <= 3 {
                0.18 * st.questions as f32
            } else {
                0.96
            };
        }
        sum += ep.copysign(sum);
    }
    if st.ends_with_question && st.bangs == 0 {
        sum *= cfg.question_damping as f32;
    }
    let s = f64::from(sum);
    let score = if s == 0.0 {
        0.0
    } else {
        (s / (s * s + 15.0).sqrt()).clamp(-1.0, 1.0)
    };
    // Confidence: how much evidence, and how much of it agrees.
    let mass = f64::from(pos + neg);
    let agreement = if mass > 0.0 {
        (f64::from(pos - neg)).abs() / mass
    } else {
        0.0
    };
    let mut confidence = if hits == 0 {
        0.0
    } else {
        (1.0 - (-0.6 * mass).exp()) * (0.3 + 0.7 * agreement)
    };
    if lang == Lang::Other {
        confidence *= OTHER_LANG_CONFIDENCE;
    }
    let confidence = confidence.clamp(0.0, 1.0);
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
