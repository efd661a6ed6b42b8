//! Tokenisation of social text into lexicon entries, in one pass and without allocating:
//! words are normalised into a stack buffer (lowercase, accents folded, elongations cut)
//! and looked up at once; only the compact [`Tok`]s are kept, in a caller-owned buffer.
//!
//! URLs and @handles are dropped; hashtags are split at case changes (`#ChuteLibre` →
//! `chute`, `libre`); emoji and emoticons are tokens of their own; `'` joins a word when
//! the whole is a lexicon key ("don't") and splits it otherwise ("n'est" → `n`, `est`);
//! phrases of two or three words ("not bad", "pas terrible", "rien à redire") replace their
//! words when the lexicon has them.

use crate::lexicon::{self, HEAD2, HEAD3, NONE};
use crate::norm::{self, Folded};

/// Kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A word (or a phrase, on its first word).
    Word,
    /// An emoji or emoticon.
    Emoji,
    /// A clause break: `.`, `,`, `;`, `:`, `?`, `!`.
    Break,
}

/// Word written in capitals (2+ letters, no lowercase).
pub(crate) const CAPS: u8 = 1;
/// Word written with an elongation ("soooo").
pub(crate) const ELONG: u8 = 2;
/// Word absorbed into the phrase on an earlier token.
pub(crate) const CONSUMED: u8 = 4;

/// One token: its lexicon entry (or [`NONE`]) and how it was written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tok {
    pub entry: u32,
    pub kind: Kind,
    pub flags: u8,
}

/// Counts gathered while tokenising.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    /// `!` seen.
    pub bangs: u32,
    /// `?` seen.
    pub questions: u32,
    /// Latin letters.
    pub latin: u32,
    /// Letters of other scripts.
    pub other_script: u32,
    /// French accented letters.
    pub accents: u32,
    /// Words.
    pub words: u32,
    /// Words in capitals.
    pub caps_words: u32,
    /// The text's last clause ends with `?`.
    pub ends_with_question: bool,
}

const MAX_WORD: usize = 64;
const MAX_RUNS: usize = 8;

/// A word being built: normalised UTF-8 bytes plus what the scorer wants to know of it.
struct Word {
    buf: [u8; MAX_WORD],
    len: usize,
    overflow: bool,
    upper: u32,
    lower: u32,
    last: char,
    run: u32,
    /// Byte ranges of the second character of each elongated run (removed for the
    /// one-letter variant: "nuul" → "nul").
    runs: [(u8, u8); MAX_RUNS],
    nruns: usize,
}

