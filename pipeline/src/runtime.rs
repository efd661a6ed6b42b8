//! Runs the dataflow: a router turns accepted submissions into epochs (one dataflow time
//! each, batched by size and time), timely workers apply them, and every worker's output
//! goes to the sink channel.
//!
//! ```text
//! ingest ──Submission──▶ router ──Epoch (per worker, by org)──▶ timely workers ──SinkBatch──▶ sink
//! ```
//!
//! Every channel is bounded. A worker lets a bounded number of epochs (and records) into
//! the graph at once and takes more only as the oldest leave it, so the dataflow is fed
//! at its own pace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use differential_dataflow::Hashable;
use timely::dataflow::operators::core::Probe;
use timely::dataflow::{InputHandle, ProbeHandle};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::graph::emit::{emit, SinkBatch};
use crate::graph::records::{AlertRecord, Change, MentionBody, MentionKey};
use crate::graph::{build, GraphSpec, Upsert};
use crate::log::MentionLog;
use crate::metrics::Metrics;
use crate::wal::LoggedEpoch;

/// Options of the dataflow runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Scoring, lateness and alert rules.
    pub graph: GraphSpec,
    /// Where raised alerts are handed as soon as the graph raises them (before the sink).
    pub alert_tap: Option<AlertTap>,
    /// An epoch closes after this long …
    pub epoch_max_wait: Duration,
    /// … or once it holds this many records.
    pub epoch_max_records: usize,
    /// Depth of the bounded channels (in messages).
    pub channel_depth: usize,
    /// Records routed to a worker that it has not taken into its graph yet, at most: the
    /// router waits (and ingest with it) rather than queue more in memory. An epoch
    /// larger than this waits for an empty queue.
    pub queued_records: usize,
    /// Disk budget of the write-ahead log: beyond it, new records are refused (503).
    pub wal_max_bytes: u64,
    /// Changes of dataflow times below this are in ClickHouse already and their alerts were
    /// pushed (the log's replay re-creates them): neither handed to the sink nor pushed.
    pub skip_below: u64,
    /// Log every operator invocation that keeps a worker this long or longer (timely's
    /// scheduling log; `None`: off, it costs a little per invocation).
    pub log_slow_operators: Option<Duration>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            graph: GraphSpec::default(),
            alert_tap: None,
            epoch_max_wait: Duration::from_millis(5),
            epoch_max_records: 50_000,
            channel_depth: 64,
            queued_records: 200_000,
            wal_max_bytes: 8 << 30,
            skip_below: 0,
            log_slow_operators: None,
        }
    }
}

/// Hands raised alerts, with the dataflow time that raised them, to the push side (webhooks,
/// live streams) without waiting for the ClickHouse sink. Never blocks a worker: when the
/// channel is full the alert is only stored (and found by stream resumes). Alerts of times
/// below [`RuntimeConfig::skip_below`] were pushed before a restart (the log's replay raises
/// them again) and are not pushed twice.
#[derive(Debug, Clone)]
pub struct AlertTap {
    /// The channel.
    pub tx: mpsc::Sender<(AlertRecord, u64)>,
    /// Counts alerts dropped because the channel was full.
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Records accepted by one ingest request, answered with the epoch they entered.
pub struct Submission {
    /// Upserts (`None` deletes).
    pub upserts: Vec<(MentionKey, Option<MentionBody>)>,
    /// Receives the dataflow time the records were assigned once they are in the
    /// write-ahead log, or why they were refused.
    pub ack: oneshot::Sender<Result<u64, Refusal>>,
}

/// Why records were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The write-ahead log is at its disk budget (ClickHouse is behind or down).
    LogFull,
    /// The write-ahead log could not be written.
    LogFailed,
}

/// One dataflow time's worth of input for one worker (possibly empty: it still advances time).
struct Epoch {
    time: u64,
    upserts: Vec<(MentionKey, Option<MentionBody>)>,
    /// Its share of the worker's [`RuntimeConfig::queued_records`], given back when the
    /// worker takes it.
    queued: tokio::sync::OwnedSemaphorePermit,
}

