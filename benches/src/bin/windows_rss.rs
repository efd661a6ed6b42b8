//! Memory of the event-time stages over a long simulated run: scored mentions flow through
//! virality → windows → alerts (the stages of issue 6, without the mention arrangement and
//! the trends, whose memory is another matter: see benches/README.md) for `--days` of event
//! time, and the process's resident memory is printed at the end of every simulated day.
//!
//! `cargo run --release -p vigie-benches --bin windows_rss -- --days 35 --per-day 200000 [--spill 0]`
//!
//! With `--graph 1`, the whole graph instead (`graph::build`: the upsert stage with its
//! store on disk as `vigie run` keeps it, scoring, trends and keyword trends too), fed
//! upserts: the memory of 50 M mentions over 60 days of issue 8.
//!
//! The stream: several organisations and sources, keywords, mostly one-off stories plus
//! bursts of shared stories, event times out of order within the lateness and a share of
//! late ones, re-posts of recent mentions with new engagement numbers.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::input::InputSession;
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::InputHandle;
use uuid::Uuid;
use vigie_pipeline::domain::Engagement;
use vigie_pipeline::graph::alerts::{alerts, AlertSpec};
use vigie_pipeline::graph::records::{MentionBody, MentionKey, Scored};
use vigie_pipeline::graph::score::score_one;
use vigie_pipeline::graph::virality::{virality, ViralitySpec};
use vigie_pipeline::graph::windows::{windows, WindowSpec};
use vigie_pipeline::graph::{GraphSpec, StateGauges, Upsert};
use vigie_pipeline::rules::RuleBook;
use vigie_udfs::ScoreConfig;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Bytes of the files below `dir`.
fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Memory of the event-time stages (or, with `--graph 1`, the whole graph) over a long
/// simulated run.
#[derive(Debug, clap::Parser)]
#[command(name = "windows_rss")]
struct Opts {
    /// Simulated days of event time.
    #[arg(long, default_value_t = 35)]
    days: u64,
    /// Mentions per simulated day.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    per_day: u64,
    /// Organisations.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    orgs: u64,
    /// Mentions per dataflow epoch.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    epoch: u64,
    /// 1: final velocities spilled to a temporary directory, as `vigie run` does under its
    /// data dir; 0: kept in memory.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    spill: u8,
    /// 1: the whole graph (upsert stage with its store on disk, scoring, trends); 0: the
    /// event-time stages alone.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    graph: u8,
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const TEXTS: [&str; 8] = [
    "acme support is awful, still waiting for a refund",
    "I love my new acme rocket, best purchase ever",
    "la livraison acme est en retard, très déçu",
    "meh, the acme rocket is fine I guess",
    "acme blender exploded https://news.example/acme-blender",
    "super service client chez acme, merci !",
    "worst customer service ever, acme never answers",
    "so happy with acme 😍",
];

fn main() {
    let opts = <Opts as clap::Parser>::parse();
    vigie_benches::harness::memory_as_in_vigie_run();
    let (days, per_day, orgs, epoch_size) = (opts.days, opts.per_day, opts.orgs, opts.epoch);
    let lateness_us = 300_000_000i64;
    let cfg = ScoreConfig::default();
    timely::execute_directly(move |worker| {
        let mut input: InputSession<u64, Scored, isize> = InputSession::new();
        let probe = Handle::new();
        let raised = Arc::new(AtomicU64::new(0));
        let late = Arc::new(AtomicU64::new(0));
        // `--spill 1`: final velocities spilled to a temporary directory, as `vigie run`
        // does under its data dir; `--spill 0`: kept in memory.
        let spill = (opts.spill == 1)
            .then(|| std::env::temp_dir().join(format!("vigie-rss-{}", std::process::id())));
        let gauges = Arc::new(StateGauges::default());
        let g = gauges.clone();
        let whole = opts.graph == 1;
        let mentions_dir = (whole && spill.is_some())
            .then(|| std::env::temp_dir().join(format!("vigie-rss-m-{}", std::process::id())));
        let trend_dir = (whole && spill.is_some())
            .then(|| std::env::temp_dir().join(format!("vigie-rss-t-{}", std::process::id())));
        let mut upserts: InputHandle<
            u64,
            timely::container::CapacityContainerBuilder<Vec<Upsert>>,
        > = InputHandle::new();
        if whole {
            let (late, raised, spill) = (late.clone(), raised.clone(), spill.clone());
            let (gauges, mentions_dir) = (gauges.clone(), mentions_dir.clone());
            let trend_dir = trend_dir.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                use timely::dataflow::operators::Input;
                let spec = GraphSpec {
                    lateness: Duration::from_micros(lateness_us as u64),
                    late,
                    gauges,
                    spill_dir: spill,
                    mention_dir: mentions_dir,
                    trend_dir,
                    ..GraphSpec::default()
                };
                vigie_pipeline::graph::build(scope.input_from(&mut upserts), spec)
                    .inner
                    .inspect(move |(c, _, d)| {
                        if matches!(c, vigie_pipeline::graph::records::Change::Alert(_)) && *d > 0 {
                            raised.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .probe_with(&probe);
            });
        } else {
            worker.dataflow::<u64, _, _>(|scope| {
                let scored = input.to_collection(scope);
                let rules = Arc::new(RuleBook::default());
                let viral = virality(
                    scored,
                    ViralitySpec {
                        lateness_us,
                        late: late.clone(),
                        gauges: gauges.clone(),
                        spill_dir: spill.clone(),
                        checkpoint: None,
                    },
                );
                let firings = windows(
                    viral.clone(),
                    WindowSpec {
                        lateness_us,
                        rules: rules.clone(),
                        gauges: gauges.clone(),
                        checkpoint: None,
                    },
                );
                let raised = raised.clone();
                alerts(
                    firings,
                    viral,
                    AlertSpec {
                        rules,
                        checkpoint: None,
                    },
                )
                .inspect(move |(a, _, _)| {
                    if raised.fetch_add(1, Ordering::Relaxed).is_multiple_of(97)
                        && std::env::var_os("SHOW").is_some()
                    {
                        eprintln!("{}", a.message);
                    }
                })
                .inner
                .probe_with(&probe);
            });
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start_us = 1_790_000_000_000_000i64;
        let day_us = 86_400_000_000i64;
        let step_us = day_us / per_day as i64;
        let mut time = 1u64;
        let mut recent: Vec<Scored> = Vec::with_capacity(4096);
        let mut next_id = 0u128;
        let started = Instant::now();
        println!("day  mentions  rss_mib  alerts    late  secs  members stories  frozen  win_keys buckets counted firing  trends t_disk");
        for day in 0..days {
            let day_started = Instant::now();
            for i in 0..per_day {
                let now = start_us + day as i64 * day_us + i as i64 * step_us;
                // A re-post of a recent mention with new engagement numbers now and then.
                if !recent.is_empty() && rng.below(10) == 0 {
                    let j = rng.below(recent.len() as u64) as usize;
                    let old = recent[j].clone();
                    let mut body = (*old.body).clone();
                    body.engagement.likes += 1 + rng.below(50);
                    let new = score_one(old.key, body.into(), &cfg);
                    if whole {
                        upserts.send((new.key, Some(new.body.clone()), time));
                    } else {
                        input.update(old, -1);
                        input.update(new.clone(), 1);
                    }
                    recent[j] = new;
                }
                next_id += 1;
                let org = Uuid::from_u128(1 + u128::from(rng.below(orgs)));
                let burst = (now / 600_000_000) % 97 == 0; // ten minutes in every ~16 hours
                let text = if burst {
                    TEXTS[4].to_string()
                } else if rng.below(4) == 0 {
                    TEXTS[rng.below(TEXTS.len() as u64) as usize].to_string()
                } else {
                    format!(
                        "{} #{}",
                        TEXTS[rng.below(TEXTS.len() as u64) as usize],
                        next_id
                    )
                };
                let t = if rng.below(50) == 0 {
                    now - 3_600_000_000 // an hour late
                } else {
                    now - rng.below(240_000_000) as i64
                };
                let body = MentionBody {
                    source: Uuid::from_u128(1000 + u128::from(rng.below(5))),
                    created_at_us: t,
                    text: text.into(),
                    author: "@bench".into(),
                    url: "".into(),
                    engagement: Engagement {
                        likes: rng.below(30),
                        shares: rng.below(5),
                        replies: rng.below(5),
                        author_followers: rng.below(10_000),
                    },
                    keywords: vec!["acme".to_string()].into(),
                };
                let s = score_one(
                    MentionKey {
                        org,
                        id: Uuid::from_u128(next_id),
                    },
                    body.into(),
                    &cfg,
                );
                if recent.len() < 4096 {
                    recent.push(s.clone());
                } else {
                    let j = rng.below(4096) as usize;
                    recent[j] = s.clone();
                }
                if whole {
                    upserts.send((s.key, Some(s.body.clone()), time));
                } else {
                    input.insert(s);
                }
                if next_id.is_multiple_of(epoch_size as u128) {
                    time += 1;
                    input.advance_to(time);
                    input.flush();
                    upserts.advance_to(time);
                    upserts.flush();
                    while probe.less_than(&time) {
                        worker.step_or_park(Some(Duration::from_millis(1)));
                    }
                }
            }
            let l = |a: &std::sync::atomic::AtomicI64| a.load(Ordering::Relaxed);
            println!(
                "{:>3}  {:>8}  {:>7.1}  {:>6}  {:>6}  {:>4.1}  {:>7} {:>7} {:>7}  {:>8} {:>7} {:>7} {:>6}  {:>6} {:>6}",
                day + 1,
                (day + 1) * per_day,
                rss_mib(),
                raised.load(Ordering::Relaxed),
                late.load(Ordering::Relaxed),
                day_started.elapsed().as_secs_f64(),
                l(&g.live_members),
                l(&g.stories),
                l(&g.frozen_velocities),
                l(&g.window_keys),
                l(&g.window_buckets),
                l(&g.counted),
                l(&g.firing),
                l(&g.trend_totals),
                l(&g.trend_groups_on_disk),
            );
        }
        let secs = started.elapsed().as_secs_f64();
        // Let the dataflow finish before its directories go.
        input.close();
        upserts.close();
        while worker.step() {}
        if let Some(dir) = &spill {
            let bytes: u64 = walk(dir);
            println!(
                "spilled velocities on disk: {:.1} MiB",
                bytes as f64 / (1 << 20) as f64
            );
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(dir) = &trend_dir {
            println!(
                "trend totals on disk: {:.1} MiB ({} groups, {} read back)",
                walk(dir) as f64 / (1 << 20) as f64,
                g.trend_groups_on_disk.load(Ordering::Relaxed),
                g.trend_revivals.load(Ordering::Relaxed)
            );
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(dir) = &mentions_dir {
            println!(
                "mention store on disk: {:.1} MiB ({} live mentions)",
                walk(dir) as f64 / (1 << 20) as f64,
                g.mentions.load(Ordering::Relaxed)
            );
            let _ = std::fs::remove_dir_all(dir);
        }
        println!(
            "{} mentions over {days} simulated days in {secs:.1} s: {:.0} mentions/s through {} (1 worker)",
            days * per_day,
            (days * per_day) as f64 / secs,
            if whole {
                "the whole graph"
            } else {
                "virality, windows and alerts"
            }
        );
    });
}
