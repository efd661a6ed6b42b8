//! Scoring throughput per core: language + sentiment + emotions on short EN/FR mentions.
//!
//! Corpus: the 720 hand-written mentions of `eval/data/` (English and French, with emoji,
//! hashtags, slang, negation, URLs; 3 to ~60 words, median ~14), scored in a loop. One
//! criterion "element" is one mention.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vigie_udfs::{score, Lang, ScoreConfig, Scorer};

const DATA: [&str; 4] = [
    include_str!("../../eval/data/vigie-en-tune.ndjson"),
    include_str!("../../eval/data/vigie-en-holdout.ndjson"),
    include_str!("../../eval/data/vigie-fr-tune.ndjson"),
    include_str!("../../eval/data/vigie-fr-holdout.ndjson"),
];

/// The texts of the dev corpus (the `text` field of each NDJSON line).
fn corpus() -> Vec<String> {
    DATA.iter()
        .flat_map(|d| d.lines())
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v.get("text")?.as_str()?.to_string())
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let texts = corpus();
    assert!(texts.len() >= 700, "corpus: {} texts", texts.len());
    let cfg = ScoreConfig::default();
    let mut g = c.benchmark_group("scoring");
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.bench_function("score_dev_corpus", |b| {
        let mut scorer = Scorer::new();
        b.iter(|| {
            for t in &texts {
                black_box(scorer.score(black_box(t), &cfg));
            }
        })
    });
    g.bench_function("score_dev_corpus_thread_local", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(score(black_box(t), &cfg));
            }
        })
    });
    g.bench_function("sentiment_only_known_language", |b| {
        let mut scorer = Scorer::new();
        b.iter(|| {
            for t in &texts {
                black_box(scorer.sentiment(black_box(t), Lang::En, &cfg));
            }
        })
    });
    // What ingest and the score stage do besides scoring: a source's keywords matched
    // against the text (three keywords, one of two words, as the demo's sources; split
    // once per source, as ingest's registry does), and the story key
    // (`virality::story_key`).
    let keywords = vigie_udfs::virality::KeywordSet::new(vec![
        "acme".to_string(),
        "service client".to_string(),
        "#acmeapp".to_string(),
    ]);
    g.bench_function("matched_keywords", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(keywords.matched(black_box(t)));
            }
        })
    });
    g.bench_function("story_key", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(vigie_udfs::virality::story_key(black_box(t)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
