//! Ingest's per-record CPU: parsing a body into records and validating them, on the demo
//! feed's records (`vigie_pipeline::gen`, what `vigie demo` and the e2e bench post: ~300
//! bytes, EN/FR text, engagement counts), 10,000 per NDJSON body. One criterion "element"
//! is one record.
//!
//! `value_parse` is how records were parsed before 2026-12-06 (each line into a
//! `serde_json::Value`), kept as the reference for `typed_parse` (what ingest does now).
//!
//! `log/compaction` is the write-ahead log's compaction of those records, validated and
//! logged in epochs of 1,000 (the second half re-posts the first: the log's compaction
//! drops them), per mention compacted.

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

/// A directory removed when dropped.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn log_compaction(c: &mut Criterion) {
    use vigie_pipeline::graph::records::MentionKey;
    use vigie_pipeline::wal::Wal;
    let body = body();
    let org = Uuid::from_u128(9);
    let upserts: Vec<_> = records(&body, Framing::Ndjson)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let m = validate(i, r.as_ref().unwrap(), org, NOW).unwrap();
            let id = m.id.unwrap_or_else(|| Uuid::from_u128(i as u128));
            (MentionKey { org, id }, Some(m.body))
        })
        .collect();
    let root = std::env::temp_dir().join(format!("vigie-bench-log-{}", std::process::id()));
    let template = root.join("template");
    {
        let (mut wal, _) = Wal::open(&template, 4 << 20).unwrap();
        for (t, epoch) in upserts.chunks(1000).chain(upserts.chunks(1000)).enumerate() {
            wal.append(t as u64 + 1, epoch).unwrap();
        }
    }
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Elements(2 * N as u64));
    g.sample_size(20);
    let mut run = 0;
    g.bench_function("compaction", |b| {
        b.iter_batched(
            || {
                run += 1;
                let dir = root.join(run.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                for e in std::fs::read_dir(&template).unwrap() {
                    let e = e.unwrap();
                    std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
                }
                let (wal, _) = Wal::open(&dir, 4 << 20).unwrap();
                (wal, Removed(dir))
            },
            |(mut wal, dir)| {
                assert!(
                    wal.compact(u64::MAX).unwrap() > 0,
                    "the re-posts are dropped"
                );
                dir // removed after the timing
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
    std::fs::remove_dir_all(root).unwrap();
}

criterion_group!(benches, ingest, log_compaction);
criterion_main!(benches);
