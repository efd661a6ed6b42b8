//! Oracle tests of the event-time stages: after every random stream (out of order, late,
//! re-posted, edited and deleted mentions, bursts), the virality of every mention and the
//! set of firing spike/dip windows computed incrementally by the dataflow equal a plain
//! batch computation over the same data, with the same lateness classification.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::Input;
use timely::dataflow::InputHandle;
use uuid::Uuid;
use vigie_pipeline::domain::Engagement;
use vigie_pipeline::graph::ordered::minute_of_us;
use vigie_pipeline::graph::records::{Firing, MentionBody, MentionKey, Scored, WindowKey};
use vigie_pipeline::graph::score::score_one;
use vigie_pipeline::graph::virality::{heat, org_rate};
use vigie_pipeline::graph::windows::{evaluate, Counts, WinRec};
use vigie_pipeline::graph::{stages, GraphSpec, Upsert};
use vigie_pipeline::rules::{AlertRules, RuleBook};
use vigie_pipeline::runtime::last_write_wins;
use vigie_udfs::ScoreConfig;

const BASE_US: i64 = 1_790_000_000_000_000;
const LATENESS: Duration = Duration::from_secs(300);
const KEYWORDS: [&str; 3] = ["acme", "rocket", "blender"];

const STORIES: [&str; 8] = [
    "ACME blender exploded in my kitchen, terrible and dangerous https://news.example/acme-blender?utm=x",
    "RT @news: acme blender exploded https://www.news.example/acme-blender/",
    "I love my new acme rocket, best purchase ever",
    "acme support is awful, still waiting for a refund",
    "#acme recall announced for the blender",
    "meh, the acme rocket is fine I guess",
    "worst customer service ever, acme never answers",
    "so happy with acme, great team",
];

type Epoch = Vec<(MentionKey, Option<MentionBody>)>;

fn rules() -> AlertRules {
    let mut r = AlertRules::default();
    r.volume_spike.k = 1.5;
    r.volume_spike.min_count = 5;
    r.volume_spike.min_ratio = 1.2;
    r.sentiment_dip.min_rise = 0.15;
    r.sentiment_dip.min_count = 5;
    r.window_minutes = 30;
    r.baseline_hours = 2;
    r
}

fn body(rng: &mut StdRng, source: Uuid, t_us: i64, text: String) -> MentionBody {
    let keywords: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
    let matched: Vec<String> = vigie_udfs::virality::matched_keywords(&text, &keywords)
        .into_iter()
        .map(|i| keywords[i].clone())
        .collect();
    MentionBody {
        source,
        created_at_us: t_us,
        text: text.into(),
        author: "@a".into(),
        url: "".into(),
        engagement: Engagement {
            likes: rng.random_range(0..40),
            shares: rng.random_range(0..5),
            replies: rng.random_range(0..5),
            author_followers: rng.random_range(0..5000),
        },
        keywords: matched.into(),
    }
}

