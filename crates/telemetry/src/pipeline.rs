//! The pipeline: `record()` on the request path, one worker per sink behind it.
//!
//! ```text
//! record() ──try_send──▶ queue (bounded) ──▶ worker ── batch ──▶ sink.export()
//!    │                                          │  retryable: backoff / Retry-After, up to max_attempts
//!    │ queue full                               │  past the budget, or at the shutdown deadline
//!    └──try_send──▶ overflow (bounded) ──▶ spool writer ──▶ spool (disk) ◀── replayed by the worker
//! ```
//! Both channels are bounded in records and in bytes (`max_queued_bytes` each). The worker
//! replays a non-empty spool every `replay_interval` on its own, whether traffic comes or not,
//! and after every successful live export.
//!
//! A record the destination acknowledged is never sent again. A record it did not take (no
//! connection, 429, 5xx) is retried with backoff, then spooled (fsync'd) and replayed later, also
//! after a restart; at the shutdown deadline everything not acknowledged is spooled, and without
//! a spool it is counted as dropped and logged. When an export's answer is lost (a timeout or a
//! broken connection after the request was sent: the destination may have taken it), its records
//! are sent once more with the same ids and counted (`ambiguous_retries`); lost again, they are
//! counted as `unconfirmed` and not sent a third time. Ids are derived from the request id, so
//! where a resend replaces (Helicone, Langfuse v3) nothing doubles; where it adds (Langfuse v4), a
//! duplicate can come only from a lost answer the destination had in fact taken, from an export
//! in flight at the shutdown deadline (spooled, then replayed), or from a crash.
//! `record()` only clones an `Arc` into channels and bumps atomics: it never awaits, never
//! does I/O and never takes a lock an exporter holds. A record is dropped only when the spool is
//! disabled or full, when a sink's records waiting in memory would pass `max_queued_bytes`, or
//! after shutdown; every drop is counted and logged. Captured prompts and answers are cut to
//! `max_capture_bytes` each before a record is queued.

use crate::counters::{Counter, SinkCounters, SinkStats};
use crate::error::TelemetryError;
use crate::record::{CapturePolicy, LlmRecord};
use crate::sink::{ExportError, TelemetrySink};
use crate::spool::Spool;
use ring::rand::{SecureRandom, SystemRandom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the pipeline batches, retries and spools. [`PipelineConfig::default`] is production-ready
/// except for `spool_dir`, which is off until set.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Export when this many records are waiting. Default 50. (A sink that does not fill
    /// batches, [`TelemetrySink::fills_batches`], exports what is queued, up to this many.)
    pub batch_size: usize,
    /// …or when the oldest waiting record is this old. Default 1 s.
    pub flush_interval: Duration,
    /// In-memory queue per sink, in records (bytes are bounded by `max_queued_bytes`). Default
    /// 16384: about 3 s of traffic at 5k req/s, so a burst (hundreds of connections opening at
    /// once) waits in memory instead of reaching the spool; 4096 spooled at c=256 in `make bench`.
    pub queue_capacity: usize,
    /// Records waiting to be spooled when the queue is full, per sink. Default 16384.
    pub overflow_capacity: usize,
    /// Export attempts per batch before it is spooled. Default 4.
    pub max_attempts: u32,
    /// First backoff step, doubled each retry, with jitter. Default 500 ms.
    pub backoff_base: Duration,
    /// Largest backoff step, and the most a `Retry-After` is honoured. Default 30 s.
    pub backoff_max: Duration,
    /// Spool folder (one subfolder per sink). `None` disables spooling: records that cannot
    /// be delivered are then dropped, counted and logged.
    pub spool_dir: Option<PathBuf>,
    /// Spool size cap per sink. Default 256 MiB.
    pub spool_max_bytes: u64,
    /// How often a non-empty spool is retried while no live export succeeds. Default 15 s.
    pub replay_interval: Duration,
    /// What to keep of prompts and answers. Default full.
    pub capture: CapturePolicy,
    /// Most bytes of input, and of output, one record keeps. Default 64 KiB.
    pub max_capture_bytes: usize,
    /// Most bytes of records one sink holds waiting in memory (queue and spool backlog).
    /// Default 64 MiB.
    pub max_queued_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_size: 50,
            flush_interval: Duration::from_secs(1),
            queue_capacity: 16_384,
            overflow_capacity: 16384,
            max_attempts: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            spool_dir: None,
            spool_max_bytes: 256 << 20,
            replay_interval: Duration::from_secs(15),
            capture: CapturePolicy::Full,
            max_capture_bytes: 64 << 10,
            max_queued_bytes: 64 << 20,
        }
    }
}

