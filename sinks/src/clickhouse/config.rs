//! User-facing options of the ClickHouse sink.

use std::time::Duration;

use super::retry::RetryPolicy;

/// Where ClickHouse is and how to batch writes to it.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding vigie's tables.
    pub database: String,
    /// User name (ClickHouse's `default` when unset).
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// A batch is sent once it holds this many rows …
    pub batch_rows: usize,
    /// … or once its oldest row waited this long.
    pub flush_interval: Duration,
    /// How transient errors are retried.
    pub retry: RetryPolicy,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "vigie".into(),
            user: None,
            password: None,
            batch_rows: 50_000,
            flush_interval: Duration::from_millis(200),
            retry: RetryPolicy::default(),
        }
    }
}

impl ClickHouseConfig {
    /// A client bound to the configured database.
    pub fn client(&self) -> clickhouse::Client {
        self.server_client().with_database(&self.database)
    }

    /// A client not bound to any database (to create or drop one).
    pub fn server_client(&self) -> clickhouse::Client {
        let mut c = clickhouse::Client::default()
            .with_url(&self.url)
            // 18.16 does not send the column header that validation needs.
            .with_validation(false);
        if let Some(u) = &self.user {
            c = c.with_user(u);
        }
        if let Some(p) = &self.password {
            c = c.with_password(p);
        }
        c
    }
}
