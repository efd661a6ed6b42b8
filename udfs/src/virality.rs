//! Virality: the pure parts. The dataflow (`pipeline/src/graph/virality.rs`) keeps the
//! stories and windows; these functions say what a mention's score is given them.
//!
//! `virality = 100 · (1 − (1 − engagement) · (1 − velocity))`, a noisy-OR of two signals
//! in [0, 1], so either one alone can make a mention viral and both together more so:
//! - **engagement** ([`engagement_score`]): interactions (shares weigh 3, replies 1.5,
//!   likes 1), as an absolute amount, modulated by how large it is for the author's reach
//!   (followers);
//! - **velocity** ([`velocity`]): how fast the mention's *story* ([`story_key`]) spreads
//!   around it, relative to the organisation's usual volume. The story's mentions within an
//!   hour either side count with a time decay ([`heat_weight`]): fully within 15 minutes,
//!   then halving every 15 minutes.
//!
//! Everything that feeds a stored value is integer or quantised, so an incremental
//! computation and a batch recomputation agree bit for bit.

use crate::norm::{fold, Folded};
use crate::Engagement;

/// Interactions, weighted: shares 3, replies 1.5, likes 1.
fn interactions(e: &Engagement) -> f64 {
    3.0 * e.shares as f64 + 1.5 * e.replies as f64 + e.likes as f64
}

/// Engagement component in [0, 1]: 0 when there is none. The absolute amount of
/// interactions decides it (`1 − e^(−i/500)`: 500 weighted interactions give 0.63); the
/// reach modulates it by up to 30 %: interactions per follower make a small account's widely
/// shared post score higher than a celebrity's with the same numbers. Monotone
/// non-decreasing in likes, shares and replies; non-increasing in followers.
pub fn engagement_score(e: &Engagement) -> f64 {
    let i = interactions(e);
    let absolute = 1.0 - (-i / 500.0).exp();
    let rate = i / (e.author_followers as f64 + 50.0);
    let relative = 1.0 - (-rate / 0.05).exp();
    (absolute * (0.7 + 0.3 * relative)).clamp(0.0, 1.0)
}

/// Weight (in thousandths) with which a story mention `minutes` away (either side) counts
/// in a mention's story heat: 1000 up to 15 minutes, then halving every 15 minutes, 0
/// beyond an hour.
pub const fn heat_weight(minutes: u32) -> u32 {
    HEAT_WEIGHTS_OR_ZERO[if minutes as usize > HEAT_HORIZON_MINUTES {
        HEAT_HORIZON_MINUTES + 1
    } else {
        minutes as usize
    }]
}

/// How far (minutes, either side) story mentions count.
pub const HEAT_HORIZON_MINUTES: usize = 60;

const HEAT_WEIGHTS_OR_ZERO: [u32; HEAT_HORIZON_MINUTES + 2] = {
    // round(1000 · 2^(−(d − 15)/15)) for d in 16..=60, precomputed (const fn has no powf).
    const TAIL: [u32; 45] = [
        955, 912, 871, 831, 794, 758, 724, 691, 660, 630, 602, 574, 548, 524, 500, 477, 456, 435,
        416, 397, 379, 362, 345, 330, 315, 301, 287, 274, 262, 250, 239, 228, 218, 208, 198, 189,
        181, 173, 165, 157, 150, 144, 137, 131, 125,
    ];
    let mut w = [0u32; HEAT_HORIZON_MINUTES + 2];
    let mut d = 0;
    while d <= HEAT_HORIZON_MINUTES {
        w[d] = if d <= 15 { 1000 } else { TAIL[d - 16] };
        d += 1;
    }
    w
};

/// Velocity component in [0, 1] from a story's heat (thousandths of a mention, see
/// [`heat_weight`]) and the organisation's usual volume (mentions per hour).
///
/// A story is expected to have `1 + rate/100` mentions around any of its mentions; the
/// velocity is `log2(heat / expected) / 7`, so a lone mention scores 0 and a story 128
/// times hotter than expected scores 1. Quantised to thousandths.
pub fn velocity(heat_milli: u64, org_rate_per_hour: f64) -> u16 {
    let heat = heat_milli as f64 / 1000.0;
    let expected = 1.0 + org_rate_per_hour.max(0.0) / 100.0;
    let v = ((heat / expected).log2() / 7.0).clamp(0.0, 1.0);
    (v * 1000.0).round() as u16
}

