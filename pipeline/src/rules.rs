//! Per-organisation alert rules: stored in ClickHouse (`alert_rules`, one JSON document per
//! organisation, versioned), cached in a [`RuleBook`] the dataflow reads, and changeable at
//! run time (`vigie rules set`; a running vigie picks the change up within its refresh
//! interval). A change applies to the windows evaluated from then on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigie_sinks::clickhouse::catalog::now_version;
use vigie_sinks::clickhouse::SinkError;

/// Critical negative viral mention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriticalMentionRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// A negative mention with at least this virality (0–100) raises an alert.
    pub min_virality: f64,
    /// At most one alert per story per this many minutes (event time).
    pub cooldown_minutes: u32,
}

impl Default for CriticalMentionRule {
    fn default() -> Self {
        Self {
            enabled: true,
            min_virality: 70.0,
            cooldown_minutes: 60,
        }
    }
}

/// Volume spike per organisation, source and keyword.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolumeSpikeRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Fires when the window's count exceeds the baseline's hourly mean + k·σ …
    pub k: f64,
    /// … and is at least this many mentions …
    pub min_count: u32,
    /// … and at least this many times the hourly mean (a steady, busy key has a small σ).
    pub min_ratio: f64,
    /// At most one alert per key per this many minutes (event time).
    pub cooldown_minutes: u32,
}

impl Default for VolumeSpikeRule {
    fn default() -> Self {
        Self {
            enabled: true,
            k: 3.0,
            min_count: 20,
            min_ratio: 2.0,
            cooldown_minutes: 60,
        }
    }
}

/// Sentiment dip per organisation, source and keyword.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SentimentDipRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Fires when the window's negative share exceeds the baseline's by this much (0–1) …
    pub min_rise: f64,
    /// … with at least this many mentions in the window and in the baseline.
    pub min_count: u32,
    /// At most one alert per key per this many minutes (event time).
    pub cooldown_minutes: u32,
}

impl Default for SentimentDipRule {
    fn default() -> Self {
        Self {
            enabled: true,
            min_rise: 0.2,
            min_count: 20,
            cooldown_minutes: 60,
        }
    }
}

/// An organisation's alert rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRules {
    /// Critical negative viral mention.
    pub critical_mention: CriticalMentionRule,
    /// Volume spike.
    pub volume_spike: VolumeSpikeRule,
    /// Sentiment dip.
    pub sentiment_dip: SentimentDipRule,
    /// Length of the sliding window compared with the baseline (15–60 minutes).
    pub window_minutes: u32,
    /// Hours of trailing baseline (1–48). A key raises window alerts only once its first
    /// mention is at least this old (no alert from a cold start).
    pub baseline_hours: u32,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            critical_mention: CriticalMentionRule::default(),
            volume_spike: VolumeSpikeRule::default(),
            sentiment_dip: SentimentDipRule::default(),
            window_minutes: 60,
            baseline_hours: 24,
        }
    }
}

/// Longest window the windows stage keeps state for (minutes).
pub const MAX_WINDOW_MINUTES: u32 = 60;
/// Shortest window (minutes): it must exceed the largest allowed lateness.
pub const MIN_WINDOW_MINUTES: u32 = 15;
/// Longest baseline (hours).
pub const MAX_BASELINE_HOURS: u32 = 48;

impl AlertRules {
    /// Parses and validates a JSON document; errors name the field.
    pub fn from_json(text: &str) -> Result<AlertRules, String> {
        let rules: AlertRules = serde_json::from_str(text).map_err(|e| e.to_string())?;
        rules.validate()?;
        Ok(rules)
    }

    /// Checks every value is in range; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.critical_mention;
        if !(0.0..=100.0).contains(&c.min_virality) {
            return Err("critical_mention.min_virality must be within 0..=100".into());
        }
        if !(self.volume_spike.k.is_finite() && self.volume_spike.k > 0.0) {
            return Err("volume_spike.k must be a positive number".into());
        }
        if !(self.volume_spike.min_ratio.is_finite() && self.volume_spike.min_ratio >= 1.0) {
            return Err("volume_spike.min_ratio must be at least 1".into());
        }
        if self.volume_spike.min_count == 0 {
            return Err("volume_spike.min_count must be at least 1".into());
        }
        let d = &self.sentiment_dip;
        if !(d.min_rise > 0.0 && d.min_rise <= 1.0) {
            return Err("sentiment_dip.min_rise must be within (0, 1]".into());
        }
        if d.min_count == 0 {
            return Err("sentiment_dip.min_count must be at least 1".into());
        }
        for (name, m) in [
            ("critical_mention", c.cooldown_minutes),
            ("volume_spike", self.volume_spike.cooldown_minutes),
            ("sentiment_dip", d.cooldown_minutes),
        ] {
            if !(1..=7 * 24 * 60).contains(&m) {
                return Err(format!(
                    "{name}.cooldown_minutes must be within 1..=10080 (a week)"
                ));
            }
        }
        if !(MIN_WINDOW_MINUTES..=MAX_WINDOW_MINUTES).contains(&self.window_minutes) {
            return Err(format!(
                "window_minutes must be within {MIN_WINDOW_MINUTES}..={MAX_WINDOW_MINUTES}"
            ));
        }
        if !(1..=MAX_BASELINE_HOURS).contains(&self.baseline_hours) {
            return Err(format!(
                "baseline_hours must be within 1..={MAX_BASELINE_HOURS}"
            ));
        }
        Ok(())
    }
}

