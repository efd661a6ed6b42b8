//! The mention store at scale: what upserting millions of mentions costs the whole process
//! (the timely worker's reads and writes plus the store's background flushes and
//! compactions), which the `stages` bench cannot show (its 100 k mentions fit in one
//! memtable).
//!
//! `cargo build --release -p vigie-benches && target/release/store --mentions 3000000 [--memory] [--no-undo] [--sequential-ids]`
//!
//! Each batch of 5,000 mentions reads every mention's previous body and writes the new
//! one in key order, as the upsert stage does at one dataflow time; the undo log
//! (checkpoints on, as in `vigie run`) starts a new interval every 20 batches and keeps the
//! last two. Mention ids are random, as clients' UUIDs are; with `--sequential-ids` they
//! count up, as in this bench's rows before 2026-12-07 — which put every write at the end
//! of its organisation's keys and made the memtable's lookups and inserts cheap.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use vigie_benches::harness::{at_least_one, cpu_seconds, rss_bytes};
use vigie_pipeline::graph::upsert::{MentionStore, Write};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 5_000;

/// The mention store alone at scale (benches/README.md, "The mention store at scale").
#[derive(Debug, Parser)]
#[command(name = "store")]
struct Opts {
    /// Live mentions to upsert.
    #[arg(long, default_value_t = 3_000_000, value_parser = at_least_one())]
    mentions: usize,
    /// The in-memory store instead of the one on disk.
    #[arg(long)]
    memory: bool,
    /// No undo log (no checkpoint boundaries).
    #[arg(long)]
    no_undo: bool,
    /// Sequential ids instead of random ones.
    #[arg(long)]
    sequential_ids: bool,
}

fn main() {
    let opts = Opts::parse();
    vigie_benches::harness::memory_as_in_vigie_run();
    let (n, memory, undo, sequential) = (
        opts.mentions,
        opts.memory,
        !opts.no_undo,
        opts.sequential_ids,
    );
    eprintln!("generating {n} mentions");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let corpus: Vec<_> = vigie_benches::live_mentions(n, 20)
        .into_iter()
        .map(|(mut k, b)| {
            if !sequential {
                k.id = uuid::Uuid::from_u64_pair(random(), random());
            }
            (k, Arc::new(b))
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("vigie-store-bench-{}", std::process::id()));
    let mut store = if memory {
        MentionStore::memory()
    } else {
        MentionStore::open(Some(&dir), undo, None)
    };
    let pid = std::process::id();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    let mut time = 0u64;
    // Time the worker thread spends at checkpoint boundaries (what a label stalls the
    // graph for): total, count and the slowest.
    let (mut at_boundaries, mut boundaries, mut slowest) = (0f64, 0u32, 0f64);
    for (i, chunk) in corpus.chunks(BATCH).enumerate() {
        time += 1;
        if undo && i % 20 == 0 {
            let b0 = Instant::now();
            store.boundary(time.checked_sub(20)).expect("boundary");
            let took = b0.elapsed().as_secs_f64();
            (at_boundaries, boundaries, slowest) =
                (at_boundaries + took, boundaries + 1, slowest.max(took));
        }
        let mut chunk = chunk.to_vec();
        chunk.sort_by_key(|(k, _)| *k);
        chunk.dedup_by_key(|(k, _)| *k);
        let writes: Vec<Write> = chunk
            .iter()
            .map(|(k, b)| (*k, Some(b.clone()), store.get(k)))
            .collect();
        store.apply(time, writes);
        if (i + 1) % 200 == 0 {
            let done = (i + 1) * BATCH;
            eprintln!(
                "{done} mentions: {:.0}/s, {:.2} CPU µs per mention, RSS {} MiB",
                done as f64 / t0.elapsed().as_secs_f64(),
                (cpu_seconds(pid) - cpu0) * 1e6 / done as f64,
                rss_bytes(pid) >> 20
            );
        }
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(pid) - cpu0);
    println!(
        "| {n} | {} | {:.1} s | {:.0}/s | {:.2} | {:.2} | {} MiB | {} live |",
        if memory {
            "memory"
        } else if undo {
            "disk, undo log"
        } else {
            "disk"
        },
        wall,
        n as f64 / wall,
        cpu / wall,
        cpu * 1e6 / n as f64,
        rss_bytes(pid) >> 20,
        store.len()
    );
    if boundaries > 0 {
        println!(
            "boundaries: {boundaries}, {:.1} ms in all, {:.2} ms mean, {:.2} ms slowest",
            at_boundaries * 1e3,
            at_boundaries * 1e3 / f64::from(boundaries),
            slowest * 1e3
        );
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
