//! vigie's pipeline: domain types, warp ingest, the differential-dataflow graph, the
//! runtime that connects them to the sinks, and the `vigie` command line.
#![deny(missing_docs)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod domain;
pub mod files;
#[cfg(feature = "fluvio")]
pub mod fluvio_log;
pub mod gen;
pub mod graph;
pub mod ingest;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod post;
pub mod priority;
pub mod replay;
pub mod rules;
pub mod runtime;
pub mod scoring;
pub mod sink;
pub mod verify;
pub mod wal;
