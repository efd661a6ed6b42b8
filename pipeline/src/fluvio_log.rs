//! The log in Fluvio (`vigie run --fluvio HOST:PORT`, cargo feature `fluvio`): instead of
//! the local write-ahead log, each epoch is produced to a Fluvio topic and ingest answers 202
//! only once Fluvio has acknowledged every record of it. At start-up the topic is read back
//! and replayed into the dataflow, exactly as the local log is.
//!
//! - **Records.** One Fluvio record per epoch, or several (`parts`) when an epoch is larger
//!   than [`MAX_PART_BYTES`]: bincode of [`Entry::Part`]. An epoch whose parts are not all
//!   there was never acknowledged (the crash came before the last part's ack) and is not
//!   replayed.
//! - **Generations and compaction.** The log is the topic `<name>-g<N>`. A generation is
//!   usable once it holds an [`Entry::Sealed`] record; appends go after it. Compaction (the
//!   same rule as the local log's: below the committed time, records that changed nothing
//!   are dropped and every effective change is kept at its time) writes generation N+1 —
//!   the compacted epochs, the newer epochs verbatim, then `Sealed` — and only then deletes generation N. At start-up
//!   the highest sealed generation wins and every other one is deleted, so a crash at any
//!   point of a compaction loses nothing and replays nothing twice.
//! - **Retention.** Topics are created with a ten-year retention: records leave the log
//!   through compaction only.

use std::time::Duration;

use anyhow::{bail, Context};
use fluvio::consumer::ConsumerConfigExtBuilder;
use fluvio::metadata::topic::{CleanupPolicy, SegmentBasedPolicy, TopicSpec};
use fluvio::{
    Fluvio, FluvioAdmin, FluvioClusterConfig, Isolation, Offset, RecordKey,
    TopicProducerConfigBuilder, TopicProducerPool,
};
use futures_util::StreamExt;

use crate::graph::records::{MentionBody, MentionKey};
use crate::wal::{compact_epochs, LoggedEpoch};

/// Largest payload of one Fluvio record; bigger epochs are split into parts.
pub const MAX_PART_BYTES: usize = 512 << 10;

/// Longest wait for the next record of a generation read up to a known offset.
const READ_WAIT: Duration = Duration::from_secs(30);

/// Retention of the topics (records leave by compaction, not by age).
const RETENTION_SECS: u32 = 10 * 365 * 86_400;

/// One record of the topic.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum Entry {
    /// Part `part` (from 0) of `parts` of the epoch at `time`.
    Part {
        time: u64,
        part: u32,
        parts: u32,
        upserts: Vec<(MentionKey, Option<MentionBody>)>,
    },
    /// The generation is complete: everything before this record is the whole log.
    Sealed,
}

/// The log, kept in a Fluvio topic.
pub struct FluvioLog {
    client: Fluvio,
    /// The SC's address (a topic creation left unanswered is retried on a new connection).
    endpoint: String,
    admin: FluvioAdmin,
    name: String,
    generation: u64,
    producer: Sender,
    bytes: u64,
    /// Offset of the last record of the generation known to this process (read at start,
    /// or acknowledged since): a compaction must read at least up to it.
    last_offset: i64,
    /// Bytes of the generation right after it was written (compaction is due once the log
    /// has grown well past it).
    base_bytes: u64,
    /// The committed time of the last compaction (nothing below it is left to compact).
    compacted_below: u64,
    min_compaction_bytes: u64,
}

fn topic(name: &str, generation: u64) -> String {
    format!("{name}-g{generation}")
}

/// A valid topic name for `database` (Fluvio: lowercase letters, digits and `-`, ≤ 63).
pub fn default_topic_name(database: &str) -> String {
    let mut name: String = format!("vigie-log-{database}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(52); // room for "-g<N>"
    name.trim_end_matches('-').to_string()
}

/// Splits an epoch into records of at most about [`MAX_PART_BYTES`].
fn encode_parts(
    time: u64,
    upserts: &[(MentionKey, Option<MentionBody>)],
) -> anyhow::Result<Vec<Vec<u8>>> {
    let size = bincode::serialized_size(&upserts).context("sizing an epoch")? as usize;
    let parts = size.div_ceil(MAX_PART_BYTES).max(1);
    let per_part = upserts.len().div_ceil(parts).max(1);
    let chunks: Vec<&[(MentionKey, Option<MentionBody>)]> = if upserts.is_empty() {
        vec![&[]]
    } else {
        upserts.chunks(per_part).collect()
    };
    let count = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            bincode::serialize(&Entry::Part {
                time,
                part: i as u32,
                parts: count,
                upserts: chunk.to_vec(),
            })
            .context("encoding an epoch")
        })
        .collect()
}