/// A random stream: time advances by up to 40 s per epoch; mentions are up to 7 minutes
/// old (about a third later than the 5-minute lateness), a few are hours late; some are
/// re-posted with new engagement, edited or deleted; bursts of one story now and then.
fn stream(seed: u64, epochs: usize) -> Vec<Epoch> {
    let mut rng = StdRng::seed_from_u64(seed);
    let orgs = [Uuid::from_u128(1), Uuid::from_u128(2)];
    let sources = [Uuid::from_u128(11), Uuid::from_u128(12)];
    let mut now = BASE_US;
    let mut live: Vec<(MentionKey, MentionBody)> = Vec::new();
    let mut next_id = 1000u128;
    let mut out = Vec::with_capacity(epochs);
    for _ in 0..epochs {
        now += rng.random_range(0..40_000_000);
        let mut epoch = Vec::new();
        let burst = rng.random_range(0..40) == 0;
        let n = if burst { 40 } else { rng.random_range(0..10) };
        let burst_story = rng.random_range(0..STORIES.len());
        for _ in 0..n {
            let roll = rng.random_range(0..100);
            if roll < 70 || live.is_empty() || burst {
                let org = orgs[rng.random_range(0..2)];
                let source = sources[rng.random_range(0..2)];
                let t = if rng.random_range(0..100) < 3 {
                    now - rng.random_range(3_600_000_000..30 * 3_600_000_000)
                } else if burst {
                    now - rng.random_range(0..120_000_000)
                } else {
                    now - rng.random_range(0..420_000_000)
                };
                let text = if burst {
                    STORIES[burst_story].to_string()
                } else if rng.random_range(0..100) < 60 {
                    STORIES[rng.random_range(0..STORIES.len())].to_string()
                } else {
                    format!(
                        "chatter about acme number {}",
                        rng.random_range(0..1_000_000)
                    )
                };
                next_id += 1;
                let key = MentionKey {
                    org,
                    id: Uuid::from_u128(next_id),
                };
                let b = body(&mut rng, source, t, text);
                live.push((key, b.clone()));
                epoch.push((key, Some(b)));
            } else if roll < 85 {
                // Re-posted with new engagement numbers.
                let i = rng.random_range(0..live.len());
                let (key, mut b) = live[i].clone();
                b.engagement.likes += rng.random_range(1..500);
                b.engagement.shares += rng.random_range(0..200);
                live[i].1 = b.clone();
                epoch.push((key, Some(b)));
            } else if roll < 93 {
                // Edited: new text, maybe a new event time.
                let i = rng.random_range(0..live.len());
                let (key, old) = live[i].clone();
                let t = if rng.random_bool(0.5) {
                    old.created_at_us
                } else {
                    now - rng.random_range(0..420_000_000)
                };
                let text = STORIES[rng.random_range(0..STORIES.len())].to_string();
                let b = body(&mut rng, old.source, t, text);
                live[i].1 = b.clone();
                epoch.push((key, Some(b)));
            } else {
                let i = rng.random_range(0..live.len());
                let (key, _) = live.swap_remove(i);
                epoch.push((key, None));
            }
        }
        out.push(epoch);
    }
    out
}

struct Outputs {
    mentions: BTreeMap<Scored, isize>,
    firings: BTreeMap<Firing, isize>,
    /// Mention records emitted with +1 (counts re-emissions of updated virality).
    mention_insertions: usize,
}

fn run_graph(epochs: &[Epoch], late: Arc<AtomicU64>, spill: Option<std::path::PathBuf>) -> Outputs {
    let (mtx, mrx) = std::sync::mpsc::channel();
    let (ftx, frx) = std::sync::mpsc::channel();
    let fed = epochs.to_vec();
    let book = Arc::new(RuleBook::with_default(rules()));
    timely::execute_directly(move |worker| {
        let mut input: InputHandle<u64, timely::container::CapacityContainerBuilder<Vec<Upsert>>> =
            InputHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let upserts = scope.input_from(&mut input);
            let s = stages(
                upserts,
                GraphSpec {
                    lateness: LATENESS,
                    rules: book.clone(),
                    late: late.clone(),
                    spill_dir: spill.clone(),
                    ..GraphSpec::default()
                },
            );
            s.mentions.inner.capture_into(mtx.clone());
            s.firings.inner.capture_into(ftx.clone());
        });
        for (t, epoch) in fed.into_iter().enumerate() {
            let t = t as u64 + 1;
            input.advance_to(t);
            for (k, b) in last_write_wins(epoch) {
                input.send((k, b.map(Into::into), t));
            }
        }
    });
    let mut mentions = BTreeMap::new();
    let mut mention_insertions = 0;
    for (_, data) in mrx.extract() {
        for (m, _, d) in data {
            if d > 0 {
                mention_insertions += 1;
            }
            *mentions.entry(m).or_insert(0) += d;
        }
    }
    mentions.retain(|_, d| *d != 0);
    let mut firings = BTreeMap::new();
    for (_, data) in frx.extract() {
        for (f, _, d) in data {
            *firings.entry(f).or_insert(0) += d;
        }
    }
    firings.retain(|_, d| *d != 0);
    Outputs {
        mentions,
        firings,
        mention_insertions,
    }
}

/// The batch computation: classify every change late or on time as it arrives (the
/// watermark of an organisation is its newest event time before the epoch minus the
/// lateness), then compute virality and windows over the final on-time data.
struct Oracle {
    cfg: ScoreConfig,
    lateness_us: i64,
    model: HashMap<MentionKey, MentionBody>,
    clock: HashMap<Uuid, i64>,
    member: HashMap<MentionKey, bool>,
    story_minutes: HashMap<(Uuid, u64), BTreeMap<i64, u32>>,
    hours: HashMap<Uuid, BTreeMap<i64, u32>>,
    counted: HashMap<MentionKey, WinRec>,
    counts: BTreeMap<(Uuid, WindowKey), Counts>,
    late_inserts: u64,
}

