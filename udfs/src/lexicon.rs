//! A first, small curated lexicon (valences on VADER's −4…4 scale) for English and French
//! words, slang and emoji, plus emotion cues. Words are in normalised form (lowercase,
//! accents folded). The scoring issue replaces this with published lexicons.

use crate::{Emotion, Lang};

/// Valence of an English word.
pub fn en(word: &str) -> Option<f32> {
    Some(match word {
        "love" | "loved" | "loving" | "loves" => 3.2,
        "amazing" | "awesome" | "excellent" | "fantastic" | "wonderful" | "outstanding"
        | "perfect" => 3.1,
        "great" | "brilliant" | "superb" | "incredible" => 3.0,
        "best" => 3.0,
        "happy" | "glad" | "delighted" | "thrilled" => 2.7,
        "good" | "nice" | "cool" | "fun" | "helpful" | "enjoy" | "enjoyed" | "beautiful" => 1.9,
        "like" | "likes" | "liked" => 1.5,
        "thanks" | "thank" | "recommend" | "recommended" | "win" | "winner" | "impressive"
        | "solid" | "quick" | "fast" => 1.6,
        "ok" | "okay" | "fine" | "decent" => 0.9,
        "lol" | "lmao" => 1.4,
        "wow" => 2.0,
        "yay" => 2.4,
        "excited" | "exciting" => 2.2,
        "reliable" | "trust" => 1.5,
        "hate" | "hated" | "hates" => -2.7,
        "worst" | "horrible" | "terrible" | "awful" | "disgusting" => -3.1,
        "bad" | "poor" | "sucks" | "useless" | "broken" | "broke" => -2.4,
        "angry" | "furious" | "outraged" => -2.8,
        "sad" | "disappointed" | "disappointing" | "unhappy" => -2.1,
        "frustrating" | "frustrated" | "annoying" | "annoyed" => -2.0,
        "crash" | "crashes" | "crashing" | "bug" | "buggy" | "fail" | "failed" | "fails" => -1.8,
        "scam" | "fraud" | "ripoff" => -2.9,
        "joke" => -1.0,
        "slow" | "expensive" | "overpriced" | "late" => -1.3,
        "scared" | "afraid" | "worried" | "fear" => -1.8,
        "wtf" => -2.0,
        "meh" => -0.5,
        "refund" => 0.0,
        _ => return None,
    })
}

/// Valence of a French word.
pub fn fr(word: &str) -> Option<f32> {
    Some(match word {
        "adore" | "adorer" | "aime" | "aimer" | "j'adore" => 3.0,
        "genial" | "geniale" | "excellent" | "excellente" | "parfait" | "parfaite"
        | "magnifique" | "incroyable" => 3.0,
        "top" | "super" | "ouf" => 2.4,
        "bien" | "bon" | "bonne" | "sympa" | "cool" | "efficace" | "rapide" => 1.8,
        "bravo" | "merci" | "recommande" | "content" | "contente" | "heureux" | "heureuse"
        | "ravi" | "ravie" => 2.2,
        "mdr" | "ptdr" | "lol" => 1.4,
        "nul" | "nulle" | "naze" => -2.6,
        "horrible" | "honte" | "arnaque" | "catastrophe" | "scandale" | "degoutant" | "pire" => {
            -3.0
        }
        "decu" | "decue" | "decevant" | "deception" => -2.2,
        "mauvais" | "mauvaise" | "casse" | "cassee" | "panne" | "bug" | "bugge" => -2.0,
        "relou" | "chiant" | "chiante" | "penible" | "lent" | "lente" | "cher" | "chere" => -1.6,
        "triste" | "colere" | "enerve" | "enervee" | "furieux" | "furieuse" => -2.2,
        "injoignable" | "inadmissible" | "inacceptable" => -2.4,
        "peur" | "inquiet" | "inquiete" => -1.6,
        "terrible" => 1.0, // « pas terrible » is the common (negated) use
        "moyen" | "bof" => -0.8,
        _ => return None,
    })
}

/// Valence of an emoji or emoticon (language-neutral).
pub fn emoji(e: &str) -> Option<f32> {
    Some(match e {
        "😍" | "🥰" | "😻" | "❤" | "💕" | "💖" => 3.0,
        "😀" | "😃" | "😄" | "😁" | "😊" | "🙂" | "😎" | "🎉" | "🙌" | "👏" | "✨" => {
            2.2
        }
        "😂" | "🤣" | "😆" => 1.8,
        "👍" | "👌" | "💯" | "🔥" | "⭐" | "🌟" => 1.9,
        "😡" | "🤬" | "😠" => -3.0,
        "😭" | "😢" | "😞" | "😔" | "💔" | "☹" => -2.3,
        "👎" | "💩" | "🤮" | "🤢" => -2.5,
        "😱" | "😨" | "😰" => -1.8,
        "🙄" | "😒" | "😤" => -1.5,
        ":)" | ":-)" | ";)" | ";-)" | ":D" | ":-D" | "xD" | "XD" | ":P" | ":p" => 2.0,
        "<3" => 3.0,
        ":(" | ":-(" | ":'(" => -2.0,
        ":/" => -1.0,
        _ => return None,
    })
}

