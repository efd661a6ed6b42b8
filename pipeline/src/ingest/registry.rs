//! Cached lookups of ingest keys and sources, backed by ClickHouse.
//!
//! Hits are served from memory; an entry older than its time-to-live is looked up again,
//! so a disabled source or revoked key stops being accepted within one TTL. Unknown keys
//! and sources are cached too (for a shorter time) so random keys cannot flood ClickHouse.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use uuid::Uuid;
use vigie_sinks::clickhouse::{catalog, SinkError};

/// What ingest needs to know about a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Exists, belongs to the organisation and is active.
    Active,
    /// Exists, belongs to the organisation, but is disabled.
    Inactive,
    /// Unknown to this organisation.
    Unknown,
}

/// The cache.
pub struct Registry {
    client: clickhouse::Client,
    ttl: Duration,
    negative_ttl: Duration,
    keys: RwLock<HashMap<String, (Option<Uuid>, Instant)>>,
    sources: RwLock<HashMap<(Uuid, Uuid), (SourceState, Instant)>>,
}

impl Registry {
    /// A cache over `client` whose entries live `ttl` (unknowns: at most one second).
    pub fn new(client: clickhouse::Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            negative_ttl: ttl.min(Duration::from_secs(1)),
            keys: RwLock::default(),
            sources: RwLock::default(),
        }
    }

    fn fresh(&self, known: bool, at: Instant) -> bool {
        at.elapsed() < if known { self.ttl } else { self.negative_ttl }
    }

    /// The organisation of an ingest key, if the key is valid.
    pub async fn org_for_key(&self, key: &str) -> Result<Option<Uuid>, SinkError> {
        let hash = catalog::hash_key(key);
        if let Some((org, at)) = self.keys.read().await.get(&hash) {
            if self.fresh(org.is_some(), *at) {
                return Ok(*org);
            }
        }
        let org = catalog::org_for_key(&self.client, key).await?;
        let mut keys = self.keys.write().await;
        if keys.len() > 100_000 {
            keys.clear();
        }
        keys.insert(hash, (org, Instant::now()));
        Ok(org)
    }

    /// Whether `source` exists in `org` and is active.
    pub async fn source(&self, org: Uuid, source: Uuid) -> Result<SourceState, SinkError> {
        if let Some((state, at)) = self.sources.read().await.get(&(org, source)) {
            if self.fresh(*state != SourceState::Unknown, *at) {
                return Ok(*state);
            }
        }
        let state = match catalog::get_source(&self.client, org, source).await? {
            Some(row) if row.is_active == 1 => SourceState::Active,
            Some(_) => SourceState::Inactive,
            None => SourceState::Unknown,
        };
        let mut sources = self.sources.write().await;
        if sources.len() > 1_000_000 {
            sources.clear();
        }
        sources.insert((org, source), (state, Instant::now()));
        Ok(state)
    }
}