fn bump(map: &mut BTreeMap<i64, u32>, k: i64, add: bool) {
    let c = map.entry(k).or_default();
    if add {
        *c += 1;
    } else {
        *c -= 1;
    }
    if *c == 0 {
        map.remove(&k);
    }
}

impl Oracle {
    fn new() -> Oracle {
        Oracle {
            cfg: ScoreConfig::default(),
            lateness_us: LATENESS.as_micros() as i64,
            model: HashMap::new(),
            clock: HashMap::new(),
            member: HashMap::new(),
            story_minutes: HashMap::new(),
            hours: HashMap::new(),
            counted: HashMap::new(),
            counts: BTreeMap::new(),
            late_inserts: 0,
        }
    }

    fn late(&self, org: Uuid, t: i64) -> bool {
        self.clock
            .get(&org)
            .is_some_and(|max| t < max - self.lateness_us)
    }

    fn count_story(&mut self, s: &Scored, add: bool) {
        let org = s.key.org;
        let t = s.body.created_at_us;
        bump(
            self.story_minutes.entry((org, s.story)).or_default(),
            minute_of_us(t),
            add,
        );
        bump(
            self.hours.entry(org).or_default(),
            t.div_euclid(3_600_000_000),
            add,
        );
    }

    fn count_window(&mut self, r: &WinRec, add: bool) {
        for k in r.window_keys() {
            self.counts.entry((r.key.org, k)).or_default().apply(r, add);
        }
        if add {
            self.counted.insert(r.key, r.clone());
        } else {
            self.counted.remove(&r.key);
        }
    }

    fn epoch(&mut self, epoch: Epoch) {
        let mut seen: Vec<(Uuid, i64)> = Vec::new();
        for (k, new) in last_write_wins(epoch) {
            let old = self.model.get(&k).cloned();
            if old == new {
                continue;
            }
            let so = old.map(|b| score_one(k, b.into(), &self.cfg));
            let sn = new.clone().map(|b| score_one(k, b.into(), &self.cfg));
            // Virality membership.
            let in_place = matches!((&so, &sn), (Some(o), Some(n))
                if o.body.created_at_us == n.body.created_at_us && o.story == n.story);
            if !in_place {
                if let Some(o) = &so {
                    if self.member.remove(&k).unwrap_or(false)
                        && !self.late(k.org, o.body.created_at_us)
                    {
                        self.count_story(o, false);
                    }
                }
                if let Some(n) = &sn {
                    if self.late(k.org, n.body.created_at_us) {
                        self.late_inserts += 1;
                    } else {
                        self.count_story(n, true);
                        self.member.insert(k, true);
                    }
                }
            }
            // Windows.
            let wo = so.as_ref().map(WinRec::of);
            let wn = sn.as_ref().map(WinRec::of);
            if wo != wn {
                if let Some(o) = &wo {
                    if self.counted.get(&k) == Some(o) && !self.late(k.org, o.t_us) {
                        self.count_window(o, false);
                    } else {
                        self.counted.remove(&k);
                    }
                }
                if let Some(n) = &wn {
                    if !self.late(k.org, n.t_us) {
                        self.count_window(n, true);
                    }
                }
            }
            if let Some(n) = &sn {
                seen.push((k.org, n.body.created_at_us));
            }
            match new {
                Some(b) => self.model.insert(k, b),
                None => self.model.remove(&k),
            };
        }
        for (org, t) in seen {
            let m = self.clock.entry(org).or_insert(t);
            *m = (*m).max(t);
        }
    }

    fn mentions(&self) -> BTreeMap<Scored, isize> {
        self.model
            .iter()
            .map(|(k, b)| {
                let s = score_one(*k, b.clone().into(), &self.cfg);
                let v = if self.member.get(k).copied().unwrap_or(false) {
                    let t = s.body.created_at_us;
                    let h = heat(&self.story_minutes[&(k.org, s.story)], minute_of_us(t));
                    let rate = org_rate(&self.hours[&k.org], t.div_euclid(3_600_000_000));
                    vigie_udfs::virality::velocity(h, rate)
                } else {
                    0
                };
                (s.with_velocity(v), 1)
            })
            .collect()
    }