/// Negators, in normalised form; "ne/n'" opens a French negation, "pas/jamais/…" closes it.
pub fn is_negator(word: &str, lang: Lang) -> bool {
    match lang {
        Lang::En => matches!(
            word,
            "not"
                | "no"
                | "never"
                | "dont"
                | "don"
                | "doesnt"
                | "didnt"
                | "isnt"
                | "wasnt"
                | "arent"
                | "cant"
                | "cannot"
                | "wont"
                | "nothing"
                | "nobody"
                | "neither"
                | "nor"
                | "without"
                | "hardly"
        ),
        Lang::Fr => matches!(
            word,
            "ne" | "n"
                | "pas"
                | "jamais"
                | "plus"
                | "rien"
                | "aucun"
                | "aucune"
                | "sans"
                | "personne"
        ),
        Lang::Other => false,
    }
}

/// Multiplier of an intensifier or diminisher.
pub fn modifier(word: &str, lang: Lang) -> Option<f32> {
    match lang {
        Lang::En => match word {
            "very" | "really" | "so" | "super" | "extremely" | "totally" | "absolutely"
            | "truly" | "incredibly" => Some(1.3),
            "barely" | "slightly" | "kinda" | "somewhat" | "little" => Some(0.6),
            _ => None,
        },
        Lang::Fr => match word {
            "tres" | "vraiment" | "trop" | "hyper" | "tellement" | "grave" | "absolument"
            | "franchement" => Some(1.3),
            "peu" | "assez" | "plutot" => Some(0.6),
            _ => None,
        },
        Lang::Other => None,
    }
}

/// Words marking contrast: what follows weighs more.
pub fn is_contrast(word: &str, lang: Lang) -> bool {
    match lang {
        Lang::En => matches!(word, "but" | "however" | "although" | "though"),
        Lang::Fr => matches!(word, "mais" | "pourtant" | "cependant" | "toutefois"),
        Lang::Other => false,
    }
}

/// Emotion cue of a word or emoji.
pub fn emotion(token: &str, lang: Lang) -> Option<Emotion> {
    use Emotion::*;
    let by_emoji = match token {
        "😍" | "🥰" | "😀" | "😃" | "😄" | "😁" | "😊" | "😂" | "🤣" | "❤" | "🎉" | ":)" | ":D"
        | "<3" => Some(Joy),
        "😡" | "🤬" | "😠" => Some(Anger),
        "🤮" | "🤢" | "💩" => Some(Disgust),
        "😱" | "😨" | "😰" => Some(Fear),
        "😭" | "😢" | "😞" | "😔" | "💔" | ":(" => Some(Sadness),
        "😮" | "😲" | "🤯" => Some(Surprise),
        "🙏" | "🤝" => Some(Trust),
        "⏳" | "🤞" => Some(Anticipation),
        _ => None,
    };
    if by_emoji.is_some() {
        return by_emoji;
    }
    match lang {
        Lang::En => match token {
            "love" | "loved" | "happy" | "glad" | "delighted" | "amazing" | "awesome" | "great"
            | "fun" | "yay" | "enjoy" => Some(Joy),
            "angry" | "furious" | "outraged" | "hate" | "hated" | "mad" | "scam" => Some(Anger),
            "disgusting" | "gross" | "awful" | "horrible" | "worst" => Some(Disgust),
            "scared" | "afraid" | "worried" | "fear" | "scary" | "terrified" => Some(Fear),
            "sad" | "disappointed" | "disappointing" | "unhappy" | "miss" => Some(Sadness),
            "wow" | "surprised" | "unexpected" | "shocked" | "omg" => Some(Surprise),
            "trust" | "reliable" | "recommend" | "recommended" | "thanks" | "thank" => Some(Trust),
            "waiting" | "soon" | "hope" | "excited" | "expect" | "upcoming" => Some(Anticipation),
            _ => None,
        },
        Lang::Fr => match token {
            "adore" | "genial" | "content" | "contente" | "heureux" | "heureuse" | "ravi"
            | "ravie" | "super" | "top" | "mdr" | "ptdr" => Some(Joy),
            "colere" | "enerve" | "enervee" | "furieux" | "furieuse" | "honte" | "scandale"
            | "arnaque" => Some(Anger),
            "degoutant" | "horrible" | "nul" | "nulle" | "pire" => Some(Disgust),
            "peur" | "inquiet" | "inquiete" | "angoisse" => Some(Fear),
            "triste" | "decu" | "decue" | "deception" => Some(Sadness),
            "surpris" | "surprise" | "incroyable" | "ouf" => Some(Surprise),
            "confiance" | "fiable" | "recommande" | "merci" | "bravo" => Some(Trust),
            "hate" | "bientot" | "attends" | "espere" | "impatient" => Some(Anticipation),
            _ => None,
        },
        Lang::Other => None,
    }
}

/// Common function words, used as language evidence.
pub fn stopword(word: &str) -> Option<Lang> {
    match word {
        "the" | "and" | "is" | "it" | "this" | "that" | "with" | "for" | "you" | "my" | "was"
        | "are" | "of" | "to" | "in" | "have" | "just" | "not" | "but" | "so" | "what" | "when"
        | "anyone" | "ever" | "very" | "i" | "me" | "they" | "its" | "im" | "dont" | "be"
        | "will" | "from" | "your" | "after" | "again" | "today" | "know" => Some(Lang::En),
        "le" | "la" | "les" | "et" | "est" | "un" | "une" | "des" | "du" | "de" | "je" | "pas"
        | "c" | "j" | "qui" | "que" | "pour" | "avec" | "sur" | "mon" | "ma" | "mes" | "ce"
        | "cette" | "il" | "elle" | "nous" | "vous" | "mais" | "tres" | "trop" | "vraiment"
        | "franchement" | "quelqu" | "au" | "aux" | "ne" | "n" | "jamais" | "depuis"
        | "semaine" | "deux" | "fois" | "rien" | "suis" | "ai" => Some(Lang::Fr),
        _ => None,
    }
}