/// Where the router hands a worker its epochs.
struct WorkerQueue {
    tx: mpsc::Sender<Epoch>,
    /// Permits for the records queued to it.
    room: Arc<tokio::sync::Semaphore>,
    /// The most permits an epoch asks for (the semaphore's size).
    budget: u32,
}

/// A running dataflow: submit to it, then drop the sender and `join` to shut down.
pub struct Dataflow {
    /// Where ingest submits accepted records.
    pub submissions: mpsc::Sender<Submission>,
    workers: std::thread::JoinHandle<Result<(), String>>,
    router: tokio::task::JoinHandle<()>,
}

impl Dataflow {
    /// Starts the workers and the router; changes go to `sink`. The router first replays
    /// `replay` (the epochs recovered from `log`), then logs every new epoch to `log`
    /// before acknowledging it.
    pub fn start(
        cfg: RuntimeConfig,
        sink: mpsc::Sender<SinkBatch>,
        metrics: Arc<Metrics>,
        log: MentionLog,
        replay: Vec<LoggedEpoch>,
        committed: watch::Receiver<u64>,
    ) -> Dataflow {
        let workers = cfg.workers.max(1);
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        let budget = cfg.queued_records.clamp(
            1,
            tokio::sync::Semaphore::MAX_PERMITS.min(u32::MAX as usize),
        ) as u32;
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel::<Epoch>(cfg.channel_depth);
            senders.push(WorkerQueue {
                tx,
                room: Arc::new(tokio::sync::Semaphore::new(budget as usize)),
                budget,
            });
            receivers.push(Mutex::new(Some(rx)));
        }
        let receivers = Arc::new(receivers);
        let graph = cfg.graph.clone();
        let graph_checkpoint = graph.checkpoint.clone();
        let tap = cfg.alert_tap.clone();
        let skip_below = cfg.skip_below;
        let slow = cfg.log_slow_operators;
        let worker_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("timely".into())
            .spawn(move || {
                let guards = timely::execute(timely::Config::process(workers), move |worker| {
                    let index = worker.index();
                    let rx = receivers[index].lock().ok().and_then(|mut r| r.take());
                    let Some(mut rx) = rx else { return };
                    if let Some(threshold) = slow {
                        log_slow_operators(worker, threshold);
                    }
                    run_worker(
                        worker,
                        &mut rx,
                        sink.clone(),
                        graph.clone(),
                        (tap.clone(), skip_below),
                        &worker_metrics,
                    );
                })?;
                let results = guards.join();
                // Parts of the last labels still queued land before shutdown completes.
                if let Some(c) = &graph_checkpoint {
                    c.writer.flush();
                }
                for r in results {
                    r?;
                }
                Ok(())
            })
            .expect("spawning the timely thread");
        let (submissions, rx) = mpsc::channel(cfg.channel_depth);
        let router = tokio::spawn(route(rx, senders, cfg, metrics, log, replay, committed));
        Dataflow {
            submissions,
            workers: handle,
            router,
        }
    }

    /// Waits for the router and the workers to finish (after every submission sender is dropped).
    pub async fn join(self) -> Result<(), String> {
        drop(self.submissions);
        self.router.await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || self.workers.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "a timely worker panicked".to_string())?
    }
}

/// Epochs a worker lets into the graph before the oldest of them has come out …
const IN_FLIGHT_EPOCHS: usize = 64;
/// … as long as they hold fewer records than this.
const IN_FLIGHT_RECORDS: usize = 100_000;

