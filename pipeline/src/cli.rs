//! Command line of the `vigie` binary: flags, `VIGIE_*` environment variables, and an
//! optional TOML file, in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use uuid::Uuid;
use vigie_sinks::clickhouse::ClickHouseConfig;

use crate::domain::SourceType;

/// vigie: social listening as an incremental dataflow into ClickHouse.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// ClickHouse HTTP endpoint [default: http://127.0.0.1:8123]
    #[arg(long, env = "VIGIE_CLICKHOUSE_URL", global = true)]
    pub clickhouse_url: Option<String>,
    /// ClickHouse database holding vigie's tables [default: vigie]
    #[arg(long, env = "VIGIE_CLICKHOUSE_DATABASE", global = true)]
    pub database: Option<String>,
    /// ClickHouse user
    #[arg(long, env = "VIGIE_CLICKHOUSE_USER", global = true)]
    pub clickhouse_user: Option<String>,
    /// ClickHouse password
    #[arg(
        long,
        env = "VIGIE_CLICKHOUSE_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub clickhouse_password: Option<String>,
    /// TOML file with defaults for any option (keys are option names with '_', e.g. clickhouse_url, listen, workers)
    #[arg(long, env = "VIGIE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. info or vigie=debug
    #[arg(long, env = "VIGIE_LOG", global = true, default_value = "info")]
    pub log: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
// Parsed once per process: the size of `Run`'s options does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the ingest server, the dataflow and the ClickHouse sink.
    Run(RunOpts),
    /// Create or upgrade the ClickHouse schema (re-running is a no-op).
    Migrate,
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage an organisation's sources.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Show or change an organisation's alert rules (a running vigie applies a change
    /// within its catalog TTL).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Manage an organisation's webhook endpoints.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Generate realistic synthetic mentions (to stdout, or posted to a running vigie).
    Gen(GenOpts),
    /// Post an NDJSON file of mentions to a running vigie, with a progress bar.
    Replay(ReplayOpts),
    /// Score lines from stdin (NDJSON objects with a "text" field, or plain text) and write
    /// one NDJSON object per line, in input order, with lang, sentiment, sentiment_score,
    /// confidence and emotions. Needs no ClickHouse.
    Score(ScoreOpts),
}

/// Scoring options shared by `vigie score` and `vigie run`.
#[derive(Debug, Clone, Args)]
pub struct ScoringOpts {
    /// Sentiment scorer: `lexicon` (the built-in EN/FR lexicon scorer) or `onnx:PATH` (an
    /// ONNX text classifier; needs a build with the `onnx` feature and ORT_DYLIB_PATH)
    #[arg(long, env = "VIGIE_SCORER", default_value = "lexicon")]
    pub scorer: crate::scoring::ScorerChoice,
    /// Scores with |score| below this are neutral
    #[arg(long, env = "VIGIE_NEUTRAL_BAND")]
    pub neutral_band: Option<f64>,
    /// Scores with a confidence below this are neutral
    #[arg(long, env = "VIGIE_MIN_CONFIDENCE")]
    pub min_confidence: Option<f64>,
    /// Factor applied to the score of a text whose last clause is a question
    #[arg(long, env = "VIGIE_QUESTION_DAMPING")]
    pub question_damping: Option<f64>,
}

impl ScoringOpts {
    /// What the dataflow needs to build its scorers.
    pub fn spec(&self) -> crate::graph::score::ScoringSpec {
        crate::graph::score::ScoringSpec {
            scorer: self.scorer.clone(),
            config: self.config(),
        }
    }

    /// The lexicon scorer's configuration: defaults, overridden by the flags given.
    pub fn config(&self) -> vigie_udfs::ScoreConfig {
        let mut cfg = vigie_udfs::ScoreConfig::default();
        if let Some(b) = self.neutral_band {
            cfg.neutral_band = b;
        }
        if let Some(c) = self.min_confidence {
            cfg.min_confidence = c;
        }
        if let Some(q) = self.question_damping {
            cfg.question_damping = q;
        }
        cfg
    }
}

/// `vigie score`.
#[derive(Debug, Args)]
pub struct ScoreOpts {
    /// How to score.
    #[command(flatten)]
    pub scoring: ScoringOpts,
    /// Lines scored per batch (the ONNX scorer runs a batch at a time)
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
}

