//! Sinks of vigie: where the dataflow's output goes.
//!
//! [`clickhouse`] holds the schema (versioned migrations), the row types beside it, the
//! batching writer with its retry classification, and the catalog of organisations, keys
//! and sources. The webhook sink arrives with the alerts issue.
#![deny(missing_docs)]

pub mod clickhouse;
pub mod metrics;

pub use metrics::SinkMetrics;
