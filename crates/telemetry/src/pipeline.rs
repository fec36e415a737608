//! The pipeline: `record()` on the request path, one worker per sink behind it.
//!
//! ```text
//! record() ──try_send──▶ queue (bounded) ──▶ worker ── batch ──▶ sink.export()
//!    │                                          │  retryable: backoff / Retry-After, up to max_attempts
//!    │ queue full                               │  past the budget, or at the shutdown deadline
//!    └──try_send──▶ overflow (bounded) ──▶ spool writer ──▶ spool (disk) ◀── replayed by the worker
//! ```
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How the pipeline batches, retries and spools. [`PipelineConfig::default`] is production-ready
/// except for `spool_dir`, which is off until set.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Export when this many records are waiting. Default 50.
    pub batch_size: usize,
    /// …or when the oldest waiting record is this old. Default 1 s.
    pub flush_interval: Duration,
    /// In-memory queue per sink. Default 4096.
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
            queue_capacity: 4096,
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
    /// Takes `bytes` if they fit.
    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    /// Gives back what a record took when it leaves a channel.
    fn release(&self, record: &LlmRecord) {
        self.give_back(record.approx_bytes());
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
type SharedSpool = Arc<Mutex<Spool>>;

struct SinkHandle {
    name: String,
    queue: mpsc::Sender<SharedRecord>,
    overflow: mpsc::Sender<SharedRecord>,
    counters: Arc<SinkCounters>,
    budget: Arc<ByteBudget>,
}

impl SinkHandle {
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
    /// Starts one worker (and one spool writer) per sink. Fails if a spool folder is unusable.
    pub fn start(
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
            let budget = Arc::new(ByteBudget {
                used: AtomicUsize::new(0),
                limit: config.max_queued_bytes,
            });
            let (queue, queue_rx) = mpsc::channel(config.queue_capacity.max(1));
            let (overflow, overflow_rx) = mpsc::channel(config.overflow_capacity.max(1));
            let spooler = Spooler {
                sink: name.clone(),
                spool,
                counters: Arc::clone(&counters),
                budget: Arc::clone(&budget),
            };
            tasks.push(tokio::spawn(run_overflow_writer(
                overflow_rx,
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
            };
            tasks.push(tokio::spawn(worker.run()));
            handles.push(SinkHandle {
                name,
                queue,
                overflow,
                counters,
                budget,
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
        let bytes = record.approx_bytes();
        let record = Arc::new(record);
        for sink in &self.sinks {
            if !sink.budget.reserve(bytes) {
                sink.drop_one("telemetry overloaded: the records waiting in memory reached their byte limit; record dropped");
                continue;
            }
            match sink.queue.try_send(Arc::clone(&record)) {
                Ok(()) => {
                    sink.counters.add(Counter::Queued, 1);
                }
                Err(mpsc::error::TrySendError::Full(record)) => {
                    if sink.overflow.try_send(record).is_err() {
                        sink.budget.give_back(bytes);
                        sink.drop_one(
                            "telemetry overloaded: queue and spool backlog full; record dropped",
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    sink.budget.give_back(bytes);
                    sink.counters.add(Counter::Dropped, 1);
                    tracing::warn!(sink = %sink.name, "telemetry record arrived after shutdown; dropped");
                }
            }
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
        let deadline = Instant::now() + within;
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
    /// Released as records leave the in-memory channels.
    budget: Arc<ByteBudget>,
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
    mut overflow: mpsc::Receiver<SharedRecord>,
    spooler: Spooler,
    mut shutdown: watch::Receiver<Option<Instant>>,
) {
    loop {
        let first = tokio::select! {
            record = overflow.recv() => record,
            _ = shutdown.changed() => None,
        };
        let Some(first) = first else { break };
        spooler.budget.release(&first);
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match overflow.try_recv() {
                Ok(record) => {
                    spooler.budget.release(&record);
                    batch.push(record);
                }
                Err(_) => break,
            }
        }
        spooler.store(batch, "queue full").await;
    }
    overflow.close();
    let mut rest = Vec::new();
    while let Ok(record) = overflow.try_recv() {
        spooler.budget.release(&record);
        rest.push(record);
    }
    spooler.store(rest, "queue full at shutdown").await;
}

struct Worker {
    sink: Arc<dyn TelemetrySink>,
    queue: mpsc::Receiver<SharedRecord>,
    spooler: Spooler,
    config: Arc<PipelineConfig>,
    shutdown: watch::Receiver<Option<Instant>>,
    /// The last rejection reason logged, so a misconfigured sink logs one line, not one per batch.
    last_rejection: Option<String>,
}

/// What happened to one delivery attempt of a batch.
struct Delivery {
    retry: Vec<SharedRecord>,
    retry_after: Option<Duration>,
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
        let mut spool_waiting = self.replay().await;
        let mut next_replay = Instant::now() + self.config.replay_interval;
        while self.stopping().is_none() {
            let first = tokio::select! {
                record = self.queue.recv() => record,
                _ = self.shutdown.changed() => continue,
                () = tokio::time::sleep_until(next_replay), if spool_waiting => {
                    spool_waiting = self.replay().await;
                    next_replay = Instant::now() + self.config.replay_interval;
                    continue;
                }
            };
            let Some(first) = first else { break };
            self.spooler.budget.release(&first);
            let mut batch = vec![first];
            let flush_at = Instant::now() + self.config.flush_interval;
            while batch.len() < self.config.batch_size && self.stopping().is_none() {
                tokio::select! {
                    record = self.queue.recv() => match record {
                        Some(record) => {
                            self.spooler.budget.release(&record);
                            batch.push(record);
                        }
                        None => break,
                    },
                    _ = self.shutdown.changed() => break,
                    () = tokio::time::sleep_until(flush_at) => break,
                }
            }
            let delivered = self.deliver(batch).await;
            if delivered && (spool_waiting || self.spool_has_records().await) {
                spool_waiting = self.replay().await;
                next_replay = Instant::now() + self.config.replay_interval;
            }
        }
        self.drain().await;
    }

    /// At shutdown: flush what is queued until the deadline; spool the rest.
    async fn drain(&mut self) {
        let deadline = self
            .stopping()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        self.queue.close();
        let mut rest = Vec::new();
        while let Ok(record) = self.queue.try_recv() {
            self.spooler.budget.release(&record);
            rest.push(record);
        }
        let mut batches = rest.chunks(self.config.batch_size.max(1));
        for batch in batches.by_ref() {
            if Instant::now() >= deadline || !self.deliver(batch.to_vec()).await {
                break;
            }
        }
        let undelivered: Vec<SharedRecord> = batches.flatten().cloned().collect();
        self.spooler.store(undelivered, "shutdown deadline").await;
    }

    async fn spool_has_records(&self) -> bool {
        self.spooler
            .run_blocking(|spool| !spool.is_empty())
            .await
            .unwrap_or(false)
    }

    /// One export call, bounded by the shutdown deadline once shutdown has begun.
    async fn export_once(&mut self, records: &[SharedRecord]) -> Option<Delivery> {
        let batch: Vec<&LlmRecord> = records.iter().map(AsRef::as_ref).collect();
        let results = match self.stopping() {
            Some(deadline) => tokio::time::timeout_at(deadline, self.sink.export(&batch))
                .await
                .ok()?,
            None => self.sink.export(&batch).await,
        };
        let mut delivery = Delivery {
            retry: Vec::new(),
            retry_after: None,
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
                None => delivery.retry.push(Arc::clone(record)),
            }
        }
        self.spooler
            .counters
            .add(Counter::Exported, delivery.delivered);
        Some(delivery)
    }

    /// Delivers a live batch with retries; spools what is left when the budget or the
    /// shutdown deadline runs out. Returns whether everything was delivered (or refused).
    async fn deliver(&mut self, mut pending: Vec<SharedRecord>) -> bool {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(delivery) = self.export_once(&pending).await else {
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
                .is_some_and(|deadline| Instant::now() + delay >= deadline)
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

    /// Replays the spool oldest first. Returns whether records are still waiting.
    async fn replay(&mut self) -> bool {
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
                match self.export_once(batch).await {
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
