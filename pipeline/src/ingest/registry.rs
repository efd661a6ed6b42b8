//! Cached lookups of ingest keys and sources, backed by ClickHouse.
//!
//! Hits are served from memory; an entry older than its time-to-live is looked up again,
//! so a disabled source or revoked key stops being accepted within one TTL. Unknown keys
//! and sources are cached too (for a shorter time) so random keys cannot flood ClickHouse.
//! When ClickHouse cannot be reached, an expired entry is served rather than refusing the
//! request: ingest keeps accepting into the write-ahead log through an outage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use uuid::Uuid;
use vigie_sinks::clickhouse::{catalog, SinkError};
use vigie_udfs::virality::KeywordSet;

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
    sources: RwLock<HashMap<(Uuid, Uuid), SourceEntry>>,
}

/// A cached source: its state and keywords.
type SourceEntry = (SourceState, Keywords, Instant);

/// A source's keywords, split into match words once per lookup, shared.
pub type Keywords = Arc<KeywordSet>;

fn no_keywords() -> Keywords {
    Arc::default()
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
        let cached = self.keys.read().await.get(&hash).copied();
        if let Some((org, at)) = cached {
            if self.fresh(org.is_some(), at) {
                return Ok(org);
            }
        }
        let org = match catalog::org_for_key(&self.client, key).await {
            Ok(org) => org,
            Err(e) => match cached {
                Some((org, _)) => {
                    tracing::debug!(error = %e, "ClickHouse unreachable; serving a cached key");
                    return Ok(org);
                }
                None => return Err(e),
            },
        };
        let mut keys = self.keys.write().await;
        if keys.len() > 100_000 {
            keys.clear();
        }
        keys.insert(hash, (org, Instant::now()));
        Ok(org)
    }

    /// Whether `source` exists in `org` and is active, and its keywords.
    pub async fn source(
        &self,
        org: Uuid,
        source: Uuid,
    ) -> Result<(SourceState, Keywords), SinkError> {
        let cached = self.sources.read().await.get(&(org, source)).cloned();
        if let Some((state, keywords, at)) = &cached {
            if self.fresh(*state != SourceState::Unknown, *at) {
                return Ok((*state, keywords.clone()));
            }
        }
        let (state, keywords) = match catalog::get_source(&self.client, org, source).await {
            Ok(Some(row)) => (
                if row.is_active == 1 {
                    SourceState::Active
                } else {
                    SourceState::Inactive
                },
                Arc::new(KeywordSet::new(row.keywords)),
            ),
            Ok(None) => (SourceState::Unknown, no_keywords()),
            Err(e) => match cached {
                Some((state, keywords, _)) => {
                    tracing::debug!(error = %e, "ClickHouse unreachable; serving a cached source");
                    return Ok((state, keywords));
                }
                None => return Err(e),
            },
        };
        let mut sources = self.sources.write().await;
        if sources.len() > 1_000_000 {
            sources.clear();
        }
        sources.insert((org, source), (state, keywords.clone(), Instant::now()));
        Ok((state, keywords))
    }
}
