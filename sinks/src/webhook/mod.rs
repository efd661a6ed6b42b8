//! Signed webhooks: per-organisation endpoints that receive alerts as they are raised.
//!
//! - [`catalog`]: the endpoints (`webhooks` table): add, list, enable/disable.
//! - [`sign`](mod@sign): `X-Vigie-Signature` — HMAC-SHA256 over `"<timestamp>." + body`; [`verify`]
//!   is what a Rust receiver calls.
//! - [`payload`]: the bodies (`json`: the [`AlertEvent`](crate::alert::AlertEvent) JSON;
//!   `slack`: a Slack incoming-webhook message) and the headers of each attempt.
//! - [`dispatch`]: the delivery engine — per-endpoint queues and concurrency limits,
//!   timeouts, retries with capped exponential backoff and full jitter, dead letters.
//! - [`log`]: the rows of `webhook_deliveries` (every attempt) and `webhook_dead_letters`.
//! - [`metrics`]: the dispatcher's counters in Prometheus text format.
//!
//! `sinks/WEBHOOKS.md` is the receiver's guide: payload, headers, verification, retries.

pub mod catalog;
pub mod dispatch;
pub mod log;
pub mod metrics;
pub mod payload;
pub mod sign;

pub use catalog::{
    add_webhook, all_webhooks, list_webhooks, set_webhook_enabled, Format, WebhookRow,
};
pub use dispatch::{Dispatcher, DispatcherConfig, DispatcherHandle, Published, ShutdownReport};
pub use log::{DeadLetterRow, DeliveryRow, Outcome};
pub use metrics::WebhookMetrics;
pub use sign::{sign, verify, VerifyError};

use crate::clickhouse::SinkError;

/// What can go wrong managing webhooks.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The endpoint URL was rejected (the reason says why).
    #[error("invalid webhook URL: {0}")]
    InvalidUrl(String),
    /// A caller-supplied secret was rejected (the reason says why).
    #[error("invalid webhook secret: {0}")]
    InvalidSecret(String),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] SinkError),
}