/// Logs (warning) every invocation of an operator that takes `threshold` or longer, with the
/// operator's name: where a worker's time goes when epochs queue behind it.
fn log_slow_operators(worker: &mut timely::worker::Worker, threshold: Duration) {
    use timely::logging::{StartStop, TimelyEvent, TimelyEventBuilder};
    let index = worker.index();
    let mut names: HashMap<usize, String> = HashMap::new();
    let mut started: HashMap<usize, Duration> = HashMap::new();
    let Some(mut registry) = worker.log_register() else {
        return;
    };
    registry.insert::<TimelyEventBuilder, _>("timely", move |_, events| {
        for (at, event) in events.iter().flatten() {
            match event {
                TimelyEvent::Operates(o) => {
                    names.insert(o.id, o.name.clone());
                }
                TimelyEvent::Schedule(s) => match s.start_stop {
                    StartStop::Start => {
                        started.insert(s.id, *at);
                    }
                    StartStop::Stop => {
                        let took = started.remove(&s.id).map(|t| at.saturating_sub(t));
                        if let Some(took) = took.filter(|t| *t >= threshold) {
                            tracing::warn!(
                                worker = index,
                                operator = names.get(&s.id).map_or("?", String::as_str),
                                id = s.id,
                                ms = took.as_secs_f64() * 1e3,
                                "slow operator"
                            );
                        }
                    }
                },
                _ => {}
            }
        }
    });
}

