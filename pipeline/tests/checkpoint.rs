//! Checkpoints, in process (no ClickHouse): a run that stops, then restarts from a
//! checkpoint with the log's tail, produces exactly the changes of a run that never stopped.
//!
//! The workload grows stories (virality), bursts (windows, alerts), corrects and deletes
//! older mentions, sends some late, and spans hours of event time so that frozen velocities
//! are spilled to files, window keys warm up (a day of baseline) and fire, and trend totals
//! move to disk (two hours after their group ends, here) and back when an old mention
//! changes. Two workers, every store on disk, as in `vigie run`. The first run goes past
//! the restored label, so the restart must roll the mention store back and delete spill
//! and trend files written after the label. Labels come every 12 minutes of event time,
//! and the restart uses one where every stage with a checkpoint chain (see
//! `graph::chain`) reads changes written after its full link: a change a stage forgot to
//! note is then missing after the restart. Edits and deletions often hit recent mentions,
//! which the stages still hold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};
use uuid::Uuid;
use vigie_pipeline::domain::Engagement;
use vigie_pipeline::graph::checkpoint::{self, CheckpointSpec};
use vigie_pipeline::graph::cold::ColdIndex;
use vigie_pipeline::graph::records::{Change, Firing, MentionBody, MentionKey};
use vigie_pipeline::graph::{stages, GraphSpec, StateGauges, Upsert};
use vigie_pipeline::runtime::last_write_wins;

type Epoch = (u64, Vec<(MentionKey, Option<MentionBody>)>);
type Output = BTreeMap<(u64, Change), isize>;
type Firings = BTreeMap<(u64, Firing), isize>;

const STORIES: &[&str] = &[
    "acme outage again, awful service",
    "acme launch is great, love it",
    "acme prices are a scandal, terrible",
    "nouvelle offre acme, génial",
];

/// A live mention to change: half the time one of the 50 newest (edits and deletions
/// come soon after posting, while the stages still hold the mention), else any.
fn pick(rng: &mut StdRng, live: usize) -> usize {
    if rng.random_bool(0.5) {
        live - 1 - rng.random_range(0..live.min(50))
    } else {
        rng.random_range(0..live)
    }
}

fn workload(epochs: u64) -> Vec<Epoch> {
    let mut rng = StdRng::seed_from_u64(11);
    let orgs = [1, 2, 3, 4, 5, 6].map(Uuid::from_u128);
    let sources = [Uuid::from_u128(10), Uuid::from_u128(11)];
    let base = 1_790_000_000_000_000i64;
    let mut live: Vec<(MentionKey, MentionBody)> = Vec::new();
    (1..=epochs)
        .map(|t| {
            // 3 minutes of event time per epoch: 30 hours over 600 epochs, so that window
            // keys have the day of baseline that spikes need.
            let now = base + t as i64 * 180_000_000;
            let burst = (t % 100) >= 50 && (t % 100) < 56;
            let n = if burst { 40 } else { rng.random_range(3..12) };
            let mut ups = Vec::new();
            for _ in 0..n {
                let roll = rng.random_range(0..20);
                if roll < 15 || live.is_empty() {
                    let late = rng.random_range(0..30) == 0;
                    let at = if late {
                        now - 30 * 60_000_000
                    } else {
                        now - rng.random_range(0..120_000_000)
                    };
                    let story = if burst {
                        0
                    } else {
                        rng.random_range(0..STORIES.len())
                    };
                    let key = MentionKey {
                        org: orgs[rng.random_range(0..orgs.len())],
                        id: Uuid::from_u128(rng.random()),
                    };
                    let body = MentionBody {
                        source: sources[rng.random_range(0..2)],
                        created_at_us: at,
                        text: STORIES[story].into(),
                        author: "@a".into(),
                        url: "https://e.com".into(),
                        engagement: Engagement {
                            likes: rng.random_range(0..500),
                            shares: rng.random_range(0..200),
                            replies: 0,
                            author_followers: 1000,
                        },
                        keywords: vec!["acme".to_string()].into(),
                    };
                    live.push((key, body.clone()));
                    ups.push((key, Some(body)));
                } else if roll < 18 {
                    // A re-post with new engagement, or a correction of the text.
                    let i = pick(&mut rng, live.len());
                    let (key, mut body) = live[i].clone();
                    if roll == 15 {
                        body.text = STORIES[rng.random_range(0..STORIES.len())].into();
                    } else {
                        body.engagement.likes += 100;
                    }
                    live[i].1 = body.clone();
                    ups.push((key, Some(body)));
                } else {
                    let i = pick(&mut rng, live.len());
                    let (key, _) = live.remove(i);
                    ups.push((key, None));
                }
            }
            (t, last_write_wins(ups))
        })
        .collect()
}