/// `vigie run`.
#[derive(Debug, Args)]
pub struct RunOpts {
    /// How mentions are scored.
    #[command(flatten)]
    pub scoring: ScoringOpts,
    /// Address of the ingest HTTP server [default: 127.0.0.1:8080]
    #[arg(long, env = "VIGIE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Timely worker threads; records are exchanged between them by organisation [default: 1]
    #[arg(long, env = "VIGIE_WORKERS")]
    pub workers: Option<usize>,
    /// Directory for local state: the write-ahead log and dead-letter files [default: ./data]
    #[arg(long, env = "VIGIE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Largest request body in bytes, before and after gzip [default: 10485760]
    #[arg(long, env = "VIGIE_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// A ClickHouse insert is sent once it holds this many rows [default: 50000]
    #[arg(long, env = "VIGIE_BATCH_ROWS")]
    pub batch_rows: Option<usize>,
    /// … or once its oldest row waited this many milliseconds [default: 200]
    #[arg(long, env = "VIGIE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// How long ingest caches keys and sources, in milliseconds [default: 5000]
    #[arg(long, env = "VIGIE_CATALOG_TTL_MS")]
    pub catalog_ttl_ms: Option<u64>,
    /// Apply migrations at start-up
    #[arg(long, env = "VIGIE_MIGRATE")]
    pub migrate: bool,
    /// On SIGTERM/SIGINT, wait at most this many seconds for ClickHouse to take the last
    /// batches (what it does not take stays in the write-ahead log) [default: 30]
    #[arg(long, env = "VIGIE_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,
    /// Disk budget of the write-ahead log in bytes; beyond it ingest answers 503 until
    /// ClickHouse catches up and the log is compacted [default: 8589934592]
    #[arg(long, env = "VIGIE_WAL_MAX_BYTES")]
    pub wal_max_bytes: Option<u64>,
    /// Size at which a write-ahead log segment is closed (closed segments are compacted
    /// once ClickHouse has their effects) [default: 67108864]
    #[arg(long, env = "VIGIE_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Seconds between checkpoints of the dataflow's state (a restart restores the newest
    /// one ClickHouse has caught up with and replays only the log after it; 0 disables
    /// them) [default: 5]
    #[arg(long, env = "VIGIE_CHECKPOINT_SECS")]
    pub checkpoint_secs: Option<u64>,
    /// Keep the log in Fluvio instead of under the data dir: the address of the cluster's
    /// SC, e.g. 127.0.0.1:9003 (needs a vigie built with the `fluvio` feature); ingest
    /// answers 202 once Fluvio acknowledged the records
    #[arg(long, env = "VIGIE_FLUVIO")]
    pub fluvio: Option<String>,
    /// Name of the Fluvio log (topics `NAME-g<N>`) [default: vigie-log-<database>]
    #[arg(long, env = "VIGIE_FLUVIO_TOPIC")]
    pub fluvio_topic: Option<String>,
    /// Allowed lateness of event times in seconds (at most 600): mentions older than the
    /// newest event time minus this still count in trends but join no window [default: 300]
    #[arg(long, env = "VIGIE_ALLOWED_LATENESS_SECS")]
    pub allowed_lateness_secs: Option<u64>,
    /// Log a warning, with the operator's name, whenever one dataflow operator keeps a
    /// worker busy this many milliseconds or longer (diagnosing latency; off by default)
    #[arg(long, env = "VIGIE_LOG_SLOW_OPERATORS_MS")]
    pub log_slow_operators_ms: Option<u64>,
    /// How much lower the CPU priority of background threads (the mention store's flushes
    /// and compactions, the log's compaction, the checkpoint writer) is than the dataflow
    /// worker's and the HTTP runtime's, as a nice increment (0: the same; at most 19)
    /// [default: 10]
    #[arg(long, env = "VIGIE_BACKGROUND_NICE", value_parser = clap::value_parser!(i32).range(0..=19))]
    pub background_nice: Option<i32>,
}

/// `vigie rules …`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print an organisation's alert rules as JSON (the defaults when none are stored).
    Get {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
    },
    /// Set an organisation's alert rules from a JSON document; fields left out take their
    /// defaults (see README, "Alerts").
    Set {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// The rules, e.g. '{"volume_spike": {"k": 2.5, "min_count": 50}}'.
        #[arg(long)]
        json: String,
    },
}

/// `vigie webhook …`.
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook endpoint to an organisation.
    Add {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Endpoint URL (http or https).
        #[arg(long)]
        url: String,
        /// Signing secret (generated when left out; printed once).
        #[arg(long)]
        secret: Option<String>,
        /// Deliver only alerts at least this level: low, medium or critical.
        #[arg(long, default_value = "low")]
        min_level: vigie_sinks::alert::Level,
        /// Deliver only these alert types (repeatable or comma-separated; all when left out).
        #[arg(long = "type", value_delimiter = ',')]
        types: Vec<vigie_sinks::alert::AlertType>,
        /// Payload format: json, or slack (a Slack incoming-webhook message).
        #[arg(long, default_value = "json")]
        format: String,
        /// Print {"webhook_id", "secret"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an organisation's webhook endpoints (secrets are not printed).
    List {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
    },
    /// Disable an endpoint.
    Disable {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Webhook id.
        #[arg(long)]
        id: Uuid,
    },
    /// Enable a disabled endpoint.
    Enable {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Webhook id.
        #[arg(long)]
        id: Uuid,
    },
}