fn run_worker(
    worker: &mut timely::worker::Worker,
    rx: &mut mpsc::Receiver<Epoch>,
    sink: mpsc::Sender<SinkBatch>,
    graph: GraphSpec,
    (tap, skip_below): (Option<AlertTap>, u64),
    metrics: &Metrics,
) {
    let index = worker.index();
    let mut input: InputHandle<u64, _> = InputHandle::new();
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        use timely::dataflow::operators::Input;
        let upserts = scope.input_from(&mut input);
        let mut graph = graph.clone();
        // Each worker's stores live in a directory of their own.
        for dir in [
            &mut graph.spill_dir,
            &mut graph.mention_dir,
            &mut graph.trend_dir,
        ]
        .into_iter()
        .flatten()
        {
            *dir = dir.join(format!("worker-{index}"));
        }
        let mut changes = build(upserts, graph);
        if let Some(tap) = tap {
            use timely::dataflow::operators::Inspect;
            changes = differential_dataflow::AsCollection::as_collection(changes.inner.inspect(
                move |(change, time, diff)| {
                    if let Change::Alert(a) = change {
                        if *diff > 0
                            && *time >= skip_below
                            && tap.tx.try_send((a.clone(), *time)).is_err()
                        {
                            tap.dropped
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                },
            ));
        }
        let changes =
            differential_dataflow::AsCollection::as_collection(changes.inner.probe_with(&probe));
        emit(changes, index, skip_below, sink);
    });
    // Epochs fed but not yet out of the graph, oldest first, with their sizes.
    let mut in_flight: std::collections::VecDeque<(u64, usize)> = Default::default();
    let mut in_flight_records = 0usize;
    loop {
        // Feed at the dataflow's pace, with a bounded number of epochs and records in the
        // graph at once: operators then take several times per scheduling (an arrangement
        // builds one batch for all the times its frontier passed), which matters most for
        // a replay of many small logged epochs.
        while let Some(&(t, n)) = in_flight.front() {
            if probe.less_than(&(t + 1)) {
                break;
            }
            in_flight.pop_front();
            in_flight_records -= n;
        }
        if in_flight.len() >= IN_FLIGHT_EPOCHS || in_flight_records >= IN_FLIGHT_RECORDS {
            worker.step_or_park(Some(Duration::from_millis(1)));
            continue;
        }
        match rx.try_recv() {
            Ok(epoch) => {
                in_flight.push_back((epoch.time, epoch.upserts.len()));
                in_flight_records += epoch.upserts.len();
                input.advance_to(epoch.time);
                let n = epoch.upserts.len();
                // The records leave the queue for the graph.
                drop(epoch.queued);
                metrics.queue_records(-(n as isize));
                for (key, body) in epoch.upserts {
                    input.send::<Upsert>((key, body.map(Arc::new), epoch.time));
                }
                input.advance_to(epoch.time + 1);
                if index == 0 {
                    metrics.set_dataflow_time(epoch.time);
                }
                metrics.add_dataflow_records(n);
                worker.step();
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    drop(input);
    while worker.step_or_park(Some(Duration::from_millis(1))) {}
}

/// Keeps, per key, only its last upsert in arrival order.
///
/// All records of an epoch share one dataflow time, and the upsert operator resolves ties
/// at one time by value, not by order; so a delete that follows a post in the same epoch
/// must win here, before the graph sees them.
pub fn last_write_wins(
    upserts: Vec<(MentionKey, Option<MentionBody>)>,
) -> Vec<(MentionKey, Option<MentionBody>)> {
    // Keyed by the full identity: `MentionKey`'s own `Hash` covers only the organisation.
    let mut last: HashMap<(uuid::Uuid, uuid::Uuid), usize> = HashMap::with_capacity(upserts.len());
    for (i, (k, _)) in upserts.iter().enumerate() {
        last.insert((k.org, k.id), i);
    }
    if last.len() == upserts.len() {
        return upserts;
    }
    upserts
        .into_iter()
        .enumerate()
        .filter(|(i, (k, _))| last.get(&(k.org, k.id)) == Some(i))
        .map(|(_, u)| u)
        .collect()
}

/// The worker that owns an organisation's records (the same routing as the graph's exchange).
pub fn worker_for(key: &MentionKey, workers: usize) -> usize {
    (key.hashed() % workers as u64) as usize
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Hands each worker its part of an epoch, once its queue has room for it.
async fn send_epoch(
    workers: &[WorkerQueue],
    time: u64,
    upserts: Vec<(MentionKey, Option<MentionBody>)>,
    metrics: &Metrics,
) -> bool {
    let mut parts: Vec<Vec<(MentionKey, Option<MentionBody>)>> = vec![Vec::new(); workers.len()];
    for (key, body) in upserts {
        parts[worker_for(&key, workers.len())].push((key, body));
    }
    for (w, upserts) in workers.iter().zip(parts) {
        let want = u32::try_from(upserts.len())
            .unwrap_or(u32::MAX)
            .min(w.budget);
        let Ok(queued) = w.room.clone().acquire_many_owned(want).await else {
            return false;
        };
        // Counted before the send: the worker may take it at once.
        metrics.queue_records(upserts.len() as isize);
        let epoch = Epoch {
            time,
            upserts,
            queued,
        };
        if w.tx.send(epoch).await.is_err() {
            return false;
        }
    }
    true
}

async fn route(
    mut rx: mpsc::Receiver<Submission>,
    workers: Vec<WorkerQueue>,
    cfg: RuntimeConfig,
    metrics: Arc<Metrics>,
    mut log: MentionLog,
    replay: Vec<LoggedEpoch>,
    committed: watch::Receiver<u64>,
) {
    // New epochs come after every logged one: those replayed, and those before the
    // restored checkpoint (all below its label), even if the clock went back.
    let mut last_time = cfg
        .graph
        .checkpoint
        .as_ref()
        .and_then(|c| c.restore)
        .map_or(0, |l| l.saturating_sub(1));
    if !replay.is_empty() {
        let (epochs, records) = (
            replay.len(),
            replay.iter().map(|e| e.1.len()).sum::<usize>(),
        );
        tracing::info!(epochs, records, "replaying the write-ahead log");
        for (time, upserts) in replay {
            last_time = last_time.max(time);
            if !send_epoch(&workers, time, upserts, &metrics).await {
                tracing::error!("a dataflow worker stopped during replay");
                return;
            }
        }
    }
    metrics.set_wal_bytes(log.bytes());
    while let Some(first) = rx.recv().await {
        let mut records = first.upserts.len();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + cfg.epoch_max_wait;
        while records < cfg.epoch_max_records {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => {
                    records += s.upserts.len();
                    batch.push(s);
                }
                _ => break,
            }
        }
        // Dataflow times are milliseconds since the epoch, strictly increasing, so a row's
        // version tells when the pipeline produced it.
        let time = now_millis().max(last_time + 1);
        let mut upserts = Vec::with_capacity(records);
        let mut acks = Vec::with_capacity(batch.len());
        for s in batch {
            upserts.extend(s.upserts);
            acks.push(s.ack);
        }
        let upserts = last_write_wins(upserts);
        let span = tracing::debug_span!("epoch", time, records);
        let committed_now = *committed.borrow();
        if log.compaction_due(committed_now) || log.bytes() >= cfg.wal_max_bytes {
            match log.compact(committed_now).await {
                Ok(0) => {}
                Ok(_) => {
                    metrics
                        .wal_compactions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "compacting the write-ahead log failed"),
            }
            metrics.set_wal_bytes(log.bytes());
        }
        if log.bytes() >= cfg.wal_max_bytes {
            tracing::warn!(
                bytes = log.bytes(),
                budget = cfg.wal_max_bytes,
                "write-ahead log at its disk budget; refusing new records"
            );
            for ack in acks {
                let _ = ack.send(Err(Refusal::LogFull));
            }
            continue;
        }
        let synced = std::time::Instant::now();
        // One fsync for every request of the epoch (group commit).
        if let Err(e) = log.append(time, &upserts).await {
            tracing::error!(error = %e, "cannot persist an epoch; its requests are refused");
            for ack in acks {
                let _ = ack.send(Err(Refusal::LogFailed));
            }
            continue;
        }
        last_time = time;
        metrics.wal_sync_latency.observe(synced.elapsed());
        metrics.set_wal_bytes(log.bytes());
        if !send_epoch(&workers, time, upserts, &metrics)
            .instrument(span)
            .await
        {
            tracing::error!("a dataflow worker stopped; no more epochs can be applied");
            return;
        }
        metrics.observe_epoch(records);
        for ack in acks {
            let _ = ack.send(Ok(time));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::records::fixtures::{body, key};

    fn queue(budget: u32) -> (WorkerQueue, mpsc::Receiver<Epoch>) {
        let (tx, rx) = mpsc::channel(64);
        let room = Arc::new(tokio::sync::Semaphore::new(budget as usize));
        (WorkerQueue { tx, room, budget }, rx)
    }

    fn upserts(from: u128, n: u128) -> Vec<(MentionKey, Option<MentionBody>)> {
        (from..from + n)
            .map(|i| (key(i), Some(body("x"))))
            .collect()
    }

    #[tokio::test]
    async fn the_router_waits_while_a_workers_queue_holds_its_budget_of_records() {
        let (w, mut rx) = queue(10);
        let workers = [w];
        let metrics = Metrics::default();
        assert!(send_epoch(&workers, 1, upserts(0, 6), &metrics).await);
        assert!(metrics
            .render()
            .contains("\nvigie_dataflow_queued_records 6\n"));
        // 6 of 10 queued: 6 more do not fit until the worker takes the first epoch.
        let mut second = Box::pin(send_epoch(&workers, 2, upserts(6, 6), &metrics));
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut second)
                .await
                .is_err(),
            "the second epoch went past a full queue"
        );
        let first = rx.recv().await.expect("the first epoch");
        assert_eq!((first.time, first.upserts.len()), (1, 6));
        drop(first);
        assert!(tokio::time::timeout(Duration::from_secs(5), &mut second)
            .await
            .expect("room once the first epoch was taken"));
        let second = rx.recv().await.expect("the second epoch");
        assert_eq!((second.time, second.upserts.len()), (2, 6));
    }

    #[tokio::test]
    async fn an_epoch_larger_than_the_budget_waits_for_an_empty_queue_then_goes() {
        let (w, mut rx) = queue(4);
        let workers = [w];
        let metrics = Metrics::default();
        assert!(send_epoch(&workers, 1, upserts(0, 1), &metrics).await);
        let mut big = Box::pin(send_epoch(&workers, 2, upserts(1, 9), &metrics));
        assert!(tokio::time::timeout(Duration::from_millis(100), &mut big)
            .await
            .is_err());
        drop(rx.recv().await);
        assert!(tokio::time::timeout(Duration::from_secs(5), &mut big)
            .await
            .expect("an empty queue takes any epoch"));
        assert_eq!(rx.recv().await.map(|e| e.upserts.len()), Some(9));
    }
}