/// Runs the graph with two workers over `epochs`, with state under `dir` (trend totals
/// only with `trends_on_disk`, moved there two hours after their group ends); returns
/// every change at its time, and the windows stage's firings.
fn run(
    epochs: &[Epoch],
    dir: &Path,
    checkpoint: Option<CheckpointSpec>,
    trends_on_disk: bool,
) -> (Output, Firings) {
    run_with(epochs, dir, checkpoint, trends_on_disk, Arc::default())
}

/// [`run`], reporting to `gauges`.
fn run_with(
    epochs: &[Epoch],
    dir: &Path,
    checkpoint: Option<CheckpointSpec>,
    trends_on_disk: bool,
    gauges: Arc<StateGauges>,
) -> (Output, Firings) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    let (ftx, frx) = std::sync::mpsc::channel();
    let ftx = Arc::new(Mutex::new(ftx));
    let epochs = Arc::new(epochs.to_vec());
    let dir = dir.to_path_buf();
    let checkpoint = checkpoint.map(Arc::new);
    let writer = checkpoint.as_ref().map(|c| c.writer.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let tx = tx.lock().expect("lock").clone();
        let ftx = ftx.lock().expect("lock").clone();
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        let spec = GraphSpec {
            spill_dir: Some(dir.join("frozen").join(format!("worker-{index}"))),
            mention_dir: Some(dir.join("mentions").join(format!("worker-{index}"))),
            trend_dir: trends_on_disk.then(|| dir.join("trends").join(format!("worker-{index}"))),
            trend_horizon: std::time::Duration::from_secs(2 * 3600),
            gauges: gauges.clone(),
            checkpoint: checkpoint.clone(),
            lateness: std::time::Duration::from_secs(1800),
            ..GraphSpec::default()
        };
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut input);
            let s = stages(upserts, spec);
            s.firings.inner.probe_with(&probe).capture_into(ftx);
            s.mentions
                .map(Change::Mention)
                .concat(s.trends.map(|(k, s)| Change::Trend(k, s)))
                .concat(s.keyword_trends.map(|(k, s)| Change::KeywordTrend(k, s)))
                .concat(s.alerts.map(Change::Alert))
                .inner
                .capture_into(tx);
        });
        for (t, ups) in epochs.iter() {
            input.advance_to(*t);
            if index == 0 {
                for (k, b) in ups {
                    input.send((*k, b.clone().map(Arc::new), *t));
                }
            }
            // Both workers finish every earlier time first, so that no operator sees its
            // frontier jump over a boundary (it would then write only the newest label,
            // which `vigie run` allows, and the labels this test expects would depend on
            // thread scheduling).
            while probe.less_than(t) {
                worker.step();
            }
        }
        // Every operator sees the frontier pass the last time (and writes its label)
        // before the input closes: one with no record at that time would otherwise see
        // the frontier go from below it straight to empty.
        let end = epochs.last().map_or(0, |(t, _)| *t) + 1;
        input.advance_to(end);
        while probe.less_than(&end) {
            worker.step();
        }
    })
    .expect("timely");
    if let Some(w) = writer {
        w.flush();
    }
    let mut out = Output::new();
    for (_, data) in rx.extract() {
        for (change, t, d) in data {
            *out.entry((t, change)).or_default() += d;
        }
    }
    out.retain(|_, d| *d != 0);
    let mut firings = Firings::new();
    for (_, data) in frx.extract() {
        for (f, t, d) in data {
            *firings.entry((t, f)).or_default() += d;
        }
    }
    firings.retain(|_, d| *d != 0);
    (out, firings)
}

fn spec(dir: &Path) -> CheckpointSpec {
    CheckpointSpec {
        dir: dir.join("checkpoints"),
        // Every 12 minutes of the workload's event time: shorter than the virality and
        // windows state lives, so labels write changes after a full link.
        interval_ms: 4,
        restore: None,
        progress: Some((dir.join("committed"), "test".into())),
        workers: 2,
        writer: Arc::default(),
    }
}

fn prepare(dir: &Path) -> (CheckpointSpec, Option<u64>) {
    let mut s = spec(dir);
    let label = checkpoint::prepare(
        &mut s,
        "fingerprint",
        &dir.join("mentions"),
        &[
            &dir.join("frozen"),
            &dir.join("mentions"),
            &dir.join("trends"),
        ],
    )
    .expect("prepare");
    (s, label)
}