    fn firings(&self, rules: &AlertRules) -> BTreeSet<Firing> {
        let mut out = BTreeSet::new();
        for ((org, key), counts) in &self.counts {
            let Some(max) = self.clock.get(org) else {
                continue;
            };
            let top = minute_of_us(*max) + 1;
            let Some((first, _)) = counts.minutes.first_key_value() else {
                continue;
            };
            for e in first + 1..=top {
                out.extend(evaluate(*org, key, counts, e, rules).into_iter().map(strip));
            }
        }
        out
    }
}

fn strip(mut f: Firing) -> Firing {
    f.sample.clear();
    f
}

/// Odd seeds spill the final velocities of frozen mentions to disk, as `vigie run` does.
fn spill_for(seed: u64) -> Option<std::path::PathBuf> {
    (seed % 2 == 1)
        .then(|| std::env::temp_dir().join(format!("vigie-oracle-{seed}-{}", std::process::id())))
}

fn check(seed: u64, epochs: usize) -> (usize, usize, usize, u64) {
    let input = stream(seed, epochs);
    let late = Arc::new(AtomicU64::new(0));
    let spill = spill_for(seed);
    let got = run_graph(&input, late.clone(), spill.clone());
    if let Some(dir) = spill {
        let files = std::fs::read_dir(&dir).map_or(0, |d| d.count());
        assert!(files > 0, "seed {seed}: velocities were spilled");
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut oracle = Oracle::new();
    for e in input {
        oracle.epoch(e);
    }
    assert!(
        got.mentions.values().all(|d| *d == 1),
        "seed {seed}: a mention with multiplicity other than 1"
    );
    let want = oracle.mentions();
    if got.mentions != want {
        let extra: Vec<_> = got
            .mentions
            .keys()
            .filter(|m| !want.contains_key(m))
            .take(3)
            .collect();
        let missing: Vec<_> = want
            .keys()
            .filter(|m| !got.mentions.contains_key(m))
            .take(3)
            .collect();
        panic!("seed {seed}: virality differs from the batch computation\nextra: {extra:#?}\nmissing: {missing:#?}");
    }
    assert!(
        got.firings.values().all(|d| *d == 1),
        "seed {seed}: a window with multiplicity other than 1"
    );
    let got_firings: BTreeSet<Firing> = got.firings.into_keys().map(strip).collect();
    let want_firings = oracle.firings(&rules());
    if got_firings != want_firings {
        let extra: Vec<_> = got_firings.difference(&want_firings).take(3).collect();
        let missing: Vec<_> = want_firings.difference(&got_firings).take(3).collect();
        panic!("seed {seed}: firing windows differ from the batch computation\nextra: {extra:#?}\nmissing: {missing:#?}");
    }
    assert_eq!(
        late.load(Ordering::Relaxed),
        oracle.late_inserts,
        "seed {seed}: late count"
    );
    let viral = want.keys().filter(|m| m.velocity > 0).count();
    (
        viral,
        got_firings.len(),
        got.mention_insertions,
        oracle.late_inserts,
    )
}

#[test]
fn virality_and_windows_equal_a_batch_computation() {
    let mut totals = (0, 0, 0, 0u64);
    let mut rules_seen = BTreeSet::new();
    for seed in 0..4 {
        let (viral, firings, insertions, late) = check(seed, 900);
        totals.0 += viral;
        totals.1 += firings;
        totals.2 += insertions;
        totals.3 += late;
        let input = stream(seed, 900);
        let got = run_graph(&input, Arc::new(AtomicU64::new(0)), None);
        rules_seen.extend(got.firings.keys().map(|f| {
            let kind = match f.key {
                WindowKey::Org => 0,
                WindowKey::Source(_) => 1,
                WindowKey::Keyword(_) => 2,
            };
            (f.rule, kind)
        }));
    }
    // The streams exercise what they claim to: stories with velocity, late data, both
    // rules on every kind of key, and earlier mentions re-emitted as their story grew.
    let (viral, firings, insertions, late) = totals;
    eprintln!("mentions with velocity {viral}, firing windows {firings}, mention records emitted {insertions}, late {late}");
    assert!(viral > 100, "only {viral} mentions with velocity");
    assert!(firings > 20, "only {firings} firing windows");
    assert!(late > 50, "only {late} late mentions");
    assert!(
        insertions > 2 * 5000,
        "only {insertions} mention records emitted"
    );
    assert_eq!(
        rules_seen.len(),
        6,
        "rules × key kinds seen: {rules_seen:?}"
    );
}
