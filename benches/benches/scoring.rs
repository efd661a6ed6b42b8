//! Scoring throughput (language + sentiment + emotions) per core on short EN/FR mentions.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use vigie_udfs::{score, ScoreConfig};

fn scoring(c: &mut Criterion) {
    let texts: Vec<String> = vigie_benches::mentions(10_000, 1)
        .into_iter()
        .filter_map(|(_, b)| b.map(|b| b.text))
        .collect();
    let cfg = ScoreConfig::default();
    let mut g = c.benchmark_group("scoring");
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.bench_function("score_10k_short_mentions", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(score(black_box(t), &cfg));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, scoring);
criterion_main!(benches);
