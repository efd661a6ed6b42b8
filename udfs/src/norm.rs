//! Character normalisation shared by the tokenizer and the build script (which applies it to
//! lexicon keys), so that a key and a token written the same way always meet: lowercase,
//! diacritics folded ("déçu" → "decu"), typographic apostrophes made ASCII, emoji
//! presentation selectors, joiners and skin tones dropped.

/// What one input character becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folded {
    /// Nothing (a variation selector, a zero-width joiner, a skin-tone modifier).
    Skip,
    /// One character.
    One(char),
    /// Two characters ("œ" → "oe").
    Two(char, char),
}

/// Whether `c` only modifies the character before it (and is dropped).
pub fn is_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0E | 0xFE0F | 0x200D | 0x1F3FB..=0x1F3FF)
}

/// Lowercase, accent-folded form of `c`.
#[inline]
pub fn fold(c: char) -> Folded {
    if c.is_ascii() {
        return Folded::One(c.to_ascii_lowercase());
    }
    if is_modifier(c) {
        return Folded::Skip;
    }
    // U+00DF..=U+00FF (French accents once lowercased) are their own lowercase: no
    // Unicode table lookup for them.
    let lower = if matches!(c, '\u{df}'..='\u{ff}') {
        c
    } else {
        c.to_lowercase().next().unwrap_or(c)
    };
    Folded::One(match lower {
        'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'î' | 'ï' | 'í' | 'ì' => 'i',
        'ô' | 'ö' | 'ó' | 'ò' | 'õ' => 'o',
        'ù' | 'û' | 'ü' | 'ú' => 'u',
        'ç' => 'c',
        'ÿ' => 'y',
        'ñ' => 'n',
        'œ' => return Folded::Two('o', 'e'),
        'æ' => return Folded::Two('a', 'e'),
        '\u{2019}' | '\u{2018}' | '`' | '\u{b4}' => '\'',
        other => other,
    })
}

/// Whether `c` is a French accented letter (evidence for French when detecting the language).
#[inline]
pub fn is_french_accent(c: char) -> bool {
    matches!(
        c,
        'é' | 'è'
            | 'ê'
            | 'à'
            | 'ç'
            | 'ù'
            | 'û'
            | 'ô'
            | 'î'
            | 'â'
            | 'ë'
            | 'ï'
            | 'œ'
            | 'É'
            | 'È'
            | 'À'
    )
}

/// Whether `c` is a pictographic emoji (scored as a token of its own).
#[inline]
pub fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F300..=0x1F3FA | 0x1F400..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF
        | 0x203C | 0x2049 | 0x1F004 | 0x1F0CF | 0x1F170..=0x1F251)
}

/// Normalised form of a whole key (lexicon entries): every character folded, runs of three
/// or more identical characters cut to two (as the tokenizer does first), whitespace
/// collapsed to single spaces.
#[cfg_attr(not(test), allow(dead_code))] // used by build.rs and the tokenizer's tests
pub fn normalize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut last = '\0';
    let mut run = 0;
    let mut push = |ch: char, out: &mut String| {
        if ch == last {
            run += 1;
            if run >= 3 {
                return;
            }
        } else {
            last = ch;
            run = 1;
        }
        out.push(ch);
    };
    for word in key.split_whitespace() {
        if !out.is_empty() {
            push(' ', &mut out);
        }
        for c in word.chars() {
            match fold(c) {
                Folded::Skip => {}
                Folded::One(a) => push(a, &mut out),
                Folded::Two(a, b) => {
                    push(a, &mut out);
                    push(b, &mut out);
                }
            }
        }
    }
    out
}

/// Longest key kept inline in the lookup table (and hashed by [`hash_short`]).
pub const SHORT_KEY: usize = 16;

#[inline(always)]
fn rd64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

#[inline(always)]
fn rd32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// The bytes of a key of at most [`SHORT_KEY`] bytes, zero-padded, as one little-endian
/// integer; built from two overlapping loads (no byte loop, no `memcpy`).
#[inline(always)]
pub fn pack_short(b: &[u8]) -> u128 {
    let n = b.len();
    debug_assert!(n <= SHORT_KEY);
    if n >= 8 {
        u128::from(rd64(b, 0)) | (u128::from(rd64(b, n - 8)) << (8 * (n - 8)))
    } else if n >= 4 {
        u128::from(rd32(b, 0) | (rd32(b, n - 4) << (8 * (n - 4))))
    } else if n > 0 {
        let m = n / 2;
        u128::from(
            u64::from(b[0]) | (u64::from(b[m]) << (8 * m)) | (u64::from(b[n - 1]) << (8 * (n - 1))),
        )
    } else {
        0
    }
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn finish_hash(mut h: u64) -> u64 {
    h ^= h >> 29;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// [`key_hash`] of a key of `n` ≤ [`SHORT_KEY`] bytes given packed by [`pack_short`]: its
/// two halves are multiplied in parallel, then mixed once more (a short dependency chain:
/// this is on every lookup's critical path).
#[inline]
pub fn hash_short(p: u128, n: usize, seed: u64) -> u64 {
    let a = (p as u64 ^ seed).wrapping_mul(K);
    let b = ((p >> 64) as u64 ^ (n as u64)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let h = (a ^ b.rotate_left(32)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// Hash of a lexicon key's bytes under `seed`, shared by the build script (which builds a
/// perfect-hash table with it) and the lookup. Multiply–xorshift over 8-byte words: keys
/// are short, and this is several times cheaper than SipHash.
#[inline]
pub fn key_hash(bytes: &[u8], seed: u64) -> u64 {
    if bytes.len() <= SHORT_KEY {
        return hash_short(pack_short(bytes), bytes.len(), seed);
    }
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ rd64(c, 0)).wrapping_mul(K);
        h ^= h >> 32;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut buf = [0u8; 8];
        buf[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(buf)).wrapping_mul(K);
    }
    finish_hash(h)
}

/// Bucket of a key with hash `h` among `n` buckets (perfect-hash first level).
#[inline]
pub fn bucket_of(h: u64, n: usize) -> usize {
    (((h >> 32) * n as u64) >> 32) as usize
}

/// Slot of a key with hash `h` under displacement `d` among `n` slots (second level).
#[inline]
pub fn slot_of(h: u64, d: u32, n: usize) -> usize {
    let x = (h as u32) ^ d.wrapping_mul(0x9E37_79B9);
    ((u64::from(x) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn latin1_lowercase_fast_path_matches_unicode() {
        for c in '\u{df}'..='\u{ff}' {
            assert_eq!(c.to_lowercase().collect::<String>(), c.to_string(), "{c:?}");
        }
    }
}