impl FluvioLog {
    /// Connects to the Fluvio cluster at `endpoint` (its SC, e.g. `127.0.0.1:9003`), opens
    /// the log named `name` (creating it when there is none) and returns it with every
    /// acknowledged epoch, in time order. Compaction is considered once the log holds at
    /// least `min_compaction_bytes`.
    pub async fn open(
        endpoint: &str,
        name: &str,
        min_compaction_bytes: u64,
    ) -> anyhow::Result<(FluvioLog, Vec<LoggedEpoch>)> {
        let config = FluvioClusterConfig::new(endpoint);
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            Fluvio::connect_with_config(&config),
        )
        .await
        .with_context(|| format!("connecting to Fluvio at {endpoint}: timed out"))?
        .with_context(|| format!("connecting to Fluvio at {endpoint}"))?;
        let admin = client.admin().await;
        let prefix = format!("{name}-g");
        let mut generations: Vec<u64> = admin
            .all::<TopicSpec>()
            .await
            .context("listing Fluvio topics")?
            .into_iter()
            .filter_map(|t| t.name.strip_prefix(&prefix)?.parse().ok())
            .collect();
        generations.sort_unstable();
        let mut chosen: Option<(u64, Generation)> = None;
        for &g in generations.iter().rev() {
            let read = read_generation(&client, &topic(name, g), None).await?;
            if read.sealed {
                chosen = Some((g, read));
                break;
            }
        }
        for &g in &generations {
            if chosen.as_ref().is_none_or(|(c, _)| *c != g) {
                tracing::info!(topic = %topic(name, g), "removing a Fluvio log generation that is not the current one");
                admin
                    .delete::<TopicSpec>(topic(name, g))
                    .await
                    .with_context(|| format!("deleting Fluvio topic {}", topic(name, g)))?;
            }
        }
        let (generation, epochs, bytes, last_offset, producer) = match chosen {
            Some((g, read)) => {
                let producer = Sender::open(&client, topic(name, g)).await?;
                (g, read.epochs, read.bytes, read.last_offset, producer)
            }
            None => {
                let g = create_generation(
                    &client,
                    endpoint,
                    name,
                    generations.last().map_or(1, |g| g + 1),
                )
                .await?;
                let mut sender = Sender::open(&client, topic(name, g)).await?;
                let (_, last) = sender
                    .send(&client, &[bincode::serialize(&Entry::Sealed)?])
                    .await?;
                (g, Vec::new(), 0, last, sender)
            }
        };
        Ok((
            FluvioLog {
                client,
                endpoint: endpoint.to_string(),
                admin,
                name: name.to_string(),
                generation,
                producer,
                bytes,
                last_offset,
                base_bytes: bytes,
                compacted_below: 0,
                min_compaction_bytes: min_compaction_bytes.max(1),
            },
            epochs,
        ))
    }

    /// Produces one epoch and waits until Fluvio has acknowledged all of it.
    pub async fn append(
        &mut self,
        time: u64,
        upserts: &[(MentionKey, Option<MentionBody>)],
    ) -> anyhow::Result<()> {
        let records = encode_parts(time, upserts)?;
        let (bytes, last) = self.producer.send(&self.client, &records).await?;
        self.bytes += bytes;
        self.last_offset = self.last_offset.max(last);
        Ok(())
    }

    /// Bytes of the current generation's records.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether a compaction is worth it: the log holds at least the minimum and has grown
    /// to twice its size after the last compaction, and some of it is committed.
    pub fn compaction_due(&self, committed: u64) -> bool {
        committed > self.compacted_below
            && self.bytes >= self.min_compaction_bytes
            && self.bytes >= 2 * self.base_bytes
    }

    /// Writes the next generation (epochs below `committed` compacted, the rest verbatim),
    /// seals it, switches to it and deletes the current one. Returns the bytes freed.
    pub async fn compact(&mut self, committed: u64) -> anyhow::Result<u64> {
        if committed <= self.compacted_below {
            return Ok(0);
        }
        let current = topic(&self.name, self.generation);
        let Generation {
            epochs,
            sealed,
            bytes: before,
            ..
        } = read_generation(&self.client, &current, Some(self.last_offset)).await?;
        if !sealed {
            bail!("Fluvio log {current} lost its seal");
        }
        let records_before: usize = epochs.iter().map(|(_, u)| u.len()).sum();
        let (old, new): (Vec<LoggedEpoch>, Vec<LoggedEpoch>) =
            epochs.into_iter().partition(|(t, _)| *t < committed);
        // Compaction drops only records that change nothing: the mentions live at the end
        // of the compacted part must be the same ones, with the same bodies.
        let live_before = live(&old);
        let old = compact_epochs(old);
        if live(&old) != live_before {
            bail!("compacting Fluvio log {current} would change the live mentions; not compacting");
        }
        let records_after: usize = old.iter().chain(&new).map(|(_, u)| u.len()).sum();
        let next = create_generation(
            &self.client,
            &self.endpoint,
            &self.name,
            self.generation + 1,
        )
        .await?;
        let next_topic = topic(&self.name, next);
        let mut producer = Sender::open(&self.client, next_topic.clone()).await?;
        let mut written = 0u64;
        for (time, upserts) in old.into_iter().chain(new) {
            written += producer
                .send(&self.client, &encode_parts(time, &upserts)?)
                .await?
                .0;
        }
        let (_, last) = producer
            .send(&self.client, &[bincode::serialize(&Entry::Sealed)?])
            .await?;
        // The next generation is complete: from here a restart picks it.
        self.producer = producer;
        self.generation = next;
        self.bytes = written;
        self.last_offset = last;
        self.base_bytes = written;
        self.compacted_below = committed;
        self.admin
            .delete::<TopicSpec>(current.clone())
            .await
            .with_context(|| format!("deleting Fluvio topic {current}"))?;
        tracing::info!(topic = %next_topic, before, after = written, records_before, records_after, "compacted the Fluvio log");
        Ok(before.saturating_sub(written))
    }

    /// The topic appends go to.
    pub fn topic(&self) -> String {
        topic(&self.name, self.generation)
    }
}

