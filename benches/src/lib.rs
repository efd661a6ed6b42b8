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
