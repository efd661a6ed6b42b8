//! Each dataflow stage on its own, in updates per second, with 1 and 2 timely workers:
//! the upsert stage with scoring (its store in memory, and on disk as in `vigie run`), virality, trends (with keyword trends), windows with
//! alerts, the whole graph, and the sink's row encoding (changes → ClickHouse rows).
//!
//! Input: [`vigie_benches::live_mentions`] (a live feed over 20 organisations), 100,000
//! updates per run in epochs of 5,000. The stages after scoring get the mentions already
//! scored, each from the worker that owns its organisation (as the graph partitions them).
//!
//! `cargo bench -p vigie-benches --bench stages`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use differential_dataflow::input::Input as _;
use differential_dataflow::VecCollection;
use timely::dataflow::operators::probe::Probe;
use timely::dataflow::operators::Input;
use timely::dataflow::{InputHandle, ProbeHandle};
use vigie_pipeline::graph::records::{Change, MentionBody, MentionKey, Scored};
use vigie_pipeline::graph::score::{score_one, ScoringSpec};
use vigie_pipeline::graph::{self, GraphSpec, Upsert};
use vigie_pipeline::runtime::worker_for;

const N: usize = 100_000;
const EPOCH: usize = 5_000;
const LATENESS_US: i64 = 5 * 60 * 1_000_000;

type Body = (MentionKey, Arc<MentionBody>);

fn corpus() -> Arc<Vec<Body>> {
    Arc::new(
        vigie_benches::live_mentions(N, 20)
            .into_iter()
            .map(|(k, b)| (k, Arc::new(b)))
            .collect(),
    )
}

fn scored(bodies: &[Body]) -> Arc<Vec<Scored>> {
    let cfg = vigie_udfs::ScoreConfig::default();
    Arc::new(
        bodies
            .iter()
            .map(|(k, b)| score_one(*k, b.clone(), &cfg))
            .collect(),
    )
}

/// Runs `build` over the scored mentions in `workers` workers; returns the slowest worker's
/// time from the first epoch to the last one leaving the stage.
fn run_scored<F>(workers: usize, input: Arc<Vec<Scored>>, build: F) -> Duration
where
    F: for<'s> Fn(VecCollection<'s, u64, Scored>) -> ProbeHandle<u64> + Send + Sync + 'static,
{
    let build = Arc::new(build);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let build = build.clone();
        let (mut session, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (session, collection) = scope.new_collection::<Scored, isize>();
            (session, build(collection))
        });
        let started = Instant::now();
        let mut t = 1u64;
        for chunk in input.chunks(EPOCH) {
            for s in chunk.iter().filter(|s| worker_for(&s.key, peers) == index) {
                session.insert(s.clone());
            }
            t += 1;
            session.advance_to(t);
            session.flush();
            worker.step_while(|| probe.less_than(&t));
        }
        started.elapsed()
    })
    .expect("timely");
    guards
        .join()
        .into_iter()
        .map(|r| r.expect("worker"))
        .max()
        .unwrap_or_default()
}

/// Runs the upsert stage and scoring, or the whole graph (`whole`), over the raw bodies;
/// with `disk`, the upsert stage keeps the bodies on disk as `vigie run` does.
fn run_upserts(workers: usize, input: Arc<Vec<Body>>, whole: bool, disk: bool) -> Duration {
    let run = uuid::Uuid::new_v4();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let spec = GraphSpec {
            mention_dir: disk
                .then(|| std::env::temp_dir().join(format!("vigie-stages-{run}-{index}"))),
            ..GraphSpec::default()
        };
        let dir = spec.mention_dir.clone();
        let mut handle: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut handle);
            if whole {
                graph::build(upserts, spec).inner.probe_with(&probe);
            } else {
                graph::score::score(
                    graph::upserted(upserts, &GraphSpec::default()),
                    ScoringSpec::default(),
                )
                .inner
                .probe_with(&probe);
            }
        });
        let started = Instant::now();
        let mut t = 1u64;
        for (c, chunk) in input.chunks(EPOCH).enumerate() {
            handle.advance_to(t);
            // Each worker feeds a share; the stage exchanges records by organisation.
            if c % peers == index {
                for (k, b) in chunk {
                    handle.send((*k, Some(b.clone()), t));
                }
            }
            t += 1;
            handle.advance_to(t);
            worker.step_while(|| probe.less_than(handle.time()));
        }
        let took = started.elapsed();
        if let Some(d) = dir {
            let _ = std::fs::remove_dir_all(d);
        }
        took
    })
    .expect("timely");
    guards
        .join()
        .into_iter()
        .map(|r| r.expect("worker"))
        .max()
        .unwrap_or_default()
}