impl Word {
    fn new() -> Self {
        Self {
            buf: [0; MAX_WORD],
            len: 0,
            overflow: false,
            upper: 0,
            lower: 0,
            last: '\0',
            run: 0,
            runs: [(0, 0); MAX_RUNS],
            nruns: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
        self.upper = 0;
        self.lower = 0;
        self.last = '\0';
        self.run = 0;
        self.nruns = 0;
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push_folded(&mut self, ch: char) {
        if ch == self.last {
            self.run += 1;
            if self.run >= 3 {
                return; // elongation: keep two
            }
            if self.run == 2 && self.nruns < MAX_RUNS {
                // Provisional: becomes a real run only if a third copy follows.
                self.runs[self.nruns] = (self.len as u8, ch.len_utf8() as u8);
            }
        } else {
            if self.run >= 3 {
                self.nruns += 1;
            }
            self.last = ch;
            self.run = 1;
        }
        let n = ch.len_utf8();
        if self.len + n > MAX_WORD {
            self.overflow = true;
            return;
        }
        ch.encode_utf8(&mut self.buf[self.len..]);
        self.len += n;
    }

    #[inline]
    fn push_ascii(&mut self, b: u8, upper: bool) {
        if upper {
            self.upper += 1;
        } else if b.is_ascii_lowercase() {
            self.lower += 1;
        }
        let ch = b.to_ascii_lowercase();
        if u32::from(ch) == self.last as u32 {
            self.push_folded(ch as char);
            return;
        }
        if self.run >= 3 {
            self.nruns += 1;
        }
        self.last = ch as char;
        self.run = 1;
        if self.len < MAX_WORD {
            self.buf[self.len] = ch;
            self.len += 1;
        } else {
            self.overflow = true;
        }
    }

    /// [`Word::push`] of a Latin-1 letter (U+00C0..=U+00FF but × and ÷).
    #[inline]
    fn push_latin1(&mut self, c: char, upper: bool) {
        let lower = if upper {
            self.upper += 1;
            char::from_u32(c as u32 + 0x20).unwrap_or(c)
        } else {
            self.lower += 1;
            c
        };
        match norm::fold(lower) {
            Folded::Skip => {}
            Folded::One(a) => self.push_folded(a),
            Folded::Two(a, b) => {
                self.push_folded(a);
                self.push_folded(b);
            }
        }
    }

    fn push(&mut self, c: char) {
        if c.is_uppercase() {
            self.upper += 1;
        } else if c.is_lowercase() {
            self.lower += 1;
        }
        match norm::fold(c) {
            Folded::Skip => {}
            Folded::One(a) => self.push_folded(a),
            Folded::Two(a, b) => {
                self.push_folded(a);
                self.push_folded(b);
            }
        }
    }

    fn finish(&mut self) {
        if self.run >= 3 {
            self.nruns += 1;
        }
        self.run = 0;
        // A trailing apostrophe is punctuation.
        while self.len > 0 && self.buf[self.len - 1] == b'\'' {
            self.len -= 1;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The word with every elongated run cut to one letter.
    fn squeezed<'b>(&self, out: &'b mut [u8; MAX_WORD]) -> &'b [u8] {
        let mut n = 0;
        let mut from = 0;
        for &(at, w) in &self.runs[..self.nruns.min(MAX_RUNS)] {
            let (at, w) = (at as usize, w as usize);
            if at < from || at + w > self.len {
                continue;
            }
            out[n..n + at - from].copy_from_slice(&self.buf[from..at]);
            n += at - from;
            from = at + w;
        }
        out[n..n + self.len - from].copy_from_slice(&self.buf[from..self.len]);
        n += self.len - from;
        &out[..n]
    }
}

/// A recent word, for phrase lookups. Its text is kept only when a phrase could use it
/// (it heads a phrase, or follows the head of a three-word phrase).
#[derive(Clone, Copy)]
struct Recent {
    tok: usize,
    head: u16,
    len: usize,
    buf: [u8; MAX_WORD],
}

const NO_WORD: usize = usize::MAX;

impl Recent {
    const EMPTY: Recent = Recent {
        tok: NO_WORD,
        head: 0,
        len: 0,
        buf: [0; MAX_WORD],
    };

    fn text(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Phrase lookups over the last two words (`recent[newest]` is the last one).
struct Phrases {
    recent: [Recent; 2],
    newest: usize,
}

impl Phrases {
    fn new() -> Self {
        Self {
            recent: [Recent::EMPTY; 2],
            newest: 0,
        }
    }

    fn reset(&mut self) {
        self.recent[0].tok = NO_WORD;
        self.recent[1].tok = NO_WORD;
    }

    fn lookup(parts: &[&[u8]]) -> u32 {
        let mut key = [0u8; 3 * MAX_WORD + 2];
        let mut n = 0;
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                key[n] = b' ';
                n += 1;
            }
            key[n..n + p.len()].copy_from_slice(p);
            n += p.len();
        }
        lexicon::find_bytes(&key[..n])
    }

    /// Called after word token `i` (normalised text `w`) is pushed.
    fn after_word(&mut self, toks: &mut [Tok], i: usize, w: &[u8]) {
        let head = match toks[i].entry {
            NONE => 0,
            e => lexicon::entry(e).flags & (HEAD2 | HEAD3),
        };
        let p1 = &self.recent[self.newest];
        let p2 = &self.recent[1 - self.newest];
        if p1.tok != NO_WORD && p2.tok != NO_WORD && p2.head & HEAD3 != 0 {
            let e = Self::lookup(&[p2.text(), p1.text(), w]);
            if e != NONE {
                toks[p2.tok].entry = e;
                for t in [p1.tok, i] {
                    toks[t].entry = NONE;
                    toks[t].flags |= CONSUMED;
                }
                self.reset();
                return;
            }
        }
        if p1.tok != NO_WORD && p1.head & HEAD2 != 0 {
            let e = Self::lookup(&[p1.text(), w]);
            if e != NONE {
                toks[p1.tok].entry = e;
                toks[i].entry = NONE;
                toks[i].flags |= CONSUMED;
                // The head may still start a three-word phrase: keep it as recent.
                return;
            }
        }
        let keep_text = head != 0 || p1.head & HEAD3 != 0;
        self.newest = 1 - self.newest;
        let r = &mut self.recent[self.newest];
        r.tok = i;
        r.head = head;
        r.len = if keep_text { w.len() } else { 0 };
        if keep_text {
            r.buf[..w.len()].copy_from_slice(w);
        }
    }
}

/// Appends the tokens of `text` to `toks` (cleared first) and returns the counts.
pub(crate) fn tokenize(text: &str, toks: &mut Vec<Tok>) -> Stats {
    toks.clear();
    let mut st = Stats::default();
    let mut w = Word::new();
    let mut ph = Phrases::new();
    for chunk in Chunks(text) {
        let b = chunk.as_bytes();
        if b[0] == b'@'
            || starts_with_ci(b, b"http://")
            || starts_with_ci(b, b"https://")
            || starts_with_ci(b, b"www.")
        {
            continue;
        }
        if let Some(e) = emoticon(chunk) {
            ph.reset();
            toks.push(Tok {
                entry: e,
                kind: Kind::Emoji,
                flags: 0,
            });
            continue;
        }
        let (hashtag, body) = match chunk.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, chunk),
        };
        let mut prev_lower = false;
        let bytes = body.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            let b = bytes[at];
            let c = if b < 0x80 {
                at += 1;
                if b.is_ascii_alphanumeric() {
                    // ASCII fast path: no decoding, no Unicode tables, no folding beyond
                    // lowercase.
                    let upper = b.is_ascii_uppercase();
                    if hashtag && upper && prev_lower {
                        flush(&mut w, hashtag, toks, &mut st, &mut ph);
                    }
                    prev_lower = b.is_ascii_lowercase();
                    if b.is_ascii_alphabetic() {
                        st.latin += 1;
                    }
                    w.push_ascii(b, upper);
                    continue;
                }
                b as char
            } else {
                let c = body[at..].chars().next().unwrap_or('\0');
                at += c.len_utf8();
                if matches!(c, '\u{c0}'..='\u{ff}') && !matches!(c, '\u{d7}' | '\u{f7}') {
                    // Latin-1 letters (French accents): no Unicode tables.
                    let upper = c < '\u{df}';
                    if hashtag && upper && prev_lower {
                        flush(&mut w, hashtag, toks, &mut st, &mut ph);
                    }
                    prev_lower = !upper;
                    st.latin += 1;
                    if norm::is_french_accent(c) {
                        st.accents += 1;
                    }
                    w.push_latin1(c, upper);
                    continue;
                }
                if c.is_alphanumeric() {
                    if hashtag && c.is_uppercase() && prev_lower {
                        flush(&mut w, hashtag, toks, &mut st, &mut ph);
                    }
                    prev_lower = c.is_lowercase();
                    if c.is_alphabetic() {
                        if (c as u32) < 0x250 {
                            st.latin += 1;
                        } else {
                            st.other_script += 1;
                        }
                        if norm::is_french_accent(c) {
                            st.accents += 1;
                        }
                    }
                    w.push(c);
                    continue;
                }
                c
            };
            if matches!(c, '\'' | '\u{2019}') && !w.is_empty() && next_is_alphabetic(&body[at..]) {
                w.push('\'');
                continue;
            }
            if norm::is_modifier(c) {
                continue;
            }
            flush(&mut w, hashtag, toks, &mut st, &mut ph);
            prev_lower = false;
            if norm::is_emoji(c) {
                ph.reset();
                let mut k = [0u8; 4];
                toks.push(Tok {
                    entry: lexicon::find(c.encode_utf8(&mut k)),
                    kind: Kind::Emoji,
                    flags: 0,
                });
                st.ends_with_question = false;
                continue;
            }
            let brk = match c {
                '!' => {
                    st.bangs += 1;
                    st.ends_with_question = false;
                    true
                }
                '?' => {
                    st.questions += 1;
                    st.ends_with_question = true;
                    true
                }
                '.' | ';' => {
                    st.ends_with_question = false;
                    true
                }
                ',' | ':' | '(' | ')' => true,
                _ => false,
            };
            if brk {
                ph.reset();
                if !matches!(
                    toks.last(),
                    Some(Tok {
                        kind: Kind::Break,
                        ..
                    }) | None
                ) {
                    toks.push(Tok {
                        entry: NONE,
                        kind: Kind::Break,
                        flags: 0,
                    });
                }
            }
        }
        flush(&mut w, hashtag, toks, &mut st, &mut ph);
    }
    st
}

