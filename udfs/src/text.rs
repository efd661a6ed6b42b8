//! Tokenisation of social text into lexicon entries, in one pass and without allocating:
//! words are normalised into a stack buffer (lowercase, accents folded, elongations cut)
//! and looked up at once; only the compact [`Tok`]s are kept, in a caller-owned buffer.
//!
//! URLs and @handles are dropped; hashtags are split at case changes (`#ChuteLibre` →
//! `chute`, `libre`); emoji and emoticons are tokens of their own; `'` joins a word when
//! the whole is a lexicon key ("don't") and splits it otherwise ("n'est" → `n`, `est`);
//! phrases of two or three words ("not bad", "pas terrible", "rien à redire") replace their
//! words when the lexicon has them.

use crate::lexicon::{self, HEAD2, HEAD3, NONE, STOP_EN, STOP_FR, STOP_OTHER};
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
    /// Language evidence of the word tokens (English, French, other), in half points:
    /// 2 per function word, 1 per content word only one of the two lexicons knows.
    pub evidence: [u32; 3],
}

impl Stats {
    /// Adds (`sign` 1) or removes (`sign` -1) the language evidence of a word's entry.
    #[inline]
    fn add_evidence(&mut self, entry: u32, sign: i32) {
        if entry == NONE {
            return;
        }
        let e = lexicon::entry(entry);
        let mut ev = [0u32; 3];
        if e.flags & STOP_EN != 0 {
            ev[0] += 2;
        }
        if e.flags & STOP_FR != 0 {
            ev[1] += 2;
        }
        if e.flags & STOP_OTHER != 0 {
            ev[2] += 2;
        }
        // A content word only one of the two lexicons knows is weaker evidence.
        match (e.has_val(0), e.has_val(1)) {
            (true, false) => ev[0] += 1,
            (false, true) => ev[1] += 1,
            _ => {}
        }
        for (acc, d) in self.evidence.iter_mut().zip(ev) {
            *acc = acc.wrapping_add_signed(sign * d as i32);
        }
    }
}

const MAX_WORD: usize = 64;
const MAX_RUNS: usize = 8;

/// A word being built: normalised UTF-8 bytes plus what the scorer wants to know of it.
struct Word {
    buf: [u8; MAX_WORD],
    len: usize,
    overflow: bool,
    /// An apostrophe was pushed (the word may split at it).
    apostrophe: bool,
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
            apostrophe: false,
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
        self.apostrophe = false;
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
        if ch == '\'' {
            self.apostrophe = true;
        }
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

    /// Pushes the run of ASCII letters and digits of `bytes` from `at` on (stopping before
    /// a hashtag's case change, where the word splits), with the word's state in locals;
    /// returns where the run ends.
    #[inline(always)]
    fn push_ascii_run(
        &mut self,
        bytes: &[u8],
        mut at: usize,
        hashtag: bool,
        prev_lower: &mut bool,
        st: &mut Stats,
    ) -> usize {
        let (mut len, mut last, mut run) = (self.len, self.last as u32, self.run);
        // Capitals in the low half, lowercase letters in the high half (scalar arithmetic:
        // separate counters get vectorised badly).
        let mut cases = 0u64;
        let mut overflow = self.overflow;
        loop {
            let b = bytes[at];
            // An ASCII letter or digit: only capitals lack bit 5, lowercase letters are above
            // `Z`; setting bit 5 lowercases a capital and leaves the rest unchanged.
            let lo = b > b'Z';
            cases += u64::from(b & 0x20 == 0) | (u64::from(lo) << 32);
            let ch = b | 0x20;
            let keep = if u32::from(ch) == last {
                run += 1;
                if run == 2 && self.nruns < MAX_RUNS {
                    // Provisional: becomes a real run only if a third copy follows.
                    self.runs[self.nruns] = (len as u8, 1);
                }
                run < 3 // elongation: keep two
            } else {
                if run >= 3 {
                    self.nruns += 1;
                }
                last = u32::from(ch);
                run = 1;
                true
            };
            if keep {
                if len < MAX_WORD {
                    self.buf[len] = ch;
                    len += 1;
                } else {
                    overflow = true;
                }
            }
            at += 1;
            *prev_lower = lo;
            match bytes.get(at) {
                Some(&n)
                    if n.is_ascii_alphanumeric() && !(hashtag && lo && n.is_ascii_uppercase()) => {}
                _ => break,
            }
        }
        self.len = len;
        self.last = char::from(last as u8);
        self.run = run;
        let (upper, lower) = (cases as u32, (cases >> 32) as u32);
        self.upper += upper;
        self.lower += lower;
        self.overflow = overflow;
        st.latin += upper + lower;
        at
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
        self.push_fold(lower);
    }

