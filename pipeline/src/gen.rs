//! `vigie gen`: realistic synthetic mentions — English and French, several organisations
//! and sources, engagement numbers with heavy tails, out-of-order event times, and bursts
//! (a complaint going viral: many similar negative mentions on one source in minutes).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::cli::GenOpts;
use crate::post::post_batch;

const BRANDS: &[&str] = &["Acme", "Nimbus", "Veloce", "Lumio", "Kestrel", "Orbea"];
const PRODUCTS: &[&str] = &[
    "app",
    "phone",
    "bike",
    "delivery",
    "subscription",
    "headphones",
    "update",
];

const EN_POSITIVE: &[&str] = &[
    "Just tried the new {b} {p} and honestly it's amazing 😍",
    "{b} support was super helpful today, thanks! #happy",
    "Loving my {b} {p} so far, great quality",
    "wow {b} really nailed it with this {p} 🔥🔥",
    "Best {p} I've had in years. Well done {b} 👍",
    "@{b} thank you for the quick refund, excellent service",
];
const EN_NEGATIVE: &[&str] = &[
    "Worst experience with {b} ever. The {p} broke after 2 days 😡",
    "{b} {p} keeps crashing, so frustrating!!!",
    "Never buying from {b} again. Terrible {p}, awful support",
    "still waiting for my {b} {p}... this is a joke 👎",
    "Really disappointed with the {b} {p}, not worth the money",
    "{b} charged me twice and nobody answers. Scam? #fail",
];
const EN_NEUTRAL: &[&str] = &[
    "Anyone know when the {b} {p} ships to Canada?",
    "{b} announced a new {p} today",
    "Comparing the {b} {p} with the competition, thoughts?",
    "Is the {b} {p} available in blue?",
];
const FR_POSITIVE: &[&str] = &[
    "J'adore le nouveau {p} de {b} !! 😍",
    "Franchement {b} au top, livraison rapide et {p} génial",
    "Merci {b} pour le service client, super efficace 👍",
    "Trop bien ce {p} {b}, je recommande",
    "Excellent {p}, bravo {b} #content",
];
const FR_NEGATIVE: &[&str] = &[
    "Franchement {b} c'est nul, service client injoignable 😡",
    "Très déçu du {p} {b}, il ne marche pas du tout",
    "Plus jamais {b}. {p} cassé au bout d'une semaine",
    "{b} m'a facturé deux fois, c'est une honte 👎",
    "Le {p} {b} est vraiment horrible, quelle arnaque",
];
const FR_NEUTRAL: &[&str] = &[
    "Quelqu'un a testé le {p} de {b} ?",
    "{b} sort un nouveau {p} la semaine prochaine",
    "Le {p} {b} est disponible en magasin depuis lundi",
];
const AUTHORS: &[&str] = &[
    "alice", "bob_92", "claire.d", "dmitri", "emma_w", "fabien", "gaelle", "hugo", "ines", "jules",
];

/// One organisation to feed: its key and its sources.
#[derive(Debug, Clone)]
pub struct Feed {
    /// Ingest key.
    pub key: String,
    /// Source ids of the organisation.
    pub sources: Vec<Uuid>,
}

