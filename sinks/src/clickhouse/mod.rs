//! The ClickHouse sink: schema, rows, batching writer, retry policy, catalog.
//!
//! Every write is idempotent: rows carry their natural key and a `version` (the dataflow
//! time that produced them) in a `ReplacingMergeTree`, so re-sending a row changes nothing,
//! and readers use `FINAL` (or the `trends_current` view) to see the current state.

pub mod catalog;
pub mod config;
pub mod error;
pub mod migrations;
pub mod retry;
pub mod rows;
pub mod writer;

pub use config::ClickHouseConfig;
pub use error::SinkError;
