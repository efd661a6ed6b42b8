//! Alerts stage: turns firing windows and negative viral mentions into alerts, one per
//! cooldown period per (rule, key), with deterministic ids.
//!
//! - Volume spike / sentiment dip: a window entering the firing set raises an alert unless
//!   the same rule and key raised one for a window ending less than a cooldown earlier
//!   (event time).
//! - Critical mention: a negative mention whose virality reaches `min_virality` raises an
//!   alert for its story, one per story per cooldown (event time). A mention that becomes
//!   viral later, as its story grows, raises it then.
//!
//! The id is a UUIDv5 of (organisation, rule, key, window end), so replaying the same input
//! (a restart replaying the write-ahead log) raises the same ids and ClickHouse keeps one
//! row per alert. Alerts are never retracted: once raised, an alert's life is its status.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use differential_dataflow::VecCollection;
use uuid::Uuid;
use vigie_sinks::alert::{AlertType, Level};

use super::checkpoint::{CheckpointSpec, StageCheckpoint};
use super::ordered::{ordered, Checkpointed};
use super::records::{AlertKey, AlertRecord, Firing, Scored, WindowKey, WindowRule};
use crate::rules::{AlertRules, RuleBook};

/// Namespace of alert ids.
pub const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x7669_6769_652d_616c_6572_742d_6964_7331);

/// What the critical-mention rule needs of a negative mention.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Candidate {
    /// Organisation.
    pub org: Uuid,
    /// Mention id.
    pub id: Uuid,
    /// Event time, µs.
    pub t_us: i64,
    /// Story.
    pub story: u64,
    /// Source.
    pub source: Uuid,
    /// Virality, micro-units of [0, 100].
    pub virality: i32,
    /// Velocity, thousandths.
    pub velocity: u16,
    /// Its text, shared with the mention's body; an alert quotes the first 140 characters
    /// (cut only when one is raised: most negative mentions raise none).
    pub text: Arc<str>,
}

/// Input of the alerts stage.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum AlertInput {
    /// A window whose condition holds.
    Window(Firing),
    /// A negative mention.
    Mention(Candidate),
}

impl AlertInput {
    fn org(&self) -> Uuid {
        match self {
            Self::Window(f) => f.org,
            Self::Mention(c) => c.org,
        }
    }
}

/// Options of the alerts stage.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    /// Rules per organisation.
    pub rules: Arc<RuleBook>,
    /// Checkpoints (`None`: none written, nothing restored).
    pub checkpoint: Option<Arc<CheckpointSpec>>,
}

/// The string an alert key is identified by (and shown as).
pub fn key_string(org: Uuid, key: &AlertKey) -> String {
    match key {
        AlertKey::Window(WindowKey::Org) => org.to_string(),
        AlertKey::Window(WindowKey::Source(s)) => s.to_string(),
        AlertKey::Window(WindowKey::Keyword(k)) => k.clone(),
        AlertKey::Story(s) => format!("{s:016x}"),
    }
}

fn key_tag(key: &AlertKey) -> &'static str {
    match key {
        AlertKey::Window(WindowKey::Org) => "org",
        AlertKey::Window(WindowKey::Source(_)) => "source",
        AlertKey::Window(WindowKey::Keyword(_)) => "keyword",
        AlertKey::Story(_) => "story",
    }
}

/// The deterministic id of an alert.
pub fn alert_id(org: Uuid, kind: AlertType, key: &AlertKey, window_end: i64) -> Uuid {
    let name = format!(
        "{org}/{}/{}:{}/{window_end}",
        kind.as_str(),
        key_tag(key),
        key_string(org, key)
    );
    Uuid::new_v5(&ALERT_NAMESPACE, name.as_bytes())
}

fn subject(key: &WindowKey) -> String {
    match key {
        WindowKey::Org => "all mentions".to_string(),
        WindowKey::Source(s) => format!("mentions from source {}", &s.to_string()[..8]),
        WindowKey::Keyword(k) => format!("mentions of '{k}'"),
    }
}