/// `str::split_whitespace` with an ASCII fast path (same chunks).
struct Chunks<'a>(&'a str);

/// Byte length of the prefix of `s` whose characters are (`ws`) / are not whitespace.
#[inline(always)]
fn ws_run(s: &str, ws: bool) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if matches!(c, b'\t'..=b'\r' | b' ') != ws {
                break;
            }
            i += 1;
        } else {
            let ch = s[i..].chars().next().unwrap_or('\0');
            if ch.is_whitespace() != ws {
                break;
            }
            i += ch.len_utf8();
        }
    }
    i
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a str;

    #[inline(always)]
    fn next(&mut self) -> Option<&'a str> {
        let s = &self.0[ws_run(self.0, true)..];
        if s.is_empty() {
            self.0 = s;
            return None;
        }
        let n = ws_run(s, false);
        self.0 = &s[n..];
        Some(&s[..n])
    }
}

/// Whether `rest` starts with an alphabetic character.
#[inline]
fn next_is_alphabetic(rest: &str) -> bool {
    match rest.as_bytes().first() {
        None => false,
        Some(b) if *b < 0x80 => b.is_ascii_alphabetic(),
        Some(_) => rest.chars().next().is_some_and(char::is_alphabetic),
    }
}

fn starts_with_ci(b: &[u8], prefix: &[u8]) -> bool {
    b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The entry of `chunk` if it is an emoticon the lexicon knows (":)", ":-(", "<3", "xD"),
/// ignoring trailing sentence punctuation.
fn emoticon(chunk: &str) -> Option<u32> {
    const MARK: [bool; 256] = {
        let mut t = [false; 256];
        let marks = b":;=<()[]^";
        let mut i = 0;
        while i < marks.len() {
            t[marks[i] as usize] = true;
            i += 1;
        }
        t
    };
    let b = chunk.as_bytes();
    if b.len() > 8 || !b.iter().any(|c| MARK[*c as usize]) {
        return None;
    }
    let mut buf = [0u8; 8];
    let mut s = chunk;
    loop {
        let n = s.len();
        if n == 0 {
            return None;
        }
        for (i, c) in s.bytes().enumerate() {
            buf[i] = c.to_ascii_lowercase();
        }
        let e = std::str::from_utf8(&buf[..n]).map_or(NONE, lexicon::find);
        if e != NONE && lexicon::entry(e).has_val(2) {
            return Some(e);
        }
        match s.strip_suffix(['.', ',', '!', '?']) {
            Some(rest) => s = rest,
            None => return None,
        }
    }
}

/// Ends the current word: looks it up (the word as written but with elongations cut to two
/// letters, then to one), and pushes it, or its apostrophe-separated parts when only those
/// are known.
fn flush(w: &mut Word, hashtag: bool, toks: &mut Vec<Tok>, st: &mut Stats, ph: &mut Phrases) {
    w.finish();
    if w.is_empty() {
        w.clear();
        return;
    }
    let caps = !hashtag && w.upper >= 2 && w.lower == 0;
    let mut flags = if caps { CAPS } else { 0 };
    if w.nruns > 0 {
        flags |= ELONG;
    }
    st.words += 1;
    if caps {
        st.caps_words += 1;
    }
    let s: &[u8] = if w.overflow { b"" } else { w.bytes() };
    let mut entry = if s.is_empty() {
        NONE
    } else {
        lexicon::find_bytes(s)
    };
    let mut squeezed_buf: [u8; MAX_WORD];
    let mut text = s;
    if entry == NONE && w.nruns > 0 && !w.overflow {
        squeezed_buf = [0u8; MAX_WORD];
        let sq = w.squeezed(&mut squeezed_buf);
        let e = lexicon::find_bytes(sq);
        if e != NONE {
            entry = e;
            text = sq;
        }
    }
    if entry == NONE && text.contains(&b'\'') {
        for part in text.split(|b| *b == b'\'').filter(|p| !p.is_empty()) {
            toks.push(Tok {
                entry: lexicon::find_bytes(part),
                kind: Kind::Word,
                flags,
            });
            let i = toks.len() - 1;
            ph.after_word(toks, i, part);
        }
    } else {
        toks.push(Tok {
            entry,
            kind: Kind::Word,
            flags,
        });
        let i = toks.len() - 1;
        ph.after_word(toks, i, text);
    }
    w.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> (Vec<(Kind, bool, u8)>, Stats) {
        let mut toks = Vec::new();
        let st = tokenize(text, &mut toks);
        (
            toks.iter()
                .map(|t| (t.kind, t.entry != NONE, t.flags))
                .collect(),
            st,
        )
    }

    fn entry_of(word: &str) -> u32 {
        lexicon::find(&norm::normalize_key(word))
    }

    #[test]
    fn urls_and_mentions_are_dropped_and_hashtags_split() {
        let mut toks = Vec::new();
        let st = tokenize("@acme see https://x.co/a #ChuteLibre", &mut toks);
        assert_eq!(st.words, 3, "see, chute, libre");
        assert_eq!(toks.len(), 3);
    }

    #[test]
    fn accents_are_optional_and_elongations_found() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        tokenize("très déçu", &mut a);
        tokenize("tres decu", &mut b);
        assert_eq!(
            a.iter().map(|t| t.entry).collect::<Vec<_>>(),
            b.iter().map(|t| t.entry).collect::<Vec<_>>()
        );
        let mut t = Vec::new();
        tokenize("nuuuuul", &mut t);
        assert_eq!(t[0].entry, entry_of("nul"));
        assert_ne!(t[0].flags & ELONG, 0);
        tokenize("goooood", &mut t);
        assert_eq!(t[0].entry, entry_of("good"));
    }

    #[test]
    fn emoji_and_emoticons_are_tokens() {
        let (k, st) = kinds("great 😍😍 :) !!!");
        assert_eq!(k.iter().filter(|t| t.0 == Kind::Emoji).count(), 3);
        assert!(k.iter().filter(|t| t.0 == Kind::Emoji).all(|t| t.1));
        assert_eq!(st.bangs, 3);
    }

    #[test]
    fn apostrophes_join_known_words_and_split_the_rest() {
        let mut t = Vec::new();
        tokenize("don't", &mut t);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].entry, entry_of("don't"));
        tokenize("qu\u{2019}elle", &mut t);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].entry, entry_of("qu"));
        assert_eq!(t[1].entry, entry_of("elle"));
    }

    #[test]
    fn phrases_replace_their_words() {
        let mut t = Vec::new();
        tokenize("c'est pas terrible", &mut t);
        let live: Vec<u32> = t
            .iter()
            .filter(|t| t.flags & CONSUMED == 0)
            .map(|t| t.entry)
            .collect();
        assert!(live.contains(&entry_of("pas terrible")), "{t:?}");
        tokenize("rien à redire", &mut t);
        assert_eq!(t[0].entry, entry_of("rien a redire"));
        assert_ne!(t[2].flags & CONSUMED, 0);
    }

    #[test]
    fn caps_words_are_marked() {
        let (k, st) = kinds("this is GREAT");
        assert_eq!(k[2].2 & CAPS, CAPS);
        assert_eq!(st.caps_words, 1);
    }

    #[test]
    fn no_token_buffer_growth_after_warmup() {
        let mut t = Vec::with_capacity(64);
        let cap = t.capacity();
        for _ in 0..100 {
            tokenize(
                "I looooove this, but the battery is NOT good :( #fail",
                &mut t,
            );
        }
        assert_eq!(t.capacity(), cap);
    }
}