/// The rules of every organisation, shared by the dataflow's workers. Organisations
/// without stored rules get the defaults.
#[derive(Debug, Default)]
pub struct RuleBook {
    rules: RwLock<HashMap<Uuid, Arc<AlertRules>>>,
    default: Arc<AlertRules>,
}

impl RuleBook {
    /// A book where every organisation has `default`.
    pub fn with_default(default: AlertRules) -> RuleBook {
        RuleBook {
            rules: RwLock::default(),
            default: Arc::new(default),
        }
    }

    /// The rules of `org`.
    pub fn get(&self, org: Uuid) -> Arc<AlertRules> {
        self.rules
            .read()
            .ok()
            .and_then(|r| r.get(&org).cloned())
            .unwrap_or_else(|| self.default.clone())
    }

    /// Sets the rules of `org` in this book (not in ClickHouse).
    pub fn set(&self, org: Uuid, rules: AlertRules) {
        if let Ok(mut r) = self.rules.write() {
            r.insert(org, Arc::new(rules));
        }
    }

    /// Replaces the whole book's contents.
    fn replace(&self, all: HashMap<Uuid, Arc<AlertRules>>) {
        if let Ok(mut r) = self.rules.write() {
            *r = all;
        }
    }

    /// Reloads every organisation's rules from ClickHouse.
    pub async fn reload(&self, client: &clickhouse::Client) -> Result<usize, SinkError> {
        let rows = client
            .query("SELECT ?fields FROM alert_rules FINAL")
            .fetch_all::<RulesRow>()
            .await?;
        let mut all = HashMap::with_capacity(rows.len());
        for row in rows {
            match AlertRules::from_json(&row.config) {
                Ok(r) => {
                    all.insert(row.org_id, Arc::new(r));
                }
                Err(e) => {
                    tracing::warn!(org = %row.org_id, error = %e, "ignoring invalid stored alert rules")
                }
            }
        }
        let n = all.len();
        self.replace(all);
        Ok(n)
    }

    /// Reloads every `every` until the process ends; keeps the last rules through outages.
    pub async fn refresh_forever(self: Arc<Self>, client: clickhouse::Client, every: Duration) {
        loop {
            if let Err(e) = self.reload(&client).await {
                tracing::debug!(error = %e, "cannot reload alert rules; keeping the last ones");
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// A row of `alert_rules`.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
pub struct RulesRow {
    /// Organisation.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// The rules as JSON.
    pub config: String,
    /// When they were set, seconds since the epoch.
    pub updated_at: u32,
    /// Row version.
    pub version: u64,
}

/// The stored rules of `org` (the defaults when none are stored).
pub async fn load(client: &clickhouse::Client, org: Uuid) -> Result<AlertRules, SinkError> {
    let row = client
        .query("SELECT ?fields FROM alert_rules FINAL WHERE org_id = ?")
        .bind(org)
        .fetch_optional::<RulesRow>()
        .await?;
    Ok(row
        .and_then(|r| AlertRules::from_json(&r.config).ok())
        .unwrap_or_default())
}

/// Stores the rules of `org` (validated first).
pub async fn store(
    client: &clickhouse::Client,
    org: Uuid,
    rules: &AlertRules,
) -> Result<(), SinkError> {
    rules.validate().map_err(SinkError::Client)?;
    let version = now_version();
    let row = RulesRow {
        org_id: org,
        config: serde_json::to_string(rules).map_err(|e| SinkError::Client(e.to_string()))?,
        updated_at: (version / 1_000_000) as u32,
        version,
    };
    let mut insert = client.insert::<RulesRow>("alert_rules").await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_documents_take_defaults_and_errors_name_the_field() {
        let r = AlertRules::from_json(r#"{"volume_spike": {"k": 2.5}}"#).unwrap();
        assert_eq!(r.volume_spike.k, 2.5);
        assert_eq!(r.volume_spike.min_count, 20);
        assert_eq!(r.critical_mention, CriticalMentionRule::default());
        let e = AlertRules::from_json(r#"{"window_minutes": 5}"#).unwrap_err();
        assert!(e.contains("window_minutes"), "{e}");
        let e = AlertRules::from_json(r#"{"volume_spike": {"kk": 1}}"#).unwrap_err();
        assert!(e.contains("kk"), "{e}");
        let e = AlertRules::from_json(r#"{"sentiment_dip": {"min_rise": 0}}"#).unwrap_err();
        assert!(e.contains("sentiment_dip.min_rise"), "{e}");
    }
}
