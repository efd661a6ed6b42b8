//! The graph against an oracle, in process (no ClickHouse): random upserts with re-scores,
//! identical repeats, deletions and out-of-order event times go in epoch by epoch; after
//! every epoch the accumulated output equals a plain recomputation over the model.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use differential_dataflow::difference::Semigroup;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::Input;
use timely::dataflow::InputHandle;
use uuid::Uuid;
use vigie_pipeline::domain::{Engagement, Granularity};
use vigie_pipeline::graph::records::{
    Change, KeywordTrendKey, MentionBody, MentionKey, Sums, TrendKey,
};
use vigie_pipeline::graph::score::{score_one, ScoringSpec};
use vigie_pipeline::graph::GraphSpec;
use vigie_pipeline::graph::{build, Upsert};
use vigie_pipeline::runtime::last_write_wins;
use vigie_pipeline::scoring::ScorerChoice;
use vigie_udfs::ScoreConfig;

const TEXTS: &[&str] = &[
    "love it",
    "hate it, awful",
    "meh",
    "génial",
    "nul, très déçu",
    "scary and sad",
    "so happy 😍",
];

fn body(rng: &mut StdRng, sources: &[Uuid]) -> MentionBody {
    MentionBody {
        source: sources[rng.random_range(0..sources.len())],
        // 60 days, arriving in random order.
        created_at_us: 1_790_000_000_000_000 + rng.random_range(0..60 * 86_400_000_000i64),
        // A number of its own: every mention is its own story, so virality stays
        // engagement-only and the oracle below can score mentions one by one (stories are
        // tested in tests/windows.rs).
        text: format!(
            "{} {}",
            TEXTS[rng.random_range(0..TEXTS.len())],
            rng.random_range(0..u32::MAX)
        )
        .into(),
        author: "@a".into(),
        url: "https://e.com".into(),
        engagement: Engagement {
            likes: rng.random_range(0..10),
            shares: rng.random_range(0..10),
            replies: 0,
            author_followers: 5,
        },
        keywords: KEYWORDS[rng.random_range(0..KEYWORDS.len())]
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .into(),
    }
}

/// Keywords a mention matched, as ingest records them; a source may list one twice, and it
/// counts once.
const KEYWORDS: &[&[&str]] = &[
    &[],
    &["acme"],
    &["nimbus", "acme"],
    &["acme", "acme"],
    &["nimbus"],
];

/// Plain recomputation: every change the graph should currently hold.
fn oracle(model: &HashMap<MentionKey, MentionBody>, cfg: &ScoreConfig) -> BTreeMap<Change, isize> {
    let mut out = BTreeMap::new();
    let mut trends: BTreeMap<TrendKey, Sums> = BTreeMap::new();
    let mut keyword_trends: BTreeMap<KeywordTrendKey, Sums> = BTreeMap::new();
    for (k, b) in model {
        let s = score_one(*k, b.clone().into(), cfg);
        let secs = b.created_at_us.div_euclid(1_000_000);
        for g in Granularity::ALL {
            let key = TrendKey {
                org: k.org,
                granularity: g,
                bucket: g.bucket_start(secs),
                source: b.source,
            };
            trends.entry(key).or_default().plus_equals(&s.sums());
            let keywords: BTreeSet<&String> = b.keywords.iter().collect();
            for keyword in keywords {
                let key = KeywordTrendKey {
                    org: k.org,
                    granularity: g,
                    bucket: g.bucket_start(secs),
                    keyword: keyword.clone(),
                };
                keyword_trends
                    .entry(key)
                    .or_default()
                    .plus_equals(&s.sums());
            }
        }
        out.insert(Change::Mention(s), 1);
    }
    for (k, s) in trends {
        out.insert(Change::Trend(k, s), 1);
    }
    for (k, s) in keyword_trends {
        out.insert(Change::KeywordTrend(k, s), 1);
    }
    out
}

#[test]
fn graph_matches_a_plain_recomputation_after_every_epoch() {
    check_against_recomputation(None);
}

/// The same with the mentions' store on disk, as `vigie run` keeps it.
#[test]
fn graph_with_mentions_on_disk_matches_a_plain_recomputation() {
    let dir = std::env::temp_dir().join(format!("vigie-graph-{}", Uuid::new_v4()));
    check_against_recomputation(Some(dir.clone()));
    assert!(dir.exists(), "the store was not on disk");
    let _ = std::fs::remove_dir_all(dir);
}