/// Bytes of records a sink holds in memory, against a limit.
#[derive(Debug)]
struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` if they fit.
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what a record took as it leaves a channel, and hands the record on.
    fn release(&self, queued: Queued) -> SharedRecord {
        self.give_back(queued.bytes);
        queued.record
    }

    fn give_back(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

type SharedRecord = Arc<LlmRecord>;

/// A record in a channel, with the bytes it holds against the budget (measured once, in
/// `record()`).
struct Queued {
    record: SharedRecord,
    bytes: usize,
}
type SharedSpool = Arc<Mutex<Spool>>;

struct SinkHandle {
    name: String,
    queue: mpsc::Sender<Queued>,
    overflow: mpsc::Sender<Queued>,
    counters: Arc<SinkCounters>,
    /// Bytes waiting in `queue`.
    queue_budget: Arc<ByteBudget>,
    /// Bytes waiting in `overflow` for the spool writer.
    overflow_budget: Arc<ByteBudget>,
}

impl SinkHandle {
    /// Queues a record; when the queue is full (in count or bytes) hands it to the spool
    /// writer; when that backlog is full too, drops it, counted and logged.
    fn offer(&self, record: &SharedRecord, bytes: usize) {
        if self.queue_budget.reserve(bytes) {
            let queued = Queued {
                record: Arc::clone(record),
                bytes,
            };
            match self.queue.try_send(queued) {
                Ok(()) => {
                    self.counters.add(Counter::Queued, 1);
                    return;
                }
                Err(mpsc::error::TrySendError::Full(_)) => self.queue_budget.give_back(bytes),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.queue_budget.give_back(bytes);
                    self.counters.add(Counter::Dropped, 1);
                    tracing::warn!(sink = %self.name, "telemetry record arrived after shutdown; dropped");
                    return;
                }
            }
        }
        if self.overflow_budget.reserve(bytes) {
            let queued = Queued {
                record: Arc::clone(record),
                bytes,
            };
            if self.overflow.try_send(queued).is_ok() {
                return;
            }
            self.overflow_budget.give_back(bytes);
        }
        self.drop_one("telemetry overloaded: queue and spool backlog full; record dropped");
    }

    /// Counts a dropped record; logs the first and every thousandth (atomics only: no lock a
    /// worker can hold).
    fn drop_one(&self, why: &str) {
        let dropped = self.counters.add(Counter::Dropped, 1);
        if dropped == 1 || dropped.is_multiple_of(1000) {
            tracing::error!(sink = %self.name, dropped, "{why}");
        }
    }
}

/// The telemetry pipeline. Create it once at start-up, inside a tokio runtime.
pub struct Pipeline {
    sinks: Vec<SinkHandle>,
    capture: CapturePolicy,
    max_capture_bytes: usize,
    shutdown: watch::Sender<Option<Instant>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    /// Starts one worker (and one spool writer) per sink on the current tokio runtime. Fails if
    /// a spool folder is unusable.
    pub fn start(
        config: PipelineConfig,
        sinks: Vec<Arc<dyn TelemetrySink>>,
    ) -> Result<Self, TelemetryError> {
        Self::start_on(&tokio::runtime::Handle::current(), config, sinks)
    }

    /// Like [`Self::start`], with the workers on `runtime`: a service can give telemetry
    /// threads of its own, so exports do not queue behind requests on the same threads.
    pub fn start_on(
        runtime: &tokio::runtime::Handle,
        config: PipelineConfig,
        sinks: Vec<Arc<dyn TelemetrySink>>,
    ) -> Result<Self, TelemetryError> {
        let config = Arc::new(config);
        let (shutdown, _) = watch::channel(None);
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for sink in sinks {
            let name = sink.name().to_owned();
            let spool = match &config.spool_dir {
                Some(dir) => Some(Arc::new(Mutex::new(Spool::open(
                    &dir.join(&name),
                    config.spool_max_bytes,
                )?))),
                None => None,
            };
            let counters = Arc::new(SinkCounters::default());
            let queue_budget = Arc::new(ByteBudget::new(config.max_queued_bytes));
            let overflow_budget = Arc::new(ByteBudget::new(config.max_queued_bytes));
            let (queue, queue_rx) = mpsc::channel(config.queue_capacity.max(1));
            let (overflow, overflow_rx) = mpsc::channel(config.overflow_capacity.max(1));
            let spooler = Spooler {
                sink: name.clone(),
                spool,
                counters: Arc::clone(&counters),
                waiting: Arc::new(AtomicBool::new(false)),
            };
            tasks.push(runtime.spawn(run_overflow_writer(
                overflow_rx,
                Arc::clone(&overflow_budget),
                spooler.clone(),
                shutdown.subscribe(),
            )));
            let worker = Worker {
                sink,
                queue: queue_rx,
                spooler,
                config: Arc::clone(&config),
                shutdown: shutdown.subscribe(),
                last_rejection: None,
                queue_budget: Arc::clone(&queue_budget),
            };
            tasks.push(runtime.spawn(worker.run()));
            handles.push(SinkHandle {
                name,
                queue,
                overflow,
                counters,
                queue_budget,
                overflow_budget,
            });
        }
        Ok(Self {
            sinks: handles,
            capture: config.capture,
            max_capture_bytes: config.max_capture_bytes,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// Hands a record to every sink and returns at once. Never blocks, never fails: a record
    /// that cannot be queued goes to the spool; one that cannot be spooled either is counted
    /// as dropped and logged.
    pub fn record(&self, mut record: LlmRecord) {
        record.apply(self.capture, self.max_capture_bytes);
        self.offer(Arc::new(record));
    }

    /// Like [`Self::record`], for a record shared with other readers: it is copied only if it
    /// keeps more of the prompt or answer than the capture settings allow.
    pub fn record_shared(&self, mut record: Arc<LlmRecord>) {
        if !record.within_capture(self.capture, self.max_capture_bytes) {
            Arc::make_mut(&mut record).apply(self.capture, self.max_capture_bytes);
        }
        self.offer(record);
    }

    fn offer(&self, record: Arc<LlmRecord>) {
        let bytes = record.approx_bytes();
        for sink in &self.sinks {
            sink.offer(&record, bytes);
        }
    }

    /// Counters of every sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|sink| sink.counters.snapshot(&sink.name))
            .collect()
    }

    /// Flushes what is queued, retrying until `within` has passed; whatever is still
    /// undelivered then is spooled. Returns the final counters.
    pub async fn shutdown(&self, within: Duration) -> Vec<SinkStats> {
        let deadline = after(within);
        self.shutdown.send_replace(Some(deadline));
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        // Spooling at the deadline takes a moment: allow a short grace after it.
        let grace = deadline + Duration::from_secs(2);
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(grace, task).await.is_err() {
                abort.abort();
                tracing::error!("a telemetry worker did not stop in time and was aborted");
            }
        }
        self.stats()
    }
}

/// Writes records to a sink's spool (or counts them as dropped when it cannot).
#[derive(Clone)]
struct Spooler {
    sink: String,
    spool: Option<SharedSpool>,
    counters: Arc<SinkCounters>,
    /// Set when records reach the spool, cleared by a replay that empties it: while set, the
    /// worker replays on its own timer, traffic or not.
    waiting: Arc<AtomicBool>,
}

impl Spooler {
    async fn store(&self, records: Vec<SharedRecord>, why: &str) {
        if records.is_empty() {
            return;
        }
        let count = records.len() as u64;
        let Some(spool) = self.spool.clone() else {
            self.counters.add(Counter::Dropped, count);
            tracing::error!(sink = %self.sink, count, why, "telemetry records dropped: no spool is configured");
            return;
        };
        let result = tokio::task::spawn_blocking(move || {
            spool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .append(records.iter().map(AsRef::as_ref))
        })
        .await;
        match result {
            Ok(Ok(true)) => {
                self.waiting.store(true, Ordering::Release);
                self.counters.add(Counter::Spooled, count);
                tracing::warn!(sink = %self.sink, count, why, "telemetry records spooled to disk");
            }
            Ok(Ok(false)) => {
                self.counters.add(Counter::Dropped, count);
                tracing::error!(sink = %self.sink, count, why, "telemetry records dropped: the spool is full");
            }
            Ok(Err(error)) => {
                self.counters.add(Counter::Dropped, count);
                tracing::error!(sink = %self.sink, count, %error, "telemetry records dropped: the spool cannot be written");
            }
            Err(_) => {
                self.counters.add(Counter::Dropped, count);
                tracing::error!(sink = %self.sink, count, "telemetry records dropped: the spool writer failed");
            }
        }
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Option<T> {
        let spool = self.spool.clone()?;
        tokio::task::spawn_blocking(move || {
            operation(&mut spool.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .ok()
    }
}

async fn run_overflow_writer(
    mut overflow: mpsc::Receiver<Queued>,
    budget: Arc<ByteBudget>,
    spooler: Spooler,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    loop {
        let first = tokio::select! {
            record = overflow.recv() => record,
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![budget.release(first)];
        take_ready(&mut overflow, &budget, &mut batch, 1024);
        spooler.store(batch, "queue full").await;
    }
    overflow.close();
    let mut rest = Vec::new();
    take_ready(&mut overflow, &budget, &mut rest, usize::MAX);
    spooler.store(rest, "queue full at shutdown").await;
}

/// Moves what `queue` holds right now into `batch` until it has `limit` records, giving each
/// record's bytes back to `budget`.
fn take_ready(
    queue: &mut mpsc::Receiver<Queued>,
    budget: &ByteBudget,
    batch: &mut Vec<SharedRecord>,
    limit: usize,
) {
    while batch.len() < limit {
        match queue.try_recv() {
            Ok(queued) => batch.push(budget.release(queued)),
            Err(_) => break,
        }
    }
}

struct Worker {
    sink: Arc<dyn TelemetrySink>,
    queue: mpsc::Receiver<Queued>,
    spooler: Spooler,
    config: Arc<PipelineConfig>,
    shutdown: watch::Receiver<Option<Instant>>,
    /// The last rejection reason logged, so a misconfigured sink logs one line, not one per batch.
    last_rejection: Option<String>,
    /// Released as records leave the queue.
    queue_budget: Arc<ByteBudget>,
}

/// What happened to one delivery attempt of a batch.
struct Delivery {
    retry: Vec<SharedRecord>,
    retry_after: Option<Duration>,
    /// Records the destination may have taken (the answer was lost).
    ambiguous: Vec<SharedRecord>,
    delivered: u64,
}

impl Worker {
    /// The shutdown deadline, once shutdown has begun (or the pipeline was dropped).
    fn stopping(&self) -> Option<Instant> {
        match self.shutdown.has_changed() {
            Err(_) => Some(Instant::now() + Duration::from_secs(5)),
            Ok(_) => *self.shutdown.borrow(),
        }
    }

    async fn run(mut self) {
        self.replay().await;
        let mut next_replay = after(self.config.replay_interval);
        while self.stopping().is_none() {
            let spool_waiting = self.spooler.waiting.load(Ordering::Acquire);
            let first = tokio::select! {
                record = self.queue.recv() => record,
                _ = self.shutdown.changed() => continue,
                () = tokio::time::sleep_until(next_replay), if spool_waiting => {
                    self.replay().await;
                    next_replay = after(self.config.replay_interval);
                    continue;
                }
            };
            let Some(first) = first else { break };
            let batch = self.fill_batch(first).await;
            let delivered = self.deliver(batch).await;
            if delivered && self.spooler.waiting.load(Ordering::Acquire) {
                self.replay().await;
                next_replay = after(self.config.replay_interval);
            }
        }
        self.drain().await;
    }

    /// A batch starting with `first`: up to `batch_size` records, or what arrived within
    /// `flush_interval`, or what there is when shutdown begins. For a sink that does not fill
    /// batches, what is queued now (up to `batch_size`).
    async fn fill_batch(&mut self, first: Queued) -> Vec<SharedRecord> {
        let mut batch = vec![self.queue_budget.release(first)];
        if !self.sink.fills_batches() {
            take_ready(
                &mut self.queue,
                &self.queue_budget,
                &mut batch,
                self.config.batch_size,
            );
            return batch;
        }
        let flush_at = after(self.config.flush_interval);
        while batch.len() < self.config.batch_size && self.stopping().is_none() {
            tokio::select! {
                record = self.queue.recv() => match record {
                    Some(queued) => batch.push(self.queue_budget.release(queued)),
                    None => break,
                },
                _ = self.shutdown.changed() => break,
                () = tokio::time::sleep_until(flush_at) => break,
            }
        }
        batch
    }

    /// At shutdown: flush what is queued until the deadline; spool everything not
    /// acknowledged by then (the batch in hand included).
    async fn drain(&mut self) {
        self.queue.close();
        let mut rest = Vec::new();
        take_ready(&mut self.queue, &self.queue_budget, &mut rest, usize::MAX);
        let deadline = self.stopping().unwrap_or_else(Instant::now);
        let batch_size = self.config.batch_size.max(1);
        while !rest.is_empty() && Instant::now() < deadline {
            let batch: Vec<SharedRecord> = rest.drain(..batch_size.min(rest.len())).collect();
            if !self.deliver(batch).await {
                break; // `deliver` spooled what it could not send
            }
        }
        self.spooler.store(rest, "shutdown deadline").await;
    }

    /// One export call, cut off at the shutdown deadline, even when shutdown begins while the
    /// call is in flight. `None`: the deadline came first (the records count as unacknowledged).
    async fn export_once(&mut self, records: &[SharedRecord]) -> Option<Delivery> {
        let batch: Vec<&LlmRecord> = records.iter().map(AsRef::as_ref).collect();
        let mut shutdown = self.shutdown.clone();
        let results = tokio::select! {
            results = self.sink.export(&batch) => results,
            () = deadline_reached(&mut shutdown) => return None,
        };
        let mut delivery = Delivery {
            retry: Vec::new(),
            retry_after: None,
            ambiguous: Vec::new(),
            delivered: 0,
        };
        let mut results = results.into_iter();
        for record in records {
            match results.next() {
                Some(Ok(())) => delivery.delivered += 1,
                Some(Err(ExportError::Rejected { reason })) => {
                    self.spooler.counters.add(Counter::Rejected, 1);
                    self.spooler.counters.set_last_error(Some(reason.clone()));
                    if self.last_rejection.as_deref() != Some(reason.as_str()) {
                        tracing::error!(sink = %self.spooler.sink, %reason, "telemetry refused by the destination; not retried (further identical refusals are only counted)");
                        self.last_rejection = Some(reason);
                    }
                }
                Some(Err(ExportError::Retryable {
                    reason,
                    retry_after,
                })) => {
                    self.spooler.counters.set_last_error(Some(reason));
                    delivery.retry_after = delivery.retry_after.max(retry_after);
                    delivery.retry.push(Arc::clone(record));
                }
                Some(Err(ExportError::Ambiguous { reason })) => {
                    self.spooler.counters.set_last_error(Some(reason));
                    delivery.ambiguous.push(Arc::clone(record));
                }
                None => delivery.retry.push(Arc::clone(record)),
            }
        }
        self.spooler
            .counters
            .add(Counter::Exported, delivery.delivered);
        Some(delivery)
    }

    /// One export, and for records whose answer was lost one more, with the same ids (a
    /// destination that took them the first time may add a copy: counted). A record whose answer
    /// is lost twice is not sent a third time: it is counted as unconfirmed and logged (it may be
    /// at the destination once, twice, or, rarely, not at all). `None`: the shutdown deadline
    /// came first.
    async fn export_settling(&mut self, records: &[SharedRecord]) -> Option<Delivery> {
        let mut delivery = self.export_once(records).await?;
        if delivery.ambiguous.is_empty() {
            return Some(delivery);
        }
        let unsure = std::mem::take(&mut delivery.ambiguous);
        self.spooler
            .counters
            .add(Counter::AmbiguousRetried, unsure.len() as u64);
        let Some(again) = self.export_once(&unsure).await else {
            delivery.retry.extend(unsure);
            return Some(delivery);
        };
        delivery.delivered += again.delivered;
        delivery.retry.extend(again.retry);
        delivery.retry_after = delivery.retry_after.max(again.retry_after);
        if !again.ambiguous.is_empty() {
            let count = again.ambiguous.len() as u64;
            self.spooler.counters.add(Counter::Unconfirmed, count);
            tracing::warn!(sink = %self.spooler.sink, count, "telemetry records not confirmed: the answer was lost twice; not sent again, to add no further copy");
        }
        Some(delivery)
    }

    /// Delivers a live batch with retries; spools what is left when the budget or the
    /// shutdown deadline runs out. Returns whether everything was delivered (or refused).
    async fn deliver(&mut self, mut pending: Vec<SharedRecord>) -> bool {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(delivery) = self.export_settling(&pending).await else {
                self.spooler.store(pending, "shutdown deadline").await;
                return false;
            };
            if delivery.retry.is_empty() {
                return true;
            }
            pending = delivery.retry;
            if attempt >= self.config.max_attempts {
                self.spooler.store(pending, "retry budget exhausted").await;
                return false;
            }
            let delay = delivery.retry_after.map_or_else(
                || backoff(&self.config, attempt),
                |wait| wait.min(self.config.backoff_max),
            );
            if self
                .stopping()
                .is_some_and(|deadline| after(delay) >= deadline)
            {
                self.spooler.store(pending, "shutdown deadline").await;
                return false;
            }
            self.spooler
                .counters
                .add(Counter::Retried, pending.len() as u64);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // Shutdown began: retry now, then within its deadline.
                _ = self.shutdown.changed() => {}
            }
        }
    }

    /// Replays the spool oldest first; records whether records are still waiting.
    async fn replay(&mut self) {
        let waiting = self.replay_segments().await;
        self.spooler.waiting.store(waiting, Ordering::Release);
    }

    /// Replays segments until the spool is empty or the sink stops taking records. Returns
    /// whether records are still waiting.
    async fn replay_segments(&mut self) -> bool {
        loop {
            let Some(read) = self.spooler.run_blocking(Spool::oldest).await else {
                return false; // no spool configured
            };
            let segment = match read {
                Ok(Some(segment)) => segment,
                Ok(None) => return false,
                Err(error) => {
                    tracing::error!(sink = %self.spooler.sink, %error, "cannot read the telemetry spool");
                    return true;
                }
            };
            if segment.unreadable_lines > 0 {
                self.spooler
                    .counters
                    .add(Counter::Dropped, segment.unreadable_lines);
                tracing::error!(sink = %self.spooler.sink, lines = segment.unreadable_lines, "unreadable telemetry spool lines (torn write) dropped");
            }
            let records: Vec<SharedRecord> = segment.records.into_iter().map(Arc::new).collect();
            let mut pending: Vec<SharedRecord> = Vec::new();
            for batch in records.chunks(self.config.batch_size.max(1)) {
                if !pending.is_empty() {
                    pending.extend(batch.iter().cloned()); // the sink is down: keep the order
                    continue;
                }
                match self.export_settling(batch).await {
                    Some(delivery) => {
                        self.spooler
                            .counters
                            .add(Counter::Replayed, delivery.delivered);
                        pending = delivery.retry;
                    }
                    None => pending.extend(batch.iter().cloned()),
                }
            }
            let sequence = segment.sequence;
            let still_waiting = !pending.is_empty();
            let finished = self
                .spooler
                .run_blocking(move |spool| {
                    let refs: Vec<&LlmRecord> = pending.iter().map(AsRef::as_ref).collect();
                    spool.finish(sequence, &refs)
                })
                .await;
            if let Some(Err(error)) = finished {
                tracing::error!(sink = %self.spooler.sink, %error, "cannot update the telemetry spool");
                return true;
            }
            if still_waiting {
                return true;
            }
        }
    }
}

/// `now + wait`, saturating far in the future instead of overflowing.
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Resolves at the shutdown deadline (or 5 s after the pipeline is dropped); pending until
/// shutdown begins.
async fn deadline_reached(shutdown: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let deadline = *shutdown.borrow_and_update();
        if let Some(deadline) = deadline {
            tokio::time::sleep_until(deadline).await;
            return;
        }
        if shutdown.changed().await.is_err() {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return;
        }
    }
}

/// Jittered exponential backoff: a random point in the upper half of `base · 2^(n-1)`.
fn backoff(config: &PipelineConfig, attempt: u32) -> Duration {
    let full = config
        .backoff_base
        .saturating_mul(1_u32 << attempt.saturating_sub(1).min(16))
        .min(config.backoff_max);
    let mut bytes = [0_u8; 8];
    let fraction = if SystemRandom::new().fill(&mut bytes).is_ok() {
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1_u64 << 53) as f64
    } else {
        0.5
    };
    full.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    //! The pipeline's timing promises on a paused clock: no wall-clock waits, no sleeps.
    use super::*;
    use async_trait::async_trait;
    use std::sync::atomic::AtomicU64;

    /// A sink whose answers and speed the test sets.
    struct Scripted {
        up: AtomicBool,
        fills_batches: bool,
        delay: Duration,
        retry_after: Option<Duration>,
        calls: AtomicU64,
        delivered: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(up: bool, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                up: AtomicBool::new(up),
                fills_batches: true,
                delay,
                retry_after: None,
                calls: AtomicU64::new(0),
                delivered: Mutex::new(Vec::new()),
            })
        }

        fn delivered(&self) -> Vec<String> {
            self.delivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }
    }

    #[async_trait]
    impl TelemetrySink for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }

        fn fills_batches(&self) -> bool {
            self.fills_batches
        }

        async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if !self.up.load(Ordering::SeqCst) {
                let error = ExportError::Retryable {
                    reason: "down".into(),
                    retry_after: self.retry_after,
                };
                return vec![Err(error); batch.len()];
            }
            let mut delivered = self
                .delivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            delivered.extend(batch.iter().map(|record| record.request_id.clone()));
            vec![Ok(()); batch.len()]
        }
    }

    fn record(id: &str) -> LlmRecord {
        LlmRecord::new("ab".repeat(16), id, "/v1/chat/completions", "m")
    }

    fn config(spool: Option<PathBuf>) -> PipelineConfig {
        PipelineConfig {
            batch_size: 10,
            flush_interval: Duration::from_millis(20),
            max_attempts: 2,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            replay_interval: Duration::from_secs(15),
            spool_dir: spool,
            ..PipelineConfig::default()
        }
    }

    fn spool_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bff-pipeline-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// Lets every task run until none can move without time passing.
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    /// A sink whose answers are lost (`lost` times in a row), though it takes every export.
    struct Forgetful {
        lost: u64,
        calls: AtomicU64,
        taken: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl TelemetrySink for Forgetful {
        fn name(&self) -> &str {
            "forgetful"
        }

        async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
            taken.extend(batch.iter().map(|record| record.request_id.clone()));
            let answer = if call < self.lost {
                Err(ExportError::Ambiguous {
                    reason: "timed out".into(),
                })
            } else {
                Ok(())
            };
            vec![answer; batch.len()]
        }
    }

    /// An export whose answer was lost is sent once more with the same ids, and counted; lost
    /// again, it is counted as unconfirmed, never sent a third time.
    #[tokio::test(start_paused = true)]
    async fn an_answer_lost_is_resent_once_and_counted() {
        for (lost, exported, unconfirmed) in [(1, 1, 0), (2, 0, 1)] {
            let sink = Arc::new(Forgetful {
                lost,
                calls: AtomicU64::new(0),
                taken: Mutex::new(Vec::new()),
            });
            let dir = spool_dir(&format!("ambiguous-{lost}"));
            let pipeline = Pipeline::start(config(Some(dir.clone())), vec![sink.clone()]).unwrap();
            pipeline.record(record("r1"));
            tokio::time::sleep(Duration::from_millis(30)).await;
            settle().await;
            let stats = &pipeline.stats()[0];
            assert_eq!(
                sink.calls.load(Ordering::SeqCst),
                2,
                "lost {lost}: sent twice, never more"
            );
            assert_eq!(stats.ambiguous_retries, 1);
            assert_eq!((stats.exported, stats.unconfirmed), (exported, unconfirmed));
            assert_eq!(
                (stats.spooled, stats.retried),
                (0, 0),
                "not the ordinary retry loop"
            );
            pipeline.shutdown(Duration::from_millis(1)).await;
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    /// A sink noting the thread each export runs on.
    #[derive(Default)]
    struct ThreadNoting(Mutex<Vec<String>>);

    #[async_trait]
    impl TelemetrySink for ThreadNoting {
        fn name(&self) -> &str {
            "thread-noting"
        }

        async fn export(&self, batch: &[&LlmRecord]) -> Vec<Result<(), ExportError>> {
            let thread = std::thread::current().name().unwrap_or_default().to_owned();
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(thread);
            vec![Ok(()); batch.len()]
        }
    }

    /// `start_on` runs the exports on the runtime it is given, not the caller's.
    #[test]
    fn exports_run_on_the_runtime_given() {
        let telemetry = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telemetry-thread")
            .enable_all()
            .build()
            .unwrap();
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sink = Arc::new(ThreadNoting::default());
        let pipeline =
            Pipeline::start_on(telemetry.handle(), config(None), vec![sink.clone()]).unwrap();
        pipeline.record(record("r1"));
        let stats = caller.block_on(pipeline.shutdown(Duration::from_secs(5)));
        assert_eq!(stats[0].exported, 1);
        let threads = sink
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(threads, ["telemetry-thread"]);
    }

    /// A sink that fills batches waits for `batch_size` records or `flush_interval`; one that
    /// does not gets each record at once, and what queued meanwhile in one call.
    #[tokio::test(start_paused = true)]
    async fn a_sink_that_does_not_fill_batches_gets_records_as_they_come() {
        for fills_batches in [true, false] {
            let sink = Arc::new(Scripted {
                fills_batches,
                ..Arc::into_inner(Scripted::new(true, Duration::from_millis(5))).unwrap()
            });
            let pipeline = Pipeline::start(config(None), vec![sink.clone()]).unwrap();
            pipeline.record(record("first"));
            settle().await;
            let started_at_once = sink.calls.load(Ordering::SeqCst);
            for id in ["second", "third", "fourth"] {
                pipeline.record(record(id)); // queued while "first" is being exported
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            settle().await;
            let (calls, delivered) = (sink.calls.load(Ordering::SeqCst), sink.delivered());
            if fills_batches {
                assert_eq!(
                    started_at_once, 0,
                    "a filling sink waits for the flush interval"
                );
                assert_eq!(calls, 0, "4 records of 10, 10 ms of 20: still waiting");
            } else {
                assert_eq!(started_at_once, 1, "exported before any time passed");
                assert_eq!(calls, 2, "the three queued meanwhile leave in one call");
                assert_eq!(delivered, ["first", "second", "third", "fourth"]);
            }
            pipeline.shutdown(Duration::from_secs(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_export_in_flight_at_the_deadline_is_abandoned_and_its_batch_spooled() {
        let dir = spool_dir("in-flight");
        let slow = Scripted::new(true, Duration::from_secs(600));
        let pipeline = Pipeline::start(config(Some(dir.clone())), vec![slow.clone()]).unwrap();
        for n in 0..5 {
            pipeline.record(record(&format!("req-{n}")));
        }
        // The batch leaves after the flush interval, and its export starts before shutdown.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(slow.calls.load(Ordering::SeqCst), 1);
        let started = Instant::now();
        let stats = pipeline.shutdown(Duration::from_secs(3)).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            (stats[0].spooled, stats[0].dropped, stats[0].exported),
            (5, 0, 0),
            "{stats:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_spool_what_the_deadline_cuts_off_is_counted_as_dropped() {
        let slow = Scripted::new(true, Duration::from_secs(600));
        let pipeline = Pipeline::start(config(None), vec![slow.clone()]).unwrap();
        for n in 0..5 {
            pipeline.record(record(&format!("req-{n}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stats = pipeline.shutdown(Duration::from_secs(1)).await;
        assert_eq!((stats[0].dropped, stats[0].exported), (5, 0), "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_deadline_loses_nothing_that_was_queued() {
        let dir = spool_dir("zero-deadline");
        let sink = Scripted::new(true, Duration::from_millis(5));
        let pipeline = Pipeline::start(config(Some(dir.clone())), vec![sink.clone()]).unwrap();
        for n in 0..35 {
            pipeline.record(record(&format!("req-{n}")));
        }
        let stats = pipeline.shutdown(Duration::ZERO).await;
        let stats = &stats[0];
        assert_eq!(stats.dropped, 0, "{stats:?}");
        assert_eq!(stats.exported + stats.spooled, 35, "{stats:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn spooled_records_leave_on_the_replay_timer_without_new_traffic() {
        let dir = spool_dir("idle-replay");
        let sink = Scripted::new(false, Duration::ZERO);
        let pipeline = Pipeline::start(config(Some(dir.clone())), vec![sink.clone()]).unwrap();
        for n in 0..20 {
            pipeline.record(record(&format!("req-{n}")));
        }
        // Two failed attempts, then spooled.
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(pipeline.stats()[0].spooled, 20, "{:?}", pipeline.stats());
        sink.up.store(true, Ordering::SeqCst);
        // No new record: only the timer can move them.
        tokio::time::sleep(Duration::from_secs(16)).await;
        settle().await;
        assert_eq!(sink.delivered().len(), 20, "{:?}", pipeline.stats());
        assert_eq!(pipeline.stats()[0].replayed, 20);
        pipeline.shutdown(Duration::from_secs(1)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_retry_after_waits_at_most_backoff_max_and_the_worker_lives_on() {
        let sink = Arc::new(Scripted {
            retry_after: Some(Duration::from_secs(86_400)),
            ..Arc::into_inner(Scripted::new(false, Duration::ZERO)).unwrap()
        });
        let pipeline = Pipeline::start(config(None), vec![sink.clone()]).unwrap();
        pipeline.record(record("req-1"));
        // First attempt, then a wait capped at backoff_max (1 s), then the second attempt.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        settle().await;
        assert_eq!(sink.calls.load(Ordering::SeqCst), 2);
        sink.up.store(true, Ordering::SeqCst);
        pipeline.record(record("req-2"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        settle().await;
        assert_eq!(sink.delivered(), ["req-2"], "the worker still runs");
    }

    #[test]
    fn the_byte_budget_refuses_what_does_not_fit_and_takes_back_what_leaves() {
        let budget = ByteBudget::new(100);
        assert!(budget.reserve(60));
        assert!(!budget.reserve(41));
        assert!(budget.reserve(40));
        budget.give_back(60);
        assert!(budget.reserve(60));
        budget.give_back(1000); // never below zero
        assert_eq!(budget.used.load(Ordering::SeqCst), 0);
    }
}