/// Virality in [0, 100], quantised to tenths: noisy-OR of engagement and velocity
/// (thousandths). Quantising keeps a growing story from rewriting its mentions on every
/// new one: a stored value changes only when it moves by a tenth of a point.
pub fn combine(engagement: f64, velocity_milli: u16) -> f64 {
    let v = f64::from(velocity_milli.min(1000)) / 1000.0;
    let e = engagement.clamp(0.0, 1.0);
    let score = 100.0 * (1.0 - (1.0 - e) * (1.0 - v));
    (score * 10.0).round() / 10.0
}

/// FNV-1a, 64 bits: stable across builds and platforms (story ids are stored).
fn fnv(bytes: impl IntoIterator<Item = u8>, seed: u64) -> u64 {
    let mut h = Fnv::new(seed);
    bytes.into_iter().for_each(|b| h.byte(b));
    h.0
}

/// FNV-1a fed piece by piece.
struct Fnv(u64);

impl Fnv {
    fn new(seed: u64) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325u64 ^ seed)
    }

    fn byte(&mut self, b: u8) {
        self.0 ^= u64::from(b);
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|b| self.byte(*b));
    }
}

/// The link a text shares, normalised: host lowercased without `www.`, no scheme, query,
/// fragment or trailing slash. `None` when the text has no http(s) link.
pub fn shared_link(text: &str) -> Option<String> {
    let start = link_start(text)?;
    let rest = &text[start..];
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ']'))
        .unwrap_or(rest.len());
    let link = &rest[..end];
    let link = link.split(['?', '#']).next().unwrap_or(link);
    let (host, path) = link.split_once('/').unwrap_or((link, ""));
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if host.is_empty() {
        return None;
    }
    let path = path.trim_end_matches(['/', '.', ',', '!', '?', ';', ':']);
    Some(if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    })
}

/// Where the first `https://` of `text` starts, else its first `http://`: one pass over
/// the bytes (two substring searches cost ~20 % of a story key; most texts have no link).
fn link_start(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut http = None;
    let mut from = 0;
    while let Some(p) = b[from..].iter().position(|&c| c == b'h') {
        let at = from + p;
        let rest = &b[at..];
        if rest.starts_with(b"https://") {
            return Some(at);
        }
        if http.is_none() && rest.starts_with(b"http://") {
            http = Some(at);
        }
        from = at + 1;
    }
    http
}

/// Whether a word holds `://` (a link, which matching skips).
fn has_scheme_separator(word: &[u8]) -> bool {
    word.iter()
        .enumerate()
        .any(|(i, &c)| c == b':' && word[i + 1..].starts_with(b"//"))
}

/// The words of a text as keyword and story matching see them: folded (lowercase, no
/// accents), letters and digits only; `#tags` keep their word, `@handles`, links and a
/// leading `RT` are dropped.
pub fn match_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for_each_match_word(text, |w| {
        words.push(w.to_string());
        true
    });
    words
}

/// Calls `f` with each of [`match_words`]' words in turn, until `f` returns `false`: the
/// same words without a `String` each. An ASCII word already in lowercase is handed over
/// as a slice of `text`; others are folded into one reused buffer.
fn for_each_match_word(text: &str, mut f: impl FnMut(&str) -> bool) {
    let mut word = String::new();
    let mut first = true;
    // Hands a word over (a leading "rt" is dropped); `false`: stop.
    let mut emit = |w: &str| -> bool {
        if w.is_empty() {
            return true;
        }
        let go = (first && w == "rt") || f(w);
        first = false;
        go
    };
    for raw in text.split_whitespace() {
        let bytes = raw.as_bytes();
        if bytes[0] == b'@' || bytes.starts_with(b"www.") || has_scheme_separator(bytes) {
            continue;
        }
        if raw.is_ascii() {
            // Most words: runs of ASCII letters and digits, lowercased; anything else splits.
            let mut i = 0;
            while i < bytes.len() {
                if !bytes[i].is_ascii_alphanumeric() {
                    i += 1;
                    continue;
                }
                let (start, mut upper) = (i, false);
                while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                    upper |= bytes[i].is_ascii_uppercase();
                    i += 1;
                }
                let run = &raw[start..i];
                let go = if upper {
                    word.clear();
                    word.push_str(run);
                    word.make_ascii_lowercase();
                    emit(&word)
                } else {
                    emit(run)
                };
                if !go {
                    return;
                }
            }
        } else {
            word.clear();
            for c in raw.chars() {
                match fold(c) {
                    Folded::One(a) if a.is_alphanumeric() => word.push(a),
                    Folded::Two(a, b) if a.is_alphanumeric() => {
                        word.push(a);
                        word.push(b);
                    }
                    // Apostrophes and hyphens split words ("l'acme", "acme-corp").
                    _ => {
                        if !emit(&word) {
                            return;
                        }
                        word.clear();
                    }
                }
            }
            if !emit(&word) {
                return;
            }
        }
    }
}

