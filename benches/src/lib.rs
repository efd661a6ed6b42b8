//! Shared inputs for vigie's benchmarks.
#![deny(missing_docs)]

pub mod harness;

use uuid::Uuid;
use vigie_pipeline::domain::Engagement;
use vigie_pipeline::graph::records::{MentionBody, MentionKey};

const TEXTS: &[&str] = &[
    "Just tried the new Acme app and honestly it's amazing 😍",
    "Worst experience with Nimbus ever. The phone broke after 2 days 😡",
    "Anyone know when the Lumio bike ships to Canada?",
    "J'adore le nouveau casque de Veloce !! 😍",
    "Franchement Kestrel c'est nul, service client injoignable",
    "Le abonnement Orbea est disponible en magasin depuis lundi",
];

/// `n` deterministic mentions over `orgs` organisations × 4 sources and 30 days.
pub fn mentions(n: usize, orgs: u128) -> Vec<(MentionKey, Option<MentionBody>)> {
    (0..n)
        .map(|i| {
            let i128 = i as u128;
            let org = Uuid::from_u128(1 + i128 % orgs);
            let key = MentionKey {
                org,
                id: Uuid::from_u128(1_000_000 + i128),
            };
            let body = MentionBody {
                source: Uuid::from_u128(100 + (i128 * 7) % 4),
                created_at_us: 1_790_000_000_000_000
                    + ((i as i64 * 7_919_000_003) % (30 * 86_400_000_000)),
                text: TEXTS[i % TEXTS.len()].into(),
                author: "@bench".into(),
                url: "https://example.com/p".into(),
                engagement: Engagement {
                    likes: (i % 50) as u64,
                    shares: (i % 7) as u64,
                    replies: 1,
                    author_followers: 300,
                },
                keywords: Vec::new().into(),
            };
            (key, Some(body))
        })
        .collect()
}

const STORIES: &[&str] = &[
    "Acme app down again, third time this week 😡",
    "RT @dmitri: Nimbus phone battery exploded on the train, avoid",
    "Veloce casque cassé au bout d'une semaine, arnaque",
    "Lumio bike recall announced today",
    "Kestrel support finally answered, great job 👍",
    "Orbea abonnement remboursé, merci !",
    "Acme price hike is a joke",
    "Nimbus new phone is amazing 😍",
];

/// Keywords of the benchmarks' sources.
pub const KEYWORDS: &[&str] = &["acme", "nimbus", "veloce", "lumio", "kestrel", "orbea"];

/// `n` deterministic mentions as a live feed sends them: over `orgs` organisations × 4
/// sources, event times following the clock (100 mentions per second of event time, up to
/// 2 minutes of jitter, 1 in 50 up to an hour late), 1 in 12 copies of one of 8 stories,
/// keywords matched as ingest matches them.
pub fn live_mentions(n: usize, orgs: u128) -> Vec<(MentionKey, MentionBody)> {
    let keywords: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let r = next();
            let org = Uuid::from_u128(1 + u128::from(r) % orgs);
            let key = MentionKey {
                org,
                id: Uuid::from_u128(1_000_000 + i as u128),
            };
            let late = if r % 50 == 0 { 3_600 } else { 120 };
            let created_at_us =
                1_790_000_000_000_000 + i as i64 * 10_000 - ((r >> 8) % late) as i64 * 1_000_000;
            // Stories: 1 in 12 mentions (as `vigie gen`'s bursts, ~8 %), 8 stories at a time,
            // a new set every 10,000 mentions (100 s of event time).
            let text = if (r >> 20) % 12 == 0 {
                let s = ((r >> 24) % STORIES.len() as u64) as usize;
                format!("{} (story {})", STORIES[s], i / 10_000)
            } else {
                format!("{} #{i}", TEXTS[((r >> 24) % TEXTS.len() as u64) as usize])
            };
            let matched: Vec<String> = vigie_udfs::virality::matched_keywords(&text, &keywords)
                .into_iter()
                .map(|k| keywords[k].clone())
                .collect();
            let body = MentionBody {
                source: Uuid::from_u128(100 + u128::from((r >> 32) % 4)),
                created_at_us,
                text: text.into(),
                author: format!("@user{}", (r >> 40) % 5000).into(),
                url: format!("https://example.com/s/{i}").into(),
                engagement: Engagement {
                    likes: (r >> 12) % 60,
                    shares: if (r >> 16) % 100 == 0 {
                        2_000
                    } else {
                        (r >> 16) % 8
                    },
                    replies: (r >> 44) % 5,
                    author_followers: (r >> 48) % 10_000,
                },
                keywords: matched.into(),
            };
            (key, body)
        })
        .collect()
}