/// `vigie org …`.
#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation; prints its id and an ingest key (shown once, stored hashed).
    Create {
        /// Display name.
        name: String,
        /// Print {"org_id", "ingest_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `vigie source …`.
#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Add a source to an organisation.
    Add {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// reddit, twitter, discord, news, forum or other.
        #[arg(long = "type")]
        kind: SourceType,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Comma-separated keywords.
        #[arg(long, value_delimiter = ',')]
        keywords: Vec<String>,
        /// Print {"source_id"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an organisation's sources.
    List {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Print as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Disable a source: its mentions are then rejected at ingest.
    Disable {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Source id.
        #[arg(long)]
        id: Uuid,
    },
    /// Enable a disabled source.
    Enable {
        /// Organisation id.
        #[arg(long)]
        org: Uuid,
        /// Source id.
        #[arg(long)]
        id: Uuid,
    },
}

/// `vigie gen`.
#[derive(Debug, Args)]
pub struct GenOpts {
    /// Mentions to generate (0 = until interrupted)
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Mentions per second (0 = as fast as possible)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Random seed (same seed, same mentions)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Spread event times over this many past days
    #[arg(long, default_value_t = 2.0)]
    pub days: f64,
    /// Live feed: event times follow the clock (up to 3 minutes old; 2 % spread over
    /// --days, late for the windows), bursts happen now
    #[arg(long)]
    pub live: bool,
    /// Post to a running vigie at this base URL (e.g. http://127.0.0.1:8080) instead of printing
    #[arg(long)]
    pub post: Option<String>,
    /// An organisation to feed: INGEST_KEY=SOURCE_ID[,SOURCE_ID…]; repeat for several organisations
    #[arg(long = "feed")]
    pub feeds: Vec<String>,
    /// Source ids for stdout output (when no --feed is given)
    #[arg(long = "source-id", value_delimiter = ',')]
    pub source_ids: Vec<Uuid>,
    /// Mentions per HTTP request
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// `vigie replay`.
#[derive(Debug, Args)]
pub struct ReplayOpts {
    /// NDJSON file of mentions (wire format)
    pub file: PathBuf,
    /// Base URL of the running vigie
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Ingest key of the organisation
    #[arg(long, env = "VIGIE_INGEST_KEY")]
    pub key: String,
    /// Mentions per HTTP request
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
}

/// Values a `--config` TOML file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See `--clickhouse-url`.
    pub clickhouse_url: Option<String>,
    /// See `--database`.
    pub database: Option<String>,
    /// See `--clickhouse-user`.
    pub clickhouse_user: Option<String>,
    /// See `--clickhouse-password`.
    pub clickhouse_password: Option<String>,
    /// See `--listen`.
    pub listen: Option<SocketAddr>,
    /// See `--workers`.
    pub workers: Option<usize>,
    /// See `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// See `--body-limit`.
    pub body_limit: Option<usize>,
    /// See `--batch-rows`.
    pub batch_rows: Option<usize>,
    /// See `--flush-interval-ms`.
    pub flush_interval_ms: Option<u64>,
    /// See `--catalog-ttl-ms`.
    pub catalog_ttl_ms: Option<u64>,
    /// See `--shutdown-timeout-secs`.
    pub shutdown_timeout_secs: Option<u64>,
    /// See `--wal-max-bytes`.
    pub wal_max_bytes: Option<u64>,
    /// See `--wal-segment-bytes`.
    pub wal_segment_bytes: Option<u64>,
    /// See `--checkpoint-secs`.
    pub checkpoint_secs: Option<u64>,
    /// See `--fluvio`.
    pub fluvio: Option<String>,
    /// See `--fluvio-topic`.
    pub fluvio_topic: Option<String>,
    /// See `--allowed-lateness-secs`.
    pub allowed_lateness_secs: Option<u64>,
    /// See `--log-slow-operators-ms`.
    pub log_slow_operators_ms: Option<u64>,
    /// See `--background-nice`.
    pub background_nice: Option<i32>,
}

impl FileConfig {
    /// Reads the file named by `--config`, or an empty config.
    pub fn load(path: Option<&PathBuf>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }
}

/// Resolved settings of `vigie run`.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Timely workers.
    pub workers: usize,
    /// Local state directory.
    pub data_dir: PathBuf,
    /// Body limit.
    pub body_limit: usize,
    /// Catalog cache TTL.
    pub catalog_ttl: Duration,
    /// Migrate at start-up.
    pub migrate: bool,
    /// Longest wait for the drain at shutdown.
    pub shutdown_timeout: Duration,
    /// Disk budget of the write-ahead log.
    pub wal_max_bytes: u64,
    /// Segment size of the write-ahead log (in Fluvio: the size below which it is not
    /// compacted).
    pub wal_segment_bytes: u64,
    /// Seconds between checkpoints (0: none).
    pub checkpoint_secs: u64,
    /// The Fluvio cluster (SC address) holding the log, if not the data dir.
    pub fluvio: Option<String>,
    /// The Fluvio log's name (`None`: derived from the database).
    pub fluvio_topic: Option<String>,
    /// How mentions are scored.
    pub scoring: crate::graph::score::ScoringSpec,
    /// Allowed lateness of event times.
    pub lateness: Duration,
    /// Operator invocations at least this long are logged.
    pub log_slow_operators: Option<Duration>,
    /// Nice increment of background threads (`crate::priority`).
    pub background_nice: i32,
}

impl GlobalOpts {
    /// ClickHouse settings: flags/env over file over defaults.
    pub fn clickhouse(&self, file: &FileConfig) -> ClickHouseConfig {
        let d = ClickHouseConfig::default();
        ClickHouseConfig {
            url: self
                .clickhouse_url
                .clone()
                .or(file.clickhouse_url.clone())
                .unwrap_or(d.url),
            database: self
                .database
                .clone()
                .or(file.database.clone())
                .unwrap_or(d.database),
            user: self
                .clickhouse_user
                .clone()
                .or(file.clickhouse_user.clone()),
            password: self
                .clickhouse_password
                .clone()
                .or(file.clickhouse_password.clone()),
            ..d
        }
    }
}

impl RunOpts {
    /// `run` settings: flags/env over file over defaults; also applies batching to `ch`.
    pub fn resolve(&self, file: &FileConfig, ch: &mut ClickHouseConfig) -> RunSettings {
        if let Some(n) = self.batch_rows.or(file.batch_rows) {
            ch.batch_rows = n.max(1);
        }
        if let Some(ms) = self.flush_interval_ms.or(file.flush_interval_ms) {
            ch.flush_interval = Duration::from_millis(ms);
        }
        RunSettings {
            scoring: self.scoring.spec(),
            lateness: Duration::from_secs(
                self.allowed_lateness_secs
                    .or(file.allowed_lateness_secs)
                    .unwrap_or(300),
            ),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            workers: self.workers.or(file.workers).unwrap_or(1).max(1),
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("data")),
            body_limit: self
                .body_limit
                .or(file.body_limit)
                .unwrap_or(10 * 1024 * 1024),
            catalog_ttl: Duration::from_millis(
                self.catalog_ttl_ms.or(file.catalog_ttl_ms).unwrap_or(5000),
            ),
            migrate: self.migrate,
            shutdown_timeout: Duration::from_secs(
                self.shutdown_timeout_secs
                    .or(file.shutdown_timeout_secs)
                    .unwrap_or(30),
            ),
            wal_max_bytes: self.wal_max_bytes.or(file.wal_max_bytes).unwrap_or(8 << 30),
            // A segment must close well before the budget is reached, or nothing could be
            // compacted to make room.
            wal_segment_bytes: self
                .wal_segment_bytes
                .or(file.wal_segment_bytes)
                .unwrap_or(64 << 20)
                .min((self.wal_max_bytes.or(file.wal_max_bytes).unwrap_or(8 << 30) / 4).max(1)),
            checkpoint_secs: self.checkpoint_secs.or(file.checkpoint_secs).unwrap_or(5),
            fluvio: self.fluvio.clone().or(file.fluvio.clone()),
            fluvio_topic: self.fluvio_topic.clone().or(file.fluvio_topic.clone()),
            log_slow_operators: self
                .log_slow_operators_ms
                .or(file.log_slow_operators_ms)
                .map(Duration::from_millis),
            background_nice: self
                .background_nice
                .or(file.background_nice)
                // `set_background_nice` clamps it to 0..=19.
                .unwrap_or(crate::priority::DEFAULT_BACKGROUND_NICE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_the_file() {
        let file: FileConfig = toml::from_str(
            "clickhouse_url = \"http://file:8123\"\ndatabase = \"fromfile\"\nworkers = 3",
        )
        .unwrap();
        let cli = Cli::parse_from(["vigie", "--database", "flag", "run"]);
        let ch = cli.global.clickhouse(&file);
        assert_eq!(ch.url, "http://file:8123");
        assert_eq!(ch.database, "flag");
        let Command::Run(run) = cli.command else {
            panic!()
        };
        let mut ch = ch;
        assert_eq!(run.resolve(&file, &mut ch).workers, 3);
    }
}