fn window_alert(f: &Firing, rules: &AlertRules) -> AlertRecord {
    let observed = f.observed as f64 / 1000.0;
    let baseline = f.baseline as f64 / 1000.0;
    let (kind, level, message) = match f.rule {
        WindowRule::Spike => {
            let ratio = observed / baseline.max(1.0);
            let level = if ratio >= 5.0 {
                Level::Critical
            } else if ratio >= 2.5 {
                Level::Medium
            } else {
                Level::Low
            };
            let subject = subject(&f.key);
            let subject = subject[..1].to_uppercase() + &subject[1..];
            (
                AlertType::VolumeSpike,
                level,
                if f.length == 3600 {
                    format!(
                        "{subject} up {ratio:.1}x in the last hour ({observed:.0} vs {baseline:.1}/h avg over the previous {} h)",
                        rules.baseline_hours
                    )
                } else {
                    format!(
                        "{subject} up {ratio:.1}x in the last {} ({observed:.0} vs {baseline:.1} expected from the previous {} h)",
                        window_phrase(f.length),
                        rules.baseline_hours
                    )
                },
            )
        }
        WindowRule::Dip => {
            let rise = observed - baseline;
            let min_rise = rules.sentiment_dip.min_rise;
            let level = if rise >= 2.0 * min_rise {
                Level::Critical
            } else if rise >= 1.5 * min_rise {
                Level::Medium
            } else {
                Level::Low
            };
            (
                AlertType::SentimentDip,
                level,
                format!(
                    "Negative share of {} at {:.0}% in the last {} (vs {:.0}% over the previous {} h)",
                    subject(&f.key),
                    observed * 100.0,
                    window_phrase(f.length),
                    baseline * 100.0,
                    rules.baseline_hours
                ),
            )
        }
    };
    let key = AlertKey::Window(f.key.clone());
    AlertRecord {
        id: alert_id(f.org, kind, &key, f.end),
        org: f.org,
        kind: kind.code(),
        level: level.code(),
        source: match &f.key {
            WindowKey::Source(s) => Some(*s),
            _ => None,
        },
        key,
        observed: f.observed,
        baseline: f.baseline,
        threshold: f.threshold,
        window_start: f.end - f.length,
        window_end: f.end,
        mention_ids: f.sample.clone(),
        message,
    }
}

fn window_phrase(secs: i64) -> String {
    if secs == 3600 {
        "hour".to_string()
    } else {
        format!("{} minutes", secs / 60)
    }
}

fn mention_alert(c: &Candidate, rules: &AlertRules) -> AlertRecord {
    let key = AlertKey::Story(c.story);
    let minute = c.t_us.div_euclid(60_000_000) * 60;
    let virality = f64::from(c.virality) / 1e6;
    let spread = 2f64.powf(7.0 * f64::from(c.velocity) / 1000.0);
    let quote = excerpt(&c.text, 140);
    let message = if c.velocity > 0 {
        format!(
            "Negative mention going viral (virality {virality:.1}; its story is spreading {spread:.1}x faster than usual): \"{quote}\""
        )
    } else {
        format!("Negative mention going viral (virality {virality:.1}): \"{quote}\"")
    };
    AlertRecord {
        id: alert_id(c.org, AlertType::CriticalMention, &key, minute + 60),
        org: c.org,
        kind: AlertType::CriticalMention.code(),
        level: Level::Critical.code(),
        key,
        source: Some(c.source),
        observed: i64::from(c.virality) / 1000,
        baseline: 0,
        threshold: (rules.critical_mention.min_virality * 1000.0).round() as i64,
        window_start: minute,
        window_end: minute + 60,
        mention_ids: vec![c.id],
        message,
    }
}

#[derive(Default)]
struct State {
    /// Last raised window end per (organisation, rule, key), seconds.
    last: HashMap<(Uuid, i8, AlertKey), i64>,
    /// Newest event time seen per organisation (seconds), for eviction.
    newest: HashMap<Uuid, i64>,
    applied: u64,
}

