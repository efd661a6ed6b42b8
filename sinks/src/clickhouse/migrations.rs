//! Versioned schema migrations, recorded in `schema_migrations`. Re-running is a no-op.
//!
//! Each migration is a `.sql` file under `sinks/migrations/` whose statements are separated
//! by a line holding only `;` — the same files CI applies to a current ClickHouse engine,
//! so the schema is proven on 18.16 and on current releases.

use clickhouse::Row;
use serde::Deserialize;

use super::{ClickHouseConfig, SinkError};

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version number.
    pub version: u32,
    /// Short name, recorded beside the version.
    pub name: &'static str,
    /// The statements, separated by lines holding only `;`.
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "alerts",
        sql: include_str!("../../migrations/0002_alerts.sql"),
    },
];

/// The version a fully migrated database is at.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

impl Migration {
    /// The migration's statements, comments and blank lines removed.
    pub fn statements(&self) -> impl Iterator<Item = String> + '_ {
        self.sql
            .split("\n;\n")
            .map(|s| {
                s.lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .filter(|s| !s.trim().is_empty() && s.trim() != ";")
    }
}

fn is_add_column(stmt: &str) -> bool {
    let s = stmt.trim_start().to_ascii_uppercase();
    s.starts_with("ALTER TABLE") && s.contains("ADD COLUMN")
}

/// Checks a database name is a plain identifier (it is spliced into DDL, never bound).
pub fn valid_database_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
    (version UInt32, name String, applied_at DateTime) \
    ENGINE = ReplacingMergeTree() ORDER BY version";

#[derive(Row, Deserialize)]
struct VersionRow {
    version: u32,
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this call, in order (empty when already up to date).
    pub applied: Vec<u32>,
    /// The database's version afterwards.
    pub version: u32,
}

/// Creates the database if needed and applies every migration not yet recorded.
pub async fn migrate(cfg: &ClickHouseConfig) -> Result<MigrateReport, SinkError> {
    if !valid_database_name(&cfg.database) {
        return Err(SinkError::Client(format!(
            "invalid database name {:?}: use letters, digits and '_'",
            cfg.database
        )));
    }
    cfg.server_client()
        .query(&format!("CREATE DATABASE IF NOT EXISTS {}", cfg.database))
        .execute()
        .await?;
    let client = cfg.client();
    client.query(CREATE_MIGRATIONS_TABLE).execute().await?;
    let done = applied_versions(&client).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for stmt in m.statements() {
            match client.query(&stmt).execute().await.map_err(SinkError::from) {
                Ok(()) => {}
                // 44: the column exists. 18.16 has no ADD COLUMN IF NOT EXISTS, so a
                // migration interrupted after its ALTER is re-run this way.
                Err(SinkError::Server { code: 44, .. }) if is_add_column(&stmt) => {}
                Err(e) => return Err(e),
            }
        }
        client
            .query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, now())")
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    Ok(MigrateReport {
        applied,
        version: latest_version(),
    })
}

async fn applied_versions(client: &clickhouse::Client) -> Result<Vec<u32>, SinkError> {
    let rows = client
        .query("SELECT version FROM schema_migrations FINAL ORDER BY version")
        .fetch_all::<VersionRow>()
        .await?;
    Ok(rows.into_iter().map(|r| r.version).collect())
}

/// Drops the configured database (tests' clean-up). Runs on its own thread and runtime,
/// so it can be called from `Drop` inside an async test; errors are ignored.
pub fn drop_database_blocking(cfg: &ClickHouseConfig) {
    if !valid_database_name(&cfg.database) {
        return;
    }
    let cfg = cfg.clone();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(
            cfg.server_client()
                .query(&format!("DROP DATABASE IF EXISTS {}", cfg.database))
                .execute(),
        )
        .ok()
    })
    .join();
}

/// Ok when the server answers and the database is at the latest version.
pub async fn check_ready(cfg: &ClickHouseConfig) -> Result<(), SinkError> {
    let client = cfg.client();
    let found = match applied_versions(&client).await {
        Ok(v) => v.into_iter().max().unwrap_or(0),
        // 60 = unknown table, 81 = unknown database: reachable but not migrated.
        Err(SinkError::Server { code: 60 | 81, .. }) => 0,
        Err(e) => return Err(e),
    };
    let needed = latest_version();
    if found < needed {
        return Err(SinkError::NotMigrated { found, needed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_and_skip_comments() {
        let m = &MIGRATIONS[0];
        let stmts: Vec<_> = m.statements().collect();
        assert!(stmts.len() >= 8, "{}", stmts.len());
        assert!(stmts.iter().all(|s| !s.contains("--")));
        assert!(stmts
            .iter()
            .any(|s| s.contains("CREATE VIEW IF NOT EXISTS trends_current")));
    }

    #[test]
    fn database_names_are_identifiers() {
        assert!(valid_database_name("vigie_test_1a2b"));
        assert!(!valid_database_name("x; DROP DATABASE y"));
        assert!(!valid_database_name(""));
        assert!(!valid_database_name("1abc"));
    }
}
