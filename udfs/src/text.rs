//! Tokenisation of social text: words (lowercased, accents folded, elongations reduced),
//! emoji and emoticons; URLs and @handles dropped; hashtags split into words.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word, normalised: lowercase, diacritics folded ("déçu" → "decu"), 3+ repeated
    /// letters reduced to one ("soooo" → "so"). `caps` is set for an ALL-CAPS word of 2+
    /// letters.
    Word {
        /// Normalised form.
        norm: String,
        /// Whether it was written in capitals.
        caps: bool,
    },
    /// An emoji or an emoticon such as `:)`.
    Emoji(String),
    /// A clause break: `but`-like contrast is handled by the scorer, this marks `.`, `;`, `?`.
    Break,
}

/// Folds French (and common Latin) diacritics.
pub fn fold(c: char) -> char {
    match c {
        'à' | 'â' | 'ä' | 'á' | 'ã' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'î' | 'ï' | 'í' | 'ì' => 'i',
        'ô' | 'ö' | 'ó' | 'ò' | 'õ' => 'o',
        'ù' | 'û' | 'ü' | 'ú' => 'u',
        'ç' => 'c',
        'ÿ' => 'y',
        'ñ' => 'n',
        'œ' => 'o',
        _ => c,
    }
}

/// Emoticons recognised, longest first.
const EMOTICONS: &[&str] = &[
    ":-)", ":-(", ":-D", ":'(", ";-)", ":)", ":(", ":D", ";)", ":/", ":P", ":p", "<3", "xD", "XD",
];

fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F300..=0x1FAFF | 0x2600..=0x27BF | 0x2B50 | 0x2B55)
}

/// Reduces runs of 3+ identical letters to one ("nuuul" → "nul", "soooo" → "so").
fn squeeze(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut j = i;
        while j < chars.len() && chars[j] == c {
            j += 1;
        }
        let run = j - i;
        let keep = if run >= 3 { 1 } else { run };
        for _ in 0..keep {
            out.push(c);
        }
        i = j;
    }
    out
}

fn push_word(raw: &str, hashtag: bool, out: &mut Vec<Token>) {
    if raw.is_empty() {
        return;
    }
    // Hashtags: split camelCase ("#ChuteLibre" → "chute", "libre").
    let parts: Vec<String> = if hashtag {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut prev_lower = false;
        for c in raw.chars() {
            if c.is_uppercase() && prev_lower && !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = c.is_lowercase();
            cur.push(c);
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
        parts
    } else {
        vec![raw.to_string()]
    };
    for p in parts {
        let letters = p.chars().filter(|c| c.is_alphabetic()).count();
        let caps = !hashtag && letters >= 2 && p.chars().all(|c| !c.is_lowercase());
        let norm: String = p.chars().flat_map(char::to_lowercase).map(fold).collect();
        let norm = squeeze(&norm);
        if !norm.is_empty() {
            out.push(Token::Word { norm, caps });
        }
    }
}

/// Tokens of `text`, plus the number of `!` (capped at 4).
pub fn tokenize(text: &str) -> (Vec<Token>, u32) {
    let mut out = Vec::new();
    let mut bangs = 0u32;
    for chunk in text.split_whitespace() {
        let lower = chunk.to_ascii_lowercase();
        if lower.starts_with("http://")
            || lower.starts_with("https://")
            || lower.starts_with("www.")
            || chunk.starts_with('@')
        {
            continue;
        }
        if let Some(e) = EMOTICONS
            .iter()
            .find(|e| chunk == **e || (chunk.starts_with(**e) && chunk.len() <= e.len() + 2))
        {
            out.push(Token::Emoji((*e).to_string()));
            continue;
        }
        let (hashtag, body) = match chunk.strip_prefix('#') {
            Some(rest) => (true, rest),
            None => (false, chunk),
        };
        let mut word = String::new();
        for c in body.chars() {
            if c.is_alphanumeric() {
                word.push(c);
                continue;
            }
            push_word(&word, hashtag, &mut out);
            word.clear();
            if is_emoji(c) {
                out.push(Token::Emoji(c.to_string()));
            } else if c == '!' {
                bangs = (bangs + 1).min(4);
            } else if matches!(c, '.' | ';' | '?' | ',')
                && !matches!(out.last(), Some(Token::Break) | None)
            {
                out.push(Token::Break);
            }
            // Apostrophes and other punctuation split words ("n'est" → "n", "est").
        }
        push_word(&word, hashtag, &mut out);
    }
    (out, bangs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokenize(text)
            .0
            .into_iter()
            .filter_map(|t| match t {
                Token::Word { norm, .. } => Some(norm),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn urls_and_mentions_are_dropped_and_hashtags_split() {
        assert_eq!(
            words("@acme see https://x.co/a #ChuteLibre"),
            vec!["see", "chute", "libre"]
        );
    }

    #[test]
    fn accents_are_folded_and_elongations_squeezed() {
        assert_eq!(
            words("Très DÉÇU, c'est nuuuul"),
            vec!["tres", "decu", "c", "est", "nul"]
        );
    }

    #[test]
    fn emoji_and_emoticons_are_tokens() {
        let (t, bangs) = tokenize("great 😍😍 :) !!!");
        assert_eq!(t.iter().filter(|t| matches!(t, Token::Emoji(_))).count(), 3);
        assert_eq!(bangs, 3);
    }
}
