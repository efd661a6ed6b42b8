//! Which ClickHouse failures are worth retrying, and how long to wait.
//!
//! Like Vector's ClickHouse sink: network errors and server-side overload are transient;
//! a bad schema or bad data is permanent and retrying it only delays the report.

use std::time::Duration;

use rand::Rng;

use super::SinkError;

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff.
    pub initial: Duration,
    /// Upper bound of any single backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `attempt` (0-based): uniform in [d/2, d] where
    /// d = min(max, initial · 2^attempt).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
        let cap = exp.min(self.max);
        let half = cap / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }
}

/// Whether an error is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Try the same request again after a backoff.
    Transient,
    /// Will fail the same way every time: report it.
    Permanent,
}

/// ClickHouse codes that mean "busy or temporarily unavailable", not "your request is wrong".
const TRANSIENT_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (connection cut mid-body)
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (e.g. during restart)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
];

/// Classifies an error for the writer's retry loop.
pub fn classify(e: &SinkError) -> Retry {
    match e {
        SinkError::Network(_) => Retry::Transient,
        SinkError::Server { code, .. } if TRANSIENT_CODES.contains(code) => Retry::Transient,
        SinkError::Server { .. } | SinkError::NotMigrated { .. } | SinkError::DeadLetter(_) => {
            Retry::Permanent
        }
        // The client reports a broken response body or unexpected HTTP status this way;
        // only a malformed request is permanent, and we never build those by hand.
        SinkError::Client(msg) if msg.contains("invalid params") => Retry::Permanent,
        SinkError::Client(_) => Retry::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_data_errors_are_permanent() {
        for code in [53, 60, 16, 117, 27] {
            let e = SinkError::Server {
                code,
                message: String::new(),
            };
            assert_eq!(classify(&e), Retry::Permanent, "code {code}");
        }
    }

    #[test]
    fn network_and_overload_errors_are_transient() {
        assert_eq!(
            classify(&SinkError::Network("refused".into())),
            Retry::Transient
        );
        assert_eq!(
            classify(&SinkError::Server {
                code: 252,
                message: String::new()
            }),
            Retry::Transient
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for attempt in 0..40 {
            let d = p.backoff(attempt);
            assert!(d <= Duration::from_secs(2), "{d:?}");
            let expected = (Duration::from_millis(100) * 2u32.pow(attempt.min(10)))
                .min(Duration::from_secs(2));
            assert!(
                d >= expected / 2,
                "attempt {attempt}: {d:?} < {:?}",
                expected / 2
            );
        }
    }
}
