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

/// Valence of token `t` read as `slot`.
#[inline]
fn valence(t: &Tok, slot: Option<usize>) -> f32 {
    if t.entry == NONE {
        return 0.0;
    }
    let e = lexicon::entry(t.entry);
    match (t.kind, slot) {
        (Kind::Emoji, _) => e.val(2),
        (Kind::Word, Some(s)) => {
            if e.has_val(s) {
                e.val(s)
            } else {
                e.val(2) // emoticon-like words ("xd")
            }
        }
        _ => 0.0,
    }
}

/// What the three tokens before `i` do to it: the booster sum and whether it is negated.
#[inline]
fn modifiers(toks: &[Tok], i: usize, s: usize, all_caps: bool) -> (f32, bool) {
    let mut boost = 0.0;
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
            let mut b = b * decay;
            if p.flags & CAPS != 0 && !all_caps {
                b += C_INCR.copysign(b);
            }
            boost += b;
        }
        if e.flags & lang_flag(NEG_EN, s) != 0 {
            negated = true;
        }
    }
    (boost, negated)
}

/// Sentiment of the tokens read as `lang`.
pub(crate) fn sentiment(toks: &[Tok], st: &Stats, lang: Lang, cfg: &ScoreConfig) -> Sentiment {
    let slot = slot(lang);
    let all_caps = st.words > 1 && st.caps_words == st.words;
    let (mut before, mut after) = (0f32, 0f32);
    let (mut pos, mut neg) = (0f32, 0f32);
    let mut hits = 0u32;
    for (i, t) in toks.iter().enumerate() {
        if t.kind == Kind::Break || t.entry == NONE {
            continue;
        }
        if let (Kind::Word, Some(s)) = (t.kind, slot) {
            if lexicon::entry(t.entry).flags & lang_flag(CONTRAST_EN, s) != 0 {
                before += after;
                after = 0.0;
                continue;
            }
        }
        let mut v = valence(t, slot);
        if v == 0.0 {
            continue;
        }
        if let (Kind::Word, Some(s)) = (t.kind, slot) {
            let (boost, negated) = modifiers(toks, i, s, all_caps);
            v += boost * v.signum();
            if t.flags & CAPS != 0 && !all_caps {
                v += C_INCR.copysign(v);
            }
            if t.flags & ELONG != 0 {
                v += ELONG_INCR.copysign(v);
            }
            let neg_inside = lexicon::entry(t.entry).flags & lang_flag(NEG_INSIDE_EN, s) != 0;
            if negated && !neg_inside {
                v *= N_SCALAR;
            }
        }
        hits += 1;
        if v > 0.0 {
            pos += v;
        } else {
            neg -= v;
        }
        after += v;
    }
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

/// Emotions of the tokens read as `lang`: each cue counts once (boosted cues a little
/// more), negated cues not at all; weights are relative to the strongest emotion.
pub(crate) fn emotions(toks: &[Tok], lang: Lang) -> EmotionScores {
    let slot = slot(lang);
    let mut counts = [0f32; 8];
    for (i, t) in toks.iter().enumerate() {
        if t.entry == NONE || t.kind == Kind::Break {
            continue;
        }
        let e = lexicon::entry(t.entry);
        let (mask, weight) = match (t.kind, slot) {
            (Kind::Emoji, _) => (e.emo[2], 1.0),
            (Kind::Word, Some(s)) => {
                let m = e.emo[s] | e.emo[2];
                if m == 0 {
                    continue;
                }
                let (boost, negated) = modifiers(toks, i, s, false);
                if negated && e.flags & lang_flag(NEG_INSIDE_EN, s) == 0 {
                    continue; // "not happy" is no evidence of joy
                }
                (m, 1.0 + boost.max(0.0))
            }
            _ => continue,
        };
        for (k, c) in counts.iter_mut().enumerate() {
            if mask & (1 << k) != 0 {
                *c += weight;
            }
        }
    }
    let max = counts.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        for c in counts.iter_mut() {
            *c /= max;
        }
    }
    EmotionScores(counts)
}