/// The story a mention belongs to: the link it shares when it has one, otherwise its
/// normalised text (first 30 words), so retweets, copies and syndicated posts of the same
/// thing group together. A stable 64-bit hash.
pub fn story_key(text: &str) -> u64 {
    if let Some(link) = shared_link(text) {
        return fnv(link.into_bytes(), 0x6c69_6e6b);
    }
    // The words, each followed by a space, hashed as they come.
    let mut h = Fnv::new(0x7465_7874);
    let mut words = 0;
    for_each_match_word(text, |w| {
        h.bytes(w.as_bytes());
        h.byte(b' ');
        words += 1;
        words < 30
    });
    if words == 0 {
        return fnv(text.trim().bytes(), 0x7261_7720);
    }
    h.0
}

/// Which of `keywords` a text mentions: a keyword matches when its words (folded the same
/// way) appear consecutively among the text's words; `#acme` matches `acme`. Indices into
/// `keywords`, in order. For many texts against the same keywords, [`KeywordSet`] splits
/// the keywords once.
pub fn matched_keywords(text: &str, keywords: &[String]) -> Vec<usize> {
    KeywordSet::new(keywords.to_vec()).matched(text)
}

/// A source's keywords with their words split and folded once, for matching many texts
/// ([`matched_keywords`]).
///
/// Each distinct keyword word gets a small id. A text is read once: each of its words
/// becomes the id of the keyword word it equals (compared by length first, so most text
/// words cost a few integer compares and no copy), and keywords are then found as runs of
/// ids. Same matches as comparing the words themselves (unit test against the former
/// code).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordSet {
    keywords: Vec<String>,
    /// The distinct words of all keywords, folded; a word's id is its index.
    words: Vec<String>,
    /// Every keyword's word ids, one keyword after the other.
    ids: Vec<u32>,
    /// Each keyword's words, as a range of `ids` (empty: it has none and matches nothing).
    ranges: Vec<(usize, usize)>,
    /// Every keyword is one word and there are at most 64 distinct ones: `ids[i]` is
    /// keyword `i`'s word.
    single: bool,
}

/// A text word that is no keyword's word.
const NO_WORD: u32 = u32::MAX;

impl KeywordSet {
    /// Splits `keywords` into their match words.
    pub fn new(keywords: Vec<String>) -> KeywordSet {
        let (mut words, mut ids, mut ranges) = (Vec::<String>::new(), Vec::new(), Vec::new());
        for k in &keywords {
            let first = ids.len();
            for_each_match_word(k, |w| {
                let id = match words.iter().position(|x| x == w) {
                    Some(i) => i,
                    None => {
                        words.push(w.to_string());
                        words.len() - 1
                    }
                };
                ids.push(id as u32);
                true
            });
            ranges.push((first, ids.len()));
        }
        let single = words.len() <= 64 && ranges.iter().all(|(from, to)| to - from == 1);
        KeywordSet {
            keywords,
            words,
            ids,
            ranges,
            single,
        }
    }