/// The upsert stage (memory and disk stores) emits exactly what differential dataflow's
/// own `arrange_from_upsert` emits, including several upserts of one mention at one time.
#[test]
fn upsert_stage_equals_differential_arrange_from_upsert() {
    use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
    use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
    use std::sync::Arc;
    use vigie_pipeline::graph::upsert::{upserted, MentionStore};

    let mut rng = StdRng::seed_from_u64(9);
    let sources = [Uuid::from_u128(10), Uuid::from_u128(11)];
    let keys: Vec<MentionKey> = (0..40)
        .map(|i| MentionKey {
            org: Uuid::from_u128(1 + i % 3),
            id: Uuid::from_u128(100 + i),
        })
        .collect();
    let bodies: Vec<Arc<MentionBody>> = (0..12)
        .map(|_| Arc::new(body(&mut rng, &sources)))
        .collect();
    let epochs: Vec<Vec<Upsert>> = (1..=60u64)
        .map(|t| {
            (0..rng.random_range(0..25))
                .map(|_| {
                    let k = keys[rng.random_range(0..keys.len())];
                    let v = (rng.random_range(0..5) > 0)
                        .then(|| bodies[rng.random_range(0..bodies.len())].clone());
                    (k, v, t)
                })
                .collect()
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("vigie-upsert-{}", Uuid::new_v4()));
    let (tx, rx) = std::sync::mpsc::channel();
    let store_dir = dir.clone();
    let epochs = Arc::new(epochs);
    // Three workers (records cross the exchange); the disk store writes its memtable out
    // every three epochs, so lookups go through tables, filters and compactions.
    timely::execute(timely::Config::process(3), move |worker| {
        let index = worker.index();
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        let tx = tx.clone();
        let store_dir = store_dir.join(format!("worker-{index}"));
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut input);
            let reference = arrange_from_upsert::<
                ValBuilder<MentionKey, Arc<MentionBody>, u64, isize>,
                ValSpine<MentionKey, Arc<MentionBody>, u64, isize>,
                MentionKey,
                Arc<MentionBody>,
            >(upserts.clone(), "Reference")
            .as_collection(|k, v| (*k, v.clone()));
            let memory = upserted(
                upserts.clone(),
                MentionStore::memory,
                Default::default(),
                None,
            );
            let disk = upserted(
                upserts,
                move || MentionStore::disk_flushing(&store_dir, 3).expect("store"),
                Default::default(),
                None,
            );
            for (name, c) in [(0u8, reference), (1, memory), (2, disk)] {
                c.map(move |x| (name, x)).inner.capture_into(tx.clone());
            }
        });
        for (t, epoch) in epochs.iter().enumerate() {
            input.advance_to(t as u64 + 1);
            if index == 0 {
                for u in epoch {
                    input.send(u.clone());
                }
            }
        }
    })
    .expect("timely");
    type Acc = BTreeMap<(u64, MentionKey, Arc<MentionBody>), isize>;
    let mut out: [Acc; 3] = Default::default();
    for (_, data) in rx.extract() {
        for ((name, (k, v)), t, d) in data {
            *out[name as usize].entry((t, k, v)).or_default() += d;
        }
    }
    for o in &mut out {
        o.retain(|_, d| *d != 0);
    }
    assert!(out[0].len() > 100, "too few changes: {}", out[0].len());
    assert_eq!(out[1], out[0], "memory store");
    assert_eq!(out[2], out[0], "disk store");
    let _ = std::fs::remove_dir_all(dir);
}

fn check_against_recomputation(mention_dir: Option<std::path::PathBuf>) {
    let cfg = ScoreConfig::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let epochs: Vec<Vec<(MentionKey, Option<MentionBody>)>> = {
        let mut rng = StdRng::seed_from_u64(3);
        let orgs = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let sources = [
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
        ];
        let mut ids: Vec<MentionKey> = Vec::new();
        (0..40)
            .map(|_| {
                (0..rng.random_range(0..30))
                    .map(|_| {
                        let roll = rng.random_range(0..10);
                        if roll < 5 || ids.is_empty() {
                            let k = MentionKey {
                                org: orgs[rng.random_range(0..2)],
                                id: Uuid::from_u128(rng.random()),
                            };
                            ids.push(k);
                            (k, Some(body(&mut rng, &sources)))
                        } else if roll < 8 {
                            (
                                ids[rng.random_range(0..ids.len())],
                                Some(body(&mut rng, &sources)),
                            )
                        } else {
                            (ids[rng.random_range(0..ids.len())], None)
                        }
                    })
                    .collect()
            })
            .collect()
    };
    let fed = epochs.clone();
    timely::execute_directly(move |worker| {
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut input);
            build(
                upserts,
                GraphSpec {
                    scoring: ScoringSpec {
                        scorer: ScorerChoice::Lexicon,
                        config: cfg,
                    },
                    mention_dir: mention_dir.clone(),
                    ..GraphSpec::default()
                },
            )
            .inner
            .capture_into(tx.clone());
        });
        for (t, epoch) in fed.into_iter().enumerate() {
            let t = t as u64 + 1;
            input.advance_to(t);
            for (k, b) in last_write_wins(epoch) {
                input.send((k, b.map(Into::into), t));
            }
        }
    });
    let captured = rx.extract();
    let mut by_time: BTreeMap<u64, Vec<(Change, isize)>> = BTreeMap::new();
    for (_capability_time, data) in captured {
        for (change, t, diff) in data {
            by_time.entry(t).or_default().push((change, diff));
        }
    }
    let mut model: HashMap<MentionKey, MentionBody> = HashMap::new();
    let mut acc: BTreeMap<Change, isize> = BTreeMap::new();
    for (i, epoch) in epochs.into_iter().enumerate() {
        let t = i as u64 + 1;
        for (k, b) in epoch {
            match b {
                Some(b) => model.insert(k, b),
                None => model.remove(&k),
            };
        }
        for (c, d) in by_time.remove(&t).unwrap_or_default() {
            if !matches!(c, Change::Alert(_)) {
                *acc.entry(c).or_default() += d;
            }
        }
        acc.retain(|_, d| *d != 0);
        assert_eq!(acc, oracle(&model, &cfg), "after epoch {t}");
    }
    assert!(!model.is_empty());
}