/// Fingerprint of the live mentions after `epochs`: their number and an order-independent
/// sum of hashes of (key, body).
fn live(epochs: &[LoggedEpoch]) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    // Keyed by (organisation, id): `MentionKey`'s own hash is only its organisation's.
    let mut last: std::collections::HashMap<(uuid::Uuid, uuid::Uuid), Option<&MentionBody>> =
        std::collections::HashMap::new();
    for (_, upserts) in epochs {
        for (k, b) in upserts {
            last.insert((k.org, k.id), b.as_ref());
        }
    }
    let mut n = 0;
    let mut sum = 0u64;
    for (k, b) in last {
        if let Some(b) = b {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (k, b).hash(&mut h);
            sum = sum.wrapping_add(h.finish());
            n += 1;
        }
    }
    (n, sum)
}

/// Creates the topic of generation `first` of log `name` (one partition) and waits until
/// it is online; returns the generation created. A topic that does not come online is
/// deleted and the next generation number is tried, up to three: this cluster's SC has
/// left a creation made right after another topic's deletion without a partition
/// ("applying attempt to update by stale value" in its log). A name is never created
/// again after its deletion: the SPU may still apply that deletion to the new replica
/// (CI saw "the given SPU is not the leader for the partition" right after such a
/// re-creation). A topic left behind is unsealed, and the next start-up removes it.
async fn create_generation(
    client: &Fluvio,
    endpoint: &str,
    name: &str,
    first: u64,
) -> anyhow::Result<u64> {
    for g in first..first + 3 {
        let t = topic(name, g);
        if create_topic_once(client, endpoint, &t).await? {
            return Ok(g);
        }
        tracing::warn!(
            topic = %t,
            "a new Fluvio topic did not come online; deleting it and creating the next generation's"
        );
        let _ = client.admin().await.delete::<TopicSpec>(t).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("Fluvio log {name}: three new topics in a row did not come online")
}

/// One creation of topic `name`; whether it came online within 10 s.
async fn create_topic_once(client: &Fluvio, endpoint: &str, name: &str) -> anyhow::Result<bool> {
    let mut spec = TopicSpec::new_computed(1, 1, None);
    spec.set_cleanup_policy(CleanupPolicy::Segment(SegmentBasedPolicy {
        time_in_seconds: RETENTION_SECS,
    }));
    // The SC answers a creation once the partition is online. An admin handle shares the
    // client's one connection, and the SC serves a connection's requests in order, so a
    // creation left unanswered blocks every retry on it: retry on a new connection, and take
    // "already exists" from a retry as done.
    let mut attempt = 0;
    let mut admin = client.admin().await;
    let mut _fresh_client: Option<Fluvio> = None;
    loop {
        attempt += 1;
        match tokio::time::timeout(
            Duration::from_secs(10),
            admin.create(name.to_string(), false, spec.clone()),
        )
        .await
        {
            Ok(Ok(())) => break,
            Ok(Err(e)) if attempt > 1 && format!("{e:#}").to_lowercase().contains("exist") => break,
            Ok(Err(e)) if attempt >= 5 => {
                return Err(e).with_context(|| format!("creating Fluvio topic {name}"))
            }
            Err(_) if attempt >= 5 => bail!("creating Fluvio topic {name}: no answer in 5 tries"),
            Ok(Err(e)) => {
                tracing::warn!(topic = name, error = %format!("{e:#}"), "creating a Fluvio topic failed; retrying")
            }
            Err(_) => {
                tracing::warn!(
                    topic = name,
                    "Fluvio did not answer a topic creation in 10 s; retrying on a new connection"
                );
                let fresh = tokio::time::timeout(
                    Duration::from_secs(10),
                    Fluvio::connect_with_config(&FluvioClusterConfig::new(endpoint)),
                )
                .await;
                if let Ok(Ok(fresh)) = fresh {
                    admin = fresh.admin().await;
                    _fresh_client = Some(fresh);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
    // The SPU takes a moment to host a new partition (longer when it is busy).
    for _ in 0..200 {
        if admin
            .all::<fluvio::metadata::partition::PartitionSpec>()
            .await
            .is_ok_and(|ps| {
                ps.iter().any(|p| {
                    p.name.starts_with(&format!("{name}-"))
                        && p.status.resolution
                            == fluvio::metadata::partition::PartitionResolution::Online
                })
            })
        {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

/// Attempts to send one batch of records before giving up.
const SEND_ATTEMPTS: u32 = 4;

/// A producer on one topic that sends again what was not acknowledged.
struct Sender {
    topic: String,
    producer: TopicProducerPool,
}

impl Sender {
    async fn open(client: &Fluvio, topic: String) -> anyhow::Result<Sender> {
        let config = TopicProducerConfigBuilder::default()
            .batch_size(MAX_PART_BYTES * 2)
            .max_request_size(MAX_PART_BYTES * 4)
            .linger(Duration::ZERO)
            .isolation(Isolation::ReadCommitted)
            .timeout(Duration::from_secs(10))
            .build()
            .context("configuring the Fluvio producer")?;
        let producer = client
            .topic_producer_with_config(&topic, config)
            .await
            .with_context(|| format!("opening a producer on Fluvio topic {topic}"))?;
        Ok(Sender { topic, producer })
    }

    /// Sends records and waits for every acknowledgement; returns their bytes and the
    /// offset of the last one. A failed send is made again, whole, on a new producer (the
    /// SPU can answer "not the leader for the partition" while a partition settles): the
    /// reader skips a part that comes twice. Only the last failure is returned.
    async fn send(&mut self, client: &Fluvio, records: &[Vec<u8>]) -> anyhow::Result<(u64, i64)> {
        let mut attempt = 1;
        loop {
            match send_all(&self.producer, records).await {
                Ok(sent) => return Ok(sent),
                Err(e) if attempt >= SEND_ATTEMPTS => {
                    return Err(e).with_context(|| {
                        format!(
                            "producing to Fluvio topic {}: {attempt} attempts",
                            self.topic
                        )
                    })
                }
                Err(e) => tracing::warn!(
                    topic = %self.topic,
                    attempt,
                    error = %format!("{e:#}"),
                    "producing to Fluvio failed; sending again on a new producer"
                ),
            }
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            attempt += 1;
            if let Ok(fresh) = Sender::open(client, self.topic.clone()).await {
                *self = fresh;
            }
        }
    }
}

/// Sends records and waits for every acknowledgement; returns their bytes and the offset
/// of the last one.
async fn send_all(producer: &TopicProducerPool, records: &[Vec<u8>]) -> anyhow::Result<(u64, i64)> {
    let bytes = records.iter().map(|r| r.len() as u64).sum();
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        pending.push(
            producer
                .send(RecordKey::NULL, r.as_slice())
                .await
                .context("producing to Fluvio")?,
        );
    }
    producer.flush().await.context("flushing to Fluvio")?;
    let mut last = -1;
    for p in pending {
        let acked = p
            .wait()
            .await
            .context("waiting for Fluvio's acknowledgement")?;
        last = last.max(acked.offset());
    }
    Ok((bytes, last))
}

/// What [`read_generation`] found: the complete epochs in order, whether the generation is
/// sealed, the bytes of its records and the offset of the last one (`-1`: none).
struct Generation {
    epochs: Vec<LoggedEpoch>,
    sealed: bool,
    bytes: u64,
    last_offset: i64,
}

/// Reads a generation from its start: to the offset `until` when given (the last record
/// this process had acknowledged: everything up to it must be read, or the read fails),
/// else to the end the partition reports when the read starts.
async fn read_generation(
    client: &Fluvio,
    topic: &str,
    until: Option<i64>,
) -> anyhow::Result<Generation> {
    let mut reader = Gapless::new(client, topic, until);
    let mut epochs: Vec<LoggedEpoch> = Vec::new();
    // Epochs being assembled, by time: their parts by index, as they come. The producer
    // re-sends a request whose answer it lost, so a part can come twice, or after a later
    // part of its epoch; every part of an acknowledged epoch still comes before any part of
    // the next epoch (the next one is sent only once all of it is acknowledged).
    type Parts = Vec<Option<Vec<(MentionKey, Option<MentionBody>)>>>;
    let mut open: std::collections::BTreeMap<u64, Parts> = std::collections::BTreeMap::new();
    let (mut sealed, mut bytes) = (false, 0u64);
    let (mut incomplete, mut repeated) = (Vec::new(), 0usize);
    while let Some((offset, value)) = reader.next().await? {
        let value = &value[..];
        bytes += value.len() as u64;
        let entry: Entry = bincode::deserialize(value).with_context(|| {
            format!(
                "Fluvio topic {topic}: undecodable record at offset {offset}; refusing to skip it"
            )
        })?;
        match entry {
            Entry::Sealed => sealed = true,
            Entry::Part {
                time,
                part,
                parts,
                upserts,
            } => {
                if part >= parts {
                    bail!("Fluvio topic {topic}: part {part} of {parts} at offset {offset}");
                }
                // A part of an epoch already complete: a repeat.
                if epochs.last().is_some_and(|(t, _)| *t >= time) {
                    repeated += 1;
                    continue;
                }
                let slots = open
                    .entry(time)
                    .or_insert_with(|| vec![None; parts as usize]);
                match slots.get_mut(part as usize) {
                    Some(slot @ None) => *slot = Some(upserts),
                    _ => {
                        repeated += 1;
                        continue;
                    }
                }
                if slots.iter().all(Option::is_some) {
                    let slots = open.remove(&time).unwrap_or_default();
                    // Earlier epochs still missing parts will not get them: their writer
                    // died before they were acknowledged.
                    let earlier: Vec<u64> = open.range(..time).map(|(t, _)| *t).collect();
                    for t in earlier {
                        open.remove(&t);
                        incomplete.push(t);
                    }
                    epochs.push((time, slots.into_iter().flatten().flatten().collect()));
                }
            }
        }
    }
    incomplete.extend(open.keys().copied());
    if !incomplete.is_empty() || repeated > 0 {
        tracing::warn!(
            topic,
            incomplete = incomplete.len(),
            first_incomplete = incomplete.first().copied(),
            repeated,
            "epochs with missing parts were never acknowledged (not replayed); repeated parts were skipped"
        );
    }
    Ok(Generation {
        epochs,
        sealed,
        bytes,
        last_offset: reader.next_offset - 1,
    })
}

/// A consumer stream's records as (offset, value).
type Records = futures_util::stream::BoxStream<'static, Result<(i64, Vec<u8>), String>>;

/// Reads a partition's records in offset order from its start, every offset once. Fluvio's
/// consumer stream skips a record where a fetch response reaches its byte limit (64 MiB
/// here): chaos runs of 2026-12-06 saw offset 173 come after 171, and 191 after 190 in
/// every generation of another run; compactions that copied such reads dropped
/// acknowledged mentions, and so did replays at start-up (`tests/fluvio_log.rs`, "a log
/// larger than a fetch response", got 159 of 160 epochs back). A gap therefore reopens the
/// stream at the missing offset; only a gap that stays is an error.
struct Gapless<'a> {
    client: &'a Fluvio,
    topic: &'a str,
    /// Read up to this offset, waiting for it (else: to the end reported when a stream
    /// opens).
    until: Option<i64>,
    stream: Option<Records>,
    /// The next offset expected (`-1`: the partition's start, not known yet).
    next_offset: i64,
    /// Reopenings in a row without progress.
    stuck: u32,
}

impl<'a> Gapless<'a> {
    fn new(client: &'a Fluvio, topic: &'a str, until: Option<i64>) -> Self {
        Gapless {
            client,
            topic,
            until,
            stream: None,
            next_offset: -1,
            stuck: 0,
        }
    }

    async fn open(&mut self) -> anyhow::Result<()> {
        let start = if self.next_offset < 0 {
            Offset::beginning()
        } else {
            Offset::absolute(self.next_offset)
                .map_err(|e| anyhow::anyhow!("offset {}: {e:?}", self.next_offset))?
        };
        let config = ConsumerConfigExtBuilder::default()
            .topic(self.topic)
            .partition(0)
            .offset_start(start)
            .disable_continuous(self.until.is_none())
            .max_bytes(64 << 20)
            .isolation(Isolation::ReadCommitted)
            .build()
            .context("configuring the Fluvio consumer")?;
        let stream = self
            .client
            .consumer_with_config(config)
            .await
            .with_context(|| format!("reading Fluvio topic {}", self.topic))?;
        self.stream = Some(
            stream
                .map(|r| {
                    r.map(|rec| (rec.offset(), rec.value().to_vec()))
                        .map_err(|e| format!("{e:?}"))
                })
                .boxed(),
        );
        Ok(())
    }

    /// Reopens at the next offset after a gap or a stall; fails after a few in a row.
    async fn reopen(&mut self, why: String) -> anyhow::Result<()> {
        self.stuck += 1;
        if self.stuck > 5 {
            bail!(
                "reading Fluvio topic {}: {why}; refusing to go on",
                self.topic
            );
        }
        tracing::warn!(topic = self.topic, reason = %why, "reopening the Fluvio consumer");
        self.stream = None;
        self.open().await
    }

    /// The next record (offset, value), or `None` at the end.
    async fn next(&mut self) -> anyhow::Result<Option<(i64, Vec<u8>)>> {
        loop {
            if self
                .until
                .is_some_and(|u| self.next_offset >= 0 && self.next_offset > u)
            {
                return Ok(None);
            }
            if self.stream.is_none() {
                self.open().await?;
            }
            let stream = self.stream.as_mut().unwrap_or_else(|| unreachable!());
            let item = match self.until {
                None => stream.next().await,
                Some(u) => match tokio::time::timeout(READ_WAIT, stream.next()).await {
                    Ok(item) => item,
                    Err(_) => {
                        let why = format!(
                            "no record after offset {} in {READ_WAIT:?}, records up to {u} were acknowledged",
                            self.next_offset - 1
                        );
                        self.reopen(why).await?;
                        continue;
                    }
                },
            };
            let Some(record) = item else {
                if let Some(u) = self.until {
                    let why = format!(
                        "the stream ended after offset {}, records up to {u} were acknowledged",
                        self.next_offset - 1
                    );
                    self.reopen(why).await?;
                    continue;
                }
                return Ok(None);
            };
            let (offset, value) =
                record.map_err(|e| anyhow::anyhow!("reading Fluvio topic {}: {e}", self.topic))?;
            if self.next_offset >= 0 && offset < self.next_offset {
                // A reopened stream starts at the batch holding the offset asked for.
                continue;
            }
            if self.next_offset >= 0 && offset > self.next_offset {
                let why = format!(
                    "offset {offset} came where {} was expected",
                    self.next_offset
                );
                self.reopen(why).await?;
                continue;
            }
            self.stuck = 0;
            self.next_offset = offset + 1;
            return Ok(Some((offset, value)));
        }
    }
}