    fn push(&mut self, c: char) {
        if c.is_uppercase() {
            self.upper += 1;
        } else if c.is_lowercase() {
            self.lower += 1;
        }
        self.push_fold(c);
    }

    /// Appends the folded form of `c`.
    #[inline]
    fn push_fold(&mut self, c: char) {
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

/// `dst.copy_from_slice(src)` without a `memcpy` call for the usual short words: two
/// overlapping fixed-size copies.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if (1..4).contains(&n) {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    } else {
        dst.copy_from_slice(src);
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
            copy_short(&mut key[n..n + p.len()], p);
            n += p.len();
        }
        lexicon::find_bytes(&key[..n])
    }

    /// Called after word token `i` (normalised text `w`) is pushed.
    /// Phrases replace their words' language evidence with their own.
    fn after_word(&mut self, toks: &mut [Tok], st: &mut Stats, i: usize, w: &[u8]) {
        let head = match toks[i].entry {
            NONE => 0,
            e => lexicon::entry(e).flags & (HEAD2 | HEAD3),
        };
        let p1 = &self.recent[self.newest];
        let p2 = &self.recent[1 - self.newest];
        if p1.tok != NO_WORD && p2.tok != NO_WORD && p2.head & HEAD3 != 0 {
            let e = Self::lookup(&[p2.text(), p1.text(), w]);
            if e != NONE {
                st.add_evidence(toks[p2.tok].entry, -1);
                st.add_evidence(e, 1);
                toks[p2.tok].entry = e;
                for t in [p1.tok, i] {
                    st.add_evidence(toks[t].entry, -1);
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
                st.add_evidence(toks[p1.tok].entry, -1);
                st.add_evidence(e, 1);
                st.add_evidence(toks[i].entry, -1);
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
            copy_short(&mut r.buf[..w.len()], w);
        }
    }
}

/// Tokenizer state. A word's lookup is issued when the word ends but its result is used
/// only when the next word ends (or at the next emoji, break or end of text): the load of
/// its table slot, often a cache miss, overlaps with reading the next word instead of
/// stalling the branches that depend on it.
struct Tokenizer<'t> {
    toks: &'t mut Vec<Tok>,
    st: Stats,
    ph: Phrases,
    /// The word being read (`words[cur]`) and the one waiting for its lookup.
    words: [Word; 2],
    cur: usize,
    /// The waiting word, if any: whether it is part of a hashtag, and its entry.
    pending: Option<(bool, u32)>,
}

impl Tokenizer<'_> {
    #[inline(always)]
    fn word(&mut self) -> &mut Word {
        &mut self.words[self.cur]
    }

    /// Ends the current word: issues its lookup (the word as written but with elongations
    /// cut to two letters), settles the previous word, and leaves this one waiting.
    #[inline]
    fn flush(&mut self, hashtag: bool) {
        let w = &mut self.words[self.cur];
        w.finish();
        if w.is_empty() {
            w.clear();
            return;
        }
        let entry = if w.overflow {
            NONE
        } else {
            lexicon::find_bytes(w.bytes())
        };
        self.settle();
        self.pending = Some((hashtag, entry));
        self.cur ^= 1;
        self.words[self.cur].clear();
    }

    /// Pushes the waiting word, if any, or its apostrophe-separated parts when only those
    /// are known (elongations cut to one letter when only that form is known).
    #[inline]
    fn settle(&mut self) {
        let Some((hashtag, mut entry)) = self.pending.take() else {
            return;
        };
        let w = &self.words[self.cur ^ 1];
        let (toks, st, ph) = (&mut *self.toks, &mut self.st, &mut self.ph);
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
        let mut squeezed_buf: [u8; MAX_WORD];
        let mut text = s;
        if w.nruns > 0 && !w.overflow && entry == NONE {
            squeezed_buf = [0u8; MAX_WORD];
            let sq = w.squeezed(&mut squeezed_buf);
            let e = lexicon::find_bytes(sq);
            if e != NONE {
                entry = e;
                text = sq;
            }
        }
        if w.apostrophe && entry == NONE && text.contains(&b'\'') {
            for part in text.split(|b| *b == b'\'').filter(|p| !p.is_empty()) {
                push_word(toks, st, ph, lexicon::find_bytes(part), flags, part);
            }
        } else {
            push_word(toks, st, ph, entry, flags, text);
        }
    }
}

