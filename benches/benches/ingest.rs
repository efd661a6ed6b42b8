//! Ingest's per-record CPU: parsing a body into records and validating them, on the demo
//! feed's records (`vigie_pipeline::gen`, what `vigie demo` and the e2e bench post: ~300
//! bytes, EN/FR text, engagement counts), 10,000 per NDJSON body. One criterion "element"
//! is one record.
//!
//! `value_parse` is how records were parsed before 2026-12-06 (each line into a
//! `serde_json::Value`), kept as the reference for `typed_parse` (what ingest does now).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;
use vigie_pipeline::gen::{Feed, Generator};
use vigie_pipeline::ingest::body::{records, Framing};
use vigie_pipeline::ingest::validate::validate;

const N: usize = 10_000;
const NOW: i64 = 1_790_000_000;

fn body() -> Bytes {
    let feeds = vec![Feed {
        key: "k".into(),
        sources: vec![Uuid::from_u128(1), Uuid::from_u128(2)],
    }];
    let mut generator = Generator::new(7, 2.0, NOW);
    let mut out = String::new();
    for _ in 0..N {
        out.push_str(&generator.next(&feeds).1.to_string());
        out.push('\n');
    }
    Bytes::from(out)
}

fn ingest(c: &mut Criterion) {
    let body = body();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("value_parse", |b| {
        b.iter(|| {
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                black_box(serde_json::from_slice::<serde_json::Value>(line).unwrap());
            }
        })
    });
    g.bench_function("typed_parse", |b| {
        b.iter(|| black_box(records(&body, Framing::Ndjson).unwrap()))
    });
    g.bench_function("typed_parse_and_validate", |b| {
        b.iter(|| {
            let rs = records(&body, Framing::Ndjson).unwrap();
            for (i, r) in rs.iter().enumerate() {
                let r = r.as_ref().unwrap();
                black_box(validate(i, r, Uuid::nil(), NOW).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
