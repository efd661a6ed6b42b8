//! Sinks of vigie: where the dataflow's output goes.
//!
//! [`clickhouse`] holds the schema (versioned migrations), the row types beside it, the
//! batching writer with its retry classification, and the catalog of organisations, keys
//! and sources. [`alert`] is the alert every consumer sees (JSON and row).
#![deny(missing_docs)]

pub mod alert;
pub mod clickhouse;
pub mod metrics;
pub mod webhook;

pub use metrics::SinkMetrics;
