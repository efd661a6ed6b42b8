//! Language detection: function words and lexicon hits gathered while tokenising decide
//! most texts at no extra cost; texts they leave ambiguous and long enough to judge go to
//! `whatlang`'s trigram model, restricted to the languages vigie can tell apart.

use std::sync::LazyLock;

use crate::text::Stats;
use crate::Lang;

/// Evidence per language: English, French, other (gathered by the tokenizer over the
/// word tokens: 1 per function word, 0.5 per content word only one lexicon knows).
fn evidence(st: &Stats) -> [f32; 3] {
    // Half points are exact in f32: the same values as summing 1.0s and 0.5s.
    let mut ev = st.evidence.map(|h| h as f32 * 0.5);
    ev[1] += 0.5 * st.accents.min(4) as f32;
    ev
}

/// Languages `whatlang` chooses among for ambiguous texts.
const CANDIDATES: [whatlang::Lang; 7] = [
    whatlang::Lang::Eng,
    whatlang::Lang::Fra,
    whatlang::Lang::Spa,
    whatlang::Lang::Deu,
    whatlang::Lang::Ita,
    whatlang::Lang::Por,
    whatlang::Lang::Nld,
];

static DETECTOR: LazyLock<whatlang::Detector> =
    LazyLock::new(|| whatlang::Detector::with_allowlist(CANDIDATES.to_vec()));

/// Latin letters below which `whatlang` is not asked (its trigrams need some text).
const MIN_LETTERS_FOR_MODEL: u32 = 24;

/// The language, and whether `whatlang` was asked.
pub(crate) fn detect(text: &str, st: &Stats) -> (Lang, bool) {
    if st.other_script > st.latin {
        return (Lang::Other, false);
    }
    let ev = evidence(st);
    let (en, fr, other) = (ev[0], ev[1], ev[2]);
    let decisive = |a: f32, b: f32, c: f32| a >= 2.0 && a >= 2.0 * b.max(c).max(0.5);
    if decisive(en, fr, other) {
        return (Lang::En, false);
    }
    if decisive(fr, en, other) {
        return (Lang::Fr, false);
    }
    if decisive(other, en, fr) {
        return (Lang::Other, false);
    }
    // Any lean of the evidence needs no model either; the model is for texts with no
    // evidence or a tie.
    if let Some(l) = lean(en, fr, other) {
        return (l, false);
    }
    if st.latin >= MIN_LETTERS_FOR_MODEL {
        if let Some(info) = DETECTOR.detect(text) {
            let model = match info.lang() {
                whatlang::Lang::Eng => Lang::En,
                whatlang::Lang::Fra => Lang::Fr,
                _ => Lang::Other,
            };
            let lang = if info.is_reliable() {
                model
            } else {
                lean(en, fr, other).unwrap_or(model)
            };
            return (lang, true);
        }
        return (lean(en, fr, other).unwrap_or(Lang::Other), true);
    }
    (lean(en, fr, other).unwrap_or(Lang::Other), false)
}

/// The language the evidence leans to, if any.
fn lean(en: f32, fr: f32, other: f32) -> Option<Lang> {
    if en > fr && en >= other.max(0.5) {
        Some(Lang::En)
    } else if fr > en && fr >= other.max(0.5) {
        Some(Lang::Fr)
    } else {
        None
    }
}