fn between<K: Ord + Clone>(
    out: &BTreeMap<(u64, K), isize>,
    from: u64,
    to: u64,
) -> BTreeMap<(u64, K), isize> {
    out.iter()
        .filter(|((t, _), _)| *t >= from && *t <= to)
        .map(|(k, d)| (k.clone(), *d))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigie-{name}-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn a_restart_from_a_checkpoint_continues_exactly_like_a_run_that_never_stopped() {
    let epochs = workload(600);
    let reference_dir = temp_dir("ckpt-ref");
    let gauges = Arc::new(StateGauges::default());
    let (reference, reference_firings) =
        run_with(&epochs, &reference_dir, None, true, gauges.clone());
    // Totals of long-ended trend groups moved to disk, and changes to old mentions read
    // them back.
    let revivals = gauges.trend_revivals.load(Ordering::Relaxed);
    assert!(
        revivals > 10,
        "trend groups read back from disk: {revivals}"
    );
    let memory_dir = temp_dir("ckpt-mem");
    let (in_memory, _) = run(&epochs, &memory_dir, None, false);
    std::fs::remove_dir_all(&memory_dir).ok();
    assert!(
        in_memory == reference,
        "moving trend totals to disk and back changes nothing"
    );
    assert!(
        !between(&reference_firings, 380, u64::MAX).is_empty(),
        "windows fire after the label"
    );
    let alerts = reference
        .keys()
        .filter(|(_, c)| matches!(c, Change::Alert(_)))
        .count();
    assert!(alerts > 0, "the workload raises alerts");

    let dir = temp_dir("ckpt");
    let (first_spec, label) = prepare(&dir);
    assert_eq!(label, None, "nothing to restore on a first start");
    // The first run stops after time 400 (a crash would stop anywhere: its state on disk
    // is then ahead of the checkpoint, as here).
    let first: Vec<Epoch> = epochs.iter().filter(|(t, _)| *t <= 400).cloned().collect();
    let (out, firings) = run(&first, &dir, Some(first_spec), true);
    assert_eq!(
        out,
        between(&reference, 0, 400),
        "writing checkpoints changes nothing"
    );
    assert_eq!(firings, between(&reference_firings, 0, 400));
    for l in [100, 200, 300, 400] {
        assert!(spec(&dir).complete(l), "label {l} complete");
    }
    let spilled_before: usize = walk(&dir.join("frozen"));
    let trend_files_before = walk(&dir.join("trends"));
    assert!(
        trend_files_before > 0,
        "trend totals moved to disk before the restart"
    );

    // The restart uses the newest label at which every stage with a chain restores
    // through changes written after a full link (not only a full link), on some worker.
    let label = (200..=380u64)
        .rev()
        .step_by(4)
        .find(|l| {
            ["virality", "windows", "trends", "keyword-trends"]
                .iter()
                .all(|stage| (0..2).any(|w| changes_after_full(&dir, *l, stage, w) > 100))
        })
        .expect("a label whose every chain holds changes");
    // ClickHouse has every time up to the label: it is the newest usable one.
    std::fs::write(dir.join("committed"), format!("test {label}\n")).expect("progress");
    let (second_spec, restored) = prepare(&dir);
    assert_eq!(restored, Some(label));
    assert!(
        walk(&dir.join("frozen")) == spilled_before
            && walk(&dir.join("trends")) == trend_files_before,
        "prepare leaves the stores to the operators"
    );
    // The label has trend totals on disk, which the restart must find again. (A stage
    // with a chain: its part holds the links to read, then the rest of its state.)
    let on_disk: usize = (0..2)
        .map(|w| {
            let (_, index) = second_spec
                .read::<(Vec<u64>, Option<ColdIndex>)>("trends", w)
                .expect("restoring");
            index.expect("trends on disk").groups.len()
        })
        .sum();
    assert!(on_disk > 0, "trend groups on disk at the label");
    let tail: Vec<Epoch> = epochs
        .iter()
        .filter(|(t, _)| *t >= label)
        .cloned()
        .collect();
    let (out, firings) = run(&tail, &dir, Some(second_spec), true);
    assert_eq!(
        out,
        between(&reference, label, u64::MAX),
        "the restarted run's changes from label {label} on"
    );
    assert_eq!(firings, between(&reference_firings, label, u64::MAX));

    // Another fingerprint (e.g. another worker count): no label is used, state is emptied.
    let mut other = spec(&dir);
    let label = checkpoint::prepare(
        &mut other,
        "another fingerprint",
        &dir.join("mentions"),
        &[
            &dir.join("frozen"),
            &dir.join("mentions"),
            &dir.join("trends"),
        ],
    )
    .expect("prepare");
    assert_eq!(label, None);
    assert!(!dir.join("mentions").exists());
    assert!(!dir.join("trends").exists());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&reference_dir).ok();
}

/// Bytes of the links after the full one that `stage` on worker `w` lists at `label`.
fn changes_after_full(dir: &Path, label: u64, stage: &str, w: usize) -> u64 {
    let dir = dir.join("checkpoints");
    let Ok(f) = std::fs::File::open(
        dir.join(format!("{label:020}"))
            .join(format!("{stage}-{w}.bin")),
    ) else {
        return 0;
    };
    let links: Vec<u64> = bincode::deserialize_from(std::io::BufReader::new(f)).expect("a part");
    let chain = dir.join("chains").join(format!("{stage}-{w}"));
    links
        .iter()
        .skip(1)
        .map(|l| std::fs::metadata(chain.join(format!("{l:020}.bin"))).map_or(0, |m| m.len()))
        .sum()
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}
