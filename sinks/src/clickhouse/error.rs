//! Errors of the ClickHouse sink, with the server's code where it gave one.

/// What went wrong talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// ClickHouse answered with an exception (code and message as the server gave them).
    #[error("ClickHouse error {code}: {message}")]
    Server {
        /// ClickHouse's numeric error code (e.g. 60 unknown table, 53 type mismatch).
        code: u32,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or the connection broke.
    #[error("ClickHouse unreachable: {0}")]
    Network(String),
    /// Anything else the client reported (encoding, unexpected response).
    #[error("ClickHouse client error: {0}")]
    Client(String),
    /// The database's schema is older than this build expects.
    #[error("schema not migrated: database is at version {found}, vigie needs {needed}; run `vigie migrate`")]
    NotMigrated {
        /// Version recorded in `schema_migrations`.
        found: u32,
        /// Latest version this build ships.
        needed: u32,
    },
    /// A dead-letter file could not be written.
    #[error("dead-letter write failed: {0}")]
    DeadLetter(#[from] std::io::Error),
}

impl From<clickhouse::error::Error> for SinkError {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        match e {
            E::BadResponse(msg) => match parse_code(&msg) {
                Some(code) => SinkError::Server {
                    code,
                    message: msg.trim().to_string(),
                },
                None => SinkError::Client(msg),
            },
            E::Network(err) => SinkError::Network(err.to_string()),
            E::TimedOut => SinkError::Network("timed out".into()),
            other => SinkError::Client(other.to_string()),
        }
    }
}

/// Extracts N from "Code: N. DB::Exception…" (current) or "Code: N, e.displayText()…" (18.16).
pub fn parse_code(msg: &str) -> Option<u32> {
    let rest = &msg[msg.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codes_of_old_and_new_servers() {
        assert_eq!(
            parse_code("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist"),
            Some(60)
        );
        assert_eq!(
            parse_code("Code: 117. DB::Exception: bad data (version 26.9)"),
            Some(117)
        );
        assert_eq!(parse_code("connection refused"), None);
    }
}