fn virality_stage(c: VecCollection<'_, u64, Scored>) -> ProbeHandle<u64> {
    let spec = graph::virality::ViralitySpec {
        lateness_us: LATENESS_US,
        late: Default::default(),
        gauges: Default::default(),
        spill_dir: None,
        checkpoint: None,
    };
    let probe = ProbeHandle::new();
    graph::virality::virality(c, spec).inner.probe_with(&probe);
    probe
}

fn trends_stage(c: VecCollection<'_, u64, Scored>) -> ProbeHandle<u64> {
    let probe = ProbeHandle::new();
    graph::trends::trends(c.clone(), Default::default())
        .inner
        .probe_with(&probe);
    graph::trends::keyword_trends(c, Default::default())
        .inner
        .probe_with(&probe);
    probe
}

fn windows_alerts_stage(c: VecCollection<'_, u64, Scored>) -> ProbeHandle<u64> {
    let rules = Arc::new(vigie_pipeline::rules::RuleBook::default());
    let spec = graph::windows::WindowSpec {
        lateness_us: LATENESS_US,
        rules: rules.clone(),
        gauges: Default::default(),
        checkpoint: None,
    };
    let firings = graph::windows::windows(c.clone(), spec);
    let probe = ProbeHandle::new();
    graph::alerts::alerts(
        firings,
        c,
        graph::alerts::AlertSpec {
            rules,
            checkpoint: None,
        },
    )
    .inner
    .probe_with(&probe);
    probe
}

/// Benchmarks `run()` (one whole run per iteration, timed by itself) as `name`.
fn timed<F: Fn() -> Duration + 'static>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: String,
    run: F,
) {
    g.bench_function(name, move |bench| {
        bench.iter_custom(|iters| (0..iters).map(|_| run()).sum())
    });
}

fn stages(c: &mut Criterion) {
    let bodies = corpus();
    let scored = scored(&bodies);
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    for workers in [1usize, 2] {
        let b = bodies.clone();
        timed(&mut g, format!("upsert_score/{workers}w"), move || {
            run_upserts(workers, b.clone(), false, false)
        });
        let b = bodies.clone();
        timed(&mut g, format!("upsert_score_disk/{workers}w"), move || {
            run_upserts(workers, b.clone(), false, true)
        });
        let s = scored.clone();
        timed(&mut g, format!("virality/{workers}w"), move || {
            run_scored(workers, s.clone(), virality_stage)
        });
        let s = scored.clone();
        timed(&mut g, format!("trends/{workers}w"), move || {
            run_scored(workers, s.clone(), trends_stage)
        });
        let s = scored.clone();
        timed(&mut g, format!("windows_alerts/{workers}w"), move || {
            run_scored(workers, s.clone(), windows_alerts_stage)
        });
        let b = bodies.clone();
        timed(&mut g, format!("whole_graph/{workers}w"), move || {
            run_upserts(workers, b.clone(), true, false)
        });
        let b = bodies.clone();
        timed(&mut g, format!("whole_graph_disk/{workers}w"), move || {
            run_upserts(workers, b.clone(), true, true)
        });
    }
    // The sink's encoding: one epoch's changes (mentions and their trend rows) to rows.
    let changes: Vec<(Change, isize)> = scored
        .iter()
        .take(EPOCH)
        .flat_map(|s| {
            let sums = s.sums();
            let mut out = vec![(Change::Mention(s.clone()), 1)];
            for k in graph::trends::trend_keys(s) {
                out.push((Change::Trend(k, sums), 1));
            }
            out
        })
        .collect();
    g.throughput(Throughput::Elements(EPOCH as u64));
    g.bench_function("rows_per_epoch", |bench| {
        bench.iter(|| vigie_pipeline::sink::writes_for(1_800_000_000_000, &changes))
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