    /// The keywords, as the source spells them.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// Indices of the keywords `text` mentions, in order.
    pub fn matched(&self, text: &str) -> Vec<usize> {
        if self.words.is_empty() {
            return Vec::new();
        }
        let id_of = |w: &str| self.words.iter().position(|k| k.len() == w.len() && k == w);
        if self.single {
            // Which words occur is enough.
            let mut seen = 0u64;
            for_each_match_word(text, |w| {
                if let Some(i) = id_of(w) {
                    seen |= 1 << i;
                }
                true
            });
            return (0..self.ids.len())
                .filter(|&i| seen & (1 << self.ids[i]) != 0)
                .collect();
        }
        // The text's words as keyword word ids.
        let mut text_ids = Vec::with_capacity(text.len() / 4 + 1);
        let mut any = false;
        for_each_match_word(text, |w| {
            let id = id_of(w).map_or(NO_WORD, |i| i as u32);
            any |= id != NO_WORD;
            text_ids.push(id);
            true
        });
        if !any {
            return Vec::new();
        }
        let mut matched = Vec::new();
        for (i, &(from, to)) in self.ranges.iter().enumerate() {
            let kw = &self.ids[from..to];
            if !kw.is_empty() && text_ids.windows(kw.len()).any(|w| w == kw) {
                matched.push(i);
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `match_words`, `story_key` and `matched_keywords` as they were before the words were
    /// folded into one reused buffer (a `String` per word): story ids are stored, so the
    /// new code must give the very same keys.
    mod before {
        use super::super::{fnv, fold, shared_link, Folded};

        pub fn match_words(text: &str) -> Vec<String> {
            let mut words = Vec::new();
            for raw in text.split_whitespace() {
                if raw.starts_with('@') || raw.contains("://") || raw.starts_with("www.") {
                    continue;
                }
                let mut word = String::new();
                let mut flush = |word: &mut String| {
                    if !word.is_empty() {
                        words.push(std::mem::take(word));
                    }
                };
                for c in raw.chars() {
                    match fold(c) {
                        Folded::One(a) if a.is_alphanumeric() => word.push(a),
                        Folded::Two(a, b) if a.is_alphanumeric() => {
                            word.push(a);
                            word.push(b);
                        }
                        _ => flush(&mut word),
                    }
                }
                flush(&mut word);
            }
            if words.first().is_some_and(|w| w == "rt") {
                words.remove(0);
            }
            words
        }

        pub fn story_key(text: &str) -> u64 {
            if let Some(link) = shared_link(text) {
                return fnv(link.into_bytes(), 0x6c69_6e6b);
            }
            let words = match_words(text);
            if words.is_empty() {
                return fnv(text.trim().bytes(), 0x7261_7720);
            }
            let mut bytes = Vec::new();
            for w in words.iter().take(30) {
                bytes.extend_from_slice(w.as_bytes());
                bytes.push(b' ');
            }
            fnv(bytes, 0x7465_7874)
        }

        pub fn matched_keywords(text: &str, keywords: &[String]) -> Vec<usize> {
            if keywords.is_empty() {
                return Vec::new();
            }
            let words = match_words(text);
            keywords
                .iter()
                .enumerate()
                .filter(|(_, k)| {
                    let kw = match_words(k);
                    !kw.is_empty() && words.windows(kw.len()).any(|w| w == kw.as_slice())
                })
                .map(|(i, _)| i)
                .collect()
        }
    }

    /// The next number of a xorshift sequence (test inputs).
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn words_keys_and_keyword_matches_are_those_of_the_former_code() {
        const PIECES: [&str; 28] = [
            "RT",
            "rt",
            "@ana",
            "https://acme.com/x?y=1",
            "www.acme.fr",
            "l'acme",
            "acme-corp",
            "#Acme",
            "ACME",
            "acmé",
            "Œuvre",
            "e\u{301}té",
            "service",
            "client",
            "Service,",
            "client!",
            "😡",
            "🙄",
            "...",
            "nul",
            "très",
            "déçu",
            "42",
            "x2",
            "",
            "  ",
            "\t",
            "straße",
        ];
        let keywords: Vec<String> = [
            "acme",
            "service client",
            "#acme",
            "très déçu",
            "😡",
            "x2 42",
        ]
        .iter()
        .map(|k| k.to_string())
        .collect();
        // One word each: `KeywordSet`'s shortcut.
        let single_words: Vec<String> = ["acme", "#Acme", "déçu", "42", "straße", "service"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5_000 {
            let seed = xorshift(&mut state);
            let len = (seed % 40) as usize;
            let text: Vec<&str> = (0..len)
                .map(|i| PIECES[((seed >> (i % 50)) as usize + i * 7) % PIECES.len()])
                .collect();
            let text = text.join(if seed.is_multiple_of(3) { "  " } else { " " });
            assert_eq!(match_words(&text), before::match_words(&text), "{text:?}");
            assert_eq!(story_key(&text), before::story_key(&text), "{text:?}");
            for keywords in [&keywords, &single_words] {
                assert_eq!(
                    matched_keywords(&text, keywords),
                    before::matched_keywords(&text, keywords),
                    "{text:?} {keywords:?}"
                );
            }
        }
    }

    /// The one-pass scans find what the substring searches they replace found.
    #[test]
    fn link_scans_equal_substring_searches() {
        const PIECES: [&str; 12] = [
            "http://a.fr/x",
            "https://b.com",
            "h",
            "ht",
            "http:/",
            "https:",
            "://",
            ":/",
            "hh",
            "é",
            " ",
            "xhttp://c",
        ];
        let mut state = 0x853c_49e6_748f_ea9bu64;
        for _ in 0..20_000 {
            let seed = xorshift(&mut state);
            let n = (seed % 7) as usize;
            let text: String = (0..n)
                .map(|i| PIECES[((seed >> (i * 7)) as usize) % PIECES.len()])
                .collect();
            assert_eq!(
                link_start(&text),
                text.find("https://").or_else(|| text.find("http://")),
                "{text:?}"
            );
            assert_eq!(
                has_scheme_separator(text.as_bytes()),
                text.as_bytes().windows(3).any(|w| w == b"://"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn heat_weights_decay_by_half_every_quarter_hour() {
        assert_eq!(heat_weight(0), 1000);
        assert_eq!(heat_weight(15), 1000);
        assert_eq!(heat_weight(30), 500);
        assert_eq!(heat_weight(45), 250);
        assert_eq!(heat_weight(60), 125);
        assert_eq!(heat_weight(61), 0);
        for d in 16..=60u32 {
            let exact = 1000.0 * 2f64.powf(-(f64::from(d) - 15.0) / 15.0);
            assert_eq!(heat_weight(d), exact.round() as u32, "minute {d}");
            assert!(heat_weight(d) < heat_weight(d - 1));
        }
    }

    #[test]
    fn engagement_rises_with_interactions_and_falls_with_reach() {
        let base = Engagement::default();
        assert_eq!(engagement_score(&base), 0.0);
        let small = Engagement {
            shares: 50,
            author_followers: 100,
            ..base
        };
        let celebrity = Engagement {
            author_followers: 5_000_000,
            ..small
        };
        assert!(engagement_score(&small) > engagement_score(&celebrity));
        let mut prev = 0.0;
        for k in 0..100u64 {
            let s = engagement_score(&Engagement {
                likes: k * 10,
                shares: k,
                replies: k,
                author_followers: 1000,
            });
            assert!((0.0..=1.0).contains(&s) && s >= prev);
            prev = s;
        }
    }

    #[test]
    fn velocity_is_zero_alone_and_saturates() {
        assert_eq!(velocity(1000, 0.0), 0);
        assert_eq!(velocity(128_000, 0.0), 1000);
        assert_eq!(velocity(10_000_000, 0.0), 1000);
        // The same heat means less for an organisation with a lot of usual volume.
        assert!(velocity(20_000, 1000.0) < velocity(20_000, 10.0));
        assert_eq!(combine(0.0, 0), 0.0);
        assert_eq!(combine(1.0, 0), 100.0);
        assert_eq!(combine(0.5, 500), 75.0);
    }

    #[test]
    fn stories_group_shares_of_a_link_and_copies_of_a_text() {
        let a = story_key("Look at this https://www.Example.com/news/acme-recall/?utm_source=x");
        let b = story_key("RT @bob: wow http://example.com/news/acme-recall#top");
        assert_eq!(a, b);
        assert_eq!(
            story_key("RT @alice: ACME recalls every blender!!"),
            story_key("acme recalls every blender")
        );
        assert_ne!(
            story_key("acme recalls every blender"),
            story_key("acme recalls every toaster")
        );
        assert_eq!(shared_link("no link here"), None);
    }

    #[test]
    fn keywords_match_whole_words_folded() {
        let kws = vec!["Acme".to_string(), "Crème brûlée".into(), "rocket".into()];
        assert_eq!(
            matched_keywords("I love #acme and CREME BRULEE", &kws),
            vec![0, 1]
        );
        assert_eq!(
            matched_keywords("acmeville rockets", &kws),
            Vec::<usize>::new()
        );
        assert_eq!(matched_keywords("l'Acme-rocket", &kws), vec![0, 2]);
        assert_eq!(matched_keywords("anything", &[]), Vec::<usize>::new());
    }
}
