//! Counters the sinks keep; the binary renders them in Prometheus format.
//! Labels are bounded (table names), never org ids.

use std::sync::atomic::{AtomicU64, Ordering};

/// Tables the ClickHouse writer inserts into; a fixed, bounded label set (`other` counts
/// every other table).
pub const TABLES: [&str; 3] = ["mentions", "trends", "other"];

/// Per-table counters of the ClickHouse writer.
#[derive(Debug, Default)]
pub struct TableCounters {
    /// Rows acknowledged by ClickHouse.
    pub rows: AtomicU64,
    /// Insert requests acknowledged by ClickHouse.
    pub inserts: AtomicU64,
    /// Failed attempts (each retry of a transient error counts once).
    pub errors: AtomicU64,
    /// Retries after transient errors.
    pub retries: AtomicU64,
    /// Batches given up on after a permanent error (written to the dead-letter file).
    pub dead_lettered_batches: AtomicU64,
    /// Sum of successful insert latencies in microseconds.
    pub insert_micros: AtomicU64,
}

/// Counters for all tables plus deletions.
#[derive(Debug, Default)]
pub struct SinkMetrics {
    /// Counters for `mentions`.
    pub mentions: TableCounters,
    /// Counters for `trends`.
    pub trends: TableCounters,
    /// Counters for any other table.
    pub other: TableCounters,
    /// Mentions removed by `ALTER TABLE … DELETE` mutations.
    pub mentions_deleted: AtomicU64,
}

impl SinkMetrics {
    /// The counters of one table.
    pub fn table(&self, table: &str) -> &TableCounters {
        match table {
            "mentions" => &self.mentions,
            "trends" => &self.trends,
            _ => &self.other,
        }
    }

    /// Appends the Prometheus text exposition of these counters to `out`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        type Series = (&'static str, &'static str, fn(&TableCounters) -> &AtomicU64);
        let series: [Series; 6] = [
            (
                "vigie_clickhouse_rows_total",
                "Rows acknowledged by ClickHouse.",
                |c| &c.rows,
            ),
            (
                "vigie_clickhouse_inserts_total",
                "Insert requests acknowledged by ClickHouse.",
                |c| &c.inserts,
            ),
            (
                "vigie_clickhouse_errors_total",
                "Failed ClickHouse insert attempts.",
                |c| &c.errors,
            ),
            (
                "vigie_clickhouse_retries_total",
                "Retries after transient ClickHouse errors.",
                |c| &c.retries,
            ),
            (
                "vigie_clickhouse_dead_lettered_batches_total",
                "Batches rejected permanently by ClickHouse and written to the dead-letter file.",
                |c| &c.dead_lettered_batches,
            ),
            (
                "vigie_clickhouse_insert_seconds_sum",
                "Total time spent in successful inserts.",
                |c| &c.insert_micros,
            ),
        ];
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}");
            let kind = if name.ends_with("_sum") {
                "gauge"
            } else {
                "counter"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for table in TABLES {
                let v = get(self.table(table)).load(Ordering::Relaxed);
                if name.ends_with("_seconds_sum") {
                    let _ = writeln!(out, "{name}{{table=\"{table}\"}} {}", v as f64 / 1e6);
                } else {
                    let _ = writeln!(out, "{name}{{table=\"{table}\"}} {v}");
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP vigie_mentions_deleted_total Mentions removed from ClickHouse by deletion."
        );
        let _ = writeln!(out, "# TYPE vigie_mentions_deleted_total counter");
        let _ = writeln!(
            out,
            "vigie_mentions_deleted_total {}",
            self.mentions_deleted.load(Ordering::Relaxed)
        );
    }
}
