//! Counters of the webhook dispatcher, rendered in Prometheus text format. No labels: org
//! and endpoint ids stay out of metrics (they are in `webhook_deliveries`).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one dispatcher.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Deliveries queued by `publish` (one per matching endpoint).
    pub queued: AtomicU64,
    /// Deliveries acknowledged with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (network error, timeout or non-2xx), retried or not.
    pub failed: AtomicU64,
    /// Retries scheduled after a failed attempt.
    pub retried: AtomicU64,
    /// Deliveries given up on and written to `webhook_dead_letters` (drops included).
    pub dead_lettered: AtomicU64,
    /// Deliveries not queued because the endpoint's queue was full, or the dispatcher was
    /// shutting down.
    pub dropped: AtomicU64,
    /// Rows written to `webhook_deliveries` and `webhook_dead_letters`.
    pub log_rows_written: AtomicU64,
    /// Log rows lost: the bounded buffer overflowed while ClickHouse was unreachable, or
    /// the shutdown flush ran out of time.
    pub log_rows_dropped: AtomicU64,
    /// Endpoint reloads from ClickHouse that failed (the last known set stays in use).
    pub refresh_errors: AtomicU64,
    /// Enabled endpoints currently loaded (gauge).
    pub endpoints: AtomicU64,
    /// Deliveries queued or in progress (gauge).
    pub pending: AtomicU64,
}

impl WebhookMetrics {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of these counters, every name prefixed
    /// `vigie_webhook_`.
    pub fn render_prometheus(&self) -> String {
        let series: [(&str, &str, &str, &AtomicU64); 11] = [
            (
                "queued_total",
                "counter",
                "Deliveries queued (one per matching endpoint).",
                &self.queued,
            ),
            (
                "delivered_total",
                "counter",
                "Deliveries acknowledged with a 2xx.",
                &self.delivered,
            ),
            (
                "failed_attempts_total",
                "counter",
                "Delivery attempts that failed (network error, timeout or non-2xx).",
                &self.failed,
            ),
            (
                "retries_total",
                "counter",
                "Retries scheduled after a failed attempt.",
                &self.retried,
            ),
            (
                "dead_lettered_total",
                "counter",
                "Deliveries given up on and written to webhook_dead_letters.",
                &self.dead_lettered,
            ),
            (
                "dropped_total",
                "counter",
                "Deliveries not queued: endpoint queue full or dispatcher stopping.",
                &self.dropped,
            ),
            (
                "log_rows_written_total",
                "counter",
                "Delivery log and dead-letter rows written to ClickHouse.",
                &self.log_rows_written,
            ),
            (
                "log_rows_dropped_total",
                "counter",
                "Delivery log and dead-letter rows lost (buffer overflow or shutdown).",
                &self.log_rows_dropped,
            ),
            (
                "refresh_errors_total",
                "counter",
                "Failed reloads of the endpoint list from ClickHouse.",
                &self.refresh_errors,
            ),
            (
                "endpoints",
                "gauge",
                "Enabled endpoints loaded.",
                &self.endpoints,
            ),
            (
                "pending",
                "gauge",
                "Deliveries queued or in progress.",
                &self.pending,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP vigie_webhook_{name} {help}");
            let _ = writeln!(out, "# TYPE vigie_webhook_{name} {kind}");
            let _ = writeln!(
                out,
                "vigie_webhook_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_with_the_prefix() {
        let m = WebhookMetrics::default();
        m.delivered.store(3, Ordering::Relaxed);
        let text = m.render_prometheus();
        assert!(
            text.contains("\nvigie_webhook_delivered_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vigie_webhook_pending gauge"),
            "{text}"
        );
        for line in text.lines() {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            assert!(name.starts_with("vigie_webhook_"), "{line}");
        }
        assert_eq!(text.lines().count(), 33);
    }
}
