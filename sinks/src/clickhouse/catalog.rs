//! Organisations, ingest keys and sources, stored in ClickHouse.
//!
//! Rows are versioned (`ReplacingMergeTree(version)`), so an update is a new row with a
//! higher version and readers use `FINAL`. Keys are stored as SHA-256 only.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::rows::{ApiKeyRow, OrgRow, SourceRow};
use super::SinkError;

/// Prefix of ingest keys, so they are recognisable in logs and secret scanners.
pub const KEY_PREFIX: &str = "vk_";

/// Microseconds since the epoch: the version of catalog rows written now.
pub fn now_version() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn now_secs() -> u32 {
    (now_version() / 1_000_000) as u32
}

/// Lowercase hex SHA-256 of an ingest key: what `api_keys` stores and lookups use.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random ingest key (256 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{hex}")
}

/// Creates an organisation and its first ingest key; returns both (the key is shown once).
pub async fn create_org(
    client: &clickhouse::Client,
    name: &str,
) -> Result<(OrgRow, String), SinkError> {
    let org = OrgRow {
        id: Uuid::new_v4(),
        name: name.to_string(),
        created_at: now_secs(),
        version: now_version(),
    };
    let key = generate_key();
    let key_row = ApiKeyRow {
        key_hash: hash_key(&key),
        org_id: org.id,
        created_at: org.created_at,
        revoked: 0,
        version: org.version,
    };
    let mut insert = client.insert::<OrgRow>("organizations").await?;
    insert.write(&org).await?;
    insert.end().await?;
    let mut insert = client.insert::<ApiKeyRow>("api_keys").await?;
    insert.write(&key_row).await?;
    insert.end().await?;
    Ok((org, key))
}

/// The organisation, if it exists.
pub async fn get_org(client: &clickhouse::Client, id: Uuid) -> Result<Option<OrgRow>, SinkError> {
    Ok(client
        .query("SELECT ?fields FROM organizations FINAL WHERE id = ?")
        .bind(id)
        .fetch_optional::<OrgRow>()
        .await?)
}

/// The organisation an ingest key belongs to, unless unknown or revoked.
pub async fn org_for_key(
    client: &clickhouse::Client,
    key: &str,
) -> Result<Option<Uuid>, SinkError> {
    let row = client
        .query("SELECT ?fields FROM api_keys FINAL WHERE key_hash = ?")
        .bind(hash_key(key))
        .fetch_optional::<ApiKeyRow>()
        .await?;
    Ok(row.filter(|r| r.revoked == 0).map(|r| r.org_id))
}

/// Adds a source to an organisation (which must exist).
pub async fn add_source(
    client: &clickhouse::Client,
    org_id: Uuid,
    kind: i8,
    name: &str,
    keywords: Vec<String>,
) -> Result<SourceRow, SinkError> {
    let row = SourceRow {
        org_id,
        id: Uuid::new_v4(),
        kind,
        name: name.to_string(),
        keywords,
        is_active: 1,
        created_at: now_secs(),
        version: now_version(),
    };
    let mut insert = client.insert::<SourceRow>("sources").await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(row)
}

/// Sources of one organisation, by name.
pub async fn list_sources(
    client: &clickhouse::Client,
    org_id: Uuid,
) -> Result<Vec<SourceRow>, SinkError> {
    Ok(client
        .query("SELECT ?fields FROM sources FINAL WHERE org_id = ? ORDER BY name, id")
        .bind(org_id)
        .fetch_all::<SourceRow>()
        .await?)
}

/// Every source of every organisation (the ingest cache's refresh).
pub async fn all_sources(client: &clickhouse::Client) -> Result<Vec<SourceRow>, SinkError> {
    Ok(client
        .query("SELECT ?fields FROM sources FINAL")
        .fetch_all::<SourceRow>()
        .await?)
}

/// One source of one organisation.
pub async fn get_source(
    client: &clickhouse::Client,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<SourceRow>, SinkError> {
    Ok(client
        .query("SELECT ?fields FROM sources FINAL WHERE org_id = ? AND id = ?")
        .bind(org_id)
        .bind(id)
        .fetch_optional::<SourceRow>()
        .await?)
}

/// Enables or disables a source; `None` when the organisation has no such source.
pub async fn set_source_active(
    client: &clickhouse::Client,
    org_id: Uuid,
    id: Uuid,
    active: bool,
) -> Result<Option<SourceRow>, SinkError> {
    let Some(mut row) = get_source(client, org_id, id).await? else {
        return Ok(None);
    };
    row.is_active = u8::from(active);
    row.version = now_version().max(row.version + 1);
    let mut insert = client.insert::<SourceRow>("sources").await?;
    insert.write(&row).await?;
    insert.end().await?;
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_stable() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 64);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