/// Parses `KEY=SRC[,SRC…]`.
pub fn parse_feed(s: &str) -> anyhow::Result<Feed> {
    let (key, sources) = s
        .split_once('=')
        .context("--feed must be INGEST_KEY=SOURCE_ID[,SOURCE_ID…]")?;
    let sources = sources
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Uuid::parse_str(s.trim()).with_context(|| format!("bad source id {s:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!sources.is_empty(), "--feed needs at least one source id");
    Ok(Feed {
        key: key.to_string(),
        sources,
    })
}

/// Deterministic generator of mentions.
pub struct Generator {
    rng: StdRng,
    now: i64,
    days: f64,
    /// Live feed: event times follow the clock (a few minutes of jitter, 2 % from the
    /// past `days`), as scrapers posting what they just saw.
    live: bool,
    /// (feed, source, mentions left, event time, the story's text).
    burst: Option<(usize, usize, u32, i64, String)>,
}

fn pick<'a>(rng: &mut StdRng, xs: &'a [&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

impl Generator {
    /// A generator seeded with `seed`, spreading event times over the `days` before `now`.
    pub fn new(seed: u64, days: f64, now: i64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            now,
            days,
            live: false,
            burst: None,
        }
    }

    /// A live generator: event times near the clock, read at every mention.
    pub fn live(seed: u64, days: f64) -> Self {
        let mut g = Self::new(seed, days, wall_clock());
        g.live = true;
        g
    }

    /// A text, its language and its intended polarity (-1, 0, 1).
    pub fn text(&mut self, polarity: Option<i8>) -> String {
        let fr = self.rng.random_bool(0.4);
        let polarity = polarity.unwrap_or_else(|| match self.rng.random_range(0..10) {
            0..=3 => 1,
            4..=6 => -1,
            _ => 0,
        });
        let templates = match (fr, polarity) {
            (false, 1) => EN_POSITIVE,
            (false, -1) => EN_NEGATIVE,
            (false, _) => EN_NEUTRAL,
            (true, 1) => FR_POSITIVE,
            (true, -1) => FR_NEGATIVE,
            (true, _) => FR_NEUTRAL,
        };
        let t = pick(&mut self.rng, templates);
        let b = pick(&mut self.rng, BRANDS);
        let p = pick(&mut self.rng, PRODUCTS);
        t.replace("{b}", b).replace("{p}", p)
    }

    /// The next mention for one of `feeds` (index of the feed, wire record).
    pub fn next(&mut self, feeds: &[Feed]) -> (usize, Value) {
        if self.live {
            self.now = wall_clock();
        }
        // Bursts: 1 in 2,000 mentions starts a viral complaint of 50–300 mentions (~8% of all).
        if self.burst.is_none() && self.rng.random_range(0..2000) == 0 {
            let f = self.rng.random_range(0..feeds.len());
            let s = self.rng.random_range(0..feeds[f].sources.len());
            let n = self.rng.random_range(50..300);
            let at = if self.live {
                self.now - 60
            } else {
                self.now - self.rng.random_range(0..3600)
            };
            let text = self.text(Some(-1));
            self.burst = Some((f, s, n, at, text));
        }
        let (feed, source, created, story, viral) = match self.burst.take() {
            Some((f, s, n, at, text)) => {
                // A viral complaint is one story: the post, then retweets and copies of it.
                let story = if self.rng.random_bool(0.7) {
                    format!("RT @{}: {text}", pick(&mut self.rng, AUTHORS))
                } else {
                    text.clone()
                };
                if n > 1 {
                    self.burst = Some((f, s, n - 1, at, text));
                }
                (f, s, at + self.rng.random_range(0..600), Some(story), true)
            }
            None => {
                let f = self.rng.random_range(0..feeds.len());
                let s = self.rng.random_range(0..feeds[f].sources.len());
                let back = if self.live && self.rng.random_range(0..50) > 0 {
                    self.rng.random_range(0..180)
                } else {
                    (self.rng.random::<f64>().powi(2) * self.days * 86_400.0) as i64
                };
                (f, s, self.now - back, None, false)
            }
        };
        let text = match story {
            Some(t) => t,
            None => self.text(None),
        };
        let author = format!(
            "{}{}",
            pick(&mut self.rng, AUTHORS),
            self.rng.random_range(0..1000)
        );
        let heavy = |rng: &mut StdRng, scale: f64| {
            (scale * (1.0 / (1.0 - rng.random::<f64>() * 0.999) - 1.0)) as u64
        };
        let boost = if viral { 50.0 } else { 1.0 };
        let created =
            OffsetDateTime::from_unix_timestamp(created).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let record = json!({
            "id": Uuid::from_u128(self.rng.random()).to_string(),
            "source_id": feeds[feed].sources[source],
            "text": text,
            "author": format!("@{author}"),
            "url": format!("https://example.com/{author}/status/{}", self.rng.random::<u32>()),
            "created_at": created.format(&Rfc3339).unwrap_or_default(),
            "likes": heavy(&mut self.rng, 3.0 * boost),
            "shares": heavy(&mut self.rng, 0.5 * boost),
            "replies": heavy(&mut self.rng, 0.8 * boost),
            "author_followers": heavy(&mut self.rng, 200.0),
        });
        (feed, record)
    }
}

fn wall_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `vigie gen`.
pub async fn run(opts: GenOpts) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    let mut gen = if opts.live {
        Generator::live(opts.seed, opts.days)
    } else {
        Generator::new(opts.seed, opts.days, now)
    };
    let feeds: Vec<Feed> = if opts.feeds.is_empty() {
        let sources = if opts.source_ids.is_empty() {
            vec![Uuid::nil()]
        } else {
            opts.source_ids.clone()
        };
        vec![Feed {
            key: String::new(),
            sources,
        }]
    } else {
        opts.feeds
            .iter()
            .map(|f| parse_feed(f))
            .collect::<anyhow::Result<_>>()?
    };
    let Some(base) = opts.post.clone() else {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut i = 0;
        while opts.count == 0 || i < opts.count {
            let (_, rec) = gen.next(&feeds);
            writeln!(out, "{rec}")?;
            i += 1;
        }
        return Ok(());
    };
    anyhow::ensure!(
        !opts.feeds.is_empty(),
        "--post needs at least one --feed KEY=SOURCE_ID,…"
    );
    let client = reqwest::Client::new();
    let started = Instant::now();
    let batch = opts.batch.max(1);
    let mut buffers: Vec<String> = vec![String::new(); feeds.len()];
    let mut counts = vec![0usize; feeds.len()];
    let (mut sent, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    let mut last_report = Instant::now();
    while opts.count == 0 || sent < opts.count {
        let (f, rec) = gen.next(&feeds);
        buffers[f].push_str(&rec.to_string());
        buffers[f].push('\n');
        counts[f] += 1;
        sent += 1;
        let last = opts.count != 0 && sent == opts.count;
        for i in 0..feeds.len() {
            if counts[i] >= batch || (last && counts[i] > 0) {
                let a = post_batch(
                    &client,
                    &base,
                    &feeds[i].key,
                    std::mem::take(&mut buffers[i]),
                )
                .await?;
                accepted += a.accepted;
                rejected += a.rejected;
                counts[i] = 0;
            }
        }
        if opts.rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / opts.rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Sleep in batch-sized steps, not per mention.
                if wait > Duration::from_millis(20) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("gen: {sent} generated, {accepted} accepted, {rejected} rejected");
            last_report = Instant::now();
        }
    }
    eprintln!(
        "gen: done: {sent} generated, {accepted} accepted, {rejected} rejected in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_valid() {
        let feeds = vec![Feed {
            key: "k".into(),
            sources: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
        }];
        let mut a = Generator::new(7, 2.0, 1_790_000_000);
        let mut b = Generator::new(7, 2.0, 1_790_000_000);
        for i in 0..2000 {
            let (fa, ra) = a.next(&feeds);
            let (_, rb) = b.next(&feeds);
            assert_eq!(ra, rb);
            assert_eq!(fa, 0);
            let text = ra.to_string();
            let record = serde_json::from_str(&text).unwrap();
            crate::ingest::validate::validate(i, &record, Uuid::nil(), 1_790_000_000).unwrap();
        }
    }
}