/// Pushes one word token (normalised text `text`), counting it as language evidence and
/// letting the phrase tracker see it.
#[inline]
fn push_word(
    toks: &mut Vec<Tok>,
    st: &mut Stats,
    ph: &mut Phrases,
    entry: u32,
    flags: u8,
    text: &[u8],
) {
    st.add_evidence(entry, 1);
    toks.push(Tok {
        entry,
        kind: Kind::Word,
        flags,
    });
    let i = toks.len() - 1;
    ph.after_word(toks, st, i, text);
}

/// Appends the tokens of `text` to `toks` (cleared first) and returns the counts.
pub(crate) fn tokenize(text: &str, toks: &mut Vec<Tok>) -> Stats {
    toks.clear();
    let mut tk = Tokenizer {
        toks,
        st: Stats::default(),
        ph: Phrases::new(),
        words: [Word::new(), Word::new()],
        cur: 0,
        pending: None,
    };
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
            tk.settle();
            tk.ph.reset();
            tk.toks.push(Tok {
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
                    if hashtag && b.is_ascii_uppercase() && prev_lower {
                        tk.flush(hashtag);
                    }
                    let w = &mut tk.words[tk.cur];
                    at = w.push_ascii_run(bytes, at - 1, hashtag, &mut prev_lower, &mut tk.st);
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
                        tk.flush(hashtag);
                    }
                    prev_lower = !upper;
                    tk.st.latin += 1;
                    if norm::is_french_accent(c) {
                        tk.st.accents += 1;
                    }
                    tk.word().push_latin1(c, upper);
                    continue;
                }
                if c.is_alphanumeric() {
                    if hashtag && c.is_uppercase() && prev_lower {
                        tk.flush(hashtag);
                    }
                    prev_lower = c.is_lowercase();
                    if c.is_alphabetic() {
                        if (c as u32) < 0x250 {
                            tk.st.latin += 1;
                        } else {
                            tk.st.other_script += 1;
                        }
                        if norm::is_french_accent(c) {
                            tk.st.accents += 1;
                        }
                    }
                    tk.word().push(c);
                    continue;
                }
                c
            };
            if matches!(c, '\'' | '\u{2019}')
                && !tk.word().is_empty()
                && next_is_alphabetic(&body[at..])
            {
                tk.word().push('\'');
                continue;
            }
            if norm::is_modifier(c) {
                continue;
            }
            tk.flush(hashtag);
            prev_lower = false;
            if norm::is_emoji(c) {
                tk.settle();
                tk.ph.reset();
                let mut k = [0u8; 4];
                tk.toks.push(Tok {
                    entry: lexicon::find(c.encode_utf8(&mut k)),
                    kind: Kind::Emoji,
                    flags: 0,
                });
                tk.st.ends_with_question = false;
                continue;
            }
            let brk = match c {
                '!' => {
                    tk.st.bangs += 1;
                    tk.st.ends_with_question = false;
                    true
                }
                '?' => {
                    tk.st.questions += 1;
                    tk.st.ends_with_question = true;
                    true
                }
                '.' | ';' => {
                    tk.st.ends_with_question = false;
                    true
                }
                ',' | ':' | '(' | ')' => true,
                _ => false,
            };
            if brk {
                tk.settle();
                tk.ph.reset();
                if !matches!(
                    tk.toks.last(),
                    Some(Tok {
                        kind: Kind::Break,
                        ..
                    }) | None
                ) {
                    tk.toks.push(Tok {
                        entry: NONE,
                        kind: Kind::Break,
                        flags: 0,
                    });
                }
            }
        }
        tk.flush(hashtag);
    }
    tk.settle();
    tk.st
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