/// Longest cooldown a rule may have (seconds): older cooldown entries are dropped.
const MAX_COOLDOWN_SECS: i64 = 7 * 24 * 3600;

impl State {
    fn apply(
        &mut self,
        changes: Vec<(AlertInput, isize)>,
        spec: &AlertSpec,
        out: &mut Vec<(AlertRecord, isize)>,
    ) {
        let mut rules_of: BTreeMap<Uuid, Arc<AlertRules>> = BTreeMap::new();
        for (input, diff) in changes {
            if diff <= 0 {
                continue;
            }
            let org = input.org();
            let rules = rules_of
                .entry(org)
                .or_insert_with(|| spec.rules.get(org))
                .clone();
            let (record, at, cooldown) = match &input {
                AlertInput::Window(f) => {
                    let cooldown = match f.rule {
                        WindowRule::Spike => rules.volume_spike.cooldown_minutes,
                        WindowRule::Dip => rules.sentiment_dip.cooldown_minutes,
                    };
                    (window_alert(f, &rules), f.end, cooldown)
                }
                AlertInput::Mention(c) => {
                    let rule = &rules.critical_mention;
                    if !rule.enabled || f64::from(c.virality) / 1e6 < rule.min_virality {
                        continue;
                    }
                    (
                        mention_alert(c, &rules),
                        c.t_us.div_euclid(1_000_000),
                        rule.cooldown_minutes,
                    )
                }
            };
            let newest = self.newest.entry(org).or_insert(at);
            *newest = (*newest).max(at);
            let slot = (org, record.kind, record.key.clone());
            if let Some(last) = self.last.get(&slot) {
                if at - *last < i64::from(cooldown) * 60 {
                    continue;
                }
            }
            self.last.insert(slot, at);
            out.push((record, 1));
        }
        self.applied += 1;
        if self.applied.is_multiple_of(1024) {
            let newest = &self.newest;
            self.last.retain(|(org, _, _), at| {
                newest.get(org).is_none_or(|n| *at > n - MAX_COOLDOWN_SECS)
            });
        }
    }
}

/// The alerts stage: firing windows and final scored mentions → raised alerts.
pub fn alerts<'s>(
    firings: VecCollection<'s, u64, Firing>,
    scored: VecCollection<'s, u64, Scored>,
    spec: AlertSpec,
) -> VecCollection<'s, u64, AlertRecord> {
    let candidates = scored.filter(|s| s.label < 0).map(|s| {
        AlertInput::Mention(Candidate {
            org: s.key.org,
            id: s.key.id,
            t_us: s.body.created_at_us,
            story: s.story,
            source: s.body.source,
            virality: s.virality,
            velocity: s.velocity,
            text: s.body.text.clone(),
        })
    });
    let checkpoint = spec.checkpoint.clone().map(|c| (c, "alerts"));
    ordered(
        firings.map(AlertInput::Window).concat(candidates),
        "Alerts",
        true,
        (State::default(), checkpoint),
        move |state, _time, changes, out| state.apply(changes, &spec, out),
    )
}

impl Checkpointed for State {
    fn save(&mut self, label: u64, ckpt: &StageCheckpoint) {
        ckpt.write(label, &(&self.last, &self.newest, self.applied));
    }

    fn restore(&mut self, ckpt: &StageCheckpoint) {
        type Saved = (HashMap<(Uuid, i8, AlertKey), i64>, HashMap<Uuid, i64>, u64);
        if let Some((last, newest, applied)) = ckpt.restored::<Saved>() {
            self.last = last;
            self.newest = newest;
            self.applied = applied;
        }
    }
}

/// The first `n` characters of a text, with an ellipsis when cut.
pub fn excerpt(text: &str, n: usize) -> String {
    let mut out: String = text.chars().take(n).collect();
    if text.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}
