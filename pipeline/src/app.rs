//! `vigie run`: ingest server + dataflow + ClickHouse sink, with graceful shutdown.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use vigie_sinks::clickhouse::{migrations, ClickHouseConfig};

use crate::cli::RunSettings;
use crate::graph::checkpoint::{self, CheckpointSpec};
use crate::graph::GraphSpec;
use crate::ingest::registry::Registry;
use crate::ingest::stream::{AlertHub, HubConfig};
use crate::ingest::{serve, IngestState};
use crate::log::MentionLog;
use crate::metrics::Metrics;
use crate::rules::RuleBook;
use crate::runtime::{AlertTap, Dataflow, RuntimeConfig};
use crate::sink::{self, SinkConfig};
use crate::wal::Wal;
use vigie_sinks::webhook::{Dispatcher, DispatcherConfig};

/// The write-ahead log's directory under the data dir. Named after its record format
/// (version 2 added the matched keywords), so an older log is never misread.
pub const WAL_DIR: &str = "wal-v2";

/// Opens the log `vigie run` uses (the data dir's, or Fluvio's) with the epochs to replay.
async fn open_log(
    settings: &RunSettings,
    database: &str,
    from: u64,
) -> anyhow::Result<(MentionLog, Vec<crate::wal::LoggedEpoch>)> {
    let Some(endpoint) = &settings.fluvio else {
        let (wal, replay) = Wal::open_from(
            &settings.data_dir.join(WAL_DIR),
            settings.wal_segment_bytes,
            from,
        )
        .context("opening the write-ahead log")?;
        return Ok((MentionLog::Local(wal), replay));
    };
    #[cfg(feature = "fluvio")]
    {
        let name = settings
            .fluvio_topic
            .clone()
            .unwrap_or_else(|| crate::fluvio_log::default_topic_name(database));
        let (log, mut replay) =
            crate::fluvio_log::FluvioLog::open(endpoint, &name, settings.wal_segment_bytes)
                .await
                .context("opening the log in Fluvio")?;
        // The topic is read whole; only the epochs after the checkpoint are replayed.
        replay.retain(|(t, _)| *t >= from);
        tracing::info!(topic = %log.topic(), epochs = replay.len(), "the log is in Fluvio");
        Ok((MentionLog::Fluvio(Box::new(log)), replay))
    }
    #[cfg(not(feature = "fluvio"))]
    {
        let _ = (database, from);
        anyhow::bail!(
            "--fluvio {endpoint}: this vigie was built without Fluvio (cargo feature `fluvio`)"
        )
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs until SIGINT/SIGTERM, then drains: stops accepting, lets the dataflow finish,
/// flushes every buffered row to ClickHouse, and returns.
pub async fn run(ch: ClickHouseConfig, settings: RunSettings) -> anyhow::Result<()> {
    crate::priority::set_background_nice(settings.background_nice);
    // Build the scorer once here, so a missing model or runtime library is a clear error at
    // start-up rather than a panic in a worker.
    crate::scoring::BatchScorer::new(&settings.scoring.scorer, settings.scoring.config)
        .context("loading the scorer")?;
    if settings.migrate {
        migrations::migrate(&ch).await.context("migrating")?;
    }
    if let Err(e) = migrations::check_ready(&ch).await {
        tracing::warn!(error = %e, "ClickHouse is not ready yet; /readyz will say so until it is");
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;

    anyhow::ensure!(
        settings.lateness <= crate::graph::MAX_LATENESS,
        "--allowed-lateness-secs must be at most {} (it must stay below the shortest window)",
        crate::graph::MAX_LATENESS.as_secs()
    );
    let metrics = Arc::new(Metrics::default());
    let rules = Arc::new(RuleBook::default());
    if let Err(e) = rules.reload(&ch.client()).await {
        tracing::warn!(error = %e, "cannot load alert rules yet; using defaults until ClickHouse answers");
    }
    let rules_task = tokio::spawn(
        rules
            .clone()
            .refresh_forever(ch.client(), settings.catalog_ttl),
    );
    // State directories: restored from the newest usable checkpoint, or emptied (each
    // worker also empties its own below them; a run with fewer workers than the last must
    // not leave the others' behind) for a replay of the whole log.
    let (frozen_dir, mention_dir, trend_dir) = (
        settings.data_dir.join("frozen"),
        settings.data_dir.join("mentions"),
        settings.data_dir.join("trends"),
    );
    let committed_file = settings.data_dir.join("committed");
    let checkpoint = if settings.checkpoint_secs > 0 {
        let mut spec = CheckpointSpec {
            dir: settings.data_dir.join("checkpoints"),
            interval_ms: settings.checkpoint_secs * 1000,
            restore: None,
            progress: Some((committed_file.clone(), sink::progress_target(&ch))),
            workers: settings.workers,
            writer: Arc::default(),
        };
        {
            let w = spec.writer.clone();
            if let Ok(mut extra) = metrics.extra.lock() {
                extra.push(Arc::new(move || w.render_prometheus()));
            }
        }
        let fingerprint = format!(
            "format 3\nworkers {}\nlateness {:?}\ninterval {}\nscoring {:?}\n",
            settings.workers, settings.lateness, spec.interval_ms, settings.scoring
        );
        let label = checkpoint::prepare(
            &mut spec,
            &fingerprint,
            &mention_dir,
            &[&frozen_dir, &mention_dir, &trend_dir],
        )
        .context("preparing checkpoints")?;
        match label {
            Some(l) => tracing::info!(label = l, "restoring the dataflow from a checkpoint"),
            None => tracing::info!("no usable checkpoint: rebuilding state from the whole log"),
        }
        Some(Arc::new(spec))
    } else {
        // Checkpoints of an earlier run would not match the stores rebuilt now.
        let old = settings.data_dir.join("checkpoints");
        for dir in [&frozen_dir, &mention_dir, &trend_dir, &old] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("emptying {}", dir.display()))?;
            }
        }
        None
    };
    let replay_from = checkpoint.as_ref().and_then(|c| c.restore).unwrap_or(0);
    let runtime = RuntimeConfig {
        workers: settings.workers,
        wal_max_bytes: settings.wal_max_bytes,
        graph: GraphSpec {
            scoring: settings.scoring.clone(),
            lateness: settings.lateness,
            rules,
            late: metrics.late_mentions.clone(),
            gauges: metrics.state.clone(),
            spill_dir: Some(frozen_dir),
            mention_dir: Some(mention_dir),
            trend_dir: Some(trend_dir),
            trend_horizon: crate::graph::cold::HORIZON,
            checkpoint,
        },
        ..RuntimeConfig::default()
    };
    let (sink_tx, sink_rx) = mpsc::channel(runtime.channel_depth);
    let (committed_tx, committed_rx) = watch::channel(0u64);
    let sink_cfg = SinkConfig {
        clickhouse: ch.clone(),
        dead_letter_dir: settings.data_dir.join("dead-letter"),
        workers: settings.workers,
        progress_file: committed_file.clone(),
        skip_below: sink::read_progress(&committed_file, &sink::progress_target(&ch)),
    };
    // Alerts go to the live streams' hub and to the webhook dispatcher; neither blocks.
    let alerts = Arc::new(AlertHub::new(HubConfig::default(), Some(ch.client())));
    let webhooks = Dispatcher::start(DispatcherConfig::default(), ch.clone()).await;
    {
        let w = webhooks.metrics();
        if let Ok(mut extra) = metrics.extra.lock() {
            extra.push(Arc::new(move || w.render_prometheus()));
        }
    }
    let publishers: Vec<sink::AlertPublisher> = vec![
        {
            let hub = alerts.clone();
            Arc::new(move |a| hub.publish(a))
        },
        {
            let webhooks = webhooks.clone();
            Arc::new(move |a| {
                webhooks.publish(a);
            })
        },
    ];
    let (alert_tx, alert_rx) = mpsc::channel(16_384);
    let push_task = tokio::spawn(sink::push_alerts(alert_rx, publishers, metrics.clone()));
    let runtime = RuntimeConfig {
        skip_below: sink_cfg.skip_below,
        log_slow_operators: settings.log_slow_operators,
        alert_tap: Some(AlertTap {
            tx: alert_tx,
            dropped: metrics.alerts_unpushed.clone(),
        }),
        ..runtime
    };
    let sink_task = tokio::spawn(sink::run(sink_cfg, sink_rx, metrics.clone(), committed_tx));
    let old_wal = settings.data_dir.join("wal");
    if std::fs::read_dir(&old_wal).is_ok_and(|mut d| d.next().is_some()) {
        tracing::warn!(
            path = %old_wal.display(),
            "a write-ahead log of an older vigie is here; it is not replayed (its records lack matched keywords). Delete it once its mentions are in ClickHouse"
        );
    }
    let (log, replay) = open_log(&settings, &ch.database, replay_from).await?;
    metrics
        .restored_checkpoint
        .store(replay_from, std::sync::atomic::Ordering::Relaxed);
    metrics.replayed_records.store(
        replay.iter().map(|e| e.1.len() as u64).sum(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let dataflow = Dataflow::start(runtime, sink_tx, metrics.clone(), log, replay, committed_rx);

    let state = Arc::new(IngestState {
        registry: Registry::new(ch.client(), settings.catalog_ttl),
        submissions: dataflow.submissions.clone(),
        metrics: metrics.clone(),
        body_limit: settings.body_limit,
        clickhouse: ch.clone(),
        // Only the chaos harness's negative control sets this, to show its checks can fail.
        ignore_client_ids: std::env::var_os("VIGIE_UNSAFE_IGNORE_CLIENT_IDS").is_some(),
        alerts,
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, workers = settings.workers, database = %ch.database, "vigie listening");
    // Machine-readable line for scripts and tests.
    println!("vigie listening on http://{addr}");

    serve(listener, state, shutdown_signal()).await;
    tracing::info!("shutting down: draining the dataflow and flushing ClickHouse");
    let drain = async {
        dataflow.join().await.map_err(|e| anyhow::anyhow!(e))?;
        sink_task.await.context("sink task")
    };
    let drained = tokio::time::timeout(settings.shutdown_timeout, drain).await;
    // The workers are gone, so is the tap's sender: the push task ends once it has handed
    // over every alert.
    let _ = tokio::time::timeout(settings.shutdown_timeout / 4, push_task).await;
    rules_task.abort();
    let report = webhooks.shutdown(settings.shutdown_timeout / 2).await;
    tracing::info!(?report, "webhook dispatcher stopped");
    match drained {
        Ok(r) => {
            r?;
            tracing::info!("stopped cleanly");
        }
        // Nothing is lost: every acknowledged record is in the write-ahead log and is
        // written at the next start.
        Err(_) => tracing::warn!(
            timeout = ?settings.shutdown_timeout,
            "ClickHouse did not take the last batches in time; they stay in the write-ahead log and are written at the next start"
        ),
    }
    Ok(())
}
